"""ImageFolder classification data (root/<class>/<image>), as official YOLOv5 reads it, plus its dataloader.

Bad files (not an image format, or an image that cannot be decoded) are skipped with one warning each; a root with
no class folders, or a class folder without images, is a one-line DataError.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset

from utils.classify.augment import ClassifyAugment, ClassifyEval, to_chw_rgb
from utils.data.image_io import ImageTooLarge, header_size
from utils.data.labels import IMG_FORMATS
from utils.data.loader import (
    SEED_BASE,
    EpochSampler,
    InfiniteDataLoader,
    SeededCollate,
    SeededSamples,
    drop_single_last,
    seed_worker,
)
from utils.data.sources import read_image
from utils.errors import DataError
from utils.paths import user_cache_dir

LOGGER = logging.getLogger(__name__)


def split_dir(data: str | Path, split: str) -> Path:
    """--data folder -> its split folder: 'train', or for evaluation 'test' when present else 'val' (as official)."""
    data = Path(data)
    if not data.is_dir():
        raise DataError(f"--data {data}: folder not found (expected train/ and val/ or test/ with a folder per class)")
    if split == "train":
        d = data / "train"
    else:
        d = data / "test" if (data / "test").is_dir() else data / "val"
    if not d.is_dir():
        raise DataError(f"--data {data}: no {d.name}/ folder")
    return d


def _unreadable(f: str) -> str:
    """Why the file cannot be used ('' when its header reads as an image of a sane, non-zero size). Cheap: pixels
    are decoded only when used."""
    try:
        w, h, _ = header_size(f)
    except ImageTooLarge as e:
        return str(e)
    except Exception:  # PIL cannot identify it (OSError, ValueError, SyntaxError, struct errors of a bad header)
        return "the image cannot be decoded"
    return "" if w > 0 and h > 0 else "the image cannot be decoded"


def disk_cache_path(f: str) -> Path:
    """--cache disk: the .npy of an image, in the user cache folder (dataset folders are never written), named by a
    hash of the image's path, size and mtime."""
    p = Path(f)
    st = p.stat()
    key = hashlib.sha1(os.fsencode(p.resolve()) + f"{st.st_size}-{st.st_mtime_ns}".encode()).hexdigest()[:20]
    return user_cache_dir() / "images-cls" / f"{p.stem}-{key}.npy"


def scan_folder(root: str | Path, check: bool = True, warn: bool = True) -> Tuple[List[str], List[Tuple[str, int]]]:
    """(class names sorted, [(file, class index)]) for an ImageFolder root; bad files skipped, with one warning each
    when warn (the options check passes warn=False: the dataset that reads the files warns)."""
    root = Path(root)
    classes = sorted(d.name for d in os.scandir(root) if d.is_dir() and not d.name.startswith("."))
    if not classes:
        raise DataError(f"{root}: no class folders (expected {root}/<class name>/<images>)")
    samples = []
    for i, c in enumerate(classes):
        files = sorted(str(Path(dp) / f) for dp, _, fs in os.walk(root / c, followlinks=True) for f in fs)
        good, log = 0, LOGGER.warning if warn else LOGGER.debug
        for f in files:
            if Path(f).name.startswith("."):
                continue
            if f.rsplit(".", 1)[-1].lower() not in IMG_FORMATS:
                log(f"skipping {f}: not a supported image format ({', '.join(IMG_FORMATS)})")
            elif check and (why := _unreadable(f)):
                log(f"skipping {f}: {why}")
            else:
                samples.append((f, i))
                good += 1
        if not good:
            raise DataError(f"{root}: class folder '{c}' has no images")
    return classes, samples


