"""Raw segmentation outputs -> per-image instances: NMS on the boxes, then masks from prototypes x coefficients."""

from __future__ import annotations

from typing import List, NamedTuple, Sequence

import torch

from utils.nms import non_max_suppression
from utils.segment.ops import process_mask, process_mask_native

MASK_MODES = ("proto", "upsample", "native")


class SegResult(NamedTuple):
    """One image's instances. det (n, 6) [x1, y1, x2, y2, conf, cls] in input pixels; coefs (n, nm); proto
    (nm, mh, mw); masks (n, h, w) float 0/1: at prototype size ('proto'), or at the input size ('upsample':
    cropped then upsampled; 'native': upsampled then cropped, more exact)."""

    det: torch.Tensor
    coefs: torch.Tensor
    proto: torch.Tensor
    masks: torch.Tensor


def split_outputs(raw) -> tuple:
    """(pred (B, N, 5+nc+nm), protos (B, nm, mh, mw)) from a model's output: (pred, protos[, levels]) or a list."""
    if isinstance(raw, (list, tuple)) and len(raw) >= 2 and isinstance(raw[1], torch.Tensor) and raw[1].ndim == 4:
        return raw[0], raw[1]
    if isinstance(raw, (list, tuple)) and len(raw) == 2 and raw[0].ndim == 4:  # an exported graph: (protos, pred)
        return raw[1], raw[0]
    raise ValueError("not a segmentation output: expected (predictions, prototypes)")


def postprocess(
    raw,
    im_shape: Sequence[int],
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    max_det: int = 1000,
    labels: Sequence[torch.Tensor] = (),
    mask_mode: str = "proto",
) -> List[SegResult]:
    """NMS (non_max_suppression with nm coefficients), then each image's masks; im_shape (H, W) of the input."""
    if mask_mode not in MASK_MODES:
        raise ValueError(f"mask_mode must be one of {MASK_MODES}, got {mask_mode!r}")
    pred, protos = split_outputs(raw)
    nm = protos.shape[1]
    dets = non_max_suppression(pred, conf_thres, iou_thres, classes, agnostic, multi_label, labels, max_det, nm=nm)
    out = []
    for det, proto in zip(dets, protos):
        coefs, boxes = det[:, 6:], det[:, :4]
        if mask_mode == "native":
            masks = process_mask_native(proto, coefs, boxes, im_shape)
        else:
            masks = process_mask(proto, coefs, boxes, im_shape, upsample=mask_mode == "upsample")
        out.append(SegResult(det[:, :6], coefs, proto, masks))
    return out
