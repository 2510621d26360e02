"""Checks that an exported model's inputs and outputs are a YOLOv5 detector's, so a foreign file is refused in one
line at load (not an IndexError, or worse, nonsense "detections", at the first image)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, List

import numpy as np

from utils.errors import CheckpointError

FLOAT_TYPES = ("tensor(float)", "tensor(float16)")
MAX_STRIDE = 1024


def check_stride(stride: Any, path: Path | str) -> int:
    """The metadata stride as an int in 1..MAX_STRIDE (it rounds --imgsz up: a huge one asks for a huge image)."""
    if isinstance(stride, bool) or not isinstance(stride, (int, float)) or not 1 <= stride <= MAX_STRIDE:
        raise CheckpointError(f"cannot read the metadata of {path}: stride {stride!r} is not in 1..{MAX_STRIDE}")
    return int(stride)


def _detection_output(shape: List[Any], dtype: str, names: list, path: Path, extra: int = 0) -> None:
    """extra: columns after the class scores (a segmentation model's nm mask coefficients)."""
    if dtype not in FLOAT_TYPES:
        raise CheckpointError(f"{path} is not a YOLOv5 detection model: its first output is {dtype}, not float")
    if len(shape) != 3:
        raise CheckpointError(
            f"{path} is not a YOLOv5 detection model: its first output has rank {len(shape)} {shape}; "
            "expected (batch, boxes, 5 + classes)"
        )
    no = shape[2]
    if isinstance(no, int) and (no < 6 or (names and no != 5 + len(names) + extra)):
        plus = f" + {extra} mask coefficients" if extra else ""
        want = (
            f"5 + {len(names)} classes{plus} = {5 + len(names) + extra}"
            if names
            else "at least 6 (x, y, w, h, obj, classes)"
        )
        raise CheckpointError(f"{path} is not a YOLOv5 detection model: its output has {no} columns; expected {want}")


def check_onnx_session(session: Any, names: list, path: Path) -> None:
    """The session takes one image batch (B, 3, H, W) float and gives (B, N, 5 + nc) float first."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if not inputs or not outputs:
        raise CheckpointError(f"{path} is not a YOLOv5 detection model: it has no inputs or no outputs")
    inp = inputs[0]
    fixed_channels = len(inp.shape) == 4 and isinstance(inp.shape[1], int) and inp.shape[1] != 3
    if inp.type not in FLOAT_TYPES or len(inp.shape) != 4 or fixed_channels:
        raise CheckpointError(
            f"{path} is not a YOLOv5 detection model: its input is {inp.type} {inp.shape}; expected float (B, 3, H, W)"
        )
    out = outputs[0]
    if len(out.shape) == 2 and out.type in FLOAT_TYPES and names and out.shape[1] in (len(names), None):
        return  # a classifier: (B, classes) scores, one per name (a foreign rank-2 output is refused below)
    protos = outputs[1].shape if len(outputs) > 1 and len(outputs[1].shape) == 4 else None  # segmentation
    nm = protos[1] if protos is not None and isinstance(protos[1], int) else 0
    _detection_output(list(outputs[0].shape), outputs[0].type, names, path, extra=nm)


def check_prediction(y: np.ndarray, path: Path) -> np.ndarray:
    """A run's output must be (B, N, >= 6) floating point: what the load-time check could not see (dynamic dims)."""
    if isinstance(y, np.ndarray) and y.ndim == 2 and y.dtype.kind == "f":  # a classifier's (B, classes) scores
        return y
    if not isinstance(y, np.ndarray) or y.ndim != 3 or y.shape[2] < 6 or y.dtype.kind != "f":
        shape = getattr(y, "shape", None)
        raise CheckpointError(f"{path} gave an output of shape {shape}; a YOLOv5 detector gives (B, N, 5 + classes)")
    return y
