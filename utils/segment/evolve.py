"""segment/train.py --evolve: the shared evolution (utils/train/evolve.py) with segmentation's training and columns.

Each trial records the final epoch's box and mask P, R, mAP50, mAP50-95 and its four validation losses (YOLOv5's
segment evolve.csv layout); fitness is 0.1 mAP50 + 0.9 mAP50-95 of the boxes plus the same of the masks.
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from typing import Any, Dict

from utils.segment.metrics import LOSS_NAMES, METRIC_NAMES
from utils.train.evolve import EvolveTask

SEGMENT_METRICS = (*METRIC_NAMES, *(f"val/{k}" for k in LOSS_NAMES))  # 8 metrics, 4 val losses
SEGMENT_WEIGHTS = (0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.0, 0.0)


def train_segment(opt: Namespace, hyp: Dict[str, Any]) -> Path:
    """One segmentation training with hyp (--mask-ratio and --no-overlap from opt); returns its run folder.
    A module-level function, so that Ray pickles it by name and workers import it on their own node."""
    from utils.segment.task import segment_task
    from utils.train.run import train

    task = segment_task(mask_ratio=int(getattr(opt, "mask_ratio", 4)), overlap=not getattr(opt, "no_overlap", False))
    return train(opt, hyp, task=task)


def segment_evolve_task() -> EvolveTask:
    """The EvolveTask of segment/train.py --evolve."""
    return EvolveTask(
        train_fn=train_segment, metric_keys=SEGMENT_METRICS, weights=SEGMENT_WEIGHTS, script="segment/train.py"
    )
