"""Classifications: what a hub / Python API classifier returns for one call (top-5 per image, print, pandas, save)."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from utils.classify.predict import annotate, top_k
from utils.deploy.results import ImageResults

LOGGER = logging.getLogger(__name__)


class Classifications(ImageResults):
    """Per image: its RGB image (H, W, 3) uint8, file name and (nc,) softmax probabilities; `top5` is
    [(class name, probability)] best first, as classify/predict.py's --save-txt rows."""

    SAVE_DIR = "runs/predict-cls/exp"
    COLUMNS = ["class", "name", "probability"]

    def __init__(
        self,
        ims: List[np.ndarray],
        probs: List[torch.Tensor],
        files: List[str],
        names: Dict[int, str],
        times: Tuple[float, float, float] = (0.0, 0.0, 0.0),
        shape: tuple = (),
    ):
        self.ims, self.probs, self.files, self.names = ims, probs, files, names
        self.times, self.shape = times, shape
        self.top5: List[List[Tuple[str, float]]] = [
            [(names.get(i, str(i)), p) for i, p in top_k(prob)] for prob in probs
        ]

    def __getitem__(self, i: int) -> Classifications:
        return Classifications([self.ims[i]], [self.probs[i]], [self.files[i]], self.names, self.times, self.shape)

    def tables(self) -> List[List[Dict[str, Any]]]:
        """Per image its top-5 rows {class, name, probability}, best first (pandas-free .pandas())."""
        return [
            [{"class": c, "name": self.names.get(c, str(c)), "probability": p} for c, p in top_k(prob)]
            for prob in self.probs
        ]

    def render(self) -> List[np.ndarray]:
        """Copies of the images (RGB uint8 (H, W, 3)) with the top-5 text drawn at (32, 32), as classify/predict.py."""
        out = []
        for im, prob in zip(self.ims, self.probs):
            drawn, _ = annotate(np.ascontiguousarray(im[..., ::-1]), prob, self.names)  # BGR in and out
            out.append(np.ascontiguousarray(drawn[..., ::-1]))
        return out

    def __str__(self) -> str:
        lines = [
            f"{f}: " + ", ".join(f"{n} {p:.2f}" for n, p in t) for f, t in zip(self.files, self.top5)
        ]  # 'bus.jpg: bees 0.62, ants 0.38'
        pre, inf, post = self.times
        lines.append(f"Speed: {pre:.1f}ms pre-process, {inf:.1f}ms inference, {post:.1f}ms post-process per image")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Classifications: {len(self)} image(s), {len(self.names)} classes>"
