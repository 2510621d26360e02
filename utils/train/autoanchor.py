"""AutoAnchor: best possible recall of the model's anchors on a dataset, and k-means + evolution of new ones."""

from __future__ import annotations

import logging
from typing import Tuple

import numpy as np
import torch
import torch.nn as nn

from models.yolo import check_anchor_order
from utils.torch_utils import de_parallel

LOGGER = logging.getLogger(__name__)
PREFIX = "AutoAnchor: "
BPR_OK = 0.98  # anchors are kept as they are when at least this share of labels can be matched


def label_wh(dataset, imgsz: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """(n, 2) label widths/heights in pixels at --imgsz (long side), optionally jittered by a 0.9-1.1 scale.

    dataset needs `shapes` (N, 2) image (w, h) and `labels`: a list of (n_i, 5) [cls, x, y, w, h] normalised.
    """
    shapes = np.asarray(dataset.shapes, dtype=np.float64).reshape(-1, 2)
    shapes = imgsz * shapes / shapes.max(1, keepdims=True)  # long side -> imgsz
    if rng is not None:
        shapes = shapes * rng.uniform(0.9, 1.1, size=(shapes.shape[0], 1))
    parts = [np.asarray(lb, dtype=np.float64).reshape(-1, 5)[:, 3:5] * s for s, lb in zip(shapes, dataset.labels)]
    return np.concatenate(parts, 0) if parts else np.zeros((0, 2))


def anchor_metric(anchors: torch.Tensor, wh: torch.Tensor, thr: float) -> Tuple[float, float]:
    """(best possible recall, anchors above threshold per label) for anchors (k, 2) and label sizes (n, 2).

    A label's match with an anchor is min over w, h of min(r, 1/r); it counts when above 1/thr.
    """
    r = wh[:, None] / anchors[None]  # (n, k, 2)
    x = torch.min(r, 1 / r).min(2).values  # (n, k)
    best = x.max(1).values
    return float((best > 1 / thr).float().mean()), float((x > 1 / thr).float().sum(1).mean())


def check_anchors(dataset, model: nn.Module, thr: float = 4.0, imgsz: int = 640) -> bool:
    """Check the model's anchors against the dataset; replace them with evolved ones when BPR < 0.98.

    Returns True when the anchors were replaced. Uses its own seeded generator, leaving global RNGs alone.
    """
    detect = de_parallel(model).model[-1]
    rng = np.random.default_rng(0)
    wh = torch.tensor(label_wh(dataset, imgsz, rng), dtype=torch.float32)
    if not len(wh):
        LOGGER.info(f"{PREFIX}no labels, anchors left as they are")
        return False
    stride = detect.stride.to(detect.anchors.device).view(-1, 1, 1)
    anchors = (detect.anchors.clone() * stride).cpu().view(-1, 2)  # pixels
    bpr, aat = anchor_metric(anchors, wh, thr)
    msg = f"{PREFIX}{aat:.2f} anchors/target, {bpr:.3f} Best Possible Recall (BPR). "
    if bpr > BPR_OK:
        LOGGER.info(f"{msg}Current anchors are a good fit to dataset")
        return False
    LOGGER.info(f"{msg}Anchors are a poor fit to dataset, attempting to improve...")
    new = kmean_anchors(dataset, n=anchors.shape[0], imgsz=imgsz, thr=thr, gen=1000)
    new_bpr = anchor_metric(torch.tensor(new, dtype=torch.float32), wh, thr)[0]
    if new_bpr <= bpr:
        LOGGER.info(f"{PREFIX}Original anchors better than new anchors, proceeding with original anchors")
        return False
    new_t = torch.tensor(new, device=detect.anchors.device).type_as(detect.anchors).view_as(detect.anchors)
    detect.anchors[:] = new_t
    check_anchor_order(detect)
    detect.anchors /= stride
    LOGGER.info(f"{PREFIX}Done (BPR {new_bpr:.4f}); new anchors saved to model. Update model *.yaml to reuse them.")
    return True


def _kmeans_pp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding: each next centre drawn with probability proportional to squared distance."""
    centres = [x[rng.integers(len(x))]]
    for _ in range(1, k):
        d2 = ((x[:, None] - np.array(centres)[None]) ** 2).sum(-1).min(1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(len(x), 1 / len(x))
        centres.append(x[rng.choice(len(x), p=p)])
    return np.array(centres, dtype=np.float64)


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, iters: int = 30, restarts: int = 5) -> np.ndarray:
    """Lloyd k-means of points x (n, d) -> (k, d) centres; best of a few k-means++ starts."""
    best, best_cost = None, np.inf
    for _ in range(restarts):
        centres = _kmeans_pp_init(x, k, rng)
        for _ in range(iters):
            assign = ((x[:, None] - centres[None]) ** 2).sum(-1).argmin(1)
            moved = np.array([x[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(k)])
            if np.allclose(moved, centres):
                break
            centres = moved
        cost = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1).sum()
        if cost < best_cost:
            best, best_cost = centres, cost
    return best


def kmean_anchors(
    dataset, n: int = 9, imgsz: int = 640, thr: float = 4.0, gen: int = 1000, seed: int = 0
) -> np.ndarray:
    """Anchors (n, 2) in pixels, sorted by area: k-means on whitened label sizes, then genetic mutation.

    Fitness = mean over labels of the best match ratio, counting only matches above 1/thr.
    """
    rng = np.random.default_rng(seed)
    wh0 = label_wh(dataset, imgsz)
    small = int((wh0 < 3.0).any(1).sum())
    if small:
        LOGGER.info(f"{PREFIX}WARNING: {small} of {len(wh0)} labels are under 3 pixels in size")
    wh = wh0[(wh0 >= 2.0).any(1)].astype(np.float32)
    wh_t = torch.tensor(wh)

    def fitness(k: np.ndarray) -> float:
        r = wh_t[:, None] / torch.tensor(k, dtype=torch.float32)[None]
        best = torch.min(r, 1 / r).min(2).values.max(1).values
        return float((best * (best > 1 / thr).float()).mean())

    if len(wh) >= n:
        sigma = wh.std(0) + 1e-9
        k = kmeans(wh / sigma, n, rng) * sigma
    else:
        LOGGER.info(f"{PREFIX}too few labels for k-means, starting from random anchors")
        k = np.sort(rng.random(n * 2)).reshape(n, 2) * imgsz
    k = k[np.argsort(k.prod(1))]
    f, mutate_p, sigma = fitness(k), 0.9, 0.1
    for _ in range(gen):
        v = np.ones(k.shape)
        while (v == 1).all():  # make sure something changes
            v = ((rng.random(k.shape) < mutate_p) * rng.random() * rng.standard_normal(k.shape) * sigma + 1).clip(
                0.3, 3
            )
        kg = (k * v).clip(min=2.0)
        fg = fitness(kg)
        if fg > f:
            f, k = fg, kg
    k = k[np.argsort(k.prod(1))]
    LOGGER.info(f"{PREFIX}evolved anchors (fitness {f:.4f}): " + ", ".join(f"{w:.0f},{h:.0f}" for w, h in k))
    return k
