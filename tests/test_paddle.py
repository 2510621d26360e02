"""PaddlePaddle export and inference: tests/paddle_cases.py in one child pytest process (skipped when paddlepaddle or
x2paddle is absent), and the one-line error that names what is missing."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT
from utils.deploy.export import run_export
from utils.errors import UserError

MISSING = [m for m in ("paddle", "x2paddle") if importlib.util.find_spec(m) is None]


@pytest.mark.skipif(bool(MISSING), reason=f"paddle extras not installed: {MISSING}")
def test_paddle_round_trips_in_child(shared):
    """Exports of the tiny FLA models (detect, segment, classify) give the .pt's outputs; detect.py, val.py,
    segment/predict.py and classify/predict.py run the folders (tests/paddle_cases.py)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=8", "tests/paddle_cases.py"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    r = subprocess.run(cmd, cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=1200)
    print(r.stdout[-3000:])
    assert r.returncode == 0 and " passed" in r.stdout and "failed" not in r.stdout, r.stdout[-4000:] + r.stderr[-2000:]


@pytest.mark.parametrize("absent", [("paddle",), ("x2paddle",), ("paddle", "x2paddle")])
def test_missing_packages_are_one_line(tiny_fla, tmp_path, monkeypatch, absent):
    """Without paddlepaddle or x2paddle, --include paddle stops before the model is loaded, naming the package."""
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name in absent else real(name, *a))
    w = shutil.copy(tiny_fla, tmp_path / "t.pt")
    with pytest.raises(UserError, match="--include paddle needs") as e:
        run_export(w, imgsz=[64], include=["paddle"])
    pips = {"paddle": "paddlepaddle", "x2paddle": "x2paddle"}
    assert "\n" not in str(e.value) and all(pips[m] in str(e.value) for m in absent)
    assert not (tmp_path / "t_paddle_model").exists()
