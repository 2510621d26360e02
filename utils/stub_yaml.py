"""Model yaml rows read back from the inert stubs of an official ClassificationModel pickle (which stores no yaml).

Official `classify/train.py --model yolov5s.pt` slices a detector and keeps only its layers; each layer still carries
its type and `from`, and its child modules their shapes, which is all a yaml row needs. Pure: touches no model code.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List

from utils.errors import UserError


def _mods(stub: Any) -> Dict[str, Any]:
    return stub.__dict__.get("_modules") or {}


def _attr(stub: Any, *path: str) -> Any:
    """stub._modules[path[0]]._modules[...]; the last name may be a plain attribute."""
    for name in path[:-1]:
        stub = _mods(stub)[name]
    last = path[-1]
    return _mods(stub)[last] if last in _mods(stub) else stub.__dict__[last]


def _first(v: Any) -> int:
    return int(v[0]) if isinstance(v, (list, tuple)) else int(v)


def _conv_row(layer: Any) -> list:
    """Conv: [c2, k, s, p, g]."""
    c = _attr(layer, "conv")
    d = c.__dict__
    return [int(d["out_channels"]), _first(d["kernel_size"]), _first(d["stride"]), _first(d["padding"]),
            int(d.get("groups", 1))]  # fmt: skip


def _c3_row(layer: Any) -> list:
    """C3: [c2, shortcut, g, e] (the repeat count goes in the row's `number`)."""
    c2 = int(_attr(layer, "cv3", "conv").__dict__["out_channels"])
    c_ = int(_attr(layer, "cv1", "conv").__dict__["out_channels"])
    blocks = list(_mods(_attr(layer, "m")).values())
    shortcut = bool(blocks[0].__dict__.get("add", True)) if blocks else True
    return [c2, shortcut, 1, c_ / c2]


def _sppf_row(layer: Any) -> list:
    """SPPF: [c2, k]."""
    c2 = int(_attr(layer, "cv2", "conv").__dict__["out_channels"])
    return [c2, _first(_attr(layer, "m").__dict__["kernel_size"])]


def _classify_row(layer: Any) -> list:
    """Classify: [nc] (its 1280-wide conv is fixed)."""
    return [int(_attr(layer, "linear").__dict__["out_features"])]


def _concat_row(layer: Any) -> list:
    return [int(layer.__dict__.get("d", 1))]


ROWS: Dict[str, Callable[[Any], list]] = {
    "Conv": _conv_row,
    "C3": _c3_row,
    "SPPF": _sppf_row,
    "Classify": _classify_row,
    "Concat": _concat_row,
}


def _number(name: str, layer: Any) -> int:
    return len(_mods(_attr(layer, "m"))) if name == "C3" else 1


def classifier_yaml_from_stub(model: Any) -> dict:
    """An official ClassificationModel stub -> a classifier yaml dict (widths and depths explicit, multiples 1)."""
    seq = _mods(model).get("model")
    if seq is None:
        raise UserError("checkpoint classifier has no 'model' layers")
    rows: List[list] = []
    for layer in _mods(seq).values():
        kind = str(layer.__dict__.get("type") or getattr(layer, "stub_name", "")).rsplit(".", 1)[-1]
        if kind not in ROWS:
            raise UserError(f"official classifier layer {kind!r} cannot be rebuilt (known: {', '.join(ROWS)})")
        try:
            args = ROWS[kind](layer)
            rows.append([layer.__dict__.get("f", -1), _number(kind, layer), kind, args])
        except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError) as e:
            raise UserError(f"official classifier layer {kind}: unexpected structure ({e!r})") from e
    if not rows or rows[-1][2] != "Classify":
        raise UserError("checkpoint classifier does not end in a Classify head")
    nc = rows[-1][3][0]
    rows[-1][3] = ["nc"]
    return {"nc": nc, "depth_multiple": 1.0, "width_multiple": 1.0, "backbone": rows[:-1], "head": rows[-1:]}
