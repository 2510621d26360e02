"""One training epoch as a plain function: forward, loss, backward, accumulate, step, EMA. It never sees argparse."""

from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.errors import UserError
from utils.task import Criterion
from utils.train.ema import ModelEMA
from utils.train.optim import apply_warmup, clip_and_step
from utils.train.state import TrainState

LOGGER = logging.getLogger(__name__)
MAX_NONFINITE = 10  # consecutive non-finite losses before training stops


class TrainingDiverged(UserError):
    """The loss stayed non-finite for MAX_NONFINITE batches in a row."""

    exit_code = 1


@dataclass(frozen=True)
class EpochSettings:
    """What one epoch needs besides the objects it trains with; built by the run loop from its TrainConfig.

    nw: warmup iterations (batches); lr_factor: the LR schedule's factor at this epoch (warmup ramps to it);
    total_batch: the batch size over all processes (warmup ramps accumulation up to the nominal batch 64 of it);
    loss_scale: DDP world size x 4 for --quad (gradients are averaged over processes and the quad batch is 1/4);
    multi_scale: (imgsz, stride) to rescale each batch randomly, or None; channels_last: the model is in
    channels-last order, so the batches are made so too.
    """

    epoch: int
    nw: int
    lr_factor: float
    hyp: Mapping[str, Any]
    total_batch: int
    device: torch.device
    amp: bool = False
    loss_scale: float = 1.0
    multi_scale: tuple | None = None
    channels_last: bool = False


def random_rescale(imgs: torch.Tensor, imgsz: int, gs: int) -> torch.Tensor:
    """--multi-scale: resize the batch (B, 3, H, W) so its long side is a random stride multiple in [0.5, 1.5) imgsz,
    at least 2 strides (below that the deepest map is 1x1, or empty, where official would fail)."""
    size = max(random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs, 2 * gs)
    factor = size / max(imgs.shape[2:])
    if factor == 1:
        return imgs
    shape = [math.ceil(x * factor / gs) * gs for x in imgs.shape[2:]]
    return F.interpolate(imgs, size=shape, mode="bilinear", align_corners=False)


def train_one_epoch(
    model: nn.Module,
    criterion: Criterion,
    loader,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    ema: ModelEMA | None,
    state: TrainState,
    s: EpochSettings,
    on_batch: Callable[[int, torch.Tensor, Sequence, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """One pass over loader with warmup, accumulation, AMP and EMA -> the mean loss items (k,), still on the device.

    state: the counters carried across epochs (accumulate, last_opt_step, opt_steps, nonfinite). on_batch(i, imgs,
    batch, mean losses) runs after each batch (progress bar, plots); reading the losses there waits for the device.
    """
    model.train()
    nb = len(loader)
    mloss = None
    seen = torch.zeros((), device=s.device)  # batches with a finite loss
    bad = torch.zeros((), device=s.device)  # non-finite losses since the last optimizer step
    for i, batch in enumerate(loader):
        ni = i + nb * s.epoch  # batches seen since the start of training
        imgs = batch[0].to(s.device, non_blocking=True).float() / 255
        if ni <= s.nw:  # accumulation ramps up to the nominal batch of the TOTAL batch size, as YOLOv5
            state.accumulate = apply_warmup(optimizer, ni, s.nw, s.lr_factor, s.hyp, s.total_batch)
        if s.multi_scale:
            imgs = random_rescale(imgs, *s.multi_scale)
        if s.channels_last:
            imgs = imgs.contiguous(memory_format=torch.channels_last)
        with torch.autocast(s.device.type, enabled=s.amp):
            loss, items = criterion(model(imgs), batch)
        loss = loss * s.loss_scale
        finite = torch.isfinite(loss).all()
        bad += ~finite
        scaler.scale(loss).backward()
        mloss = torch.zeros_like(items) if mloss is None else mloss
        mloss = torch.where(finite, (mloss * seen + items) / (seen + 1), mloss)
        seen += finite
        if ni - state.last_opt_step >= state.accumulate:
            optimizer_step(model, optimizer, scaler, ema, state, bad, ni)
        if on_batch is not None:
            on_batch(i, imgs, batch, mloss)
    return mloss


def optimizer_step(model, optimizer, scaler, ema: ModelEMA | None, state: TrainState, bad: torch.Tensor, ni: int):
    """Clip and step (skipped when a loss or the gradient norm was non-finite), update the EMA and the counters.

    TrainingDiverged after MAX_NONFINITE non-finite losses in a row.
    """
    stepped, n_bad = clip_and_step(optimizer, model, scaler, bad)
    bad.zero_()
    state.last_opt_step = ni
    if stepped:
        state.opt_steps += 1
        if ema is not None:
            ema.update(model)
    if not n_bad:
        state.nonfinite = 0
        return
    state.nonfinite += n_bad
    LOGGER.warning(f"WARNING: non-finite loss in {n_bad} batch(es), skipping this optimizer step "
                   f"({state.nonfinite} in a row)")  # fmt: skip
    if state.nonfinite >= MAX_NONFINITE:
        raise TrainingDiverged(
            f"loss was non-finite for {MAX_NONFINITE} batches in a row: training diverged (try a lower --hyp lr0, "
            "check labels)"
        )
