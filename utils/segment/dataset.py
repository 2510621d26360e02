"""Images, YOLO segment labels and their rasterised masks; every augmentation moves polygons with the pixels."""

from __future__ import annotations

import random
from typing import List, Tuple

import numpy as np
import torch

from utils.boxes import xyn2xy, xywhn2xyxy, xyxy2xywhn
from utils.data.augment import Mosaic, RandomPerspective, letterbox
from utils.data.dataset import LoadImagesAndLabels
from utils.data.options import DataOptions
from utils.errors import DataError
from utils.segment.ops import polygons_to_masks, polygons_to_overlap


class SegmentDataset(LoadImagesAndLabels):
    """LoadImagesAndLabels whose items also carry masks: (im, labels (n, 6), path, shapes, masks).

    masks: (n, H / r, W / r) uint8, one per instance (overlap False), or (1, H / r, W / r) with 0 background and
    i + 1 for the i-th instance, labels then reordered by descending mask area (overlap True, official default for
    training). r = mask_ratio. The label files are only read (bad rows dropped with a warning by the shared checks).
    """

    owns_mosaic = True  # its mosaics carry polygons: create_dataloader does not wrap it in MosaicDataset

    def __init__(self, path, options: DataOptions = DataOptions(), mask_ratio: int = 4, overlap: bool = True):
        super().__init__(path, options)
        self.mosaic = self.augment and not self.rect
        self.indices = range(len(self))  # the pool mosaic tiles are drawn from (image weights live in the sampler)
        geo = {k: self.hyp[k] for k in ("degrees", "translate", "scale", "shear", "perspective")}
        self.mosaic_fn = Mosaic(
            self.mosaic_item, self.indices, self.img_size, RandomPerspective(**geo), self.hyp["copy_paste"]
        )
        self.mask_ratio, self.overlap = int(mask_ratio), overlap
        if self.mask_ratio < 1:
            raise DataError(f"--mask-ratio must be a positive integer, got {mask_ratio}")
        if self.augment and not any(len(s) for s in self.segments):
            where = ", ".join(map(str, path)) if isinstance(path, (list, tuple)) else path
            raise DataError(f"{self.prefix}{where} has box labels only; segmentation needs polygon labels")

    def _mosaic_or_letterbox(self, index: int) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray], tuple | None]:
        """-> (im BGR, labels (n, 5) [cls, xyxy px], polygons (n of (k, 2) px), shapes or None for mosaics)."""
        if self.mosaic and random.random() < self.hyp["mosaic"]:
            im, labels, segments = self.mosaic_fn.with_segments(index)
            if random.random() < self.hyp["mixup"]:
                im2, labels2, segments2 = self.mosaic_fn.with_segments(random.choice(self.indices))
                r = np.random.beta(32.0, 32.0)
                im = (im * r + im2 * (1 - r)).astype(np.uint8)
                labels, segments = np.concatenate((labels, labels2), 0), [*segments, *segments2]
            return im, labels, segments, None
        im, (h0, w0), (h, w) = self.load_image(index)
        shape = self.batch_shapes[self.batch[index]] if self.rect else self.img_size
        im, ratio, pad = letterbox(im, shape, auto=False, scaleup=self.augment)
        labels = self.labels[index].copy()
        sw, sh = ratio[0] * w, ratio[1] * h
        segments = [xyn2xy(s, sw, sh, padw=pad[0], padh=pad[1]) for s in self.segments[index]]
        if len(labels):
            labels[:, 1:] = xywhn2xyxy(labels[:, 1:], sw, sh, padw=pad[0], padh=pad[1])
        if self.augment:
            im, labels, segments = self.random_perspective.warp(im, labels, segments)
        return im, labels, list(segments), ((h0, w0), ((h / h0, w / w0), pad))

    def _masks(self, shape, labels: np.ndarray, segments: List[np.ndarray]) -> Tuple[np.ndarray, torch.Tensor]:
        """Rasterise the polygons at 1 / mask_ratio -> (labels, possibly reordered, and masks)."""
        r, nl = self.mask_ratio, len(labels)
        h, w = shape[0] // r, shape[1] // r
        if not nl or len(segments) != nl:  # box rows only (e.g. a box-only image): no mask to learn from
            return labels, torch.zeros((1 if self.overlap else nl, h, w), dtype=torch.uint8)
        if self.overlap:
            mask, order = polygons_to_overlap(shape, segments, r)
            return labels[order], torch.from_numpy(mask)[None]
        return labels, torch.from_numpy(polygons_to_masks(shape, segments, r))

    def __getitem__(self, index: int):
        im, labels, segments, shapes = self._mosaic_or_letterbox(index)
        labels, masks = self._masks(im.shape[:2], labels, segments)
        if self.augment:
            im, _ = self.hsv(im, labels)
            if random.random() < self.hyp["flipud"]:
                im, masks = np.flipud(im), masks.flip(1)
                labels = labels.copy()
                labels[:, [2, 4]] = im.shape[0] - labels[:, [4, 2]]
            if random.random() < self.hyp["fliplr"]:
                im, masks = np.fliplr(im), masks.flip(2)
                labels = labels.copy()
                labels[:, [1, 3]] = im.shape[1] - labels[:, [3, 1]]
        out = torch.zeros((len(labels), 6))
        if len(labels):
            xywhn = xyxy2xywhn(labels[:, 1:5], w=im.shape[1], h=im.shape[0], clip=True, eps=1e-3)
            out[:, 1] = torch.from_numpy(np.ascontiguousarray(labels[:, 0]))
            out[:, 2:] = torch.from_numpy(np.ascontiguousarray(xywhn))
        im = np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])
        return torch.from_numpy(im), out, self.im_files[index], shapes, masks

    @staticmethod
    def collate_fn(batch):
        """-> (ims (B, 3, H, W) uint8, targets (n, 6), paths, shapes, masks (B or n, H / r, W / r))."""
        ims, labels, paths, shapes, masks = zip(*batch)
        for i, lb in enumerate(labels):
            lb[:, 0] = i
        return torch.stack(ims, 0), torch.cat(labels, 0), paths, shapes, torch.cat(masks, 0)
