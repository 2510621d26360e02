"""Python API for classifiers: `model = load('best.pt'); model('bus.jpg')` -> Classifications (top-5 per image,
print, tables / pandas, render and save with the top-5 drawn: utils/classify/results.py).

Official YOLOv5's hub only warns that classifiers are "not yet AutoShape compatible"; here a classifier loaded
through hubconf.custom (or `load`) is called on paths, PIL images or numpy RGB images like a detector.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from utils.classify.predict import classifier_predictor, postprocess, preprocess
from utils.classify.results import Classifications
from utils.deploy.predictor import ModelPredictor, Predictor
from utils.errors import CheckpointError, UserError
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


def is_classifier_file(path: Union[str, Path]) -> bool:
    """True when a weights file holds a classifier: a .pt by its model yaml, an export (ONNX, TorchScript, OpenVINO
    folder or .xml) by its 'task' metadata or (official ONNX, which has none) by its 2-D (batch, classes) output."""
    path = Path(path)
    if path.suffix == ".pt":
        from models.classify import is_classifier_yaml
        from utils.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        return is_classifier_yaml((ckpt.get("ema") or ckpt["model"]).get("yaml"))
    if path.suffix == ".onnx":
        try:
            import onnx
        except ImportError:
            return False
        try:
            proto = onnx.load(str(path), load_external_data=False)
        except Exception as e:  # onnx raises protobuf's DecodeError and others for a file that is not ONNX
            raise CheckpointError(f"cannot load ONNX model {path}: {str(e).splitlines()[0] if str(e) else e!r}") from e
        meta = {p.key: p.value for p in proto.metadata_props}
        if "task" in meta:
            return meta["task"].strip('"') == "classify"
        return len(proto.graph.output[0].type.tensor_type.shape.dim) == 2
    if path.is_dir() or path.suffix == ".xml":  # an OpenVINO model: its metadata yaml beside the .xml
        from utils.yaml_io import read_yaml_mapping

        xmls = [path] if path.suffix == ".xml" else sorted(path.glob("*.xml"))
        meta = xmls[0].with_suffix(".yaml") if xmls else None
        if meta is None or not meta.is_file():
            return False
        return read_yaml_mapping(meta, "OpenVINO metadata", "stride and names").get("task") == "classify"
    if path.suffix == ".torchscript":
        from utils.deploy.backends import read_torchscript_meta

        return read_torchscript_meta(path).get("task") == "classify"
    return False


class Classifier(nn.Module):
    """A loaded classifier; call it on images (paths, PIL, numpy RGB or a list) -> Classifications.

    Called on a float tensor (B, 3, H, W) in 0-1 it returns the logits (B, nc), like the model itself.
    """

    def __init__(self, model: Predictor, size: int = 224):
        super().__init__()
        self.model, self.size = classifier_predictor(model), size
        self.names = self.model.names

    @torch.no_grad()
    def forward(self, ims: Union[torch.Tensor, Any, Sequence[Any]], size: int | None = None, bgr: bool = False):
        if isinstance(ims, torch.Tensor):
            return self.model(ims)
        from utils.deploy.hub import _to_rgb, check_size_arg

        t0 = time_sync()
        items = list(ims) if isinstance(ims, (list, tuple)) else [ims]
        rgb, files = zip(*(_to_rgb(im, i, bgr) for i, im in enumerate(items)))
        fixed = self.model.imgsz  # a static export takes its own size and batch only
        size = int(fixed[0]) if fixed else check_size_arg(self.size if size is None else size)
        x = self.model.prepare(torch.stack([preprocess(np.ascontiguousarray(im[..., ::-1]), size) for im in rgb]))
        step = self.model.batch or len(x)
        t1 = time_sync()
        logits = [self.model(x[i : i + step]) for i in range(0, len(x), step)]
        t2 = time_sync()
        probs = [p.cpu() for y in logits for p in postprocess(y)]
        t3 = time_sync()
        times = tuple(1e3 * dt / len(x) for dt in (t1 - t0, t2 - t1, t3 - t2))
        return Classifications(list(rgb), probs, list(files), self.names, times, tuple(x.shape))


def load(weights: Union[str, Path, nn.Module], device: str = "", size: int = 224) -> Classifier:
    """A classifier from weights (.pt ours or official, .onnx, .torchscript) or a model in memory -> Classifier."""
    if isinstance(weights, nn.Module):
        return Classifier(ModelPredictor(weights.eval()), size)
    from utils.deploy.backends import load_predictor
    from utils.torch_utils import select_device

    if not Path(weights).exists():
        raise UserError(f"weights file not found: {weights}")
    return Classifier(load_predictor(str(weights), device=select_device(device)), size)
