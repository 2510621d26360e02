"""The detection steps of official YOLOv5's .github/workflows/ci-testing.yml, run unchanged on a copy of this checkout.

Only --data is added where the official steps would download coco128 (coco8 from ../shared is used instead); the
weights and data/images come from ../shared, copied into the temporary checkout, as CI downloads them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

M, B = "yolov5n", "runs/train/exp/weights/best"  # the official CI's model and best.pt checkpoint
SKIP = shutil.ignore_patterns(".git", "runs", "__pycache__", ".pytest_cache", ".ruff_cache", "*.pt", "*.onnx")
SNIPPET = f"""
import torch
im = torch.zeros([1, 3, 64, 64])
for path in '{M}', '{B}':
    model = torch.hub.load('.', 'custom', path=path, source='local')
    print(model('data/images/bus.jpg'))
    model(im)  # warmup, build grids for trace
    torch.jit.trace(model, [im])
"""


def ci(checkout: Path, *cmd: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """Run one CI command line in the checkout; fail with its output tail unless it exits 0 without a traceback."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2"}
    r = subprocess.run([sys.executable, *cmd], cwd=checkout, input=stdin, capture_output=True, text=True,
                       timeout=900, env=env)  # fmt: skip
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"{' '.join(cmd)}:\n{r.stdout[-1500:]}{r.stderr[-2500:]}"
    return r


@pytest.fixture(scope="module")
def checkout(shared, tmp_path_factory) -> Path:
    """A copy of this repository with yolov5n.pt and data/images/{bus,zidane}.jpg, after the CI's training step."""
    dst = tmp_path_factory.mktemp("ci") / "yolov5-fla"
    shutil.copytree(ROOT, dst, ignore=SKIP)
    shutil.copy(shared / "weights/yolov5n.pt", dst / f"{M}.pt")
    (dst / "data/images").mkdir(parents=True, exist_ok=True)
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(shared / "images" / name, dst / "data/images" / name)
    data = str(shared / "data/coco8/coco8.yaml")
    ci(dst, "train.py", "--imgsz", "64", "--batch", "32", "--weights", f"{M}.pt", "--cfg", f"{M}.yaml",
       "--epochs", "1", "--device", "cpu", "--data", data)  # fmt: skip
    assert (dst / f"{B}.pt").is_file()
    return dst


@pytest.mark.slow
@pytest.mark.parametrize("w", [M, B])
def test_val_and_detect(checkout, shared, w):
    r = ci(checkout, "val.py", "--imgsz", "64", "--batch", "32", "--weights", f"{w}.pt", "--device", "cpu",
           "--data", str(shared / "data/coco8/coco8.yaml"))  # fmt: skip
    assert "all" in r.stdout
    r = ci(checkout, "detect.py", "--imgsz", "64", "--weights", f"{w}.pt", "--device", "cpu")
    assert "data/images/bus.jpg" in r.stdout and "Results saved to" in r.stdout


@pytest.mark.slow
def test_hubconf_yolo_export(checkout):
    assert "Speed:" in ci(checkout, "hubconf.py", "--model", M).stdout
    assert "parameters" in ci(checkout, "models/yolo.py", "--cfg", f"{M}.yaml").stdout
    ci(checkout, "export.py", "--weights", f"{M}.pt", "--img", "64", "--include", "torchscript")
    assert (checkout / f"{M}.torchscript").is_file()


@pytest.mark.slow
def test_hub_load_and_trace_snippet(checkout):
    r = ci(checkout, "-", stdin=SNIPPET)
    assert r.stdout.count("Speed:") == 2
