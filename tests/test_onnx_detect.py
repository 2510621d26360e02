"""ONNX files through detect.py and val.py: official YOLOv5 exports (metadata as Python literals) and dynamic axes."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from models.yolo import DetectionModel
from tests.helpers import run_main
from tests.test_detect import assert_matches_reference, read_rows
from utils.boxes import box_iou, xywh2xyxy
from utils.checkpoint import model_to_dict, save_checkpoint
from utils.deploy.backends import DetectMultiBackend, onnx_meta, parse_meta_value
from utils.deploy.export import run_export
from utils.errors import UserError


def detect(*args, project: Path, name: str = "exp"):
    r = run_main("detect.py", *args, "--project", project, "--name", name, "--nosave")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    return r


def matched(a: Path, b: Path) -> tuple:
    """(boxes of a with a same-class IoU >= 0.95 box in b at the same image, boxes of a) over two label folders."""
    files = sorted(b.glob("*.txt"))
    assert files and sorted(p.name for p in a.glob("*.txt")) == [p.name for p in files]
    hits = total = 0
    for f in files:
        x, y = read_rows(a / f.name), read_rows(f)
        total += len(x)
        if len(x) and len(y):
            iou = box_iou(xywh2xyxy(torch.tensor(x[:, 1:5])), xywh2xyxy(torch.tensor(y[:, 1:5]))).numpy()
            iou[x[:, 0][:, None] != y[:, 0][None]] = 0
            hits += int((iou.max(1) >= 0.95).sum())
    return hits, total


def assert_same_boxes(a: Path, b: Path, share: float = 1.0) -> int:
    """Both folders' boxes find their match in the other (all of them, or at least share of them); returns the count."""
    (ha, na), (hb, nb) = matched(a, b), matched(b, a)
    assert ha >= share * na and hb >= share * nb, f"{ha} of {na} and {hb} of {nb} boxes matched"
    return nb


def test_meta_values_json_or_literal():
    assert parse_meta_value('["a", "b"]') == ["a", "b"]
    assert parse_meta_value("{0: 'person', 1: 'bus'}") == {0: "person", 1: "bus"}
    assert onnx_meta({"stride": "32", "names": "{1: 'b', 0: 'a'}"}, Path("m.onnx")) == (32, ["a", "b"])
    assert onnx_meta({}, Path("m.onnx")) == (32, [])
    for bad in ({"names": "{0: 'a'"}, {"names": "__import__('os')"}, {"names": "7"}, {"stride": "'x'"}):
        with pytest.raises(UserError, match="cannot read the metadata of ONNX model m.onnx"):
            onnx_meta(bad, Path("m.onnx"))


@pytest.fixture(scope="module")
def sources(shared, tmp_path_factory) -> Path:
    """bus, zidane and the coco8 val folder as one .txt source list."""
    lst = tmp_path_factory.mktemp("src") / "sources.txt"
    lst.write_text(f"{shared / 'images/bus.jpg'}\n{shared / 'images/zidane.jpg'}\n{shared / 'data/coco8/images/val'}\n")
    return lst


@pytest.mark.slow
def test_official_onnx_matches_official_detect(shared, sources, tmp_path):
    onnx_file = shared / "weights/yolov5n-official.onnx"
    r = detect("--weights", onnx_file, "--source", sources, "--conf-thres", "0.1", "--save-txt", "--save-conf",
               project=tmp_path)  # fmt: skip
    assert "640x640 4 persons, 1 bus, 1 handbag" in r.stdout  # a static export keeps its square input
    assert_matches_reference(tmp_path / "exp/labels", shared / "reference/detect_yolov5n_onnx_640")


@pytest.mark.slow
def test_official_onnx_val(shared, tmp_path):
    data = shared / "data/coco8/coco8.yaml"
    r = run_main("val.py", "--weights", shared / "weights/yolov5n-official.onnx", "--data", data,
                   "--batch-size", "1", "--project", tmp_path, "--noplots", "--workers", "0")  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "all" in r.stdout


def test_unreadable_onnx_metadata_is_one_line(shared, tmp_path):
    import onnx

    proto = onnx.load(str(shared / "weights/yolov5n-official.onnx"))
    for p in proto.metadata_props:
        if p.key == "names":
            p.value = "{0: 'person', 1: "
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    r = run_main("detect.py", "--weights", bad, "--source", shared / "images/bus.jpg", "--project", tmp_path)
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        f"error: cannot read the metadata of ONNX model {bad}: not JSON nor a Python literal: \"{{0: 'person', 1: \""
    ], r.stderr


