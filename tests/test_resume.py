"""Exact resume after SIGKILL, as users run it: pretrained --weights, an FLA config, plots on, workers 0 and 2.

One uninterrupted run is the reference for every case: a pass over the data is a function of (seed, epoch) only,
so the worker count does not change the result. Each interrupted run is resumed and must end bitwise equal: the
fp32 training weights and EMA of the last epoch (epoch2.pt) and every results.csv value.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import torch

from tests.conftest import ROOT
from tests.helpers import run_main

pytestmark = pytest.mark.slow
EPOCHS = 3


def _wrapper(pause: float) -> tuple:
    return ("-m", "tests.slow_epochs", str(pause)) if pause else ()


def _args(shared: Path, project: Path, name: str, workers: int) -> list:
    """train.py's arguments: an FLA config fine-tuned from the official yolov5n.pt on coco8, a checkpoint per epoch."""
    return [
        "--cfg", "yolov5n-fla.yaml", "--weights", str(shared / "weights/yolov5n.pt"),
        "--data", str(shared / "data/coco8/coco8.yaml"), "--imgsz", "96", "--epochs", str(EPOCHS),
        "--batch-size", "4", "--workers", str(workers), "--device", "cpu", "--seed", "0", "--exist-ok",
        "--project", str(project), "--name", name, "--save-period", "1",
    ]  # fmt: skip


def _cmd(shared: Path, project: Path, name: str, workers: int, pause: float) -> list:
    """The command of a run to kill: train.py under tests.slow_epochs (a pause inside every epoch after the first)."""
    return [sys.executable, *_wrapper(pause), "train.py", *_args(shared, project, name, workers)]


def _epoch_of(last: Path) -> int:
    """The epoch a checkpoint holds (-2 while it is absent or being replaced)."""
    try:
        return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, OSError, KeyError):
        return -2


def _run_and_kill(zygote, cmd: list, when: Callable[[], bool], timeout: float = 600) -> None:
    """Start cmd (its own process, forked by the zygote fixture) and SIGKILL it as soon as when() holds."""
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    proc = zygote.popen(cmd, cwd=ROOT, env=env)
    t0 = time.time()
    try:
        while proc.poll() is None and time.time() - t0 < timeout:
            if when():
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"


@pytest.fixture(scope="module")
def reference(shared, tmp_path_factory) -> Path:
    project = tmp_path_factory.mktemp("resume")
    r = run_main("train.py", *_args(shared, project, "full", workers=2))  # in-process: nothing here is killed
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return project / "full"


def _assert_same_run(a: Path, b: Path) -> None:
    rows_a, rows_b = (p.joinpath("results.csv").read_text().splitlines() for p in (a, b))
    assert len(rows_a) == EPOCHS + 1 and rows_a == rows_b  # every value (results.csv has no time column)
    last = f"weights/epoch{EPOCHS - 1}.pt"  # fp32 state after the last epoch (last.pt is stripped to fp16)
    ca, cb = (torch.load(p / last, map_location="cpu", weights_only=True) for p in (a, b))
    for key in ("model", "ema"):
        sa, sb = ca[key]["state_dict"], cb[key]["state_dict"]
        assert sa["model.0.conv.weight"].dtype == torch.float32
        differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not differ, f"{key}: {len(differ)} of {len(sa)} tensors differ, e.g. {differ[:3]}"
    fa, fb = (torch.load(p / "weights/last.pt", map_location="cpu", weights_only=True) for p in (a, b))
    assert all(torch.equal(fa["model"]["state_dict"][k], v) for k, v in fb["model"]["state_dict"].items())


def _resume(run: Path) -> None:
    r = run_main("train.py", "--resume", run / "weights/last.pt")  # a new run of the script, in-process
    assert r.returncode == 0 and "Resuming training" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


@pytest.mark.parametrize("workers", [0, 2])
def test_kill_after_first_epoch_row(shared, reference, zygote, workers):
    """The issue's case: SIGKILL half a second after results.csv has the epoch-0 row (and last.pt is written)."""
    run = reference.parent / f"cut_w{workers}"
    csv, last = run / "results.csv", run / "weights/last.pt"
    seen: list = []

    def after_row() -> bool:
        if not seen and csv.is_file() and len(csv.read_text().splitlines()) >= 2 and _epoch_of(last) >= 0:
            seen.append(time.time())
        return bool(seen) and time.time() - seen[0] > 0.5

    _run_and_kill(zygote, _cmd(shared, run.parent, run.name, workers, pause=4), after_row)
    assert _epoch_of(last) in (0, 1)
    _resume(run)
    _assert_same_run(reference, run)


def test_kill_during_second_epoch(shared, reference, zygote):
    """SIGKILL inside epoch 1 (its first batch plotted, its checkpoint not written): resume re-runs epoch 1."""
    run = reference.parent / "cut_mid"
    last = run / "weights/last.pt"
    _run_and_kill(zygote, _cmd(shared, run.parent, run.name, 2, pause=4), lambda: (run / "train_batch1.jpg").is_file())
    assert _epoch_of(last) == 0 and len((run / "results.csv").read_text().splitlines()) == 2
    _resume(run)
    _assert_same_run(reference, run)
