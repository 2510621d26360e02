"""Export a detector to TorchScript / ONNX / OpenVINO with stride and names as metadata; check it against PyTorch."""

from __future__ import annotations

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
from utils.errors import UserError
from utils.torch_utils import select_device

LOGGER = logging.getLogger(__name__)

FORMATS = ("torchscript", "onnx", "openvino")


def prepare_for_export(model: nn.Module, dynamic: bool = False) -> nn.Module:
    """Eval mode, no grads, Detect returns only the (B, N, 5 + nc) prediction and rebuilds grids from input shape."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    for m in model.modules():
        if hasattr(m, "export") and hasattr(m, "anchors"):  # Detect
            m.export = True
            if hasattr(m, "dynamic"):
                m.dynamic = dynamic
    return model


class ExportWrapper(nn.Module):
    """Exposes only forward(images) so tracing sees no optional flags: (B, 3, H, W) -> (B, N, 5 + nc)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(False)  # exporters restore the wrapper's mode afterwards, recursively: keep it eval

    def forward(self, images: torch.Tensor):
        y = self.model(images)
        if is_segment(self.model):  # (pred (B, N, 5 + nc + nm), protos (B, nm, H / 4, W / 4)), as official
            return y[0], y[1]
        return y[0] if isinstance(y, (list, tuple)) else y


def is_segment(model: nn.Module) -> bool:
    """True for a model whose last layer is a Segment head."""
    from models.yolo import Segment

    return isinstance(model.model[-1], Segment)


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
        "task": "segment" if is_segment(model) else "detect",
    }


