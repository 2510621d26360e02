"""The small option objects of the data pipeline: how a dataset loads (DataOptions) and how a loader serves it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping


@dataclass(frozen=True)
class DataOptions:
    """How LoadImagesAndLabels reads and prepares images (YOLOv5's dataset arguments, same names).

    augment: training pictures (random perspective, HSV, flips; create_dataloader adds the Mosaic wrapper unless
    rect); hyp: the augmentation hyperparameters (missing keys take hyp.scratch-low's values); rect: batches of
    similar aspect ratio letterboxed to a shared stride-multiple shape, padded by pad strides; cache_images: 'ram'
    or 'disk'; nc: classes for the label check (None: unchecked); buffer_mb: the decoded-image buffer of a
    training dataset over all loader workers (0: off); rank: only rank -1/0 prints and writes the label cache.
    """

    img_size: int = 640
    batch_size: int = 16
    augment: bool = False
    hyp: Mapping[str, Any] | None = None
    rect: bool = False
    cache_images: str | None = None
    single_cls: bool = False
    stride: int = 32
    pad: float = 0.0
    min_items: int = 0
    prefix: str = ""
    rank: int = -1
    seed: int = 0
    nc: int | None = None
    buffer_mb: float = 512


@dataclass(frozen=True)
class LoaderOptions:
    """How create_dataloader serves a dataset: workers, order, the quad collate, --image-weights, the first epoch.

    image_weights: the sampler draws each pass by weights (EpochSampler.set_weights) and the loader is re-created
    each pass so new weights take effect; it also turns rect off. start_epoch: the epoch of the first pass.
    """

    workers: int = 8
    shuffle: bool = False
    quad: bool = False
    image_weights: bool = False
    start_epoch: int = 0
