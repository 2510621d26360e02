"""Export a detector to TorchScript / ONNX / OpenVINO with stride and names as metadata; check it against PyTorch."""

from __future__ import annotations

import io
import json
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import torch
import torch.nn as nn

from utils.deploy.backends import EXPORT_FORMAT, DetectMultiBackend
from utils.deploy.export_formats import MORE_FORMATS, export_more
from utils.deploy.export_onnx import ExportWrapper, export_onnx, is_segment, prepare_for_export
from utils.errors import UserError
from utils.safe_write import write_bytes, writing
from utils.torch_utils import select_device

LOGGER = logging.getLogger(__name__)

TORCH_FORMATS = ("torchscript", "onnx", "openvino")
FORMATS = (*TORCH_FORMATS, *MORE_FORMATS)


def _first(y) -> torch.Tensor:
    return y[0] if isinstance(y, (list, tuple)) else y


def export_metadata(model: nn.Module, im: torch.Tensor, dynamic: bool, half: bool) -> dict:
    """What a backend needs to run the exported file: stride, names, input size, flags and our format tag."""
    return {
        "format": EXPORT_FORMAT,
        "stride": int(max(model.stride)),
        "names": [str(n) for n in model.names],
        "imgsz": list(im.shape[2:]),
        "batch": int(im.shape[0]),
        "dynamic": bool(dynamic),
        "half": bool(half),
        "task": model_task(model),
    }


def model_task(model: nn.Module) -> str:
    """'segment', 'classify' or 'detect': what the exported model does (its metadata's task)."""
    return "segment" if is_segment(model) else str(getattr(model, "task", "detect"))


def export_torchscript(model: nn.Module, im: torch.Tensor, file: Path, meta: dict) -> Path:
    """torch.jit.trace the model on im (B, 3, H, W) and save with meta as JSON in _extra_files['config.txt']."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (torch.jit.TracerWarning, FutureWarning, DeprecationWarning))
        ts = torch.jit.trace(ExportWrapper(model), im, strict=False, check_trace=False)  # check_exported compares
    buf = io.BytesIO()  # in memory first: a read-only folder or a full disk is then one line naming the file
    torch.jit.save(ts, buf, _extra_files={"config.txt": json.dumps(meta)})
    return write_bytes(file, buf.getbuffer())


def export_openvino_ir(
    model: nn.Module, im: torch.Tensor, weights: Path, meta: dict, opset: int = 17, dynamic: bool = False
) -> Path:
    """<stem>_openvino_model/ beside weights, converted from a temporary ONNX export (the route YOLOv5 takes)."""
    from utils.deploy.openvino import export_openvino, import_openvino, openvino_folder

    import_openvino()  # fail before the ONNX export when the package is missing
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = export_onnx(model, im, Path(tmp) / f"{weights.stem}.onnx", meta, opset=opset, dynamic=dynamic)
        return export_openvino(onnx_file, openvino_folder(weights), meta, half=bool(meta.get("half")))


def _imgsz(imgsz: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """1 or 2 ints -> (h, w)."""
    size = [imgsz] if isinstance(imgsz, int) else list(imgsz)
    if len(size) not in (1, 2) or min(size) <= 0:
        raise UserError(f"--imgsz takes one or two positive ints, got {imgsz}")
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def check_exported(
    model: nn.Module, im: torch.Tensor, files: Dict[str, Path], device: torch.device, exact: bool = True
) -> Dict[str, float]:
    """Run each exported file once on im and return the max abs difference from the PyTorch output (CoreML: its
    spec is checked instead, as CoreML runs on macOS only). exact (float exports): a difference above 5% of the
    output's range is a UserError (a converter that mis-translated an op)."""
    model.eval()
    with torch.no_grad():
        ref = _first(model(im)).float()
        diffs = {}
        for fmt, f in files.items():
            if fmt == "coreml":
                from utils.deploy.export_coreml import coreml_spec_summary

                LOGGER.info("coreml: spec %s", coreml_spec_summary(f))
                continue
            if fmt == "engine" and device.type != "cuda":
                continue
            y = _first(DetectMultiBackend(f, device=device)(im.float()))
            diffs[fmt] = float((y.to(ref.device) - ref).abs().max())
            LOGGER.info("%s: max abs difference from PyTorch %.3g", fmt, diffs[fmt])
            if exact and diffs[fmt] > 0.05 * max(1.0, float(ref.abs().max())):  # float exports agree to ~1e-4
                raise UserError(f"{fmt} export of {f.name} is wrong: its outputs differ from PyTorch's by up "
                                f"to {diffs[fmt]:.3g} on a blank image (the file is kept for inspection)")  # fmt: skip
    return diffs


