"""TensorRT runtime: a serialized .engine (length-prefixed JSON metadata first, as YOLOv5 writes it); needs CUDA."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Tuple

import torch

from utils.deploy.predictor import Predictor, register_backend
from utils.deploy.runtimes.meta import apply_meta, need
from utils.errors import CheckpointError, UserError


def read_engine(f: Path) -> Tuple[Dict[str, Any], bytes]:
    """(metadata, serialized engine) from a .engine file written by export_engine."""
    data = f.read_bytes()
    n = int.from_bytes(data[:4], "little")
    try:
        meta = json.loads(data[4 : 4 + n])
    except ValueError as e:
        raise CheckpointError(f"{f} has no YOLOv5-FLA metadata header: {e}") from e
    return meta, data[4 + n :]


@register_backend(".engine")
class TensorRTBackend(Predictor):
    """A TensorRT engine on a CUDA device: static input 'images', output 'output0' bound to torch tensors."""

    format = "engine"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        super().__init__(device)
        if self.device.type != "cuda" or not torch.cuda.is_available():
            raise UserError(f"{f.name}: TensorRT engines run on a CUDA GPU only (use --device 0)")
        trt = need("tensorrt", "running TensorRT engines", "tensorrt")
        meta, blob = read_engine(f)
        apply_meta(self, meta)
        self.engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(blob)
        if self.engine is None:
            raise CheckpointError(f"cannot load TensorRT engine {f} (built for another TensorRT version or GPU?)")
        self.context = self.engine.create_execution_context()
        self.fp16 = self.engine.get_tensor_dtype("images") == trt.DataType.HALF
        shape = tuple(self.engine.get_tensor_shape("output0"))
        self.out = torch.empty(shape, dtype=torch.float16 if self.fp16 else torch.float32, device=self.device)

    def run(self, im: torch.Tensor) -> torch.Tensor:
        im = im.contiguous()
        self.context.set_tensor_address("images", im.data_ptr())
        self.context.set_tensor_address("output0", self.out.data_ptr())
        self.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream)
        torch.cuda.current_stream(self.device).synchronize()
        return self.out.clone()
