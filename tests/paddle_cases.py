"""PaddlePaddle round trips, run by tests/test_paddle.py in ONE child pytest process (paddle configures the root
logger and loads its own native libraries when imported: it stays out of the suite's process).

The tiny FLA + C3FLA models of tests/export_cases.py (detect, segment, classify, 64 px) go through `export.py
--include paddle` and must give the .pt's outputs (boxes at the 20 top anchors IoU >= 0.95, prototypes and
probabilities close); yolov5n at 128 px gives the .pt's boxes on bus.jpg through detect.py, and val.py, segment/
predict.py and classify/predict.py run the exported folders. Run alone: `python -m pytest tests/paddle_cases.py`.
"""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest
import torch
import yaml

from tests.export_cases import SIZE, _images, _model, _same_boxes
from tests.helpers import run_main
from utils.boxes import box_iou, xywh2xyxy
from utils.deploy.backends import load_predictor

pytest.importorskip("paddle")
pytest.importorskip("x2paddle")


def _export(w, size: int) -> object:
    r = run_main("export.py", "--weights", w, "--include", "paddle", "--imgsz", size)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return w.with_name(f"{w.stem}_paddle_model")


@pytest.fixture(scope="session", params=["detect", "segment", "classify"])
def tiny(request, tmp_path_factory):
    """(task, .pt, its paddle folder) of the task's tiny FLA model, exported with export.py."""
    from utils.checkpoint import model_to_dict, save_checkpoint

    task = request.param
    w = tmp_path_factory.mktemp(task) / f"tiny-{task}.pt"
    save_checkpoint({"model": model_to_dict(_model(task), half=False)}, w)
    return task, w, _export(w, SIZE)


def test_layout_metadata_and_outputs(tiny, shared):
    """Official's layout (inference_model/model.json + .pdiparams, <stem>.yaml) and the .pt's outputs."""
    from utils.classify.predict import classifier_predictor

    task, w, folder = tiny
    assert (folder / "inference_model" / "model.json").is_file() and (
        folder / "inference_model/model.pdiparams"
    ).is_file()
    meta = yaml.safe_load((folder / f"{w.stem}.yaml").read_text())
    assert meta["stride"] in (16, 32) and meta["task"] == task and meta["imgsz"] == [SIZE, SIZE]
    pt, exp, x = load_predictor(w), load_predictor(folder), _images(shared)
    assert exp.format == "paddle" and exp.task == task and exp.imgsz == (SIZE, SIZE) and exp.names == pt.names
    assert load_predictor(folder / "inference_model" / "model.pdiparams").task == task  # the file, as official
    if task == "classify":
        pt, exp = classifier_predictor(pt), classifier_predictor(exp)
    with torch.no_grad():
        for i in range(len(x)):
            ref, y = pt(x[i : i + 1]), exp(x[i : i + 1])
            if task == "classify":
                torch.testing.assert_close(y.softmax(1), ref.softmax(1), atol=1e-3, rtol=0)
            elif task == "segment":
                _same_boxes(ref[0], y[0])
                torch.testing.assert_close(y[1], ref[1], atol=2e-3, rtol=1e-3)
            else:
                _same_boxes(ref, y)


def test_predict_scripts_run_the_folder(tiny, shared, tmp_path):
    """segment/predict.py and classify/predict.py (detect.py below) take the exported folder as --weights."""
    task, _, folder = tiny
    if task == "detect":
        pytest.skip("detect.py: test_detect_and_val_yolov5n")
    script = f"{task}/predict.py"
    r = run_main(script, "--weights", folder, "--source", shared / "images/bus.jpg", "--imgsz", SIZE, "--save-txt",
                 "--project", tmp_path, "--name", "p")  # fmt: skip
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert (tmp_path / "p" / "bus.jpg").is_file() and "1 labels saved" in r.stdout


def _rows(path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2) if path.stat().st_size else np.zeros((0, 6))


def test_detect_and_val_yolov5n(shared, tmp_path):
    """yolov5n at 128 px: detect.py on bus.jpg (its square middle: the .pt letterboxes to the image's own shape, the
    static export to 128x128) finds the .pt's boxes (IoU >= 0.95, conf within 0.01) with the paddle folder; val.py
    runs it on coco8."""
    w = shutil.copy(shared / "weights/yolov5n.pt", tmp_path / "yolov5n.pt")
    folder = _export(w, 128)
    bus = cv2.imread(str(shared / "images/bus.jpg"))  # 1080 x 810
    cv2.imwrite(str(tmp_path / "bus.jpg"), bus[135:945])
    labels = {}
    for name, weights in (("pt", w), ("paddle", folder)):
        r = run_main("detect.py", "--weights", weights, "--source", tmp_path / "bus.jpg", "--imgsz", 128,
                     "--save-txt", "--save-conf", "--nosave", "--project", tmp_path, "--name", name)  # fmt: skip
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        labels[name] = _rows(tmp_path / name / "labels" / "bus.txt")
    ref, ours = labels["pt"], labels["paddle"]
    assert len(ref) >= 2 and len(ours) == len(ref)
    iou = box_iou(xywh2xyxy(torch.tensor(ref[:, 1:5])), xywh2xyxy(torch.tensor(ours[:, 1:5]))).numpy()
    for i, row in enumerate(ref):
        j = int(np.argmax(np.where(ours[:, 0] == row[0], iou[i], -1)))
        assert ours[j, 0] == row[0] and iou[i, j] >= 0.95 and abs(ours[j, 5] - row[5]) <= 0.01, (row, ours[j])
    data = shared / "data/coco8/coco8.yaml"
    r = run_main("val.py", "--weights", folder, "--data", data, "--imgsz", 128, "--project", tmp_path, "--name", "v")
    assert r.returncode == 0 and "all" in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
