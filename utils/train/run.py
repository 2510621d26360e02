"""The run loop: epochs of train_one_epoch, validation on the EMA, results.csv, checkpoints, early stop, DDP.

It does not know which task it trains: the Task's parts (utils/task.py) build the model, the loaders, the criterion
and the evaluator, and name the results.csv columns. `train(opt_or_config)` is the entry point.
"""

from __future__ import annotations

import logging
import time
from argparse import Namespace
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

import torch
import torch.distributed as dist
from tqdm import tqdm

from utils.task import Metrics, Task
from utils.train.build import Run, setup_run
from utils.train.config import TrainConfig, resolve_config
from utils.train.epoch import EpochSettings, TrainingDiverged, train_one_epoch
from utils.train.setup import broadcast_flag
from utils.train.state import strip_checkpoint

LOGGER = logging.getLogger(__name__)
BAR_FORMAT = "{l_bar}{bar:10}{r_bar}"


def train(config: TrainConfig | Namespace, hyp: Mapping[str, Any] | None = None, task: Task | None = None) -> Path:
    """Run a whole training -> its run folder. config: a TrainConfig, or train.py options (resolved here, hyp then
    replacing --hyp); task: detection unless given."""
    from utils.train.tasks import DETECT

    if not isinstance(config, TrainConfig):
        config = resolve_config(config, hyp)
    run = setup_run(config, task or DETECT)
    try:
        run_epochs(run)
    finally:
        if run.results is not None:
            run.results.close()
        if config.rank != -1 and dist.is_initialized():
            dist.destroy_process_group()
    return Path(config.save_dir)


@dataclass
class Progress:
    """The rank-0 progress bar line, the run's ETA and the first training batches' pictures."""

    run: Run
    bar: Any
    epoch: int
    shown: float = 0.0

    def __call__(self, i: int, imgs: torch.Tensor, batch, mloss: torch.Tensor) -> None:
        run, c = self.run, self.run.config
        ni = i + run.nb * self.epoch
        if time.time() - self.shown > 0.5 or i == run.nb - 1:  # reading mloss waits for the device
            self.shown = time.time()
            mem = f"{torch.cuda.memory_reserved() / 1e9 if torch.cuda.is_available() else 0:.3g}G"
            values = (f"{self.epoch}/{c.epochs - 1}", mem, *mloss.tolist(), len(batch[1]), imgs.shape[-1])
            self.bar.set_description(("%11s" * 2 + "%11.4g" * (len(values) - 2)) % values)
            done = ni + 1 - run.start_epoch * run.nb
            left = (c.epochs * run.nb - ni - 1) * (time.time() - run.t0) / max(done, 1)
            self.bar.set_postfix_str(f"run ETA {timedelta(seconds=int(left))}", refresh=False)
        if c.plots and ni < 3:
            run.task.plot_batch(imgs, batch, Path(c.save_dir) / f"train_batch{ni}.jpg", list(c.names))


def header_line(loss_names) -> str:
    names = ("Epoch", "GPU_mem", *loss_names, "Instances", "Size")
    return ("%11s" * len(names)) % names


def epoch_settings(run: Run, epoch: int) -> EpochSettings:
    """What train_one_epoch needs for this epoch of this run."""
    c = run.config
    return EpochSettings(
        epoch, run.nw, run.lf(epoch), run.hyp, c.batch_size, run.device, run.amp,
        loss_scale=max(c.world_size, 1) * (4.0 if c.quad else 1.0),
        multi_scale=(run.imgsz, run.gs) if c.multi_scale else None, channels_last=run.nhwc,
    )  # fmt: skip


def run_epochs(run: Run) -> None:
    """Epoch loop: train, validate, log, save, early stop; then the final validation of best.pt."""
    c, st = run.config, run.state
    if c.main:
        LOGGER.info(
            f"Image sizes {run.imgsz} train, {run.imgsz} val\nUsing {run.train_loader.num_workers} dataloader "
            f"workers, batch {c.batch_per_process} per process (total {c.batch_size}), val batch "
            f"{run.val_loader.batch_size}\nLogging results to {c.save_dir}\nStarting training for {c.epochs} epochs..."
        )
    run.t0 = time.time()
    metrics: Metrics | None = None
    try:
        for epoch in range(run.start_epoch, c.epochs):
            if c.image_weights and c.main:
                run.train_loader.sampler.set_weights(run.task.image_weights(run.dataset, c.nc, metrics))
            if c.main:
                LOGGER.info("\n" + header_line(run.task.loss_names))
            s = epoch_settings(run, epoch)
            bar = tqdm(run.train_loader, total=run.nb, bar_format=BAR_FORMAT, disable=not c.main)
            hook = Progress(run, bar, epoch) if c.main else None
            try:
                mloss = train_one_epoch(run.model, run.criterion, bar, st.optimizer, st.scaler, st.ema, st, s, hook)
            except TrainingDiverged as e:
                kept = f"; the last good checkpoint is {run.last}" if run.last.exists() else ""
                raise TrainingDiverged(f"{e}{kept}") from None
            finally:
                bar.close()
            lrs = [g["lr"] for g in st.optimizer.param_groups][:3]  # results.csv: YOLOv5's three groups
            st.scheduler.step()
            stop, metrics = end_epoch(run, epoch, mloss, lrs, metrics)
            st.epoch = epoch
            if broadcast_flag(stop, c.rank):
                break
    except KeyboardInterrupt:
        if c.main:
            interrupted(run)
        raise
    if c.main:
        finish(run)


