"""Small torch helpers: device selection, seeding, timing, unwrapping DDP."""

from __future__ import annotations

import os
import random
import sys
import time

import numpy as np
import torch
import torch.nn as nn

from utils.errors import UserError


def select_device(device: str = "", batch_size: int = 0) -> torch.device:
    """'' -> cuda:0 when available else cpu; 'cpu'; '0' or '0,1' or 'cuda:0' -> CUDA. UserError when CUDA is absent."""
    s = str(device).strip().lower().replace("cuda:", "").replace("none", "")
    if s in ("cpu", "mps"):
        if s == "mps":
            if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
                raise UserError("--device mps requested but MPS is not available on this machine; use --device cpu")
            return torch.device("mps")
        return torch.device("cpu")
    if not s:
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    ids = [i for i in s.split(",") if i != ""]
    if not all(i.isdigit() for i in ids):
        raise UserError(f"invalid --device '{device}': use cpu, or CUDA indices like 0 or 0,1")
    if not torch.cuda.is_available():
        raise UserError(f"--device {device} requested but CUDA is not available on this machine; use --device cpu")
    n = torch.cuda.device_count()
    if any(int(i) >= n for i in ids):
        raise UserError(f"--device {device} requested but this machine has {n} CUDA device(s)")
    if batch_size and len(ids) > 1 and batch_size % len(ids):
        raise UserError(f"--batch-size {batch_size} is not a multiple of the {len(ids)} devices")
    return torch.device(f"cuda:{ids[0]}")


def set_deterministic(mode: bool) -> None:
    """torch.use_deterministic_algorithms(mode, warn_only=True) without its import of torch._inductor (~2 s).

    The public call only adds inductor's own flag, which matters to torch.compile; this code never compiles, so
    the core switch is set directly unless inductor is already loaded (then the public call costs nothing).
    """
    if "torch._inductor" in sys.modules or not hasattr(torch._C, "_set_deterministic_algorithms"):
        torch.use_deterministic_algorithms(mode, warn_only=True)
    else:
        torch._C._set_deterministic_algorithms(mode, warn_only=True)


def init_seeds(seed: int = 0, deterministic: bool = False) -> None:
    """Seed python, numpy and torch RNGs; optionally ask torch for deterministic algorithms."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)
    if deterministic:
        set_deterministic(True)
        torch.backends.cudnn.deterministic = True
        os.environ["CUBLAS_WORKSPACE_CONFIG"] = ":4096:8"
        os.environ["PYTHONHASHSEED"] = str(seed)


def time_sync() -> float:
    """time.time() after waiting for queued CUDA work."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.time()


def de_parallel(model: nn.Module) -> nn.Module:
    """The bare model inside DataParallel / DistributedDataParallel."""
    return model.module if isinstance(model, (nn.parallel.DataParallel, nn.parallel.DistributedDataParallel)) else model
