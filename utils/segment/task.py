"""Instance segmentation as a Task of the shared engine: the detection parts that fit as they are, and the
segmentation ones (dataset with masks, mask loss, box + mask evaluator, masks after NMS, mask drawing).

`segment_task(mask_ratio, overlap)` builds the Task for segment/train.py's --mask-ratio and --no-overlap.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Mapping, Sequence, Tuple

import numpy as np
import torch

from utils.data.options import DataOptions, LoaderOptions
from utils.deploy.annotate import draw_detections
from utils.errors import UserError
from utils.segment.dataset import SegmentDataset
from utils.segment.evaluate import SegmentEvaluator
from utils.segment.loss import SegmentLoss
from utils.segment.metrics import LOSS_NAMES, METRIC_NAMES
from utils.segment.plots import blend_masks, masks_per_image, with_masks
from utils.segment.postprocess import SegResult, postprocess
from utils.task import Task
from utils.train.config import TrainConfig
from utils.train.data import check_labels, sampling_weights
from utils.train.setup import rank_zero_first
from utils.train.tasks import DETECT, task_model

MAX_MASK_RATIO = 32  # the smallest image side the loaders make (one stride)


def train_loader(config: TrainConfig, imgsz: int, stride: int, start_epoch: int = 0, mask_ratio: int = 4,
                 overlap: bool = True) -> Tuple[Any, SegmentDataset]:  # fmt: skip
    """-> (loader, dataset): augmented batches (imgs, targets, paths, shapes, masks at 1 / mask_ratio)."""
    from utils.data.loader import create_dataloader

    if config.quad:
        raise UserError("--quad is not supported for segmentation (as official segment/train.py)")
    cache = None if config.cache == "val" else config.cache
    with rank_zero_first(config.local_rank):
        data = DataOptions(
            img_size=imgsz, batch_size=config.batch_per_process, augment=True, hyp=dict(config.hyp), rect=config.rect,
            cache_images=cache, single_cls=config.single_cls, stride=stride, prefix="train: ",
            rank=config.local_rank, seed=config.seed, nc=config.nc,
        )  # fmt: skip
        serve = LoaderOptions(config.workers, shuffle=True, image_weights=config.image_weights,
                              start_epoch=start_epoch)  # fmt: skip
        loader, dataset = create_dataloader(config.data["train"], data, serve, SegmentDataset,
                                            {"mask_ratio": mask_ratio, "overlap": overlap})  # fmt: skip
    if not len(dataset):
        raise UserError(f"no usable training images in {config.data['train']}")
    return loader, dataset


def val_loader(config: TrainConfig, imgsz: int, stride: int, mask_ratio: int = 4, overlap: bool = True) -> Any:
    """Rank 0's validation loader: rect batches of 2x the per-process batch, masks as in training (official)."""
    from utils.data.loader import create_dataloader

    data = DataOptions(
        img_size=imgsz, batch_size=config.batch_per_process * 2, hyp=dict(config.hyp), rect=True,
        cache_images=None if config.noval else config.cache, single_cls=config.single_cls, stride=stride, pad=0.5,
        prefix="val: ", nc=config.nc,
    )  # fmt: skip
    serve = LoaderOptions(workers=config.workers * 2)
    return create_dataloader(config.data["val"], data, serve, SegmentDataset,
                             {"mask_ratio": mask_ratio, "overlap": overlap})[0]  # fmt: skip


def evaluator(names: Sequence[str], save_dir: Path | None, plots: bool = False, per_class: bool = False,
              single_cls: bool = False, overlap: bool = True) -> SegmentEvaluator:  # fmt: skip
    """Training's validation: conf 0.001, NMS IoU 0.6, masks at prototype size, as official segment/train.py."""
    return SegmentEvaluator(names, save_dir, plots=plots, single_cls=single_cls, overlap=overlap, per_class=per_class)


def plot_batch(imgs: torch.Tensor, batch: Sequence, path: Path, names: Sequence[str], overlap: bool = True) -> None:
    """A training batch with its boxes and masks as one picture."""
    from utils.val.plots import plot_images  # late: plotting pulls in matplotlib

    per_image = masks_per_image(batch[1], batch[4], imgs.shape[0], overlap)
    plot_images(with_masks(imgs, per_image), batch[1], batch[2], path, names)


def segment_postprocess(raw, im_shape: Sequence[int], **options: Any) -> list:
    """(pred, protos) -> per image SegResult (boxes, coefficients, masks); options: postprocess's keywords."""
    return postprocess(raw, im_shape, **options)


def annotate(im: np.ndarray, result: SegResult, names: Mapping[int, str], line_width: int | None = None,
             hide_labels: bool = False, hide_conf: bool = False) -> np.ndarray:  # fmt: skip
    """A BGR image of the input's size with the result's masks (class colours) and boxes drawn -> new image."""
    classes = result.det[:, 5].int().tolist()
    im = blend_masks(im, result.masks.flip(0), classes[::-1], bgr=True)
    return draw_detections(im, result.det, dict(names), line_width, hide_labels, hide_conf)


def segmentation_model(config: TrainConfig, resume_ckpt: Mapping[str, Any] | None = None) -> torch.nn.Module:
    """DETECT's model from --cfg/--weights, which must end in a Segment head (a -seg yaml or -seg weights)."""
    from models.yolo import Segment

    model = task_model(config, resume_ckpt)
    if not isinstance(model.model[-1], Segment):
        what = f"--cfg {config.cfg}" if config.cfg else f"--weights {config.weights}"
        raise UserError(f"{what} is not a segmentation model; give a -seg yaml (e.g. yolov5s-seg.yaml) or -seg weights")
    return model


def segment_task(mask_ratio: int = 4, overlap: bool = True) -> Task:
    """The segmentation Task; mask_ratio and overlap as segment/train.py's --mask-ratio and (not) --no-overlap."""
    if not 1 <= mask_ratio <= MAX_MASK_RATIO:  # masks are (H / ratio, W / ratio); every side is at least 32
        raise UserError(f"--mask-ratio must be an integer in 1..{MAX_MASK_RATIO}, got {mask_ratio}")
    masks = dict(mask_ratio=mask_ratio, overlap=overlap)
    return dataclasses.replace(
        DETECT,
        name="segment",
        build_model=segmentation_model,
        loss_names=LOSS_NAMES,
        metric_names=tuple(m.split("/", 1)[1] for m in METRIC_NAMES),
        train_loader=lambda c, imgsz, stride, start_epoch=0: train_loader(c, imgsz, stride, start_epoch, **masks),
        val_loader=lambda c, imgsz, stride: val_loader(c, imgsz, stride, **masks),
        check_data=check_labels,
        criterion=lambda model, hyp: SegmentLoss(model, hyp, overlap=overlap),
        evaluator=lambda *a, **k: evaluator(*a, overlap=overlap, **k),
        plot_batch=lambda imgs, batch, path, names: plot_batch(imgs, batch, path, names, overlap),
        image_weights=sampling_weights,
        postprocess=segment_postprocess,
        annotate=annotate,
        channels_last=True,  # CPU: oneDNN's convolutions are faster; the mask loss and masks take any proto layout
    )


SEGMENT = segment_task()
