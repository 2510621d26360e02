"""YOLOv5 segmentation loss: the detection loss plus a mask BCE over prototypes x coefficients, cropped to the box."""

from __future__ import annotations

from typing import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.boxes import bbox_iou, xywh2xyxy
from utils.segment.ops import crop_mask
from utils.task import LossOutput
from utils.train.loss import ComputeLoss, build_targets


def instance_mask_loss(gt: torch.Tensor, coefs: torch.Tensor, proto: torch.Tensor, xyxy: torch.Tensor,
                       area: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """Mean over n instances of one image of BCE(coefs @ proto, gt) averaged inside the box and divided by its area.

    gt (n, h, w) 0/1, coefs (n, nm), proto (nm, h, w), xyxy (n, 4) box in mask pixels, area (n,) normalised w * h.
    proto may be in any memory layout (a channels-last model's).
    """
    logits = (coefs @ proto.flatten(1)).view(-1, *proto.shape[1:])  # flatten: a view for NCHW and channels-last
    bce = F.binary_cross_entropy_with_logits(logits, gt, reduction="none")
    return (crop_mask(bce, xyxy).mean(dim=(1, 2)) / area).mean()


class SegmentLoss(ComputeLoss):
    """Criterion of the task contract for a SegmentationModel: (preds, batch) -> LossOutput with items
    (box, seg, obj, cls) as official. preds = (levels (B, na, ny, nx, 5+nc+nm) logits, protos (B, nm, h, w));
    batch = (im, targets (n, 6), paths, shapes, masks). The mask term is scaled by the hyp's box gain / batch size.
    overlap: masks are one overlap mask per image (values 1..n in the order of that image's targets).
    """

    def __init__(self, model: nn.Module, hyp: Mapping[str, float], overlap: bool = True):
        super().__init__(model, hyp)
        self.nm, self.overlap = self.detect.nm, overlap

    def __call__(self, preds: Sequence, batch: Sequence) -> LossOutput:
        levels, proto = preds
        targets, masks = batch[1].to(proto.device), batch[4].to(proto.device)
        bs, nm, mh, mw = proto.shape
        device = proto.device
        lbox, lseg, lobj, lcls = (torch.zeros(1, device=device) for _ in range(4))
        if tuple(masks.shape[-2:]) != (mh, mw):  # a dataset mask ratio other than the prototypes'
            masks = F.interpolate(masks[None].float(), (mh, mw), mode="nearest")[0]
        first = torch.cat((torch.zeros(1, device=device), torch.bincount(targets[:, 0].long(), minlength=bs).cumsum(0)))
        anchors = self.detect.anchors.to(device=device, dtype=targets.dtype)
        for i, (p, tg) in enumerate(zip(levels, build_targets(levels, targets, anchors, self.anchor_t))):
            tobj = torch.zeros(p.shape[:4], dtype=p.dtype, device=device)
            if tg.b.shape[0]:
                pxy, pwh, _, pcls, coefs = p[tg.b, tg.a, tg.gj, tg.gi].split((2, 2, 1, self.nc, nm), 1)
                pbox = torch.cat((pxy.sigmoid() * 2 - 0.5, (pwh.sigmoid() * 2) ** 2 * tg.anchors), 1)
                iou = bbox_iou(pbox, tg.tbox, CIoU=True).squeeze(-1)
                lbox += (1.0 - iou).mean()
                tobj[tg.b, tg.a, tg.gj, tg.gi] = (1.0 - self.gr) + self.gr * iou.detach().clamp(0).type(tobj.dtype)
                if self.nc > 1:
                    t = torch.full_like(pcls, self.cn)
                    t[torch.arange(pcls.shape[0], device=device), tg.cls] = self.cp
                    lcls += self.bce_cls(pcls, t)
                lseg += self._mask_loss(tg, coefs, proto, targets, masks, first)
            lobj += self.bce_obj(p[..., 4], tobj) * self.balance[i]
        lbox, lobj, lcls = lbox * self.box_gain, lobj * self.obj_gain, lcls * self.cls_gain
        lseg = lseg * self.box_gain / bs
        return LossOutput((lbox + lseg + lobj + lcls) * bs, torch.cat((lbox, lseg, lobj, lcls)).detach())

    def _mask_loss(self, tg, coefs, proto, targets, masks, first) -> torch.Tensor:
        """Sum over the images of one level's positives of instance_mask_loss."""
        mh, mw = proto.shape[2:]
        xywhn = targets[tg.idx, 2:6]
        area = xywhn[:, 2:].prod(1)
        xyxy = xywh2xyxy(xywhn * torch.tensor([mw, mh, mw, mh], device=proto.device, dtype=xywhn.dtype))
        loss = torch.zeros(1, device=proto.device)
        for bi in tg.b.unique():
            j = tg.b == bi
            if self.overlap:
                rank = (tg.idx[j] - first[bi].long() + 1).view(-1, 1, 1)  # 1-based position within its image
                gt = (masks[bi][None] == rank).float()
            else:
                gt = masks[tg.idx[j]].float()
            loss += instance_mask_loss(gt, coefs[j], proto[bi], xyxy[j], area[j])
        return loss
