"""Optimizer with YOLOv5's three parameter groups, per-epoch LR schedules, warmup and nominal-batch helpers."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, List

import numpy as np
import torch
import torch.nn as nn

from utils.errors import UserError

LOGGER = logging.getLogger(__name__)

NOMINAL_BATCH = 64  # gradients are accumulated to about this many images per optimizer step
GROUP_NAMES = ("bias", "weight", "norm")  # param_groups order: lr0/lr1/lr2 in results.csv


def _is_norm(module: nn.Module) -> bool:
    return "Norm" in type(module).__name__ and isinstance(module, nn.Module)


def split_parameters(model: nn.Module) -> Dict[str, List[nn.Parameter]]:
    """Group parameters: 'bias' (all biases), 'norm' (normalisation-layer weights), 'weight' (everything else)."""
    groups: Dict[str, List[nn.Parameter]] = {name: [] for name in GROUP_NAMES}
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if pname == "bias":
                groups["bias"].append(p)
            elif pname == "weight" and _is_norm(module):
                groups["norm"].append(p)
            else:
                groups["weight"].append(p)
    return groups


def build_optimizer(
    model: nn.Module, name: str = "SGD", lr: float = 0.01, momentum: float = 0.937, decay: float = 5e-4
) -> torch.optim.Optimizer:
    """SGD (Nesterov) / Adam / AdamW (beta1 = momentum) with groups [bias, weight (decayed), norm weight]."""
    g = split_parameters(model)
    if name == "SGD":
        opt = torch.optim.SGD(g["bias"], lr=lr, momentum=momentum, nesterov=True)
    elif name == "Adam":
        opt = torch.optim.Adam(g["bias"], lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        opt = torch.optim.AdamW(g["bias"], lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        raise UserError(f"--optimizer {name} is not supported; choose SGD, Adam or AdamW")
    opt.param_groups[0]["weight_decay"] = 0.0
    opt.add_param_group({"params": g["weight"], "weight_decay": decay})
    opt.add_param_group({"params": g["norm"], "weight_decay": 0.0})
    for group, gname in zip(opt.param_groups, GROUP_NAMES):
        group["name"] = gname
    LOGGER.info(
        f"optimizer: {name}(lr={lr}) with parameter groups {len(g['norm'])} weight(decay=0.0), "
        f"{len(g['weight'])} weight(decay={decay}), {len(g['bias'])} bias"
    )
    return opt


@dataclass
class LRLambda:
    """LR multiplier per epoch: linear (1 - x/E)(1 - lrf) + lrf, or a cosine one-cycle from 1 down to lrf."""

    epochs: int
    lrf: float
    cosine: bool = False

    def __call__(self, epoch: float) -> float:
        if self.cosine:
            return ((1 - math.cos(epoch * math.pi / self.epochs)) / 2) * (self.lrf - 1) + 1
        return (1 - epoch / self.epochs) * (1.0 - self.lrf) + self.lrf


def build_scheduler(
    optimizer: torch.optim.Optimizer, epochs: int, lrf: float, cosine: bool = False
) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR stepping once per epoch; its lr_lambdas[0] is the LRLambda (used again by warmup)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=LRLambda(epochs, lrf, cosine))


def accumulate_steps(batch_size: int) -> int:
    """Batches to accumulate per optimizer step to reach the nominal batch of 64."""
    return max(round(NOMINAL_BATCH / batch_size), 1)


def scaled_weight_decay(weight_decay: float, batch_size: int) -> float:
    """weight_decay * bs * accumulate / 64, so the decay per image stays that of the nominal batch."""
    return weight_decay * batch_size * accumulate_steps(batch_size) / NOMINAL_BATCH


def warmup_iterations(warmup_epochs: float, batches_per_epoch: int) -> int:
    """Number of warmup iterations: max(round(warmup_epochs * nb), 100) (0 when warmup_epochs is 0)."""
    return max(round(warmup_epochs * batches_per_epoch), 100) if warmup_epochs > 0 else 0


def apply_warmup(
    optimizer: torch.optim.Optimizer, ni: int, nw: int, lr_factor: float, hyp: Dict[str, float], batch_size: int
) -> int:
    """Set lr/momentum for iteration ni of nw warmup iterations; returns the accumulate count to use now.

    lr: bias group from warmup_bias_lr, others from 0, linearly to initial_lr * lr_factor; SGD momentum from
    warmup_momentum to momentum; accumulate from 1 to the nominal-batch count.
    """
    xi = [0, nw]
    for group in optimizer.param_groups:
        start = hyp["warmup_bias_lr"] if group.get("name") == "bias" else 0.0
        group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_factor]))
        if "momentum" in group:  # SGD only; Adam keeps its betas
            group["momentum"] = float(np.interp(ni, xi, [hyp["warmup_momentum"], hyp["momentum"]]))
    return max(1, int(np.interp(ni, xi, [1, NOMINAL_BATCH / batch_size]).round()))


def clip_and_step(
    optimizer: torch.optim.Optimizer, model: nn.Module, scaler: torch.amp.GradScaler, max_norm: float = 10.0
) -> bool:
    """Unscale, clip the gradient norm at max_norm, step through the scaler, zero the grads. False if skipped.

    Without AMP a non-finite gradient norm skips the step (the scaler does the same by itself with AMP).
    """
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    finite = bool(torch.isfinite(norm))
    if finite or scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad()
    return finite
