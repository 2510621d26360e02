"""End-to-end training through the real CLI on a tiny generated dataset: outputs, exact resume, divergence (DDP:
test_ddp.py)."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT
from tests.helpers import run_main

pytestmark = pytest.mark.slow
BASE = ("--cfg", "yolov5n.yaml", "--imgsz", "64", "--device", "cpu", "--workers", "0", "--exist-ok")


def _train(project: Path, name: str, data: Path, *extra: str):
    r = run_main("train.py", *BASE, "--data", data, "--project", project, "--name", name, *extra)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def test_run_folder_and_checkpoints(tmp_path, tiny_data):
    r = _train(tmp_path, "exp", tiny_data, "--epochs", "2", "--batch-size", "4")
    run = tmp_path / "exp"
    expected = ["weights/last.pt", "weights/best.pt", "hyp.yaml", "opt.yaml", "results.csv", "results.png"]
    expected += ["labels.jpg", "train_batch0.jpg", "train_batch1.jpg", "train_batch2.jpg", "confusion_matrix.png"]
    for f in expected:
        assert (run / f).is_file(), f
    lines = (run / "results.csv").read_text().splitlines()
    header = [h.strip() for h in lines[0].split(",")]
    assert header[:4] == ["epoch", "train/box_loss", "train/obj_loss", "train/cls_loss"] and header[-1] == "x/lr2"
    assert len(lines) == 3 and all(len(ln.split(",")) == 14 for ln in lines)
    ckpt = torch.load(run / "weights/best.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"].startswith("yolov5-fla/") and ckpt["optimizer"] is None  # stripped at the end
    assert ckpt["ema"]["state_dict"]["model.0.conv.weight"].dtype == torch.float16
    assert "Epoch" in r.stdout and "box_loss" in r.stdout and "Instances" in r.stdout
    resumed = run_main("train.py", "--resume", run / "weights/last.pt")
    assert resumed.returncode == 2 and "nothing to resume" in resumed.stderr


def test_bad_values_are_user_errors(tmp_path, tiny_data):
    r = run_main("train.py", *BASE, "--data", tiny_data, "--project", tmp_path, "--epochs", "0")
    assert r.returncode == 2 and "error: --epochs" in r.stderr and "Traceback" not in r.stderr
    r = run_main("train.py", "--evolve", "--data", tiny_data, "--epochs", "0", "--project", tmp_path)
    assert r.returncode == 2 and "error: --epochs" in r.stderr and "Traceback" not in r.stderr  # from its 1st trial


def _kill_after_epoch(zygote, cmd: list, last: Path, epoch: int, timeout: float = 300) -> int:
    """Start cmd (its own process, forked by the zygote fixture), SIGKILL it as soon as last.pt holds `epoch`;
    returns the epoch last.pt held when it died."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = zygote.popen(cmd, cwd=ROOT, env=env)
    t0, seen = time.time(), -1
    try:
        while proc.poll() is None and time.time() - t0 < timeout:
            if last.exists():
                try:
                    seen = int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])
                except (RuntimeError, EOFError, OSError):  # replaced while reading: look again
                    continue
                if seen >= epoch:
                    proc.send_signal(signal.SIGKILL)
                    break
            time.sleep(0.02)
    finally:
        proc.wait()
    return seen


def test_resume_after_sigkill_is_exact(tmp_path, tiny_data, zygote):
    # batch 3 over 8 images: 3 batches per epoch with accumulation, so a step straddles the epoch boundary
    args = ("--epochs", "3", "--batch-size", "3", "--noplots", "--seed", "1", "--save-period", "1")
    _train(tmp_path, "full", tiny_data, *args)
    cmd = [
        sys.executable,
        *("-m", "tests.slow_epochs", "4"),  # a pause inside epochs 1 and 2: the kill lands after epoch 0's save
        "train.py",
        *BASE,
        "--data",
        str(tiny_data),
        "--project",
        str(tmp_path),
        "--name",
        "cut",
        *args,
    ]
    last = tmp_path / "cut" / "weights" / "last.pt"
    killed_at = _kill_after_epoch(zygote, cmd, last, epoch=0)
    assert killed_at == 0, f"last.pt held epoch {killed_at} when the run was killed"
    assert torch.load(last, map_location="cpu", weights_only=True)["train_state"] is not None
    r = run_main("train.py", "--resume", last)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "Resuming training" in r.stdout
    # epoch2.pt (--save-period) is the fp32 state after the last epoch; last.pt is stripped to fp16 at the end
    full = torch.load(tmp_path / "full/weights/epoch2.pt", map_location="cpu", weights_only=True)
    cut = torch.load(tmp_path / "cut/weights/epoch2.pt", map_location="cpu", weights_only=True)
    for key in ("model", "ema"):
        a, b = full[key]["state_dict"], cut[key]["state_dict"]
        assert a.keys() == b.keys() and a["model.0.conv.weight"].dtype == torch.float32
        different = [k for k in a if not torch.equal(a[k], b[k])]
        assert not different, f"{key}: {len(different)} tensors differ, e.g. {different[:3]}"
    rows_full = (tmp_path / "full/results.csv").read_text().splitlines()
    rows_cut = (tmp_path / "cut/results.csv").read_text().splitlines()
    assert [r.split(",")[:4] for r in rows_full] == [r.split(",")[:4] for r in rows_cut]  # same train losses


def test_nonfinite_loss_stops_with_message(tmp_path, tiny_data):
    hyp = (ROOT / "data/hyps/hyp.scratch-low.yaml").read_text().replace("box: 0.05", "box: .nan")
    (tmp_path / "nan.yaml").write_text(hyp)
    r = run_main("train.py", *BASE, "--data", tiny_data, "--project", tmp_path, "--hyp",
                 tmp_path / "nan.yaml", "--epochs", "3", "--batch-size", "2", "--noplots", "--noval")  # fmt: skip
    assert r.returncode == 1, r.stdout[-2000:] + r.stderr[-2000:]
    assert "non-finite" in r.stdout + r.stderr and "diverged" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize(
    "flags",
    [
        ("--multi-scale", "--cos-lr", "--optimizer", "AdamW"),
        ("--image-weights", "--label-smoothing", "0.1", "--freeze", "3"),
        ("--quad", "--cache", "ram", "--single-cls"),
        ("--rect", "--cache", "disk", "--optimizer", "Adam", "--save-period", "1"),
    ],
)
def test_recipe_flags_train_end_to_end(tmp_path, tiny_data, flags):
    """Each group of YOLOv5 recipe flags runs a real epoch and writes a loadable checkpoint."""
    r = _train(tmp_path, "flags", tiny_data, "--epochs", "1", "--batch-size", "4", "--noplots", *flags)
    ckpt = torch.load(tmp_path / "flags/weights/last.pt", map_location="cpu", weights_only=True)
    assert ckpt["format"].startswith("yolov5-fla/") and ckpt["model"]["state_dict"]
    assert "Traceback" not in r.stderr
    if "--save-period" in flags:
        assert (tmp_path / "flags/weights/epoch0.pt").is_file()
