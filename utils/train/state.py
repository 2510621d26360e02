"""Training state for exact resume: RNG states as plain lists/tensors, and the resume bookkeeping in a checkpoint."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
import torch.nn as nn

from utils.checkpoint import load_checkpoint, model_to_dict, save_checkpoint
from utils.errors import UserError
from utils.torch_utils import de_parallel
from utils.train.ema import ModelEMA

LOGGER = logging.getLogger(__name__)


def get_rng_state(generator: torch.Generator | None = None) -> Dict[str, Any]:
    """Python, numpy, torch (CPU and CUDA) and dataloader-generator states, all weights_only-loadable."""
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: Dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "kind": str(kind),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "loader": generator.get_state() if generator is not None else None,
    }
    return state


def set_rng_state(state: Dict[str, Any], generator: torch.Generator | None = None) -> None:
    """Restore what get_rng_state() captured (missing parts are left alone)."""
    if "python" in state:
        p = state["python"]
        random.setstate((p["version"], tuple(int(v) for v in p["state"]), p["gauss"]))
    if "numpy" in state:
        n = state["numpy"]
        keys = np.asarray(n["keys"].numpy() if isinstance(n["keys"], torch.Tensor) else n["keys"]).astype(np.uint32)
        np.random.set_state((n["kind"], keys, int(n["pos"]), int(n["has_gauss"]), float(n["cached"])))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and state.get("loader") is not None:
        generator.set_state(state["loader"])


def pending_grads(model: nn.Module) -> Dict[str, torch.Tensor] | None:
    """Gradients accumulated but not yet applied (None when there are none), for a resume in mid-accumulation."""
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads if any(bool(g.any()) for g in grads.values()) else None


def restore_grads(model: nn.Module, grads: Dict[str, torch.Tensor] | None) -> None:
    """Put saved pending gradients back onto the model's parameters."""
    if not grads:
        return
    for name, p in model.named_parameters():
        if name in grads:
            p.grad = grads[name].to(device=p.device, dtype=p.dtype).clone()


@dataclass
class TrainState:
    """Everything a checkpoint holds: the training objects and the loop's counters, with its own save and restore.

    model may be DDP-wrapped (it is unwrapped on save); ema is None on DDP ranks other than 0. epoch is the last
    finished epoch (-1 before the first); last_opt_step is the batch index ni of the last optimizer step. options
    and hyp are what the checkpoint records ('opt', 'hyp'); nonfinite (non-finite losses in a row) is not saved.
    """

    model: nn.Module
    ema: ModelEMA | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    scaler: torch.amp.GradScaler
    options: Dict[str, Any]
    hyp: Dict[str, Any]
    amp: bool = False
    epoch: int = -1
    best_fitness: float = 0.0
    best_epoch: int = 0
    last_opt_step: int = -1
    accumulate: int = 1
    opt_steps: int = 0
    nonfinite: int = 0

    def to_checkpoint(self, generator: torch.Generator | None = None) -> Dict[str, Any]:
        """The checkpoint dict of ARCHITECTURE.md, fp32, plus 'train_state' (what exact resume needs)."""
        return {
            "model": model_to_dict(self.model, half=False),
            "ema": model_to_dict(self.ema.ema, half=False),
            "optimizer": self.optimizer.state_dict(),
            "epoch": self.epoch,
            "best_fitness": float(self.best_fitness),
            "opt": dict(self.options),
            "hyp": dict(self.hyp),
            "scaler": self.scaler.state_dict() if self.amp else None,
            "rng": get_rng_state(generator),
            "date": datetime.now().isoformat(),
            "train_state": {
                "ema_updates": self.ema.updates,
                "scheduler": self.scheduler.state_dict(),
                "last_opt_step": self.last_opt_step,
                "accumulate": self.accumulate,
                "best_epoch": self.best_epoch,
                "opt_steps": self.opt_steps,
                "grads": pending_grads(de_parallel(self.model)),
            },
        }

    def save(self, *paths: Path) -> None:
        """Write the checkpoint once to each path (atomically)."""
        ckpt = self.to_checkpoint()
        for path in paths:
            save_checkpoint(ckpt, path)

    def restore(self, ckpt: Dict[str, Any], epochs: int) -> int:
        """Load optimizer, scheduler, EMA, scaler, counters and RNG states from a resume checkpoint; -> start epoch.

        The model's own weights are loaded when it is built (they decide its structure); this restores the rest.
        """
        state = ckpt.get("train_state") or {}
        if ckpt.get("optimizer") is None or not state:
            raise UserError("--resume: the checkpoint has no training state (finished or stripped); nothing to resume")
        start_epoch = int(ckpt["epoch"]) + 1
        if start_epoch >= epochs:
            raise UserError(f"--resume: training to {epochs} epochs is finished, nothing to resume")
        self.optimizer.load_state_dict(ckpt["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.ema.load_state_dict(fp32_state(ckpt["ema"]["state_dict"]))
            self.ema.updates = int(state["ema_updates"])
        if ckpt.get("scaler") and self.amp:
            self.scaler.load_state_dict(ckpt["scaler"])
        self.epoch, self.best_fitness = start_epoch - 1, float(ckpt["best_fitness"])
        self.best_epoch, self.opt_steps = int(state.get("best_epoch", 0)), int(state.get("opt_steps", 0))
        self.last_opt_step, self.accumulate = int(state["last_opt_step"]), int(state["accumulate"])
        restore_grads(de_parallel(self.model), state.get("grads"))
        set_rng_state(ckpt.get("rng") or {})
        return start_epoch


def fp32_state(state: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """A state_dict with its floating tensors as fp32 (checkpoints written by strip_checkpoint are fp16)."""
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def strip_checkpoint(path: Path) -> Path:
    """Rewrite a checkpoint as its EMA in fp16 without optimizer or resume state (as YOLOv5's strip_optimizer)."""
    ckpt = load_checkpoint(path)
    md = ckpt.get("ema") or ckpt["model"]
    md = {**md, "state_dict": {k: v.half() if v.is_floating_point() and not k.endswith("anchors") else v
                               for k, v in md["state_dict"].items()}}  # fmt: skip
    ckpt.update(model=md, ema=md, optimizer=None, scaler=None, rng={}, epoch=-1)
    ckpt.pop("train_state", None)
    return save_checkpoint(ckpt, path)
