"""Training data: train/val dataloaders from train.py options, AutoAnchor and labels.jpg, --image-weights resampling."""

from __future__ import annotations

import logging
import random
from argparse import Namespace
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np
import torch.nn as nn

from utils.errors import UserError
from utils.train.autoanchor import check_anchors
from utils.train.setup import rank_zero_first

LOGGER = logging.getLogger(__name__)


def build_train_loader(
    path: str, opt: Namespace, hyp: Dict[str, Any], imgsz: int, batch_size: int, stride: int, nc: int,
    local_rank: int = -1, start_epoch: int = 0,
) -> Tuple[Any, Any]:  # fmt: skip
    """-> (loader, dataset) for one process: batch_size is per process; its first pass is start_epoch's."""
    from utils.data.loader import create_dataloader
    from utils.data.problems import report_to

    cache = None if opt.cache == "val" else opt.cache
    with rank_zero_first(local_rank), report_to(getattr(opt, "save_dir", None)):  # rank 0 scans and caches first
        loader, dataset = create_dataloader(
            path, imgsz, batch_size, stride, opt.single_cls, hyp=hyp, augment=True, cache=cache, rect=opt.rect,
            rank=local_rank, workers=opt.workers, image_weights=opt.image_weights, quad=opt.quad, prefix="train: ",
            shuffle=True, seed=opt.seed, nc=nc, start_epoch=start_epoch,
        )  # fmt: skip
    if not len(dataset):
        raise UserError(f"no usable training images in {path}")
    return loader, dataset


def build_val_loader(
    path: str, opt: Namespace, hyp: Dict[str, Any], imgsz: int, batch_size: int, stride: int, nc: int
) -> Any:
    """The rank-0 validation loader: rectangular batches of 2x the per-process train batch, as YOLOv5."""
    from utils.data.loader import create_dataloader
    from utils.data.problems import report_to

    with report_to(getattr(opt, "save_dir", None)):
        return create_dataloader(
            path, imgsz, batch_size * 2, stride, opt.single_cls, hyp=hyp, cache=None if opt.noval else opt.cache,
            rect=True, rank=-1, workers=opt.workers * 2, pad=0.5, prefix="val: ", nc=nc,
        )[0]  # fmt: skip


def check_labels(
    dataset, model: nn.Module, anchor_t: float, imgsz: int, names: List[str], save_dir: Path, autoanchor: bool,
    plots: bool,
) -> None:  # fmt: skip
    """A new run's look at its training labels: AutoAnchor (may update model's anchors) and labels.jpg."""
    if autoanchor:
        check_anchors(dataset, model, thr=anchor_t, imgsz=imgsz)
    if plots:
        from utils.val.plots import plot_labels

        labels = np.concatenate([np.asarray(lb).reshape(-1, 5) for lb in dataset.labels], 0)
        plot_labels(labels, names, save_dir)


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


def resample_images(dataset, nc: int, maps: np.ndarray) -> None:
    """--image-weights: redraw dataset.indices, favouring images of rare and poorly detected classes (maps: (nc,))."""
    cw = class_weights(dataset.labels, nc) * (1 - maps) ** 2 / nc
    iw = image_weights(dataset.labels, nc, cw)
    if iw.sum() <= 0:
        return
    dataset.indices = random.choices(range(dataset.n), weights=iw, k=dataset.n)
    LOGGER.debug("image weights: resampled %d indices", dataset.n)
