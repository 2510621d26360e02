"""Optimizer with YOLOv5's three parameter groups, per-epoch LR schedules, warmup and nominal-batch helpers."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Dict, List, Tuple

import numpy as np
import torch
import torch.nn as nn

from utils.errors import UserError

LOGGER = logging.getLogger(__name__)

NOMINAL_BATCH = 64  # gradients are accumulated to about this many images per optimizer step
GROUP_NAMES = ("bias", "weight", "norm")  # param_groups order: lr0/lr1/lr2 in results.csv
ATTN_GROUPS = ("attn", "attn_no_decay")  # with hyp attn_lr: the FLA family's parameters, after the three above
ATTN_NO_DECAY = ("scale", "positional_encoding")  # with biases and LayerNorm weights: never decayed


def _is_norm(module: nn.Module) -> bool:
    return "Norm" in type(module).__name__ and isinstance(module, nn.Module)


def _attention_parameters(model: nn.Module) -> set:
    """ids of the parameters inside FLA-family modules (FLA, FLABlock, FocusedLinearAttention)."""
    from models.fla import FLA, FLABlock, FocusedLinearAttention

    kinds = (FLA, FLABlock, FocusedLinearAttention)
    return {id(p) for m in model.modules() if isinstance(m, kinds) for p in m.parameters()}


def split_parameters(model: nn.Module, attention: bool = False) -> Dict[str, List[nn.Parameter]]:
    """Group parameters: 'bias' (all biases), 'norm' (normalisation-layer weights), 'weight' (everything else).

    attention=True takes the FLA family's parameters out of those three: 'attn' (Linear / DWC weights, decayed)
    and 'attn_no_decay' (scale, positional_encoding, biases, LayerNorm weights).
    """
    groups: Dict[str, List[nn.Parameter]] = {name: [] for name in GROUP_NAMES + (ATTN_GROUPS if attention else ())}
    attn = _attention_parameters(model) if attention else set()
    for module in model.modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in attn:
                decayed = pname not in ATTN_NO_DECAY and pname != "bias" and not _is_norm(module)
                groups["attn" if decayed else "attn_no_decay"].append(p)
            elif pname == "bias":
                groups["bias"].append(p)
            elif pname == "weight" and _is_norm(module):
                groups["norm"].append(p)
            else:
                groups["weight"].append(p)
    return groups


def build_optimizer(
    model: nn.Module,
    name: str = "SGD",
    lr: float = 0.01,
    momentum: float = 0.937,
    decay: float = 5e-4,
    attn_lr: float | None = None,
) -> torch.optim.Optimizer:
    """SGD (Nesterov) / Adam / AdamW (beta1 = momentum) / RMSProp (classify/train.py's official choice) with groups
    [bias, weight (decayed), norm weight].

    attn_lr (hyp key `attn_lr`, a multiplier of lr; None = YOLOv5's three groups, where the attention parameters
    fall by name) adds the non-empty groups 'attn' (decayed) and 'attn_no_decay' at lr * attn_lr for the FLA
    family's parameters, so new attention layers can learn at their own rate while scale and the positional
    encoding are never decayed. They warm up from 0 like the weights.
    """
    g = split_parameters(model, attention=attn_lr is not None)
    if name == "SGD":
        opt = torch.optim.SGD(g["bias"], lr=lr, momentum=momentum, nesterov=True)
    elif name == "Adam":
        opt = torch.optim.Adam(g["bias"], lr=lr, betas=(momentum, 0.999))
    elif name == "AdamW":
        opt = torch.optim.AdamW(g["bias"], lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    elif name == "RMSProp":
        opt = torch.optim.RMSprop(g["bias"], lr=lr, momentum=momentum)
    else:
        raise UserError(f"--optimizer {name} is not supported; choose SGD, Adam, AdamW or RMSProp")
    opt.param_groups[0]["weight_decay"] = 0.0
    opt.add_param_group({"params": g["weight"], "weight_decay": decay})
    opt.add_param_group({"params": g["norm"], "weight_decay": 0.0})
    for group, gname in zip(opt.param_groups, GROUP_NAMES):
        group["name"] = gname
    for gname, wd in zip(ATTN_GROUPS, (decay, 0.0)):
        if g.get(gname):
            opt.add_param_group({"params": g[gname], "weight_decay": wd, "lr": lr * attn_lr, "name": gname})
    attn = f", attention {len(g['attn'])} + {len(g['attn_no_decay'])} (lr x {attn_lr})" if attn_lr is not None else ""
    LOGGER.info(
        f"optimizer: {name}(lr={lr}) with parameter groups {len(g['norm'])} weight(decay=0.0), "
        f"{len(g['weight'])} weight(decay={decay}), {len(g['bias'])} bias{attn}"
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
    optimizer: torch.optim.Optimizer,
    model: nn.Module,
    scaler: torch.amp.GradScaler,
    bad_losses: torch.Tensor | None = None,
    max_norm: float = 10.0,
) -> Tuple[bool, int]:
    """Unscale, clip the gradient norm at max_norm, step through the scaler, zero the grads. -> (stepped, bad).

    bad_losses: a device scalar counting the non-finite losses accumulated since the last step; it is read with the
    gradient norm in one host transfer, the only one per optimizer step. Any non-finite loss or gradient norm skips
    the step (with AMP the scaler also sees the non-finite gradients, skips by itself and lowers its scale).
    """
    scaler.unscale_(optimizer)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm=max_norm)
    bad_t = bad_losses if bad_losses is not None else torch.zeros((), device=norm.device)
    finite, bad = torch.stack((torch.isfinite(norm).float(), bad_t.float().to(norm.device))).tolist()
    stepped = bool(finite) and not bad
    if stepped or scaler.is_enabled():
        scaler.step(optimizer)
        scaler.update()
    optimizer.zero_grad()
    return stepped, int(bad)
