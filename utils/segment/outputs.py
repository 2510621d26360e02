"""Side outputs of a segmentation validation: label .txt files and COCO json with RLE masks (scored bbox and segm)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from utils.boxes import xyxy2xywh
from utils.segment.ops import scale_masks
from utils.val.coco import CocoTarget, coco_rows, score, write_and_score

LOGGER = logging.getLogger(__name__)


def rle_encode(masks: np.ndarray) -> List[dict]:
    """(h, w, n) binary masks -> n COCO RLE dicts with str counts (pycocotools, imported here)."""
    try:
        from pycocotools.mask import encode
    except ImportError as e:
        from utils.errors import UserError

        raise UserError("--save-json of masks needs pycocotools: pip install pycocotools") from e
    rles = encode(np.asfortranarray(masks.astype(np.uint8))) if masks.shape[2] else []
    for r in rles:
        r["counts"] = r["counts"].decode("utf-8")
    return list(rles)


def original_masks(masks: torch.Tensor, im_shape: Sequence[int], shapes) -> np.ndarray:
    """(n, h, w) masks of any size over the letterboxed input (H, W) -> (h0, w0, n) uint8 on the original image."""
    m = masks.float()
    if not len(m):
        return np.zeros((*shapes[0], 0), np.uint8)
    if tuple(m.shape[1:]) != tuple(im_shape):
        m = F.interpolate(m[None], tuple(im_shape), mode="bilinear", align_corners=False)[0].gt_(0.5)
    arr = m.permute(1, 2, 0).contiguous().cpu().numpy().astype(np.uint8)
    return scale_masks(arr, im_shape, shapes[0], shapes[1])


class SegOutputs:
    """labels/*.txt rows (box rows, as official segment/val.py), COCO predictions with RLE masks, and the ground truth
    (boxes and RLE masks from the labels) when the dataset has no COCO annotations file."""

    def __init__(self, save_dir: Path | None, save_txt: bool, save_conf: bool, save_json: bool, coco: CocoTarget):
        self.save_dir, self.save_txt, self.save_conf, self.save_json = save_dir, save_txt, save_conf, save_json
        self.coco = coco
        self.jdict: List[dict] = []
        self.images: List[dict] = []
        self.annotations: List[dict] = []
        if save_txt and save_dir is not None:
            (save_dir / "labels").mkdir(parents=True, exist_ok=True)

    def add(self, predn: torch.Tensor, labelsn: torch.Tensor, res, im_shape, shapes, path: Path, gt=None) -> None:
        """One image: predn (n, 6) and labelsn (m, 5) in original pixels; res the SegResult; gt (m, h, w) masks."""
        if self.save_txt and self.save_dir is not None and len(predn):
            self._write_txt(predn, shapes[0], self.save_dir / "labels" / f"{path.stem}.txt")
        if not self.save_json:
            return
        image_id = int(path.stem) if path.stem.isnumeric() else path.stem
        rles = rle_encode(original_masks(res.masks, im_shape, shapes)) if len(predn) else []
        for row, rle in zip(coco_rows(predn[:, :4], predn[:, 5], self.coco, score=predn[:, 4]), rles):
            self.jdict.append(dict(image_id=image_id, segmentation=rle, **row))
        h0, w0 = shapes[0]
        self.images.append({"id": image_id, "file_name": path.name, "height": int(h0), "width": int(w0)})
        gt_rles = rle_encode(original_masks(gt, im_shape, shapes)) if gt is not None and len(gt) else []
        for i, row in enumerate(coco_rows(labelsn[:, 1:5], labelsn[:, 0], self.coco)):
            ann = dict(id=len(self.annotations) + 1, image_id=image_id, iscrowd=0, **row)
            if i < len(gt_rles):
                ann["segmentation"] = gt_rles[i]
            self.annotations.append(ann)

    def _write_txt(self, predn: torch.Tensor, shape: Sequence[int], file: Path) -> None:
        """Append 'cls x y w h [conf]' rows normalised to the original image."""
        gn = torch.tensor(shape, dtype=torch.float32)[[1, 0, 1, 0]]
        xywh = (xyxy2xywh(predn[:, :4].float().cpu()) / gn).tolist()
        with open(file, "a") as f:
            for (conf, cls), box in zip(predn[:, 4:6].tolist(), xywh):
                line = (cls, *box, conf) if self.save_conf else (cls, *box)
                f.write(("%g " * len(line)).rstrip() % line + "\n")

    def finish(self, names: Mapping[int, str]) -> Dict[str, Dict[str, float]] | None:
        """Write predictions.json (and annotations.json from the labels); score bbox and segm. None without json."""
        if not self.save_json or self.save_dir is None:
            return None
        pred_json = self.save_dir / "predictions.json"
        out = {}
        bbox = write_and_score(self.jdict, self.images, self.annotations, names, pred_json, self.coco, "bbox")
        if bbox:
            out["bbox"] = bbox
            anno = self.coco.anno_json or pred_json.with_name("annotations.json")
            segm = score(anno, pred_json, [im["id"] for im in self.images], "segm")
            if segm:
                out["segm"] = segm
        return out or None
