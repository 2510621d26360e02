"""segment/val.py's work: a backend, the split's loader with masks, one validation pass, the table and files."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from utils.errors import UserError
from utils.names import names_list
from utils.segment.evaluate import SegmentEvaluator
from utils.segment.metrics import SegMetrics

if TYPE_CHECKING:
    from utils.deploy.predictor import Predictor

LOGGER = logging.getLogger(__name__)


def loader_settings(model: Predictor, imgsz: int, batch_size: int, speed: bool) -> tuple:
    """(imgsz, batch_size, rect, pad): rect batches for PyTorch; a static export's size and batch (batch 1 else)."""
    from utils.img_size import check_img_size

    pad, rect = (0.0, False) if speed else (0.5, model.pt)
    if not model.pt:
        if model.imgsz is not None:
            h, w = model.imgsz
            if h != w:
                raise UserError(f"the model was exported for {h}x{w}; segment/val.py needs a square export")
            if h != imgsz:
                LOGGER.warning("WARNING: --imgsz %d does not fit the static export, using %d", imgsz, h)
            imgsz = h
        batch_size = int(model.batch or 1)
        LOGGER.info("Forcing --batch-size %d square inference for non-PyTorch models", batch_size)
    return check_img_size(imgsz, stride=int(model.stride)), batch_size, rect, pad


def run_val(opt: argparse.Namespace, save_dir: Path | None, plots: bool = True) -> SegMetrics:
    """Validate opt.weights on opt.task's split of opt.data; opt carries segment/val.py's flags."""
    from utils.data.config import check_dataset
    from utils.data.loader import create_dataloader
    from utils.data.options import DataOptions, LoaderOptions
    from utils.deploy.backends import load_predictor
    from utils.segment.dataset import SegmentDataset
    from utils.torch_utils import select_device
    from utils.val.coco import coco_target
    from utils.val.loop import validate

    device = select_device(opt.device, opt.batch_size)
    half = opt.half and device.type != "cpu"
    data = check_dataset(opt.data)
    weights = opt.weights[0] if isinstance(opt.weights, (list, tuple)) else opt.weights
    if isinstance(opt.weights, (list, tuple)) and len(opt.weights) > 1:
        raise UserError("segment/val.py takes one --weights file (an ensemble of segmentation models is not supported)")
    model = load_predictor(weights, device=device, fp16=half)
    if model.task != "segment":
        raise UserError(f"{weights} is a detection model; segment/val.py needs a segmentation (-seg) model")
    nc = 1 if opt.single_cls else int(data["nc"])
    names = names_list(model.names) if model.names else names_list(data["names"])  # the predictor's: {i: name}
    if not opt.single_cls and len(names) != nc:
        raise UserError(f"{weights} has {len(names)} classes but --data {opt.data} has {nc}: pass the model's dataset "
                        "(e.g. --data coco128-seg.yaml for COCO models) or matching weights")  # fmt: skip
    speed = opt.task == "speed"
    imgsz, batch_size, rect, pad = loader_settings(model, opt.imgsz, opt.batch_size, speed)
    split = "val" if opt.task in ("speed", "study") else opt.task
    if not data.get(split):
        raise UserError(f"--data {opt.data} has no '{split}' split")
    options = DataOptions(
        img_size=imgsz, batch_size=batch_size, single_cls=opt.single_cls, stride=model.stride, pad=pad, rect=rect,
        prefix=f"{split}: ", nc=int(data["nc"]),
    )  # fmt: skip
    loader = create_dataloader(data[split], options, LoaderOptions(workers=opt.workers), SegmentDataset,
                               {"mask_ratio": 1, "overlap": False})[0]  # fmt: skip
    evaluator = SegmentEvaluator(
        names, save_dir, plots=plots, single_cls=opt.single_cls, overlap=False, save_txt=opt.save_txt,
        save_conf=opt.save_conf, save_json=opt.save_json, coco=coco_target(data) if opt.save_json else None,
        per_class=opt.verbose or nc < 50, conf_thres=opt.conf_thres, iou_thres=opt.iou_thres, max_det=opt.max_det,
        mask_mode="native" if opt.save_json else "proto",  # official: exact masks for COCO json, fast ones otherwise
    )  # fmt: skip
    return validate(model, loader, evaluator, progress=False, speed_shape=(batch_size, imgsz))
