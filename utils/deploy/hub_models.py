"""torch.hub entry points behind hubconf.py: named models from local weights (never downloaded) and custom files."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Union

import torch.nn as nn

from utils.errors import UserError
from utils.paths import ROOT

LOGGER = logging.getLogger(__name__)

MODEL_NAMES = tuple(f"yolov5{s}{v}" for v in ("", "-fla") for s in "nsmlx")  # each has models/<name>.yaml


def find_weights(name: str, path: Union[str, Path, None] = None) -> Path:
    """The .pt file for a named model: path when given, else <name>.pt in the current folder, else in the repository.

    Nothing is downloaded; a missing file is a UserError saying where to put it.
    """
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise UserError(f"weights file not found: {p}")
        return p
    file = f"{name}.pt"
    for folder in (Path.cwd(), ROOT):
        if (folder / file).is_file():
            return folder / file
    raise UserError(
        f"{file} not found: put it in {ROOT} (or the current folder) or pass path='path/to/{file}'; "
        "nothing is downloaded"
    )


def custom_path(path: Union[str, Path]) -> Path:
    """A custom weights path as official hub takes it: a bare name gets '.pt' ('runs/.../best' -> best.pt); an
    export folder (best_openvino_model/) is kept."""
    p = Path(path).expanduser()
    if not p.suffix and not p.is_dir():
        p = p.with_suffix(".pt")
    if not p.exists():  # a file, or an export folder (OpenVINO, ...) as official's hub takes it
        raise UserError(f"weights file not found: {p}")
    return p


def _retargeted(weights: Path, cfg: Path, channels: int, classes: int) -> nn.Module:
    """cfg built for channels and classes, with every weight of the checkpoint whose shape fits (head excluded)."""
    from models.yolo import DetectionModel
    from utils.checkpoint import load_checkpoint
    from utils.transfer import transfer_weights

    ckpt = load_checkpoint(weights)
    md = ckpt.get("ema") or ckpt["model"]
    model = DetectionModel(str(cfg), ch=channels, nc=classes, verbose=False)
    transfer_weights({k: v.float() for k, v in md["state_dict"].items()}, md["yaml"], model, source=str(weights))
    names = list(md.get("names") or [])
    model.names = names if len(names) == classes else [f"class{i}" for i in range(classes)]
    return model.eval()


def _built(name: str, pretrained: bool, channels: int, classes: int, path) -> nn.Module | Path:
    """A weights path to load as is, or a DetectionModel (random, or re-targeted to other channels / classes)."""
    from models.yolo import DetectionModel
    from utils.paths import find_model_cfg

    if not pretrained:
        model = DetectionModel(str(find_model_cfg(name)), ch=channels, nc=classes, verbose=False)
        return model.eval()
    weights = find_weights(name, path)
    if channels == 3 and classes == 80:  # the official defaults: the checkpoint as it is, whatever its classes
        return weights
    return _retargeted(weights, find_model_cfg(name), channels, classes)


def create(
    name: str,
    pretrained: bool = True,
    channels: int = 3,
    classes: int = 80,
    autoshape: bool = True,
    verbose: bool = True,
    device=None,
    path: Union[str, Path, None] = None,
) -> nn.Module:
    """A named model (yolov5n ... yolov5x, -fla variants) -> Detector (autoshape) or the bare model in eval mode."""
    from utils.deploy.hub import load
    from utils.torch_utils import select_device

    if name not in MODEL_NAMES:
        raise UserError(f"unknown model '{name}': choose from {', '.join(MODEL_NAMES)}")
    if channels < 1 or classes < 1:
        raise UserError(f"channels and classes must be positive (got {channels}, {classes})")
    dev = select_device("" if device is None else str(device))
    got = _built(name, pretrained, channels, classes, path)
    if isinstance(got, Path):
        return custom(got, autoshape=autoshape, verbose=verbose, device=device)
    got = got.to(dev)
    if verbose:
        LOGGER.info("%s: %s", name, "pretrained weights re-targeted" if pretrained else "random weights")
    if not autoshape:
        return got
    if channels != 3:
        raise UserError("autoshape=True runs on RGB images: use channels=3, or autoshape=False for other inputs")
    return load(got.fuse() if hasattr(got, "fuse") else got)


def custom(path: Union[str, Path], autoshape: bool = True, verbose: bool = True, device=None) -> nn.Module:
    """Weights from a file (.pt ours or official, .onnx, .torchscript) -> Detector, or the bare model (.pt)."""
    from utils.deploy.hub import load
    from utils.torch_utils import select_device

    weights = custom_path(path)
    dev = select_device("" if device is None else str(device))
    if autoshape:
        det = load(weights, device="" if device is None else str(device))
    elif weights.suffix == ".pt":
        from models.load import load_model

        det = load_model(weights, device=dev, fuse=False)
    else:
        from utils.deploy.backends import load_predictor

        det = load_predictor(weights, device=dev)
    if verbose:
        LOGGER.info("Loaded %s", weights)
    return det
