"""Checkpoint model dicts -> DetectionModel (or SegmentationModel): rebuild from the yaml, or transfer by structure."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Union

import torch
import torch.nn as nn

from models.yolo import DetectionModel, SegmentationModel, is_segment_yaml
from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from utils.names import names_list
from utils.transfer import transfer_weights


def _model_class(cfg) -> type:
    """SegmentationModel for a yaml (dict, path or name) whose head ends in Segment, else DetectionModel."""
    if not isinstance(cfg, dict):
        from models.yolo import load_model_yaml

        cfg = load_model_yaml(cfg)[0]
    return SegmentationModel if is_segment_yaml(cfg) else DetectionModel


def model_from_dict(md: dict, cfg: Union[str, dict, None] = None, source: str = "") -> nn.Module:
    """Build a float32 DetectionModel from a checkpoint model dict; with cfg, build cfg and transfer by structure."""
    names = names_list(md.get("names"))
    state = {k: v.float() if v.is_floating_point() else v for k, v in md["state_dict"].items()}
    if cfg is not None:
        model = _model_class(cfg)(cfg, nc=len(names) or None, verbose=False)
        transfer_weights(state, md["yaml"], model, source=source)
    else:
        model = _model_class(md["yaml"])(copy.deepcopy(md["yaml"]), verbose=False)
        missing, unexpected = model.load_state_dict(state, strict=False)
        if missing or unexpected:
            bad = (missing or unexpected)[:3]
            raise UserError(
                f"{source or 'checkpoint'}: weights do not fit the model built from its own yaml "
                f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {bad})"
            )
    nc = model.yaml.get("nc", len(names)) if isinstance(model.yaml, dict) else len(names)
    model.names = names if len(names) == nc else names_list(None, nc)
    return model.float()


def load_model(
    weights: Union[str, Path], device: Union[str, torch.device] = "cpu", fuse: bool = True, cfg=None
) -> nn.Module:
    """A DetectionModel in eval mode (float32) from a checkpoint (EMA when present), optionally BN-fused."""
    ckpt = load_checkpoint(weights)
    md = ckpt.get("ema") or ckpt["model"]
    model = model_from_dict(md, cfg=cfg, source=str(weights))
    if fuse and hasattr(model, "fuse"):
        model = model.fuse()
    return model.to(device).eval()
