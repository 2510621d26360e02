"""Exponential moving average of model weights, with a decay that ramps up over the first updates."""

from __future__ import annotations

import copy
import math
from typing import Any, Dict

import torch
import torch.nn as nn

from utils.torch_utils import de_parallel


class ModelEMA:
    """Keeps `ema`, a frozen copy of the model whose floating tensors follow ema = d * ema + (1 - d) * model.

    d = decay * (1 - exp(-updates / tau)), so early updates follow the model closely. Call update(model) after
    every optimizer step; integer buffers (e.g. BatchNorm's num_batches_tracked) are left untouched.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000.0, updates: int = 0):
        self.ema = copy.deepcopy(de_parallel(model)).eval()
        self.decay_max, self.tau, self.updates = decay, tau, updates
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def decay(self, updates: int) -> float:
        """The decay used at the given update count."""
        return self.decay_max * (1 - math.exp(-updates / self.tau))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend the model's current weights into the EMA."""
        self.updates += 1
        d = self.decay(self.updates)
        current = de_parallel(model).state_dict()
        ema = [(v, current[k]) for k, v in self.ema.state_dict().items() if v.dtype.is_floating_point]
        targets = [v for v, _ in ema]
        sources = [c.detach().to(v.dtype) for v, c in ema]
        # one call per op over all tensors (the same per-tensor arithmetic as value.mul_(d).add_(src, alpha=1 - d))
        torch._foreach_mul_(targets, d)
        torch._foreach_add_(targets, sources, alpha=1 - d)

    def update_attr(self, model: nn.Module, include: tuple = (), exclude: tuple = ("process_group", "reducer")) -> None:
        """Copy plain attributes (names, yaml, hyp, ...) from the model to the EMA."""
        src = de_parallel(model)
        for k, v in src.__dict__.items():
            if k.startswith("_") or k in exclude or (include and k not in include):
                continue
            setattr(self.ema, k, v)

    def state_dict(self) -> Dict[str, Any]:
        """What resume needs besides the EMA weights (saved in the checkpoint's 'ema')."""
        return {"updates": self.updates, "decay": self.decay_max, "tau": self.tau}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore the update counter (and decay settings) written by state_dict()."""
        self.updates = int(state["updates"])
        self.decay_max = float(state.get("decay", self.decay_max))
        self.tau = float(state.get("tau", self.tau))
