"""The detection steps of official YOLOv5's .github/workflows/ci-testing.yml, run unchanged on a copy of this checkout
(one after another in one process, each as its own `python` run: tests/ci_shell.py).

Only --data is added where the official steps would download coco128 (coco8 from ../shared is used instead); the
weights and data/images come from ../shared, copied into the temporary checkout, as CI downloads them.
"""

from __future__ import annotations

import shutil

import pytest

from tests.ci_shell import Step, run_steps
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


def ok(cmd: list, r: Step) -> Step:
    """r when the command line cmd exited 0 without a traceback; else fail with its output tail."""
    assert r.returncode == 0 and "Traceback" not in r.stderr, f"{' '.join(cmd)}:\n{r.stdout[-1500:]}{r.stderr[-2500:]}"
    return r


def steps(data: str) -> dict:
    """The detection job's command lines in the CI's order, by a name for the tests; --data added to train/val."""
    out = {"train": ["train.py", "--imgsz", "64", "--batch", "32", "--weights", f"{M}.pt", "--cfg", f"{M}.yaml",
                     "--epochs", "1", "--device", "cpu", "--data", data]}  # fmt: skip
    for w in M, B:
        out[f"val {w}"] = ["val.py", "--imgsz", "64", "--batch", "32", "--weights", f"{w}.pt", "--device", "cpu",
                           "--data", data]  # fmt: skip
        out[f"detect {w}"] = ["detect.py", "--imgsz", "64", "--weights", f"{w}.pt", "--device", "cpu"]
    out["hub"] = ["hubconf.py", "--model", M]
    out["yolo"] = ["models/yolo.py", "--cfg", f"{M}.yaml"]
    out["export"] = ["export.py", "--weights", f"{M}.pt", "--img", "64", "--include", "torchscript"]
    out["snippet"] = ["-", SNIPPET]
    return out


@pytest.fixture(scope="module")
def checkout(shared, tmp_path_factory) -> tuple:
    """(a copy of this repository with yolov5n.pt and data/images/{bus,zidane}.jpg after every CI step, {step name:
    (its command line, what it left)}): the steps run in CI's order in one process (tests/ci_shell.py), each as
    its own `python` run would; each test checks its steps."""
    dst = tmp_path_factory.mktemp("ci") / "yolov5-fla"
    shutil.copytree(ROOT, dst, ignore=SKIP)
    shutil.copy(shared / "weights/yolov5n.pt", dst / f"{M}.pt")
    (dst / "data/images").mkdir(parents=True, exist_ok=True)
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(shared / "images" / name, dst / "data/images" / name)
    cmds = steps(str(shared / "data/coco8/coco8.yaml"))
    results = dict(zip(cmds, zip(cmds.values(), run_steps(dst, list(cmds.values())))))
    ok(*results["train"])
    assert (dst / f"{B}.pt").is_file()
    return dst, results


@pytest.mark.slow
@pytest.mark.parametrize("w", [M, B])
def test_val_and_detect(checkout, w):
    _, step = checkout
    assert "all" in ok(*step[f"val {w}"]).stdout
    r = ok(*step[f"detect {w}"])
    assert "data/images/bus.jpg" in r.stdout and "Results saved to" in r.stdout


@pytest.mark.slow
def test_hubconf_yolo_export(checkout):
    dst, step = checkout
    assert "Speed:" in ok(*step["hub"]).stdout
    assert "parameters" in ok(*step["yolo"]).stdout
    ok(*step["export"])
    assert (dst / f"{M}.torchscript").is_file()


@pytest.mark.slow
def test_hub_load_and_trace_snippet(checkout):
    assert ok(*checkout[1]["snippet"]).stdout.count("Speed:") == 2
