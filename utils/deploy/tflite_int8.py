"""int8 TFLite with a float Detect decode: the layers up to the head's 1x1 convs are int8, the decode stays float.

A fully int8 TFLite gives the whole decode (sigmoid, grid, anchors, the concat of boxes with scores) the output's one
int8 scale: ~1.35 / 255, i.e. boxes in steps of 1.4 px at 256 px and scores in steps of 0.005, which cost yolov5n
0.11 mAP50-95 on coco8. TFLite's selective quantisation (the QuantizationDebugger's denylist) keeps the ops from the
head's convs to the outputs float, as the ONNX and OpenVINO int8 exports keep their Detect head.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np

LOGGER = logging.getLogger(__name__)
CONVS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL")


def _ops(tflite: bytes) -> tuple:
    """(ops, {tensor index: name}, output tensor indices) of a float .tflite, read by the LiteRT interpreter."""
    from utils.deploy.runtimes.tf import _interpreter

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "float.tflite"
        f.write_bytes(tflite)
        it = _interpreter(f, None)
        ops = it._get_ops_details()
        names = {t["index"]: t["name"] for t in it.get_tensor_details()}
        outs = [o["index"] for o in it.get_output_details()]
    return ops, names, outs


def head_nodes(tflite: bytes) -> List[str]:
    """Names of the output tensors of the ops between the last convs and the model's outputs, those convs included:
    walking back from each output, every op is taken up to and including a conv (the head's 1x1 convs)."""
    ops, names, outs = _ops(tflite)
    producer: Dict[int, dict] = {t: op for op in ops for t in op["outputs"]}
    todo = list(outs)
    seen, picked = set(), []
    while todo:
        t = todo.pop()
        op = producer.get(t)
        if op is None or op["index"] in seen:
            continue
        seen.add(op["index"])
        conv = op["op_name"] in CONVS
        picked += [names[o] for o in op["outputs"]]
        if not conv:
            todo += [int(i) for i in op["inputs"] if i >= 0]
    return picked


def representative(calib: np.ndarray) -> Callable:
    """calib (k, 3, H, W) float 0-1 -> TFLite's representative dataset: one (1, H, W, 3) NHWC image at a time."""
    nhwc = np.ascontiguousarray(calib.transpose(0, 2, 3, 1), dtype=np.float32)
    return lambda: ([nhwc[i : i + 1]] for i in range(len(nhwc)))


def _converter(saved_model: Path, calib: Optional[np.ndarray]):
    """TFLiteConverter of saved_model with builtin ops only (LiteRT has no Flex ops); int8 calibrated on calib."""
    import tensorflow as tf

    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    ops = tf.lite.OpsSet
    conv.target_spec.supported_ops = [ops.TFLITE_BUILTINS_INT8, ops.TFLITE_BUILTINS]
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    if calib is not None:
        conv.representative_dataset = representative(calib)
    return conv


def _debugger(saved_model: Path, calib: np.ndarray, nodes: List[str]):
    """A QuantizationDebugger of saved_model calibrated on calib whose ops producing nodes, and every DIV, stay float
    (an int8 divisor can round to zero: FLA's int8 model could not run)."""
    import tensorflow as tf

    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes, denylisted_ops=["DIV"])
    return tf.lite.experimental.QuantizationDebugger(
        converter=_converter(saved_model, calib), debug_dataset=representative(calib),
        debug_options=options,
    )  # fmt: skip


def int8_tflite(saved_model: Path, calib: np.ndarray, float_tflite: bytes, runs: Callable[[bytes], bool]) -> tuple:
    """(.tflite bytes, meta) for --int8: int8 weights and activations, except the Detect head (from its 1x1 convs to
    the outputs) and DIV ops (FLA's), which stay float. float_tflite: the fp32 .tflite of saved_model (it names the
    head's ops); runs: whether a .tflite runs. Where the model cannot run, int8 weights with float activations."""
    head = head_nodes(float_tflite)
    data = _debugger(saved_model, calib, head).get_nondebug_quantized_model()
    if runs(data):
        LOGGER.info("tflite int8: the %d ops of the Detect head stay float", len(head))
        return data, {"quant": "full", "float_ops": len(head)}
    LOGGER.warning("tflite int8: the int8 model cannot run; writing int8 weights with float activations (dynamic "
                   "range) instead")  # fmt: skip
    return _converter(saved_model, None).convert(), {"quant": "dynamic_range"}
