"""The formats beyond TorchScript / ONNX / OpenVINO: TF (SavedModel, GraphDef, TFLite), CoreML, NCNN, TensorRT,
PaddlePaddle, and the ones this machine cannot build (TF.js, Edge TPU) as one-line errors naming what is missing."""

from __future__ import annotations

import logging
import shutil
import tempfile
from contextlib import nullcontext
from pathlib import Path
from typing import Dict, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from utils.errors import UserError

LOGGER = logging.getLogger(__name__)

TF_FORMATS = ("saved_model", "pb", "tflite")
MORE_FORMATS = (*TF_FORMATS, "coreml", "ncnn", "engine", "tfjs", "edgetpu", "paddle")
VIA_ONNX = (*TF_FORMATS, "ncnn", "engine")


def unavailable(fmt: str) -> None:
    """A one-line UserError for a format whose converter is not installable here; returns when it could run."""
    if fmt == "edgetpu" and not shutil.which("edgetpu_compiler"):
        raise UserError("--include edgetpu needs Coral's edgetpu_compiler (a Debian package from Google's Coral "
                        "repository, not on PyPI); it is not installed here")  # fmt: skip
    if fmt == "tfjs":
        try:
            import tensorflowjs  # noqa: F401
        except ImportError as e:
            raise UserError("--include tfjs needs the tensorflowjs package (pip install tensorflowjs; it pins "
                            "numpy < 2.2, so it is not part of requirements-export.txt)") from e  # fmt: skip
    if fmt in ("tfjs", "edgetpu"):
        raise UserError(f"--include {fmt}: its converter is installed, but this version does not call it yet")
    if fmt == "paddle":
        import importlib.util

        missing = [pip for mod, pip in (("paddle", "paddlepaddle"), ("x2paddle", "x2paddle"))
                   if importlib.util.find_spec(mod) is None]  # fmt: skip
        if missing:
            raise UserError(f"--include paddle needs {' and '.join(missing)}, which is not installed: pip install "
                            f"{' '.join(missing)} (see requirements-export.txt)")  # fmt: skip


def _static_onnx(model: nn.Module, im: torch.Tensor, folder: Path, name: str, meta: dict, opset: int) -> Path:
    """A constant-folded static ONNX export (what the converters take) in folder."""
    from utils.deploy.export_onnx import export_onnx

    return export_onnx(model, im, folder / f"{name}.onnx", meta, opset=opset, dynamic=False, simplify=True)


def export_more(model: nn.Module, im: torch.Tensor, weights: Path, meta: dict, formats: Sequence[str],
                half: bool = False, calib: Optional[np.ndarray] = None, opset: int = 17,
                workspace: int = 4) -> Dict[str, Path]:  # fmt: skip
    """Export model (fp32, eval, Detect in export mode) on im (B, 3, H, W) to formats beside weights.

    half: fp16 TFLite / NCNN / CoreML / TensorRT (PaddlePaddle stays fp32); calib (k, 3, H, W) float 0-1 given =
    int8 (TFLite, CoreML).
    Returns {format: path}.
    """
    for fmt in formats:
        unavailable(fmt)
    files: Dict[str, Path] = {}
    int8 = calib is not None
    if "coreml" in formats:
        from utils.deploy.export_coreml import export_coreml

        files["coreml"] = export_coreml(model, im, weights, meta, half, int8)
    if "paddle" in formats:
        from utils.deploy.export_paddle import export_paddle

        files["paddle"] = export_paddle(model, im, weights, meta)
    if not any(f in VIA_ONNX for f in formats):
        return files
    with tempfile.TemporaryDirectory() as tmp:
        tf = [f for f in formats if f in TF_FORMATS]
        tf_onnx, norm = None, False
        if tf:
            from utils.deploy.export_onnx import normalized_boxes
            from utils.deploy.export_tf import export_tf_formats

            norm = int8 and meta.get("task") != "classify"  # int8: boxes in 0-1 like the scores (normalized_boxes)
            with normalized_boxes(model, *im.shape[2:]) if norm else nullcontext():
                tf_onnx = _static_onnx(model, im, Path(tmp), f"{weights.stem}-tf", meta, opset)
            tf_meta = {**meta, "xywh": "normalized"} if norm else meta
            files.update(export_tf_formats(tf_onnx, weights, tf_meta, set(tf), half, int8, calib))
        if not any(f in ("ncnn", "engine") for f in formats):
            return files
        # the TF chain's static ONNX is the same file unless its boxes were normalised for int8
        onnx_file = tf_onnx if tf_onnx and not norm else _static_onnx(model, im, Path(tmp), weights.stem, meta, opset)
        if "ncnn" in formats:
            from utils.deploy.export_ncnn import export_ncnn

            files["ncnn"] = export_ncnn(onnx_file, weights, meta, half)
        if "engine" in formats:
            from utils.deploy.export_engine import export_engine

            files["engine"] = export_engine(onnx_file, weights, meta, half, workspace)
    return files
