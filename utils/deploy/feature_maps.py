"""Feature maps of a DetectionModel's stages saved as grayscale PNG grids and .npy arrays (detect.py --visualize)."""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Callable, Dict, List, Sequence

import numpy as np
import torch
import torch.nn as nn

from utils.safe_write import write_image

LOGGER = logging.getLogger(__name__)


def feature_grid(t: torch.Tensor, n: int = 32, cols: int = 8, scale: int = 1) -> np.ndarray:
    """The first n channels of t (C, H, W) as one uint8 grayscale image.

    Each channel is min-max normalised on its own (a constant channel is black, never NaN; non-finite values count
    as 0), enlarged scale times by pixel repetition, and placed row by row in a grid of min(cols, C) columns with
    1-px white lines between maps. Returns (rows * (H*scale + 1) - 1, columns * (W*scale + 1) - 1).
    """
    if t.ndim != 3 or t.shape[0] == 0:
        raise ValueError(f"feature_grid needs a (C, H, W) tensor with C >= 1, got shape {tuple(t.shape)}")
    x = t[:n].detach().float().cpu()
    x = torch.where(torch.isfinite(x), x, torch.zeros_like(x))
    lo = x.amin(dim=(1, 2), keepdim=True)
    hi = x.amax(dim=(1, 2), keepdim=True)
    x = (x - lo) / (hi - lo).clamp_min(1e-12)  # (c, H, W) in [0, 1]; constant channel -> 0
    maps = (x * 255).round().to(torch.uint8).numpy()
    if scale > 1:
        maps = maps.repeat(scale, axis=1).repeat(scale, axis=2)
    c, h, w = maps.shape
    ncols = min(cols, c)
    nrows = math.ceil(c / ncols)
    grid = np.full((nrows * (h + 1) - 1, ncols * (w + 1) - 1), 255, np.uint8)
    for k in range(c):
        r, q = divmod(k, ncols)
        grid[r * (h + 1) : r * (h + 1) + h, q * (w + 1) : q * (w + 1) + w] = maps[k]
    return grid


def stage_name(layer: nn.Module, index: int) -> str:
    """'stage{i}_{ModuleType}_features' for a layer of DetectionModel.model."""
    kind = str(getattr(layer, "type", type(layer).__name__)).split(".")[-1]
    return f"stage{getattr(layer, 'i', index)}_{kind}_features"


class FeatureMapWriter:
    """Forward hooks on every stage of a DetectionModel (the Detect head excepted) that save its output per image.

    Use as a context manager; the hooks are removed on exit. Before a forward pass, target(names) gives the folder
    name (under save_dir) of each batch element; target(None) makes the following passes save nothing. A stage
    whose output is 4-D (B, C, H, W) writes <folder>/stage{i}_{Type}_features.png (the first n channels as a
    feature_grid) and .npy (those channels, float32 (min(C, n), H, W)) once per target() call, so the extra
    passes of test-time augmentation are not saved. A name used twice gets a '_2', '_3', ... suffix.
    """

    def __init__(self, model: nn.Module, save_dir: Path, n: int = 32, cols: int = 8, min_cell: int = 32):
        self.model, self.save_dir = model, Path(save_dir)
        self.n, self.cols, self.min_cell = n, cols, min_cell
        self._folders: List[Path] | None = None
        self._done: set = set()
        self._used: Dict[str, int] = {}
        self._handles: list = []

    def __enter__(self) -> FeatureMapWriter:
        from models.yolo import Detect  # local: only .pt inference needs the model code

        for k, layer in enumerate(self.model.model):
            if not isinstance(layer, Detect):
                self._handles.append(layer.register_forward_hook(self._hook(stage_name(layer, k))))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._used:
            LOGGER.info("Feature maps of %d image(s) saved to %s/<image>/", len(self._used), self.save_dir)

    def target(self, names: Sequence[str] | None) -> None:
        """Folder names for the batch elements of the next forward pass; None: do not save it."""
        self._folders = None if names is None else [self.save_dir / self._unique(s) for s in names]
        self._done = set()

    def _unique(self, name: str) -> str:
        k = self._used.get(name, 0) + 1
        self._used[name] = k
        return name if k == 1 else self._unique(f"{name}_{k}")

    def _hook(self, name: str) -> Callable:
        def hook(module: nn.Module, inputs, output) -> None:
            if self._folders is None or name in self._done:
                return
            if isinstance(output, torch.Tensor) and output.ndim == 4:
                self._done.add(name)
                self._save(name, output)

        return hook

    def _save(self, name: str, out: torch.Tensor) -> None:
        """out (B, C, H, W): element b goes to self._folders[b]."""
        h, w = out.shape[2:]
        scale = max(1, math.ceil(self.min_cell / max(h, w, 1)))  # small maps (e.g. 2x2) stay visible
        for folder, x in zip(self._folders, out):
            x = x[: self.n].detach().float().cpu()  # (c, H, W)
            folder.mkdir(parents=True, exist_ok=True)
            write_image(folder / f"{name}.png", feature_grid(x, self.n, self.cols, scale))  # any file name, atomic
            np.save(folder / f"{name}.npy", x.numpy())
