"""ONNX export (the graph every converter starts from): input 'images' (B, 3, H, W), output 'output0', metadata."""

from __future__ import annotations

import io
import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Union

import torch
import torch.nn as nn

from utils.safe_write import write_bytes

LOGGER = logging.getLogger(__name__)


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
        elif getattr(m, "input_norm", False):  # classifiers: exported files take normalised input, as official's
            m.export = True
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


@contextmanager
def normalized_boxes(model: nn.Module, h: int, w: int) -> Iterator[None]:
    """While inside, the Detect/Segment head of model gives xywh in 0-1 of the (h, w) image instead of pixels, as
    official YOLOv5's TF models: int8 TFLite quantises the output with one scale, so pixel boxes (0-640) would leave
    the 0-1 scores a few levels. Folded into the stride and anchor constants (no extra op)."""
    head = model.model[-1]
    head.box_scale = torch.tensor([w, h], dtype=torch.float32, device=next(model.parameters()).device)
    try:
        yield
    finally:
        head.box_scale = None


def is_segment(model: nn.Module) -> bool:
    """True for a model whose last layer is a Segment head."""
    from models.yolo import Segment

    layers = getattr(model, "model", None)
    return isinstance(layers, nn.Sequential) and isinstance(layers[-1], Segment)


def export_onnx(
    model: nn.Module,
    im: torch.Tensor,
    file: Path,
    meta: dict,
    opset: int = 17,
    dynamic: bool = False,
    simplify: bool = False,
) -> Path:
    """Export to ONNX: input 'images' (B, 3, H, W), output 'output0' (B, N, 5 + nc); meta in metadata_props."""
    import onnx

    outputs = ["output0", "output1"] if is_segment(model) else ["output0"]
    axes = None
    if dynamic:
        axes = {"images": {0: "batch", 2: "height", 3: "width"}, "output0": {0: "batch", 1: "anchors"}}
        if len(outputs) > 1:
            axes["output1"] = {0: "batch", 2: "mask_height", 3: "mask_width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (torch.jit.TracerWarning, FutureWarning, DeprecationWarning))
        buf = io.BytesIO()  # in memory first: a read-only folder or a full disk is one line naming the file
        _onnx_export(ExportWrapper(model), im, buf, opset, axes, outputs)
    proto = onnx.load_model_from_string(buf.getvalue())
    onnx.checker.check_model(proto)
    for k, v in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = k, v if isinstance(v, str) else json.dumps(v)
    if simplify:
        proto = _slim(proto)
    return write_bytes(file, proto.SerializeToString())


def _onnx_export(
    model: nn.Module, im: torch.Tensor, file: Union[Path, io.BytesIO], opset: int, axes, outputs=("output0",)
) -> None:
    """torch.onnx.export with the TorchScript-based exporter (no onnxscript needed)."""
    torch.onnx.export(
        model,
        (im,),
        file if isinstance(file, io.BytesIO) else str(file),
        opset_version=opset,
        do_constant_folding=True,
        input_names=["images"],
        output_names=list(outputs),
        dynamic_axes=axes,
        dynamo=False,
    )


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
