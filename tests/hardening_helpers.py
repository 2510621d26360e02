"""Helpers for the hardening tests (limits, faults, fuzz): a tiny model and dataset, hostile files, in-process CLIs."""

from __future__ import annotations

import io
import logging
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import make_tiny_dataset

TINY_CFG = {
    "nc": 2,
    "depth_multiple": 0.33,
    "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [
        [-1, 1, "Conv", [64, 6, 2, 2]],
        [-1, 1, "Conv", [128, 3, 2]],
        [-1, 1, "C3", [128]],
        [-1, 1, "Conv", [256, 3, 2]],
        [-1, 1, "Conv", [512, 3, 2]],
        [-1, 1, "SPPF", [512, 5]],
    ],
    "head": [[[2, 3, 5], 1, "Detect", ["nc", "anchors"]]],
}


def tiny_model(cfg: dict | None = None):
    from models.yolo import DetectionModel

    model = DetectionModel(cfg or TINY_CFG, verbose=False)
    model.names = ["red", "green"]
    return model


make_dataset = make_tiny_dataset  # the shared tiny dataset (tests/helpers.py), under the name these tests use


def save_tiny(path: Path, model=None, **extra) -> Path:
    """A checkpoint of our format holding the tiny model (or model), plus extra top-level entries."""
    from utils.checkpoint import model_to_dict, save_checkpoint

    return save_checkpoint({"model": model_to_dict(model or tiny_model()), "epoch": -1, **extra}, path)


def bomb_jpeg(path: Path, w: int = 30000, h: int = 30000) -> Path:
    """A small valid JPEG whose header (SOF0) claims w x h pixels."""
    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG")
    b = bytearray(buf.getvalue())
    i = b.index(b"\xff\xc0")
    b[i + 5 : i + 9] = struct.pack(">HH", h, w)
    path.write_bytes(bytes(b))
    return path


def float_tiff(path: Path, h: int = 64, w: int = 64) -> Path:
    """A 32-bit float greyscale TIFF: PIL reads it, OpenCV's imread does not."""
    Image.fromarray(np.random.default_rng(0).random((h, w), dtype=np.float32)).save(path)
    return path


LAST_OUT: list = []  # stdout lines of the last cli() call (the scripts log there)


def cli(module, argv: list, capsys) -> tuple[int, list[str]]:
    """module.main(module.parse_opt(argv)) in-process -> (exit code, stderr lines); argparse errors included."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        module.main(module.parse_opt([str(a) for a in argv]))
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    captured = capsys.readouterr()
    err = captured.err
    LAST_OUT[:] = captured.out.splitlines()
    assert "Traceback" not in err, err[-3000:]
    return code, [ln for ln in err.splitlines() if ln.strip()]


def one_error(lines: list[str]) -> str:
    """The single 'error:' line of a run's stderr (argparse's is '<prog>: error: ...')."""
    errors = [ln for ln in lines if ln.startswith("error: ") or ": error: " in ln]
    if len(errors) != 1:
        pytest.fail(f"expected one error line, got {errors} in {lines[-10:]}")
    return errors[0]
