"""The ImageNet normalisation a classifier applies to its 0-1 RGB input (official YOLOv5 does it in its loader)."""

from __future__ import annotations

import torch
import torch.nn as nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputNormalize(nn.Module):
    """(B, 3, H, W) RGB in [0, 1] -> (x - mean) / std. Its buffers are not saved, so official weights load unchanged.

    Classifiers take 0-1 images like every other model here, so the shared training, validation and prediction
    loops need no per-task input step. `export = True` makes it the identity: exported classifiers take normalised
    input, as official YOLOv5's do (utils/deploy/export.py sets it).
    """

    input_norm = True

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.export = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.export:
            return x
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
