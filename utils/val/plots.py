"""Validation and training figures: batch mosaics, PR/F1 curves, confusion matrix, results.png, labels.jpg."""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Dict, Mapping, Sequence, Union

import cv2
import numpy as np
import torch

from utils.boxes import xywh2xyxy, xyxy2xywh
from utils.deploy.annotate import Annotator, colors
from utils.names import names_dict
from utils.safe_write import write_image, writing
from utils.val.metrics import Curves, smooth

LOGGER = logging.getLogger(__name__)

PathLike = Union[str, Path]
Names = Union[Mapping[int, str], Sequence[str]]


def _plt():
    """matplotlib.pyplot on the non-interactive Agg backend (set here, never at import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, fname: PathLike, dpi: int = 250) -> Path:
    fname = Path(fname)
    try:
        with writing(fname):
            fname.parent.mkdir(parents=True, exist_ok=True)
            fig.savefig(fname, dpi=dpi)
    finally:
        _plt().close(fig)
    return fname


def output_to_target(output: Sequence[torch.Tensor], max_det: int = 300) -> torch.Tensor:
    """NMS output, B tensors (n, 6) xyxy/conf/cls -> (N, 7) [batch_idx, cls, x, y, w, h, conf] for plot_images."""
    rows = []
    for i, o in enumerate(output):
        box, conf, cls = o[:max_det, :6].detach().cpu().float().split((4, 1, 1), 1)
        rows.append(torch.cat((torch.full_like(conf, i), cls, xyxy2xywh(box), conf), 1))
    return torch.cat(rows, 0) if rows else torch.zeros((0, 7))


def plot_images(
    images: Union[torch.Tensor, np.ndarray],
    targets: Union[torch.Tensor, np.ndarray],
    paths: Sequence[str] | None = None,
    fname: PathLike = "images.jpg",
    names: Names = (),
    max_size: int = 1920,
    max_subplots: int = 16,
) -> Path:
    """Mosaic of a batch (B, 3, H, W) RGB (uint8, or float in 0-1) with boxes; written as fname (JPEG).

    targets (n, 6) [batch_idx, cls, x, y, w, h] or (n, 7) with conf (predictions: drawn when conf > 0.25);
    boxes in pixels of the batch images, or normalised 0-1 (detected by max <= 1.01).
    """
    names = names_dict(names)
    images = images.detach().cpu().float().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
    targets = targets.detach().cpu().float().numpy() if isinstance(targets, torch.Tensor) else np.asarray(targets)
    if images.size and images.max() <= 1:
        images = images * 255
    bs, _, h, w = images.shape
    bs = min(bs, max_subplots)
    ns = math.ceil(bs**0.5)  # tiles per side
    mosaic = np.full((ns * h, ns * w, 3), 255, dtype=np.uint8)
    for i in range(bs):
        x, y = w * (i % ns), h * (i // ns)
        mosaic[y : y + h, x : x + w] = images[i].transpose(1, 2, 0).clip(0, 255).astype(np.uint8)
    scale = max_size / ns / max(h, w)
    if scale < 1:
        h, w = math.ceil(scale * h), math.ceil(scale * w)
        mosaic = cv2.resize(mosaic, (w * ns, h * ns))
    else:
        scale = 1.0
    mosaic = np.ascontiguousarray(mosaic[..., ::-1])  # RGB -> BGR for drawing and imwrite
    ann = Annotator(mosaic, line_width=max(round(min(h, w) / 200), 1), font_size=max(round(min(h, w) / 30), 8))
    for i in range(bs):
        x, y = w * (i % ns), h * (i // ns)
        cv2.rectangle(ann.im, (x, y), (x + w, y + h), (255, 255, 255), 2)
        if paths is not None and i < len(paths):
            ann.text((x + 5, y + 5), Path(paths[i]).name[:40], txt_color=(220, 220, 220))
        _draw_targets(ann, targets[targets[:, 0] == i] if len(targets) else targets, (x, y), (w, h), scale, names)
    return write_image(fname, ann.result())


def _draw_targets(ann: Annotator, ti: np.ndarray, offset, size, scale: float, names: Dict[int, str]) -> None:
    """Draw one tile's rows (k, 6|7) [idx, cls, x, y, w, h, (conf)] at pixel offset (x, y) of a tile (w, h)."""
    if not len(ti):
        return
    boxes = xywh2xyxy(ti[:, 2:6].copy())
    has_conf = ti.shape[1] == 7
    if boxes.max() <= 1.01:  # normalised
        boxes[:, [0, 2]] *= size[0]
        boxes[:, [1, 3]] *= size[1]
    elif scale < 1:
        boxes *= scale
    boxes[:, [0, 2]] += offset[0]
    boxes[:, [1, 3]] += offset[1]
    for j, box in enumerate(boxes):
        c = int(ti[j, 1])
        conf = float(ti[j, 6]) if has_conf else None
        if conf is not None and conf <= 0.25:
            continue
        label = names.get(c, str(c)) if conf is None else f"{names.get(c, str(c))} {conf:.1f}"
        ann.box_label(box, label, color=colors(c, bgr=True))


