"""Official YOLOv5 hub yamls build the official architecture; the official blocks, activations and nn layers."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml

from models.activations import parse_activation
from models.common import (
    C3SPP,
    BottleneckCSP,
    C3x,
    Contract,
    Conv,
    CrossConv,
    DWConvTranspose2d,
    Expand,
    MixConv2d,
    _mix_split,
)
from models.ghost import C3Ghost, GhostBottleneck, GhostConv
from models.load import load_model
from models.registry import resolve
from models.yolo import DetectionModel
from tests.conftest import SHARED
from tests.helpers import zero_weight_init
from utils.errors import UserError
from utils.paths import MODELS_DIR

HUB_YAMLS = sorted(p.stem for p in (SHARED / "reference" / "hub_models" / "yaml").glob("*.yaml")) or ["(absent)"]


def set_reference_weights(model: nn.Module) -> None:
    """The weight rule of ../shared/reference/hub_models/README.md: randn * 0.05 seeded by crc32(name)."""
    with torch.no_grad():
        for k, v in model.state_dict().items():
            if v.is_floating_point() and not k.endswith("anchors"):
                t = torch.randn(v.shape, generator=torch.Generator().manual_seed(zlib.crc32(k.encode()))) * 0.05
                v.copy_(t.abs() + 0.5 if k.endswith("running_var") else t)


@pytest.mark.slow
@pytest.mark.parametrize("name", HUB_YAMLS)
def test_hub_yaml_matches_official_output(shared, name):
    """Each official models/hub yaml: same parameter count and, with the reference weights, the official output."""
    cfg = shared / "reference" / "hub_models" / "yaml" / f"{name}.yaml"
    if not cfg.is_file():
        pytest.skip("../shared/reference/hub_models/yaml is absent")
    ref = np.load(cfg.parents[1] / f"{name}.npz")
    with zero_weight_init():  # every weight is set by the reference rule below: skip the random draws
        model = DetectionModel(yaml.safe_load(cfg.read_text()), verbose=False)
    assert sum(p.numel() for p in model.parameters()) == int(ref["parameters"])
    set_reference_weights(model)
    with torch.no_grad():
        y = model.eval()(torch.from_numpy(ref["x"]))[0].numpy()
    assert y.shape == ref["y"].shape
    assert np.abs(y - ref["y"]).max() <= 1e-4 * np.abs(ref["y"]).max()


def tiny_yolov5n(**extra) -> dict:
    d = yaml.safe_load((MODELS_DIR / "yolov5n.yaml").read_text())
    d.update(width_multiple=0.25, depth_multiple=0.33, nc=2, **extra)
    return d


def conv_acts(model: nn.Module) -> set:
    """(type name, LeakyReLU slope or None) of every Conv's activation."""
    return {
        (type(m.act).__name__, getattr(m.act, "negative_slope", None)) for m in model.modules() if isinstance(m, Conv)
    }


def test_activation_key_is_scoped_to_its_model(tmp_path):
    leaky = DetectionModel(tiny_yolov5n(activation="nn.LeakyReLU(0.1)"), verbose=False)
    assert conv_acts(leaky) == {("LeakyReLU", 0.1)}
    after = DetectionModel(tiny_yolov5n(), verbose=False)  # built later in the same process
    assert conv_acts(after) == {("SiLU", None)}
    assert type(Conv(3, 4).act) is nn.SiLU
    bare = DetectionModel(tiny_yolov5n(activation="Hardswish"), verbose=False)
    assert conv_acts(bare) == {("Hardswish", None)}
    # the yaml travels with a checkpoint, so a LeakyReLU model comes back as LeakyReLU
    from utils.checkpoint import model_to_dict, save_checkpoint

    save_checkpoint({"model": model_to_dict(leaky), "ema": None}, tmp_path / "leaky.pt")
    assert conv_acts(load_model(tmp_path / "leaky.pt", fuse=False)) == {("LeakyReLU", 0.1)}


def test_activation_arguments_and_keywords():
    act = parse_activation("nn.LeakyReLU(negative_slope=0.2, inplace=True)")()
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.2 and act.inplace
    a, b = (parse_activation("nn.ReLU()") for _ in range(2))
    assert a() is not b() and isinstance(a(), nn.ReLU)


