"""Image classifiers: the Classify head, ClassificationModel (a YOLOv5 backbone cut at --cutoff), torchvision nets."""

from __future__ import annotations

import logging
from copy import deepcopy
from pathlib import Path

import torch
import torch.nn as nn

from models.common import Conv, autopad
from models.input_norm import InputNormalize
from models.registry import register
from models.yolo import fuse_conv_and_bn, load_model_yaml, parse_model
from utils.errors import UserError
from utils.names import names_list

LOGGER = logging.getLogger(__name__)

HEAD_CHANNELS = 1280  # the hidden width of YOLOv5's Classify (EfficientNet-B0's)
SPP_NAMES = ("SPPF", "SPP")


@register
class Classify(nn.Module):
    """YOLOv5 classification head: Conv(c1 -> 1280) -> global average pool -> dropout -> Linear(1280 -> c2).

    (B, c1, H, W) or a list of such (concatenated on channels) -> logits (B, c2). Attribute names are YOLOv5's
    (`conv`, `pool`, `drop`, `linear`) so official `-cls.pt` weights load.
    """

    channel_rule = "same_c1"  # yaml [nc] -> Classify(c1, nc)

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1, dropout_p: float = 0.0):
        super().__init__()
        self.conv = Conv(c1, HEAD_CHANNELS, k, s, autopad(k, p), g)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=dropout_p, inplace=True)
        self.linear = nn.Linear(HEAD_CHANNELS, c2)

    def forward(self, x: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
        if isinstance(x, list):
            x = torch.cat(x, 1)
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))  # (B, 1280, 1, 1) -> (B, 1280) -> (B, c2)


def default_cutoff(rows: list) -> int:
    """Where official cuts a YOLOv5 detector (its default 10): the Classify head takes the place of the first
    SPPF/SPP layer, so every layer before it is kept (an FLA layer right before SPPF included); 10 without one."""
    for i, row in enumerate(rows):
        if isinstance(row, (list, tuple)) and len(row) == 4 and row[2] in SPP_NAMES:
            return i + 1
    return 10


def classifier_yaml(det_yaml: dict, nc: int, cutoff: int | None = None) -> dict:
    """A detector's yaml dict cut as official ClassificationModel does: rows 0..cutoff-2 kept, row cutoff-1 replaced
    by Classify reading that row's input. The result is a plain model yaml (backbone = kept rows, head = Classify)."""
    rows = list(det_yaml.get("backbone") or []) + list(det_yaml.get("head") or [])
    cutoff = default_cutoff(rows) if cutoff is None else int(cutoff)
    if not 2 <= cutoff <= len(rows):
        raise UserError(f"--cutoff {cutoff} is outside 2..{len(rows)} for this model ({len(rows)} layers)")
    keep = [deepcopy(r) for r in rows[: cutoff - 1]]
    replaced = rows[cutoff - 1]
    out = {k: deepcopy(v) for k, v in det_yaml.items() if k not in ("backbone", "head", "anchors", "names", "nc")}
    out.update(nc=int(nc), cutoff=cutoff, backbone=keep, head=[[replaced[0], 1, "Classify", ["nc"]]])
    return out


def is_classifier_yaml(d: dict) -> bool:
    """True for a yaml dict whose last layer is Classify, or a torchvision classifier record."""
    if not isinstance(d, dict):
        return False
    if "torchvision" in d:
        return True
    rows = list(d.get("backbone") or []) + list(d.get("head") or [])
    return bool(rows) and isinstance(rows[-1], (list, tuple)) and len(rows[-1]) == 4 and rows[-1][2] == "Classify"


class ClassificationModel(nn.Module):
    """A YOLOv5 classifier built from a classifier yaml dict (see `classifier_yaml`).

    forward(x (B, 3, H, W) RGB 0-1) -> logits (B, nc); `normalize` applies the ImageNet statistics first (official
    classifiers get them from their loader; see models/input_norm.py). Attributes as official: `.model`
    (nn.Sequential with .i .f .type .np), `.save`, `.stride` (the cut detector's strides), `.nc`, `.names`; plus
    `.yaml` so our checkpoints rebuild it.
    """

    task = "classify"

    def __init__(self, cfg: str | Path | dict, nc: int | None = None, ch: int = 3, verbose: bool = False):
        super().__init__()
        self.yaml = deepcopy(cfg) if isinstance(cfg, dict) else load_model_yaml(cfg)[0]
        if not is_classifier_yaml(self.yaml):
            raise UserError("a classifier yaml needs Classify as its last layer (see models/classify.py)")
        if nc:
            self.yaml["nc"] = int(nc)
        if not isinstance(self.yaml.get("nc"), int) or self.yaml["nc"] < 1:
            raise UserError(f"classifier yaml needs a positive int 'nc', got {self.yaml.get('nc')!r}")
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        self.normalize = InputNormalize()
        self.model, self.save = parse_model(deepcopy(self.yaml), ch, verbose)
        self.nc = self.yaml["nc"]
        names = names_list(self.yaml.get("names"))
        self.names = names if len(names) == self.nc else names_list(None, self.nc)
        self.stride = torch.tensor([float(s) for s in self.yaml.get("stride", [8.0, 16.0, 32.0])])

    @classmethod
    def from_detection_yaml(cls, det_yaml: dict, nc: int, cutoff: int | None = None) -> ClassificationModel:
        """A fresh classifier cut from a detector's yaml (weights random)."""
        return cls(classifier_yaml(det_yaml, nc, cutoff))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, ch, H, W) RGB 0-1 -> logits (B, nc)."""
        x = self.normalize(x)
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def fuse(self) -> ClassificationModel:
        """Fold every Conv's BatchNorm into its conv (inference only)."""
        for m in self.model.modules():
            if isinstance(m, Conv) and m.bn is not None:
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                m.bn = None
            elif hasattr(m, "fuse"):
                m.fuse()
        return self

    def info(self, verbose: bool = False, imgsz: int = 224) -> None:
        """Log the summary line."""
        from utils.model_info import model_info

        model_info(self, verbose, imgsz)


def classifier_from_dict(md: dict, source: str = "") -> nn.Module:
    """A float32 classifier (ClassificationModel or torchvision net) from a checkpoint model dict."""
    from models.torchvision_cls import torchvision_classifier

    yaml, names = md["yaml"], names_list(md.get("names"))
    state = {k: v.float() if v.is_floating_point() else v for k, v in md["state_dict"].items()}
    if "torchvision" in yaml:
        model = torchvision_classifier(str(yaml["torchvision"]), int(yaml["nc"]), pretrained=False)
    else:
        model = ClassificationModel(deepcopy(yaml))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        bad = (missing or unexpected)[:3]
        raise UserError(
            f"{source or 'checkpoint'}: weights do not fit the classifier built from its own yaml "
            f"({len(missing)} missing, {len(unexpected)} unexpected, e.g. {bad})"
        )
    model.names = names if len(names) == model.nc else names_list(None, model.nc)
    if md.get("stride"):
        model.stride = torch.tensor([float(s) for s in md["stride"]])
    return model.float()


def set_dropout(model: nn.Module, p: float | None) -> None:
    """--dropout: the probability of every nn.Dropout in the model (None leaves them)."""
    if p is None:
        return
    if not 0.0 <= p < 1.0:
        raise UserError(f"--dropout {p} must be in [0, 1)")
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
