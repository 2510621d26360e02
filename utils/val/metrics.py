"""Detection metrics as YOLOv5 computes them: box matching, AP per class, confusion matrix, fitness."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import torch

from utils.boxes import box_iou

LOGGER = logging.getLogger(__name__)

_trapezoid = getattr(np, "trapezoid", None) or np.trapz  # numpy 2 renamed trapz


def fitness(x: np.ndarray) -> np.ndarray:
    """Model fitness from (n, >=4) rows [P, R, mAP50, mAP50-95, ...] -> (n,) = 0.1 * mAP50 + 0.9 * mAP50-95."""
    w = np.array([0.0, 0.0, 0.1, 0.9])
    return (np.asarray(x)[:, :4] * w).sum(1)


def smooth(y: np.ndarray, f: float = 0.05) -> np.ndarray:
    """Box-filter (n,) y with a window of fraction f of its length (odd size), edges padded with end values."""
    nf = round(len(y) * f * 2) // 2 + 1
    pad = np.ones(nf // 2)
    yp = np.concatenate((pad * y[0], y, pad * y[-1]), 0)
    return np.convolve(yp, np.ones(nf) / nf, mode="valid")


def _greedy_matches(iou: torch.Tensor, ok: torch.Tensor, resort: bool = False) -> np.ndarray:
    """One-to-one (label, detection, iou) rows (k, 3) among the (m, n) pairs where ok, best IoU first.

    As YOLOv5: sort by IoU descending, keep the first row per detection, then the first row per label; after the
    first pass rows are in detection order, so a label goes to its lowest-index (highest-conf) candidate unless
    resort (the confusion matrix re-sorts by IoU before the second pass).
    """
    li, di = torch.where(ok)
    if not len(li):
        return np.zeros((0, 3))
    matches = torch.stack((li.double(), di.double(), iou[li, di].double()), 1).cpu().numpy()
    if len(matches) > 1:
        matches = matches[matches[:, 2].argsort(kind="stable")[::-1]]
        matches = matches[np.unique(matches[:, 1], return_index=True)[1]]
        if resort:
            matches = matches[matches[:, 2].argsort(kind="stable")[::-1]]
        matches = matches[np.unique(matches[:, 0], return_index=True)[1]]
    return matches


def match_predictions(detections: torch.Tensor, labels: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """Which detections are true positives at each IoU threshold.

    detections (n, 6) [x1, y1, x2, y2, conf, cls], labels (m, 5) [cls, x1, y1, x2, y2], iouv (t,) thresholds
    -> correct (n, t) bool. Per threshold, same-class pairs with IoU >= t are matched greedily one-to-one.
    """
    if not (detections.shape[0] and labels.shape[0]):
        return torch.zeros((detections.shape[0], iouv.shape[0]), dtype=torch.bool, device=iouv.device)
    return match_iou(box_iou(labels[:, 1:], detections[:, :4]), labels[:, 0], detections[:, 5], iouv)


def match_iou(iou: torch.Tensor, label_cls: torch.Tensor, det_cls: torch.Tensor, iouv: torch.Tensor) -> torch.Tensor:
    """match_predictions for any IoU (box or mask): iou (m, n) labels x detections, classes (m,) and (n,)
    -> correct (n, t) bool."""
    correct = np.zeros((iou.shape[1], iouv.shape[0]), dtype=bool)
    same_class = label_cls[:, None] == det_cls[None]
    for k, t in enumerate(iouv.tolist()):
        matches = _greedy_matches(iou, (iou >= t) & same_class)
        correct[matches[:, 1].astype(int), k] = True
    return torch.tensor(correct, dtype=torch.bool, device=iouv.device)


def compute_ap(recall: np.ndarray, precision: np.ndarray) -> Tuple[float, np.ndarray, np.ndarray]:
    """AP from a (n,) recall / precision curve (by descending conf): 101-point envelope, trapezoid rule.

    Returns ap, the precision envelope mpre (n+2,) and the padded recall mrec (n+2,).
    """
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0]))
    mpre = np.flip(np.maximum.accumulate(np.flip(mpre)))  # precision envelope
    x = np.linspace(0, 1, 101)
    ap = float(_trapezoid(np.interp(x, mrec, mpre), x))
    return ap, mpre, mrec


@dataclass
class Curves:
    """What the PR / F1 / P / R plots draw: px (1000,) the x grid; py c arrays (1000,) of precision over recall at
    IoU 0.5; ap (c, t); f1, p, r (c, 1000) over confidence; classes (c,) the class index of each row."""

    px: np.ndarray
    py: list
    ap: np.ndarray
    f1: np.ndarray
    p: np.ndarray
    r: np.ndarray
    classes: np.ndarray


def ap_per_class(
    tp: np.ndarray,
    conf: np.ndarray,
    pred_cls: np.ndarray,
    target_cls: np.ndarray,
    eps: float = 1e-16,
    curves: bool = False,
) -> Tuple:
    """Per-class P, R, F1 and AP at each IoU threshold, as YOLOv5.

    tp (n, t) bool, conf (n,), pred_cls (n,), target_cls (m,) -> tp (c,), fp (c,), p (c,), r (c,), f1 (c,),
    ap (c, t), classes (c,) for the c classes present in target_cls. P, R, F1 are read at the confidence that
    maximises the smoothed mean F1 over classes. With curves, an eighth item is the `Curves` to draw (this
    module never draws: `utils.val.plots.plot_curves` does).
    """
    order = np.argsort(-conf, kind="stable")
    tp, conf, pred_cls = tp[order], conf[order], pred_cls[order]
    classes, nt = np.unique(target_cls, return_counts=True)
    nc = classes.shape[0]
    px, py = np.linspace(0, 1, 1000), []
    ap, p, r = np.zeros((nc, tp.shape[1])), np.zeros((nc, 1000)), np.zeros((nc, 1000))
    for ci, c in enumerate(classes):
        i = pred_cls == c
        n_l, n_p = nt[ci], i.sum()
        if n_p == 0 or n_l == 0:
            continue
        fpc = (1 - tp[i]).cumsum(0)  # (n_p, t) cumulative false positives
        tpc = tp[i].cumsum(0)
        recall = tpc / (n_l + eps)
        r[ci] = np.interp(-px, -conf[i], recall[:, 0], left=0)  # conf decreases along the curve
        precision = tpc / (tpc + fpc)
        p[ci] = np.interp(-px, -conf[i], precision[:, 0], left=1)
        for j in range(tp.shape[1]):
            ap[ci, j], mpre, mrec = compute_ap(recall[:, j], precision[:, j])
            if curves and j == 0:
                py.append(np.interp(px, mrec, mpre))  # precision at mAP@0.5
    f1 = 2 * p * r / (p + r + eps)
    drawn = Curves(px, py, ap.copy(), f1, p, r, classes.astype(int)) if curves else None
    i = smooth(f1.mean(0), 0.1).argmax() if nc else 0
    p, r, f1 = p[:, i], r[:, i], f1[:, i]
    tp = (r * nt).round()
    fp = (tp / (p + eps) - tp).round()
    out = (tp, fp, p, r, f1, ap, classes.astype(int))
    return (*out, drawn) if curves else out


class ConfusionMatrix:
    """(nc+1, nc+1) counts: rows = predicted class (last = background), columns = true class (last = background)."""

    def __init__(self, nc: int, conf: float = 0.25, iou_thres: float = 0.45):
        self.matrix = np.zeros((nc + 1, nc + 1))
        self.nc = nc
        self.conf = conf
        self.iou_thres = iou_thres

    def process_batch(self, detections: torch.Tensor | None, labels: torch.Tensor) -> None:
        """Add one image: detections (n, 6) [x1, y1, x2, y2, conf, cls] or None, labels (m, 5) [cls, x1..y2].

        With detections None, labels may be (m,) classes only: every label is a missed (background) prediction.
        """
        if detections is None:
            gt = labels.reshape(-1) if labels.ndim == 1 else labels[:, 0]
            np.add.at(self.matrix, (self.nc, gt.int().cpu().numpy()), 1)  # every label missed
            return
        detections = detections[detections[:, 4] > self.conf]
        gt = labels[:, 0].int().cpu().numpy()
        dc = detections[:, 5].int().cpu().numpy()
        iou = box_iou(labels[:, 1:], detections[:, :4])
        matches = _greedy_matches(iou, iou > self.iou_thres, resort=True)  # one-to-one (label, detection) pairs
        m0, m1 = matches[:, 0].astype(int), matches[:, 1].astype(int)
        np.add.at(self.matrix, (dc[m1], gt[m0]), 1)  # matched: correct or confused class
        missed = np.ones(len(gt), bool)
        missed[m0] = False
        np.add.at(self.matrix, (self.nc, gt[missed]), 1)  # missed: background predicted
        alarm = np.ones(len(dc), bool)
        alarm[m1] = False
        np.add.at(self.matrix, (dc[alarm], self.nc), 1)  # false alarm on background

    def tp_fp(self) -> Tuple[np.ndarray, np.ndarray]:
        """True and false positives per class (nc,), (nc,) from the matrix."""
        tp = self.matrix.diagonal()
        fp = self.matrix.sum(1) - tp
        return tp[:-1], fp[:-1]
