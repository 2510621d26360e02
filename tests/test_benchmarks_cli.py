"""benchmarks.py: the table and --hard-fail FLOOR (the int8 rows are checked in tests/export_cases.py)."""

from __future__ import annotations

import importlib.util
import shutil

import pytest

from tests.conftest import ROOT
from utils.deploy.benchmark import Row, format_table, hard_fail

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
