"""Hostile input runs nothing (malicious pickles, yaml code, download scripts); kills, Ctrl-C and full disks lose
nothing; the dataset and the images given to detect.py are never written to."""

from __future__ import annotations

import errno
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
import torch

from tests.conftest import ROOT
from tests.helpers import make_tiny_dataset, make_tiny_weights, run_main

pytestmark = pytest.mark.slow
TRAIN = ("--imgsz", "64", "--batch-size", "2", "--workers", "0", "--noplots", "--device", "cpu")


class _Evil:
    """Unpickling this runs `touch <marker>`."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    t = tmp_path_factory.mktemp("hostile")
    return {"t": t, "data": make_tiny_dataset(t / "ds"), "weights": make_tiny_weights(t / "tiny.pt")}


# ---------------------------------------------------------------- nothing executed


@pytest.mark.parametrize("script,flag", [("detect.py", "--weights"), ("val.py", "--weights"),
                                         ("train.py", "--weights"), ("train.py", "--resume"),
                                         ("export.py", "--weights")])  # fmt: skip
def test_malicious_checkpoint_is_refused(world, tmp_path, script, flag):
    marker = tmp_path / "MARKER"
    evil = tmp_path / "evil.pt"
    torch.save({"model": _Evil(marker), "epoch": 0}, evil)
    extra = {
        "detect.py": ["--source", world["data"].parent / "images/val", "--project", tmp_path],
        "val.py": ["--data", world["data"], "--project", tmp_path],
        "train.py": ["--data", world["data"], "--epochs", "1", *TRAIN, "--project", tmp_path] * (flag != "--resume"),
        "export.py": [],
    }[script]
    r = run_main(script, flag, evil, *extra)
    assert r.returncode == 1, r.stdout[-1500:] + r.stderr[-1500:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: checkpoint refused: it asks for 'posix.system'")
    assert "Traceback" not in r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("where", ["module", "argument"])
def test_model_yaml_code_is_refused(world, tmp_path, where):
    marker = tmp_path / "M"
    code = f"\"__import__('os').system('touch {marker}')\""
    cfg = (ROOT / "models/yolov5n.yaml").read_text()
    first = "[-1, 1, Conv, [64, 6, 2, 2]]"
    assert first in cfg
    bad = f"[-1, 1, {code}, [64, 6, 2, 2]]" if where == "module" else f"[-1, 1, Conv, [{code}, 6, 2, 2]]"
    (tmp_path / "evil.yaml").write_text(cfg.replace(first, bad))
    r = run_main("train.py", "--cfg", tmp_path / "evil.yaml", "--data", world["data"], "--epochs", "1", *TRAIN,
                   "--project", tmp_path)  # fmt: skip
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    expected = "unknown module" if where == "module" else "bad arguments"
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: layer 0: {expected}")
    assert not marker.exists()


def test_dataset_download_script_is_ignored(world, tmp_path):
    marker = tmp_path / "M"
    data = tmp_path / "dl.yaml"
    text = world["data"].read_text().replace("path: .", f"path: {world['data'].parent}")
    data.write_text(text + f"download: |\n  import os\n  os.system('touch {marker}')\n")
    r = run_main("val.py", "--weights", world["weights"], "--data", data, "--imgsz", "64", "--project", tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "the 'download' entry is ignored; it will never be executed" in r.stdout + r.stderr
    assert not marker.exists()


# ---------------------------------------------------------------- nothing lost


def _train_cmd(world: dict, project: Path, epochs: int, pause: float = 0) -> list:
    """train.py's command; pause > 0 runs it under tests.slow_epochs (a pause inside every epoch after the first)."""
    wrapper = ("-m", "tests.slow_epochs", str(pause)) if pause else ()
    return [sys.executable, *wrapper, str(ROOT / "train.py"), "--weights", str(world["weights"]),
            "--data", str(world["data"]),
            "--epochs", str(epochs), *TRAIN, "--project", str(project), "--name", "run"]  # fmt: skip


def _wait_for(proc: subprocess.Popen, last: Path, after_ns: int, writing: bool = False, timeout: float = 240) -> bool:
    """Poll until last.pt's mtime is newer than after_ns (or, with writing, its temp file appears): True;
    False when the process ends first."""
    t0 = time.time()
    while proc.poll() is None and time.time() - t0 < timeout:
        if writing and last.parent.is_dir() and any(last.parent.glob(f".{last.name}.*.tmp")):
            return True
        try:
            if last.stat().st_mtime_ns > after_ns:
                return True
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    return False


def _loadable_epoch(last: Path) -> int:
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    assert ckpt["format"].startswith("yolov5-fla/")
    return int(ckpt["epoch"])


