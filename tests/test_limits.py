"""Size and type limits: a model yaml (or the one inside a checkpoint), an image header, or a flag cannot tie up
the machine; each refusal is one line naming the key, the file or the flag (issue 20)."""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import detect
import export
import train
import val
from models.yolo import DetectionModel
from tests.hardening_helpers import TINY_CFG, bomb_jpeg, cli, one_error, save_tiny
from utils.errors import CheckpointError, DataError, UserError


def _cfg(**top) -> dict:
    d = copy.deepcopy(TINY_CFG)
    d.update(top)
    return d


def _row(i: int, row: list) -> dict:
    d = copy.deepcopy(TINY_CFG)
    d["backbone"][i] = row
    return d


YAML_CASES = [
    (_cfg(depth_multiple="abc"), "'depth_multiple'"),
    (_cfg(depth_multiple=math.nan), "'depth_multiple'"),
    (_cfg(depth_multiple=-1), "'depth_multiple'"),
    (_cfg(depth_multiple=1e12), "'depth_multiple'"),
    (_cfg(depth_multiple=True), "'depth_multiple'"),
    (_cfg(width_multiple=1e9), "'width_multiple'"),
    (_cfg(width_multiple=math.inf), "'width_multiple'"),
    (_cfg(width_multiple=0), "'width_multiple'"),
    (_cfg(nc=0), "'nc'"),
    (_cfg(nc=10**9), "'nc'"),
    (_cfg(nc="80"), "'nc'"),
    (_cfg(ch=0), "'ch'"),
    (_cfg(ch=10**6), "'ch'"),
    (_cfg(anchors=[[10, 13, 16]]), "'anchors'"),
    (_cfg(anchors=[[10, math.nan, 16, 30, 33, 23]] * 3), "'anchors'"),
    (_cfg(anchors=10**6), "'anchors'"),
    (_row(0, [-1, 1, "Conv", [-64, 6, 2, 2]]), "output channels"),
    (_row(1, [-1, 1, "Conv", [128, 3, 0]]), "stride"),
    (_row(1, [-1, 1, "Conv", [128, 0, 2]]), "kernel"),
    (_row(1, [-1, 1, "Conv", [128, 3, 2, -4]]), "padding"),
    (_row(1, [-1, 1, "Conv", [128, 10**5, 2]]), "kernel"),
    (_row(1, [-1, 1, "Conv", [10**6, 3, 2]]), "output channels"),
    (_row(1, [-1, 1, "Conv", [1e300, 3, 2]]), "out of range"),
    (_row(2, [-1, 10**9, "C3", [128]]), "'number'"),
    (_row(2, [-1, 300, "C3", [128]]), "'number'"),
    (_row(3, [-1, 1, "nn.Upsample", [None, 10**5, "nearest"]]), "scale_factor"),
    (_row(4, [-1, 1, "Conv", [65536, 3, 1]]), "output channels"),  # x 0.25 = 16384
    (_row(4, [-1, 1, "Conv", [8192, 63, 1]]), "parameters"),  # 64 x 2048 x 63 x 63 = 520 M
    ({**TINY_CFG, "backbone": TINY_CFG["backbone"] * 200}, "layers"),
]


@pytest.mark.parametrize("cfg,key", YAML_CASES, ids=[f"yaml{i}" for i in range(len(YAML_CASES))])
def test_model_yaml_limits(cfg, key):
    t = time.time()
    with pytest.raises(UserError, match=key) as e:
        DetectionModel(cfg, verbose=False)
    assert "\n" not in str(e.value) and time.time() - t < 10  # one line, checked before anything large is built


def test_every_shipped_model_is_within_the_limits():
    """Every yaml in models/ and models/study/ passes the checks (layers built on the meta device: no memory)."""
    from models.yolo import load_model_yaml, parse_model
    from utils.paths import MODELS_DIR

    files = sorted([*MODELS_DIR.glob("*.yaml"), *MODELS_DIR.glob("study/*.yaml")])
    assert len(files) > 20
    largest = 0
    for f in files:
        d, _ = load_model_yaml(f)
        with torch.device("meta"):
            layers, _ = parse_model(d, 3, verbose=False)
        largest = max(largest, sum(p.numel() for p in layers.parameters()))
    assert largest > 80e6  # yolov5x: the largest real model passes


def test_checkpoint_with_a_hostile_yaml_is_one_line_exit_1(tmp_path, capsys):
    """depth_multiple 1e12 inside a checkpoint that the safe loader accepts used to hang and grow without bound."""
    from utils.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(save_tiny(tmp_path / "ok.pt"))
    for key, value in (("depth_multiple", 1e12), ("width_multiple", 1e9), ("nc", -3)):
        bad = copy.deepcopy(ckpt)
        bad["model"]["yaml"][key] = value
        f = save_checkpoint(bad, tmp_path / f"bad_{key}.pt")
        code, err = cli(detect, ["--weights", f, "--source", tmp_path, "--project", tmp_path], capsys)
        assert code == 1 and f"'{key}'" in one_error(err) and str(f) in one_error(err)