@pytest.mark.parametrize(
    "spec",
    [
        "__import__('os').getpid()",
        "nn.LeakyReLU(__import__('os').getpid())",
        "nn.LeakyReLU(slope)",
        "nn.Conv2d(3, 3, 1)",
        "torch.nn.ReLU()",
        "os.system('true')",
        "nn.LeakyReLU(0.1",
        "nn.LeakyReLU(**{'negative_slope': 0.1})",
        "nn.ReLU(bogus=1)",
        "nn.LeakyReLU(0.1)()",
        42,
    ],
)
def test_bad_activation_is_one_line_error(spec):
    with pytest.raises(UserError, match="activation") as e:
        DetectionModel(tiny_yolov5n(activation=spec), verbose=False)
    assert "\n" not in str(e.value)


def test_nn_layers_by_explicit_list():
    assert resolve("nn.MaxPool2d").cls is nn.MaxPool2d and resolve("nn.ZeroPad2d").cls is nn.ZeroPad2d
    for name in ("nn.Identity", "nn.AvgPool2d", "nn.Upsample", "nn.ConvTranspose2d", "nn.BatchNorm2d"):
        assert resolve(name).cls is getattr(nn, name[3:])
    for name in ("nn.Conv2d", "nn.Module", "nn.functional", "nn.Sequential", "torch.nn.MaxPool2d", "nn.__class__"):
        with pytest.raises(UserError, match="unknown module"):
            resolve(name, 3)
    bn = resolve("nn.BatchNorm2d").build([8], {})
    assert (bn.eps, bn.momentum) == (1e-3, 0.03)  # as YOLOv5 sets every BatchNorm2d


def test_block_shapes():
    x = torch.rand(2, 16, 32, 24)
    cases = [
        (GhostConv(16, 32, 3, 2), (2, 32, 16, 12)),
        (GhostBottleneck(16, 16), (2, 16, 32, 24)),
        (GhostBottleneck(16, 32, 3, 2), (2, 32, 16, 12)),
        (C3Ghost(16, 32, 2), (2, 32, 32, 24)),
        (BottleneckCSP(16, 32, 2), (2, 32, 32, 24)),
        (C3x(16, 32, 2), (2, 32, 32, 24)),
        (C3SPP(16, 32, (3, 5)), (2, 32, 32, 24)),
        (CrossConv(16, 16, 3, 1, shortcut=True), (2, 16, 32, 24)),
        (CrossConv(16, 8, 3, 2), (2, 8, 16, 12)),
        (MixConv2d(16, 32, (1, 3, 5), 2), (2, 32, 16, 12)),
        (DWConvTranspose2d(16, 8, 2, 2), (2, 8, 64, 48)),
        (Contract(2), (2, 64, 16, 12)),
        (Expand(2), (2, 4, 64, 48)),
    ]
    for block, shape in cases:
        assert tuple(block.eval()(x).shape) == shape, type(block).__name__


def test_contract_expand_move_pixels_and_invert():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).view(2, 3, 4, 6)
    c = Contract(2)(x)
    assert torch.equal(c[:, :3], x[:, :, ::2, ::2]) and torch.equal(c[:, 3:6], x[:, :, ::2, 1::2])
    assert torch.equal(c[:, 6:9], x[:, :, 1::2, ::2]) and torch.equal(c[:, 9:], x[:, :, 1::2, 1::2])
    assert torch.equal(Expand(2)(c), x)


def test_mixconv_channel_split():
    assert _mix_split(64, [1, 3, 5], True) == [22, 21, 21]
    assert _mix_split(64, [3, 5], False) == [47, 17]  # about equal weights: 47 * 9 ~ 17 * 25
    m = MixConv2d(8, 64, (3, 5), equal_ch=False)
    assert [c.out_channels for c in m.m] == [47, 17] and [c.groups for c in m.m] == [1, 1]


def test_official_attribute_names():
    """State-dict keys as official YOLOv5's, so official weights load by name."""
    keys = {
        GhostConv(8, 16): {"cv1.conv.weight", "cv1.bn.running_var", "cv2.conv.weight"},
        GhostBottleneck(8, 16, 3, 2): {"conv.0.cv1.conv.weight", "conv.1.conv.weight", "conv.2.cv2.bn.bias",
                                       "shortcut.0.conv.weight", "shortcut.1.bn.weight"},
        C3Ghost(8, 16): {"cv3.conv.weight", "m.0.conv.0.cv1.conv.weight", "m.0.conv.2.cv2.conv.weight"},
        BottleneckCSP(8, 16): {"cv1.conv.weight", "cv2.weight", "cv3.weight", "cv4.conv.weight", "bn.running_mean",
                               "m.0.cv1.conv.weight"},
        C3x(8, 16): {"m.0.cv1.conv.weight", "m.0.cv2.bn.weight"},
        C3SPP(8, 16): {"m.cv1.conv.weight", "m.cv2.conv.weight"},
        MixConv2d(8, 16, (1, 3)): {"m.0.weight", "m.1.weight", "bn.weight"},
        DWConvTranspose2d(8, 16, 2, 2): {"weight", "bias"},
    }  # fmt: skip
    for block, expected in keys.items():
        assert expected <= set(block.state_dict()), type(block).__name__


