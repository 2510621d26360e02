"""Non-maximum suppression of raw YOLOv5 predictions into per-image [x1, y1, x2, y2, conf, cls] rows."""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence, Union

import torch

from utils.boxes import box_iou, xywh2xyxy
from utils.errors import ArgumentError, UserError

LOGGER = logging.getLogger(__name__)

MAX_WH = 7680  # class offset in pixels: boxes of different classes never overlap after the shift
MAX_NMS = 30000  # most candidates per image, the highest-scoring ones (YOLOv5's max_nms)
FIRST_PREFIX = 1024  # candidates the first NMS pass of an image sees (the prefix then grows 4x a pass)


def _torchvision_nms() -> Callable | None:
    """torchvision's compiled nms op, loaded from its extension library without importing the package.

    `import torchvision` also imports torchvision.models and torch._dynamo: about 1.3 s of every detect/val/train
    start. The op is the same one torchvision.ops.nms calls. Falls back to the package import, and to None (pure
    torch NMS) without torchvision.
    """
    try:
        spec = importlib.util.find_spec("torchvision")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if "torchvision" not in sys.modules and spec.submodule_search_locations:
        libs = sorted(p for loc in spec.submodule_search_locations for p in Path(loc).glob("_C*"))
        for lib in (p for p in libs if p.suffix in (".so", ".pyd", ".dylib")):
            try:
                torch.ops.load_library(str(lib))
                return torch.ops.torchvision.nms
            except (OSError, RuntimeError, AttributeError):
                break
    try:
        import torchvision
    except ImportError:
        return None
    return torchvision.ops.nms


_TV_NMS = _torchvision_nms()


