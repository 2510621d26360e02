"""Checkpoint model dicts -> DetectionModel, SegmentationModel or classifier: rebuild from the stored yaml, or
transfer into a cfg."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from models.classify import classifier_from_dict, is_classifier_yaml
from models.yolo import DetectionModel, SegmentationModel, is_segment_yaml
from utils.checkpoint import load_checkpoint
from utils.errors import CheckpointError, UserError
from utils.names import names_list
from utils.transfer import transfer_weights


def _model_class(cfg) -> type:
    """SegmentationModel for a yaml (dict, path or name) whose head ends in Segment, else DetectionModel."""
    if not isinstance(cfg, dict):
        from models.yolo import load_model_yaml

        cfg = load_model_yaml(cfg)[0]
    return SegmentationModel if is_segment_yaml(cfg) else DetectionModel


def checkpoint_model(md: dict, source: str = "", **kwargs) -> DetectionModel:
    """DetectionModel(checkpoint's own yaml, **kwargs): the yaml is validated like a user's (a file must not tie up
    the machine); a bad one is a CheckpointError (exit 1) naming the file."""
    if not isinstance(md.get("yaml"), dict):
        raise CheckpointError(f"{source or 'checkpoint'}: the model entry has no yaml mapping")
    try:
        return _model_class(md["yaml"])(copy.deepcopy(md["yaml"]), **{"verbose": False, **kwargs})
    except UserError as e:
        raise CheckpointError(f"{source or 'checkpoint'}: its model yaml is unusable: {e}") from e


def float_state(md: dict, source: str = "") -> dict:
    """The model dict's state_dict with floats as float32; CheckpointError when it is not {name: tensor}."""
    sd = md.get("state_dict")
    if not isinstance(sd, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in sd.items()):
        raise CheckpointError(f"{source or 'checkpoint'}: 'state_dict' is not a mapping of names to tensors")
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def _own_model(md: dict, state: dict, source: str) -> nn.Module:
    """Build the checkpoint's own yaml and load its weights."""
    model = checkpoint_model(md, source)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatch: a tensor whose shape does not fit the layer
        first = next((ln.strip() for ln in str(e).splitlines() if "size mismatch" in ln), str(e).splitlines()[0])
        raise CheckpointError(f"{source or 'checkpoint'}: weights do not fit its own yaml ({first})") from e
    if missing or unexpected:
        bad = (missing or unexpected)[:3]
        raise CheckpointError(
            f"{source or 'checkpoint'}: weights do not fit the model built from its own yaml "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {bad})"
        )
    return model


def model_from_dict(md: dict, cfg: Union[str, dict, None] = None, source: str = "") -> nn.Module:
    """Build a float32 DetectionModel from a checkpoint model dict; with cfg, build cfg and transfer by structure."""
    if is_classifier_yaml(md.get("yaml")):
        if cfg is not None:
            raise UserError(f"{source or 'checkpoint'} is a classifier; --cfg applies to detection models only")
        return classifier_from_dict(md, source)
    names = names_list(md.get("names"))
    state = float_state(md, source)
    if cfg is not None:
        model = _model_class(cfg)(cfg, nc=len(names) or None, verbose=False)
        transfer_weights(state, md["yaml"], model, source=source)
    else:
        model = _own_model(md, state, source)
    nc = model.yaml.get("nc", len(names)) if isinstance(model.yaml, dict) else len(names)
    model.names = names if len(names) == nc else names_list(None, nc)
    return model.float()


def load_model(
    weights: Union[str, Path], device: Union[str, torch.device] = "cpu", fuse: bool = True, cfg=None
) -> nn.Module:
    """A DetectionModel in eval mode (float32) from a checkpoint (EMA when present), optionally BN-fused.

    A fused model is for inference: no parameter requires a gradient (its summary reads '0 gradients', as YOLOv5's).
    """
    ckpt = load_checkpoint(weights)
    md = ckpt.get("ema") or ckpt["model"]
    model = model_from_dict(md, cfg=cfg, source=str(weights))
    if fuse and hasattr(model, "fuse"):
        model = model.requires_grad_(False).fuse()
    return model.to(device).eval()
