"""Classification transforms on BGR uint8 images: official YOLOv5's eval crop and its train augmentations.

Every transform returns a BGR uint8 (size, size, 3) array; `to_chw_rgb` makes the (3, size, size) RGB tensor a batch
holds, and `normalize` (on the batch, on the model's device) applies the ImageNet mean and std as official does.
Random draws use numpy's global generator, which the loader seeds per sample (utils/data/loader.SeededSamples).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)  # RGB
IMAGENET_STD = (0.229, 0.224, 0.225)


def center_crop(im: np.ndarray, size: int) -> np.ndarray:
    """Official eval transform: the centred min(H, W) square, resized (bilinear) to size x size."""
    h, w = im.shape[:2]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    return cv2.resize(im[top : top + m, left : left + m], (size, size), interpolation=cv2.INTER_LINEAR)


def random_resized_crop(
    im: np.ndarray, size: int, scale: tuple = (0.08, 1.0), ratio: tuple = (3 / 4, 4 / 3)
) -> np.ndarray:
    """A random crop of scale x the area and aspect ratio in ratio (log-uniform), resized to size x size
    (Inception-style, 10 tries, then the centred crop clamped to ratio)."""
    h, w = im.shape[:2]
    area = h * w
    log_r = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * np.random.uniform(*scale)
        r = math.exp(np.random.uniform(*log_r))
        cw, ch = int(round(math.sqrt(target * r))), int(round(math.sqrt(target / r)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = np.random.randint(0, h - ch + 1), np.random.randint(0, w - cw + 1)
            break
    else:  # fall back to the whole image, cropped to the nearest allowed ratio
        r = w / h
        cw, ch = (
            (w, int(round(w / ratio[0]))) if r < ratio[0] else (int(round(h * ratio[1])), h) if r > ratio[1] else (w, h)
        )
        cw, ch = min(cw, w), min(ch, h)
        top, left = (h - ch) // 2, (w - cw) // 2
    return cv2.resize(im[top : top + ch, left : left + cw], (size, size), interpolation=cv2.INTER_LINEAR)


def color_jitter(im: np.ndarray, strength: float = 0.4) -> np.ndarray:
    """Brightness, contrast and saturation each scaled by U(1 - s, 1 + s), in a random order (no hue change)."""
    x = im.astype(np.float32)
    for op in np.random.permutation(3):
        f = np.random.uniform(max(0.0, 1 - strength), 1 + strength)
        if op == 0:  # brightness
            x *= f
        else:
            gray = x @ np.array([0.114, 0.587, 0.299], np.float32)  # BGR luma (H, W)
            if op == 1:  # contrast: towards the mean grey
                x = (x - gray.mean()) * f + gray.mean()
            else:  # saturation: towards each pixel's grey
                x = (x - gray[..., None]) * f + gray[..., None]
        np.clip(x, 0, 255, out=x)
    return x.round().astype(np.uint8)


class ClassifyAugment:
    """Official YOLOv5 training augmentation: random resized crop, horizontal (and vertical) flip, colour jitter."""

    def __init__(self, size: int, scale=(0.08, 1.0), hflip: float = 0.5, vflip: float = 0.0, jitter: float = 0.4):
        self.size, self.scale, self.hflip, self.vflip, self.jitter = size, tuple(scale), hflip, vflip, jitter

    def __call__(self, im: np.ndarray) -> np.ndarray:
        im = random_resized_crop(im, self.size, self.scale)
        if self.hflip and np.random.rand() < self.hflip:
            im = im[:, ::-1]
        if self.vflip and np.random.rand() < self.vflip:
            im = im[::-1]
        return color_jitter(im, self.jitter) if self.jitter else np.ascontiguousarray(im)


class ClassifyEval:
    """Official YOLOv5 eval transform (the square centre crop resized to size)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, im: np.ndarray) -> np.ndarray:
        return center_crop(im, self.size)


def to_chw_rgb(im: np.ndarray) -> torch.Tensor:
    """BGR (H, W, 3) uint8 -> RGB (3, H, W) uint8 tensor."""
    return torch.from_numpy(np.ascontiguousarray(im.transpose(2, 0, 1)[::-1]))


def normalize(ims: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (B, 3, H, W) -> float (x / 255 - mean) / std, on the batch's device (ImageNet statistics)."""
    mean = torch.tensor(IMAGENET_MEAN, device=ims.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=ims.device).view(1, 3, 1, 1)
    return (ims.float() / 255.0 - mean) / std
