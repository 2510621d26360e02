"""Ctrl-C (SIGINT) then --resume equals the uninterrupted run bitwise, and results.csv rows and checkpoints are one
step: a row exists only once its checkpoint does, and a restarted run never duplicates rows (issue 20)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import ROOT
from tests.hardening_helpers import TINY_CFG, make_dataset
from tests.helpers import run_main

pytestmark = pytest.mark.slow
EPOCHS = 2
ENV = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}


def _wrapper(pause: float) -> tuple:
    return ("-m", "tests.slow_epochs", str(pause)) if pause else ()


def _args(world: dict, name: str, *extra: str) -> list:
    """train.py's arguments: the tiny config on the 8-image set, 2 epochs, a checkpoint per epoch."""
    return ["--cfg", str(world["cfg"]), "--data", str(world["data"]), "--imgsz", "64",
            "--epochs", str(EPOCHS), "--batch-size", "2", "--workers", "0", "--device", "cpu", "--seed", "0",
            "--noplots", "--exist-ok", "--project", str(world["t"]), "--name", name, "--save-period", "1",
            *extra]  # fmt: skip


def _cmd(world: dict, name: str, *extra: str, pause: float = 0) -> list:
    """train.py's command; pause > 0 runs it under tests.slow_epochs (a pause inside every epoch after the first)."""
    return [sys.executable, *_wrapper(pause), "train.py", *_args(world, name, *extra)]


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    t = tmp_path_factory.mktemp("interrupt")
    cfg = t / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY_CFG))
    w = {"t": t, "cfg": cfg, "data": make_dataset(t / "ds", n=8)}
    r = run_main("train.py", *_args(w, "full"))  # the reference: in-process, nothing here is interrupted
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    w["ref"] = t / "full"
    return w


def _epoch_of(last: Path) -> int:
    try:
        return int(torch.load(last, map_location="cpu", weights_only=True)["epoch"])
    except (FileNotFoundError, RuntimeError, EOFError, OSError, KeyError):
        return -2


def _same_run(a: Path, b: Path) -> None:
    rows_a, rows_b = (p.joinpath("results.csv").read_text().splitlines() for p in (a, b))
    assert len(rows_a) == EPOCHS + 1 and rows_a == rows_b, (rows_a, rows_b)
    ca, cb = (torch.load(p / f"weights/epoch{EPOCHS - 1}.pt", map_location="cpu", weights_only=True) for p in (a, b))
    for key in ("model", "ema"):
        sa, sb = ca[key]["state_dict"], cb[key]["state_dict"]
        differ = [k for k in sa if not torch.equal(sa[k], sb[k])]
        assert not differ, f"{key}: {len(differ)} of {len(sa)} tensors differ, e.g. {differ[:3]}"


def _resume(run: Path) -> None:
    r = run_main("train.py", "--resume", run / "weights/last.pt")  # a new run of the script, in-process
    assert r.returncode == 0 and "Resuming training" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]


def test_sigint_in_the_second_epoch_then_resume_is_exact(world):
    """SIGINT once epoch 0's checkpoint exists (epoch 1 training or validating): before the fix, Ctrl-C saved the
    mid-epoch weights under epoch 0's number and the resumed run differed in most tensors and in results.csv."""
    run = world["t"] / "sigint"
    last = run / "weights/last.pt"
    proc = subprocess.Popen(_cmd(world, "sigint", pause=4), cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
    try:
        t0 = time.time()
        while proc.poll() is None and _epoch_of(last) != 0 and time.time() - t0 < 600:
            time.sleep(0.02)
        time.sleep(0.3)  # inside epoch 1: tests.slow_epochs pauses it after its first batch
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 130, out[-2000:] + err[-2000:]
    assert f"Interrupted: {last} holds epoch 0" in out + err and "Traceback" not in err
    assert _epoch_of(last) == 0 and len((run / "results.csv").read_text().splitlines()) == 2
    _resume(run)
    _same_run(world["ref"], run)


def test_killed_first_save_then_exist_ok_restart_has_no_duplicate_rows(world):
    """A run killed in its very first save leaves no last.pt (and, with the row written first, an epoch-0 row).
    Restarting into the same folder with --exist-ok used to append a second set of rows."""
    run = world["t"] / "again"
    (run / "weights").mkdir(parents=True)
    header, first = world["ref"].joinpath("results.csv").read_text().splitlines()[:2]
    (run / "results.csv").write_text(f"{header}\n{first}\n")  # the row of the killed run
    (run / "weights" / f".last.pt.{2**22 + 1}.tmp").write_bytes(b"PK\x03\x04 half a checkpoint")
    r = run_main("train.py", *_args(world, "again"))  # the restart: in-process (the kill was simulated above)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    _same_run(world["ref"], run)
