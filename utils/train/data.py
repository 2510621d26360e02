"""Detection's training data: train/val dataloaders from the config, AutoAnchor and labels.jpg, --image-weights."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Tuple

import numpy as np
import torch.nn as nn

from utils.errors import UserError
from utils.train.autoanchor import check_anchors
from utils.train.config import TrainConfig
from utils.train.setup import rank_zero_first

LOGGER = logging.getLogger(__name__)


def build_train_loader(config: TrainConfig, imgsz: int, stride: int, start_epoch: int = 0) -> Tuple[Any, Any]:
    """-> (loader, dataset) for this process: the per-process batch; its first pass is start_epoch's."""
    from utils.data.loader import create_dataloader

    path = config.data["train"]
    cache = None if config.cache == "val" else config.cache
    with rank_zero_first(config.local_rank):  # rank 0 scans and caches labels first; the others then read its cache
        loader, dataset = create_dataloader(
            path, imgsz, config.batch_per_process, stride, config.single_cls, hyp=dict(config.hyp), augment=True,
            cache=cache, rect=config.rect, rank=config.local_rank, workers=config.workers,
            image_weights=config.image_weights, quad=config.quad, prefix="train: ", shuffle=True, seed=config.seed,
            nc=config.nc, start_epoch=start_epoch,
        )  # fmt: skip
    if not len(dataset):
        raise UserError(f"no usable training images in {path}")
    return loader, dataset


def build_val_loader(config: TrainConfig, imgsz: int, stride: int) -> Any:
    """The rank-0 validation loader: rectangular batches of 2x the per-process train batch, as YOLOv5."""
    from utils.data.loader import create_dataloader

    return create_dataloader(
        config.data["val"], imgsz, config.batch_per_process * 2, stride, config.single_cls, hyp=dict(config.hyp),
        cache=None if config.noval else config.cache, rect=True, rank=-1, workers=config.workers * 2, pad=0.5,
        prefix="val: ", nc=config.nc,
    )[0]  # fmt: skip


def check_labels(dataset, model: nn.Module, config: TrainConfig, imgsz: int) -> None:
    """A new run's look at its training labels: AutoAnchor (may update model's anchors) and labels.jpg."""
    if not config.noautoanchor:
        check_anchors(dataset, model, thr=config.hyp["anchor_t"], imgsz=imgsz)
    if config.plots:
        from utils.val.plots import plot_labels

        labels = np.concatenate([np.asarray(lb).reshape(-1, 5) for lb in dataset.labels], 0)
        plot_labels(labels, list(config.names), Path(config.save_dir))


def class_weights(labels: list, nc: int) -> np.ndarray:
    """(nc,) inverse class frequencies of the training labels, normalised to sum 1 (absent classes count once)."""
    classes = np.concatenate([np.asarray(lb).reshape(-1, 5)[:, 0] for lb in labels], 0).astype(int)
    counts = np.bincount(classes, minlength=nc).astype(float)
    counts[counts == 0] = 1
    w = 1 / counts
    return w / w.sum()


def image_weights(labels: list, nc: int, cw: np.ndarray) -> np.ndarray:
    """(n_images,) sum of class weights over each image's labels."""
    counts = np.array([np.bincount(np.asarray(lb).reshape(-1, 5)[:, 0].astype(int), minlength=nc) for lb in labels])
    return (cw.reshape(1, nc) * counts).sum(1)


def sampling_weights(dataset, nc: int, metrics=None) -> np.ndarray:
    """--image-weights: (n_images,) weights favouring images of rare and poorly detected classes.

    metrics: the last validation's EvalResult (its per-class mAP `maps`), or None before the first one.
    """
    maps = np.asarray(metrics.maps) if metrics is not None and len(metrics.maps) == nc else np.zeros(nc)
    cw = class_weights(dataset.labels, nc) * (1 - maps) ** 2 / nc
    return image_weights(dataset.labels, nc, cw)
