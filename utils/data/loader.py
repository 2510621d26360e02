"""Dataloaders: create_dataloader as YOLOv5 has it, an InfiniteDataLoader keeping its workers, epoch-seeded samples."""

from __future__ import annotations

import contextlib
import ctypes
import logging
import math
import os
import random
from dataclasses import replace
from typing import Any, Callable, Iterator, Mapping, Tuple

import cv2
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, Sampler

from utils.data.dataset import LoadImagesAndLabels
from utils.data.mosaic import MosaicDataset
from utils.data.options import DataOptions, LoaderOptions

LOGGER = logging.getLogger(__name__)
SEED_BASE = 6148914691236517205  # a fixed odd 64-bit constant mixed into the loader generator's seed


class EpochSampler(Sampler):
    """One pass over the dataset per epoch, as (index, sample seed) pairs that depend only on (seed, epoch, position).

    Each pass uses `epoch` and then increments it, so a pass never depends on how far a loader iterator, its
    prefetching or its workers have got: a resumed run that sets `epoch` to its start epoch gets the same passes,
    the same images in the same order with the same augmentation draws, as the uninterrupted run. Under DDP every
    rank draws the same permutation (padded to a multiple of world_size, as DistributedSampler) and takes every
    world_size-th item from its rank on.

    set_weights(w) (--image-weights): later passes draw n images with replacement, image i with probability
    w[i] / sum(w), from the same (seed, epoch) generator; None goes back to plain passes.
    """

    def __init__(self, n: int, shuffle: bool, seed: int = 0, rank: int = -1, world_size: int = 1, epoch: int = 0):
        self.n, self.shuffle, self.seed, self.epoch = n, shuffle, seed, epoch
        self.rank, self.world_size = max(rank, 0), max(world_size, 1) if rank != -1 else 1
        self.weights: torch.Tensor | None = None

    def set_weights(self, weights: np.ndarray | None) -> None:
        """(n,) non-negative sampling weights for the next passes (ignored when they sum to 0), or None."""
        w = None if weights is None else torch.as_tensor(np.asarray(weights, dtype=np.float64))
        self.weights = w if w is not None and float(w.sum()) > 0 else None

    def __len__(self) -> int:
        return math.ceil(self.n / self.world_size)

    def __iter__(self) -> Iterator[Tuple[int, int]]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        g = torch.Generator()
        g.manual_seed(_mix(self.seed, epoch))
        if self.weights is not None:
            order = torch.multinomial(self.weights, self.n, replacement=True, generator=g).tolist()
        elif self.shuffle:
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        total = len(self) * self.world_size
        order = (order * math.ceil(total / max(self.n, 1)))[:total]  # pad by repeating the head
        for pos in range(self.rank, total, self.world_size):
            yield order[pos], _mix(self.seed, epoch, pos) % 2**32


def _mix(*values: int) -> int:
    """A well-spread 64-bit seed from a few integers (numpy's SeedSequence hash)."""
    return int(np.random.SeedSequence([v % 2**63 for v in values]).generate_state(1, np.uint64)[0])


