"""The validation loop every task shares: predictor -> the evaluator's postprocess -> update per batch -> summarize.

It knows nothing about boxes, masks or classes: the task's Evaluator does. With a criterion (training), the model
behind a ModelPredictor also gives its raw outputs, and their mean losses go into the summary.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterable, Sequence

import torch

from utils.deploy.predictor import ModelPredictor, Predictor
from utils.task import Criterion, Evaluator, Metrics
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


@torch.no_grad()
def validate(
    predictor: Predictor,
    loader: Iterable[Sequence[Any]],
    evaluator: Evaluator,
    criterion: Criterion | None = None,
    augment: bool = False,
    progress: bool = False,
    speed_shape: Sequence[int] | None = None,
) -> Metrics:
    """One pass over loader's batches (imgs uint8 (B, 3, H, W), then the task's own items) -> the evaluator's Metrics.

    criterion: score the raw outputs too (a ModelPredictor only); their per-batch mean goes to summarize().
    speed_shape: log 'Speed: ... per image at shape (B, 3, H, W)' with these numbers (0 = from the first batch).
    """
    losses, shape = None, None
    dt, seen = [0.0, 0.0, 0.0], 0
    batches = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc=evaluator.header, file=sys.stderr, bar_format="{l_bar}{bar:10}{r_bar}")
    for batch in batches:
        t0 = time_sync()
        im = predictor.prepare(batch[0])
        shape = shape or tuple(im.shape)
        t1 = time_sync()
        if criterion is not None:
            if not isinstance(predictor, ModelPredictor):
                raise TypeError("validation losses need a ModelPredictor (a PyTorch model in memory)")
            preds, raw = predictor.run_with_raw(im)
            items = criterion(raw, batch).items
            losses = items if losses is None else losses + items
        else:
            preds = predictor(im, augment=augment)
        t2 = time_sync()
        results = evaluator.postprocess(preds, batch)
        dt = [a + b for a, b in zip(dt, (t1 - t0, t2 - t1, time_sync() - t2))]
        evaluator.update(results, batch)
        seen += im.shape[0]
    mean = tuple((losses.cpu() / max(len(loader), 1)).tolist()) if losses is not None else ()
    speeds = tuple(t / max(seen, 1) * 1e3 for t in dt)
    metrics = evaluator.summarize(losses=mean, speeds=speeds)
    if speed_shape is not None:
        b, s = speed_shape[0] or (shape[0] if shape else 1), speed_shape[1] or (max(shape[2:]) if shape else 0)
        LOGGER.info(
            f"Speed: %.1fms pre-process, %.1fms inference, %.1fms {evaluator.post_name} per image at shape "
            f"{(b, 3, s, s)}" % speeds
        )
    return metrics
