"""Model yaml limits: types and ranges checked before anything is built, so no file can tie up the machine.

A model dict comes from a user's yaml or from the yaml stored inside a checkpoint; both pass through here. The
limits sit far above any real YOLOv5 model (yolov5x6: 33 layers, 12 repeats, 1280 channels, 141M parameters) and
far below what would exhaust memory or time. Each failure is one UserError naming the key or the layer.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

import torch.nn as nn

from utils.errors import UserError

MAX_LAYERS = 512  # backbone + head rows
MAX_REPEATS = 100  # a row's number after depth_multiple
MAX_CHANNELS = 8192  # a layer's output channels after width_multiple
MAX_PARAMS = 500_000_000  # the whole model
MAX_NC = 100_000  # classes
MAX_CH = 64  # input channels
MAX_KERNEL = 64  # a convolution's or pooling's kernel size
MULTIPLE_RANGE = (1e-3, 16.0)  # depth_multiple and width_multiple
MAX_ANCHOR_LEVELS, MAX_ANCHORS = 16, 64  # Detect levels, anchors per level
MAX_ARG = 1_000_000  # any number in a row's args


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _multiple(d: dict, key: str, where: str) -> float:
    v = d.get(key, 1.0)
    lo, hi = MULTIPLE_RANGE
    if not _is_number(v) or not math.isfinite(v) or not lo <= v <= hi:
        raise UserError(f"{where}: '{key}' must be a number in [{lo}, {hi}], got {v!r}")
    return float(v)


def _check_anchors(anchors: Any, where: str) -> None:
    if anchors is None:
        return
    if _is_number(anchors):
        if not isinstance(anchors, int) or not 1 <= anchors <= MAX_ANCHORS:
            raise UserError(f"{where}: 'anchors' as a count must be an int in [1, {MAX_ANCHORS}], got {anchors!r}")
        return
    if not isinstance(anchors, (list, tuple)) or not 1 <= len(anchors) <= MAX_ANCHOR_LEVELS:
        raise UserError(f"{where}: 'anchors' must be a list of 1-{MAX_ANCHOR_LEVELS} levels, got {anchors!r:.80}")
    sizes = set()
    for level in anchors:
        ok = isinstance(level, (list, tuple)) and 2 <= len(level) <= 2 * MAX_ANCHORS and len(level) % 2 == 0
        if not ok or not all(_is_number(a) and math.isfinite(a) and 0 < a <= MAX_ARG for a in level):
            raise UserError(f"{where}: each 'anchors' level must be w,h pairs of positive numbers, got {level!r:.80}")
        sizes.add(len(level))
    if len(sizes) != 1:
        raise UserError(f"{where}: every 'anchors' level needs the same number of anchors")


def _check_numbers(x: Any, i: int, where: str, depth: int = 0) -> None:
    """Every number in a row's args is finite and within +-MAX_ARG; nesting is shallow."""
    if depth > 4:
        raise UserError(f"{where}: layer {i}: args nested too deeply")
    if isinstance(x, dict):
        x = list(x.values())
    if isinstance(x, (list, tuple)):
        if len(x) > 4 * MAX_ANCHOR_LEVELS * MAX_ANCHORS:
            raise UserError(f"{where}: layer {i}: args too long ({len(x)} items)")
        for v in x:
            _check_numbers(v, i, where, depth + 1)
    elif _is_number(x) and (not math.isfinite(x) or abs(x) > MAX_ARG):
        raise UserError(f"{where}: layer {i}: argument {x!r} out of range (finite, at most {MAX_ARG:g} in size)")


