"""CoreML export with coremltools: an ML Program (.mlpackage) with an image input and metadata in the spec."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from pathlib import Path

import torch
import torch.nn as nn

from utils.deploy.runtimes.meta import need

LOGGER = logging.getLogger(__name__)


def _import_coremltools():
    """coremltools without its optional TensorFlow frontend (it crashes beside a torch import on some builds)."""
    blocked = "tensorflow" not in sys.modules
    if blocked:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]
    try:
        return need("coremltools", "CoreML export", "coremltools")
    finally:
        if blocked:
            del sys.modules["tensorflow"]


def export_coreml(model: nn.Module, im: torch.Tensor, weights: Path, meta: dict, half: bool, int8: bool) -> Path:
    """Trace model on im (B, 3, H, W) and convert: input 'image' (RGB 0-255, scaled by 1/255 inside), output 'output0'
    (and the prototypes 'output1' for a segmentation model, as ONNX).

    half: fp16 compute (the ML Program default); else fp32. int8: weights linearly quantised to 8 bits.
    """
    from utils.deploy.export_onnx import ExportWrapper

    ct = _import_coremltools()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ts = torch.jit.trace(ExportWrapper(model), im, strict=False, check_trace=False)  # CoreML: its spec is checked
        mlmodel = ct.convert(
            ts,
            inputs=[ct.ImageType("image", shape=tuple(im.shape), scale=1 / 255, bias=[0.0, 0.0, 0.0])],
            outputs=[ct.TensorType(f"output{i}") for i in range(2 if meta.get("task") == "segment" else 1)],
            convert_to="mlprogram",
            compute_precision=ct.precision.FLOAT16 if half or int8 else ct.precision.FLOAT32,
            minimum_deployment_target=ct.target.iOS15,
        )
        if int8:
            from coremltools.optimize import coreml as cto

            config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
            mlmodel = cto.linear_quantize_weights(mlmodel, config)
    for k, v in meta.items():
        mlmodel.user_defined_metadata[k] = v if isinstance(v, str) else json.dumps(v)
    mlmodel.short_description = f"YOLOv5-FLA {meta.get('task', 'detect')} model"
    file = weights.with_suffix(".mlpackage")
    mlmodel.save(str(file))
    return file


def coreml_spec_summary(file: Path) -> dict:
    """What a CoreML file declares, readable on Linux: input/output names and shapes, and the metadata."""
    ct = _import_coremltools()
    from utils.deploy.runtimes.apple import coreml_meta

    spec = ct.utils.load_spec(str(file))
    inputs = {i.name: list(i.type.imageType.height and [i.type.imageType.height, i.type.imageType.width])
              for i in spec.description.input}  # fmt: skip
    outputs = [o.name for o in spec.description.output]
    return {"inputs": inputs, "outputs": outputs, "meta": coreml_meta(spec)}