class SeededSamples(Dataset):
    """Wrap a dataset so item (index, seed) is built with `random` and `numpy.random` seeded from seed.

    The global states are put back afterwards, so a single-process loader leaves the trainer's RNGs untouched.
    Returns (seed, sample) pairs for SeededCollate.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: Tuple[int, int]):
        index, seed = item
        with _seeded(seed):
            return seed, self.dataset[index]


class SeededCollate:
    """Collate (seed, sample) pairs with fn, its random draws (e.g. the quad collate's) seeded from the first seed."""

    def __init__(self, fn: Callable):
        self.fn = fn

    def __call__(self, batch: list):
        seeds, samples = zip(*batch)
        with _seeded(seeds[0] ^ 0x5BD1E995):
            return self.fn(list(samples))


@contextlib.contextmanager
def _seeded(seed: int) -> Iterator[None]:
    saved = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    try:
        yield
    finally:
        random.setstate(saved[0])
        np.random.set_state(saved[1])


class _RepeatSampler:
    """Yield from a batch sampler forever (one full pass per epoch)."""

    def __init__(self, sampler):
        self.sampler = sampler

    def __iter__(self) -> Iterator:
        while True:
            yield from iter(self.sampler)


class InfiniteDataLoader(DataLoader):
    """DataLoader whose worker processes live across epochs; len() is still one epoch of batches.

    Iterate it once per epoch; each pass yields exactly len(self) batches from one long-lived iterator, which is
    made on the first pass (so the sampler's start epoch can still be set after construction).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        object.__setattr__(self, "batch_sampler", _RepeatSampler(self.batch_sampler))
        self.iterator = None

    def __len__(self) -> int:
        return len(self.batch_sampler.sampler)

    def start(self) -> None:
        """Make the long-lived iterator now: its workers fork and begin loading the first batches while the caller
        goes on (a training builds its optimizer and EMA meanwhile). Batches are the same whenever it starts: each
        pass is seeded by (seed, epoch, position) and the base seed comes from the loader's own generator."""
        if self.iterator is None:
            if self.num_workers > 0:
                release_free_heap()
            self.iterator = super().__iter__()

    def __iter__(self) -> Iterator:
        self.start()
        for _ in range(len(self)):
            yield next(self.iterator)


def release_free_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc's malloc_trim; nothing elsewhere), before forking workers.

    After a fork, each page the parent writes to while its workers live is first copied (copy-on-write), and a
    trained model's process holds hundreds of MB of freed heap that its next forward reuses. Released pages come
    back as fresh zero pages, which cost less: the first validation forward after forking the val workers took
    0.48 s instead of 0.80 s (yolov5n, batch 32 at 320, after one training epoch). The trim itself took 0.07 s.
    """
    try:
        trim = ctypes.CDLL(None).malloc_trim  # the process's own symbols, libc's among them
    except (OSError, AttributeError, TypeError):  # not glibc (macOS, musl, Windows): nothing to do
        return
    trim(0)


def seed_worker(worker_id: int) -> None:
    """Set up one worker: OpenCV single-threaded, numpy and random seeded from torch's per-worker seed.

    The workers already run in parallel; OpenCV's own threads on top of them only contend for the same cores
    (mosaic's warpAffine and the HSV cvtColor ran 1.3x slower for it on 2 cores). Samples are re-seeded one by
    one by SeededSamples, so augmentation does not depend on these seeds.
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


def drop_single_last(n: int, batch_size: int, world: int, imgsz: int, stride: int) -> bool:
    """Whether a training loader leaves out a last batch of one image: below 2 strides the deepest map can be 1x1,
    and BatchNorm cannot train on one value per channel there (says so once when it does)."""
    drop = imgsz < 2 * stride and batch_size > 1 and math.ceil(n / world) % batch_size == 1
    if drop:
        LOGGER.info(f"{n} training images in batches of {batch_size}: each pass leaves out its last image")
    return drop


def create_dataloader(
    path,
    data: DataOptions = DataOptions(),
    loader: LoaderOptions = LoaderOptions(),
    dataset_cls: type = LoadImagesAndLabels,
    dataset_kwargs: Mapping[str, Any] | None = None,
) -> Tuple[DataLoader, LoadImagesAndLabels]:
    """-> (loader, dataset). Batches: (ims (B, 3, H, W) uint8 RGB, targets (n, 6) [i, cls, x, y, w, h], paths, shapes).

    A training dataset (augment, not rect) is served through the MosaicDataset wrapper; the returned dataset is the
    plain one (labels, shapes). Every pass (epoch) is a pure function of (seed, epoch, position): the order, and
    each sample's augmentation draws (see EpochSampler, SeededSamples); loader.sampler.epoch is the epoch of the next
    pass (start_epoch at first).
    dataset_cls (a LoadImagesAndLabels subclass, e.g. a task's) is built with dataset_kwargs and serves its own
    collate_fn; one whose `owns_mosaic` is True composes its mosaics itself and is not wrapped.
    """
    shuffle = loader.shuffle
    if data.rect and shuffle:
        LOGGER.warning("WARNING: --rect is incompatible with DataLoader shuffle, setting shuffle=False")
        shuffle = False
    if loader.image_weights:  # weighted draws replace the rectangular batches' fixed order
        data = replace(data, rect=False)
    dataset = dataset_cls(path, replace(data, stride=_max_stride(data.stride)), **(dataset_kwargs or {}))
    wrap = data.augment and not data.rect and not getattr(dataset_cls, "owns_mosaic", False)
    served = MosaicDataset(dataset) if wrap else dataset
    batch_size = min(data.batch_size, len(dataset))
    nd = torch.cuda.device_count()
    nw = min(os.cpu_count() // max(nd, 1), batch_size if batch_size > 1 else 0, loader.workers)
    rank, seed = data.rank, data.seed
    world = (dist.get_world_size() if dist.is_initialized() else int(os.getenv("WORLD_SIZE", 1))) if rank != -1 else 1
    sampler = EpochSampler(len(dataset), shuffle, seed, rank, world, epoch=loader.start_epoch)
    drop_last = data.augment and drop_single_last(
        len(dataset), batch_size, world, data.img_size, _max_stride(data.stride)
    )
    loader_cls = DataLoader if loader.image_weights else InfiniteDataLoader  # a new pass picks up new weights
    generator = torch.Generator()
    generator.manual_seed(SEED_BASE + seed + max(rank, 0))
    collate = dataset_cls.collate_fn4 if loader.quad else dataset_cls.collate_fn
    out = loader_cls(
        SeededSamples(served),
        batch_size=batch_size,
        shuffle=False,
        num_workers=nw,
        drop_last=drop_last,
        sampler=sampler,
        pin_memory=torch.cuda.is_available(),
        collate_fn=SeededCollate(collate),
        worker_init_fn=seed_worker,
        generator=generator,
        persistent_workers=False,
    )
    return out, dataset
