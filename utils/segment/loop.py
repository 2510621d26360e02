"""One segmentation validation pass over a dataloader: forward, postprocess, evaluator (the engine's loop, in small).

Used by segment/val.py and by training's per-epoch validation; times pre-process, inference and NMS + masks.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from utils.segment.evaluate import SegmentEvaluator
from utils.segment.metrics import SegMetrics
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


@torch.no_grad()
def validate(
    model,
    dataloader,
    evaluator: SegmentEvaluator,
    device: torch.device | str = "cpu",
    half: bool = False,
    compute_loss: Callable | None = None,
) -> SegMetrics:
    """One pass: model (an eval-mode SegmentationModel, or a backend returning (pred, protos[, levels])) on
    batches (im uint8, targets, paths, shapes, masks); the evaluator post-processes, matches and summarises."""
    device = torch.device(device)
    dt, loss, nb, seen = [0.0, 0.0, 0.0], torch.zeros(4, device=device), 0, 0
    for batch in dataloader:
        t0 = time_sync()
        im = batch[0].to(device, non_blocking=True)
        im = (im.half() if half else im.float()) / 255
        t1 = time_sync()
        out = model(im)
        t2 = time_sync()
        if compute_loss is not None and isinstance(out, (list, tuple)) and len(out) == 3:
            train_batch = (im, batch[1].to(device), *batch[2:4], batch[4].to(device))
            loss += compute_loss((out[2], out[1]), train_batch).items
        batch = (im, *batch[1:])
        results = evaluator.postprocess(out, batch)
        dt = [a + b for a, b in zip(dt, (t1 - t0, t2 - t1, time_sync() - t2))]
        evaluator.update(results, batch)
        nb, seen = nb + 1, seen + im.shape[0]
    losses = (loss / max(nb, 1)).tolist() if compute_loss is not None else ()
    return evaluator.summarize(losses, [t / max(seen, 1) * 1e3 for t in dt])