class ClassificationDataset(Dataset):
    """Item i -> (image (3, size, size) uint8 RGB, class index). Train: official augmentations; else the eval crop.

    cache: 'ram' keeps decoded images in memory, 'disk' a .npy per image in the user cache folder (official: beside
    the image); None reads each time.
    """

    def __init__(self, root: str | Path, imgsz: int = 224, augment: bool = False, cache: str | bool | None = None):
        self.root = Path(root)
        first = not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0  # DDP: rank 0 warns
        self.classes, self.samples = scan_folder(self.root, warn=first)
        self.transform = ClassifyAugment(imgsz) if augment else ClassifyEval(imgsz)
        self.cache = "ram" if cache is True else (cache or None)
        if self.cache not in (None, "ram", "disk"):
            raise DataError(f"--cache {cache}: use ram or disk")
        self.ims: List[np.ndarray | None] = [None] * len(self.samples)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> np.ndarray:
        f = self.samples[i][0]
        if self.cache == "ram":
            if self.ims[i] is None:
                self.ims[i] = read_image(f)
            return self.ims[i]
        if self.cache == "disk":
            npy = disk_cache_path(f)
            if not npy.is_file():
                im = read_image(f)
                if im is None:
                    return None
                npy.parent.mkdir(parents=True, exist_ok=True)
                tmp = npy.with_name(f"{npy.stem}.{os.getpid()}.tmp.npy")
                np.save(tmp, im)
                os.replace(tmp, npy)  # whole or absent, when workers race or the disk fills
            return np.load(npy)
        return read_image(f)

    def __getitem__(self, i: int) -> Tuple[torch.Tensor, int]:
        for j in range(len(self.samples)):  # an image whose pixels fail to decode: warn, take the next one
            k = (i + j) % len(self.samples)
            im = self._load(k)
            if im is not None:
                return to_chw_rgb(self.transform(im)), self.samples[k][1]
            LOGGER.warning(f"skipping {self.samples[k][0]}: the image cannot be decoded")
        raise DataError(f"{self.root}: no image can be decoded")

    @staticmethod
    def collate_fn(batch: list) -> Tuple[torch.Tensor, torch.Tensor]:
        """[(im, label)] -> (ims (B, 3, H, W) uint8, labels (B,) int64)."""
        ims, labels = zip(*batch)
        return torch.stack(ims), torch.tensor(labels, dtype=torch.long)


def create_classification_dataloader(
    path: str | Path,
    imgsz: int = 224,
    batch_size: int = 16,
    augment: bool = True,
    cache=None,
    rank: int = -1,
    workers: int = 8,
    shuffle: bool = True,
    seed: int = 0,
    start_epoch: int = 0,
) -> Tuple[InfiniteDataLoader, ClassificationDataset]:
    """-> (loader, dataset); batches (ims (B, 3, H, W) uint8 RGB, labels (B,)). Each pass depends only on
    (seed, epoch) (order and augmentation draws; see utils/data/loader.EpochSampler), so resume is exact."""
    dataset = ClassificationDataset(path, imgsz, augment=augment, cache=cache)
    batch_size = max(1, min(batch_size, len(dataset)))
    nd = torch.cuda.device_count()
    nw = min(os.cpu_count() // max(nd, 1), batch_size if batch_size > 1 else 0, workers)
    world = (dist.get_world_size() if dist.is_initialized() else int(os.getenv("WORLD_SIZE", 1))) if rank != -1 else 1
    generator = torch.Generator()
    generator.manual_seed(SEED_BASE + seed + max(rank, 0))
    drop_last = augment and drop_single_last(len(dataset), batch_size, world, imgsz, 32)  # a stride-32 classifier
    loader = InfiniteDataLoader(
        SeededSamples(dataset),
        batch_size=batch_size,
        shuffle=False,
        num_workers=nw,
        drop_last=drop_last,
        sampler=EpochSampler(len(dataset), shuffle, seed, rank, world, epoch=start_epoch),
        pin_memory=torch.cuda.is_available(),
        collate_fn=SeededCollate(ClassificationDataset.collate_fn),
        worker_init_fn=seed_worker,
        generator=generator,
    )
    return loader, dataset
