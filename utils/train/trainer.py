"""Training engine: set-up, one epoch, validation on the EMA, checkpoints, resume, early stop, DDP."""

from __future__ import annotations

import logging
import math
import random
import time
from argparse import Namespace
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from utils.checkpoint import save_checkpoint
from utils.errors import UserError
from utils.img_size import check_img_size
from utils.paths import ensure_dir, increment_path
from utils.torch_utils import de_parallel, init_seeds, select_device
from utils.train.data import resample_images
from utils.train.ema import ModelEMA
from utils.train.loss import ComputeLoss
from utils.train.optim import (
    accumulate_steps,
    apply_warmup,
    build_optimizer,
    build_scheduler,
    clip_and_step,
    scaled_weight_decay,
    warmup_iterations,
)
from utils.train.results_log import ResultsLogger
from utils.train.setup import (
    broadcast_flag,
    build_model,
    freeze_layers,
    get_dist_info,
    load_hyp,
    rank_zero_first,
    scale_loss_gains,
    sync_bn,
)
from utils.train.state import build_checkpoint, load_resume, restore_training, strip_checkpoint

LOGGER = logging.getLogger(__name__)
MAX_NONFINITE = 10  # consecutive non-finite losses before training stops
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"
DDP_TIMEOUT = timedelta(hours=3)  # rank 0 may scan and cache a large dataset while the others wait


class TrainingDiverged(UserError):
    """The loss stayed non-finite for MAX_NONFINITE batches in a row."""

    exit_code = 1


def train(opt: Namespace, hyp: Dict[str, Any] | None = None) -> Path:
    """Run a whole training from parsed train.py options (hyp overrides --hyp); returns the run folder."""
    trainer = Trainer(opt, hyp)
    try:
        trainer.setup()
        trainer.run()
    finally:
        trainer.close()
    return trainer.save_dir


def train_one_epoch(t: Trainer, epoch: int) -> torch.Tensor:
    """One pass over t.train_loader with warmup, accumulation, AMP and EMA; returns mean (box, obj, cls) losses."""
    t.model.train()
    if t.opt.image_weights and t.rank in (-1, 0):
        resample_images(t)
    if t.rank != -1 and hasattr(t.train_loader.sampler, "set_epoch"):
        t.train_loader.sampler.set_epoch(epoch)
    mloss = torch.zeros(3, device=t.device)
    bar = tqdm(enumerate(t.train_loader), total=t.nb, bar_format=BAR_FORMAT, disable=t.rank not in (-1, 0))
    for i, (imgs, targets, paths, _) in bar:
        ni = i + t.nb * epoch  # batches seen since the start of training
        imgs = imgs.to(t.device, non_blocking=True).float() / 255
        if ni <= t.nw:
            t.accumulate = apply_warmup(t.optimizer, ni, t.nw, t.lf(epoch), t.hyp, t.batch_size)
        if t.opt.multi_scale:
            imgs = random_rescale(imgs, t.imgsz, t.gs)
        with torch.autocast(t.device.type, enabled=t.amp):
            loss, items = t.compute_loss(t.model(imgs), targets.to(t.device))
        loss = loss * max(t.world_size, 1) * (4.0 if t.opt.quad else 1.0)
        if not t.check_finite(loss):
            continue
        t.scaler.scale(loss).backward()
        if ni - t.last_opt_step >= t.accumulate:
            if clip_and_step(t.optimizer, t.model, t.scaler) and t.ema is not None:
                t.ema.update(t.model)
            t.last_opt_step = ni
        mloss = (mloss * i + items) / (i + 1)
        if t.rank in (-1, 0):
            bar.set_description(progress_line(t, epoch, mloss, targets, imgs))
            bar.set_postfix_str(f"run ETA {t.eta(ni)}", refresh=False)
            if t.plots and ni < 3:
                t.plot_batch(imgs, targets, paths, ni)
    return mloss


def progress_line(t: Trainer, epoch: int, mloss: torch.Tensor, targets: torch.Tensor, imgs: torch.Tensor) -> str:
    """'      3/99      1.2G    0.0712    0.0423  ...' aligned under header_line()."""
    mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
    values = (f"{epoch}/{t.epochs - 1}", mem, *mloss.tolist(), targets.shape[0], imgs.shape[-1])
    return ("%11s" * 2 + "%11.4g" * 5) % values


