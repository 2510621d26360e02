"""Python API for classifiers: `model = load('best.pt'); model('bus.jpg')` -> Classifications (top-5 per image).

Official YOLOv5's hub only warns that classifiers are "not yet AutoShape compatible"; here a classifier loaded
through hubconf.custom (or `load`) is called on paths, PIL images or numpy RGB images like a detector.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch
import torch.nn as nn

from utils.classify.predict import classifier_predictor, postprocess, preprocess, top_k
from utils.deploy.predictor import ModelPredictor, Predictor
from utils.errors import CheckpointError, UserError

LOGGER = logging.getLogger(__name__)


def is_classifier_file(path: Union[str, Path]) -> bool:
    """True when a weights file holds a classifier: a .pt by its model yaml, an export by its 'task' metadata or
    (official ONNX, which has none) by its 2-D (batch, classes) output."""
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
    if path.suffix == ".torchscript":
        from utils.deploy.backends import read_torchscript_meta

        return read_torchscript_meta(path).get("task") == "classify"
    return False


@dataclass
class Classifications:
    """Per image: its file name and the top-5 [(class name, probability)], best first."""

    files: List[str]
    top5: List[List[Tuple[str, float]]]
    probs: List[torch.Tensor]  # (nc,) per image

    def __len__(self) -> int:
        return len(self.files)

    def __str__(self) -> str:
        return "\n".join(f"{f}: " + ", ".join(f"{n} {p:.2f}" for n, p in t) for f, t in zip(self.files, self.top5))

    def tables(self) -> List[List[Dict[str, Any]]]:
        return [[{"name": n, "probability": p} for n, p in t] for t in self.top5]


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

        items = list(ims) if isinstance(ims, (list, tuple)) else [ims]
        rgb, files = zip(*(_to_rgb(im, i, bgr) for i, im in enumerate(items)))
        fixed = self.model.imgsz  # a static export takes its own size and batch only
        size = int(fixed[0]) if fixed else check_size_arg(self.size if size is None else size)
        x = self.model.prepare(torch.stack([preprocess(np.ascontiguousarray(im[..., ::-1]), size) for im in rgb]))
        step = self.model.batch or len(x)
        probs = [p for i in range(0, len(x), step) for p in postprocess(self.model(x[i : i + step]))]
        top5 = [[(self.names.get(i, str(i)), p) for i, p in top_k(prob)] for prob in probs]
        return Classifications(list(files), top5, [p.cpu() for p in probs])


def load(weights: Union[str, Path, nn.Module], device: str = "", size: int = 224) -> Classifier:
    """A classifier from weights (.pt ours or official, .onnx, .torchscript) or a model in memory -> Classifier."""
    if isinstance(weights, nn.Module):
        return Classifier(ModelPredictor(weights.eval()), size)
    from utils.deploy.backends import load_predictor
    from utils.torch_utils import select_device

    if not Path(weights).exists():
        raise UserError(f"weights file not found: {weights}")
    return Classifier(load_predictor(str(weights), device=select_device(device)), size)
