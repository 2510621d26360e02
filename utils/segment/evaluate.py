"""The segmentation Evaluator: per batch, box and mask matching at IoU 0.5:0.95; then box and mask AP per class."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.boxes import scale_boxes, xywh2xyxy
from utils.names import names_dict
from utils.segment.metrics import SegMetrics, figures
from utils.segment.ops import mask_iou, overlap_to_masks
from utils.segment.outputs import SegOutputs
from utils.segment.postprocess import SegResult, postprocess, split_outputs
from utils.val.coco import CocoTarget
from utils.val.metrics import ConfusionMatrix, match_iou, match_predictions

LOGGER = logging.getLogger(__name__)

HEADER = ("%22s" + "%11s" * 10) % (
    "Class", "Images", "Instances", "Box(P", "R", "mAP50", "mAP50-95)", "Mask(P", "R", "mAP50", "mAP50-95)",
)  # fmt: skip
ROW = "%22s" + "%11i" * 2 + "%11.3g" * 8


def image_gt_masks(masks: torch.Tensor, targets: torch.Tensor, si: int, nl: int, overlap: bool) -> torch.Tensor:
    """The (nl, h, w) float ground-truth masks of image si: from its overlap mask, or its rows of the batch's stack."""
    if overlap:
        return overlap_to_masks(masks[si], nl)
    return masks[targets[:, 0] == si].float()


def mask_correct(pred_masks: torch.Tensor, gt: torch.Tensor, det_cls, label_cls, iouv) -> torch.Tensor:
    """(n, t) true positives by mask IoU; ground truth resized (bilinear, > 0.5) to the predictions' size."""
    if gt.shape[1:] != pred_masks.shape[1:]:
        gt = F.interpolate(gt[None], pred_masks.shape[1:], mode="bilinear", align_corners=False)[0].gt_(0.5)
    iou = mask_iou(gt.flatten(1), pred_masks.flatten(1))
    return match_iou(iou, label_cls, det_cls, iouv)


