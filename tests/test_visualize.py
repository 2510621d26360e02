"""detect.py --visualize: per-image feature-map folders (PNG grids + .npy), the ONNX warning, and feature_grid."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import TINY, make_detecting_weights, run_main, write_video
from utils.deploy.feature_maps import feature_grid


@pytest.fixture(scope="module")
def tiny_pt(tmp_path_factory) -> Path:
    """A random tiny 3-class model (width 0.25) in our checkpoint format."""
    return make_detecting_weights(tmp_path_factory.mktemp("viz") / "tiny.pt", raise_objectness=False)


def drawable_stages(weights: Path, imgsz: int) -> dict:
    """{stage index: output (C, H, W) shape} for the layers before Detect whose output is 4-D."""
    from models.load import load_model

    model = load_model(weights, device=torch.device("cpu"), fuse=True).eval()
    shapes = {}
    for layer in list(model.model)[:-1]:  # Detect is last
        layer.register_forward_hook(lambda m, i, o: shapes.update({m.i: tuple(o.shape[1:])} if o.ndim == 4 else {}))
    with torch.no_grad():
        model(torch.zeros(1, 3, imgsz, imgsz))
    return shapes


def detect(*args, project: Path):
    r = run_main("detect.py", *args, "--project", project, "--name", "exp")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    return r


def test_feature_grid_constant_channel_and_shape():
    t = torch.stack([torch.full((4, 6), 3.0), torch.arange(24.0).view(4, 6), *torch.randn(3, 4, 6)])  # (5, 4, 6)
    g = feature_grid(t, n=32, cols=8)
    assert g.dtype == np.uint8 and g.shape == (4, 5 * 7 - 1)  # one row of 5 maps, 1-px separators
    assert (g[:, :6] == 0).all()  # constant channel: black, no NaN
    assert g[0, 7] == 0 and g[-1, 7 + 5] == 255  # channel 1 min-max normalised to 0..255
    assert (g[:, 6] == 255).all()  # separator
    big = feature_grid(torch.randn(40, 2, 3), n=32, cols=8, scale=2)
    assert big.shape == (4 * 5 - 1, 8 * 7 - 1)  # 32 of 40 channels: 4 rows x 8 columns of 4x6 maps
    with pytest.raises(ValueError):
        feature_grid(torch.zeros(4, 6))


def test_visualize_folder_of_images(tiny_pt, tmp_path):
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(src / name), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    detect("--weights", tiny_pt, "--source", src, "--imgsz", "64", "--visualize", "--nosave", project=tmp_path)
    out = tmp_path / "exp"
    stages = drawable_stages(tiny_pt, 64)
    assert len(stages) == len(TINY["backbone"])  # every backbone layer of TINY gives a 4-D map
    assert sorted(p.name for p in out.iterdir() if p.is_dir()) == ["a", "b"]
    for folder in (out / "a", out / "b"):
        pngs = sorted(folder.glob("stage*_features.png"))
        assert len(pngs) == len(stages) and len(list(folder.glob("*.npy"))) == len(stages)
        assert (folder / "stage0_Conv_features.png").is_file() and (folder / "stage8_SPPF_features.png").is_file()
        for png in pngs:
            i = int(png.name.split("_")[0][5:])
            c, h, w = stages[i]
            arr = np.load(png.with_suffix(".npy"))
            assert arr.shape == (min(c, 32), h, w) and np.isfinite(arr).all()
            im = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)
            assert im is not None and im.ndim == 2 and 32 <= min(im.shape) and max(im.shape) <= 8 * 33 + 8
            assert im.shape[1] >= min(c, 8) * w  # 8 (or C) maps per row


def test_visualize_video_first_frame_only(tiny_pt, tmp_path):
    v = write_video(tmp_path / "v.mp4", n=4)
    detect("--weights", tiny_pt, "--source", v, "--imgsz", "64", "--visualize", "--nosave", project=tmp_path)
    assert sorted(p.name for p in (tmp_path / "exp").iterdir() if p.is_dir()) == ["v_1"]


def test_visualize_onnx_warns_and_runs(tiny_pt, tmp_path):
    from utils.deploy.export import run_export

    onnx = run_export(tiny_pt, imgsz=[64], include=["onnx"])["onnx"]
    im = tmp_path / "a.jpg"
    cv2.imwrite(str(im), np.full((64, 64, 3), 90, np.uint8))
    r = detect("--weights", onnx, "--source", im, "--imgsz", "64", "--visualize", project=tmp_path)
    warnings = [s for s in (r.stdout + r.stderr).splitlines() if "--visualize" in s]
    assert len(warnings) == 1 and "WARNING" in warnings[0] and ".pt" in warnings[0]
    assert (tmp_path / "exp/a.jpg").is_file() and not [p for p in (tmp_path / "exp").iterdir() if p.is_dir()]
