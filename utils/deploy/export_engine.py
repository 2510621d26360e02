"""TensorRT export: ONNX -> serialized engine (`<stem>.engine`, length-prefixed JSON metadata first); CUDA only."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from utils.deploy.runtimes.meta import need
from utils.errors import UserError

LOGGER = logging.getLogger(__name__)


def export_engine(onnx_file: Path, weights: Path, meta: dict, half: bool, workspace: int = 4) -> Path:
    """Build an engine from onnx_file on the current GPU (fp16 with half); workspace in GiB."""
    if not torch.cuda.is_available():
        raise UserError("--include engine: TensorRT builds engines on a CUDA GPU, and none is available here")
    trt = need("tensorrt", "TensorRT export", "tensorrt")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_file)):
        raise UserError(f"TensorRT cannot parse {onnx_file.name}: {parser.get_error(0)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace) << 30)
    if half:
        config.set_flag(trt.BuilderFlag.FP16)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise UserError("TensorRT could not build the engine (see its log above)")
    head = json.dumps(meta).encode()
    file = weights.with_suffix(".engine")
    with open(file, "wb") as f:
        f.write(len(head).to_bytes(4, "little") + head + bytes(blob))
    return file
