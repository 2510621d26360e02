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
import torch.nn as nn
import torch.nn.functional as F
import yaml
from tqdm import tqdm

from utils.errors import UserError
from utils.img_size import check_img_size
from utils.paths import ensure_dir, increment_path
from utils.torch_utils import de_parallel, init_seeds, select_device
from utils.train.data import build_train_loader, build_val_loader, check_labels, resample_images
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
    check_single_process_device,
    ddp_device,
    freeze_layers,
    get_dist_info,
    load_hyp,
    rank_zero_first,
    scale_loss_gains,
    sync_bn,
)
from utils.train.state import TrainState, fp32_state, load_resume, strip_checkpoint

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
    """One training run and all its state; setup() builds it, run() trains, close() releases it.

    The checkpointed part (model, EMA, optimizer, scheduler, scaler, counters) lives in self.state, a TrainState
    with its own save and restore; the rest (device, data, loaders, run folder) is rebuilt from the options.
    """

    def __init__(self, opt: Namespace, hyp: Dict[str, Any] | None = None):
        self.opt, self.hyp_override = opt, hyp
        self.local_rank, self.rank, self.world_size = get_dist_info()
        self.results: ResultsLogger | None = None
        self.state: TrainState | None = None
        self.nonfinite, self.start_epoch = 0, 0
        self.save_dir = Path(".")

    @property
    def main(self) -> bool:
        """True on the process that logs, validates and saves (single process, or DDP rank 0)."""
        return self.rank in (-1, 0)

    # ---- set-up ----------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Run folder, hyp, data, model, optimizer, scheduler, EMA, loaders, AutoAnchor, resume state."""
        opt = self.opt
        resume_ckpt = load_resume(opt) if opt.resume else None
        if resume_ckpt is not None:
            self.start_epoch = int(resume_ckpt["epoch"]) + 1  # the loaders' first pass is this epoch's
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
        self.epochs = opt.epochs
        self.model = self._init_model(resume_ckpt)
        self.state = self._init_state()
        self._init_loaders(new_run=resume_ckpt is None)
        self.compute_loss = ComputeLoss(self.model, self.hyp)
        if resume_ckpt is not None:
            self.state.restore(resume_ckpt, self.epochs)
            LOGGER.info(f"Resuming training from {opt.resume_path} from epoch {self.start_epoch} to {self.epochs}")
            if self.results is not None:
                self.results.truncate(self.state.epoch)

    def _init_device(self) -> torch.device:
        """Single process: --device as given (one device). DDP: the local_rank-th listed device, then the group."""
        opt = self.opt
        if self.local_rank == -1:
            check_single_process_device(opt.device)
            self.batch_size = opt.batch_size
            return select_device(opt.device, opt.batch_size)
        if opt.batch_size % self.world_size:
            raise UserError(f"--batch-size {opt.batch_size} must be a multiple of the {self.world_size} DDP processes")
        self.batch_size = opt.batch_size // self.world_size
        device = ddp_device(opt.device, self.local_rank, self.world_size)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo", timeout=DDP_TIMEOUT)
        return device

    def _init_dirs(self) -> None:
        opt = self.opt
        if getattr(opt, "save_dir", None) and opt.resume:
            self.save_dir = Path(opt.save_dir)
        else:
            self.save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok)
        opt.save_dir = str(self.save_dir)
        self.wdir = self.save_dir / "weights"
        self.last, self.best = self.wdir / "last.pt", self.wdir / "best.pt"
        self.plots = not opt.evolve and not opt.noplots and self.main
        if self.main:
            ensure_dir(self.wdir)
            _save_yaml(self.save_dir / "hyp.yaml", self.hyp)
            _save_yaml(self.save_dir / "opt.yaml", vars(opt))
            self.results = ResultsLogger(self.save_dir)

    def _init_model(self, resume_ckpt: dict | None) -> nn.Module:
        opt = self.opt
        if resume_ckpt is not None:
            opt.weights, opt.cfg = opt.resume_path, None
        model, _ = build_model(opt, self.nc, self.names, self.hyp)
        if resume_ckpt is not None:  # exact fp32 weights of the interrupted run
            model.load_state_dict(fp32_state(resume_ckpt["model"]["state_dict"]))
        model = model.to(self.device)
        freeze_layers(model, opt.freeze)
        self.gs = max(int(model.stride.max()), 32)
        self.imgsz = check_img_size(opt.imgsz, self.gs, floor=self.gs)
        nl = de_parallel(model).model[-1].nl
        self.hyp = scale_loss_gains(self.hyp, nl, self.nc, self.imgsz)
        model.nc, model.hyp, model.names = self.nc, self.hyp, self.names
        self.amp = self.device.type == "cuda"
        return model

    def _init_state(self) -> TrainState:
        """Optimizer, scheduler, EMA and scaler; accumulation and weight decay from the total batch, as YOLOv5."""
        opt, hyp = self.opt, self.hyp
        decay = scaled_weight_decay(hyp["weight_decay"], opt.batch_size)
        optimizer = build_optimizer(self.model, opt.optimizer, hyp["lr0"], hyp["momentum"], decay, hyp.get("attn_lr"))
        scheduler = build_scheduler(optimizer, opt.epochs, hyp["lrf"], cosine=opt.cos_lr)
        self.lf = scheduler.lr_lambdas[0]
        return TrainState(
            model=self.model,
            ema=ModelEMA(self.model) if self.main else None,
            optimizer=optimizer,
            scheduler=scheduler,
            scaler=torch.amp.GradScaler("cuda", enabled=self.amp),
            opt=opt,
            hyp=hyp,
            amp=self.amp,
            accumulate=accumulate_steps(opt.batch_size),
        )

    def _init_loaders(self, new_run: bool) -> None:
        opt = self.opt
        self.train_loader, self.dataset = build_train_loader(
            self.data["train"], opt, self.hyp, self.imgsz, self.batch_size, self.gs, self.nc,
            local_rank=self.local_rank, start_epoch=self.start_epoch,
        )  # fmt: skip
        self.maps = np.zeros(self.nc)
        if self.main:
            self.val_loader = build_val_loader(
                self.data["val"], opt, self.hyp, self.imgsz, self.batch_size, self.gs, self.nc
            )
            if new_run:
                check_labels(self.dataset, self.model, self.hyp["anchor_t"], self.imgsz, self.names, self.save_dir,
                             autoanchor=not opt.noautoanchor, plots=self.plots)  # fmt: skip
        self.nb = len(self.train_loader)
        self.nw = warmup_iterations(self.hyp["warmup_epochs"], self.nb)
        if self.rank != -1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.model = sync_bn(self.model, opt.sync_bn, self.device)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.model, device_ids=ids, output_device=ids[0] if ids else None)
            self.state.model = self.model

    # ---- training --------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Epoch loop: train, validate, log, save, early stop; then the final validation of best.pt."""
        if self.main:
            LOGGER.info(
                f"Image sizes {self.imgsz} train, {self.imgsz} val\nUsing {self.train_loader.num_workers} dataloader "
                f"workers, batch {self.batch_size} per process (total {self.opt.batch_size}), val batch "
                f"{self.val_loader.batch_size}\nLogging results to {self.save_dir}\n"
                f"Starting training for {self.epochs} epochs..."
            )
        self.t0, self.ni0 = time.time(), self.start_epoch * self.nb
        try:
            for epoch in range(self.start_epoch, self.epochs):
                if self.main:
                    LOGGER.info("\n" + header_line())
                mloss = self.train_one_epoch(epoch)
                lrs = [g["lr"] for g in self.state.optimizer.param_groups][:3]  # results.csv: YOLOv5's three groups
                self.state.scheduler.step()
                stop = self.end_epoch(epoch, mloss, lrs)
                self.state.epoch = epoch
                if broadcast_flag(stop, self.rank):
                    break
        except KeyboardInterrupt:
            self.on_interrupt()
            raise
        if self.main:
            self.finish()

    def train_one_epoch(self, epoch: int) -> torch.Tensor:
        """One pass over the train loader with warmup, accumulation, AMP and EMA; -> mean (box, obj, cls) losses (3,).

        The losses stay on the device: the host reads them once per optimizer step (with the gradient norm) and
        when the progress bar refreshes, not at every batch.
        """
        st, opt = self.state, self.opt
        self.model.train()
        if opt.image_weights and self.main:
            resample_images(self.dataset, self.nc, self.maps)
        mloss = torch.zeros(3, device=self.device)
        seen = torch.zeros((), device=self.device)  # batches with a finite loss
        self.bad = torch.zeros((), device=self.device)  # non-finite losses since the last optimizer step
        bar = tqdm(enumerate(self.train_loader), total=self.nb, bar_format=BAR_FORMAT, disable=not self.main)
        shown = 0.0
        for i, (imgs, targets, paths, _) in bar:
            ni = i + self.nb * epoch  # batches seen since the start of training
            imgs = imgs.to(self.device, non_blocking=True).float() / 255
            if ni <= self.nw:  # accumulation ramps up to the nominal batch of the TOTAL batch size, as YOLOv5
                st.accumulate = apply_warmup(st.optimizer, ni, self.nw, self.lf(epoch), self.hyp, opt.batch_size)
            if opt.multi_scale:
                imgs = random_rescale(imgs, self.imgsz, self.gs)
            with torch.autocast(self.device.type, enabled=self.amp):
                loss, items = self.compute_loss(self.model(imgs), targets.to(self.device))
            loss = loss * max(self.world_size, 1) * (4.0 if opt.quad else 1.0)
            finite = torch.isfinite(loss).all()
            self.bad += ~finite
            st.scaler.scale(loss).backward()
            mloss = torch.where(finite, (mloss * seen + items) / (seen + 1), mloss)
            seen += finite
            if ni - st.last_opt_step >= st.accumulate:
                self.optimizer_step(ni)
            if self.main:
                if time.time() - shown > 0.5 or i == self.nb - 1:  # reading mloss waits for the device
                    shown = time.time()
                    bar.set_description(self.progress_line(epoch, mloss, targets, imgs))
                    bar.set_postfix_str(f"run ETA {self.eta(ni)}", refresh=False)
                if self.plots and ni < 3:
                    self.plot_batch(imgs, targets, paths, ni)
        return mloss

    def optimizer_step(self, ni: int) -> None:
        """Clip and step (skipped when a loss or the gradient norm was non-finite), update the EMA and counters.

        TrainingDiverged after MAX_NONFINITE non-finite losses in a row.
        """
        st = self.state
        stepped, bad = clip_and_step(st.optimizer, self.model, st.scaler, self.bad)
        self.bad.zero_()
        st.last_opt_step = ni
        if stepped:
            st.opt_steps += 1
            if st.ema is not None:
                st.ema.update(self.model)
        if not bad:
            self.nonfinite = 0
            return
        self.nonfinite += bad
        LOGGER.warning(f"WARNING: non-finite loss in {bad} batch(es), skipping this optimizer step "
                       f"({self.nonfinite} in a row)")  # fmt: skip
        if self.nonfinite >= MAX_NONFINITE:
            kept = f"; the last good checkpoint is {self.last}" if self.last.exists() else ""
            raise TrainingDiverged(
                f"loss was non-finite for {MAX_NONFINITE} batches in a row: training diverged (try a lower --hyp "
                f"lr0, check labels){kept}"
            )

    def progress_line(self, epoch: int, mloss: torch.Tensor, targets: torch.Tensor, imgs: torch.Tensor) -> str:
        """'      3/99      1.2G    0.0712    0.0423  ...' aligned under header_line()."""
        mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
        values = (f"{epoch}/{self.epochs - 1}", mem, *mloss.tolist(), targets.shape[0], imgs.shape[-1])
        return ("%11s" * 2 + "%11.4g" * 5) % values

    def end_epoch(self, epoch: int, mloss: torch.Tensor, lrs: list) -> bool:
        """Validate, log results.csv, save checkpoints (rank 0). Returns True to stop early.

        With --noval only the final epoch is validated; the others count as new bests (as YOLOv5's >= comparison
        of a zero fitness does), so training runs every epoch and best.pt follows last.pt.
        """
        if not self.main:
            return False
        st = self.state
        st.ema.update_attr(self.model, include=("yaml", "nc", "hyp", "names", "stride"))
        final = epoch + 1 == self.epochs
        result = self.validate(plots=False) if (not self.opt.noval or final) else None
        values = result.results if result is not None else (0.0,) * 7
        if result is not None and len(result.maps) == self.nc:
            self.maps = np.asarray(result.maps)
        fit = result.fitness if result is not None else 0.0
        if fit >= st.best_fitness or result is None:
            st.best_fitness, st.best_epoch = max(fit, st.best_fitness), epoch
        self.results.log_epoch(epoch, [*mloss.tolist(), *values, *lrs])
        LOGGER.info(f"{st.opt_steps} optimizer steps, accumulate {st.accumulate} (total batch {self.opt.batch_size})")
        st.epoch = epoch  # a Ctrl-C from here on saves this epoch as done, not the one before
        if not self.opt.nosave or final:
            self.save(epoch, is_best=st.best_epoch == epoch)
        patience = self.opt.patience or float("inf")
        if epoch - st.best_epoch >= patience:
            LOGGER.info(
                f"Stopping training early as no improvement observed in last {patience} epochs. "
                f"Best results observed at epoch {st.best_epoch}, best model saved as best.pt."
            )
            return True
        return False

    def validate(self, plots: bool, model=None, verbose: bool = False):
        """Evaluate the EMA (or a given model) on the val loader -> EvalResult."""
        from utils.val.evaluate import evaluate

        return evaluate(
            model if model is not None else self.state.ema.ema,
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
        paths = [self.last] + ([self.best] if is_best else [])
        if self.opt.save_period > 0 and epoch % self.opt.save_period == 0:
            paths.append(self.wdir / f"epoch{epoch}.pt")
        self.state.save(*paths)

    def on_interrupt(self) -> None:
        """Ctrl-C: save the current state as last.pt (the interrupted epoch re-runs on resume) and say how to resume."""
        if not self.main or self.state is None:
            return
        self.state.save(self.last)
        LOGGER.info(f"\nInterrupted: saved {self.last}. Resume with: python train.py --resume {self.last}")

    def finish(self) -> None:
        """Strip last/best to fp16 EMA weights, validate best.pt with plots, draw results.png."""
        from models.load import load_model

        hours = (time.time() - self.t0) / 3600
        LOGGER.info(f"\n{self.state.epoch - self.start_epoch + 1} epochs completed in {hours:.3f} hours.")
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
