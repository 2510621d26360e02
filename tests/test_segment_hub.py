"""Segmentation through torch.hub and the Python API (utils/segment/hub.py): masks per image, as segment/predict.py."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from utils.segment.ops import polygon_mask


@pytest.fixture(scope="module")
def seg_hub(shared):
    """torch.hub 'custom' on the shared -seg weights (one load for the module), at 320."""
    from tests.conftest import ROOT

    w = shared / "weights" / "yolov5n-seg-coco128.pt"
    if not w.is_file():
        pytest.skip("../shared/weights/yolov5n-seg-coco128.pt is absent")
    m = torch.hub.load(str(ROOT), "custom", path=str(w), source="local", device="cpu")
    m.size = 320
    return m


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hub_seg_masks_match_predict(seg_hub, shared, tmp_path):
    """bus.jpg: one (H, W) bool mask per box at the image's size, and each matches segment/predict.py --retina-masks'
    polygon (same classes in the same order, polygon-mask IoU >= 0.9); retina_masks=False (predict.py's default
    masks) gives the same instances with masks close to those."""
    from segment.predict import main, parse_opt
    from utils.segment.hub import SegDetections

    bus = shared / "images" / "bus.jpg"
    r = seg_hub(bus)
    seg_hub.retina_masks = False
    try:
        coarse = seg_hub(bus)
    finally:
        seg_hub.retina_masks = True
    assert isinstance(r, SegDetections) and len(r.masks) == len(r.xyxy) == 1
    h, w = r.ims[0].shape[:2]
    masks, boxes = r.masks[0], r.xyxy[0]
    assert len(boxes) >= 4 and masks.shape == (len(boxes), h, w) and masks.dtype == torch.bool
    assert all(m.any() for m in masks)
    out = main(parse_opt(["--weights", str(shared / "weights" / "yolov5n-seg-coco128.pt"), "--source", str(bus),
                          "--img", "320", "--save-txt", "--save-conf", "--nosave", "--project", str(tmp_path),
                          "--retina-masks"]))  # fmt: skip
    rows = [list(map(float, s.split())) for s in (out / "labels" / "bus.txt").read_text().splitlines()]
    rows = sorted(rows, key=lambda x: -x[-1])  # predict.py writes them lowest confidence first
    assert [int(x[0]) for x in rows] == boxes[:, 5].int().tolist()
    for row, ours in zip(rows, masks.numpy()):
        theirs = polygon_mask((h, w), np.array(row[1:-1]).reshape(-1, 2) * [w, h]).astype(bool)
        assert (theirs & ours).sum() / (theirs | ours).sum() >= 0.9
    assert torch.equal(coarse.xyxy[0], boxes) and coarse.masks[0].shape == masks.shape
    assert all((a & b).sum() / (a | b).sum() >= 0.8 for a, b in zip(coarse.masks[0], masks))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hub_seg_views_render_crop(seg_hub, shared, tmp_path):
    """Indexing keeps masks, render/save draw them (pixels inside a mask change colour), crop() adds each mask's crop,
    polygons() follow the masks, a bare tensor gives the raw (pred, protos), and detection's load refuses it."""
    from utils.deploy.hub import load as load_detector
    from utils.errors import UserError

    rgb = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(shared / "images" / "bus.jpg").convert("RGB"))
    r = seg_hub([rgb, rgb[:400, :300]])
    assert len(r) == 2 and [m.shape[1:] for m in r.masks] == [rgb.shape[:2], (400, 300)]
    one = r[1]
    assert one.masks[0].shape == r.masks[1].shape and len(one.xyxy[0]) == len(one.masks[0])
    drawn = r.render(labels=False)[0]
    inside = r.masks[0][0].numpy()
    assert (drawn[inside] != rgb[inside]).any(axis=-1).mean() > 0.9
    saved = r.save(tmp_path / "exp")
    assert (saved / "image0.jpg").is_file() and (saved / "image1.jpg").is_file()
    crops = r[0].crop(save=True, save_dir=tmp_path / "crops")
    assert len(crops) == len(r.xyxy[0]) and crops[0]["mask"].shape == crops[0]["im"].shape[:2]
    assert any((tmp_path / "crops" / "crops").rglob("*.jpg"))
    polys = r.polygons(normalize=True)[0]
    assert len(polys) == len(r.masks[0]) and all(0 <= p.min() and p.max() <= 1 for p in polys)
    raw = seg_hub(torch.zeros(1, 3, 64, 64))
    assert raw[0].shape[0] == 1 and raw[1].shape == (1, 32, 16, 16)
    with pytest.raises(UserError, match="segment model"):
        load_detector(seg_hub.model)(rgb)


