"""YOLOv5 detection loss: anchor-ratio target assignment, CIoU box loss, IoU-weighted objectness, class BCE."""

from __future__ import annotations

import logging
from typing import List, Mapping, NamedTuple, Sequence, Tuple

import torch
import torch.nn as nn

from utils.boxes import bbox_iou
from utils.task import LossOutput
from utils.torch_utils import de_parallel

LOGGER = logging.getLogger(__name__)

# Cell offsets a target may spread to: itself, then left, up, right, down neighbours (scaled by 0.5 below).
_NEIGHBOURS = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], dtype=torch.float32)
_OFFSET = 0.5  # a target also claims the neighbour cell on the side of its centre within this distance


def smooth_bce_targets(eps: float = 0.0) -> Tuple[float, float]:
    """Label-smoothed (positive, negative) BCE targets: 1 - eps/2 and eps/2."""
    return 1.0 - 0.5 * eps, 0.5 * eps


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017, arXiv:1708.02002) wrapped around a BCEWithLogitsLoss; mean-reduced."""

    def __init__(self, bce: nn.BCEWithLogitsLoss, gamma: float = 1.5, alpha: float = 0.25):
        super().__init__()
        self.bce, self.gamma, self.alpha = bce, gamma, alpha
        self.bce.reduction = "none"  # weight every element before reducing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """logits, target: same shape -> scalar."""
        loss = self.bce(logits, target)
        p = torch.sigmoid(logits)
        p_t = target * p + (1 - target) * (1 - p)
        alpha_t = target * self.alpha + (1 - target) * (1 - self.alpha)
        return (loss * alpha_t * (1.0 - p_t) ** self.gamma).mean()


class LevelTargets(NamedTuple):
    """Positives of one detection level, n rows each."""

    b: torch.Tensor  # (n,) image index in the batch
    a: torch.Tensor  # (n,) anchor index
    gj: torch.Tensor  # (n,) grid row
    gi: torch.Tensor  # (n,) grid column
    tbox: torch.Tensor  # (n, 4) target xy relative to the cell corner, wh in grid units
    anchors: torch.Tensor  # (n, 2) matched anchor wh in grid units
    cls: torch.Tensor  # (n,) class index
    idx: torch.Tensor  # (n,) row of the target in `targets` (segmentation looks up its mask with it)


def build_targets(
    preds: Sequence[torch.Tensor], targets: torch.Tensor, anchors: torch.Tensor, anchor_t: float
) -> List[LevelTargets]:
    """Assign targets (nt, 6) [img, cls, x, y, w, h] (normalised) to anchors/cells of every level.

    preds: per-level (B, na, ny, nx, no) logits (only the shapes are used); anchors: (nl, na, 2) in grid units.
    A target goes to each anchor whose w and h ratios satisfy max(r, 1/r) < anchor_t, in its own cell and in
    the (up to) two neighbour cells nearest to its centre.
    """
    device = targets.device
    na, nt = anchors.shape[1], targets.shape[0]
    anchor_idx = torch.arange(na, device=device, dtype=targets.dtype).view(na, 1).expand(na, nt)
    row_idx = torch.arange(nt, device=device, dtype=targets.dtype).view(1, nt).expand(na, nt)
    t_all = torch.cat((targets[:, :6].unsqueeze(0).expand(na, nt, 6), anchor_idx[..., None], row_idx[..., None]), 2)
    neighbours = _NEIGHBOURS.to(device) * _OFFSET
    out = []
    for level, p in enumerate(preds):
        ny, nx = p.shape[2], p.shape[3]
        scale = torch.tensor([1, 1, nx, ny, nx, ny, 1, 1], device=device, dtype=targets.dtype)
        t = t_all * scale  # boxes in grid units of this level
        level_anchors = anchors[level]
        if nt:
            ratio = t[..., 4:6] / level_anchors[:, None]  # (na, nt, 2)
            t = t[torch.max(ratio, 1 / ratio).max(2).values < anchor_t]  # (m, 8)
            gxy = t[:, 2:4]
            gxy_inv = torch.tensor([nx, ny], device=device, dtype=t.dtype) - gxy
            left, up = ((gxy % 1 < _OFFSET) & (gxy > 1)).T
            right, down = ((gxy_inv % 1 < _OFFSET) & (gxy_inv > 1)).T
            keep = torch.stack((torch.ones_like(left), left, up, right, down))  # (5, m)
            t = t.unsqueeze(0).expand(5, -1, -1)[keep]
            offsets = neighbours[:, None].expand(5, keep.shape[1], 2)[keep]
        else:
            t, offsets = t[0], torch.zeros((0, 2), device=device)  # (0, 8) and no offsets
        b, c = t[:, 0].long(), t[:, 1].long()
        gxy, gwh, a, idx = t[:, 2:4], t[:, 4:6], t[:, 6].long(), t[:, 7].long()
        gij = (gxy - offsets).long()
        gi, gj = gij[:, 0].clamp(0, nx - 1), gij[:, 1].clamp(0, ny - 1)
        tbox = torch.cat((gxy - gij, gwh), 1)
        out.append(LevelTargets(b, a, gj, gi, tbox, level_anchors[a], c, idx))
    return out


class ComputeLoss:
    """YOLOv5 loss for a DetectionModel; call with (preds, targets) -> (loss (1,), items (3,) box/obj/cls).

    hyp needs box, cls, obj, cls_pw, obj_pw, anchor_t, fl_gamma and optionally label_smoothing; the gains
    are used as given (the trainer rescales them for the number of levels, classes and image size).
    """

    def __init__(self, model: nn.Module, hyp: Mapping[str, float]):
        detect = de_parallel(model).model[-1]
        device = next(model.parameters()).device
        self.box_gain, self.obj_gain, self.cls_gain = float(hyp["box"]), float(hyp["obj"]), float(hyp["cls"])
        self.anchor_t = float(hyp["anchor_t"])
        self.bce_cls = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(hyp["cls_pw"])], device=device))
        self.bce_obj = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([float(hyp["obj_pw"])], device=device))
        gamma = float(hyp.get("fl_gamma", 0.0))
        if gamma > 0:
            self.bce_cls, self.bce_obj = FocalLoss(self.bce_cls, gamma), FocalLoss(self.bce_obj, gamma)
        self.cp, self.cn = smooth_bce_targets(float(hyp.get("label_smoothing", 0.0)))
        self.nc, self.nl, self.na = detect.nc, detect.nl, detect.na
        self.balance = {3: [4.0, 1.0, 0.4]}.get(self.nl, [4.0, 1.0, 0.25, 0.06, 0.02])
        self.detect = detect  # anchors are read at call time: AutoAnchor or resume may change them
        self.gr = 1.0  # objectness target = (1 - gr) + gr * IoU

    def __call__(self, preds: Sequence[torch.Tensor], targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """preds: per-level (B, na, ny, nx, 5+nc) logits; targets (nt, 6) [img, cls, x, y, w, h] normalised."""
        device = preds[0].device
        lbox, lobj, lcls = (torch.zeros(1, device=device) for _ in range(3))
        anchors = self.detect.anchors.to(device=device, dtype=targets.dtype)
        for i, (p, tg) in enumerate(zip(preds, build_targets(preds, targets.to(device), anchors, self.anchor_t))):
            tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=device)
            if tg.b.shape[0]:
                pxy, pwh, _, pcls = p[tg.b, tg.a, tg.gj, tg.gi].split((2, 2, 1, self.nc), 1)
                pbox = torch.cat((pxy.sigmoid() * 2 - 0.5, (pwh.sigmoid() * 2) ** 2 * tg.anchors), 1)
                iou = bbox_iou(pbox, tg.tbox, CIoU=True).squeeze(-1)  # (n,)
                lbox += (1.0 - iou).mean()
                score = iou.detach().clamp(0).type(tobj.dtype)
                tobj[tg.b, tg.a, tg.gj, tg.gi] = (1.0 - self.gr) + self.gr * score
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(pcls.shape[0], device=device), tg.cls] = self.cp
                    lcls += self.bce_cls(pcls, t)
            lobj += self.bce_obj(p[..., 4], tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        bs = preds[0].shape[0]
        return (lbox + lobj + lcls) * bs, torch.cat((lbox, lobj, lcls)).detach()


class DetectionCriterion:
    """Detection's Criterion: (per-level logits, batch) -> LossOutput(total * batch size, items (box, obj, cls))."""

    loss_names = ("box_loss", "obj_loss", "cls_loss")

    def __init__(self, model: nn.Module, hyp: Mapping[str, float]):
        self.compute = ComputeLoss(model, hyp)

    def __call__(self, preds: Sequence[torch.Tensor], batch: Sequence) -> LossOutput:
        """preds: per-level (B, na, ny, nx, 5+nc); batch[1]: targets (nt, 6) [img, cls, x, y, w, h] normalised."""
        return LossOutput(*self.compute(preds, batch[1].to(preds[0].device)))
