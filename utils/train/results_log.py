"""Per-epoch training records: results.csv (columns from the task's loss and metric names), TensorBoard scalars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Sequence, Tuple

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

    def log_epoch(self, epoch: int, values: Sequence[float], rows: Sequence[Sequence[float]] | None = None) -> None:
        """values: one number per key, in order (detection: train losses, P, R, mAP50, mAP50-95, val losses, 3 lrs).

        rows: every row of the run so far ([epoch, *values] each, the last one this epoch's), as the checkpoint
        holds them; the csv is rewritten from them, so it never has a row that the checkpoint lacks, nor twice.
        """
        values = [float(v) for v in values]
        if len(values) != len(self.keys):
            raise ValueError(f"expected {len(self.keys)} values, got {len(values)}")
        self.write(rows if rows is not None else [[epoch, *values]])
        if self.tb is not None:
            for k, v in zip(self.keys, values):
                self.tb.add_scalar(k, v, epoch)

    def write(self, rows: Sequence[Sequence[float]]) -> None:
        """Rewrite results.csv (atomically) with the header and rows [epoch, *values]."""
        from utils.safe_write import write_text

        n = len(self.keys) + 1
        header = ("%20s," * n % ("epoch", *self.keys)).rstrip(",") + "\n"
        body = "".join(("%20.5g," * n % tuple(r)).rstrip(",") + "\n" for r in rows if len(r) == n)
        write_text(self.csv, header + body)

    def truncate(self, last_epoch: int) -> List[List[float]]:
        """Drop rows after last_epoch and return the kept rows [epoch, *values] (resuming a checkpoint without its
        rows: official YOLOv5's last.pt, or ours from before checkpoints held them), so that the run's next
        rewrite from its rows keeps them."""
        if not self.csv.exists():
            return []
        n, rows = len(self.keys) + 1, []
        for ln in self.csv.read_text().splitlines()[1:]:
            try:
                row = [float(v) for v in ln.split(",")]
            except ValueError:
                continue  # a torn or foreign line
            if len(row) == n and row[0] <= last_epoch:
                rows.append(row)
        self.write(rows)
        return rows

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
