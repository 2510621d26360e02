"""detect.py --heatmap pieces: EigenCAM maps, FLA's attention row (checked against the layer's own output)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.fla import FocusedLinearAttention
from models.yolo import DetectionModel
from utils.deploy.heatmap import (
    HeatmapWriter,
    default_layer,
    eigen_cam,
    oriented_projection,
    unletterbox,
)
from utils.errors import UserError

pytest.importorskip("pytorch_grad_cam")


def test_attention_row_reproduces_the_layer_output():
    """With proj = identity and no DWC, the layer's output at token i is sum_j a_ij v_j per head."""
    torch.manual_seed(0)
    attn = FocusedLinearAttention(16, num_heads=2, focusing_factor=3, kernel_size=0, base_size=4).eval()
    with torch.no_grad():
        attn.proj.weight.copy_(torch.eye(16))
        attn.proj.bias.zero_()
        attn.positional_encoding.normal_()
        attn.scale.normal_()
    h, w = 4, 5
    t = torch.randn(1, h * w, 16).transpose(1, 2)  # (1, 16, N) channel-first tokens
    x = t.reshape(1, 16, h, w)
    with torch.no_grad():
        out = attn(x).flatten(2)[0].t()  # (N, 16)
        v = attn.kv(t.transpose(1, 2)).chunk(2, dim=-1)[1][0].reshape(h * w, 2, 8)  # (N, heads, d)
    for i in (0, 7, h * w - 1):
        a = attn.attention_row(t, h, w, i, per_head=True).reshape(2, h * w)  # (heads, N)
        assert torch.allclose(a.sum(-1), torch.ones(2))
        expect = torch.einsum("hn,nhd->hd", a, v).reshape(16)
        assert torch.allclose(out[i], expect, atol=1e-4), (out[i] - expect).abs().max()
    row = attn.attention_row(t, h, w, 3)
    assert row.shape == (h, w) and row.std() > 0 and torch.isclose(row.sum(), torch.tensor(1.0))


def test_default_layer_is_fla_else_last_backbone():
    assert default_layer(DetectionModel("yolov5n.yaml", nc=2, verbose=False)) == 9  # SPPF
    net = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False)
    assert type(net.model[default_layer(net)]).__name__ == "FLA"


def test_eigen_cam_is_a_non_constant_map_and_bad_layer_is_one_line():
    torch.manual_seed(0)
    net = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False).eval()
    maps = eigen_cam(net, torch.rand(2, 3, 96, 128), default_layer(net))
    assert maps.shape == (2, 96, 128) and maps.min() >= 0 and maps.max() <= 1 and maps[0].std() > 0.01
    with pytest.raises(UserError, match="--heatmap 99"):
        HeatmapWriter(net, ".", 99)


@pytest.mark.parametrize("flip", [False, True])
def test_eigen_projection_points_at_the_active_positions(monkeypatch, flip):
    """The principal component's sign is arbitrary: the map must be high where the activations are, either way."""
    import pytorch_grad_cam.utils.svd_on_activations as svd

    rng = np.random.default_rng(0)
    acts = rng.normal(0, 0.05, (2, 8, 6, 7)).astype(np.float32)
    acts[0, :, 1:3, 2:4] += 3.0  # an active blob, all channels up
    acts[1, :4, 4:, :2] += 2.0
    if flip:  # what a solver returning -v instead of v gives
        real = svd.get_2d_projection
        monkeypatch.setattr(svd, "get_2d_projection", lambda a: -real(a))
    m = oriented_projection(acts)
    assert m.shape == (2, 6, 7)
    assert m[0, 1:3, 2:4].min() > m[0].mean() and m[1, 4:, :2].min() > m[1].mean()


def test_unletterbox_cuts_the_padding():
    m = np.zeros((64, 64), np.float32)
    m[16:48] = 1.0  # a 2:1 image letterboxed into 64x64 has 16 px bars top and bottom
    out = unletterbox(m, (50, 100))
    assert out.shape == (50, 100) and out.min() == 1.0


def test_writer_writes_image_sized_pngs(tmp_path):
    import cv2

    torch.manual_seed(0)
    net = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False).eval()
    im0 = np.random.default_rng(0).integers(0, 255, (96, 160, 3), dtype=np.uint8)
    w = HeatmapWriter(net, tmp_path)
    w.write(torch.rand(1, 3, 128, 160), ["x"], [im0], [torch.tensor([[10.0, 10.0, 60.0, 50.0, 0.9, 0.0]])])
    for name in ("x_cam.png", "x_attention.png"):
        im = cv2.imread(str(tmp_path / "heatmaps" / name))
        assert im.shape == im0.shape and not np.array_equal(im, im0)


@pytest.mark.slow
def test_detect_heatmap_end_to_end(tmp_path):
    """detect.py --heatmap on an FLA model: per image a cam and an attention PNG of the image's size."""
    import cv2

    from tests.helpers import run_main, write_video
    from utils.checkpoint import model_to_dict, save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False)
    with torch.no_grad():  # a non-zero attention output, as after training
        for m in model.modules():
            if isinstance(m, FocusedLinearAttention):
                m.proj.weight.normal_(0, 0.02)
    weights = tmp_path / "fla.pt"
    save_checkpoint({"model": model_to_dict(model, half=False)}, weights)
    src = tmp_path / "src"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name, (h, w) in {"a.jpg": (90, 120), "b.png": (100, 70)}.items():
        cv2.imwrite(str(src / name), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
    write_video(src / "clip.mp4", n=3)
    r = run_main("detect.py", "--weights", weights, "--source", src, "--imgsz", "96", "--heatmap",
                   "--project", tmp_path, "--name", "exp", "--conf-thres", "0.001")  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    out = tmp_path / "exp" / "heatmaps"
    assert sorted(p.name for p in out.glob("*.png")) == [
        "a_attention.png", "a_cam.png", "b_attention.png", "b_cam.png", "clip_1_attention.png", "clip_1_cam.png"
    ]  # fmt: skip
    for stem, shape in (("a", (90, 120, 3)), ("b", (100, 70, 3)), ("clip_1", (48, 64, 3))):
        for kind in ("cam", "attention"):
            im = cv2.imread(str(out / f"{stem}_{kind}.png"))
            assert im.shape == shape and im.std() > 1
    r = run_main("detect.py", "--weights", weights, "--source", src / "a.jpg", "--imgsz", "96", "--heatmap", "99",
                   "--project", tmp_path, "--name", "bad")  # fmt: skip
    assert r.returncode == 2 and "error: --heatmap 99" in r.stderr and "Traceback" not in r.stderr
