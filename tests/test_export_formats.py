"""Export formats beyond TorchScript / ONNX / OpenVINO: the converter round trips of tests/export_cases.py in one child
process, and the formats that cannot be built here as one-line errors (PaddlePaddle: tests/test_paddle.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib.util import find_spec

import pytest
import torch

from tests.conftest import ROOT
from utils.deploy.export import run_export
from utils.errors import UserError

EXTRAS = ("tensorflow", "tf_keras", "onnx2tf", "ai_edge_litert", "ncnn", "pnnx", "coremltools", "openvino", "nncf")
MISSING = [m for m in EXTRAS if not find_spec(m)]


@pytest.mark.skipif(bool(MISSING), reason=f"export extras not installed: {MISSING}")
def test_converter_round_trips_in_child(shared):
    """tests/export_cases.py in a child pytest: TensorFlow, OpenVINO and coremltools never load in the suite's
    process (OpenVINO's runtime objects crashed it at teardown before), and every model is exported once."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=8", "tests/export_cases.py"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    r = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=1200)
    print(r.stdout[-3000:])  # the child's durations, shown with -s or on failure
    assert r.returncode == 0 and " passed" in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


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