def export_torchscript(model: nn.Module, im: torch.Tensor, file: Path, meta: dict) -> Path:
    """torch.jit.trace the model on im (B, 3, H, W) and save with meta as JSON in _extra_files['config.txt']."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (torch.jit.TracerWarning, FutureWarning, DeprecationWarning))
        ts = torch.jit.trace(ExportWrapper(model), im, strict=False)
    ts.save(str(file), _extra_files={"config.txt": json.dumps(meta)})
    return file


def export_onnx(
    model: nn.Module,
    im: torch.Tensor,
    file: Path,
    meta: dict,
    opset: int = 17,
    dynamic: bool = False,
    simplify: bool = False,
) -> Path:
    """Export to ONNX: input 'images' (B, 3, H, W), output 'output0' (B, N, 5 + nc) (segmentation: also 'output1',
    the prototypes (B, nm, H / 4, W / 4), as official); meta in metadata_props."""
    import onnx

    outputs = ["output0", "output1"] if is_segment(model) else ["output0"]
    axes = None
    if dynamic:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
        if len(outputs) > 1:
            axes["output1"] = {0: "batch", 2: "mask_height", 3: "mask_width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (torch.jit.TracerWarning, FutureWarning, DeprecationWarning))
        _onnx_export(ExportWrapper(model), im, file, opset, axes, outputs)
    proto = onnx.load(str(file))
    onnx.checker.check_model(proto)
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    if simplify:
        proto = _slim(proto)
    onnx.save(proto, str(file))
    return file


def _onnx_export(model: nn.Module, im: torch.Tensor, file: Path, opset: int, axes, outputs=("output0",)) -> None:
    """torch.onnx.export with the TorchScript-based exporter (no onnxscript needed)."""
    torch.onnx.export(
        model,
        (im,),
        str(file),
        opset_version=opset,
        do_constant_folding=True,
        input_names=["images"],
        output_names=list(outputs),
        dynamic_axes=axes,
        dynamo=False,
    )


def export_openvino_ir(
    model: nn.Module, im: torch.Tensor, weights: Path, meta: dict, opset: int = 17, dynamic: bool = False
) -> Path:
    """<stem>_openvino_model/ beside weights, converted from a temporary ONNX export (the route YOLOv5 takes)."""
    from utils.deploy.openvino import export_openvino, import_openvino, openvino_folder

    import_openvino()  # fail before the ONNX export when the package is missing
    with tempfile.TemporaryDirectory() as tmp:
        onnx_file = export_onnx(model, im, Path(tmp) / f"{weights.stem}.onnx", meta, opset=opset, dynamic=dynamic)
        return export_openvino(onnx_file, openvino_folder(weights), meta, half=bool(meta.get("half")))


def _slim(proto):
    """Simplify with onnxslim when it is installed; metadata is carried over."""
    try:
        import onnxslim
    except ImportError:
        LOGGER.warning("--simplify: onnxslim is not installed, skipping (pip install onnxslim)")
        return proto
    props = {p.key: p.value for p in proto.metadata_props}
    slim = onnxslim.slim(proto)
    present = {p.key for p in slim.metadata_props}
    for k, v in props.items():
        if k not in present:
            entry = slim.metadata_props.add()
            entry.key, entry.value = k, v
    return slim


def _imgsz(imgsz: Union[int, Sequence[int]]) -> Tuple[int, int]:
    """1 or 2 ints -> (h, w)."""
    size = [imgsz] if isinstance(imgsz, int) else list(imgsz)
    if len(size) not in (1, 2) or min(size) <= 0:
        raise UserError(f"--imgsz takes one or two positive ints, got {imgsz}")
    return (size[0], size[0]) if len(size) == 1 else (size[0], size[1])


def check_exported(
    model: nn.Module, im: torch.Tensor, files: Dict[str, Path], device: torch.device
) -> Dict[str, float]:
    """Run each exported file once on im and return the max abs difference from the PyTorch output."""
    model.eval()
    with torch.no_grad():
        ref = _first(model(im)).float()
        diffs = {}
        for fmt, f in files.items():
            y = _first(DetectMultiBackend(f, device=device)(im))
            diffs[fmt] = float((y.to(ref.device) - ref).abs().max())
            LOGGER.info("%s: max abs difference from PyTorch %.3g", fmt, diffs[fmt])
    return diffs


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
) -> Dict[str, Path]:
    """Export weights to each format in include, next to the weights file; returns {format: path}."""
    from models.load import load_model

    t0 = time.time()
    weights = Path(weights)
    unknown = [f for f in include if f.lower() not in FORMATS]
    if unknown:
        raise UserError(f"--include {' '.join(unknown)}: unsupported; choose from {', '.join(FORMATS)}")
    dev = select_device(device)
    if half and dev.type == "cpu":
        raise UserError("--half needs a CUDA device (e.g. --device 0)")
    if half and dynamic:
        raise UserError("--half and --dynamic cannot be combined")
    h, w = _imgsz(imgsz)
    model = prepare_for_export(load_model(weights, device=dev, fuse=True), dynamic=dynamic)
    gs = int(max(model.stride))
    if h % gs or w % gs:
        from utils.img_size import check_img_size  # late: only the rare path needs it

        h, w = check_img_size((h, w), stride=gs)
    im = torch.zeros(batch_size, 3, h, w, device=dev)
    if half:
        model, im = model.half(), im.half()
    with torch.no_grad():
        shape = tuple(_first(model(im)).shape)
    LOGGER.info("PyTorch: starting from %s with output shape %s", weights, shape)
    meta = export_metadata(model, im, dynamic, half)
    files: Dict[str, Path] = {}
    for fmt in dict.fromkeys(f.lower() for f in include):
        file = weights.with_suffix(f".{fmt}")
        LOGGER.info("%s: starting export ...", fmt)
        if fmt == "torchscript":
            files[fmt] = export_torchscript(model, im, file, meta)
        elif fmt == "openvino":
            files[fmt] = export_openvino_ir(model, im, weights, meta, opset=opset, dynamic=dynamic)
        else:
            files[fmt] = export_onnx(model, im, file, meta, opset=opset, dynamic=dynamic, simplify=simplify)
        size = sum(f.stat().st_size for f in files[fmt].glob("*")) if files[fmt].is_dir() else files[fmt].stat().st_size
        LOGGER.info("%s: saved %s (%.1f MB)", fmt, files[fmt], size / 1e6)
    check_exported(model, im, files, dev)
    LOGGER.info("Export complete (%.1fs)\nResults saved to %s", time.time() - t0, weights.resolve().parent)
    return files
