"""ablate.py --ray on a two-node cluster on the loopback: both nodes train, and a study whose worker node is killed
mid-study still ends with every run present once (the run that died with the node is retried on the head)."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import make_dataset
from tests.ray_cluster import LoopbackCluster, session_pids

pytestmark = pytest.mark.slow


def _training_in(sid: int) -> bool:
    """True while a train.py process runs in the session sid (a job on that node)."""
    for pid in session_pids(sid):
        try:
            if b"train.py" in Path(f"/proc/{pid}/cmdline").read_bytes():
                return True
        except OSError:
            pass
    return False


def test_two_node_study_survives_a_dead_worker(tmp_path, restore_logging):
    ray = pytest.importorskip("ray")
    from benchmarks import ablate
    from utils.scaleout import ROOT

    data = make_dataset(tmp_path / "data", n_train=4, n_val=4)
    out = tmp_path / "study" / "r"
    with LoopbackCluster(tmp_path / "ray") as cluster:
        ray.init(address=cluster.address, log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
        try:
            t0 = time.time()
            while len([n for n in ray.nodes() if n["Alive"]]) < 2 and time.time() - t0 < 60:
                time.sleep(0.5)
            worker_id = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeManagerPort"] and not
                             n["Resources"].get("node:__internal_head__"))  # fmt: skip
            argv = ["--data", str(data), "--cfgs", "yolov5n.yaml", "--seeds", "0", "1", "2", "3", "--epochs", "1",
                    "--imgsz", "64", "--batch-size", "4", "--workers", "0", "--latency-runs", "2", "--project",
                    str(out.parent), "--name", out.name, "--ray", cluster.address, "--ray-cpus", "1",
                    "--train-args", "--device", "cpu", "--noautoanchor"]  # fmt: skip
            errors = []

            def study():
                try:
                    ablate.main(ablate.parse_opt(argv))
                except BaseException as e:  # run_cli exits on errors
                    errors.append(e)

            thread = threading.Thread(target=study)
            thread.start()
            killed_busy = False
            while thread.is_alive() and time.time() - t0 < 600:
                done = [json.loads(p.read_text()) for p in out.glob("*/study_run.json")]
                if any(d["node_id"] == worker_id for d in done):  # the worker finished a run: kill it in its next
                    deadline = time.time() + 20
                    while not _training_in(cluster.worker.pid) and time.time() < deadline:
                        time.sleep(0.2)
                    killed_busy = _training_in(cluster.worker.pid)
                    cluster.kill_worker()
                    break
                time.sleep(0.2)
            thread.join(timeout=600)
        finally:
            ray.shutdown()
    assert not errors, errors
    runs = sorted(p.parent.name for p in out.glob("*/study_run.json"))
    assert runs == [f"yolov5n_s{s}" for s in range(4)]  # every run present, once
    nodes = [json.loads((out / r / "study_run.json").read_text())["node_id"] for r in runs]
    assert worker_id in nodes and len(set(nodes)) == 2  # both nodes trained
    assert (out / "study.md").is_file() and not list(out.glob(".*"))  # no half-written folder
    print(f"runs by node: {dict(zip(runs, (n[:8] for n in nodes)))}, worker killed while training: {killed_busy}")
