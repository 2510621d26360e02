"""TensorFlow exports via onnx2tf: SavedModel (`<stem>_saved_model/`), TFLite fp32/fp16/int8 and a frozen GraphDef.

The model goes PyTorch -> ONNX (constant-folded with onnxslim) -> onnx2tf (an in-memory Keras model) -> one
SavedModel, from which TFLiteConverter writes only the .tflite asked for. onnx2tf fetches sample images from the
internet for its checks; we hand it local images instead (the --data calibration images, or mid-grey), so nothing
touches the network.
"""

from __future__ import annotations

import io
import json
import logging
import shutil
import tempfile
import zipfile
from contextlib import redirect_stdout
from pathlib import Path
from typing import Dict, Optional

import numpy as np

from utils.deploy.runtimes.meta import need, write_meta_yaml

LOGGER = logging.getLogger(__name__)


def _local_samples(calib: Optional[np.ndarray], h: int, w: int):
    """A stand-in for onnx2tf's download_test_image_data: (20, h, w, 3) float 0-1 NHWC, local images only."""

    def samples() -> np.ndarray:
        if calib is not None:
            x = calib.transpose(0, 2, 3, 1)
            return np.concatenate([x] * (20 // len(x) + 1))[:20]
        return np.full((20, h, w, 3), 0.5, np.float32)

    return samples


def keras_model(onnx_file: Path, calib: Optional[np.ndarray] = None):
    """onnx2tf on a static NCHW ONNX file -> an in-memory Keras model with NHWC input (nothing written: onnx2tf would
    save a SavedModel and convert two TFLite files we may not need; save_saved_model / tflite_bytes do only those)."""
    need("tensorflow", "TensorFlow / TFLite export", "tensorflow-cpu")
    o2t = need("onnx2tf.onnx2tf", "TensorFlow / TFLite export", "onnx2tf")
    from onnx2tf.utils import common_functions

    _, _, h, w = (d.dim_value for d in _onnx_input(onnx_file).type.tensor_type.shape.dim)
    saved = o2t.download_test_image_data, common_functions.download_test_image_data
    o2t.download_test_image_data = common_functions.download_test_image_data = _local_samples(calib, h, w)
    try:
        with tempfile.TemporaryDirectory() as tmp, redirect_stdout(io.StringIO()):
            return o2t.convert(input_onnx_file_path=str(onnx_file), output_folder_path=tmp, not_use_onnxsim=True,
                               verbosity="error", output_signaturedefs=True, disable_model_save=True,
                               replace_to_pseudo_operators=["erf"])  # fmt: skip
    finally:
        o2t.download_test_image_data, common_functions.download_test_image_data = saved


def save_saved_model(model, folder: Path) -> Path:
    """model -> a SavedModel in folder with one 'serving_default' signature taking the NHWC image."""
    tf = need("tensorflow", "TensorFlow / TFLite export", "tensorflow-cpu")
    tf_keras = need("tf_keras", "TensorFlow / TFLite export", "tf_keras")
    archive = tf_keras.export.ExportArchive()
    spec = [tf.TensorSpec(t.shape, t.dtype, t.name) for t in model.inputs]
    archive.add_endpoint(name="serving_default", fn=lambda *inputs: model(inputs), input_signature=spec)
    with redirect_stdout(io.StringIO()):
        archive.write_out(str(folder))
    return folder


def tflite_bytes(saved_model: Path, kind: str) -> bytes:
    """The SavedModel as a .tflite flatbuffer. kind: 'fp32' or 'fp16' (fp16 weights); int8 is tflite_int8's."""
    tf = need("tensorflow", "TFLite export", "tensorflow-cpu")
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    # builtins only (no Flex ops: the LiteRT interpreter has none, so an unsupported op fails here, not at load)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if kind == "fp16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    return conv.convert()


def _onnx_input(onnx_file: Path):
    import onnx

    return onnx.load(str(onnx_file), load_external_data=False).graph.input[0]


def _runs(tflite: bytes, x: np.ndarray) -> bool:
    """Whether the .tflite runs on x (1, 3, H, W) float 0-1 (the interpreter raises on int8 kernels' checks)."""
    from utils.deploy.runtimes.tf import _interpreter

    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "m.tflite"
        f.write_bytes(tflite)
        it = _interpreter(f, None)
        it.allocate_tensors()
        inp = it.get_input_details()[0]
        it.set_tensor(inp["index"], x.transpose(0, 2, 3, 1).astype(inp["dtype"]))
        try:
            it.invoke()
        except RuntimeError:
            return False
    return True


def add_tflite_meta(file: Path, meta: dict) -> Path:
    """Append meta as meta.txt in a zip to the .tflite (YOLOv5's layout; interpreters ignore the trailing zip)."""
    with zipfile.ZipFile(file, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("meta.txt", json.dumps(meta))
    return file


def freeze_graphdef(saved_model: Path, file: Path, meta: dict) -> Path:
    """SavedModel's serving function with variables frozen to constants -> file (.pb) and file.yaml (tensor names)."""
    tf = need("tensorflow", "TF GraphDef export", "tensorflow-cpu")
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(saved_model))  # keep a reference: the signature needs its variables
    frozen = convert_variables_to_constants_v2(loaded.signatures["serving_default"])
    graph_def = frozen.graph.as_graph_def()
    tf.io.write_graph(graph_def, str(file.parent), file.name, as_text=False)
    ins = [t.name for t in frozen.inputs if t.dtype != tf.resource]
    outs = [t.name for t in frozen.outputs]  # every output: segment models have two
    write_meta_yaml({**meta, "pb_inputs": ins, "pb_outputs": outs}, file.with_name(file.name + ".yaml"))
    return file


def export_tf_formats(
    onnx_file: Path, weights: Path, meta: dict, formats: set, half: bool, int8: bool, calib: Optional[np.ndarray]
) -> Dict[str, Path]:
    """saved_model / pb / tflite beside weights from one onnx2tf run; returns {format: path}."""
    folder = weights.with_name(f"{weights.stem}_saved_model")
    shutil.rmtree(folder, ignore_errors=True)
    save_saved_model(keras_model(onnx_file, calib), folder)
    write_meta_yaml(meta, folder / "metadata.yaml")
    files: Dict[str, Path] = {}
    if "saved_model" in formats:
        files["saved_model"] = folder
    if "pb" in formats:
        files["pb"] = freeze_graphdef(folder, weights.with_suffix(".pb"), meta)
    if "tflite" in formats:
        kind = "int8" if int8 else "fp16" if half else "fp32"
        data = tflite_bytes(folder, "fp32" if int8 else kind)
        if int8:  # the fp32 model names the Detect head's ops, which stay float
            from utils.deploy.tflite_int8 import int8_tflite

            data, quant = int8_tflite(folder, calib, data, lambda b: _runs(b, calib[:1]))
        else:
            quant = {}
        tfl = weights.with_name(f"{weights.stem}-{kind}.tflite")
        tfl.write_bytes(data)
        files["tflite"] = add_tflite_meta(tfl, {**meta, "half": kind == "fp16", "int8": int8, "quant": None, **quant})
    return files