def nms_boxes(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Indices (k,) of the kept (n, 4) xyxy boxes, by descending score; torchvision's op when installed."""
    if _TV_NMS is not None:
        try:
            return _TV_NMS(boxes, scores, iou_thres)
        except RuntimeError:  # a torchvision build without the compiled nms op
            pass
    return nms_torch(boxes, scores, iou_thres)


def nms_torch(boxes: torch.Tensor, scores: torch.Tensor, iou_thres: float) -> torch.Tensor:
    """Pure-torch greedy NMS: (n, 4) xyxy boxes, (n,) scores -> kept indices (k,) by descending score."""
    order = scores.argsort(descending=True)
    if not len(order):
        return order
    iou = box_iou(boxes[order], boxes[order], eps=0.0)  # (n, n) in score order
    suppressed = torch.zeros(len(order), dtype=torch.bool, device=boxes.device)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_thres
    return order[torch.tensor(keep, dtype=torch.long, device=boxes.device)]


def greedy_top(
    boxes: torch.Tensor, max_det: int, iou_thres: float, classes: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices (k <= max_det,) of the first boxes greedy NMS keeps among (n, 4) boxes already sorted best first.

    Greedy NMS decides each box from the boxes kept before it only, so NMS over the first k boxes keeps exactly
    the same boxes as NMS over all n would among those k. The prefix grows (1024, 4096, ...) until it holds
    max_det kept boxes or all n: a flood of low-score candidates (early training) costs O(max_det * k) IoUs per
    image instead of O(kept * n), and no image is ever skipped. The kernel gets the rank as its score, so equal
    scores keep their sorted order.

    classes: (n,) class of each box, when boxes of different classes can never suppress each other (class-aware
    NMS). Past FIRST_PREFIX boxes, each class then runs on its own, which costs O(sum kept_c * n_c) instead of
    O(kept * n), and the kept indices merge back in rank order: the same boxes as one pass over all.
    """
    if classes is None or len(boxes) <= FIRST_PREFIX:
        return _greedy_prefix(boxes, max_det, iou_thres)
    keeps = []
    for c in classes.unique():
        idx = (classes == c).nonzero().view(-1)  # ascending: this class's boxes, best first
        keeps.append(idx[_greedy_prefix(boxes[idx], max_det, iou_thres)])
    return torch.cat(keeps).sort().values[:max_det]


def _greedy_prefix(boxes: torch.Tensor, max_det: int, iou_thres: float) -> torch.Tensor:
    """greedy_top over all boxes at once: growing prefixes of the (n, 4) boxes sorted best first."""
    n = len(boxes)
    rank = torch.arange(n, 0, -1, device=boxes.device, dtype=torch.float32)  # strictly decreasing
    k = min(n, max(FIRST_PREFIX, 4 * max_det))
    while True:
        keep = nms_boxes(boxes[:k], rank[:k], iou_thres)
        if len(keep) >= max_det or k == n:
            return keep[:max_det]
        k = min(n, 4 * k)


def _append_labels(x: torch.Tensor, lb: torch.Tensor, nc: int) -> torch.Tensor:
    """Add (m, 5) [cls, x, y, w, h] pixel labels to candidate rows (n, 5+nc+nm) as boxes with obj = cls = 1."""
    v = torch.zeros((len(lb), x.shape[1]), device=x.device, dtype=x.dtype)
    v[:, :4] = lb[:, 1:5]
    v[:, 4] = 1.0
    v[torch.arange(len(lb)), lb[:, 0].long() + 5] = 1.0
    return torch.cat((x, v), 0)


def _candidates(x: torch.Tensor, nc: int, conf_thres: float, multi_label: bool) -> torch.Tensor:
    """(n, 5+nc+nm) rows with obj already passed -> (k, 6+nm) [x1, y1, x2, y2, score, cls, mask...]."""
    mi = 5 + nc
    x[:, 5:mi] *= x[:, 4:5]  # score = obj * cls
    box = xywh2xyxy(x[:, :4])
    mask = x[:, mi:]
    if multi_label:
        i, j = (x[:, 5:mi] > conf_thres).nonzero(as_tuple=False).T
        return torch.cat((box[i], x[i, 5 + j, None], j[:, None].float(), mask[i]), 1)
    conf, j = x[:, 5:mi].max(1, keepdim=True)
    return torch.cat((box, conf, j.float(), mask), 1)[conf.view(-1) > conf_thres]


def non_max_suppression(
    prediction: Union[torch.Tensor, Sequence[torch.Tensor]],
    conf_thres: float = 0.25,
    iou_thres: float = 0.45,
    classes: Sequence[int] | None = None,
    agnostic: bool = False,
    multi_label: bool = False,
    labels: Sequence[torch.Tensor] = (),
    max_det: int = 300,
    nm: int = 0,
) -> list[torch.Tensor]:
    """Filter raw predictions (B, N, 5+nc+nm) [x, y, w, h, obj, cls...] -> B tensors (n, 6+nm).

    Each output row is [x1, y1, x2, y2, conf, cls, mask...] sorted by conf. Rows with obj <= conf_thres are
    dropped first, then conf = obj * cls must exceed conf_thres. multi_label keeps one row per class above the
    threshold. NMS is class-aware unless agnostic. labels: per image (m, 5) [cls, x, y, w, h] pixel boxes added
    as perfect candidates (autolabelling, --save-hybrid). A (pred, feats) tuple is accepted as prediction.
    Every image is scored (YOLOv5 stops at a time limit and drops the rest): at most MAX_NMS candidates per image,
    the best, go to NMS, and `greedy_top` stops once max_det boxes are kept.
    """
    if not 0 <= conf_thres <= 1:
        raise ArgumentError(f"conf_thres must be in [0, 1], got {conf_thres}")
    if not 0 <= iou_thres <= 1:
        raise ArgumentError(f"iou_thres must be in [0, 1], got {iou_thres}")
    if isinstance(prediction, (list, tuple)):  # eval-mode model output (pred, feats)
        prediction = prediction[0]
    if not isinstance(prediction, torch.Tensor) or prediction.ndim != 3 or prediction.shape[2] < 6 + nm:
        shape = tuple(getattr(prediction, "shape", ()))
        raise UserError(f"the model's output {shape} is not detections (B, N, 5 + classes): a classifier's weights?")
    bs = prediction.shape[0]
    nc = prediction.shape[2] - nm - 5
    multi_label &= nc > 1
    obj_ok = prediction[..., 4] > conf_thres  # (B, N)
    output = [torch.zeros((0, 6 + nm), device=prediction.device)] * bs
    for xi, x in enumerate(prediction):
        x = x[obj_ok[xi]].float()  # the mask makes a copy, so in-place scoring leaves the input alone
        if labels and len(labels[xi]):
            x = _append_labels(x, labels[xi].to(x), nc)
        if not x.shape[0]:
            continue
        x = _candidates(x, nc, conf_thres, multi_label)
        if classes is not None:
            x = x[(x[:, 5:6] == torch.tensor(classes, device=x.device)).any(1)]
        if not x.shape[0]:
            continue
        x = x[x[:, 4].argsort(descending=True, stable=True)[:MAX_NMS]]
        offsets = x[:, 5:6] * (0 if agnostic else MAX_WH)  # class-aware: classes never overlap after the shift
        output[xi] = x[greedy_top(x[:, :4] + offsets, max_det, iou_thres, None if agnostic else x[:, 5])]
    return output