def end_epoch(run: Run, epoch: int, mloss: torch.Tensor, lrs: list, last: Metrics | None):
    """Validate, log results.csv, save checkpoints (rank 0) -> (stop early?, the metrics for --image-weights).

    With --noval only the final epoch is validated; the others count as new bests (as YOLOv5's >= comparison
    of a zero fitness does), so training runs every epoch and best.pt follows last.pt.
    """
    c, st = run.config, run.state
    if not c.main:
        return False, last
    st.ema.update_attr(run.model, include=("yaml", "nc", "hyp", "names", "stride"))
    final = epoch + 1 == c.epochs
    metrics = validate(run, final=False) if (not c.noval or final) else None
    nl, nm = len(run.task.loss_names), len(run.task.metric_names)
    values = (*metrics.row, *metrics.losses) if metrics is not None else (0.0,) * (nm + nl)
    fit = metrics.fitness if metrics is not None else 0.0
    if fit >= st.best_fitness or metrics is None:
        st.best_fitness, st.best_epoch = max(fit, st.best_fitness), epoch
    row = [*mloss.tolist(), *values, *lrs]
    st.results.append([float(epoch), *map(float, row)])
    LOGGER.info(f"{st.opt_steps} optimizer steps, accumulate {st.accumulate} (total batch {c.batch_size})")
    st.epoch = epoch
    # The checkpoint holds the row: it is written first, the csv from it after. An --evolve trial keeps no weights
    # (as YOLOv5): it writes none, so finish() does not validate a best.pt a second time.
    if not c.nosave or (final and not c.evolve):
        paths = [run.last] + ([run.best] if st.best_epoch == epoch else [])
        if c.save_period > 0 and epoch % c.save_period == 0:
            paths.append(run.last.parent / f"epoch{epoch}.pt")
        st.save(*paths)
    run.results.log_epoch(epoch, row, st.results)
    patience = c.patience or float("inf")
    if epoch - st.best_epoch >= patience:
        LOGGER.info(
            f"Stopping training early as no improvement observed in last {patience} epochs. "
            f"Best results observed at epoch {st.best_epoch}, best model saved as best.pt."
        )
        return True, metrics if metrics is not None else last
    return False, metrics if metrics is not None else last


def interrupted(run: Run) -> None:
    """Ctrl-C: nothing is saved mid-epoch. last.pt holds the last finished epoch (written at its end), so --resume
    re-runs the interrupted epoch from exactly that state, as if it had never started."""
    from utils.checkpoint import load_checkpoint

    try:
        epoch = int(load_checkpoint(run.last).get("epoch", -1)) if run.last.exists() else -1
    except Exception:  # unreadable: say so below rather than fail while exiting
        epoch = -1
    if epoch >= 0:
        LOGGER.info(
            f"\nInterrupted: {run.last} holds epoch {epoch}, the last finished one. "
            f"Resume with: python train.py --resume {run.last}"
        )
    else:
        why = "with --nosave no checkpoint is kept" if run.config.nosave else "no epoch had finished"
        LOGGER.info(f"\nInterrupted: nothing to resume ({why})")


def validate(run: Run, final: bool, model: torch.nn.Module | None = None) -> Metrics:
    """The EMA during training (with validation losses), or a given model at the end (per class, with plots)."""
    from utils.deploy.predictor import ModelPredictor
    from utils.val.loop import validate as validation_loop

    c = run.config
    net = model if model is not None else run.state.ema.ema
    predictor = ModelPredictor(net, device=run.device, fp16=run.amp, names=list(c.names))
    if run.nhwc:
        predictor.use_channels_last()  # the EMA already is; best.pt is loaded as it was saved
    evaluator = run.task.evaluator(
        list(c.names), Path(c.save_dir), plots=final and c.plots, per_class=final, single_cls=c.single_cls
    )
    criterion = None if final else run.criterion
    speed = (run.val_loader.batch_size, run.imgsz) if final else None
    return validation_loop(predictor, run.val_loader, evaluator, criterion, speed_shape=speed)


def finish(run: Run) -> None:
    """Strip last/best to fp16 EMA weights, validate best.pt with plots, draw results.png."""
    from models.load import load_model

    c = run.config
    hours = (time.time() - run.t0) / 3600
    LOGGER.info(f"\n{run.state.epoch - run.start_epoch + 1} epochs completed in {hours:.3f} hours.")
    for f in (run.last, run.best):
        if f.exists():
            strip_checkpoint(f)
    if run.best.exists():
        LOGGER.info(f"\nValidating {run.best}...")
        validate(run, final=True, model=load_model(run.best, run.device, fuse=True))
    if c.plots and run.results is not None and run.results.csv.exists():
        from utils.val.plots import plot_results

        plot_results(run.results.csv)
    LOGGER.info(f"Results saved to {c.save_dir}")
