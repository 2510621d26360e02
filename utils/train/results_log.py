"""Per-epoch training records: results.csv with YOLOv5's columns, optional TensorBoard scalars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

LOGGER = logging.getLogger(__name__)

KEYS = (
    "train/box_loss",
    "train/obj_loss",
    "train/cls_loss",
    "metrics/precision",
    "metrics/recall",
    "metrics/mAP_0.5",
    "metrics/mAP_0.5:0.95",
    "val/box_loss",
    "val/obj_loss",
    "val/cls_loss",
    "x/lr0",
    "x/lr1",
    "x/lr2",
)


class ResultsLogger:
    """Append one row per epoch to save_dir/results.csv; mirror the values to TensorBoard when it is installed."""

    def __init__(self, save_dir: Path, tensorboard: bool = True):
        self.csv = Path(save_dir) / "results.csv"
        self.tb = _tensorboard_writer(Path(save_dir)) if tensorboard else None

    def log_epoch(self, epoch: int, values: Sequence[float]) -> None:
        """values: the 13 numbers of KEYS, in order (train losses, P, R, mAP50, mAP50-95, val losses, 3 lrs)."""
        values = [float(v) for v in values]
        if len(values) != len(KEYS):
            raise ValueError(f"expected {len(KEYS)} values, got {len(values)}")
        n = len(KEYS) + 1
        header = "" if self.csv.exists() else ("%20s," * n % ("epoch", *KEYS)).rstrip(",") + "\n"
        with open(self.csv, "a") as f:
            f.write(header + ("%20.5g," * n % (epoch, *values)).rstrip(",") + "\n")
        if self.tb is not None:
            for k, v in zip(KEYS, values):
                self.tb.add_scalar(k, v, epoch)

    def truncate(self, last_epoch: int) -> None:
        """Drop rows after last_epoch (a resumed run re-does the epochs its checkpoint had not finished)."""
        if not self.csv.exists():
            return
        lines = self.csv.read_text().splitlines()
        keep = lines[:1] + [ln for ln in lines[1:] if ln.strip() and float(ln.split(",")[0]) <= last_epoch]
        self.csv.write_text("\n".join(keep) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _tensorboard_writer(save_dir: Path) -> object | None:
    """A SummaryWriter on save_dir, or None (with a hint) when tensorboard is not installed."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        LOGGER.debug("TensorBoard: not installed, skipping event files (pip install tensorboard)")
        return None
    LOGGER.info(f"TensorBoard: Start with 'tensorboard --logdir {save_dir.parent}', view at http://localhost:6006/")
    return SummaryWriter(str(save_dir))
