"""Training state for exact resume: RNG states as plain lists/tensors, and the resume bookkeeping in a checkpoint."""

from __future__ import annotations

import logging
import random
from argparse import Namespace
from datetime import datetime
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
import torch.nn as nn

from utils.checkpoint import load_checkpoint, model_to_dict, save_checkpoint
from utils.errors import UserError
from utils.torch_utils import de_parallel

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


def build_checkpoint(t, epoch: int) -> Dict[str, Any]:
    """The checkpoint dict of ARCHITECTURE.md for Trainer t, fp32, plus 'train_state' (what exact resume needs)."""
    return {
        "model": model_to_dict(t.model, half=False),
        "ema": model_to_dict(t.ema.ema, half=False),
        "optimizer": t.optimizer.state_dict(),
        "epoch": epoch,
        "best_fitness": float(t.best_fitness),
        "opt": vars(t.opt),
        "hyp": t.hyp,
        "scaler": t.scaler.state_dict() if t.amp else None,
        "rng": get_rng_state(t.train_loader.generator),
        "date": datetime.now().isoformat(),
        "train_state": {
            "ema_updates": t.ema.updates,
            "scheduler": t.scheduler.state_dict(),
            "last_opt_step": t.last_opt_step,
            "accumulate": t.accumulate,
            "best_epoch": t.best_epoch,
            "grads": pending_grads(de_parallel(t.model)),
        },
    }


def restore_training(t, ckpt: Dict[str, Any]) -> int:
    """Load optimizer, scheduler, EMA, scaler, counters and RNG states from a resume checkpoint; returns start epoch."""
    state = ckpt.get("train_state") or {}
    if ckpt.get("optimizer") is None or not state:
        raise UserError("--resume: this checkpoint has no training state (finished or stripped run); nothing to resume")
    start_epoch = int(ckpt["epoch"]) + 1
    if start_epoch >= t.epochs:
        raise UserError(f"--resume: training to {t.epochs} epochs is finished, nothing to resume")
    t.optimizer.load_state_dict(ckpt["optimizer"])
    t.scheduler.load_state_dict(state["scheduler"])
    ema_state = ckpt["ema"]["state_dict"]
    t.ema.ema.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ema_state.items()})
    t.ema.updates = int(state["ema_updates"])
    if ckpt.get("scaler") and t.amp:
        t.scaler.load_state_dict(ckpt["scaler"])
    t.best_fitness, t.best_epoch = float(ckpt["best_fitness"]), int(state.get("best_epoch", 0))
    t.last_opt_step, t.accumulate = int(state["last_opt_step"]), int(state["accumulate"])
    restore_grads(de_parallel(t.model), state.get("grads"))
    set_rng_state(ckpt.get("rng") or {}, t.train_loader.generator)
    LOGGER.info(f"Resuming training from {t.opt.resume_path} from epoch {start_epoch} to {t.epochs} total epochs")
    return start_epoch


def load_resume(opt: Namespace) -> Dict[str, Any]:
    """Read the --resume checkpoint and replace opt's fields with the ones of the interrupted run."""
    from utils.train.setup import find_last_checkpoint

    path = Path(opt.resume) if isinstance(opt.resume, str) and opt.resume else find_last_checkpoint(opt.project)
    ckpt = load_checkpoint(path)
    saved = dict(ckpt.get("opt") or {})
    if not saved:
        raise UserError(f"--resume {path}: the checkpoint has no saved options")
    device = opt.device  # the only flag a resume may change (another machine); the rest is the run's own
    for k, v in saved.items():
        setattr(opt, k, v)
    if device:
        opt.device = device
    opt.resume, opt.resume_path, opt.exist_ok = True, str(path), True
    opt.save_dir = str(path.resolve().parent.parent)
    hyp_file = Path(opt.save_dir) / "hyp.yaml"  # the run's own (unscaled) hyperparameters
    if hyp_file.is_file():
        opt.hyp = str(hyp_file)
    return ckpt


def strip_checkpoint(path: Path) -> Path:
    """Rewrite a checkpoint as its EMA in fp16 without optimizer or resume state (as YOLOv5's strip_optimizer)."""
    ckpt = load_checkpoint(path)
    md = ckpt.get("ema") or ckpt["model"]
    md = {**md, "state_dict": {k: v.half() if v.is_floating_point() and not k.endswith("anchors") else v
                               for k, v in md["state_dict"].items()}}  # fmt: skip
    ckpt.update(model=md, ema=md, optimizer=None, scaler=None, rng={}, epoch=-1)
    ckpt.pop("train_state", None)
    return save_checkpoint(ckpt, path)