def test_checkpoint_with_a_wrong_tensor_shape(tmp_path, capsys):
    from models.load import load_model
    from utils.checkpoint import load_checkpoint, save_checkpoint

    ckpt = load_checkpoint(save_tiny(tmp_path / "ok.pt"))
    sd = ckpt["model"]["state_dict"]
    key = next(k for k in sd if k.endswith("conv.weight"))
    sd[key] = torch.zeros(3, 3)
    f = save_checkpoint(ckpt, tmp_path / "shape.pt")
    with pytest.raises(CheckpointError, match="weights do not fit its own yaml .*size mismatch"):
        load_model(f)
    ckpt["model"]["state_dict"] = {"a": "not a tensor"}
    with pytest.raises(CheckpointError, match="not a mapping of names to tensors"):
        load_model(save_checkpoint(ckpt, tmp_path / "str.pt"))
    code, err = cli(val, ["--weights", f, "--data", tmp_path / "none.yaml", "--project", tmp_path], capsys)
    assert code in (1, 2) and len(err) >= 1


def test_corrupt_checkpoint_is_exit_1_as_the_readme_says(tmp_path, capsys):
    f = tmp_path / "corrupt.pt"
    f.write_bytes(b"PK\x03\x04 this is not a checkpoint" * 10)
    for mod, extra in ((detect, ["--source", tmp_path]), (export, [])):
        code, err = cli(mod, ["--weights", f, *extra, "--project", tmp_path][: 2 + len(extra) + 2 * (mod is detect)],
                        capsys)  # fmt: skip
        assert code == 1 and "not a PyTorch checkpoint or corrupt" in one_error(err)


# ---------------------------------------------------------------- images: pixel count before decoding


def test_image_header_is_checked_before_decoding(tmp_path):
    from utils.data.image_io import ImageTooLarge, decode
    from utils.data.labels import verify_image

    bomb = bomb_jpeg(tmp_path / "bomb.jpg")
    assert bomb.stat().st_size < 50_000
    with pytest.raises(ImageTooLarge, match="image too large"):
        decode(bomb)
    ok, _, msg = verify_image(bomb)
    assert not ok and msg.startswith("image too large")
    bomb_jpeg(tmp_path / "wide.jpg", w=60000, h=3000)  # 180 M pixels: just above the limit
    with pytest.raises(ImageTooLarge):
        decode(tmp_path / "wide.jpg")


def test_detect_refuses_a_bomb_and_skips_it_among_others(tmp_path, capsys):
    w = save_tiny(tmp_path / "w.pt")
    bomb = bomb_jpeg(tmp_path / "one" / "bomb.jpg") if (tmp_path / "one").mkdir() is None else None
    code, err = cli(detect, ["--weights", w, "--source", bomb, "--project", tmp_path, "--imgsz", "64"], capsys)
    assert code == 1 and "image too large" in one_error(err)
    (tmp_path / "two").mkdir()
    bomb_jpeg(tmp_path / "two" / "a.jpg")
    Image.fromarray(np.full((48, 64, 3), 90, np.uint8)).save(tmp_path / "two" / "b.jpg")
    code, err = cli(detect, ["--weights", w, "--source", tmp_path / "two", "--project", tmp_path, "--name", "t",
                             "--imgsz", "64"], capsys)  # fmt: skip
    assert code == 0 and (tmp_path / "t" / "b.jpg").is_file() and not (tmp_path / "t" / "a.jpg").exists()


