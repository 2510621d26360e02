"""COCO-format evaluation: the 80 -> 91 category ids, the COCO layout, and val.py --save-json scored by pycocotools."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import pytest
import torch
import yaml

from tests.helpers import run_main
from utils.val.coco import COCO91_IDS, CocoTarget, coco_rows, coco_target, find_annotations, is_coco_layout


def make_coco_layout(coco8: Path, dst: Path) -> Path:
    """coco8's val images laid out as official COCO (coco/val2017.txt, images/ and labels/val2017/, and
    annotations/instances_val2017.json built from the YOLO labels); returns the dataset yaml (absolute paths)."""
    root = dst / "coco"
    images, labels = root / "images" / "val2017", root / "labels" / "val2017"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    names = yaml.safe_load((coco8 / "coco8.yaml").read_text())["names"]
    anno = {"images": [], "annotations": [], "categories": [{"id": COCO91_IDS[k], "name": v} for k, v in names.items()]}
    for im in sorted((coco8 / "images" / "val").glob("*.jpg")):
        shutil.copy(im, images / im.name)
        shutil.copy(coco8 / "labels" / "val" / f"{im.stem}.txt", labels / f"{im.stem}.txt")
        h, w = cv2.imread(str(im)).shape[:2]
        anno["images"].append({"id": int(im.stem), "file_name": im.name, "height": h, "width": w})
        for row in (labels / f"{im.stem}.txt").read_text().split("\n"):
            if not row.strip():
                continue
            c, x, y, bw, bh = map(float, row.split())
            box = [(x - bw / 2) * w, (y - bh / 2) * h, bw * w, bh * h]  # pixel [x_min, y_min, w, h]
            anno["annotations"].append(
                {"id": len(anno["annotations"]) + 1, "image_id": int(im.stem), "category_id": COCO91_IDS[int(c)],
                 "bbox": box, "area": box[2] * box[3], "iscrowd": 0}
            )  # fmt: skip
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(anno))
    (root / "val2017.txt").write_text("".join(f"./images/val2017/{im.name}\n" for im in sorted(images.iterdir())))
    f = dst / "coco8-as-coco.yaml"
    f.write_text(yaml.safe_dump({"path": str(root), "train": "val2017.txt", "val": "val2017.txt", "names": names}))
    return f


def test_coco91_ids():
    assert len(COCO91_IDS) == 80 and len(set(COCO91_IDS)) == 80 and list(COCO91_IDS) == sorted(COCO91_IDS)
    assert COCO91_IDS[:11] == tuple(range(1, 12)) and COCO91_IDS[-1] == 90
    # class index -> id where COCO skips: stop sign 11 -> 13, backpack 24 -> 27, toothbrush 79 -> 90
    assert (COCO91_IDS[11], COCO91_IDS[24], COCO91_IDS[26], COCO91_IDS[79]) == (13, 27, 31, 90)
    assert set(range(1, 91)) - set(COCO91_IDS) == {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def test_coco_rows_map_classes_and_corner_boxes():
    xyxy = torch.tensor([[10.0, 20.0, 30.0, 60.0], [0.0, 0.0, 4.0, 2.0]])
    rows = coco_rows(xyxy, torch.tensor([11.0, 0.0]), CocoTarget(class_map=COCO91_IDS), score=torch.tensor([0.9, 0.1]))
    assert rows[0] == {"category_id": 13, "bbox": [10.0, 20.0, 20.0, 40.0], "score": 0.9}
    assert rows[1]["category_id"] == 1 and rows[1]["bbox"] == [0.0, 0.0, 4.0, 2.0]
    truth = coco_rows(xyxy, torch.tensor([11.0, 0.0]), CocoTarget())  # not COCO: ids are the class indices
    assert truth[0] == {"category_id": 11, "bbox": [10.0, 20.0, 20.0, 40.0], "area": 800.0}


def test_layout_detection_and_annotations(tmp_path, monkeypatch):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    data = {"path": str(root), "val": [str(root / "val2017.txt")], "nc": 80}
    assert is_coco_layout(data) and not is_coco_layout({"val": [str(tmp_path / "val2017.txt")]})
    assert not is_coco_layout({"val": [str(root / "images" / "val2017")]})
    monkeypatch.chdir(tmp_path)
    assert find_annotations(data) is None
    target = coco_target(data)  # COCO layout without its json: COCO ids, scored against the labels
    assert target.class_map == COCO91_IDS and target.anno_json is None
    other = tmp_path / "datasets" / "coco" / "annotations" / "instances_val2017.json"  # official's fallback place
    other.parent.mkdir(parents=True)
    other.write_text("{}")
    (tmp_path / "repo").mkdir()
    monkeypatch.chdir(tmp_path / "repo")
    assert find_annotations(data) == other.resolve()
    own = root / "annotations" / "instances_val2017.json"
    own.write_text("{}")
    assert coco_target(data).anno_json == own.resolve()  # the dataset's own file comes first
    assert coco_target({**data, "nc": 3}).class_map == CocoTarget().class_map  # not COCO's 80 classes: indices


@pytest.mark.slow
def test_val_save_json_coco_layout_matches_official(shared, tmp_path):
    """Official YOLOv5 val.py --save-json on this layout (yolov5n.pt, 640): 922 predictions, COCO AP 0.471."""
    data = make_coco_layout(shared / "data" / "coco8", tmp_path / "datasets")
    weights = shared / "weights" / "yolov5n.pt"
    r = run_main("val.py", "--weights", weights, "--data", data, "--imgsz", "640", "--save-json", "--device", "cpu",
                   "--workers", "0", "--noplots", "--project", tmp_path, "--name", "exp")  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    out = r.stdout + r.stderr
    assert "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ] = 0.471" in out  # the COCO table
    assert "COCO mAP50-95 0.471" in out and "annotations/instances_val2017.json" in out
    pred = json.loads((tmp_path / "exp" / "yolov5n_predictions.json").read_text())
    assert len(pred) == 922 and {p["category_id"] for p in pred} <= set(COCO91_IDS)
    anno = json.loads((data.parent / "coco" / "annotations" / "instances_val2017.json").read_text())
    assert {p["category_id"] for p in pred if p["score"] > 0.5} <= {a["category_id"] for a in anno["annotations"]}
    assert {p["image_id"] for p in pred} == {36, 42, 49, 61}
    assert not (tmp_path / "exp" / "annotations.json").exists()  # scored against the dataset's own file
    res = json.loads((tmp_path / "exp" / "results.json").read_text())
    assert res["coco"]["mAP50-95"] == pytest.approx(0.471, abs=5e-4) and res["map"] == res["coco"]["mAP50-95"]
