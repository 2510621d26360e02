"""Process-wide CPU runtime settings, which a script makes before it imports torch."""

from __future__ import annotations

import os


def prefer_passive_openmp() -> None:
    """Idle OpenMP threads sleep rather than spin (OMP_WAIT_POLICY=PASSIVE), unless the environment names a policy.

    PyTorch's CPU threads spin between ops by default. On a small CPU that they share with the data-loader workers
    (or with other programs) the spinning takes the cores the workers need: on a busy 2-core machine val.py on BCCD
    took 9-14 s instead of 20-26 s, and one training epoch 33-46 s instead of 133-152 s. OpenMP reads the variable
    once, when torch loads it, so this only acts before torch is imported (the scripts import it inside main).
    """
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