class SegmentEvaluator:
    """Evaluator of the task contract for instance segmentation (official segment/val.py's figures).

    update(results, batch): results are SegResult per image (masks at any size; official uses prototype size),
    batch is (im (B, 3, H, W), targets (n, 6) normalised, paths, shapes, masks). overlap: the batch's masks are
    one overlap mask per image (training's default) rather than one mask per instance.
    """

    def __init__(
        self,
        names: Mapping[int, str] | Sequence[str],
        save_dir: str | Path | None = None,
        plots: bool = True,
        single_cls: bool = False,
        overlap: bool = False,
        save_txt: bool = False,
        save_conf: bool = False,
        save_json: bool = False,
        coco: CocoTarget | None = None,
        verbose: bool = False,
        per_class: bool | None = None,
        conf_thres: float = 0.001,
        iou_thres: float = 0.6,
        max_det: int = 300,
        mask_mode: str = "proto",
    ):
        self.names = names_dict(names)
        self.nc = 1 if single_cls else len(self.names)
        self.save_dir = Path(save_dir) if save_dir is not None else None
        self.plots = plots and self.save_dir is not None
        self.single_cls, self.overlap = single_cls, overlap
        self.verbose = verbose if per_class is None else per_class
        self.nms = dict(conf_thres=conf_thres, iou_thres=iou_thres, max_det=max_det, mask_mode=mask_mode)
        self.iouv = torch.linspace(0.5, 0.95, 10)
        self.cm = ConfusionMatrix(nc=self.nc) if self.plots else None
        self.outputs = SegOutputs(self.save_dir, save_txt, save_conf, save_json, coco or CocoTarget())
        self.stats: List[tuple] = []
        self.seen = self.batches = 0

    header = HEADER
    post_name = "NMS"

    def postprocess(self, preds, batch: Sequence) -> List[SegResult]:
        """NMS (multi-label, as official validation) and the instances' masks at the evaluator's mask_mode."""
        return postprocess(split_outputs(preds), batch[0].shape[2:], multi_label=True, **self.nms)

    def update(self, results: Sequence[SegResult], batch: Sequence) -> None:
        im, targets, paths, shapes, masks = batch[:5]
        targets, masks = targets.cpu().float().clone(), masks.cpu()
        h, w = im.shape[2:]
        targets[:, 2:] *= torch.tensor((w, h, w, h), dtype=torch.float32)
        for si, res in enumerate(results):
            self._image(si, res, targets, masks, (h, w), shapes[si], Path(paths[si]))
        if self.plots and self.batches < 3:
            from utils.segment.plots import plot_val_batch  # late: plotting pulls in matplotlib

            plot_val_batch(self.batches, im, targets, masks, results, paths, self.save_dir, self.names, self.overlap)
        self.batches += 1

    def _image(self, si: int, res: SegResult, targets: torch.Tensor, masks, im_shape, shapes, path: Path) -> None:
        self.seen += 1
        labels = targets[targets[:, 0] == si, 1:]
        det, pred_masks = res.det.detach().float().cpu().clone(), res.masks.detach().float().cpu()
        if self.single_cls:
            det[:, 5] = 0
            labels[:, 0] = 0
        nl, npr, niou = len(labels), len(det), len(self.iouv)
        predn = det.clone()
        scale_boxes(im_shape, predn[:, :4], shapes[0], shapes[1])
        tbox = xywh2xyxy(labels[:, 1:5])
        scale_boxes(im_shape, tbox, shapes[0], shapes[1])
        labelsn = torch.cat((labels[:, 0:1], tbox), 1)
        gt = image_gt_masks(masks, targets, si, nl, self.overlap) if nl else None
        self.outputs.add(predn, labelsn, res, im_shape, shapes, path, gt)
        if npr == 0:
            if nl:
                none = torch.zeros(0, niou, dtype=torch.bool)
                self.stats.append((none, none, torch.zeros(0), torch.zeros(0), labels[:, 0]))
                if self.cm is not None:
                    self.cm.process_batch(None, labels[:, 0])
            return
        correct_b = correct_m = torch.zeros(npr, niou, dtype=torch.bool)
        if nl:
            correct_b = match_predictions(predn, labelsn, self.iouv)
            correct_m = mask_correct(pred_masks, gt, det[:, 5], labels[:, 0], self.iouv)
            if self.cm is not None:
                self.cm.process_batch(predn, labelsn)
        self.stats.append((correct_m, correct_b, det[:, 4], det[:, 5], labels[:, 0]))

    def summarize(self, losses: Sequence[float] = (), speeds: Sequence[float] = ()) -> SegMetrics:
        """Box and mask AP per class over every update; losses (box, seg, obj, cls) and speeds (ms per image) as
        the loop measured them. Writes plots, json and results.json into save_dir when given."""
        res = SegMetrics(names=self.names, nt=np.zeros(self.nc, dtype=int), seen=self.seen)
        res.losses, res.speeds = tuple(float(x) for x in losses), tuple(float(x) for x in speeds) or res.speeds
        if self.stats:
            tp_m, tp_b, conf, pcls, tcls = (torch.cat(x, 0).numpy() for x in zip(*self.stats))
            res.nt = np.bincount(tcls.astype(int), minlength=self.nc)
            plot_to = self.save_dir if self.plots else None
            res.box = figures(tp_b, conf, pcls, tcls, plot_to, self.names, "Box")
            res.mask = figures(tp_m, conf, pcls, tcls, plot_to, self.names, "Mask")
        if self.save_dir is not None:
            self._save(res)
        self.print_table(res)
        return res

    def _save(self, res: SegMetrics) -> None:
        if self.cm is not None:
            from utils.val.plots import plot_confusion_matrix  # late: plotting pulls in matplotlib

            plot_confusion_matrix(self.cm.matrix, self.save_dir, [self.names.get(i, str(i)) for i in range(self.nc)])
        coco = self.outputs.finish(self.names)
        if coco:
            res.coco = coco
            if "bbox" in coco:
                res.box.map, res.box.map50 = coco["bbox"]["mAP50-95"], coco["bbox"]["mAP50"]
            if "segm" in coco:
                res.mask.map, res.mask.map50 = coco["segm"]["mAP50-95"], coco["segm"]["mAP50"]
        (self.save_dir / "results.json").write_text(json.dumps(res.to_dict(), indent=2))

    def print_table(self, res: SegMetrics, per_class: bool | None = None) -> None:
        """The official table: 'all', then one row per class (with verbose, or always for nc < 50)."""
        LOGGER.info(HEADER)
        LOGGER.info(ROW % ("all", res.seen, res.nt.sum(), *res.row))
        if res.nt.sum() == 0:
            LOGGER.warning("WARNING: no labels found in the validation set, can not compute metrics without labels")
        if (self.verbose if per_class is None else per_class) and self.nc > 1:
            for c in res.box.ap_class.tolist():
                name = self.names.get(c, str(c))
                LOGGER.info(ROW % (name, res.seen, res.nt[c], *res.box.class_row(c), *res.mask.class_row(c)))
