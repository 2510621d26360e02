"""TensorFlow runtimes: TFLite (LiteRT interpreter), SavedModel and frozen GraphDef (.pb) through tensorflow.

The TF models are NHWC: inputs are transposed here, so callers pass (B, 3, H, W) float 0-1 like every backend.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch

from utils.deploy.predictor import Predictor, register_backend
from utils.deploy.runtimes.meta import apply_meta, need, read_meta_yaml
from utils.errors import CheckpointError


def read_tflite_meta(f: Path) -> Dict[str, Any]:
    """The meta.txt JSON that export appends to a .tflite as a zip (YOLOv5's way); {} when there is none."""
    try:
        with zipfile.ZipFile(f) as z:
            return json.loads(z.read("meta.txt")) if "meta.txt" in z.namelist() else {}
    except (zipfile.BadZipFile, KeyError, ValueError):
        return {}


def _interpreter(f: Path, threads: int | None):
    """A LiteRT interpreter (ai-edge-litert), else tflite-runtime, else tensorflow's own."""
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return __import__(module, fromlist=["Interpreter"]).Interpreter(model_path=str(f), num_threads=threads)
        except ImportError:
            continue
    tf = need("tensorflow", "running .tflite weights", "ai-edge-litert")
    return tf.lite.Interpreter(model_path=str(f), num_threads=threads)


def box_scale(meta: Dict[str, Any]) -> np.ndarray | None:
    """(w, h, w, h) pixels for an export whose boxes are 0-1 (int8 TF: metadata xywh 'normalized'), else None."""
    if meta.get("xywh") != "normalized" or not meta.get("imgsz"):
        return None
    h, w = (float(s) for s in meta["imgsz"])
    return np.array([w, h, w, h], np.float32)


def tf_outputs(ys, device: torch.device, scale: np.ndarray | None = None):
    """A TF model's outputs -> the task's: pred (B, N, no) for detect / (B, nc) for classify, or (pred, protos (B, nm,
    h, w)) for segment (TF gives the prototypes NHWC; they go back to NCHW here). scale: (w, h, w, h) of 0-1 boxes."""
    ys = [np.ascontiguousarray(y, dtype=np.float32) for y in ys]
    protos = [y for y in ys if y.ndim == 4]
    pred = max((y for y in ys if y.ndim != 4), key=lambda y: y.size)
    if scale is not None:
        pred = np.concatenate((pred[..., :4] * scale, pred[..., 4:]), -1)
    pred = torch.from_numpy(pred).to(device)
    if not protos:
        return pred
    return pred, torch.from_numpy(np.ascontiguousarray(protos[0].transpose(0, 3, 1, 2))).to(device)


@register_backend(".tflite")
class TFLiteBackend(Predictor):
    """A .tflite through the LiteRT interpreter; int8 inputs/outputs are (de)quantised with their own scales."""

    format = "tflite"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, threads: int | None = None, **_):
        super().__init__(device)
        apply_meta(self, read_tflite_meta(f))
        try:
            self.interpreter = _interpreter(f, threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as e:
            raise CheckpointError(f"cannot load TFLite model {f}: {str(e).splitlines()[0]}") from e
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = self.interpreter.get_output_details()
        _, h, w, _ = (int(s) for s in self.input["shape"])
        self.imgsz, self.batch, self.dynamic = (h, w), int(self.input["shape"][0]), False

    def run(self, im: torch.Tensor) -> torch.Tensor:
        x = im.permute(0, 2, 3, 1).cpu().numpy()
        scale, zero = self.input["quantization"]
        if self.input["dtype"] in (np.int8, np.uint8) and scale:
            x = (x / scale + zero).astype(self.input["dtype"])
        self.interpreter.set_tensor(self.input["index"], x.astype(self.input["dtype"], copy=False))
        self.interpreter.invoke()
        ys = []
        for out in self.outputs:
            y = self.interpreter.get_tensor(out["index"])
            scale, zero = out["quantization"]
            ys.append((y.astype(np.float32) - zero) * scale if out["dtype"] in (np.int8, np.uint8) and scale else y)
        return tf_outputs(ys, self.device, box_scale(self.meta))


@register_backend("_saved_model")
class SavedModelBackend(Predictor):
    """A TF SavedModel folder (<stem>_saved_model/ with metadata.yaml) through its serving signature."""

    format = "saved_model"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        super().__init__(device)
        tf = need("tensorflow", "running a TF SavedModel", "tensorflow-cpu")
        apply_meta(self, read_meta_yaml(f / "metadata.yaml"))
        try:
            self.loaded = tf.saved_model.load(str(f))  # held: the signature needs its variables
            self.fn = self.loaded.signatures["serving_default"]
        except (OSError, KeyError, ValueError) as e:
            raise CheckpointError(f"cannot load TF SavedModel {f}: {str(e).splitlines()[0]}") from e
        self.tf = tf

    def run(self, im: torch.Tensor) -> torch.Tensor:
        out = self.fn(self.tf.constant(im.permute(0, 2, 3, 1).cpu().numpy()))
        return tf_outputs([t.numpy() for t in out.values()], self.device, box_scale(self.meta))


@register_backend(".pb")
class GraphDefBackend(Predictor):
    """A frozen TF GraphDef (.pb) with <stem>.pb.yaml beside it (its input and output tensor names, stride, names)."""

    format = "pb"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        super().__init__(device)
        tf = need("tensorflow", "running a TF GraphDef", "tensorflow-cpu")
        meta = read_meta_yaml(f.with_name(f.name + ".yaml"))
        apply_meta(self, meta)
        graph_def = tf.compat.v1.GraphDef()
        try:
            graph_def.ParseFromString(f.read_bytes())
        except Exception as e:  # protobuf's DecodeError
            raise CheckpointError(f"cannot load TF GraphDef {f}: {e}") from e
        inputs, outputs = meta.get("pb_inputs", ["x:0"]), meta.get("pb_outputs", ["Identity:0"])
        wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
        g = wrapped.graph
        self.fn = wrapped.prune(tf.nest.map_structure(g.as_graph_element, inputs[0]),
                                [g.as_graph_element(o) for o in outputs])  # fmt: skip
        self.tf = tf

    def run(self, im: torch.Tensor) -> torch.Tensor:
        ys = self.fn(self.tf.constant(im.permute(0, 2, 3, 1).cpu().numpy()))
        return tf_outputs([y.numpy() for y in ys], self.device, box_scale(self.meta))