@pytest.fixture(scope="module")
def yolov5n_dynamic(shared, tmp_path_factory) -> Path:
    """yolov5n.pt and its --dynamic ONNX export (at 320) in a temp folder."""
    w = shutil.copy(shared / "weights/yolov5n.pt", tmp_path_factory.mktemp("dyn") / "yolov5n.pt")
    run_export(w, imgsz=[320], include=["onnx"], dynamic=True)
    return Path(w)


@pytest.mark.slow
@pytest.mark.parametrize("imgsz", [640, 320])
def test_dynamic_onnx_detects_as_pt(yolov5n_dynamic, sources, tmp_path, imgsz):
    for suffix in (".pt", ".onnx"):
        detect("--weights", yolov5n_dynamic.with_suffix(suffix), "--source", sources, "--imgsz", imgsz,
               "--save-txt", project=tmp_path, name=suffix[1:])  # fmt: skip
    assert assert_same_boxes(tmp_path / "onnx/labels", tmp_path / "pt/labels") >= (15 if imgsz == 640 else 5)


@pytest.mark.slow
def test_dynamic_onnx_val_as_pt(shared, yolov5n_dynamic, tmp_path):
    maps = []
    for suffix in (".pt", ".onnx"):
        r = run_main("val.py", "--weights", yolov5n_dynamic.with_suffix(suffix), "--data",
                       shared / "data/coco8/coco8.yaml", "--batch-size", "2", "--project", tmp_path, "--noplots",
                       "--workers", "0")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        maps.append([ln.split()[1:] for ln in r.stdout.splitlines() if ln.split()[:1] == ["all"]][0])
    assert maps[0] == maps[1]


@pytest.fixture(scope="module")
def tiny_fla(tmp_path_factory) -> Path:
    """A width-0.25 FLA model whose objectness bias makes it find boxes, with a dynamic and a static ONNX export."""
    torch.manual_seed(0)
    model = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False)
    for m in model.modules():
        if type(m).__name__ == "FocusedLinearAttention":
            torch.nn.init.normal_(m.proj.weight, std=0.05)
    det = model.model[-1]
    with torch.no_grad():
        for conv in det.m:
            conv.bias.view(det.na, -1)[:, 4] += 6.0  # objectness 0.3-0.9, varying with the input (no ties)
    model.names = ["a", "b"]
    folder = tmp_path_factory.mktemp("fla")
    f = folder / "fla.pt"
    save_checkpoint({"model": model_to_dict(model, half=False)}, f)
    run_export(f, imgsz=[128], include=["onnx"], dynamic=True)
    static = shutil.copy(f, folder / "fla-static.pt")
    run_export(static, imgsz=[128], include=["onnx"])
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(((90, 160), (160, 100), (120, 120))):
        im = cv2.GaussianBlur(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), (7, 7), 0)
        cv2.imwrite(str(folder / f"im{i}.jpg"), im)
    return f


def _shapes(r) -> list:
    """The letterboxed 'HxW' of each 'image i/n path: HxW ...' line detect.py prints."""
    return [ln.split(": ")[1].split()[0] for ln in r.stdout.splitlines() if ln.startswith("image ")]


@pytest.mark.parametrize("imgsz", [128, 160])
def test_dynamic_fla_onnx_takes_pt_letterbox(tiny_fla, tmp_path, imgsz):
    shapes = {}
    for suffix in (".pt", ".onnx"):
        r = detect("--weights", tiny_fla.with_suffix(suffix), "--source", tiny_fla.parent / "im*.jpg", "--imgsz",
                   imgsz, project=tmp_path, name=suffix[1:])  # fmt: skip
        shapes[suffix] = _shapes(r)
    assert shapes[".onnx"] == shapes[".pt"] and len(set(shapes[".pt"])) > 1  # rectangular, as the .pt
    # on those inputs both give the same raw output (a random model's NMS is decided by rounding, so compare before it)
    pt, onnx_model = DetectMultiBackend(tiny_fla), DetectMultiBackend(tiny_fla.with_suffix(".onnx"))
    for shape in set(shapes[".pt"]):
        x = torch.rand(1, 3, *map(int, shape.split("x")))
        with torch.no_grad():
            torch.testing.assert_close(onnx_model(x), pt(x), atol=1e-3, rtol=1e-5)


def test_static_onnx_keeps_export_size(tiny_fla, tmp_path):
    backend = DetectMultiBackend(tiny_fla.parent / "fla-static.onnx")
    assert not backend.dynamic and backend.imgsz == (128, 128)
    r = detect("--weights", tiny_fla.parent / "fla-static.onnx", "--source", tiny_fla.parent / "im0.jpg",
               "--imgsz", "160", project=tmp_path)  # fmt: skip
    assert "differs from the exported size" in r.stdout + r.stderr
    assert _shapes(r) == ["128x128"]
