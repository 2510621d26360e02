"""Per-epoch training records: results.csv (columns from the task's loss and metric names), TensorBoard scalars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence, Tuple

LOGGER = logging.getLogger(__name__)


def results_keys(loss_names: Sequence[str], metric_names: Sequence[str], n_lr: int = 3) -> Tuple[str, ...]:
    """results.csv's columns after 'epoch': train losses, metrics, val losses, learning rates (YOLOv5's order)."""
    return (
        *(f"train/{k}" for k in loss_names),
        *(f"metrics/{k}" for k in metric_names),
        *(f"val/{k}" for k in loss_names),
        *(f"x/lr{i}" for i in range(n_lr)),
    )


KEYS = results_keys(("box_loss", "obj_loss", "cls_loss"), ("precision", "recall", "mAP_0.5", "mAP_0.5:0.95"))


class ResultsLogger:
    """Append one row per epoch to save_dir/results.csv; mirror the values to TensorBoard when it is installed."""

    def __init__(self, save_dir: Path, keys: Sequence[str] = KEYS, tensorboard: bool = True):
        self.csv, self.keys = Path(save_dir) / "results.csv", tuple(keys)
        self.tb = _tensorboard_writer(Path(save_dir)) if tensorboard else None

    def log_epoch(self, epoch: int, values: Sequence[float]) -> None:
        """values: one number per key, in order (detection: train losses, P, R, mAP50, mAP50-95, val losses, 3 lrs)."""
        values = [float(v) for v in values]
        if len(values) != len(self.keys):
            raise ValueError(f"expected {len(self.keys)} values, got {len(values)}")
        n = len(self.keys) + 1
        header = "" if self.csv.exists() else ("%20s," * n % ("epoch", *self.keys)).rstrip(",") + "\n"
        with open(self.csv, "a") as f:
            f.write(header + ("%20.5g," * n % (epoch, *values)).rstrip(",") + "\n")
        if self.tb is not None:
            for k, v in zip(self.keys, values):
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
