"""TFLite / SavedModel / GraphDef / NCNN / CoreML exports of a tiny FLA model: metadata, raw outputs and the boxes
on bus.jpg and zidane.jpg against the .pt; the formats that cannot be built here fail in one line."""

from __future__ import annotations

import os
import shutil
from importlib.util import find_spec

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import run_script
from utils.boxes import box_iou
from utils.data.augment import letterbox
from utils.deploy.backends import load_predictor
from utils.deploy.export import run_export
from utils.errors import UserError
from utils.nms import non_max_suppression

MISSING = [m for m in ("tensorflow", "onnx2tf", "ai_edge_litert", "ncnn", "pnnx", "coremltools") if not find_spec(m)]
pytestmark = [
    pytest.mark.skipif(bool(MISSING), reason=f"export extras not installed: {MISSING}"),
    pytest.mark.skipif(
        os.environ.get("YOLOV5FLA_EXPORT_TESTS") != "1",
        reason="converter round trips take minutes and are not yet verified green: YOLOV5FLA_EXPORT_TESTS=1 runs them",
    ),
]

SIZE = 64
FLOAT_FORMATS = ("saved_model", "pb", "tflite", "ncnn")


@pytest.fixture(scope="module")
def exports(tiny_fla, tmp_path_factory):
    """The tiny FLA model exported once to every float format this machine builds: {format: path} and the .pt."""
    w = shutil.copy(tiny_fla, tmp_path_factory.mktemp("formats") / "tiny-fla.pt")
    files = run_export(w, imgsz=[SIZE], include=[*FLOAT_FORMATS, "coreml"])
    return w, files


def _images(shared) -> torch.Tensor:
    """bus.jpg and zidane.jpg letterboxed to SIZE: (2, 3, SIZE, SIZE) float 0-1."""
    ims = [letterbox(cv2.imread(str(shared / "images" / n)), SIZE, auto=False)[0] for n in ("bus.jpg", "zidane.jpg")]
    return torch.from_numpy(np.stack([im[..., ::-1].transpose(2, 0, 1) for im in ims]).copy()).float() / 255


def _boxes_match(a: torch.Tensor, b: torch.Tensor) -> float:
    """The smallest best-IoU of a's boxes (n, 6) among b's of the same class: 1.0 = every box found exactly."""
    assert len(a) == len(b) and len(a) > 0
    iou = box_iou(a[:, :4], b[:, :4]) * (a[:, 5:6] == b[:, 5].view(1, -1))
    return float(iou.max(1).values.min())


def test_metadata_and_layout(exports):
    w, files = exports
    assert files["tflite"].name == "tiny-fla-fp32.tflite" and files["pb"].name == "tiny-fla.pb"
    assert files["saved_model"].name == "tiny-fla_saved_model" and files["ncnn"].name == "tiny-fla_ncnn_model"
    assert (files["ncnn"] / "model.ncnn.param").is_file() and (files["ncnn"] / "metadata.yaml").is_file()
    for fmt in FLOAT_FORMATS:
        p = load_predictor(files[fmt])
        assert p.format == fmt and p.task == "detect"
        assert p.stride == 32 and p.names == {0: "cat", 1: "dog"} and p.imgsz == (SIZE, SIZE)


@pytest.mark.parametrize("fmt", FLOAT_FORMATS)
def test_outputs_and_boxes_match_pt(exports, shared, fmt):
    """Raw (1, N, 7) outputs within 0.02 px / 1e-3 score, and the same boxes after NMS on bus.jpg and zidane.jpg."""
    w, files = exports
    pt, exp = load_predictor(w), load_predictor(files[fmt])
    x = _images(shared)
    with torch.no_grad():
        for i in range(len(x)):
            ref, y = pt(x[i : i + 1]), exp(x[i : i + 1])
            torch.testing.assert_close(y[..., :4], ref[..., :4], atol=0.02, rtol=0)
            torch.testing.assert_close(y[..., 4:], ref[..., 4:], atol=1e-3, rtol=0)
            a = non_max_suppression(ref, 0.001, 0.45, max_det=20)[0]
            b = non_max_suppression(y, 0.001, 0.45, max_det=20)[0]
            assert _boxes_match(a, b) >= 0.95


def test_coreml_spec_and_detect_needs_macos(exports, shared, tmp_path):
    from utils.deploy.export_coreml import coreml_spec_summary

    _, files = exports
    spec = coreml_spec_summary(files["coreml"])
    assert spec["inputs"] == {"image": [SIZE, SIZE]} and spec["outputs"] == ["output0"]
    assert spec["meta"]["names"] == ["cat", "dog"] and spec["meta"]["stride"] == 32 and spec["meta"]["task"] == "detect"
    r = run_script("detect.py", "--weights", files["coreml"], "--source", shared / "images/bus.jpg",
                   "--project", tmp_path, "--imgsz", str(SIZE))  # fmt: skip
    assert r.returncode == 2 and "needs macOS" in r.stderr and "Traceback" not in r.stderr


def test_detect_cli_runs_tflite(exports, shared, tmp_path):
    _, files = exports
    r = run_script("detect.py", "--weights", files["tflite"], "--source", shared / "images/zidane.jpg",
                   "--project", tmp_path, "--imgsz", str(SIZE), "--nosave")  # fmt: skip
    assert r.returncode == 0, r.stderr[-1500:]
    assert f"{SIZE}x{SIZE}" in r.stdout + r.stderr


@pytest.mark.parametrize("fmt, words", [("engine", "CUDA"), ("edgetpu", "edgetpu_compiler"), ("tfjs", "tensorflowjs"),
                                        ("paddle", "paddle")])  # fmt: skip
def test_formats_not_built_here_are_one_line(tiny_fla, tmp_path, fmt, words):
    if fmt == "engine" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: benchmarks/device_check.py builds the engine")
    if fmt == "tfjs" and shutil.which("tensorflowjs_converter"):
        pytest.skip("tensorflowjs is installed")
    w = shutil.copy(tiny_fla, tmp_path / "t.pt")
    with pytest.raises(UserError, match=words):
        run_export(w, imgsz=[SIZE], include=[fmt])
