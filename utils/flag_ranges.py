"""argparse types that range-check numeric flags at parse time: a bad value is one usage error (exit 2).

`in_range(int, 0)` accepts 0, 1, ...; `in_range(float, 0, 1)` accepts [0, 1] (nan is refused); `IMGSZ` is a
positive image side up to MAX_IMGSZ (a larger letterboxed image cannot fit in memory with any model);
`onnx_opset` an opset the installed torch's ONNX exporter can write.
"""

from __future__ import annotations

import argparse
from typing import Callable, Union

Number = Union[int, float]
MAX_IMGSZ = 8192  # pixels per side: a 8192x8192 letterbox is 200 MB and its first activations several GB


def _show(x: Number) -> str:
    return f"{x:g}" if isinstance(x, float) else str(x)


def in_range(kind: type, lo: Number | None = None, hi: Number | None = None) -> Callable[[str], Number]:
    """An argparse `type=` that parses kind (int or float) and requires lo <= value <= hi (either end open)."""

    def parse(text: str) -> Number:
        try:
            value = kind(text)
        except ValueError:
            want = "an integer" if kind is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {want}, got {text!r}") from None
        ok = value == value and (lo is None or value >= lo) and (hi is None or value <= hi)
        if not ok:
            if hi is None:
                want = f"at least {_show(lo)}"
            elif lo is None:
                want = f"at most {_show(hi)}"
            else:
                want = f"in [{_show(lo)}, {_show(hi)}]"
            raise argparse.ArgumentTypeError(f"must be {want}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its own messages
    return parse


IMGSZ = in_range(int, 1, MAX_IMGSZ)
FRACTION = in_range(float, 0.0, 1.0)
NON_NEGATIVE = in_range(int, 0)
POSITIVE = in_range(int, 1)
NON_NEGATIVE_FLOAT = in_range(float, 0.0)  # learning rates, weight decay (nan refused)


def onnx_opsets() -> tuple[int, int]:
    """(lowest, highest) ONNX opset that torch.onnx.export(dynamo=False) of the installed torch writes."""
    try:
        from torch.onnx import _constants as c

        return int(c.ONNX_MIN_OPSET), int(getattr(c, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", c.ONNX_MAX_OPSET))
    except (ImportError, AttributeError):  # a torch without those names: the versions torch 2.x supports
        return 7, 17


def onnx_opset(text: str) -> int:
    """argparse `type=` for --opset: an integer the installed exporter supports."""
    lo, hi = onnx_opsets()
    return in_range(int, lo, hi)(text)
