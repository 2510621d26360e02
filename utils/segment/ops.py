"""Mask maths: prototypes x coefficients -> instance masks, crops, rescaling, polygons <-> masks, mask IoU."""

from __future__ import annotations

from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def crop_mask(masks: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """Zero masks (n, h, w) outside their boxes (n, 4) xyxy in mask pixels (a pixel is in when x1 <= x < x2)."""
    _, h, w = masks.shape
    x1, y1, x2, y2 = boxes[:, :, None].unbind(1)  # each (n, 1)
    cols = torch.arange(w, device=masks.device, dtype=boxes.dtype)[None, None, :]  # (1, 1, w)
    rows = torch.arange(h, device=masks.device, dtype=boxes.dtype)[None, :, None]  # (1, h, 1)
    inside = (cols >= x1[..., None]) & (cols < x2[..., None]) & (rows >= y1[..., None]) & (rows < y2[..., None])
    return masks * inside


def mask_logits(protos: torch.Tensor, coefs: torch.Tensor) -> torch.Tensor:
    """protos (nm, mh, mw), coefs (n, nm) -> sigmoid of their combination (n, mh, mw), float32."""
    nm, mh, mw = protos.shape
    return (coefs.float() @ protos.float().flatten(1)).sigmoid().view(-1, mh, mw)  # any layout of protos


def process_mask(
    protos: torch.Tensor, coefs: torch.Tensor, boxes: torch.Tensor, shape: Sequence[int], upsample: bool = False
) -> torch.Tensor:
    """Binary masks of n instances: at prototype resolution (n, mh, mw), or (n, h, w) of the input with upsample.

    boxes (n, 4) xyxy in input pixels of shape (h, w); each mask is cropped to its box before the 0.5 threshold.
    """
    _, mh, mw = protos.shape
    masks = mask_logits(protos, coefs)
    gain = torch.tensor([mw / shape[1], mh / shape[0], mw / shape[1], mh / shape[0]], device=boxes.device)
    masks = crop_mask(masks, boxes.float() * gain)
    if upsample and not len(masks):  # interpolate refuses an empty batch
        return masks.new_zeros((0, *shape))
    if upsample:
        masks = F.interpolate(masks[None], tuple(shape), mode="bilinear", align_corners=False)[0]
    return masks.gt_(0.5)


def _unpad_slice(shape_in: Sequence[int], shape_out: Sequence[int], ratio_pad=None) -> Tuple[int, int, int, int]:
    """(top, bottom, left, right) of the letterboxed content when shape_out (h0, w0) was letterboxed to shape_in."""
    if ratio_pad is None:
        gain = min(shape_in[0] / shape_out[0], shape_in[1] / shape_out[1])
        pad = (shape_in[1] - shape_out[1] * gain) / 2, (shape_in[0] - shape_out[0] * gain) / 2
    else:
        pad = ratio_pad[1]
    return int(pad[1]), int(shape_in[0] - pad[1]), int(pad[0]), int(shape_in[1] - pad[0])


def process_mask_native(
    protos: torch.Tensor, coefs: torch.Tensor, boxes: torch.Tensor, shape: Sequence[int]
) -> torch.Tensor:
    """Binary masks (n, h0, w0) at the original image size (--retina-masks, --save-json): the prototypes' letterbox
    padding is cut, the rest upsampled to shape (h0, w0), then cropped by boxes (n, 4) xyxy in original pixels."""
    _, mh, mw = protos.shape
    masks = mask_logits(protos, coefs)
    if not len(masks):
        return masks.new_zeros((0, *shape))
    top, bottom, left, right = _unpad_slice((mh, mw), shape)
    masks = F.interpolate(masks[None, :, top:bottom, left:right], tuple(shape), mode="bilinear", align_corners=False)
    return crop_mask(masks[0], boxes.float()).gt_(0.5)


def scale_masks(masks: np.ndarray, shape_in: Sequence[int], shape0: Sequence[int], ratio_pad=None) -> np.ndarray:
    """(h, w, n) masks of a letterboxed input of shape_in -> (h0, w0, n) of the original image (padding cut)."""
    top, bottom, left, right = _unpad_slice(shape_in, shape0, ratio_pad)
    masks = masks[top:bottom, left:right]
    parts = [cv2.resize(masks[..., i : i + 128], (shape0[1], shape0[0])) for i in range(0, masks.shape[2], 128)]
    parts = [p if p.ndim == 3 else p[..., None] for p in parts]
    return np.concatenate(parts, 2) if parts else np.zeros((shape0[0], shape0[1], 0), masks.dtype)


def polygon_mask(shape: Sequence[int], polygon: np.ndarray, ratio: int = 1) -> np.ndarray:
    """One (k, 2) pixel polygon -> uint8 (h // ratio, w // ratio) mask (filled at full size, then resized)."""
    mask = np.zeros(tuple(shape[:2]), np.uint8)
    cv2.fillPoly(mask, [np.asarray(polygon, np.float64).astype(np.int32).reshape(-1, 2)], color=1)
    if ratio == 1:
        return mask
    return cv2.resize(mask, (shape[1] // ratio, shape[0] // ratio))


def polygons_to_masks(shape: Sequence[int], polygons: Sequence[np.ndarray], ratio: int = 1) -> np.ndarray:
    """n pixel polygons -> (n, h // ratio, w // ratio) uint8 masks, one per instance."""
    h, w = shape[0] // ratio, shape[1] // ratio
    return (
        np.stack([polygon_mask(shape, p, ratio) for p in polygons]) if len(polygons) else np.zeros((0, h, w), np.uint8)
    )


def polygons_to_overlap(
    shape: Sequence[int], polygons: Sequence[np.ndarray], ratio: int = 1
) -> Tuple[np.ndarray, np.ndarray]:
    """All instances in one (h // ratio, w // ratio) mask: 0 background, i + 1 the i-th largest instance (smaller
    ones drawn over larger ones). Returns (mask, order) with order (n,) the instance indices by descending area."""
    masks = polygons_to_masks(shape, polygons, ratio)
    order = np.argsort(-masks.reshape(len(masks), -1).sum(1), kind="stable")
    out = np.zeros(masks.shape[1:], np.int32 if len(masks) > 255 else np.uint8)
    for rank, i in enumerate(order):
        np.maximum(out, masks[i].astype(out.dtype) * (rank + 1), out=out)
    return out, order


def overlap_to_masks(overlap: torch.Tensor, n: int) -> torch.Tensor:
    """One overlap mask (h, w) with values 1..n -> (n, h, w) float binary masks."""
    index = torch.arange(1, n + 1, device=overlap.device).view(n, 1, 1)
    return (overlap[None] == index).float()


def mask_iou(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """IoU of flattened binary masks a (m, hw) and b (n, hw) -> (m, n)."""
    inter = a.float() @ b.float().T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return inter / (union + eps)


def masks_to_polygons(masks: torch.Tensor | np.ndarray) -> List[np.ndarray]:
    """(n, h, w) binary masks -> n (k, 2) float32 pixel polygons: the outer contour with the most points ((0, 2) if
    the mask is empty)."""
    arr = masks.byte().cpu().numpy() if isinstance(masks, torch.Tensor) else masks.astype(np.uint8)
    out = []
    for m in np.ascontiguousarray(arr):
        contours = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)[0]
        if contours:
            out.append(np.asarray(max(contours, key=len), np.float32).reshape(-1, 2))
        else:
            out.append(np.zeros((0, 2), np.float32))
    return out
