"""benchmarks.py: the table and --hard-fail FLOOR (the int8 rows are checked in tests/export_cases.py)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.conftest import ROOT
from utils.deploy.benchmark import Row, format_table, hard_fail
from utils.errors import UserError

_spec = importlib.util.spec_from_file_location("benchmarks_cli", ROOT / "benchmarks.py")
benchmarks = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(benchmarks)


def test_hard_fail_and_table():
    rows = [Row("PyTorch", "ok", 3.9, 0.39, 20.0), Row("NCNN", "failed: pnnx exited 1"), Row("ONNX", "ok", 7.7, 0.2, 9)]
    assert hard_fail(rows, True) == ["NCNN: failed: pnnx exited 1"]
    assert hard_fail(rows, 0.29) == ["NCNN: failed: pnnx exited 1", "ONNX: mAP50-95 0.2000 < 0.29"]
    table = format_table(rows)
    assert "| PyTorch | ok | 3.9 | 0.3900 | 20.0 |" in table and "| NCNN | failed: pnnx exited 1 |" in table


def test_pt_only_hard_fail_floor(shared, tmp_path, restore_logging):
    w = shutil.copy(shared / "weights/yolov5n.pt", tmp_path / "yolov5n.pt")
    data = str(shared / "data/coco8/coco8.yaml")
    args = ["--weights", str(w), "--data", data, "--img", "320", "--pt-only"]
    rows = benchmarks.main(benchmarks.parse_opt([*args, "--hard-fail", "0.29"]))
    assert [r.name for r in rows] == ["PyTorch"] and rows[0].map > 0.29
    with pytest.raises(SystemExit) as e:
        benchmarks.main(benchmarks.parse_opt([*args, "--hard-fail", "0.9"]))
    assert "mAP50-95" in str(e.value.code) and "< 0.9" in str(e.value.code)


def _tiny_folder(src, dst, per_class: int = 3):
    """An ImageFolder dataset with per_class val images of each class of src (hymenoptera: ants, bees)."""
    for cls in sorted(p for p in (src / "val").iterdir() if p.is_dir()):
        (dst / "val" / cls.name).mkdir(parents=True)
        for f in sorted(cls.glob("*.jpg"))[:per_class]:
            shutil.copy(f, dst / "val" / cls.name / f.name)
    return dst


def test_classifier_row_is_top1_and_hard_fail_reads_it(shared, tmp_path, restore_logging):
    """A -cls .pt validates with classify/val.py: the row's metric is top-1 (it failed on val.py's --data before)."""
    from classify import val as cls_val
    from utils.deploy.benchmark import file_task

    w = shutil.copy(shared / "weights/yolov5n-cls-hymenoptera.pt", tmp_path / "cls.pt")
    assert file_task(w) == "classify" and file_task(shared / "weights/yolov5n-seg-coco128.pt") == "segment"
    data = _tiny_folder(shared / "data/hymenoptera", tmp_path / "hym")
    args = ["--weights", str(w), "--data", str(data), "--img", "64", "--pt-only"]
    rows = benchmarks.main(benchmarks.parse_opt([*args, "--hard-fail", "0.1"]))
    ref = cls_val.evaluate(cls_val.parse_opt(["--weights", str(w), "--data", str(data), "--img", "64", "--workers", "0",
                                              "--project", str(tmp_path / "v"), "--verbose", "false"]))  # fmt: skip
    assert rows[0].status == "ok" and rows[0].metric == "top-1" and rows[0].map == pytest.approx(ref.top1)
    assert rows[0].map >= 0.5 and rows[0].ms > 0 and "| format | status | size (MB) | top-1 |" in format_table(rows)
    with pytest.raises(SystemExit) as e:
        benchmarks.main(benchmarks.parse_opt([*args, "--hard-fail", "1.01"]))
    assert str(e.value.code).startswith("error: --hard-fail: PyTorch: top-1 ") and "< 1.01" in str(e.value.code)


def test_classifier_int8_calibrates_on_the_image_folder(shared, tmp_path):
    """--int8 of a classifier reads --data as an image folder (it said '--data file not found' before): centre-cropped,
    ImageNet-normalised images, as the exported classifier takes them; the ONNX int8 row then validates."""
    import argparse

    import numpy as np

    from utils.deploy.benchmark import bench_one
    from utils.deploy.calibration import calibration_images

    data = _tiny_folder(shared / "data/hymenoptera", tmp_path / "hym", per_class=4)
    calib = calibration_images(str(data), (64, 48), classify=True)
    assert calib.shape == (8, 3, 64, 48) and calib.dtype == np.float32 and calib.min() < -1 and calib.max() > 1
    with pytest.raises(UserError, match="image-folder"):
        calibration_images(str(shared / "data/coco8/coco8.yaml"), (64, 64), classify=True)
    w = shutil.copy(shared / "weights/yolov5n-cls-hymenoptera.pt", tmp_path / "cls.pt")
    opt = argparse.Namespace(imgsz=64, batch_size=1, device="cpu", half=False, test=False, data=str(data))
    row = bench_one("ONNX int8", "onnx", True, w, tmp_path, opt, task="classify")
    assert row.status == "ok" and row.metric == "top-1" and row.map >= 0.5 and row.size_mb < 2.6, row


def test_tensorrt_without_cuda_is_skipped_not_failed(tmp_path, monkeypatch):
    """On a CPU-only run the TensorRT row is 'skipped' (it was 'failed', so --hard-fail failed on every CPU machine)."""
    import argparse

    import torch

    from utils.deploy.benchmark import bench_one

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    opt = argparse.Namespace(imgsz=64, batch_size=1, device="cpu", half=False, test=False, data="unused.yaml")
    row = bench_one("TensorRT", "engine", False, tmp_path / "never-read.pt", tmp_path, opt)
    assert row.status == "skipped: needs a CUDA GPU (--device 0)" and hard_fail([row], 0.3) == []


@pytest.mark.skipif(not all(importlib.util.find_spec(m) for m in ("paddle", "x2paddle")), reason="no paddle")
def test_paddle_row_runs_in_a_child(shared, tmp_path):
    """The PaddlePaddle row runs in a child interpreter: paddle segfaulted in libphi_core.so after the TensorFlow rows
    had loaded TensorFlow in benchmarks.py's process (the whole run died without a table)."""
    import argparse

    from utils.deploy.benchmark import CHILD_FORMATS, bench_in_child

    data = _tiny_folder(shared / "data/hymenoptera", tmp_path / "hym", per_class=2)
    w = shutil.copy(shared / "weights/yolov5n-cls-hymenoptera.pt", tmp_path / "cls.pt")
    opt = argparse.Namespace(imgsz=64, batch_size=1, device="cpu", half=False, test=False, data=str(data))
    row = bench_in_child("PaddlePaddle", "paddle", False, w, tmp_path, opt, task="classify")
    assert CHILD_FORMATS == ("paddle",) and row.status == "ok" and row.metric == "top-1" and row.map >= 0.5, row