# Every official block, written for this test; figures measured with official YOLOv5 (models/yolo.py) on it.
ALL_BLOCKS = """
nc: 3
depth_multiple: 0.33
width_multiple: 0.5
anchors: [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
backbone:
  - [-1, 1, Conv, [32, 3, 2]]
  - [-1, 1, MixConv2d, [64, [1, 3, 5], 2]]
  - [-1, 3, BottleneckCSP, [64]]
  - [-1, 1, Contract, [2]]
  - [-1, 1, Conv, [128, 1, 1]]
  - [-1, 1, nn.BatchNorm2d, []]
  - [-1, 3, C3x, [128]]
  - [-1, 1, CrossConv, [128, 3, 1]]
  - [-1, 1, GhostConv, [256, 3, 2]]
  - [-1, 1, GhostBottleneck, [256, 3, 2]]
  - [-1, 1, C3SPP, [256, [5, 9, 13]]]
  - [-1, 1, GhostBottleneck, [256, 3, 1]]
head:
  - [-1, 1, Expand, [2]]
  - [-1, 1, DWConvTranspose2d, [64, 2, 2]]
  - [[-1, 7], 1, Concat, [1]]
  - [-1, 3, C3Ghost, [128]]
  - [-1, 1, nn.ConvTranspose2d, [128, 1, 1]]
  - [-1, 1, nn.Identity, []]
  - [-1, 1, MixConv2d, [128, [3, 5], 1, False]]
  - [[18, 8, 11], 1, Detect, [nc, anchors]]
"""
OFFICIAL_ALL_BLOCKS = {  # official YOLOv5 on ALL_BLOCKS: parameters and per-layer parameter counts
    "parameters": 260_224,
    "np": [464, 5360, 5088, 0, 8320, 128, 14720, 24832, 38720, 29728, 43712, 10976, 0, 160, 0, 11704, 4160, 0, 54400,
           7752],
}  # fmt: skip


def test_all_official_blocks_build_with_official_channel_rules():
    model = DetectionModel(yaml.safe_load(ALL_BLOCKS), verbose=False)
    assert [m.np for m in model.model] == OFFICIAL_ALL_BLOCKS["np"]
    assert sum(p.numel() for p in model.parameters()) == OFFICIAL_ALL_BLOCKS["parameters"]
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    with torch.no_grad():
        pred = model.eval()(torch.rand(1, 3, 64, 96))[0]
    assert pred.shape == (1, 3 * (8 * 12 + 4 * 6 + 2 * 3), 8) and torch.isfinite(pred).all()


def test_official_pickle_of_these_blocks_loads_safely(tmp_path):
    """A whole pickled model (as official train.py saves: module objects, fp16) goes through utils/safe_pickle.py.

    Our classes live under the official module paths (models.common.GhostConv, models.yolo.DetectionModel ...), so
    the pickle names the same globals as an official checkpoint of this yaml.
    """
    d = yaml.safe_load(ALL_BLOCKS)
    d["activation"] = "nn.LeakyReLU(0.1)"
    model = DetectionModel(d, verbose=False)
    set_reference_weights(model)
    f = tmp_path / "official-like.pt"
    torch.save({"model": model.half(), "ema": None, "epoch": -1, "optimizer": None, "date": "2026"}, f)
    with pytest.raises(Exception):  # noqa: B017  (it is a pickle of modules: weights_only refuses it)
        torch.load(f, weights_only=True)
    loaded = load_model(f, fuse=False)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        ref = model.float().eval()(x)[0]
        assert torch.allclose(loaded(x)[0], ref, rtol=1e-4, atol=1e-4)
    assert conv_acts(loaded) == conv_acts(model) == {("LeakyReLU", 0.1), ("Identity", None)}  # act=False: Identity
