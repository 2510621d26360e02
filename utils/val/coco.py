"""COCO-format results: the 80 -> 91 category ids, the dataset's instances json, and scoring with pycocotools."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Sequence

import torch

from utils.boxes import xyxy2xywh
from utils.paths import ROOT

LOGGER = logging.getLogger(__name__)

# COCO numbers its 80 detection categories 1..90; these ten ids belong to no category in the released sets
_UNUSED_COCO_IDS = frozenset({12, 26, 29, 30, 45, 66, 68, 69, 71, 83})
COCO91_IDS = tuple(i for i in range(1, 91) if i not in _UNUSED_COCO_IDS)  # class index (0..79) -> category id
ANNOTATIONS = Path("annotations") / "instances_val2017.json"


@dataclass
class CocoTarget:
    """Where COCO results go: class index -> category id, and the ground truth to score against.

    anno_json None: the ground truth is built from the YOLO labels (annotations.json in the run folder).
    """

    class_map: Sequence[int] = field(default_factory=lambda: range(10_000))
    anno_json: Path | None = None

    def category(self, cls: int) -> int:
        """Category id of class index cls."""
        return int(self.class_map[cls])


def is_coco_layout(data: Mapping[str, Any]) -> bool:
    """True when the dataset's val list is COCO's: a file '.../coco/val2017.txt' (as official YOLOv5 tests)."""
    val = data.get("val")
    items = val if isinstance(val, (list, tuple)) else [val]
    return any(p is not None and Path(str(p)).parts[-2:] == ("coco", "val2017.txt") for p in items)


def find_annotations(data: Mapping[str, Any]) -> Path | None:
    """COCO's instances_val2017.json: in the dataset folder, else in ../datasets/coco/ (from here or the repo)."""
    candidates = [Path(str(data.get("path") or ".")) / ANNOTATIONS]
    candidates += [base / ".." / "datasets" / "coco" / ANNOTATIONS for base in (Path.cwd(), ROOT)]
    return next((p.resolve() for p in candidates if p.is_file()), None)


def coco_target(data: Mapping[str, Any]) -> CocoTarget:
    """The CocoTarget for a checked dataset dict: COCO ids and COCO's annotations for the COCO layout."""
    if not is_coco_layout(data):
        return CocoTarget()
    if int(data.get("nc", 0)) != len(COCO91_IDS):
        LOGGER.warning("WARNING: COCO layout with %s classes, not 80: category ids stay class indices", data.get("nc"))
        return CocoTarget()
    anno = find_annotations(data)
    if anno is None:
        LOGGER.warning(
            "WARNING: COCO layout but no %s in %s or ../datasets/coco; scoring against the labels instead",
            ANNOTATIONS,
            data.get("path"),
        )
    return CocoTarget(class_map=COCO91_IDS, anno_json=anno)


def coco_rows(xyxy: torch.Tensor, cls: torch.Tensor, target: CocoTarget, score: torch.Tensor | None = None):
    """COCO dicts from (n, 4) pixel corners: category_id and bbox [x_min, y_min, w, h], then score for predictions
    (as the COCO results format) or area for ground truth (as the instances format)."""
    box = xyxy2xywh(xyxy.float().cpu())
    box[:, :2] -= box[:, 2:] / 2  # centre -> top-left corner
    rows = []
    for i, (b, c) in enumerate(zip(box.tolist(), cls.tolist())):
        row = {"category_id": target.category(int(c)), "bbox": [round(x, 3) for x in b]}
        if score is not None:
            row["score"] = round(float(score[i]), 5)
        else:
            row["area"] = round(b[2] * b[3], 3)
        rows.append(row)
    return rows


def score(anno_json: Path, pred_json: Path, image_ids: list, iou_type: str = "bbox") -> Dict[str, float] | None:
    """COCO mAP50-95 / mAP50 (the COCO table is printed) with pycocotools, else faster_coco_eval; None if neither.

    iou_type 'bbox' scores boxes, 'segm' scores RLE masks (the predictions' 'segmentation')."""
    try:
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError:
        try:
            from faster_coco_eval import COCO
            from faster_coco_eval import COCOeval_faster as COCOeval
        except ImportError:
            LOGGER.info("COCO evaluation skipped: install pycocotools or faster-coco-eval to score %s", pred_json)
            return None
    LOGGER.info("Evaluating COCO mAP of %s against %s...", pred_json, anno_json)
    try:
        anno = COCO(str(anno_json))
        pred = anno.loadRes(str(pred_json))
        ev = COCOeval(anno, pred, iou_type)
        ev.params.imgIds = image_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    except Exception as e:  # third-party evaluators raise assorted errors on odd inputs; the run itself succeeded
        LOGGER.warning("WARNING: COCO evaluation failed: %s", e)
        return None
    out = {"mAP50-95": float(ev.stats[0]), "mAP50": float(ev.stats[1])}
    LOGGER.info("COCO mAP50-95 %.3f, mAP50 %.3f (these replace the table's mAP)", out["mAP50-95"], out["mAP50"])
    return out


def write_and_score(
    predictions: List[dict],
    images: List[dict],
    annotations: List[dict],
    names: Mapping[int, str],
    pred_json: Path,
    target: CocoTarget,
    iou_type: str = "bbox",
) -> Dict[str, float] | None:
    """Write pred_json (and annotations.json from the labels when the target has no COCO file); score it."""
    LOGGER.info("Saving %s (%d predictions)...", pred_json, len(predictions))
    pred_json.write_text(json.dumps(predictions))
    anno_json = target.anno_json
    if anno_json is None:
        anno_json = pred_json.with_name("annotations.json")
        categories = [{"id": target.category(k), "name": v} for k, v in sorted(names.items())]
        anno_json.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    if not predictions:
        LOGGER.info("COCO evaluation skipped: no predictions")
        return None
    return score(anno_json, pred_json, [im["id"] for im in images], iou_type)