def _check_options(include: Sequence[str], dev: torch.device, half: bool, dynamic: bool, int8: bool) -> list:
    """The requested formats, lower-case and once each; UserError on unknown formats or combinations."""
    formats = list(dict.fromkeys(f.lower() for f in include))
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise UserError(f"--include {' '.join(unknown)}: unsupported; choose from {', '.join(FORMATS)}")
    from utils.deploy.export_formats import unavailable

    for f in formats:
        unavailable(f)  # TF.js, Edge TPU, PaddlePaddle: one line before the model is loaded
    torch_half = [f for f in formats if f in TORCH_FORMATS]
    if half and dev.type == "cpu" and torch_half:
        raise UserError(f"--half with {', '.join(torch_half)} needs a CUDA device (e.g. --device 0)")
    if half and dynamic:
        raise UserError("--half and --dynamic cannot be combined")
    if int8 and dynamic:
        raise UserError("--int8 exports are static: drop --dynamic")
    return formats


def _export_torch_format(fmt: str, model, im, weights: Path, meta: dict, opset: int, dynamic: bool, simplify: bool,
                         calib, head: int) -> Path:  # fmt: skip
    """TorchScript / ONNX / OpenVINO (int8 when calib is given: ONNX QDQ or OpenVINO NNCF)."""
    if fmt == "torchscript":
        return export_torchscript(model, im, weights.with_suffix(".torchscript"), meta)
    if fmt == "openvino":
        folder = export_openvino_ir(model, im, weights, meta, opset=opset, dynamic=dynamic)
        if calib is not None:
            from utils.deploy.quantize import quantize_openvino

            quantize_openvino(folder, calib, head)
        return folder
    file = export_onnx(model, im, weights.with_suffix(".onnx"), meta, opset=opset, dynamic=dynamic,
                       simplify=simplify or calib is not None)  # fmt: skip
    if calib is None:
        return file
    from utils.deploy.quantize import float_scopes, quantize_onnx

    return quantize_onnx(file, file.with_name(f"{weights.stem}-int8.onnx"), calib, head, float_scopes(model))


def run_export(
    weights: Union[str, Path],
    imgsz: Union[int, Sequence[int]] = (640, 640),
    batch_size: int = 1,
    device: str = "cpu",
    half: bool = False,
    dynamic: bool = False,
    simplify: bool = False,
    opset: int = 17,
    include: Sequence[str] = ("torchscript",),
    int8: bool = False,
    data: Union[str, Path, None] = None,
    workspace: int = 4,
) -> Dict[str, Path]:
    """Export weights to each format in include, next to the weights file; returns {format: path}.

    int8: static quantisation calibrated on --data images (TFLite, ONNX, OpenVINO; CoreML weights only).
    """
    from models.load import load_model

    t0 = time.time()
    weights = Path(weights)
    dev = select_device(device)
    formats = _check_options(include, dev, half, dynamic, int8)
    h, w = _imgsz(imgsz)
    with writing(weights.parent), tempfile.TemporaryFile(dir=weights.parent):  # a read-only folder fails here, early
        pass
    model = prepare_for_export(load_model(weights, device=dev, fuse=True), dynamic=dynamic)
    gs = int(max(model.stride))
    if h % gs or w % gs:
        from utils.img_size import check_img_size  # late: only the rare path needs it

        h, w = check_img_size((h, w), stride=gs)
    calib = None
    if int8:
        from utils.deploy.calibration import calibration_images

        calib = calibration_images(str(data) if data else None, (h, w), classify=model_task(model) == "classify")
    im = torch.zeros(batch_size, 3, h, w, device=dev)
    with torch.no_grad():
        shape = tuple(_first(model(im)).shape)  # also fills FLA's folded-weight caches, which traces take as constants
    LOGGER.info("PyTorch: starting from %s with output shape %s", weights, shape)
    meta = {**export_metadata(model, im, dynamic, half), "int8": bool(int8)}
    files: Dict[str, Path] = {}
    more = [f for f in formats if f in MORE_FORMATS]
    if more:
        meta_more = {**meta, "dynamic": False}
        files.update(export_more(model, im, weights, meta_more, more, half=half, calib=calib, opset=opset,
                                 workspace=workspace))  # fmt: skip
    torch_formats = [f for f in formats if f in TORCH_FORMATS]
    if half and torch_formats:
        model, im = model.half(), im.half()
        meta = {**meta, "half": True}
    head = len(model.model) - 1
    for fmt in torch_formats:
        LOGGER.info("%s: starting export ...", fmt)
        files[fmt] = _export_torch_format(fmt, model, im, weights, meta, opset, dynamic, simplify, calib, head)
    for fmt, f in files.items():
        size = sum(p.stat().st_size for p in f.rglob("*") if p.is_file()) if f.is_dir() else f.stat().st_size
        LOGGER.info("%s: saved %s (%.1f MB)", fmt, f, size / 1e6)
    check_exported(model.float(), im.float(), files, dev, exact=not (half or int8))
    LOGGER.info("Export complete (%.1fs)\nResults saved to %s", time.time() - t0, weights.resolve().parent)
    return files