def header_line() -> str:
    return ("%11s" * 7) % ("Epoch", "GPU_mem", "box_loss", "obj_loss", "cls_loss", "Instances", "Size")


def random_rescale(imgs: torch.Tensor, imgsz: int, gs: int) -> torch.Tensor:
    """--multi-scale: resize the batch (B, 3, H, W) so its long side is a random stride multiple in [0.5, 1.5) imgsz."""
    size = random.randrange(int(imgsz * 0.5), int(imgsz * 1.5) + gs) // gs * gs
    factor = size / max(imgs.shape[2:])
    if factor == 1:
        return imgs
    shape = [math.ceil(x * factor / gs) * gs for x in imgs.shape[2:]]
    return F.interpolate(imgs, size=shape, mode="bilinear", align_corners=False)


class Trainer:
    """Holds everything one training run needs; setup() builds it, run() trains, close() releases it."""

    def __init__(self, opt: Namespace, hyp: Dict[str, Any] | None = None):
        self.opt, self.hyp_override = opt, hyp
        self.local_rank, self.rank, self.world_size = get_dist_info()
        self.results: ResultsLogger | None = None
        self.nonfinite, self.best_fitness, self.best_epoch = 0, 0.0, 0
        self.start_epoch, self.last_opt_step, self.epoch_done = 0, -1, -1
        self.save_dir = Path(".")

    # ---- set-up ----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Run folder, hyp, data, model, optimizer, scheduler, EMA, loaders, AutoAnchor, resume state."""
        opt = self.opt
        resume_ckpt = load_resume(opt) if opt.resume else None
        if opt.epochs <= 0 or opt.batch_size <= 0:
            raise UserError(f"--epochs and --batch-size must be positive (got {opt.epochs}, {opt.batch_size})")
        self.device = self._init_device()
        self.hyp = load_hyp(self.hyp_override or opt.hyp)
        if opt.label_smoothing:
            self.hyp["label_smoothing"] = opt.label_smoothing
        self._init_dirs()
        init_seeds(opt.seed + 1 + max(self.rank, 0), deterministic=True)
        from utils.data.config import check_dataset

        with rank_zero_first(self.local_rank):
            self.data = check_dataset(opt.data or None)
        self.nc = 1 if opt.single_cls else int(self.data["nc"])
        self.names = ["item"] if opt.single_cls and len(self.data["names"]) != 1 else list(self.data["names"])
        self._init_model(resume_ckpt)
        self._init_optimizer()
        self._init_loaders()
        self.compute_loss = ComputeLoss(self.model, self.hyp)
        if resume_ckpt is not None:
            self.start_epoch = restore_training(self, resume_ckpt)
            self.epoch_done = self.start_epoch - 1
            if self.results is not None:
                self.results.truncate(self.epoch_done)

    def _init_device(self) -> torch.device:
        opt = self.opt
        if self.local_rank == -1:
            self.batch_size = opt.batch_size
            return select_device(opt.device, opt.batch_size)
        if opt.batch_size % self.world_size:
            raise UserError(f"--batch-size {opt.batch_size} must be a multiple of the {self.world_size} DDP processes")
        self.batch_size = opt.batch_size // self.world_size
        use_cuda = torch.cuda.is_available() and str(opt.device).lower() != "cpu"
        if use_cuda:
            torch.cuda.set_device(self.local_rank)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if use_cuda else "gloo", timeout=DDP_TIMEOUT)
        return torch.device("cuda", self.local_rank) if use_cuda else torch.device("cpu")

    def _init_dirs(self) -> None:
        opt = self.opt
        if getattr(opt, "save_dir", None) and opt.resume:
            self.save_dir = Path(opt.save_dir)
        else:
            self.save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
        opt.save_dir = str(self.save_dir)
        self.wdir = self.save_dir / "weights"
        self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"
        self.plots = not opt.evolve and not opt.noplots and self.rank in (-1, 0)
        if self.rank in (-1, 0):
            ensure_dir(self.wdir)
            _save_yaml(self.save_dir / "hyp.yaml", self.hyp)
            _save_yaml(self.save_dir / "opt.yaml", vars(opt))
            self.results = ResultsLogger(self.save_dir)

    def _init_model(self, resume_ckpt: dict | None) -> None:
        opt = self.opt
        if resume_ckpt is not None:
            opt.weights, opt.cfg = opt.resume_path, None
        model, _ = build_model(opt, self.nc, self.names, self.hyp)
        if resume_ckpt is not None:  # exact fp32 weights of the interrupted run
            state = resume_ckpt["model"]["state_dict"]
            model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
        model = model.to(self.device)
        freeze_layers(model, opt.freeze)
        self.gs = max(int(model.stride.max()), 32)
        self.imgsz = check_img_size(opt.imgsz, self.gs, floor=self.gs)
        nl = de_parallel(model).model[-1].nl
        self.hyp = scale_loss_gains(self.hyp, nl, self.nc, self.imgsz)
        model.nc, model.hyp, model.names = self.nc, self.hyp, self.names
        self.amp = self.device.type == "cuda"
        self.model = model

    def _init_optimizer(self) -> None:
        opt, hyp = self.opt, self.hyp
        self.accumulate = accumulate_steps(opt.batch_size)
        decay = scaled_weight_decay(hyp["weight_decay"], opt.batch_size)
        self.optimizer = build_optimizer(
            self.model, opt.optimizer, hyp["lr0"], hyp["momentum"], decay, hyp.get("attn_lr")
        )
        self.scheduler = build_scheduler(self.optimizer, opt.epochs, hyp["lrf"], cosine=opt.cos_lr)
        self.lf = self.scheduler.lr_lambdas[0]
        self.ema = ModelEMA(self.model) if self.rank in (-1, 0) else None
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.epochs = opt.epochs

    def _init_loaders(self) -> None:
        from utils.train.data import build_loaders

        build_loaders(self)
        self.nb = len(self.train_loader)
        self.nw = warmup_iterations(self.hyp["warmup_epochs"], self.nb)
        if self.rank != -1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = sync_bn(self.model, self.opt.sync_bn, self.device)
            ids = [self.local_rank] if self.device.type == "cuda" else None
            self.model = DDP(self.model, device_ids=ids, output_device=ids[0] if ids else None)

    # ---- training --------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Epoch loop: train, validate, log, save, early stop; then the final validation of best.pt."""
        if self.rank in (-1, 0):
            LOGGER.info(
                f"Image sizes {self.imgsz} train, {self.imgsz} val\nUsing {self.train_loader.num_workers} dataloader "
                f"workers\nLogging results to {self.save_dir}\nStarting training for {self.epochs} epochs..."
            )
        self.t0, self.ni0 = time.time(), self.start_epoch * self.nb
        try:
            for epoch in range(self.start_epoch, self.epochs):
                if self.rank in (-1, 0):
                    LOGGER.info("\n" + header_line())
                mloss = train_one_epoch(self, epoch)
                lrs = [g["lr"] for g in self.optimizer.param_groups][:3]  # results.csv: YOLOv5's three groups
                self.scheduler.step()
                stop = self.end_epoch(epoch, mloss, lrs)
                self.epoch_done = epoch
                if broadcast_flag(stop, self.rank):
                    break
        except KeyboardInterrupt:
            self.on_interrupt()
            raise
        if self.rank in (-1, 0):
            self.finish()

    def end_epoch(self, epoch: int, mloss: torch.Tensor, lrs: list) -> bool:
        """Validate, log results.csv, save checkpoints (rank 0). Returns True to stop early."""
        if self.rank not in (-1, 0):
            return False
        self.ema.update_attr(self.model, include=("yaml", "nc", "hyp", "names", "stride"))
        final = epoch + 1 == self.epochs
        result = self.validate(plots=False) if (not self.opt.noval or final) else None
        values = result.results if result is not None else (0.0,) * 7
        if result is not None and len(result.maps) == self.nc:
            self.maps = np.asarray(result.maps)
        fit = result.fitness if result is not None else 0.0
        if fit > self.best_fitness or epoch == 0:
            self.best_fitness, self.best_epoch = max(fit, self.best_fitness), epoch
        self.results.log_epoch(epoch, [*mloss.tolist(), *values, *lrs])
        self.epoch_done = epoch  # a Ctrl-C from here on saves this epoch as done, not the one before
        if not self.opt.nosave or final:
            self.save(epoch, is_best=self.best_epoch == epoch)
        patience = self.opt.patience or float("inf")
        if epoch - self.best_epoch >= patience:
            LOGGER.info(
                f"Stopping training early as no improvement observed in last {patience} epochs. "
                f"Best results observed at epoch {self.best_epoch}, best model saved as best.pt."
            )
            return True
        return False

    def validate(self, plots: bool, model=None, verbose: bool = False):
        """Evaluate the EMA (or a given model) on the val loader -> EvalResult."""
        from utils.val.evaluate import evaluate

        return evaluate(
            model if model is not None else self.ema.ema,
            self.val_loader,
            self.names,
            iou_thres=0.6,
            device=self.device,
            half=self.amp,
            single_cls=self.opt.single_cls,
            compute_loss=self.compute_loss if model is None else None,
            save_dir=self.save_dir,
            plots=plots,
            verbose=verbose,
            progress=False,
            imgsz=self.imgsz,
        )

    def check_finite(self, loss: torch.Tensor) -> bool:
        """False (step skipped, with a warning) for a non-finite loss; TrainingDiverged after 10 in a row."""
        if torch.isfinite(loss).all():
            self.nonfinite = 0
            return True
        self.nonfinite += 1
        LOGGER.warning(f"WARNING: non-finite loss {loss.item()}, skipping this batch ({self.nonfinite} in a row)")
        if self.nonfinite >= MAX_NONFINITE:
            kept = f"; the last good checkpoint is {self.last}" if self.last.exists() else ""
            raise TrainingDiverged(
                f"loss was non-finite for {MAX_NONFINITE} batches in a row: training diverged (try a lower --hyp "
                f"lr0, check labels){kept}"
            )
        return False

    def eta(self, ni: int) -> str:
        """Time left for the whole run, from the mean time per batch so far."""
        done = ni + 1 - self.ni0
        left = (self.epochs * self.nb - ni - 1) * (time.time() - self.t0) / max(done, 1)
        return str(timedelta(seconds=int(left)))

    def plot_batch(self, imgs: torch.Tensor, targets: torch.Tensor, paths, ni: int) -> None:
        from utils.val.plots import plot_images

        plot_images(imgs, targets, paths, self.save_dir / f"train_batch{ni}.jpg", self.names)

    # ---- checkpoints and the end -----------------------------------------------------------------------------
    def save(self, epoch: int, is_best: bool) -> None:
        """last.pt every epoch, best.pt on a new best fitness, epoch{N}.pt every --save-period epochs."""
        ckpt = build_checkpoint(self, epoch)
        save_checkpoint(ckpt, self.last)
        if is_best:
            save_checkpoint(ckpt, self.best)
        if self.opt.save_period > 0 and epoch % self.opt.save_period == 0:
            save_checkpoint(ckpt, self.wdir / f"epoch{epoch}.pt")

    def on_interrupt(self) -> None:
        """Ctrl-C: save the current state as last.pt (the interrupted epoch re-runs on resume) and say how to resume."""
        if self.rank not in (-1, 0) or not hasattr(self, "optimizer"):
            return
        save_checkpoint(build_checkpoint(self, self.epoch_done), self.last)
        LOGGER.info(f"\nInterrupted: saved {self.last}. Resume with: python train.py --resume {self.last}")

    def finish(self) -> None:
        """Strip last/best to fp16 EMA weights, validate best.pt with plots, draw results.png."""
        from models.load import load_model

        hours = (time.time() - self.t0) / 3600
        LOGGER.info(f"\n{self.epoch_done - self.start_epoch + 1} epochs completed in {hours:.3f} hours.")
        for f in (self.last, self.best):
            if f.exists():
                strip_checkpoint(f)
        if self.best.exists():
            LOGGER.info(f"\nValidating {self.best}...")
            self.validate(plots=self.plots, model=load_model(self.best, self.device, fuse=True), verbose=True)
        if self.plots and self.results is not None and self.results.csv.exists():
            from utils.val.plots import plot_results

            plot_results(self.results.csv)
        LOGGER.info(f"Results saved to {self.save_dir}")

    def close(self) -> None:
        if self.results is not None:
            self.results.close()
        if self.rank != -1 and dist.is_initialized():
            dist.destroy_process_group()


def _save_yaml(path: Path, data: Dict[str, Any]) -> None:
    clean = {k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()}
    with open(path, "w") as f:
        yaml.safe_dump(clean, f, sort_keys=False)
