"""Segmentation figures: val_batch images with their masks blended in, and masks drawn on a prediction image."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.deploy.annotate import colors
from utils.segment.ops import overlap_to_masks
from utils.val.plots import output_to_target, plot_images


def blend_masks(image: np.ndarray, masks: torch.Tensor, classes: Sequence[int], alpha: float = 0.5,
                bgr: bool = False) -> np.ndarray:  # fmt: skip
    """image (H, W, 3) uint8 RGB (BGR with bgr) with masks (n, h, w) in their class colours blended in; masks of
    another size are resized (bilinear, > 0.5). Later masks are drawn over earlier ones."""
    if not len(masks):
        return image
    h, w = image.shape[:2]
    m = masks.float()
    if tuple(m.shape[1:]) != (h, w):
        m = F.interpolate(m[None], (h, w), mode="bilinear", align_corners=False)[0].gt_(0.5)
    out = image.astype(np.float32)
    for mi, c in zip(m.cpu().numpy().astype(bool), classes):
        out[mi] = out[mi] * (1 - alpha) + np.array(colors(int(c), bgr), np.float32) * alpha
    return out.clip(0, 255).astype(np.uint8)


def with_masks(im: torch.Tensor, per_image: Sequence[tuple]) -> np.ndarray:
    """(B, 3, H, W) batch (uint8 or 0-1) -> (B, 3, H, W) uint8 RGB with each image's (masks, classes) blended."""
    arr = im.detach().cpu().float().numpy()
    arr = arr * 255 if arr.size and arr.max() <= 1 else arr
    out = []
    for i, x in enumerate(arr.clip(0, 255).astype(np.uint8)):
        masks, classes = per_image[i] if i < len(per_image) else (torch.zeros(0), [])
        out.append(blend_masks(np.ascontiguousarray(x.transpose(1, 2, 0)), masks, classes).transpose(2, 0, 1))
    return np.stack(out) if out else arr


def masks_per_image(targets: torch.Tensor, masks: torch.Tensor, bs: int, overlap: bool) -> list:
    """A batch's ground truth as per image (masks (n, h, w), classes): from overlap masks or per-instance ones."""
    out = []
    for si in range(bs):
        cls = targets[targets[:, 0] == si, 1].int().tolist()
        m = overlap_to_masks(masks[si], len(cls)) if overlap else masks[targets[:, 0] == si]
        out.append((m, cls))
    return out


def plot_val_batch(i: int, im, targets, masks, results, paths, save_dir: Path, names: Dict[int, str], overlap: bool):
    """val_batch{i}_labels.jpg (ground-truth boxes and masks) and val_batch{i}_pred.jpg (top 15 instances each)."""
    gts = masks_per_image(targets, masks, im.shape[0], overlap)
    plot_images(with_masks(im, gts), targets, paths, save_dir / f"val_batch{i}_labels.jpg", names)
    preds = [(r.masks[:15], r.det[:15, 5].int().tolist()) for r in results]
    plot_images(with_masks(im, preds), output_to_target([r.det for r in results], max_det=15), paths,
                save_dir / f"val_batch{i}_pred.jpg", names)  # fmt: skip
