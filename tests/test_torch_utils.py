"""utils.torch_utils: seeding with deterministic algorithms, without paying for an inductor import."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> list:
    """Run code in a fresh python (so torch's import state is its own); -> its stdout words."""
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_init_seeds_deterministic_sets_the_flag_without_inductor():
    code = (
        "import sys, torch\n"
        "from utils.torch_utils import init_seeds, set_deterministic\n"
        "init_seeds(3, deterministic=True)\n"
        "a = torch.rand(2).tolist()\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),\n"
        "      'torch._inductor' in sys.modules)\n"
        "init_seeds(3)\n"
        "print(a == torch.rand(2).tolist())\n"
        "set_deterministic(False)\n"
        "print(torch.are_deterministic_algorithms_enabled())\n"
    )
    assert _run(code) == ["True", "True", "False", "True", "False"]


def test_set_deterministic_with_inductor_loaded_uses_the_public_call():
    code = (
        "import torch, torch._inductor.config as c\n"
        "from utils.torch_utils import set_deterministic\n"
        "set_deterministic(True)\n"
        "print(torch.are_deterministic_algorithms_enabled(), c.deterministic)\n"
    )
    assert _run(code) == ["True", "True"]
