"""LoadImagesAndLabels: lists images, scans and caches their labels, loads (and optionally augments) samples."""

from __future__ import annotations

import hashlib
import logging
import math
import os
import random
import sys
from multiprocessing.pool import ThreadPool
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from utils.boxes import xywhn2xyxy, xyxy2xywhn
from utils.data.augment import AugmentHSV, Mosaic, RandomFlip, RandomPerspective, letterbox, mixup
from utils.data.buffer import ImageBuffer
from utils.data.cache import cache_path_for, files_hash, is_writable_dir, load_cache, save_cache
from utils.data.labels import IMG_FORMATS, img2label_paths, verify_image_label
from utils.errors import DataError
from utils.paths import user_cache_dir

LOGGER = logging.getLogger(__name__)
NUM_THREADS = min(8, max(1, os.cpu_count() or 1))
MAX_PROBLEM_LINES = 30  # problems logged one per line; the rest are counted (all stay in dataset.problems)
AUG_DEFAULTS = {  # hyp.scratch-low values for the keys the data pipeline reads
    "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0, "copy_paste": 0.0,
}  # fmt: skip


def list_image_files(path: Union[str, Path, Sequence]) -> List[str]:
    """Image files of a folder (recursive), a .txt list (relative lines against its folder) or a list of these."""
    files = []
    for p in path if isinstance(path, (list, tuple)) else [path]:
        p = Path(p)
        if p.is_dir():
            files += [str(f) for f in p.rglob("*.*")]
        elif p.is_file():
            lines = p.read_text(encoding="utf-8").splitlines()
            files += [str(p.parent / x.strip()) if not Path(x.strip()).is_absolute() else x.strip() for x in lines]
        else:
            raise DataError(f"{p} does not exist")
    files = sorted(os.path.normpath(f) for f in files if f.rsplit(".", 1)[-1].lower() in IMG_FORMATS)
    if not files:
        raise DataError(f"No images found in {path} (supported: {', '.join(IMG_FORMATS)})")
    return files


def scan_dataset(source: Path, im_files: List[str], label_files: List[str], nc, prefix="", rank=-1) -> Dict:
    """{im_file: verify_image_label result}, from the JSON cache when its hash matches, else scanned (and saved)."""
    locations = cache_path_for(source, label_files)
    hash_ = files_hash(im_files + label_files, extra=f"nc={nc}")
    entries = load_cache(locations, hash_)
    if entries is not None and set(entries) == set(im_files):
        return entries
    entries = {}
    show = rank in (-1, 0) and sys.stdout.isatty()
    with ThreadPool(NUM_THREADS) as pool:
        results = pool.imap(lambda a: verify_image_label(*a, nc), zip(im_files, label_files))
        bar = tqdm(results, total=len(im_files), desc=f"{prefix}Scanning {source}", disable=not show, leave=False)
        for im_file, result in zip(im_files, bar):
            entries[im_file] = result
    if rank in (-1, 0):
        save_cache(locations, hash_, entries)
    return entries


