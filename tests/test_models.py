"""Model building: every yaml runs with exact shapes, official sizes, Detect maths, registry errors, CLI, parity."""

from __future__ import annotations

import copy
import json
import math
import re

import numpy as np
import pytest
import torch
import yaml

from models.common import C3, Conv
from models.registry import known_names, make_divisible, register, resolve
from models.yolo import Detect, DetectionModel, Model, parse_model
from tests.helpers import run_main, zero_weight_init
from utils.errors import UserError
from utils.flops import model_gflops
from utils.model_info import count_layers, model_info
from utils.paths import MODELS_DIR

OFFICIAL = {  # docs/yolov5-contract.md: parameters, layers, GFLOPs at 640 (80 classes)
    "n": (1_872_157, 125, 4.6),
    "s": (7_235_389, 125, 16.6),
    "m": (21_190_557, 169, 49.2),
    "l": (46_563_709, 213, 109.6),
    "x": (86_749_405, 257, 206.3),
}
CONFIGS = sorted(p.name for p in MODELS_DIR.glob("yolov5*.yaml"))


def tiny(name: str, nc: int = 3) -> dict:
    """The config as a dict at width 0.25 / depth 0.33 with nc classes (fast on CPU)."""
    d = yaml.safe_load((MODELS_DIR / name).read_text())
    d.update(width_multiple=0.25, depth_multiple=0.33, nc=nc)
    return d


def test_all_configs_present():
    expected = {f"yolov5{k}{v}.yaml" for k in "nsmlx" for v in ("", "-fla")}
    expected |= {f"yolov5s-{v}.yaml" for v in ("c3fla", "fla-neck", "la", "transformer")}
    assert expected <= set(CONFIGS)


