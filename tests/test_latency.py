"""benchmarks/latency.py: OpenVINO rows, and the official-eager child process driven with a stand-in official folder."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap

import pytest

from benchmarks.latency import OfficialEager
from tests.helpers import in_child, run_main

FAKE_YOLO = """
import torch


class Model(torch.nn.Module):
    def __init__(self, cfg):
        super().__init__()
        print("a log line the parent must skip")
        self.conv = torch.nn.Conv2d(3, 4, 3)

    def fuse(self):
        return self

    def forward(self, x):
        return self.conv(x)
"""


@pytest.fixture
def fake_official(tmp_path):
    """A folder shaped like official YOLOv5 (models/yolo.py, models/yolov5n.yaml) whose Model is one conv."""
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text(textwrap.dedent(FAKE_YOLO))
    (tmp_path / "models" / "yolov5n.yaml").write_text("nc: 80\n")
    return tmp_path


def test_official_child_times_each_call(fake_official):
    child = OfficialEager(fake_official, sys.executable, fake_official / "models" / "yolov5n.yaml", 1, 64)
    try:
        for _ in range(3):
            child()
        assert len(child.times) == 3 and all(t > 0 for t in child.times)
    finally:
        child.close()
    assert child.proc.returncode == 0


def test_official_child_failure_is_reported(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "yolo.py").write_text("raise ImportError('no official here')\n")
    with pytest.raises(RuntimeError, match="no official here"):
        OfficialEager(tmp_path, sys.executable, tmp_path / "models" / "yolov5n.yaml", 1, 64)


@in_child
def test_cli_openvino_and_official_rows(fake_official):
    """The table's rows; latency.py's main runs in the OpenVINO child (tests/child_runner.py)."""
    if importlib.util.find_spec("openvino") is None:
        pytest.skip("openvino is not installed")
    r = run_main("benchmarks/latency.py", "--cfgs", "yolov5n.yaml", "--imgsz", "64", "--runs", "3", "--warmup", "1",
                 "--backends", "pytorch", "openvino", "onnx-int8", "openvino-int8", "--official", fake_official,
                 "--official-python", sys.executable)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    for backend in ("official PyTorch", "PyTorch", r"OpenVINO f32", "ONNX Runtime int8", "OpenVINO int8"):
        assert re.search(
            rf"\| yolov5n \| [\d,]+ \| {backend} \| \d+\.\d \| \d+\.\d \| \d+\.\d\dx official", r.stdout
        ), r.stdout


def test_cli_bad_official_folder(tmp_path):
    r = run_main("benchmarks/latency.py", "--cfgs", "yolov5n.yaml", "--official", tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        f"error: --official {tmp_path}: not an official YOLOv5 folder (no models/yolo.py)"
    ]