def validate_model_dict(d: Any, where: str = "model yaml") -> tuple[float, float]:
    """Check a model dict's keys, types and ranges; returns (depth_multiple, width_multiple). UserError otherwise."""
    if not isinstance(d, dict):
        raise UserError(f"{where}: expected a mapping, got {type(d).__name__}")
    gd, gw = _multiple(d, "depth_multiple", where), _multiple(d, "width_multiple", where)
    nc = d.get("nc")
    if not isinstance(nc, int) or isinstance(nc, bool) or not 1 <= nc <= MAX_NC:
        raise UserError(f"{where}: 'nc' must be an int in [1, {MAX_NC}], got {nc!r:.80}")
    ch = d.get("ch", 3)
    if not isinstance(ch, int) or isinstance(ch, bool) or not 1 <= ch <= MAX_CH:
        raise UserError(f"{where}: 'ch' must be an int in [1, {MAX_CH}], got {ch!r:.80}")
    _check_anchors(d.get("anchors"), where)
    for key in ("backbone", "head"):
        if not isinstance(d.get(key), list):
            raise UserError(f"{where}: needs a '{key}' list")
    rows = d["backbone"] + d["head"]
    if not 1 <= len(rows) <= MAX_LAYERS:
        raise UserError(f"{where}: {len(rows)} layers; between 1 and {MAX_LAYERS} are allowed")
    for i, row in enumerate(rows):
        if isinstance(row, (list, tuple)) and len(row) == 4:
            _check_numbers(row[3], i, where)
            n = row[1]
            if _is_number(n) and (not math.isfinite(n) or n > MAX_REPEATS):
                raise UserError(f"{where}: layer {i}: 'number' {n!r} is above the limit of {MAX_REPEATS}")
    return gd, gw


def repeats(i: int, n: int, gd: float) -> int:
    """A row's number after depth_multiple (YOLOv5: max(round(n * gd), 1) when n > 1), within MAX_REPEATS."""
    n_ = max(round(n * gd), 1) if n > 1 else n
    if n_ > MAX_REPEATS:
        raise UserError(f"layer {i}: 'number' {n} x depth_multiple {gd} = {n_} repeats; the limit is {MAX_REPEATS}")
    return n_


def check_channels(i: int, c2: int, rule_is_detect: bool) -> None:
    """A layer's output channels after width_multiple are within 1..MAX_CHANNELS (Detect has none)."""
    if not rule_is_detect and not 1 <= c2 <= MAX_CHANNELS:
        raise UserError(f"layer {i}: {c2} output channels; between 1 and {MAX_CHANNELS} are allowed")


def _pairs(v: Any) -> Iterable[int]:
    return v if isinstance(v, (tuple, list)) else (v,)


def check_layer(i: int, name: str, mods: list[nn.Module]) -> int:
    """Inspect a layer built on the meta device (no memory): conv and pooling geometry, and its parameter count."""
    for m in (s for mod in mods for s in mod.modules()):
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.AvgPool2d)):
            k, s = _pairs(m.kernel_size), _pairs(m.stride)
            if not all(isinstance(v, int) and 1 <= v <= MAX_KERNEL for v in (*k, *s)):
                raise UserError(f"layer {i}: {name} kernel {m.kernel_size} / stride {m.stride} must be 1..{MAX_KERNEL}")
            if not all(isinstance(v, int) and v >= 0 for v in _pairs(m.padding)):
                raise UserError(f"layer {i}: {name} padding {m.padding} must be non-negative")
        if isinstance(m, nn.Upsample) and not all(
            _is_number(v) and 0 < v <= MAX_KERNEL for v in _pairs(m.scale_factor if m.size is None else 1)
        ):
            raise UserError(f"layer {i}: {name} scale_factor {m.scale_factor} must be in (0, {MAX_KERNEL}]")
        if isinstance(m, nn.Upsample) and m.size is not None:
            raise UserError(f"layer {i}: {name} takes a scale_factor, not a fixed size")
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)) and not all(1 <= v <= MAX_KERNEL for v in _pairs(m.dilation)):
            raise UserError(f"layer {i}: {name} dilation {m.dilation} must be 1..{MAX_KERNEL}")
    return sum(p.numel() for mod in mods for p in mod.parameters())


def check_total_params(i: int, total: int) -> None:
    if total > MAX_PARAMS:
        raise UserError(f"layer {i}: the model would have {total:,} parameters; the limit is {MAX_PARAMS:,}")
