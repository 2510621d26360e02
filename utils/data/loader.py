"""Dataloaders: create_dataloader as YOLOv5 has it, an InfiniteDataLoader that keeps its workers, worker seeding."""

from __future__ import annotations

import logging
import os
import random
from typing import Dict, Iterator, Tuple

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, distributed

from utils.data.dataset import LoadImagesAndLabels

LOGGER = logging.getLogger(__name__)
SEED_BASE = 6148914691236517205  # a fixed odd 64-bit constant mixed into the loader generator's seed


class _RepeatSampler:
    """Yield from a batch sampler forever (one full pass per epoch)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator:
        while True:
            yield from iter(self.sampler)


class InfiniteDataLoader(DataLoader):
    """DataLoader whose worker processes live across epochs; len() is still one epoch of batches.

    Iterate it once per epoch; each pass yields exactly len(self) batches from one long-lived iterator.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        self.iterator = super().__iter__()

    def __len__(self) -> int:
        return len(self.batch_sampler.sampler)

    def __iter__(self) -> Iterator:
        for _ in range(len(self)):
            yield next(self.iterator)


def seed_worker(worker_id: int) -> None:
    """Set up one worker: OpenCV single-threaded, numpy and random seeded from torch's per-worker seed.

    The workers already run in parallel; OpenCV's own threads on top of them only contend for the same cores
    (mosaic's warpAffine and the HSV cvtColor ran 1.3x slower for it on 2 cores).
    """
    cv2.setNumThreads(0)
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def _max_stride(stride) -> int:
    """An int stride from an int, a 0-d tensor or a per-level list / tensor ([8, 16, 32] -> 32)."""
    try:
        return int(max(stride))
    except TypeError:
        return int(stride)


def create_dataloader(
    path,
    imgsz: int,
    batch_size: int,
    stride: int,
    single_cls: bool = False,
    hyp: Dict | None = None,
    augment: bool = False,
    cache=None,
    pad: float = 0.0,
    rect: bool = False,
    rank: int = -1,
    workers: int = 8,
    image_weights: bool = False,
    quad: bool = False,
    prefix: str = "",
    shuffle: bool = False,
    seed: int = 0,
    min_items: int = 0,
    nc: int | None = None,
) -> Tuple[DataLoader, LoadImagesAndLabels]:
    """-> (loader, dataset). Batches: (ims (B, 3, H, W) uint8 RGB, targets (n, 6) [i, cls, x, y, w, h], paths, shapes).

    Shuffling draws from loader.generator (seeded from seed and rank), whose state the trainer may save and restore;
    with workers=0 augmentation draws from the process's global random / numpy RNGs.
    """
    if rect and shuffle:
        LOGGER.warning("WARNING: --rect is incompatible with DataLoader shuffle, setting shuffle=False")
        shuffle = False
    dataset = LoadImagesAndLabels(
        path, imgsz, batch_size, augment=augment, hyp=hyp, rect=rect, image_weights=image_weights,
        cache_images=cache or None, single_cls=single_cls, stride=_max_stride(stride), pad=pad, min_items=min_items,
        prefix=prefix, rank=rank, seed=seed, nc=nc,
    )  # fmt: skip
    batch_size = min(batch_size, len(dataset))
    nd = torch.cuda.device_count()
    nw = min(os.cpu_count() // max(nd, 1), batch_size if batch_size > 1 else 0, workers)
    sampler = None if rank == -1 else distributed.DistributedSampler(dataset, shuffle=shuffle, seed=seed)
    loader_cls = DataLoader if image_weights else InfiniteDataLoader
    generator = torch.Generator()
    generator.manual_seed(SEED_BASE + seed + max(rank, 0))
    loader = loader_cls(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle and sampler is None,
        num_workers=nw,
        sampler=sampler,
        pin_memory=torch.cuda.is_available(),
        collate_fn=LoadImagesAndLabels.collate_fn4 if quad else LoadImagesAndLabels.collate_fn,
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=False,
    )
    return loader, dataset
