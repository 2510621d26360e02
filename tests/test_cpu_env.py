"""utils/cpu_env.py: the scripts ask for sleeping OpenMP threads before torch loads OpenMP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from utils.cpu_env import prefer_passive_openmp

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("train.py", "val.py", "detect.py", "export.py", "benchmarks.py", "segment/train.py", "segment/val.py",
           "segment/predict.py", "classify/train.py", "classify/val.py", "classify/predict.py")  # fmt: skip


def test_passive_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    prefer_passive_openmp()
    assert __import__("os").environ["OMP_WAIT_POLICY"] == "PASSIVE"
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    prefer_passive_openmp()
    assert __import__("os").environ["OMP_WAIT_POLICY"] == "ACTIVE"


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_calls_it_in_main_block(script):
    text = (ROOT / script).read_text()
    block = text[text.index('if __name__ == "__main__":') :]
    assert block.index("prefer_passive_openmp()") < block.index("main(")


def test_scripts_import_torch_only_inside_main():
    # a fresh interpreter (this one has torch loaded): loading each script's module must not import torch, or the
    # setting in its __main__ block would come after OpenMP read the environment
    code = (
        "import importlib.util, sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "for i, s in enumerate(sys.argv[1:]):\n"
        "    spec = importlib.util.spec_from_file_location(f'script{i}', s)\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "    print(s, 'torch' in sys.modules)\n"
    )
    r = subprocess.run([sys.executable, "-c", code, *SCRIPTS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == [w for s in SCRIPTS for w in (s, "False")]
