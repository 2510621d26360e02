"""classify/train.py --model: a classifier from a checkpoint (classifier or detector), a model yaml, or a torchvision
name; resized to the data's classes."""

from __future__ import annotations

import logging
from pathlib import Path

import torch.nn as nn

from models.classify import (
    ClassificationModel,
    Classify,
    classifier_from_dict,
    classifier_yaml,
    is_classifier_yaml,
    set_dropout,
)
from models.torchvision_cls import is_torchvision_name, reshape_output, torchvision_classifier
from models.yolo import load_model_yaml
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from utils.names import names_list

LOGGER = logging.getLogger(__name__)


def _truthy(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() not in ("false", "0", "no", "none", "")


def resize_head(model: nn.Module, nc: int) -> None:
    """Give a classifier nc outputs: a new Linear in its Classify head (or its last Linear) when the count differs."""
    head = model.model[-1] if isinstance(model, ClassificationModel) else None
    if isinstance(head, Classify):
        if head.linear.out_features != nc:
            head.linear = nn.Linear(head.linear.in_features, nc)
        model.nc = model.yaml["nc"] = nc
    else:
        reshape_output(model.net, nc)
        model.nc = model.yaml["nc"] = nc


def _from_checkpoint(path: Path, nc: int, cutoff: int | None) -> nn.Module:
    """A classifier checkpoint as is (resized to nc); a detector cut at cutoff, its kept layers' weights copied."""
    ckpt = load_checkpoint(path)
    md = ckpt.get("ema") or ckpt["model"]
    if is_classifier_yaml(md["yaml"]):
        model = classifier_from_dict(md, str(path))
        resize_head(model, nc)
        return model
    LOGGER.warning(f"{path.name} is a detector: cut at layer {cutoff or 'before SPPF'} with a Classify head added")
    model = ClassificationModel(classifier_yaml(md["yaml"], nc, cutoff))
    own = model.state_dict()
    kept = {k: v.float() for k, v in md["state_dict"].items() if k in own and own[k].shape == v.shape}
    head = f"model.{len(model.model) - 1}."
    kept = {k: v for k, v in kept.items() if not k.startswith(head)}
    model.load_state_dict(kept, strict=False)
    LOGGER.info(f"Transferred {len(kept)}/{len(own)} items from {path}")
    return model


def build_classifier(
    model: str, nc: int, cutoff: int | None = None, pretrained=True, dropout: float | None = None
) -> nn.Module:
    """--model (a .pt file, a model yaml path or name in models/, or a torchvision name) -> classifier with nc outputs.

    pretrained False: every layer's weights are re-initialised (official --pretrained False).
    """
    if isinstance(pretrained, str) and pretrained.lower() in ("true", "false", "0", "1", "yes", "no", "none", ""):
        pretrained = _truthy(pretrained)  # --pretrained False; any other string names a local weights file
    spec = str(model)
    path = Path(spec)
    if path.suffix == ".pt" or path.is_file() and path.suffix != ".yaml":
        if not path.is_file():
            raise UserError(f"--model {spec}: file not found (YOLOv5-FLA never downloads weights)")
        net = _from_checkpoint(path, nc, cutoff)
    elif path.suffix in (".yaml", ".yml"):
        d = load_model_yaml(spec)[0]
        net = ClassificationModel(d if is_classifier_yaml(d) else classifier_yaml(d, nc, cutoff), nc=nc)
    elif is_torchvision_name(spec):
        net = torchvision_classifier(spec, nc, pretrained=pretrained)
    else:
        raise UserError(f"--model {spec}: not a .pt file, a model yaml, nor a torchvision classifier name")
    if not _truthy(pretrained):
        for m in net.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    set_dropout(net, dropout)
    for p in net.parameters():
        p.requires_grad_(True)
    net.names = names_list(None, nc)
    return net
