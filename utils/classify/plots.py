"""Classification pictures: a grid of images, each with its label (official train_images.jpg / test_images.jpg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from utils.deploy.annotate import Annotator
from utils.deploy.predict_io import write_image


def image_grid(imgs: torch.Tensor, labels: Sequence[str], path: Path, tile: int = 128) -> Path:
    """imgs (B, 3, H, W) float 0-1 or uint8 RGB -> one BGR jpg of tile x tile cells, labels written top-left."""
    n = len(imgs)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    grid = np.full((rows * tile, cols * tile, 3), 255, np.uint8)
    x = imgs.float() * (255 if imgs.is_floating_point() else 1)
    x = torch.nn.functional.interpolate(x, size=(tile, tile), mode="bilinear", align_corners=False)
    x = x.clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()[..., ::-1]  # (B, tile, tile, 3) BGR
    for i, im in enumerate(x):
        r, c = divmod(i, cols)
        grid[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile] = im
    ann = Annotator(grid, font_size=max(tile // 10, 10), pil=True)
    for i, label in enumerate(labels):
        r, c = divmod(i, cols)
        ann.text((c * tile + 3, r * tile + 2), str(label))
    write_image(Path(path), ann.result())
    return Path(path)
