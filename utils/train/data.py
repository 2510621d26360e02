"""Training data: train/val dataloaders, AutoAnchor and labels.jpg at set-up, --image-weights resampling."""

from __future__ import annotations

import logging
import random

import numpy as np

from utils.errors import UserError
from utils.train.autoanchor import check_anchors
from utils.train.setup import rank_zero_first

LOGGER = logging.getLogger(__name__)


def build_loaders(t) -> None:
    """Set t.train_loader / t.dataset (every rank) and t.val_loader (rank 0); AutoAnchor and labels.jpg on a new run."""
    from utils.data.loader import create_dataloader

    opt = t.opt
    cache = None if opt.cache == "val" else opt.cache
    with rank_zero_first(t.local_rank):  # rank 0 scans and caches labels first; the others then read its cache
        t.train_loader, t.dataset = create_dataloader(
            t.data["train"], t.imgsz, t.batch_size, t.gs, opt.single_cls, hyp=t.hyp, augment=True, cache=cache,
            rect=opt.rect, rank=t.local_rank, workers=opt.workers, image_weights=opt.image_weights, quad=opt.quad,
            prefix="train: ", shuffle=True, seed=opt.seed, nc=t.nc,
        )  # fmt: skip
    if not len(t.dataset):
        raise UserError(f"no usable training images in {t.data['train']}")
    t.maps = np.zeros(t.nc)
    if t.rank not in (-1, 0):
        return
    t.val_loader = create_dataloader(
        t.data["val"], t.imgsz, max(t.batch_size // max(t.world_size, 1), 1) * 2, t.gs, opt.single_cls, hyp=t.hyp,
        cache=None if opt.noval else opt.cache, rect=True, rank=-1, workers=opt.workers * 2, pad=0.5,
        prefix="val: ", nc=t.nc,
    )[0]  # fmt: skip
    if opt.resume:
        return
    if not opt.noautoanchor:
        check_anchors(t.dataset, t.model, thr=t.hyp["anchor_t"], imgsz=t.imgsz)
    if t.plots:
        from utils.val.plots import plot_labels

        labels = np.concatenate([np.asarray(lb).reshape(-1, 5) for lb in t.dataset.labels], 0)
        plot_labels(labels, t.names, t.save_dir)


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


def resample_images(t) -> None:
    """--image-weights: redraw the epoch's image indices, favouring images of rare and poorly detected classes."""
    ds = t.dataset
    cw = class_weights(ds.labels, t.nc) * (1 - t.maps) ** 2 / t.nc
    iw = image_weights(ds.labels, t.nc, cw)
    if iw.sum() <= 0:
        return
    ds.indices = random.choices(range(ds.n), weights=iw, k=ds.n)
    LOGGER.debug("image weights: resampled %d indices", ds.n)