def plot_pr_curve(px: np.ndarray, py: Sequence[np.ndarray], ap: np.ndarray, save_path: PathLike, names: Names) -> Path:
    """Precision-recall curve per class (py: c arrays over px) plus the mean, with AP@0.5 in the legend."""
    plt, names = _plt(), names_dict(names)
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    py = np.stack(py, axis=1) if len(py) else np.zeros((len(px), 0))
    for i, y in enumerate(py.T):
        label = f"{names.get(i, str(i))} {ap[i, 0]:.3f}" if 0 < len(names) < 21 else None
        ax.plot(px, y, linewidth=1, label=label, color="grey" if label is None else None)
    if py.shape[1]:
        ax.plot(px, py.mean(1), linewidth=3, color="blue", label=f"all classes {ap[:, 0].mean():.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1), title="Precision-Recall Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, save_path)


def plot_mc_curve(
    px: np.ndarray,
    py: np.ndarray,
    save_path: PathLike,
    names: Names,
    xlabel: str = "Confidence",
    ylabel: str = "Metric",
) -> Path:
    """A metric (c, 1000) against confidence per class plus the mean; the best mean is in the legend."""
    plt, names = _plt(), names_dict(names)
    fig, ax = plt.subplots(1, 1, figsize=(9, 6), tight_layout=True)
    for i, y in enumerate(py):
        label = names.get(i, str(i)) if 0 < len(names) < 21 else None
        ax.plot(px, y, linewidth=1, label=label, color="grey" if label is None else None)
    if len(py):
        y = smooth(py.mean(0), 0.05)
        ax.plot(px, y, linewidth=3, color="blue", label=f"all classes {y.max():.2f} at {px[y.argmax()]:.3f}")
    ax.set(xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1), title=f"{ylabel}-Confidence Curve")
    ax.legend(bbox_to_anchor=(1.04, 1), loc="upper left")
    return _save(fig, save_path)


def plot_confusion(matrix: np.ndarray, save_path: PathLike, names: Sequence[str], normalize: bool = True) -> Path:
    """Heat map of a (nc+1, nc+1) confusion matrix (rows predicted, columns true; last = background)."""
    plt = _plt()
    nc = matrix.shape[0] - 1
    m = matrix / (matrix.sum(0).reshape(1, -1) + 1e-9) if normalize else matrix.copy()
    m[m < 0.005] = np.nan  # blank cells instead of zeros
    labels = list(names) + ["background"] if 0 < len(names) == nc and nc < 99 else None
    fig, ax = plt.subplots(1, 1, figsize=(12, 9), tight_layout=True)
    im = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    fig.colorbar(im, ax=ax)
    if nc < 30:
        for (r, c), v in np.ndenumerate(m):
            if not np.isnan(v):
                ax.text(c, r, f"{v:.2f}" if normalize else f"{v:.0f}", ha="center", va="center", fontsize=8)
    if labels:
        ax.set_xticks(range(nc + 1), labels, rotation=90, fontsize=8)
        ax.set_yticks(range(nc + 1), labels, fontsize=8)
    ax.set(xlabel="True", ylabel="Predicted", title="Confusion Matrix")
    return _save(fig, save_path)


