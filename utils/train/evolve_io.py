"""Hyperparameter evolution's files: evolve.csv (one row per finished trial), hyp_evolve.yaml and evolve.png."""

from __future__ import annotations

import csv
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np
import yaml

from utils.errors import UserError

LOGGER = logging.getLogger(__name__)


def _atomic_write(path: Path, text: str) -> None:
    """Write text to path via a temporary file in its folder and a rename: readers see old or new, never half."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_evolve_csv(path: Path) -> Tuple[List[str], np.ndarray]:
    """(column names, (n, k) float rows) of an evolve.csv; ([], empty) when the file is absent."""
    if not path.is_file():
        return [], np.zeros((0, 0))
    with open(path, newline="") as f:
        lines = [r for r in csv.reader(f) if r]
    if not lines:
        return [], np.zeros((0, 0))
    keys = [k.strip() for k in lines[0]]
    try:
        rows = [[float(v) for v in r] for r in lines[1:]]
    except ValueError as e:
        raise UserError(f"{path}: not an evolve.csv ({e})") from None
    if any(len(r) != len(keys) for r in rows):
        raise UserError(f"{path}: a row has a different number of values than the header's {len(keys)}")
    return keys, np.array(rows, dtype=float).reshape(len(rows), len(keys))


def append_evolve_row(path: Path, keys: Sequence[str], values: Sequence[float]) -> int:
    """Append one trial (metrics then hyperparameters) to evolve.csv, atomically; returns the number of rows.

    Columns are right-aligned in 20 characters, values written with 5 significant digits, as YOLOv5 writes them.
    """
    old_keys, rows = read_evolve_csv(path)
    if old_keys and old_keys != list(keys):
        raise UserError(f"{path} has other columns than this evolution ({len(old_keys)} vs {len(keys)})")
    text = path.read_text() if old_keys else ",".join(f"{k:>20s}" for k in keys) + "\n"
    text += ",".join(f"{float(v):20.5g}" for v in values) + "\n"
    _atomic_write(path, text)
    return len(rows) + 1


def write_hyp_yaml(
    path: Path,
    keys: Sequence[str],
    rows: np.ndarray,
    fit: np.ndarray,
    n_metrics: int,
    fixed: Mapping[str, object],
    cast: Callable[[Dict[str, float]], Dict[str, object]] = dict,
) -> int:
    """hyp_evolve.yaml: the best row's hyperparameters (plus the fixed keys), usable as --hyp. Returns its row index.

    The header comments name the best and last row and the best row's metrics. cast turns the row into the values
    a training uses (anchors rounded to a whole number of anchors per level).
    """
    best = int(np.argmax(fit))
    hyp = cast({k: float(v) for k, v in zip(keys[n_metrics:], rows[best, n_metrics:])})
    head = [
        "# YOLOv5-FLA hyperparameter evolution: the best trial of evolve.csv",
        f"# Best generation: {best}",
        f"# Last generation: {len(rows) - 1}",
        "# " + ", ".join(f"{k:>20s}" for k in keys[:n_metrics]),
        "# " + ", ".join(f"{v:>20.5g}" for v in rows[best, :n_metrics]),
    ]
    body = yaml.safe_dump({**hyp, **{k: v for k, v in fixed.items() if k not in hyp}}, sort_keys=False)
    _atomic_write(path, "\n".join(head) + "\n\n" + body)
    return best


def _density(x: np.ndarray, y: np.ndarray, bins: int = 20) -> np.ndarray:
    """(n,) log point density of each (x, y) from a 2-D histogram, for colouring a scatter plot."""
    h, xe, ye = np.histogram2d(x, y, bins)
    ix = np.clip(np.digitize(x, xe[1:-1]), 0, bins - 1)
    iy = np.clip(np.digitize(y, ye[1:-1]), 0, bins - 1)
    return np.log(h[ix, iy])


def plot_evolve(path: Path, keys: Sequence[str], rows: np.ndarray, fit: np.ndarray, n_metrics: int) -> Path:
    """evolve.png beside evolve.csv: one panel per hyperparameter, fitness against its value, the best marked +."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hyp_keys = list(keys[n_metrics:])
    ncol = 5
    nrow = max(1, -(-len(hyp_keys) // ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(10, 2 * nrow), tight_layout=True, squeeze=False)
    best = int(np.argmax(fit))
    for i, ax in enumerate(axes.ravel()):
        if i >= len(hyp_keys):
            ax.axis("off")
            continue
        v = rows[:, n_metrics + i]
        ax.scatter(v, fit, c=_density(v, fit), cmap="viridis", alpha=0.8, edgecolors="none", s=12)
        ax.plot(v[best], fit[best], "k+", markersize=15)
        ax.set_title(f"{hyp_keys[i]} = {v[best]:.3g}", fontsize=9)
        ax.tick_params(labelsize=7)
        if i % ncol:
            ax.set_yticklabels([])
    fig.savefig(path, dpi=150)
    plt.close(fig)
    return path


def summary(
    keys: Sequence[str], rows: np.ndarray, fit: np.ndarray, n_metrics: int, save_dir: Path, script: str = "train.py"
) -> str:
    """The lines printed when an evolution ends: trials, best row, its metrics and hyperparameters, how to use it."""
    best = int(np.argmax(fit))
    lines = [
        f"Hyperparameter evolution: {len(rows)} trials, best is row {best} (fitness {fit[best]:.5f})",
        "  " + ", ".join(f"{k}={v:.5g}" for k, v in zip(keys[:n_metrics], rows[best, :n_metrics])),
        "  " + ", ".join(f"{k}={v:.5g}" for k, v in zip(keys[n_metrics:], rows[best, n_metrics:])),
        f"Results saved to {save_dir}",
        f"Usage example: python {script} --hyp {save_dir / 'hyp_evolve.yaml'}",
    ]
    return "\n".join(lines)
