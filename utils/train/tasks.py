"""Detection as a Task: the parts the shared engine calls (see utils/task.py), gathered from the wings.

Detection is the wings' own task (its loss is in utils/train, its metrics in utils/val, its NMS and drawing in
utils/deploy and the leaves), so its Task lives here, in the top wing. Other tasks live in their own folders
(utils/segment/, utils/classify/) and build their Task the same way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn

from utils.deploy.annotate import draw_detections
from utils.deploy.predict import NMSOptions, postprocess
from utils.errors import UserError
from utils.task import Task
from utils.torch_utils import de_parallel
from utils.train.config import TrainConfig
from utils.train.data import build_train_loader, build_val_loader, check_labels, sampling_weights
from utils.train.loss import DetectionCriterion
from utils.train.setup import build_model, freeze_layers, scale_loss_gains
from utils.train.state import fp32_state
from utils.val.evaluate import DetectionEvaluator, EvalOptions


def detection_model(config: TrainConfig, resume_ckpt: Mapping[str, Any] | None = None) -> nn.Module:
    """task_model() refused when it is a segmentation model (segment/train.py trains those)."""
    from models.yolo import Segment

    model = task_model(config, resume_ckpt)
    if isinstance(model.model[-1], Segment):
        what = f"--cfg {config.cfg}" if config.cfg else f"--weights {config.weights}"
        raise UserError(f"{what} is a segmentation model; train it with segment/train.py")
    return model


def task_model(config: TrainConfig, resume_ckpt: Mapping[str, Any] | None = None) -> nn.Module:
    """DetectionModel from --cfg/--weights (a resume: the interrupted run's exact fp32 weights), layers frozen."""
    weights, cfg = (config.resume_path, "") if resume_ckpt is not None else (config.weights, config.cfg)
    model, _ = build_model(cfg, weights, config.nc, list(config.names), config.hyp.get("anchors"))
    if getattr(model, "task", "") == "classify" or not hasattr(model.model[-1], "nl"):
        raise UserError(f"{weights} is not a detection model (a classifier?); give detection weights or a --cfg yaml")
    if resume_ckpt is not None:
        model.load_state_dict(fp32_state(resume_ckpt["model"]["state_dict"]))
    freeze_layers(model, list(config.freeze))
    model.nc = config.nc
    return model


def detection_hyp(hyp: Mapping[str, Any], model: nn.Module, nc: int, imgsz: int) -> Mapping[str, Any]:
    """The loss gains rescaled for the model's number of levels, the classes and the image size (as YOLOv5)."""
    return scale_loss_gains(dict(hyp), de_parallel(model).model[-1].nl, nc, imgsz)


def detection_evaluator(
    names: Sequence[str], save_dir: Path | None, plots: bool = False, per_class: bool = False, single_cls: bool = False
) -> DetectionEvaluator:
    """Training's validation: conf 0.001, NMS IoU 0.6, as YOLOv5's train.py."""
    options = EvalOptions(iou_thres=0.6, single_cls=single_cls, plots=plots, per_class=per_class)
    return DetectionEvaluator(names, save_dir, options)


def plot_train_batch(imgs: torch.Tensor, batch: Sequence, path: Path, names: Sequence[str]) -> None:
    """A training batch (imgs (B, 3, H, W), targets, paths) as a labelled mosaic picture."""
    from utils.val.plots import plot_images  # late: plotting pulls in matplotlib

    plot_images(imgs, batch[1], batch[2], path, names)


def detection_postprocess(pred: torch.Tensor, **options: Any) -> list:
    """(B, N, 5 + nc) -> per image (n, 6) [x1, y1, x2, y2, conf, cls]; options: NMSOptions' fields."""
    return postprocess(pred, NMSOptions(**options))


DETECT = Task(
    name="detect",
    loss_names=DetectionCriterion.loss_names,
    metric_names=("precision", "recall", "mAP_0.5", "mAP_0.5:0.95"),
    build_model=detection_model,
    hyp_for_model=detection_hyp,
    train_loader=build_train_loader,
    val_loader=build_val_loader,
    check_data=check_labels,
    criterion=DetectionCriterion,
    evaluator=detection_evaluator,
    plot_batch=plot_train_batch,
    image_weights=sampling_weights,
    postprocess=detection_postprocess,
    annotate=draw_detections,
    channels_last=True,
)
