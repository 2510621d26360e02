"""Mosaic and mixup as a dataset wrapper (as YOLOX's MosaicDetection): the wrapped dataset only loads samples."""

from __future__ import annotations

import random

from torch.utils.data import Dataset

from utils.data.augment import Mosaic, RandomPerspective, mixup


class MosaicDataset(Dataset):
    """Wrap a training LoadImagesAndLabels: with probability hyp['mosaic'] an item is a 4-image mosaic (its own
    image and 3 random others, warped by the random perspective), then with probability hyp['mixup'] blended with a
    second mosaic; otherwise it is the dataset's own augmented item. Items keep the dataset's layout (shapes None
    for mosaics). The random draws are those YOLOv5 makes, in its order."""

    def __init__(self, dataset):
        h = dataset.hyp
        geo = {k: h[k] for k in ("degrees", "translate", "scale", "shear", "perspective")}
        self.dataset, self.p_mosaic, self.p_mixup = dataset, h["mosaic"], h["mixup"]
        self.indices = range(len(dataset))  # the pool the other tiles are drawn from
        self.tile = Mosaic(
            dataset.mosaic_item, self.indices, dataset.img_size, RandomPerspective(**geo), h["copy_paste"]
        )

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        if random.random() < self.p_mosaic:
            im, labels = self.tile(index)
            if random.random() < self.p_mixup:
                im, labels = mixup(im, labels, *self.tile(random.choice(self.indices)))
            return self.dataset.to_item(im, labels, index, None)
        return self.dataset[index]
