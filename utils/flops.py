"""GFLOPs as YOLOv5 prints them (thop-style, 2 x ops at 640x640), plus the attention matmuls that hooks miss."""

from __future__ import annotations

import logging

import torch
import torch.nn as nn

LOGGER = logging.getLogger(__name__)


def _conv_ops(m: nn.Conv2d, x: torch.Tensor, y: torch.Tensor) -> float:
    """thop: output elements x (c_in / groups) x kernel area MACs; the bias is not counted."""
    return y.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]


def _linear_ops(m: nn.Linear, x: torch.Tensor, y: torch.Tensor) -> float:
    return y.numel() * m.in_features


def _norm_ops(m: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """thop: 2 ops per element to normalise, doubled when affine (so 4 per element for YOLOv5's BatchNorm)."""
    affine = getattr(m, "affine", False) or getattr(m, "elementwise_affine", False)
    return x.numel() * (4 if affine else 2)


def _upsample_ops(m: nn.Upsample, x: torch.Tensor, y: torch.Tensor) -> float:
    return y.numel()


_HOOKS = (
    (nn.Conv2d, _conv_ops),
    (nn.Linear, _linear_ops),
    ((nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm), _norm_ops),
    (nn.Upsample, _upsample_ops),
)


def mha_extra_macs(m: nn.MultiheadAttention, n: int, batch: int) -> float:
    """MACs of nn.MultiheadAttention on n tokens: in-projection 3NC^2, Q K^T and A V 2N^2C, out-projection NC^2."""
    c = m.embed_dim
    return batch * (4 * n * c * c + 2 * n * n * c)


def layer_ops(model: nn.Module, imgsz: int | tuple = 640, probe: int | None = None) -> list[float]:
    """Ops (MACs, thop units) per top-level layer of model.model at imgsz (int or (h, w)).

    Like YOLOv5 the network runs once on a small probe image (max stride, at least 32) and the hook counts
    are scaled by the area ratio; attention matmuls (quadratic for softmax) are evaluated at the scaled size.
    """
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    stride = getattr(model, "stride", None)
    s = probe or max(int(stride.max()) if stride is not None else 32, 32)
    ry, rx = h / s, w / s
    layers = list(model.model) if hasattr(model, "model") else [model]
    counts = [0.0 for _ in layers]
    owner = {id(sub): i for i, layer in enumerate(layers) for sub in layer.modules()}
    handles = []

    def hook(m: nn.Module, inp: tuple, out) -> None:
        x = inp[0] if inp else None
        total = 0.0
        for kind, fn in _HOOKS:
            if isinstance(m, kind) and isinstance(out, torch.Tensor):
                total += fn(m, x, out) * ry * rx
        if hasattr(m, "extra_macs") and isinstance(x, torch.Tensor) and x.dim() == 4:
            b, c, hh, ww = x.shape
            total += m.extra_macs((b, c, round(hh * ry), round(ww * rx)))
        if isinstance(m, nn.MultiheadAttention):  # (N, B, C) tokens, fused projections: no Linear hook fires
            total += mha_extra_macs(m, round(x.shape[0] * ry * rx), x.shape[1])
        counts[owner[id(m)]] += total

    for m in model.modules():
        if id(m) in owner:
            handles.append(m.register_forward_hook(hook))
    p = next(model.parameters())
    ch = model.yaml.get("ch", 3) if isinstance(getattr(model, "yaml", None), dict) else 3
    training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, ch, s, s, device=p.device, dtype=p.dtype))
    finally:
        for hd in handles:
            hd.remove()
        model.train(training)
    return counts


def model_gflops(model: nn.Module, imgsz: int | tuple = 640) -> float:
    """GFLOPs (2 x MACs, thop conventions calibrated so stock YOLOv5 models print the official figures)."""
    return 2 * sum(layer_ops(model, imgsz)) / 1e9
