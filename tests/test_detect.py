"""detect.py end to end: parity with official YOLOv5 detections, every source kind, outputs, errors; Annotator."""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from detect import main as detect_main
from detect import parse_opt
from tests.helpers import run_main, write_video
from utils.boxes import box_iou, xywh2xyxy
from utils.deploy.annotate import Annotator, colors, save_one_box
from utils.deploy.predict import summarize
from utils.deploy.predict_io import label_rows
from utils.img_size import check_img_size


def detect(*args, project: Path):
    r = run_main("detect.py", *args, "--project", project, "--name", "exp")
    assert "Traceback" not in r.stderr, r.stderr
    return r


def read_rows(path: Path) -> np.ndarray:
    return np.loadtxt(path, ndmin=2) if path.stat().st_size else np.zeros((0, 6))


def assert_matches_reference(labels: Path, reference: Path) -> None:
    """Same box count per image; each box IoU >= 0.95 with a same-class reference box, confidence within 0.01."""
    refs = sorted(reference.glob("*.txt"))
    assert refs
    for ref in refs:
        ours_file = labels / ref.name
        assert ours_file.is_file(), f"missing {ref.name}"
        ours, theirs = read_rows(ours_file), read_rows(ref)
        assert len(ours) == len(theirs), f"{ref.name}: {len(ours)} boxes vs {len(theirs)}"
        iou = box_iou(xywh2xyxy(torch.tensor(ours[:, 1:5])), xywh2xyxy(torch.tensor(theirs[:, 1:5]))).numpy()
        for i, row in enumerate(ours):
            same = theirs[:, 0] == row[0]
            j = int(np.argmax(np.where(same, iou[i], -1)))
            assert same[j] and iou[i, j] >= 0.95, f"{ref.name} box {i}: best IoU {iou[i, j]:.3f}"
            assert abs(row[5] - theirs[j, 5]) <= 0.01, f"{ref.name} box {i}: conf {row[5]} vs {theirs[j, 5]}"


@pytest.mark.slow
def test_parity_official_yolov5n(shared, tmp_path):
    lst = tmp_path / "sources.txt"
    lst.write_text(f"{shared / 'images/bus.jpg'}\n{shared / 'images/zidane.jpg'}\n{shared / 'data/coco8/images/val'}\n")
    r = detect(
        "--weights", shared / "weights/yolov5n.pt", "--source", lst, "--save-txt", "--save-conf", project=tmp_path
    )
    assert r.returncode == 0, r.stderr
    assert_matches_reference(tmp_path / "exp/labels", shared / "reference/detect_yolov5n_640")
    assert f"image 1/6 {shared / 'images/bus.jpg'}: 640x480 4 persons, 1 bus, " in r.stdout
    assert "384x640 2 persons, 1 tie, " in r.stdout
    assert "per image at shape (1, 3, 640, 640)" in r.stdout and "Results saved to" in r.stdout
    im = cv2.imread(str(tmp_path / "exp/bus.jpg"))
    assert im is not None and im.shape == (1080, 810, 3)


@pytest.mark.slow
def test_parity_bccd_320(shared, tmp_path):
    src = str(shared / "data/bccd/images/*/BloodImage_00000.jpg")
    r = detect(
        "--weights",
        shared / "weights/yolov5n-bccd.pt",
        "--source",
        src,
        "--imgsz",
        "320",
        "--save-txt",
        "--save-conf",
        "--nosave",
        project=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert_matches_reference(tmp_path / "exp/labels", shared / "reference/detect_yolov5n-bccd_320")
    assert "256x320 23 RBCs, 1 WBC, " in r.stdout
    assert not list((tmp_path / "exp").glob("*.jpg"))  # --nosave


def test_video_source(tiny_weights, tmp_path):
    v = write_video(tmp_path / "v.mp4", n=12, h=48, w=64, fps=10.0)
    r = detect("--weights", tiny_weights, "--source", v, "--imgsz", "64", "--save-txt", project=tmp_path)
    assert r.returncode == 0, r.stderr
    assert f"video 1/1 (frame 12/12) {v}: 64x64 " in r.stdout
    cap = cv2.VideoCapture(str(tmp_path / "exp/v.mp4"))
    assert int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) == 12
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (64, 48)
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    cap.release()
    labels = sorted((tmp_path / "exp/labels").glob("*.txt"))
    assert {p.name for p in labels} == {f"v_{i}.txt" for i in range(1, 13)}
    rows = read_rows(labels[0])
    assert rows.shape[1] == 5 and (rows[:, 0] == 0).all() and (rows[:, 1:] >= 0).all() and (rows[:, 1:] <= 1).all()


