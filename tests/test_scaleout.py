"""utils/scaleout.py: run folders packed and renamed in whole, and Ray jobs (local session) that retry once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import pytest

from tests.evolve_fakes import always_fails, fails_first_time, fake_train
from tests.ray_cluster import free_port
from tests.test_evolve import _opt
from train import main as train_main
from train import parse_opt
from utils.scaleout import JobFailed, RayRunner, pack_dir, scratch_dir, unpack_into
from utils.train.evolve import EvolveTask, evolve
from utils.train.evolve_io import read_evolve_csv


def test_unpack_replaces_a_folder_whole(tmp_path):
    src = tmp_path / "src"
    (src / "weights").mkdir(parents=True)
    (src / "results.csv").write_text("a\n")
    (src / "weights" / "last.pt").write_bytes(b"x" * 1000)
    dest = tmp_path / "study" / "run_s0"
    dest.mkdir(parents=True)
    (dest / "stale.txt").write_text("from a killed run")
    unpack_into(pack_dir(src), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["results.csv", "weights"] and (dest / "weights/last.pt").is_file()
    unpack_into(pack_dir(src, skip=("weights",)), dest)
    assert sorted(p.name for p in dest.iterdir()) == ["results.csv"]
    assert [p.name for p in dest.parent.iterdir()] == ["run_s0"]  # no temporary folder left


def test_scratch_folders_of_killed_jobs_are_reclaimed(tmp_path, monkeypatch):
    """A SIGKILLed trial never cleans its node-local folder; the next job on the node removes it, and only it."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for pid in (dead.pid, live.pid):
            (tmp_path / f"yolov5fla-trial-{pid}-abc" / "trial").mkdir(parents=True)
        (tmp_path / f"yolov5fla-job-{dead.pid}-abc").mkdir()  # another kind: not this call's to clean
        new = scratch_dir("trial")
        names = sorted(p.name for p in tmp_path.iterdir())
        assert new.parent == tmp_path and new.name.startswith(f"yolov5fla-trial-{os.getpid()}-")
        assert f"yolov5fla-trial-{dead.pid}-abc" not in names
        assert f"yolov5fla-trial-{live.pid}-abc" in names and f"yolov5fla-job-{dead.pid}-abc" in names
    finally:
        live.kill()
        live.wait()


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray for the module: 2 CPUs, 100 MB object store, no dashboard; this repository on PYTHONPATH."""
    ray = pytest.importorskip("ray")
    from utils.scaleout import ROOT

    ray.init(address="local", num_cpus=2, object_store_memory=100 * 2**20, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})  # fmt: skip
    yield ray
    ray.shutdown()


def test_ray_retries_a_failed_job_once(ray_session, tmp_path):
    runner = RayRunner("local", cpus=1)
    assert runner.width == 2 and runner.options["max_retries"] == 1
    h = runner.submit(fails_first_time, str(tmp_path / "marker"))
    assert runner.wait([h]) == (h, "ok")
    h = runner.submit(always_fails)
    with pytest.raises(JobFailed, match="never works") as e:
        runner.wait([h])
    assert e.value.handle == h


def test_evolve_on_ray_runs_trials_in_parallel(ray_session, tmp_path):
    opt = _opt(tmp_path, 6, "--ray", "--ray-cpus", "1")
    opt.fake_seconds = 2.0
    save = evolve(opt, EvolveTask(train_fn=fake_train), seed=1)
    keys, rows = read_evolve_csv(save / "evolve.csv")
    assert rows.shape == (6, 7 + 29)
    trials = [json.loads((save / "trials" / f"t{i:04d}" / "trial.json").read_text()) for i in range(6)]
    assert all(t["node_id"] for t in trials)
    spans = sorted((t["started"], t["started"] + t["seconds"]) for t in trials)
    overlaps = sum(b[0] < a[1] for a, b in zip(spans, spans[1:]))
    assert overlaps >= 2  # two trials at a time (a trial starts before the one before it ends)


def test_ray_without_a_cluster_is_one_line(tmp_path, zygote):
    """--ray auto whose address (RAY_ADDRESS, or a stopped cluster's /tmp/ray file) answers nothing: one line, at
    once (ray.init would retry for minutes), and no evolve folder made."""
    pytest.importorskip("ray")
    port = free_port()
    r = zygote.run("train.py", "--evolve", "2", "--ray", "auto", "--cfg", "yolov5n.yaml", "--project", tmp_path,
                   env={"RAY_ADDRESS": f"127.0.0.1:{port}"})  # fmt: skip
    assert r.returncode == 2 and "no Ray cluster answers at" in r.stderr and f":{port} (RAY_ADDRESS)" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not list(tmp_path.iterdir())


def test_ray_not_installed_is_one_line(tmp_path, monkeypatch, capsys, restore_logging):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(SystemExit) as e:
        train_main(parse_opt(["--evolve", "2", "--ray", "--cfg", "yolov5n.yaml", "--project", str(tmp_path)]))
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err == ["error: --ray needs Ray: pip install -r requirements-scale.txt"]
