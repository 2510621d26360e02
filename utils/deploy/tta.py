"""Test-time augmentation (flips and scales) for detect.py, val.py and the hub API alike."""

from __future__ import annotations

import torch
import torch.nn as nn


def augmented_forward(model, im: torch.Tensor) -> torch.Tensor | None:
    """Augmented pred (B, N', 5+nc) float from DetectionModel.forward(augment=True); None when the model has none.

    model: a DetectionModel, or a DetectMultiBackend over .pt weights (its .model is one DetectionModel or an
    Ensemble ModuleList, whose members' predictions are concatenated). ONNX and TorchScript backends give None.
    im: (B, 3, H, W) float 0-1, cast to the model's dtype.
    """
    net = model if hasattr(model, "_forward_augment") else getattr(model, "model", None)
    members = list(net) if isinstance(net, nn.ModuleList) else [net]
    if not all(isinstance(m, nn.Module) and hasattr(m, "_forward_augment") for m in members):
        return None
    x = im.to(next(members[0].parameters()).dtype)
    return torch.cat([m(x, augment=True)[0].float() for m in members], 1)
