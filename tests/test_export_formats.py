"""Export formats beyond TorchScript / ONNX / OpenVINO: the converter round trips of tests/export_cases.py in the
session's child process, and the formats that cannot be built here as one-line errors (PaddlePaddle:
tests/test_paddle.py)."""

from __future__ import annotations

import shutil
from importlib.util import find_spec

import pytest
import torch

from tests.child_runner import file_in_child, file_outcome
from tests.conftest import SHARED
from utils.deploy.export import run_export
from utils.errors import UserError

EXTRAS = ("tensorflow", "tf_keras", "onnx2tf", "ai_edge_litert", "ncnn", "pnnx", "coremltools", "openvino", "nncf")
CASES = "tests/export_cases.py"


@file_in_child(CASES, needs=EXTRAS, when=(SHARED / "README.md").is_file())
def test_converter_round_trips_in_child(shared):
    """tests/export_cases.py in the session's child pytest (tests/child_runner.py, with the OpenVINO tests):
    TensorFlow, OpenVINO and coremltools never load in the suite's process (OpenVINO's runtime objects crashed it at
    teardown before), and every model is exported once. Every case there must pass (or skip), one at least."""
    print(file_outcome(CASES))  # the child's durations, shown with -s


@pytest.mark.parametrize("fmt, words", [("engine", "CUDA"), ("edgetpu", "edgetpu_compiler"), ("tfjs", "tensorflowjs")])
def test_formats_not_built_here_are_one_line(tiny_fla, tmp_path, fmt, words):
    if fmt == "engine" and torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: benchmarks/device_check.py builds the engine")
    if fmt == "tfjs" and find_spec("tensorflowjs"):
        pytest.skip("tensorflowjs is installed")
    w = shutil.copy(tiny_fla, tmp_path / "t.pt")
    with pytest.raises(UserError, match=words) as e:
        run_export(w, imgsz=[64], include=[fmt])
    assert "\n" not in str(e.value)
