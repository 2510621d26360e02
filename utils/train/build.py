"""A training run's objects, built once from the frozen config and the task: device, model, state, loaders, loss."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn as nn
import yaml

from utils.checkpoint import load_checkpoint
from utils.errors import UserError
from utils.img_size import check_img_size
from utils.paths import ensure_dir
from utils.task import Criterion, Task
from utils.torch_utils import init_seeds
from utils.train.config import TrainConfig
from utils.train.ema import ModelEMA
from utils.train.optim import accumulate_steps, build_optimizer, build_scheduler, scaled_weight_decay, warmup_iterations
from utils.train.results_log import ResultsLogger, results_keys
from utils.train.setup import sync_bn, train_device
from utils.train.state import TrainState

LOGGER = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything one training run holds. Built by setup_run; afterwards only state (the checkpointed counters and
    objects) and t0 change. model may be DDP-wrapped; val_loader and results are None on DDP ranks other than 0."""

    config: TrainConfig
    task: Task
    device: torch.device
    model: nn.Module
    state: TrainState
    criterion: Criterion
    train_loader: Any
    dataset: Any
    val_loader: Any
    results: ResultsLogger | None
    imgsz: int  # --imgsz rounded to the model's stride
    gs: int  # grid size: the model's largest stride, at least 32
    hyp: Mapping[str, Any]  # config.hyp as the task rescaled it for this model
    amp: bool
    nw: int  # warmup iterations
    lf: Callable[[float], float]  # the LR schedule's factor per epoch
    start_epoch: int = 0
    nhwc: bool = False  # model and batches in channels-last order (CPU: oneDNN's faster convolutions)
    t0: float = 0.0
    last: Path = field(init=False)
    best: Path = field(init=False)

    def __post_init__(self):
        wdir = Path(self.config.save_dir) / "weights"
        self.last, self.best = wdir / "last.pt", wdir / "best.pt"

    @property
    def nb(self) -> int:
        return len(self.train_loader)


def _save_yaml(path: Path, data: Mapping[str, Any]) -> None:
    clean = {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
    with open(path, "w") as f:
        yaml.safe_dump(clean, f, sort_keys=False)


def _run_folder(config: TrainConfig, task: Task) -> ResultsLogger | None:
    """Rank 0: weights/, hyp.yaml (as given), opt.yaml and the results.csv logger."""
    if not config.main:
        return None
    ensure_dir(Path(config.save_dir) / "weights")
    _save_yaml(Path(config.save_dir) / "hyp.yaml", dict(config.hyp))
    _save_yaml(Path(config.save_dir) / "opt.yaml", config.options())
    return ResultsLogger(Path(config.save_dir), results_keys(task.loss_names, task.metric_names))


def _state(model: nn.Module, config: TrainConfig, hyp: Mapping[str, Any], amp: bool) -> TrainState:
    """Optimizer, scheduler, EMA and scaler; accumulation and weight decay from the total batch, as YOLOv5."""
    decay = scaled_weight_decay(hyp["weight_decay"], config.batch_size)
    optimizer = build_optimizer(model, config.optimizer, hyp["lr0"], hyp["momentum"], decay, hyp.get("attn_lr"))
    return TrainState(
        model=model,
        ema=ModelEMA(model) if config.main else None,
        optimizer=optimizer,
        scheduler=build_scheduler(optimizer, config.epochs, hyp["lrf"], cosine=config.cos_lr),
        scaler=torch.amp.GradScaler("cuda", enabled=amp),
        options=config.options(),
        hyp=dict(hyp),
        amp=amp,
        accumulate=accumulate_steps(config.batch_size),
    )


def _check_single_image_batches(batch_size: int, imgsz, gs: int) -> None:
    """Below 2 strides the deepest map can be 1x1, and BatchNorm cannot train on one value per channel: refuse a
    batch of one image there in one line (a last batch of one is left out by the loaders instead)."""
    side = min([imgsz] if isinstance(imgsz, int) else imgsz)
    if batch_size < 2 and side < 2 * gs:
        raise UserError(
            f"--imgsz {side} with batches of one image: the deepest feature map is 1x1 and BatchNorm cannot train on "
            f"one value per channel; use --batch-size 2 or more (and at least 2 training images) or --imgsz {2 * gs}"
        )


def setup_run(config: TrainConfig, task: Task) -> Run:
    """Run folder, seeds, model, loaders, optimizer state, AutoAnchor (new runs), DDP wrap, resume state."""
    from utils.data.loader import InfiniteDataLoader

    c = config
    resume = load_checkpoint(c.resume_path) if c.resume_path else None
    start_epoch = int(resume["epoch"]) + 1 if resume is not None else 0  # the loaders' first pass is this epoch's
    device = train_device(c.device, c.local_rank, c.world_size, c.batch_size)
    results = _run_folder(c, task)
    init_seeds(c.seed + 1 + max(c.rank, 0), deterministic=True)
    model = task.build_model(c, resume).to(device)
    nhwc = task.channels_last and device.type == "cpu"  # before the EMA copy and the optimizer: they share it
    if nhwc:
        model.to(memory_format=torch.channels_last)
    gs = max(int(model.stride.max()), 32)
    imgsz = check_img_size(c.imgsz, gs, floor=gs)
    hyp = task.hyp_for_model(c.hyp, model, c.nc, imgsz)
    model.hyp = dict(hyp)
    amp = c.amp and device.type == "cuda"
    train_loader, dataset = task.train_loader(c, imgsz, gs, start_epoch)
    _check_single_image_batches(train_loader.batch_size, imgsz, gs)
    val_loader = task.val_loader(c, imgsz, gs) if c.main else None
    for loader in (train_loader, val_loader):  # workers load the first batches while the optimizer is built
        if isinstance(loader, InfiniteDataLoader):
            loader.start()
    state = _state(model, c, hyp, amp)
    if c.main and resume is None:
        task.check_data(dataset, model, c, imgsz)
    if c.rank != -1:
        from torch.nn.parallel import DistributedDataParallel as DDP

        model = sync_bn(model, c.sync_bn, device)
        ids = [device.index] if device.type == "cuda" else None
        model = DDP(model, device_ids=ids, output_device=ids[0] if ids else None)
        state.model = model
    run = Run(
        c, task, device, model, state, task.criterion(model, hyp), train_loader, dataset, val_loader, results,
        imgsz, gs, hyp, amp, warmup_iterations(hyp["warmup_epochs"], len(train_loader)),
        state.scheduler.lr_lambdas[0], start_epoch, nhwc,
    )  # fmt: skip
    if resume is not None:
        state.restore(resume, c.epochs)
        LOGGER.info(f"Resuming training from {c.resume_path} from epoch {start_epoch} to {c.epochs}")
        if results is not None and "results" in (resume.get("train_state") or {}):
            results.write(state.results)  # the csv as the checkpoint has it: no row it lacks, none twice
        elif results is not None:  # a checkpoint without its rows keeps the csv's rows up to its epoch
            state.results = results.truncate(state.epoch)
    return run
