"""The classification steps of official YOLOv5's ci-testing.yml, run unchanged on a copy of this checkout (one after
another in one process, each as its own `python` run: tests/ci_shell.py).

The shared ants/bees set stands in where CI downloads mnist160 (--data): 16 images of each class per split copied
from it, mnist160's size per class; one of its val images for mnist160/test/7/60.png, and the shared official-format
yolov5n-cls checkpoint for the downloaded yolov5n-cls.pt.
"""

from __future__ import annotations

import shutil

import pytest

from tests.ci_shell import run_steps
from tests.conftest import ROOT
from tests.test_official_ci import SKIP, ok

pytestmark = pytest.mark.slow
PER_CLASS = 16  # images per class and split: mnist160 has 8 per class in each of its two splits
M, B = "yolov5n-cls.pt", "runs/train-cls/exp/weights/best.pt"  # CI's official weights and best.pt checkpoint
HUB = f"""
import torch
for path in '{M}', '{B}':
    model = torch.hub.load('.', 'custom', path=path, source='local')
    print(model('data/images/bus.jpg'))
"""


def test_official_ci_classification_steps(shared, tmp_path):
    dst = tmp_path / "yolov5-fla"
    shutil.copytree(ROOT, dst, ignore=SKIP)
    shutil.copy(shared / "weights/yolov5n-cls-hymenoptera.pt", dst / M)
    (dst / "data/images").mkdir(parents=True, exist_ok=True)
    shutil.copy(shared / "images/bus.jpg", dst / "data/images/bus.jpg")
    data = tmp_path / "hymenoptera"
    for split in ("train", "val"):
        for cls in ("ants", "bees"):
            (data / split / cls).mkdir(parents=True)
            for f in sorted((shared / "data/hymenoptera" / split / cls).glob("*.jpg"))[:PER_CLASS]:
                shutil.copy(f, data / split / cls / f.name)
    image = str(next((data / "val/bees").glob("*.jpg")))
    data = str(data)
    cmds = [["classify/train.py", "--imgsz", "32", "--model", M, "--data", data, "--epochs", "1"],
            ["classify/val.py", "--imgsz", "32", "--weights", B, "--data", data],
            ["classify/predict.py", "--imgsz", "32", "--weights", B, "--source", image],
            ["classify/predict.py", "--imgsz", "32", "--weights", M, "--source", "data/images/bus.jpg"],
            ["export.py", "--weights", B, "--img", "64", "--include", "torchscript"],
            ["-", HUB]]  # fmt: skip
    train, val, predict_b, predict_m, export, hub = (ok(c, r) for c, r in zip(cmds, run_steps(dst, cmds)))
    assert (dst / B).is_file()
    assert "all" in val.stdout
    assert "bees" in predict_b.stdout
    assert "bus.jpg" in predict_m.stdout
    assert (dst / B).with_suffix(".torchscript").is_file()
    assert hub.stdout.count("bus.jpg:") == 2
