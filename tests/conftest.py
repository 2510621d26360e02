"""Shared pytest fixtures: the ../shared folder (skipped when absent) and small helpers to run the CLIs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("YOLOV5FLA_SHARED", ROOT.parent / "shared"))
# Idle OpenMP threads sleep instead of spinning (read once, when torch loads libgomp: nothing has imported it yet; the
# children of run_script and subprocess tests inherit it). The suite often has more threads than cores (its own
# children, DDP / Ray workers, other jobs on the machine): spinning threads then starve the ones doing the work, and
# test_hub_models.py took 190 s instead of 28 s on a busy 2-core machine. Results are unchanged (only how threads
# wait); set OMP_WAIT_POLICY yourself to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


@pytest.fixture(scope="session")
def zygote():
    """tests/zygote.py: training runs that a test kills, each forked from one pre-imported process (no interpreter
    start per run); zygote.popen(cmd, cwd, env) as subprocess.Popen(cmd, cwd=cwd, env=env)."""
    from tests.zygote import Zygote

    z = Zygote(ROOT, {**os.environ, "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"})
    yield z
    z.close()


@pytest.fixture(scope="session")
def shared() -> Path:
    """Path to ../shared; the test is skipped when it is absent (a user's checkout has none)."""
    if not (SHARED / "README.md").is_file():
        pytest.skip("../shared is absent")
    return SHARED.resolve()  # scripts print resolved paths; ../shared may be a symlink


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path_factory, monkeypatch):
    """Keep generated data and caches of every test out of the real home folder."""
    base = tmp_path_factory.getbasetemp()
    monkeypatch.setenv("YOLOV5FLA_HOME", str(base / "user_home"))
    monkeypatch.setenv("YOLOV5FLA_CACHE", str(base / "user_cache"))


def run_script(script: str, *args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None):
    """Run `python <script> args...` from the repository root; returns CompletedProcess (text, never raises)."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "2", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=str(cwd or ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
    )


@pytest.fixture
def restore_logging():
    """The scripts' main() installs a stdout handler on the root logger; put the previous handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture(scope="module")
def tiny_fla(tmp_path_factory):
    """A width-0.25 FLA model (non-zero attention output) saved in our checkpoint format."""
    import torch

    from models.yolo import DetectionModel
    from utils.checkpoint import model_to_dict, save_checkpoint

    torch.manual_seed(0)
    model = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False)
    for m in model.modules():
        if type(m).__name__ == "FocusedLinearAttention":
            torch.nn.init.normal_(m.proj.weight, std=0.05)
            torch.nn.init.normal_(m.positional_encoding, std=0.05)
    model.names = ["cat", "dog"]
    f = tmp_path_factory.mktemp("fla") / "tiny-fla.pt"
    save_checkpoint({"model": model_to_dict(model, half=False)}, f)
    return f


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory) -> Path:
    """A random tiny 3-class model whose objectness bias is raised so that it always finds a few boxes."""
    from tests.helpers import make_detecting_weights

    return make_detecting_weights(tmp_path_factory.mktemp("w") / "tiny.pt")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """tests.helpers.make_dataset: 8 train / 4 val images of coloured rectangles, 2 classes (never written to)."""
    from tests.helpers import make_dataset

    return make_dataset(tmp_path_factory.mktemp("tiny"))


def pytest_collection_finish(session):
    """The session's @in_child tests and file_in_child files (tests/child_runner.py): the first test that needs the
    child runs them all in one."""
    from tests.child_runner import SESSION_FILES, SESSION_TESTS

    functions = [(i.nodeid, getattr(i, "function", None)) for i in session.items]
    SESSION_TESTS[:] = [nodeid for nodeid, f in functions if getattr(f, "_in_child", False)]
    SESSION_FILES[:] = list(dict.fromkeys(f._child_file for _, f in functions if hasattr(f, "_child_file")))


def pytest_runtest_logreport(report):
    """In that child: each test phase's outcome goes to the report file its parent reads."""
    from tests.child_runner import write_report

    write_report(report)