def test_dataset_skips_a_bomb(tmp_path):
    from tests.hardening_helpers import make_dataset
    from utils.data.dataset import LoadImagesAndLabels
    from utils.data.options import DataOptions

    data = make_dataset(tmp_path / "ds")
    bomb_jpeg(data.parent / "images" / "val" / "bomb.jpg")
    (data.parent / "labels" / "val" / "bomb.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    ds = LoadImagesAndLabels(str(data.parent / "images" / "val"), DataOptions(img_size=64, nc=2))
    assert ds.n == 4 and any("bomb.jpg: image skipped: image too large" in p for p in ds.problems)


def test_hub_checks_its_inputs(tmp_path):
    from utils.deploy.hub import load

    det = load(save_tiny(tmp_path / "w.pt"))
    good = np.full((48, 64, 3), 90, np.uint8)
    assert len(det(good, size=64)) == 1
    bad_inputs = [(np.zeros((0, 0, 3), np.uint8), "empty"), (np.zeros((5, 5, 2), np.uint8), "not an image"),
                  (Image.new("RGB", (0, 0)), "empty"), (np.zeros((4, 4), object), "not a number type")]  # fmt: skip
    for bad, match in bad_inputs:
        with pytest.raises(UserError, match=match):
            det(bad, size=64)
    for size in (-5, 0, 10**6, 2.5, True):
        with pytest.raises(UserError, match="size must be an int between 1 and"):
            det(good, size=size)
    with pytest.raises(DataError, match="image too large"):
        det(str(bomb_jpeg(tmp_path / "bomb.jpg")), size=64)


# ---------------------------------------------------------------- flags: range-checked at parse time

FLAG_CASES = [
    (detect, ["--imgsz", "100000"]), (detect, ["--imgsz", "0"]), (detect, ["--imgsz", "-32"]),
    (detect, ["--conf-thres", "1.5"]), (detect, ["--conf-thres", "-0.1"]), (detect, ["--iou-thres", "nan"]),
    (detect, ["--max-det", "0"]), (detect, ["--vid-stride", "0"]), (detect, ["--line-thickness", "-2"]),
    (detect, ["--classes", "-1"]),
    (val, ["--imgsz", "0"]), (val, ["--imgsz", "100000"]), (val, ["--workers", "-3"]), (val, ["--iou-thres", "2"]),
    (val, ["--conf-thres", "inf"]), (val, ["--max-det", "-1"]),
    (train, ["--imgsz", "-1"]), (train, ["--workers", "-3"]), (train, ["--label-smoothing", "1.5"]),
    (train, ["--patience", "-1"]), (train, ["--freeze", "-2"]),
    (export, ["--batch-size", "0"]), (export, ["--imgsz", "100000"]), (export, ["--opset", "99"]),
    (export, ["--opset", "3"]), (train, ["--evolve", "0"]), (train, ["--evolve", "-1"]),
    # red team 2026-12-06: the segment / classify scripts, benchmarks.py and ablate.py
    ("segment.predict", ["--conf-thres", "2"]), ("segment.predict", ["--iou-thres", "-0.1"]),
    ("segment.predict", ["--max-det", "0"]), ("segment.predict", ["--vid-stride", "0"]),
    ("segment.predict", ["--line-thickness", "0"]), ("segment.predict", ["--classes", "-1"]),
    ("segment.val", ["--workers", "-1"]), ("segment.val", ["--conf-thres", "-1"]), ("segment.val", ["--max-det", "-3"]),
    ("classify.predict", ["--imgsz", "0"]), ("classify.predict", ["--imgsz", "99999"]),
    ("classify.predict", ["--vid-stride", "0"]), ("classify.val", ["--workers", "-1"]),
    ("classify.val", ["--imgsz", "50000"]), ("classify.train", ["--workers", "-1"]),
    ("classify.train", ["--label-smoothing", "2"]), ("classify.train", ["--lr0", "-1"]),
    ("classify.train", ["--lr0", "nan"]), ("benchmarks.py", ["--batch-size", "0"]),
    ("benchmarks.ablate", ["--cfgs", "a.yaml", "--data", "d", "--epochs", "0"]),
    ("benchmarks.ablate", ["--cfgs", "a.yaml", "--data", "d", "--ray-cpus", "0"]),
]  # fmt: skip


def _script(mod):
    """A script module: an imported one, 'pkg.name', or a root 'name.py' (benchmarks.py: the benchmarks/ package
    takes its import name)."""
    import importlib
    import importlib.util

    if not isinstance(mod, str):
        return mod
    if not mod.endswith(".py"):
        return importlib.import_module(mod)
    spec = importlib.util.spec_from_file_location(f"_script_{mod[:-3]}", Path(__file__).parents[1] / mod)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "mod,argv", FLAG_CASES, ids=[f"{getattr(m, '__name__', m)}{' '.join(a)}" for m, a in FLAG_CASES]
)
def test_numeric_flags_are_range_checked_at_parse_time(mod, argv, capsys):
    with pytest.raises(SystemExit) as e:
        _script(mod).parse_opt(argv)
    err = capsys.readouterr().err
    flag = [a for a in argv if a.startswith("--")][-1]
    assert e.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err, err


def test_imgsz_limit_holds_past_the_parser():
    from utils.img_size import check_img_size

    with pytest.raises(UserError, match="--imgsz"):
        check_img_size(100000)
    with pytest.raises(UserError, match="--imgsz"):
        check_img_size([640, 0])
    assert check_img_size(640) == 640


def test_opset_range_is_the_installed_torch_one():
    from utils.flag_ranges import onnx_opsets

    lo, hi = onnx_opsets()
    assert lo <= 17 <= hi
    assert export.parse_opt(["--opset", str(hi)]).opset == hi


@pytest.mark.parametrize("nc", [10**13, "abc", math.nan, 0, True])
def test_dataset_nc_is_range_checked(nc):
    """nc 1e13 without names used to build a list of 10^13 class names (found by tests/test_fuzz.py)."""
    from utils.data.config import check_dataset

    t = time.time()
    with pytest.raises(UserError, match="'nc' must be an int"):
        check_dataset({"train": ".", "val": ".", "nc": nc})
    assert time.time() - t < 5
