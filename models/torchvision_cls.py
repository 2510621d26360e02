"""torchvision classifiers by name (--model resnet18): random weights or a local weights file, never a download."""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn as nn

from models.input_norm import InputNormalize
from utils.errors import CheckpointError, UserError

LOGGER = logging.getLogger(__name__)


def torchvision_names() -> list[str]:
    """The classification model names torchvision builds (resnet18, efficientnet_b0, ...)."""
    import torchvision

    return sorted(torchvision.models.list_models(module=torchvision.models))


def is_torchvision_name(name: str) -> bool:
    return isinstance(name, str) and "/" not in name and "." not in name and name in torchvision_names()


def _local_imagenet_file(name: str) -> Path | None:
    """Where torchvision would cache this model's default ImageNet weights, when that file is already there."""
    import torchvision

    try:
        url = torchvision.models.get_model_weights(name).DEFAULT.url
    except (ValueError, AttributeError, KeyError):
        return None
    f = Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]
    return f if f.is_file() else None


def _load_state(net: nn.Module, f: Path) -> None:
    """A plain state_dict file (weights_only) into net; a shape or key mismatch is a one-line UserError."""
    try:
        state = torch.load(str(f), map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        net.load_state_dict(state)
    except Exception as e:  # a foreign or malicious pickle (UnpicklingError), a damaged file, a mismatched state
        raise CheckpointError(
            f"cannot load torchvision weights {f}: {str(e).splitlines()[0] if str(e) else e!r}"
        ) from e


def reshape_output(net: nn.Module, nc: int) -> None:
    """Replace the net's last nn.Linear by one with nc outputs (unless it already has nc)."""
    last = None
    for name, m in net.named_modules():
        if isinstance(m, nn.Linear):
            last = (name, m)
    if last is None:
        raise UserError(f"{type(net).__name__} has no final Linear layer to resize to {nc} classes")
    name, m = last
    if m.out_features == nc:
        return
    parent = net.get_submodule(name.rsplit(".", 1)[0]) if "." in name else net
    setattr(parent, name.rsplit(".", 1)[-1], nn.Linear(m.in_features, nc))


class TorchvisionClassifier(nn.Module):
    """A torchvision classification net behind the ImageNet input normalisation: (B, 3, H, W) RGB 0-1 -> (B, nc)."""

    task = "classify"

    def __init__(self, net: nn.Module, name: str, nc: int):
        super().__init__()
        self.normalize = InputNormalize()
        self.net = net
        self.yaml = {"torchvision": name, "nc": int(nc)}
        self.nc, self.stride, self.names = int(nc), torch.tensor([32.0]), [f"class{i}" for i in range(nc)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))


def torchvision_classifier(name: str, nc: int, pretrained: bool | str = False) -> nn.Module:
    """torchvision `name` with nc outputs. pretrained: True -> torchvision's cached ImageNet file if it is already on
    disk (else a warning and random weights), a path -> that state_dict file, False -> random weights."""
    import torchvision

    if not is_torchvision_name(name):
        raise UserError(f"--model {name}: not a file, a model yaml, nor a torchvision classifier name")
    net = torchvision.models.get_model(name, weights=None)
    f = Path(pretrained) if isinstance(pretrained, (str, Path)) and str(pretrained).lower() != "true" else None
    if f is not None and not f.is_file():
        raise UserError(f"--pretrained {pretrained}: file not found")
    if f is None and pretrained:
        f = _local_imagenet_file(name)
        if f is None:
            LOGGER.warning(f"--model {name}: no local ImageNet weights (nothing is downloaded); random weights")
    if f is not None:
        _load_state(net, f)
        LOGGER.info(f"{name}: weights from {f}")
    reshape_output(net, nc)
    return TorchvisionClassifier(net, name, nc)
