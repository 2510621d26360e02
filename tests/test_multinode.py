"""Multi-node DDP as official YOLOv5 documents it, on the loopback: `torchrun --nnodes 2`, one process per node,
static rendezvous on 127.0.0.1, gloo. It must take the single-process run's optimizer steps at the same total batch."""

from __future__ import annotations

import os
import socket
import sys

import pytest

from tests.conftest import ROOT
from tests.helpers import make_dataset, run_main
from tests.test_ddp import BATCHES, STEPS
from tests.test_train import BASE

pytestmark = pytest.mark.slow


def _free_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return str(sock.getsockname()[1])


def test_two_nodes_take_the_single_process_steps(tmp_path, zygote):
    data = make_dataset(tmp_path / "data")
    args = (*BASE, "--data", str(data), "--project", str(tmp_path), "--epochs", "1", "--batch-size", "2", "--noplots")
    single = run_main("train.py", *args, "--name", "single")  # the reference needs no process boundary
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    port = _free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    nodes = []
    for node_rank in (0, 1):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
               "--node_rank", str(node_rank), "--master_addr", "127.0.0.1", "--master_port", port,
               "--rdzv_backend", "static", "train.py", *map(str, args), "--name", "nodes"]  # fmt: skip
        nodes.append(zygote.popen(cmd, ROOT, env, capture=True))  # the launcher forked; its worker a new interpreter
    outs = []
    try:
        for p in nodes:
            out, err = p.communicate(timeout=600)
            outs.append(out + err)
    finally:
        for p in nodes:
            p.kill()
    assert [p.returncode for p in nodes] == [0, 0], "\n----\n".join(o[-3000:] for o in outs)
    steps_single = STEPS.findall(single.stdout + single.stderr)
    assert len(steps_single) == 1 and STEPS.findall(outs[0]) == steps_single, (steps_single, STEPS.findall(outs[0]))
    assert not STEPS.findall(outs[1])  # node 1 (rank 1) neither logs nor saves
    assert BATCHES.findall(outs[0]) == [("1", "2", "2")]
    assert (tmp_path / "nodes" / "weights" / "last.pt").is_file()
