"""Hyperparameter evolution's genetic operators (YOLOv5 v7.0's single-parent GA): limits, parent choice, mutation."""

from __future__ import annotations

import random
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

# key: (mutation gain, lower limit, upper limit), the search space of YOLOv5 v7.0. Gain 0 keeps the key fixed;
# a larger gain widens that key's steps (anchors moves twice as far as lr0, momentum a third as far).
META: Dict[str, Tuple[float, float, float]] = {
    "lr0": (1, 1e-5, 1e-1),
    "lrf": (1, 0.01, 1.0),
    "momentum": (0.3, 0.6, 0.98),
    "weight_decay": (1, 0.0, 0.001),
    "warmup_epochs": (1, 0.0, 5.0),
    "warmup_momentum": (1, 0.0, 0.95),
    "warmup_bias_lr": (1, 0.0, 0.2),
    "box": (1, 0.02, 0.2),
    "cls": (1, 0.2, 4.0),
    "cls_pw": (1, 0.5, 2.0),
    "obj": (1, 0.2, 4.0),
    "obj_pw": (1, 0.5, 2.0),
    "iou_t": (0, 0.1, 0.7),
    "anchor_t": (1, 2.0, 8.0),
    "anchors": (2, 2.0, 10.0),
    "fl_gamma": (0, 0.0, 2.0),
    "hsv_h": (1, 0.0, 0.1),
    "hsv_s": (1, 0.0, 0.9),
    "hsv_v": (1, 0.0, 0.9),
    "degrees": (1, 0.0, 45.0),
    "translate": (1, 0.0, 0.9),
    "scale": (1, 0.0, 0.9),
    "shear": (1, 0.0, 10.0),
    "perspective": (0, 0.0, 0.001),
    "flipud": (1, 0.0, 1.0),
    "fliplr": (0, 0.0, 1.0),
    "mosaic": (1, 0.0, 1.0),
    "mixup": (1, 0.0, 1.0),
    "copy_paste": (1, 0.0, 1.0),
}
TOP_N = 5  # parents are drawn from this many best rows
MUTATION_PROB = 0.8  # chance that a key mutates in a trial
SIGMA = 0.2  # scale of the multiplicative step
STEP_RANGE = (0.3, 3.0)  # a key changes by a factor within this range per trial


def clip_hyp(hyp: Mapping[str, float], meta: Mapping[str, Tuple[float, float, float]] = META) -> Dict[str, float]:
    """Every key of meta present in hyp clipped to its [lower, upper] limits and rounded to 5 decimals."""
    out = dict(hyp)
    for k, (_, lo, hi) in meta.items():
        if k in out:
            out[k] = round(min(max(float(out[k]), lo), hi), 5)
    return out


def select_parent(rows: np.ndarray, fit: np.ndarray, rng: random.Random, top_n: int = TOP_N) -> np.ndarray:
    """One parent row from the top_n rows by fitness, drawn with weights (fitness - worst of them + 1e-6)."""
    order = np.argsort(-fit, kind="stable")[: min(top_n, len(fit))]
    w = fit[order] - fit[order].min() + 1e-6
    return rows[order[rng.choices(range(len(order)), weights=w.tolist())[0]]]


def mutation_factors(gains: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(k,) multiplicative factors: each key with gain g mutates with probability 0.8 by
    1 + g * N(0, 1) * U(0, 1) * 0.2 (one U shared by the trial), clipped to [0.3, 3]. Redrawn until one moves."""
    if not np.any(gains > 0):
        return np.ones_like(gains, dtype=float)
    v = np.ones(len(gains))
    while np.all(v == 1):
        mask = rng.random(len(gains)) < MUTATION_PROB
        v = (gains * mask * rng.standard_normal(len(gains)) * rng.random() * SIGMA + 1).clip(*STEP_RANGE)
    return v


def mutate(
    parent: Mapping[str, float],
    keys: Sequence[str],
    rng: np.random.Generator,
    meta: Mapping[str, Tuple[float, float, float]] = META,
) -> Dict[str, float]:
    """A child of parent: keys scaled by mutation_factors (gain from meta, 0 for keys not in it), then clipped."""
    gains = np.array([meta[k][0] if k in meta else 0.0 for k in keys], dtype=float)
    v = mutation_factors(gains, rng)
    child = dict(parent)
    for k, f in zip(keys, v):
        child[k] = float(parent[k]) * float(f)
    return clip_hyp(child, meta)


def evolvable_keys(hyp: Mapping[str, object], meta: Mapping[str, Tuple[float, float, float]] = META) -> List[str]:
    """The hyp keys that evolve.csv records: those in meta, in meta's order (YOLOv5's hyp file order)."""
    return [k for k in meta if k in hyp]