@pytest.fixture(scope="module")
def built_tiny():
    """name -> a fresh copy of tiny(name) built after manual_seed(0), with the RNG as it was right after that build:
    each config is built once for both image sizes, and each test still starts from the same untouched model."""
    cache = {}

    def get(name: str) -> DetectionModel:
        if name not in cache:
            torch.manual_seed(0)
            model = DetectionModel(tiny(name), verbose=False)
            cache[name] = model, torch.get_rng_state()
        model, rng = cache[name]
        torch.set_rng_state(rng)
        return copy.deepcopy(model)

    return get


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("hw", [(64, 64), (64, 96)])
def test_config_builds_and_runs(built_tiny, name, hw):
    model = built_tiny(name)
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    x = torch.rand(2, 3, *hw)
    train_out = model(x)
    h, w = hw
    assert [tuple(p.shape) for p in train_out] == [(2, 3, h // s, w // s, 8) for s in (8, 16, 32)]
    model.eval()
    with torch.no_grad():
        pred, raw = model(x)
    n = 3 * sum((h // s) * (w // s) for s in (8, 16, 32))
    assert pred.shape == (2, n, 8)
    assert torch.isfinite(pred).all() and all(torch.isfinite(p).all() for p in raw)
    assert ((pred[..., 4:] >= 0) & (pred[..., 4:] <= 1)).all()


@pytest.mark.parametrize("k", list(OFFICIAL))
def test_official_sizes(k):
    params, layers, gflops = OFFICIAL[k]
    with zero_weight_init():  # counts and FLOPs only: skip the random draws (seconds for yolov5l/x)
        model = DetectionModel(f"yolov5{k}.yaml", verbose=False)
    assert sum(p.numel() for p in model.parameters()) == params
    assert count_layers(model) == layers
    assert round(model_gflops(model, 640), 1) == gflops


def test_official_sizes_match_shared_reference(shared):
    ref = json.loads((shared / "reference" / "official_yolov5.json").read_text())
    for name, fig in ref["model_summary_unfused_80_classes_640"].items():
        if name.endswith(".yaml"):
            k = name[len("yolov5")]
            assert OFFICIAL[k] == (fig["parameters"], fig["layers"], fig["gflops"])


def test_fuse_yolov5n_matches_official_summary_and_output():
    model = DetectionModel("yolov5n.yaml", verbose=False).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        before = model(x)[0]
        line = model.fuse() and model_info(model)
        after = model(x)[0]
    assert "124 layers, 1,867,405 parameters" in line and line.endswith("4.5 GFLOPs")
    assert all(m.bn is None for m in model.modules() if isinstance(m, Conv))
    assert torch.allclose(before, after, atol=1e-3, rtol=1e-4)


def test_state_dict_keys_as_yolov5():
    keys = DetectionModel("yolov5n.yaml", verbose=False).state_dict().keys()
    for k in ("model.0.conv.weight", "model.0.bn.running_mean", "model.2.cv1.conv.weight",
              "model.2.m.0.cv2.conv.weight", "model.9.cv2.conv.weight", "model.24.m.0.weight",
              "model.24.anchors"):  # fmt: skip
        assert k in keys
    assert not any(k.endswith("stride") or "grid" in k for k in keys)


def test_summary_line_and_layer_attributes():
    model = Model("yolov5s", verbose=False)
    assert model_info(model) == "YOLOv5s summary: 125 layers, 7,235,389 parameters, 7,235,389 gradients, 16.6 GFLOPs"
    m = model.model[12]
    assert (m.i, m.f, m.type, m.np) == (12, [-1, 6], "models.common.Concat", 0)
    assert model.model[2].type == "models.common.C3" and model.model[2].np == 18816
    assert model.save == [4, 6, 10, 14, 17, 20, 23]
    assert model.names == [f"class{i}" for i in range(80)]


def test_detect_anchors_strides_and_bias_init():
    model = DetectionModel(tiny("yolov5s.yaml", nc=2), verbose=False)
    det = model.model[-1]
    px = torch.tensor([[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]])
    assert torch.allclose(det.anchors * det.stride.view(-1, 1, 1), px.view(3, 3, 2).float())
    b = det.m[0].bias.detach().view(3, -1)  # (na, 5 + nc), P3 stride 8
    # offsets obj log(8/(640/8)^2), cls log(0.6/(nc-0.99999)) on a default bias within +-1/sqrt(fan_in)
    bound = 1 / math.sqrt(det.m[0].in_channels)
    assert ((b[:, 4] - math.log(8 / 80**2)).abs() <= bound + 1e-6).all()
    assert ((b[:, 5:] - math.log(0.6 / (2 - 0.99999))).abs() <= bound + 1e-6).all()


def test_anchor_order_reversed_when_inverted():
    d = tiny("yolov5s.yaml")
    d["anchors"] = list(reversed(d["anchors"]))
    det = DetectionModel(d, verbose=False).model[-1]
    areas = (det.anchors * det.stride.view(-1, 1, 1)).prod(-1).mean(-1)
    assert areas[0] < areas[1] < areas[2]


def test_detect_decoding_formula_and_export_flag():
    torch.manual_seed(0)
    det = Detect(nc=1, anchors=([10, 13, 16, 30],), ch=(4,))
    det.stride.fill_(8.0)
    det.anchors /= 8.0
    x = torch.randn(1, 4, 2, 3)
    logits = det.train()([x.clone()])[0]  # (1, na=2, ny=2, nx=3, 6)
    assert logits.shape == (1, 2, 2, 3, 6)
    det.eval()
    pred, _ = det([x.clone()])
    s = logits.sigmoid()
    a, yy, xx = 1, 1, 2  # anchor 16x30, cell row 1, column 2
    p = pred[0].view(2, 2, 3, 6)[a, yy, xx]
    assert torch.allclose(p[0], (2 * s[0, a, yy, xx, 0] - 0.5 + xx) * 8)
    assert torch.allclose(p[1], (2 * s[0, a, yy, xx, 1] - 0.5 + yy) * 8)
    assert torch.allclose(p[2:4], (2 * s[0, a, yy, xx, 2:4]) ** 2 * torch.tensor([16.0, 30.0]))
    assert torch.allclose(p[4:], s[0, a, yy, xx, 4:])
    det.export = True
    assert torch.equal(det([x.clone()]), pred)


def test_fla_insertion_changes_nothing_at_init():
    torch.manual_seed(0)
    base = DetectionModel(tiny("yolov5s.yaml"), verbose=False).eval()
    fla = DetectionModel(tiny("yolov5s-fla.yaml"), verbose=False).eval()
    shifted = {}
    for k, v in base.state_dict().items():
        i = int(k.split(".")[1])
        shifted[re.sub(r"^model\.\d+\.", f"model.{i + (i >= 9)}.", k)] = v
    missing, unexpected = fla.load_state_dict(shifted, strict=False)
    assert not unexpected and all(k.startswith("model.9.") for k in missing)
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        assert torch.equal(base(x)[0], fla(x)[0])


def test_depth_width_rules():
    assert make_divisible(1024 * 0.25) == 256 and make_divisible(37) == 40
    with zero_weight_init():  # structure only
        model = DetectionModel("yolov5m.yaml", verbose=False)
    c3 = model.model[6]
    assert isinstance(c3, C3) and len(c3.m) == 6  # 9 * 0.67 -> 6
    assert model.model[7].conv.out_channels == 768


def test_nc_names_and_anchor_overrides():
    d = tiny("yolov5n.yaml")
    d["names"] = ["a", "b", "c"]
    model = DetectionModel(d, nc=3, verbose=False)
    assert model.names == ["a", "b", "c"]
    model = DetectionModel(d, nc=5, anchors=2, verbose=False)
    assert model.model[-1].no == 10 and model.model[-1].na == 2
    assert model.names == [f"class{i}" for i in range(5)]


def _with_row(index: int, row: list) -> dict:
    d = tiny("yolov5n.yaml")
    d["backbone"][index] = row
    return d


@pytest.mark.parametrize(
    "row,pattern",
    [
        ([-1, 1, "NoSuchBlock", [64]], r"layer 3: unknown module 'NoSuchBlock'.*known modules: .*C3FLA"),
        ([-1, 1, "__import__('os').system('true')", []], r"layer 3: unknown module"),
        ([-1, 1, "Conv", ["nc", "x", "y", "z", 1, 2, 3, 4, 5]], r"layer 3: bad arguments"),
        ([-1, 1, "Conv", []], r"layer 3: bad arguments"),
        ([7, 1, "Conv", [64]], r"layer 3: 'from' 7 points outside"),
        ([-1, 0, "Conv", [64]], r"layer 3: 'number' must be a positive int"),
        ([-1, 1, "Conv"], r"layer 3: expected \[from, number, module, args\]"),
        ([-1, 1, "FLA", [4, {"ratoi": 0.5}]], r"layer 3: bad arguments .*unexpected keyword argument 'ratoi'"),
        ([-1, 1, "FLA", [4, {"__class__": 1}]], r"layer 3: option names must be plain identifiers"),
        ([-1, 1, "FLA", [4, {"ratio": 2}]], r"layer 3: bad arguments .*ratio=2 must be in"),
    ],
)
def test_registry_errors(row, pattern):
    with pytest.raises(UserError, match=pattern):
        DetectionModel(_with_row(3, row), verbose=False)


def test_registry_names_and_custom_block():
    names = known_names()
    for n in ("Conv", "C3", "SPPF", "Concat", "Detect", "FLA", "C3FLA", "C3TR", "nn.Upsample", "Upsample"):
        assert n in names
    assert resolve("Upsample").cls is resolve("nn.Upsample").cls is torch.nn.Upsample

    class Scale(torch.nn.Module):
        channel_rule = "same_c1"

        def __init__(self, c1: int, k: float = 2.0):
            super().__init__()
            self.k = k

        def forward(self, x):
            return x * self.k

    register(Scale)
    d = tiny("yolov5n.yaml")
    d["head"].insert(0, [-1, 1, "Scale", [3.0]])
    d["head"] = [[f if not isinstance(f, list) else [j + (j >= 10) for j in f], n, m, a] for f, n, m, a in d["head"]]
    model = DetectionModel(d, verbose=False)
    assert isinstance(model.model[10], Scale) and model.model[10].k == 3.0


def test_yaml_options_by_name():
    """A trailing mapping in a row's args passes options by name; the yaml text form parses with safe_load."""
    row = yaml.safe_load("[-1, 1, FLA, [4, {ratio: 0.5, pos_enc: false}]]")
    model = DetectionModel(_with_row(3, row), verbose=False)
    attn = model.model[3].attn
    assert attn.attn_dim == 16 and attn.num_heads == 4 and attn.positional_encoding is None


STUDY = sorted(p.name for p in (MODELS_DIR / "study").glob("*.yaml"))


@pytest.mark.parametrize("name", STUDY)
def test_study_configs_build_by_bare_name(name):
    """models/study/ holds the FLA design-study variants; --cfg finds them by bare name."""
    assert len(STUDY) >= 7
    model = DetectionModel(name.removesuffix(".yaml"), nc=3, verbose=False)
    assert type(model.model[9]).__name__ == "FLA" and model.yaml_file == name
    model.eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64))[0].shape == (1, 3 * (64 + 16 + 4), 8)


def test_parse_model_returns_layers_and_save():
    layers, save = parse_model(tiny("yolov5n.yaml"), 3, verbose=False)
    assert len(layers) == 25 and save == [4, 6, 10, 14, 17, 20, 23]


def test_onnx_dynamic_model(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    model = DetectionModel(tiny("yolov5s-fla.yaml"), verbose=False).eval()
    model.model[-1].export = True
    f = tmp_path / "m.onnx"
    torch.onnx.export(
        model, (torch.zeros(1, 3, 64, 64),), str(f), input_names=["images"], output_names=["output0"],
        opset_version=17, dynamic_axes={"images": {2: "h", 3: "w"}, "output0": {1: "n"}}, dynamo=False,
    )  # fmt: skip
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for hw in [(64, 64), (96, 160)]:
        x = torch.rand(1, 3, *hw)
        with torch.no_grad():
            ref = model(x).numpy()
        out = sess.run(None, {"images": x.numpy()})[0]
        assert out.shape == ref.shape and np.abs(out - ref).max() < 1e-3


def test_official_weights_parity(shared):
    """Official yolov5n.pt weights in our classes reproduce the official raw output on bus.jpg."""
    cv2 = pytest.importorskip("cv2")
    from utils.safe_pickle import load_official

    md = load_official(shared / "weights" / "yolov5n.pt")["model"]
    model = DetectionModel(md["yaml"], verbose=False)
    model.load_state_dict({k: v.float() for k, v in md["state_dict"].items()}, strict=True)
    im = cv2.imread(str(shared / "reference" / "bus_letterboxed_640x480.png"))[:, :, ::-1].transpose(2, 0, 1)
    x = torch.from_numpy(im.copy()).float()[None] / 255
    ref = np.load(shared / "reference" / "bus_yolov5n_raw_output.npy")
    with torch.no_grad():
        out = model.eval()(x)[0].numpy()
    assert out.shape == ref.shape == (1, 18900, 85)
    assert np.abs(out[..., :4] - ref[..., :4]).max() < 5e-3  # pixels
    assert np.abs(out[..., 4:] - ref[..., 4:]).max() < 1e-4  # scores


def test_cli_prints_table_and_summary():
    r = run_main("models/yolo.py", "--cfg", "yolov5s.yaml")
    assert r.returncode == 0, r.stderr
    assert "YOLOv5s summary: 125 layers, 7,235,389 parameters, 7,235,389 gradients, 16.6 GFLOPs" in r.stdout
    assert re.search(r"24\s+\[17, 20, 23\]\s+1\s+229245\s+models\.yolo\.Detect", r.stdout)
    r = run_main("models/yolo.py", "--cfg", "nope.yaml")
    assert r.returncode == 2 and r.stderr.startswith("error: --cfg file not found")


def test_test_time_augmentation():
    model = DetectionModel(tiny("yolov5n.yaml"), verbose=False).eval()
    x = torch.rand(1, 3, 64, 96)
    with torch.no_grad():
        pred, extra = model(x, augment=True)
    # 378 rows per scale (the 0.83 and 0.67 images pad back to 64x96): keep all but P5 (360), all (378), P4+P5 (90)
    assert extra is None and pred.shape == (1, 360 + 378 + 90, 8)
    assert torch.isfinite(pred).all()


def test_one_definition_of_shared_helpers():
    """make_divisible and the anchor-order check are defined once (models/) and imported by the wings."""
    from models.yolo import check_anchor_order
    from utils.deploy import hub, predict
    from utils.train import autoanchor

    assert hub.make_divisible is make_divisible and not hasattr(predict, "make_divisible")
    assert autoanchor.check_anchor_order is check_anchor_order
