"""One segmentation validation pass over a dataloader: forward, postprocess, evaluator (the engine's loop, in small).

Used by segment/val.py and by training's per-epoch validation; times pre-process, inference and NMS + masks.
"""

from __future__ import annotations

import logging
from typing import Callable

import torch

from utils.segment.evaluate import SegmentEvaluator
from utils.segment.metrics import SegMetrics
from utils.segment.postprocess import postprocess, split_outputs
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


@torch.no_grad()
def validate(
    model,
    dataloader,
    evaluator: SegmentEvaluator,
    device: torch.device | str = "cpu",
    conf_thres: float = 0.001,
    iou_thres: float = 0.6,
    max_det: int = 300,
    half: bool = False,
    mask_mode: str = "proto",
    compute_loss: Callable | None = None,
) -> tuple[SegMetrics, torch.Tensor]:
    """-> (metrics, mean loss items per batch (4,) or zeros). model: eval-mode SegmentationModel or a backend
    returning (pred, protos[, levels]); batches (im uint8, targets, paths, shapes, masks)."""
    device = torch.device(device)
    dt, loss, nb = [0.0, 0.0, 0.0], torch.zeros(4, device=device), 0
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
        results = postprocess(split_outputs(out), im.shape[2:], conf_thres, iou_thres, multi_label=True,
                              max_det=max_det, mask_mode=mask_mode)  # fmt: skip
        dt = [a + b for a, b in zip(dt, (t1 - t0, t2 - t1, time_sync() - t2))]
        evaluator.update(results, (im, *batch[1:]))
        nb += 1
    metrics = evaluator.summarize()
    metrics.speeds = tuple(t / max(metrics.seen, 1) * 1e3 for t in dt)
    return metrics, loss / max(nb, 1)