class LoadImagesAndLabels(Dataset):
    """YOLO-format dataset. Items: (im uint8 (3, H, W) RGB, labels (n, 6) [0, cls, x, y, w, h] normalised, path,
    shapes ((h0, w0), ((h / h0, w / w0), (padw, padh))) or None for mosaics).

    Training (augment) datasets keep recently decoded images in an `ImageBuffer` of buffer_mb over all loader
    workers (0 turns it off; --cache ram/disk replace it).
    """

    def __init__(
        self,
        path,
        img_size: int = 640,
        batch_size: int = 16,
        augment: bool = False,
        hyp: Dict | None = None,
        rect: bool = False,
        image_weights: bool = False,
        cache_images: str | None = None,
        single_cls: bool = False,
        stride: int = 32,
        pad: float = 0.0,
        min_items: int = 0,
        prefix: str = "",
        rank: int = -1,
        seed: int = 0,
        nc: int | None = None,
        buffer_mb: float = 512,
    ):
        self.img_size, self.augment, self.image_weights = img_size, augment, image_weights
        self.hyp = {**AUG_DEFAULTS, **(hyp or {})}
        self.rect = False if image_weights else rect
        self.mosaic = augment and not self.rect
        self.mosaic_border = [-img_size // 2, -img_size // 2]
        self.stride, self.path, self.prefix, self.seed = stride, path, prefix, seed
        self.im_files = list_image_files(path)
        self.label_files = img2label_paths(self.im_files)
        source = Path(path[0] if isinstance(path, (list, tuple)) else path)
        nc = None if single_cls else nc  # single_cls: every class becomes 0, so none is out of range
        entries = scan_dataset(source, self.im_files, self.label_files, nc, prefix, rank)
        self._summarise(source, entries)
        self._keep([i for i, f in enumerate(self.im_files) if entries[f]["ok"]], entries)
        if single_cls:
            for lb in self.labels:
                lb[:, 0] = 0
        if min_items:
            n0 = len(self.im_files)
            self._keep([i for i, lb in enumerate(self.labels) if len(lb) >= min_items])
            LOGGER.info(f"{prefix}{n0 - len(self.im_files)}/{n0} images filtered out (fewer than {min_items} labels)")
            if not self.im_files:
                raise DataError(f"{prefix}no images left in {source} with at least {min_items} labels")
        self.n = len(self.im_files)
        self.batch = np.floor(np.arange(self.n) / batch_size).astype(int)
        self.indices = list(range(self.n))
        self.batch_shapes = None
        if self.rect:
            self._rect_shapes(batch_size, pad)
        self.ims: List[np.ndarray | None] = [None] * self.n  # 'ram' cache: resized images and their shapes
        self.buffer = ImageBuffer(buffer_mb) if augment and buffer_mb and not cache_images else None
        self._hw0: List[Tuple[int, int] | None] = [None] * self.n
        self._hw: List[Tuple[int, int] | None] = [None] * self.n
        self.npy_files = [self._npy_path(f) for f in self.im_files] if cache_images == "disk" else None
        if cache_images:
            self._cache_images(cache_images)
        self._build_transforms()

    # ---- scanning ----------------------------------------------------------------------------------------------
    def _summarise(self, source: Path, entries: Dict) -> None:
        """Log one summary line and the per-file problems; keep them in self.problems."""
        status = [e["status"] for e in entries.values()]
        nf, nm, ne, nb = (status.count(s) for s in ("found", "missing", "empty", "corrupt"))
        self.problems = [f"{f}: {p}" for f, e in entries.items() for p in e["problems"]]
        dropped = sum("(dropped)" in p for p in self.problems)
        LOGGER.info(
            f"{self.prefix}Scanning {source}... {nf + nm + ne} images, {nm + ne} backgrounds, {nb} corrupt "
            f"({nf} found, {nm} missing, {ne} empty, {nb} skipped, {dropped} label rows dropped)"
        )
        for p in self.problems[:MAX_PROBLEM_LINES]:
            LOGGER.warning(f"{self.prefix}WARNING: {p}")
        if len(self.problems) > MAX_PROBLEM_LINES:
            LOGGER.warning(f"{self.prefix}... and {len(self.problems) - MAX_PROBLEM_LINES} more (see .problems)")
        if nf == 0 and self.augment:
            raise DataError(f"{self.prefix}No labels found for {source}, cannot start training")
        if nf + nm + ne == 0:
            raise DataError(f"{self.prefix}No usable images in {source}")

    def _keep(self, idx: List[int], entries: Dict | None = None) -> None:
        """Keep only the images at idx (building labels/shapes/segments from scan entries when given)."""
        self.im_files = [self.im_files[i] for i in idx]
        self.label_files = [self.label_files[i] for i in idx]
        if entries is not None:
            self.labels = [entries[f]["labels"] for f in self.im_files]
            self.segments = [entries[f]["segments"] for f in self.im_files]
            self.shapes = np.array([entries[f]["shape"] for f in self.im_files], dtype=np.float64).reshape(-1, 2)
        else:
            self.labels = [self.labels[i] for i in idx]
            self.segments = [self.segments[i] for i in idx]
            self.shapes = self.shapes[idx]

    def _rect_shapes(self, batch_size: int, pad: float) -> None:
        """Sort images by aspect ratio (h / w) and give each batch the smallest stride-multiple shape (h, w)."""
        ar = self.shapes[:, 1] / self.shapes[:, 0]
        order = ar.argsort()
        self._keep(list(order))
        ar = ar[order]
        nb = self.batch[-1] + 1
        shapes = [[1, 1]] * nb
        for i in range(nb):
            ari = ar[self.batch == i]
            lo, hi = ari.min(), ari.max()
            if hi < 1:
                shapes[i] = [hi, 1]
            elif lo > 1:
                shapes[i] = [1, 1 / lo]
        self.batch_shapes = np.ceil(np.array(shapes) * self.img_size / self.stride + pad).astype(int) * self.stride

    # ---- image loading -----------------------------------------------------------------------------------------
    def _npy_path(self, im_file: str) -> Path:
        """Disk-cache file: beside the image when its folder is writable, else in the user cache folder."""
        p = Path(im_file)
        if is_writable_dir(p.parent):
            return p.with_suffix(".npy")
        key = hashlib.sha1(str(p.resolve()).encode()).hexdigest()[:20]
        return user_cache_dir() / "images" / f"{p.stem}-{key}.npy"

    def _cache_images(self, mode: str) -> None:
        """'ram': keep resized images in memory; 'disk': save decoded originals as .npy files once.

        Images are decoded in a thread pool (cv2 and numpy release the GIL), in index order for the log.
        """

        def one(i: int) -> float:
            if mode == "disk":
                f = self.npy_files[i]
                if not f.is_file():
                    f.parent.mkdir(parents=True, exist_ok=True)
                    np.save(f, self._read(self.im_files[i]))
                return f.stat().st_size / 1e9
            self.ims[i], self._hw0[i], self._hw[i] = self.load_image(i)
            return self.ims[i].nbytes / 1e9

        with ThreadPool(NUM_THREADS) as pool:
            gb = sum(pool.imap(one, range(self.n)))
        LOGGER.info(f"{self.prefix}Caching images ({gb:.2f}GB {mode})")

    @staticmethod
    def _read(im_file: str) -> np.ndarray:
        im = cv2.imread(im_file)  # BGR, EXIF orientation applied
        if im is None:
            raise DataError(f"cannot read image {im_file}")
        return im

    @staticmethod
    def _read_reduced(im_file: str, r: float) -> np.ndarray:
        """Training images that will be shrunk to r <= 1/2 (or 1/4, 1/8) are decoded at that reduced size: a JPEG
        decodes 2-3x faster and the resize after it has a quarter of the pixels (or none)."""
        for k, flag in (
            (8, cv2.IMREAD_REDUCED_COLOR_8),
            (4, cv2.IMREAD_REDUCED_COLOR_4),
            (2, cv2.IMREAD_REDUCED_COLOR_2),
        ):
            if r * k <= 1:
                im = cv2.imread(im_file, flag)
                if im is None:
                    raise DataError(f"cannot read image {im_file}")
                return im
        return LoadImagesAndLabels._read(im_file)

    def load_image(self, i: int) -> Tuple[np.ndarray, Tuple[int, int], Tuple[int, int]]:
        """-> (im BGR resized so its long side is img_size, (h0, w0) original, (h, w) resized)."""
        if self.ims[i] is not None:
            return self.ims[i], self._hw0[i], self._hw[i]
        if self.buffer is not None and (item := self.buffer.get(i)) is not None:
            return item
        item = self._decode(i)
        if self.buffer is not None:
            self.buffer.put(i, item)
        return item

    def _decode(self, i: int) -> Tuple[np.ndarray, Tuple[int, int], Tuple[int, int]]:
        """load_image without the caches: read (or np.load) and resize image i."""
        f = self.npy_files[i] if self.npy_files is not None else None
        w0, h0 = (int(v) for v in self.shapes[i])  # from the label scan, EXIF orientation applied
        r = self.img_size / max(h0, w0)
        if f is not None and f.is_file():
            im = np.load(f)
        elif self.augment and r <= 0.5:  # training only: validation pixels stay exactly YOLOv5's
            im = self._read_reduced(self.im_files[i], r)
            if (im.shape[0] > im.shape[1]) != (h0 > w0):  # the scan and the decoder disagree on orientation
                im = self._read(self.im_files[i])
        else:
            im = self._read(self.im_files[i])
        if im.shape[0] * im.shape[1] >= h0 * w0:  # decoded at full size: its own shape is the original
            h0, w0 = im.shape[:2]
            r = self.img_size / max(h0, w0)
        new = (math.ceil(w0 * r), math.ceil(h0 * r))
        if r != 1 and (im.shape[1], im.shape[0]) != new:
            interp = cv2.INTER_LINEAR if (self.augment or r > 1) else cv2.INTER_AREA
            im = cv2.resize(im, new, interpolation=interp)
        return im, (h0, w0), im.shape[:2]

    # ---- samples -----------------------------------------------------------------------------------------------
    def _build_transforms(self) -> None:
        """Augmentation callables from the hyp dict (read once, here)."""
        h = self.hyp
        geo = {k: h[k] for k in ("degrees", "translate", "scale", "shear", "perspective")}
        self.random_perspective = RandomPerspective(**geo)
        self.hsv = AugmentHSV(h["hsv_h"], h["hsv_s"], h["hsv_v"])
        self.flip = RandomFlip(h["flipud"], h["fliplr"])
        self.mosaic_fn = Mosaic(
            self._mosaic_item, self.indices, self.img_size, RandomPerspective(**geo), h["copy_paste"]
        )

    def _mosaic_item(self, i: int) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
        return self.load_image(i)[0], self.labels[i], self.segments[i]

    def __len__(self) -> int:
        return len(self.im_files)

    def _letterboxed(self, index: int) -> Tuple[np.ndarray, np.ndarray, Tuple]:
        """Non-mosaic sample: -> (im letterboxed, labels (n, 5) [cls, xyxy px], shapes for rescaling)."""
        im, (h0, w0), (h, w) = self.load_image(index)
        shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
        im, ratio, pad = letterbox(im, shape, auto=False, scaleup=self.augment)
        shapes = (h0, w0), ((h / h0, w / w0), pad)
        labels = self.labels[index].copy()
        if len(labels):
            labels[:, 1:] = xywhn2xyxy(labels[:, 1:], ratio[0] * w, ratio[1] * h, padw=pad[0], padh=pad[1])
        return im, labels, shapes

    def __getitem__(self, index: int):
        if self.mosaic and random.random() < self.hyp["mosaic"]:
            im, labels = self.mosaic_fn(index)
            shapes = None
            if random.random() < self.hyp["mixup"]:
                im, labels = mixup(im, labels, *self.mosaic_fn(random.choice(self.indices)))
        else:
            im, labels, shapes = self._letterboxed(index)
            if self.augment:
                im, labels = self.random_perspective(im, labels)
        if self.augment:
            im, labels = self.flip(*self.hsv(im, labels))
        nl = len(labels)
        out = torch.zeros((nl, 6))
        if nl:
            xywhn = xyxy2xywhn(labels[:, 1:5], w=im.shape[1], h=im.shape[0], clip=True, eps=1e-3)
            out[:, 1] = torch.from_numpy(np.ascontiguousarray(labels[:, 0]))
            out[:, 2:] = torch.from_numpy(np.ascontiguousarray(xywhn))
        im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB
        return torch.from_numpy(im), out, self.im_files[index], shapes

    @staticmethod
    def collate_fn(batch):
        """-> (ims (B, 3, H, W) uint8, targets (n, 6) with the image index in column 0, paths, shapes)."""
        ims, labels, paths, shapes = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        return torch.stack(ims, 0), torch.cat(labels, 0), paths, shapes

    @staticmethod
    def collate_fn4(batch):
        """Quad collate: each group of 4 images becomes one 2x-size image (a 2x2 tile or one image upscaled)."""
        ims, labels, paths, shapes = zip(*batch)
        n = len(shapes) // 4
        ims4, labels4 = [], []
        ho = torch.tensor([[0.0, 0, 0, 1, 0, 0]])  # shift one tile down (y + 1 before the 0.5 scale)
        wo = torch.tensor([[0.0, 0, 1, 0, 0, 0]])  # shift one tile right
        scale = torch.tensor([[1, 1, 0.5, 0.5, 0.5, 0.5]])
        for i in range(0, n * 4, 4):
            if random.random() < 0.5:
                im = F.interpolate(ims[i][None].float(), scale_factor=2.0, mode="bilinear", align_corners=False)
                ims4.append(im[0].to(ims[i].dtype))
                labels4.append(labels[i])
            else:
                top, bottom = torch.cat((ims[i], ims[i + 1]), 2), torch.cat((ims[i + 2], ims[i + 3]), 2)
                ims4.append(torch.cat((top, bottom), 1))
                lb = torch.cat((labels[i], labels[i + 1] + wo, labels[i + 2] + ho, labels[i + 3] + ho + wo), 0)
                labels4.append(lb * scale)
        for i, lb in enumerate(labels4):
            lb[:, 0] = i
        return torch.stack(ims4, 0), torch.cat(labels4, 0), paths[:n], shapes[:n]