def _read_csv(file: PathLike) -> tuple[list[str], np.ndarray]:
    """Column names (stripped) and a float array (rows, cols) of a results.csv."""
    with open(file, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    header = [h.strip() for h in rows[0]]
    data = np.array([[float(v) if v.strip() else np.nan for v in r] for r in rows[1:]], dtype=float)
    return header, data.reshape(-1, len(header))


def plot_results(file: PathLike = "results.csv") -> Path:
    """results.png next to a training results.csv: 10 panels (train/val losses, P, R, mAP50, mAP50-95)."""
    file = Path(file)
    header, data = _read_csv(file)
    plt = _plt()
    fig, axes = plt.subplots(2, 5, figsize=(12, 6), tight_layout=True)
    order = [1, 2, 3, 4, 5, 8, 9, 10, 6, 7]  # column indices as YOLOv5 lays them out
    x = data[:, 0] if len(data) else np.zeros(0)
    for ax, j in zip(axes.ravel(), order):
        if j >= len(header):
            ax.axis("off")
            continue
        y = data[:, j]
        ax.plot(x, y, marker=".", label=file.parent.name, linewidth=2, markersize=8)
        if len(y) > 2:
            ax.plot(x, _moving_average(y, 3), ":", label="smooth", linewidth=2)
        ax.set_title(header[j], fontsize=12)
    axes.ravel()[1].legend()
    return _save(fig, file.with_name("results.png"), dpi=200)


def _moving_average(y: np.ndarray, k: int) -> np.ndarray:
    """Centred moving average of (n,) y over k points, edges padded with end values."""
    pad = k // 2
    yp = np.concatenate((np.full(pad, y[0]), y, np.full(pad, y[-1])))
    return np.convolve(yp, np.ones(k) / k, mode="valid")


def plot_labels(labels: np.ndarray, names: Names = (), save_dir: PathLike = ".") -> Path:
    """labels.jpg in save_dir from (n, 5) [cls, x, y, w, h] normalised: class counts, boxes, xy and wh densities."""
    plt, names = _plt(), names_dict(names)
    labels = np.asarray(labels, dtype=float).reshape(-1, 5)
    c, b = labels[:, 0].astype(int), labels[:, 1:]
    nc = int(c.max() + 1) if len(c) else max(len(names), 1)
    fig, axes = plt.subplots(2, 2, figsize=(8, 8), tight_layout=True)
    ax = axes.ravel()
    counts = np.bincount(c, minlength=nc)
    ax[0].bar(range(nc), counts, color=[np.array(colors(i)) / 255 for i in range(nc)])
    ax[0].set_ylabel("instances")
    if 0 < len(names) < 30:
        ax[0].set_xticks(range(nc), [names.get(i, str(i)) for i in range(nc)], rotation=90, fontsize=8)
    else:
        ax[0].set_xlabel("classes")
    canvas = np.full((1000, 1000, 3), 255, dtype=np.uint8)
    for ci, box in zip(c[:1000], b[:1000]):  # boxes centred on the canvas show their shapes
        x1, y1, x2, y2 = (xywh2xyxy(np.array([0.5, 0.5, box[2], box[3]])) * 1000).round().astype(int)
        cv2.rectangle(canvas, (int(x1), int(y1)), (int(x2), int(y2)), colors(ci), 1)
    ax[1].imshow(canvas)
    ax[1].axis("off")
    for a, (i, j), (xl, yl) in zip(ax[2:], ((0, 1), (2, 3)), (("x", "y"), ("width", "height"))):
        if len(b):
            a.hist2d(b[:, i], b[:, j], bins=50, range=((0, 1), (0, 1)), cmap="Blues")
        a.set(xlabel=xl, ylabel=yl, xlim=(0, 1), ylim=(0, 1))
    save_path = Path(save_dir) / "labels.jpg"
    return _save(fig, save_path, dpi=200)


def plot_curves(curves: Curves, save_dir: PathLike, names: Names, prefix: str = "") -> None:
    """PR_curve.png, F1_curve.png, P_curve.png and R_curve.png in save_dir from ap_per_class's Curves."""
    names = names_dict(names)
    by_row = dict(enumerate(names.get(int(c), str(int(c))) for c in curves.classes))
    save_dir = Path(save_dir)
    plot_pr_curve(curves.px, curves.py, curves.ap, save_dir / f"{prefix}PR_curve.png", by_row)
    plot_mc_curve(curves.px, curves.f1, save_dir / f"{prefix}F1_curve.png", by_row, ylabel="F1")
    plot_mc_curve(curves.px, curves.p, save_dir / f"{prefix}P_curve.png", by_row, ylabel="Precision")
    plot_mc_curve(curves.px, curves.r, save_dir / f"{prefix}R_curve.png", by_row, ylabel="Recall")


def plot_confusion_matrix(
    matrix: np.ndarray, save_dir: PathLike, names: Sequence[str] = (), normalize: bool = True
) -> Path:
    """confusion_matrix.png in save_dir from a ConfusionMatrix's (nc+1, nc+1) counts; returns its path."""
    return plot_confusion(matrix, Path(save_dir) / "confusion_matrix.png", list(names), normalize)