def test_benchmark_row_of_a_seg_model(shared, tmp_path, monkeypatch):
    """benchmarks.py on a -seg .pt validates with segment/val.py: the row's mAP is the mask mAP50-95."""
    import argparse

    import yaml

    from segment import val as seg_val
    from utils.deploy.benchmark import bench_one, is_segment_file

    src = shared / "data" / "coco128-seg"
    for f in sorted((src / "images" / "train2017").glob("*.jpg"))[:2]:
        for sub, ext in (("images", ".jpg"), ("labels", ".txt")):
            (tmp_path / sub).mkdir(exist_ok=True)
            shutil.copy(src / sub / "train2017" / f"{f.stem}{ext}", tmp_path / sub)
    names = yaml.safe_load((src / "coco128-seg.yaml").read_text())["names"]
    data = tmp_path / "d.yaml"
    data.write_text(yaml.safe_dump({"path": str(tmp_path), "train": "images", "val": "images", "names": names}))
    pt = shared / "weights" / "yolov5n-seg-coco128.pt"
    assert is_segment_file(pt) and not is_segment_file(shared / "weights" / "yolov5n.pt")
    opt = argparse.Namespace(data=str(data), imgsz=128, batch_size=2, device="cpu", half=False, test=False)
    runs, real = [], seg_val.run
    monkeypatch.setattr(seg_val, "run", lambda o: runs.append(real(o)) or runs[-1])
    row = bench_one("PyTorch", "pt", False, pt, tmp_path, opt, task="segment")
    assert row.status == "ok" and len(runs) == 1 and runs[0].row[7] > 0
    assert row.map == pytest.approx(runs[0].row[7]) and row.ms == pytest.approx(runs[0].speeds[1])


def test_segment_val_without_data_uses_polygon_builtin(shared, tmp_path, monkeypatch, capsys):
    """segment/val.py without --data asks for the built-in shapes with polygons (segments=True); a COCO model there
    is one error line that names --data coco128-seg.yaml."""
    import utils.data.synthetic as synthetic
    from segment import val as seg_val

    (tmp_path / "images").mkdir()
    shutil.copy(shared / "images" / "bus.jpg", tmp_path / "images")
    data = tmp_path / "shapes.yaml"
    data.write_text(f"path: {tmp_path}\ntrain: images\nval: images\nnames: [circle, square, triangle, star]\n")
    calls = []
    monkeypatch.setattr(synthetic, "ensure_builtin_dataset", lambda **kw: calls.append(kw) or data)
    w = shared / "weights" / "yolov5n-seg-coco128.pt"
    with pytest.raises(SystemExit) as e:
        seg_val.main(seg_val.parse_opt(["--weights", str(w), "--project", str(tmp_path / "runs")]))
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert calls == [{"segments": True}] and e.value.code in (1, 2)
    assert err.startswith("error:") and "--data coco128-seg.yaml" in err


def test_hub_static_seg_onnx_letterboxes_to_its_size(seg_hub, shared):
    """The official static 320x320 -seg ONNX through hub: inputs letterboxed to the export's size (a rectangular
    batch would be refused by the runtime), and the .pt's instances with their masks (IoU >= 0.8)."""
    pytest.importorskip("onnxruntime")
    from utils.segment.hub import load

    f = shared / "weights" / "yolov5n-seg-coco128-official.onnx"
    r = load(f, device="cpu", size=320)(shared / "images" / "bus.jpg")
    ref = seg_hub(shared / "images" / "bus.jpg")
    assert r.shape[2:] == (320, 320) and r.xyxy[0][:, 5].tolist() == ref.xyxy[0][:, 5].tolist()
    assert all((a & b).sum() / (a | b).sum() >= 0.8 for a, b in zip(r.masks[0], ref.masks[0]))
