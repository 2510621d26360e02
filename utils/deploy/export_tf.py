"""TensorFlow exports via onnx2tf: SavedModel (`<stem>_saved_model/`), TFLite fp32/fp16/int8 and a frozen GraphDef.

The model goes PyTorch -> ONNX (constant-folded with onnxslim) -> onnx2tf, which writes the SavedModel and the
.tflite files in one pass. onnx2tf fetches sample images from the internet for its checks; we hand it local images
instead (the --data calibration images, or mid-grey), so nothing touches the network.
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


def run_onnx2tf(onnx_file: Path, out: Path, calib: Optional[np.ndarray], int8: bool) -> Path:
    """onnx2tf on a static NCHW ONNX file -> out/ (saved_model.pb, <name>_float32/_float16[_integer_quant].tflite)."""
    need("tensorflow", "TensorFlow / TFLite export", "tensorflow-cpu")
    o2t = need("onnx2tf.onnx2tf", "TensorFlow / TFLite export", "onnx2tf")
    from onnx2tf.utils import common_functions

    _, _, h, w = (d.dim_value for d in _onnx_input(onnx_file).type.tensor_type.shape.dim)
    fake = _local_samples(calib, h, w)
    saved = o2t.download_test_image_data, common_functions.download_test_image_data
    o2t.download_test_image_data = common_functions.download_test_image_data = fake
    kwargs = {}
    with tempfile.TemporaryDirectory() as tmp:
        if int8:
            npy = Path(tmp) / "calib.npy"
            np.save(npy, calib.transpose(0, 2, 3, 1))
            spec = [["images", str(npy), [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]]  # NHWC 0-1, mean 0, std 1
            kwargs = dict(output_integer_quantized_tflite=True, quant_type="per-channel",
                          custom_input_op_name_np_data_path=spec)  # fmt: skip
        try:
            with redirect_stdout(io.StringIO()):
                o2t.convert(input_onnx_file_path=str(onnx_file), output_folder_path=str(out),
                            not_use_onnxsim=True, verbosity="error", output_signaturedefs=True, **kwargs)  # fmt: skip
        finally:
            o2t.download_test_image_data, common_functions.download_test_image_data = saved
    return out


def _onnx_input(onnx_file: Path):
    import onnx

    return onnx.load(str(onnx_file), load_external_data=False).graph.input[0]


def _runs(file: Path, x: np.ndarray) -> bool:
    """Whether the .tflite runs on x (1, 3, H, W) float 0-1 (the interpreter raises on int8 kernels' checks)."""
    from utils.deploy.runtimes.tf import _interpreter

    it = _interpreter(file, None)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    scale, zero = inp["quantization"]
    xi = x.transpose(0, 2, 3, 1)
    xi = (xi / scale + zero).astype(inp["dtype"]) if scale else xi.astype(inp["dtype"])
    it.set_tensor(inp["index"], xi)
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
    outs = [max(frozen.outputs, key=lambda t: int(np.prod(t.shape))).name]
    write_meta_yaml({**meta, "pb_inputs": ins, "pb_outputs": outs}, file.with_name(file.name + ".yaml"))
    return file


def export_tf_formats(
    onnx_file: Path, weights: Path, meta: dict, formats: set, half: bool, int8: bool, calib: Optional[np.ndarray]
) -> Dict[str, Path]:
    """saved_model / pb / tflite beside weights from one onnx2tf run; returns {format: path}."""
    folder = weights.with_name(f"{weights.stem}_saved_model")
    shutil.rmtree(folder, ignore_errors=True)
    run_onnx2tf(onnx_file, folder, calib, int8 and "tflite" in formats)
    write_meta_yaml(meta, folder / "metadata.yaml")
    files: Dict[str, Path] = {}
    if "saved_model" in formats:
        files["saved_model"] = folder
    if "pb" in formats:
        files["pb"] = freeze_graphdef(folder, weights.with_suffix(".pb"), meta)
    if "tflite" in formats:
        kind, src = ("int8", "integer_quant") if int8 else ("fp16", "float16") if half else ("fp32", "float32")
        tfl = weights.with_name(f"{weights.stem}-{kind}.tflite")
        shutil.copyfile(folder / f"{onnx_file.stem}_{src}.tflite", tfl)
        quant = "full" if int8 else None
        if int8 and not _runs(tfl, calib[:1]):  # e.g. FLA's divisions: an int8 divisor can round to zero
            LOGGER.warning("tflite int8: the fully int8 model cannot run (an int8 divide by zero); writing int8 "
                           "weights with float activations (dynamic range) instead")  # fmt: skip
            shutil.copyfile(folder / f"{onnx_file.stem}_dynamic_range_quant.tflite", tfl)
            quant = "dynamic_range"
        files["tflite"] = add_tflite_meta(tfl, {**meta, "half": kind == "fp16", "int8": int8, "quant": quant})
    for extra in folder.glob("*.tflite"):  # keep the folder a plain SavedModel
        extra.unlink()
    return files
