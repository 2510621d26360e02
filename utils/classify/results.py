"""Classifications: what a hub / Python API classifier returns for one call (top-5 per image, print, pandas, save)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Tuple, Union

import numpy as np
import torch

from utils.classify.predict import annotate, top_k
from utils.paths import increment_path

LOGGER = logging.getLogger(__name__)


class Classifications:
    """Per image: its RGB image (H, W, 3) uint8, file name and (nc,) softmax probabilities; `top5` is
    [(class name, probability)] best first, as classify/predict.py's --save-txt rows."""

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

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> Classifications:
        return Classifications([self.ims[i]], [self.probs[i]], [self.files[i]], self.names, self.times, self.shape)

    def to_list(self) -> List[Classifications]:
        """One Classifications per image."""
        return [self[i] for i in range(len(self))]

    tolist = to_list  # YOLOv5's spelling

    def tables(self) -> List[List[Dict[str, Any]]]:
        """Per image its top-5 rows {class, name, probability}, best first (pandas-free .pandas())."""
        return [
            [{"class": c, "name": self.names.get(c, str(c)), "probability": p} for c, p in top_k(prob)]
            for prob in self.probs
        ]

    def pandas(self) -> List[Any]:
        """Per image a pandas DataFrame of tables() rows; needs pandas (not a requirement of this project)."""
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError("Classifications.pandas() needs pandas (pip install pandas); .tables() does not") from e
        return [pd.DataFrame(rows, columns=["class", "name", "probability"]) for rows in self.tables()]

    def render(self) -> List[np.ndarray]:
        """Copies of the images (RGB uint8 (H, W, 3)) with the top-5 text drawn at (32, 32), as classify/predict.py."""
        out = []
        for im, prob in zip(self.ims, self.probs):
            drawn, _ = annotate(np.ascontiguousarray(im[..., ::-1]), prob, self.names)  # BGR in and out
            out.append(np.ascontiguousarray(drawn[..., ::-1]))
        return out

    def save(self, save_dir: Union[str, Path] = "runs/predict-cls/exp", exist_ok: bool = False) -> Path:
        """Write the annotated images (file names as given, imageN.jpg for arrays) into a new run folder."""
        from PIL import Image

        save_dir = increment_path(save_dir, exist_ok=exist_ok, mkdir=True)
        for f, im in zip(self.files, self.render()):
            Image.fromarray(im).save(save_dir / f)
        LOGGER.info("Saved %d image%s to %s", len(self.files), "s" * (len(self.files) > 1), save_dir)
        return save_dir

    def __str__(self) -> str:
        lines = [
            f"{f}: " + ", ".join(f"{n} {p:.2f}" for n, p in t) for f, t in zip(self.files, self.top5)
        ]  # 'bus.jpg: bees 0.62, ants 0.38'
        pre, inf, post = self.times
        lines.append(f"Speed: {pre:.1f}ms pre-process, {inf:.1f}ms inference, {post:.1f}ms post-process per image")
        return "\n".join(lines)

    def print(self) -> None:
        """Log the per-image top-5 and the speed line."""
        LOGGER.info("%s", self)

    def __repr__(self) -> str:
        return f"<Classifications: {len(self)} image(s), {len(self.names)} classes>"
