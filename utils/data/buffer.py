"""A bounded least-recently-used store of decoded training images, one per process (each loader worker its own)."""

from __future__ import annotations

import os
from collections import OrderedDict
from typing import Tuple

import numpy as np
import torch.utils.data

Item = Tuple[np.ndarray, Tuple[int, int], Tuple[int, int]]  # (im, (h0, w0), (h, w)) as load_image returns it


class ImageBuffer:
    """Recently decoded images by dataset index, at most `total_mb` over all of a loader's worker processes.

    Mosaic reads four images per sample, so on a dataset that fits the budget every image is decoded about once
    per worker instead of about four times per epoch; on a larger one the hit rate is the budget's share of the
    dataset. Items are shared, never copied: callers must not modify them (the augmentations write to new arrays).
    """

    def __init__(self, total_mb: float = 512):
        self.total_bytes = int(total_mb * 2**20)
        self._reset()

    def _reset(self) -> None:
        self.pid = os.getpid()
        self.limit: int | None = None  # this process's share, set on first use (the worker count is known then)
        self.items: OrderedDict[int, Item] = OrderedDict()
        self.nbytes = 0

    def __getstate__(self):  # a spawned worker starts empty and sets its own share
        return {"total_bytes": self.total_bytes}

    def __setstate__(self, state):
        self.total_bytes = state["total_bytes"]
        self._reset()

    def get(self, i: int) -> Item | None:
        """The item of dataset index i (now the most recently used), or None."""
        if self.pid != os.getpid():  # a forked worker: what the parent held is not its share
            self._reset()
        item = self.items.get(i)
        if item is not None:
            self.items.move_to_end(i)
        return item

    def put(self, i: int, item: Item) -> None:
        """Keep item for index i, dropping the least recently used ones beyond this process's share."""
        if self.limit is None:
            info = torch.utils.data.get_worker_info()
            self.limit = self.total_bytes // (info.num_workers if info is not None else 1)
        size = item[0].nbytes
        if size > self.limit or i in self.items:
            return
        self.items[i] = item
        self.nbytes += size
        while self.nbytes > self.limit:
            _, old = self.items.popitem(last=False)
            self.nbytes -= old[0].nbytes
