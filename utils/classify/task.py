"""The classification Task: the parts the shared engine calls (utils/task.py), and how a run trains with them."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from utils.classify.dataset import create_classification_dataloader
from utils.classify.loss import ClassifyLoss
from utils.classify.metrics import METRIC_NAMES, ClassifyEvaluator
from utils.classify.model import build_classifier
from utils.classify.predict import annotate, postprocess
from utils.task import Task
from utils.train.config import TrainConfig
from utils.train.state import fp32_state

LOGGER = logging.getLogger(__name__)


def classify_model(config: TrainConfig, resume_ckpt: Mapping[str, Any] | None = None) -> nn.Module:
    """--model as a classifier for the data's classes (a resume: the interrupted run's exact fp32 weights)."""
    from models.classify import classifier_from_dict, set_dropout

    h = config.hyp
    if resume_ckpt is not None:
        md = dict(resume_ckpt["model"], state_dict=fp32_state(resume_ckpt["model"]["state_dict"]))
        model = classifier_from_dict(md, config.resume_path)
        set_dropout(model, h.get("dropout"))
    else:
        model = build_classifier(
            config.weights, config.nc, h.get("cutoff"), h.get("pretrained", True), h.get("dropout")
        )
    model.names, model.nc = list(config.names), config.nc
    return model


def same_hyp(hyp: Mapping[str, Any], model: nn.Module, nc: int, imgsz: int) -> Mapping[str, Any]:
    return hyp


def train_loader(config: TrainConfig, imgsz: int, stride: int, start_epoch: int = 0):
    """(loader, dataset) of the train/ folder with official augmentations; each pass depends on (seed, epoch)."""
    return create_classification_dataloader(
        config.data["train"], imgsz, config.batch_per_process, augment=True, cache=config.cache,
        rank=config.local_rank, workers=config.workers, shuffle=True, seed=config.seed, start_epoch=start_epoch,
    )  # fmt: skip


def val_loader(config: TrainConfig, imgsz: int, stride: int):
    """The test/ (else val/) folder, batch twice the training batch, as official."""
    return create_classification_dataloader(
        config.data["val"], imgsz, config.batch_per_process * 2, augment=False, cache=config.cache,
        workers=config.workers, shuffle=False,
    )[0]  # fmt: skip


def check_data(dataset, model: nn.Module, config: TrainConfig, imgsz: int) -> None:
    LOGGER.info(f"{len(dataset)} training images in {config.nc} classes: {', '.join(config.names)}")


def classify_evaluator(names: Sequence[str], save_dir: Path | None, plots: bool = False, per_class: bool = False,
                       single_cls: bool = False) -> ClassifyEvaluator:  # fmt: skip
    return ClassifyEvaluator(names, save_dir, plots=plots, per_class=per_class)


def plot_train_batch(imgs: torch.Tensor, batch: Sequence, path: Path, names: Sequence[str]) -> None:
    """Up to 25 training images (B, 3, H, W) 0-1 in a grid with their class names (official train_images.jpg)."""
    from utils.classify.plots import image_grid

    image_grid(imgs[:25], [names[int(i)] for i in batch[1][:25]], path)


CLASSIFY = Task(
    name="classify",
    loss_names=("loss",),
    metric_names=METRIC_NAMES,
    build_model=classify_model,
    hyp_for_model=same_hyp,
    train_loader=train_loader,
    val_loader=val_loader,
    check_data=check_data,
    criterion=ClassifyLoss,
    evaluator=classify_evaluator,
    plot_batch=plot_train_batch,
    image_weights=None,
    postprocess=postprocess,
    annotate=annotate,
    channels_last=True,  # CPU: train and validate in oneDNN's faster channels-last order
)


def train_classifier(config: TrainConfig) -> Path:
    """A whole classification run on the engine's loop -> its folder. As official: an optimizer step every batch
    (no accumulation to a nominal batch), no warmup."""
    import torch.distributed as dist

    from utils.train.build import setup_run
    from utils.train.run import run_epochs

    run = setup_run(config, CLASSIFY)
    run.state.accumulate = 1
    run = dataclasses.replace(run, nw=-1)
    try:
        run_epochs(run)
    finally:
        if run.results is not None:
            run.results.close()
        if config.rank != -1 and dist.is_initialized():
            dist.destroy_process_group()
    return Path(config.save_dir)