def test_sigkill_at_any_moment_leaves_a_resumable_last_pt(world, tmp_path, zygote):
    epochs, last = 6, tmp_path / "run/weights/last.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    cmd = _train_cmd(world, tmp_path, epochs)
    # (kill while last.pt is being written, seconds after it changed): mid-write, right after, during the next epoch
    moments = [(False, 0.0), (True, 0.0), (False, 0.05)]
    for i, (writing, delay) in enumerate(moments):
        before = last.stat().st_mtime_ns if last.exists() else 0
        proc = zygote.popen(cmd, cwd=ROOT, env=env)  # its own process, forked by the zygote fixture
        try:
            saved = _wait_for(proc, last, before, writing=writing and last.exists())
            time.sleep(delay)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert saved or proc.returncode == 0, f"kill {i}: last.pt never written"
        epoch = _loadable_epoch(last)
        assert 0 <= epoch < epochs
        print(f"kill {i} (mid-write={writing}, +{delay}s): last.pt loads, epoch {epoch}")
        cmd = [sys.executable, str(ROOT / "train.py"), "--resume", str(last)]
    r = run_main("train.py", "--resume", last)
    done = r.returncode == 2 and "nothing to resume" in r.stderr  # the last kill came after the final epoch's save
    assert r.returncode == 0 or done, r.stdout[-3000:] + r.stderr[-3000:]
    assert _loadable_epoch(last) == (epochs - 1 if done else -1)  # a finished run's last.pt is stripped (epoch -1)
    rows = (tmp_path / "run/results.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(epochs))  # each epoch logged once
    assert not list(last.parent.glob(".*.tmp"))  # temp files of the killed saves were cleaned up


def test_ctrl_c_saves_state_and_run_resumes(world, tmp_path, zygote):
    epochs, last = 3, tmp_path / "run/weights/last.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"}
    # its own process, forked by the zygote fixture (started with SIGINT's default action, as a shell's background
    # job would not be: python then installs its Ctrl-C handler, which the fork inherits)
    proc = zygote.popen(_train_cmd(world, tmp_path, epochs, pause=5), cwd=ROOT, env=env, capture=True)
    try:
        assert _wait_for(proc, last, 0), "last.pt never written"
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130 and "Traceback" not in err, err[-2000:]
    assert (
        f"Interrupted: {last} holds epoch " in out + err
        and f"Resume with: python train.py --resume {last}" in out + err
    )
    assert err.strip().splitlines()[-1] == "interrupted"
    assert 0 <= _loadable_epoch(last) < epochs - 1
    r = run_main("train.py", "--resume", last)
    assert r.returncode == 0 and "Resuming training" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
    assert _loadable_epoch(last) == -1  # finished and stripped
    rows = (tmp_path / "run/results.csv").read_text().splitlines()[1:]
    assert [int(row.split(",")[0]) for row in rows] == list(range(epochs))


def test_save_checkpoint_disk_full_keeps_previous_file(tmp_path, monkeypatch):
    from utils.checkpoint import save_checkpoint
    from utils.errors import UserError

    path = save_checkpoint({"model": {"yaml": {}, "state_dict": {}}, "epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(UserError, match="cannot save checkpoint .*last.pt: No space left on device"):
        save_checkpoint({"model": {"yaml": {}, "state_dict": {}}, "epoch": 2}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]
    with pytest.raises(UserError, match="cannot save checkpoint"):  # its folder cannot exist: a file is in the way
        save_checkpoint({"epoch": 3}, path / "sub" / "last.pt")


@pytest.mark.parametrize("script", ["train.py", "val.py", "detect.py"])
def test_unwritable_project_is_one_clear_error(world, tmp_path, script):
    (tmp_path / "afile").write_text("a file where a folder should be\n")
    args = {
        "train.py": ["--weights", world["weights"], "--data", world["data"], "--epochs", "1", *TRAIN],
        "val.py": ["--weights", world["weights"], "--data", world["data"], "--imgsz", "64"],
        "detect.py": ["--weights", world["weights"], "--source", world["data"].parent / "images/val"],
    }[script]
    r = run_main(script, *args, "--project", tmp_path / "afile/sub")
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().splitlines()[-1].startswith("error: cannot create output folder")


# ---------------------------------------------------------------- nothing written to the user's data


def _tree_digest(root: Path) -> dict:
    """{relative path: (mode, sha256)} of every file and folder under root."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.stat()
        out[str(p.relative_to(root))] = (st.st_mode, hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "")
    return out


def _set_read_only(root: Path, read_only: bool) -> None:
    for p in [root, *root.rglob("*")]:
        mode = p.stat().st_mode
        p.chmod(mode & ~0o222 if read_only else mode | 0o200)


def test_dataset_and_sources_are_never_written(tmp_path):
    data = make_tiny_dataset(tmp_path / "ds")
    weights = make_tiny_weights(tmp_path / "tiny.pt")
    val_images = data.parent / "images/val"
    ok, jpg = cv2.imencode(".jpg", cv2.imread(str(val_images / "0.png")))
    (val_images / "cut.jpg").write_bytes(jpg.tobytes()[: len(jpg) // 2])  # a truncated JPEG: never repaired
    _set_read_only(data.parent, True)
    try:
        before = _tree_digest(data.parent)
        runs = tmp_path / "runs"
        r = run_main("train.py", "--weights", weights, "--data", data, "--epochs", "1", *TRAIN, "--project", runs)
        assert r.returncode == 0, r.stderr[-2000:]
        r = run_main("val.py", "--weights", weights, "--data", data, "--imgsz", "64", "--project", runs)
        assert r.returncode == 0, r.stderr[-2000:]
        r = run_main("detect.py", "--weights", weights, "--source", val_images, "--imgsz", "64", "--project", runs,
                       "--name", "det")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        assert f"WARNING: skipping {val_images / 'cut.jpg'}: cannot read image" in r.stdout + r.stderr
        assert _tree_digest(data.parent) == before
    finally:
        _set_read_only(data.parent, False)
    caches = list((Path(os.environ["YOLOV5FLA_CACHE"]) / "labels").glob("*.cache.json"))
    assert {c.name.split("-")[0] for c in caches} >= {"train", "val"}  # the label caches went to the user cache
    assert sorted(p.name for p in (runs / "det").iterdir()) == ["0.png", "1.png", "2.png", "3.png"]