def test_folder_glob_txt_sources_and_outputs(tiny_weights, tmp_path, capsys, restore_logging):
    src = tmp_path / "imgs"
    src.mkdir()
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(src / name), np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8))
    before = sorted(p.name for p in src.iterdir())
    r = detect(
        "--weights",
        tiny_weights,
        "--source",
        src,
        "--imgsz",
        "70",
        "--save-csv",
        "--save-crop",
        "--save-txt",
        "--hide-conf",
        project=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    assert "must be multiple of max stride 32, updating to [96, 96]" in r.stdout + r.stderr
    assert "image 2/2" in r.stdout and "cat" in r.stdout
    out = tmp_path / "exp"
    assert (out / "a.jpg").is_file() and (out / "b.png").is_file()
    with open(out / "predictions.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and {r["Image Name"] for r in rows} <= {"a.jpg", "b.png"} and rows[0]["Prediction"] == "cat"
    assert list((out / "crops/cat").glob("a*.jpg"))
    assert sorted(p.name for p in src.iterdir()) == before  # nothing written into the source folder
    # glob and .txt list in-process (no interpreter start): detect.main returns the run folder
    run = detect_main(
        parse_opt(
            [
                "--weights",
                str(tiny_weights),
                "--source",
                str(src / "*.png"),
                "--imgsz",
                "64",
                "--nosave",
                "--save-txt",
                "--project",
                str(tmp_path),
                "--name",
                "glob",
            ]
        )
    )
    assert run.name == "glob" and [p.name for p in (run / "labels").iterdir()] == ["b.txt"]
    assert "image 1/1" in capsys.readouterr().out
    lst = tmp_path / "list.txt"
    lst.write_text("imgs/b.png\nimgs/a.jpg\n")  # relative to the list's folder
    run = detect_main(
        parse_opt(
            [
                "--weights",
                str(tiny_weights),
                "--source",
                str(lst),
                "--imgsz",
                "64",
                "--project",
                str(tmp_path),
                "--name",
                "list",
            ]
        )
    )
    assert sorted(p.name for p in run.iterdir()) == ["a.jpg", "b.png"]
    assert "image 2/2" in capsys.readouterr().out


@pytest.mark.parametrize(
    "source, message",
    [("0", "error: webcam 0 not found / cannot be opened"), ("nowhere/x.jpg", "error: --source not found")],
)
def test_bad_sources_one_line_error(tiny_weights, tmp_path, source, message):
    r = detect("--weights", tiny_weights, "--source", source, project=tmp_path)
    assert r.returncode != 0
    assert r.stderr.strip().splitlines() == [r.stderr.strip().splitlines()[0]] and message in r.stderr


def test_missing_weights_error(tmp_path):
    r = detect("--weights", tmp_path / "none.pt", "--source", tmp_path, project=tmp_path)
    assert r.returncode != 0 and "error:" in r.stderr and "none.pt" in r.stderr


def test_annotator_draws_box_and_label():
    im = np.zeros((100, 120, 3), np.uint8)
    ann = Annotator(im, line_width=2)
    ann.box_label([10, 30, 60, 90], "cat 0.90", color=(0, 0, 255))
    out = ann.result()
    assert out.shape == (100, 120, 3)
    assert tuple(out[60, 10]) == (0, 0, 255)  # left edge of the box, BGR red
    assert out[20:29, 12:40].any()  # label tab above the box
    assert not out[95:, :].any()  # nothing drawn below the box


def test_annotator_pil_unicode_label():
    im = np.zeros((80, 80, 3), np.uint8)
    ann = Annotator(im, example="猫")
    assert ann.pil
    ann.box_label([5, 40, 70, 75], "猫 0.5", color=(255, 0, 0))
    out = ann.result()
    assert out.shape == (80, 80, 3) and tuple(out[60, 5]) == (255, 0, 0)


def test_colors_and_crop(tmp_path):
    assert colors(0) != colors(1) and colors(3, bgr=True) == colors(3)[::-1] and colors(21) == colors(1)
    im = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    crop = save_one_box([20, 30, 40, 50], im, tmp_path / "c/x.jpg", gain=1.0, pad=0)
    assert crop.shape == (20, 20, 3) and (crop == im[30:50, 20:40]).all()
    assert (tmp_path / "c/x.jpg").is_file()


def test_streams_file_source(tiny_weights, tmp_path, capsys, restore_logging):
    v = write_video(tmp_path / "cam.mp4", n=6, h=48, w=64, fps=10.0)
    (tmp_path / "list.streams").write_text(f"{v}\n")
    run = detect_main(
        parse_opt(
            [
                "--weights",
                str(tiny_weights),
                "--source",
                str(tmp_path / "list.streams"),
                "--imgsz",
                "64",
                "--save-txt",
                "--project",
                str(tmp_path),
                "--name",
                "s",
            ]
        )
    )
    out = capsys.readouterr().out
    assert "0: 64x64 " in out and "Results saved to" in out
    cap = cv2.VideoCapture(str(run / "cam.mp4"))
    n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    assert 1 <= n <= 6 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(10.0)
    cap.release()
    assert len(list((run / "labels").glob("cam_*.txt"))) == n


def test_label_rows_and_img_size():
    det = torch.tensor([[10.0, 20.0, 30.0, 60.0, 0.9, 2.0], [0.0, 0.0, 100.0, 50.0, 0.5, 0.0]])
    rows = label_rows(det, (100, 200, 3), with_conf=True)
    assert rows == ["0 0.25 0.25 0.5 0.5 0.5", "2 0.1 0.4 0.1 0.4 0.9"]  # ascending confidence, w=200 h=100
    assert label_rows(det[:1], (100, 200, 3), with_conf=False) == ["2 0.1 0.4 0.1 0.4"]
    assert label_rows(det[:1], (100, 200, 3), with_conf=False, corners=True) == ["2 0.05 0.2 0.15 0.6"]  # format 1
    assert check_img_size([640], 32) == [640, 640] and check_img_size([300, 500], 32) == [320, 512]
    assert (
        summarize(det, {0: "person", 2: "bus"}) == "1 person, 1 bus, " and summarize(det[:0], {}) == "(no detections), "
    )


def test_save_format_corners(tiny_weights, tmp_path):
    im = tmp_path / "a.jpg"
    cv2.imwrite(str(im), np.full((48, 64, 3), 90, np.uint8))
    for fmt in ("0", "1"):
        r = detect("--weights", tiny_weights, "--source", im, "--imgsz", "64", "--save-txt", "--save-format", fmt,
                   "--nosave", project=tmp_path / fmt)  # fmt: skip
        assert r.returncode == 0, r.stderr
    yolo, corners = (read_rows(tmp_path / f / "exp/labels/a.txt") for f in ("0", "1"))
    assert len(yolo) and np.allclose(xywh2xyxy(torch.tensor(yolo[:, 1:5])).numpy(), corners[:, 1:5], atol=2e-6)
