"""DDP arithmetic as official YOLOv5: a 2-process gloo run and a single process with the same total batch agree."""

from __future__ import annotations

import os
import re
import socket
import sys

import pytest
import torch

from tests.conftest import ROOT
from tests.helpers import make_dataset, run_main
from tests.test_train import BASE
from utils.errors import UserError
from utils.train.setup import ddp_device

STEPS = re.compile(r"(\d+) optimizer steps, accumulate (\d+) \(total batch (\d+)\)")
BATCHES = re.compile(r"batch (\d+) per process \(total (\d+)\), val batch (\d+)")


@pytest.mark.slow
def test_ddp_takes_the_single_process_steps(tmp_path, zygote):
    """Total batch 2 over 8 images for 2 epochs, all in warmup: accumulate ramps 1 -> 64 / 2 in both runs.

    Before the fix the DDP ramp used the per-process batch (64 / 1), so it took fewer optimizer steps. The DDP run
    (2 gloo processes under torchrun) also leaves one run folder, written by rank 0, with last.pt and results.csv.
    """
    data = make_dataset(tmp_path / "data")
    args = (*BASE, "--data", str(data), "--epochs", "2", "--batch-size", "2", "--noplots")
    # a child process (forked by the zygote fixture): in-process, after the suite's earlier tests, this training run
    # segfaulted in OpenCV (2026-12-07)
    single = zygote.run("train.py", *args, "--project", tmp_path / "one", "--name", "single")
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    with socket.socket() as sock:  # a free port: a fixed one may still be held by an earlier run
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    project = tmp_path / "two"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
           "train.py", *map(str, args), "--project", str(project), "--name", "ddp"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    ddp = zygote.run_cmd(cmd, ROOT, env)  # the torchrun launcher forked; its 2 workers are new interpreters
    assert ddp.returncode == 0, ddp.stdout[-3000:] + ddp.stderr[-3000:]
    steps_single = STEPS.findall(single.stdout + single.stderr)
    steps_ddp = STEPS.findall(ddp.stdout + ddp.stderr)
    assert len(steps_single) == 2 and steps_ddp == steps_single, (steps_single, steps_ddp)
    assert int(steps_single[-1][1]) > 1  # the ramp has moved: a per-process ramp would differ here
    assert BATCHES.findall(single.stdout + single.stderr) == [("2", "2", "4")]
    assert BATCHES.findall(ddp.stdout + ddp.stderr) == [("1", "2", "2")]  # val: per-process batch x 2, as official
    assert sorted(p.name for p in project.iterdir()) == ["ddp"]  # one run folder, written by rank 0
    assert (project / "ddp/weights/last.pt").is_file() and (project / "ddp/results.csv").is_file()


def test_ddp_device_is_the_listed_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert ddp_device("2,3", 0, 2) == torch.device("cuda", 2) and ddp_device("2,3", 1, 2) == torch.device("cuda", 3)
    assert ddp_device("", 1, 2) == torch.device("cuda", 1) and ddp_device("cpu", 1, 2) == torch.device("cpu")
    with pytest.raises(UserError, match="lists 1 CUDA devices for 2"):
        ddp_device("3", 0, 2)


def test_several_devices_without_torchrun_say_so(tmp_path):
    r = run_main("train.py", "--cfg", "yolov5n.yaml", "--device", "0,1", "--project", tmp_path, "--epochs", "1")
    assert r.returncode == 2 and "torch.distributed.run --nproc_per_node 2" in r.stderr, r.stderr[-2000:]
    assert "Traceback" not in r.stderr
