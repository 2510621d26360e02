"""Box and mask figures of a segmentation validation: per-class AP for both, the results row and official fitness."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from utils.val.metrics import ap_per_class

METRIC_NAMES = (
    "metrics/precision(B)", "metrics/recall(B)", "metrics/mAP_0.5(B)", "metrics/mAP_0.5:0.95(B)",
    "metrics/precision(M)", "metrics/recall(M)", "metrics/mAP_0.5(M)", "metrics/mAP_0.5:0.95(M)",
)  # fmt: skip
LOSS_NAMES = ("box_loss", "seg_loss", "obj_loss", "cls_loss")


@dataclass
class Figures:
    """One kind (boxes or masks): mean P, R, mAP50, mAP50-95 and the per-class arrays (ordered as ap_class)."""

    mp: float = 0.0
    mr: float = 0.0
    map50: float = 0.0
    map: float = 0.0
    p: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap50: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ap_class: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))

    @property
    def mean(self) -> Tuple[float, float, float, float]:
        return self.mp, self.mr, self.map50, self.map

    def class_row(self, c: int) -> Tuple[float, float, float, float]:
        """(P, R, mAP50, mAP50-95) of class c, zeros when it has no labels."""
        i = np.flatnonzero(self.ap_class == c)
        return (0.0,) * 4 if not len(i) else (self.p[i[0]], self.r[i[0]], self.ap50[i[0]], self.ap[i[0]])


def figures(tp: np.ndarray, conf: np.ndarray, pred_cls: np.ndarray, target_cls: np.ndarray, plot_to: Path | None,
            names: Dict[int, str], prefix: str) -> Figures:  # fmt: skip
    """ap_per_class for one kind; with plot_to, its PR / F1 / P / R curves as {prefix}PR_curve.png etc."""
    out = Figures()
    if not tp.any():
        return out
    _, _, p, r, _, ap, ap_class, *curves = ap_per_class(tp, conf, pred_cls, target_cls, curves=plot_to is not None)
    if plot_to is not None:
        from utils.val.plots import plot_curves  # late: plotting pulls in matplotlib

        plot_curves(curves[0], plot_to, names, prefix=prefix)
    out.p, out.r, out.ap50, out.ap, out.ap_class = p, r, ap[:, 0], ap.mean(1), ap_class
    out.mp, out.mr, out.map50, out.map = (float(x.mean()) for x in (p, r, ap[:, 0], ap.mean(1)))
    return out


@dataclass
class SegMetrics:
    """A segmentation validation summary (the task contract's Metrics): boxes, masks, counts and speeds."""

    box: Figures = field(default_factory=Figures)
    mask: Figures = field(default_factory=Figures)
    nt: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))  # (nc,) instances per class
    seen: int = 0
    names: Dict[int, str] = field(default_factory=dict)
    speeds: Tuple[float, ...] = (0.0, 0.0, 0.0)  # pre-process, inference, NMS + masks ms per image
    losses: Tuple[float, ...] = ()  # mean validation (box, seg, obj, cls) when a criterion ran
    coco: Dict[str, Dict[str, float]] | None = None  # {'bbox': {...}, 'segm': {...}} when COCO scoring ran

    @property
    def row(self) -> Tuple[float, ...]:
        """Box P, R, mAP50, mAP50-95, then mask P, R, mAP50, mAP50-95 (official results.csv order)."""
        return (*self.box.mean, *self.mask.mean)

    @property
    def fitness(self) -> float:
        """Official seg fitness: 0.1 * mAP50 + 0.9 * mAP50-95 of boxes plus the same of masks."""
        w = np.array([0.0, 0.0, 0.1, 0.9, 0.0, 0.0, 0.1, 0.9])
        return float((np.array(self.row) * w).sum())

    @property
    def maps(self) -> np.ndarray:
        """(nc,) box + mask mAP50-95 per class (official: for image weights), the mean where a class is absent."""
        nc = len(self.nt)
        out = np.zeros(nc) + self.box.map + self.mask.map
        for i, c in enumerate(self.box.ap_class):
            out[c] = self.box.ap[i] + self.mask.ap[i]
        return out

    def per_class(self) -> Dict[str, Dict[str, float]]:
        """{name: {class, instances, box: [P, R, mAP50, mAP50-95], mask: [...]}} for the classes with labels."""
        return {
            self.names.get(int(c), str(int(c))): {
                "class": int(c),
                "instances": int(self.nt[c]),
                "box": [float(x) for x in self.box.class_row(c)],
                "mask": [float(x) for x in self.mask.class_row(c)],
            }
            for c in self.box.ap_class.tolist()
        }

    def to_dict(self) -> dict:
        """Plain JSON: the row under its metric names, per-class figures, fitness and speeds."""
        return {
            "images": self.seen,
            "instances": int(self.nt.sum()),
            "box": dict(zip(("P", "R", "mAP50", "mAP50-95"), self.box.mean)),
            "mask": dict(zip(("P", "R", "mAP50", "mAP50-95"), self.mask.mean)),
            "metrics": dict(zip(METRIC_NAMES, self.row)),
            "classes": self.per_class(),
            "fitness": self.fitness,
            "speeds": list(self.speeds),
            "losses": dict(zip(LOSS_NAMES, self.losses)),
            "coco": self.coco,
            "names": {str(k): v for k, v in self.names.items()},
        }
