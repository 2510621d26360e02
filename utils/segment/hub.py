"""Python API for segmentation models: `model = load('yolov5n-seg.pt'); r = model('bus.jpg')` -> SegDetections.

Official YOLOv5's hub only warns that segmentation models are "not yet AutoShape compatible"; here a -seg model loaded
through hubconf.custom (or `load`) is called on paths, PIL images or numpy images like a detector, and its results
carry each instance's mask at the original image size (as segment/predict.py --retina-masks computes them).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch
import torch.nn as nn

from utils.boxes import scale_boxes
from utils.deploy.annotate import save_one_box
from utils.deploy.hub import Detections, Detector
from utils.deploy.predictor import ModelPredictor, Predictor
from utils.errors import UserError
from utils.segment.ops import masks_to_polygons, process_mask_native, scale_masks
from utils.segment.plots import blend_masks
from utils.segment.postprocess import postprocess

LOGGER = logging.getLogger(__name__)


class SegDetections(Detections):
    """Detections plus masks: per image masks[i] (n, H, W) bool at the image's own size, one per row of xyxy[i]
    (same order), drawn by render() / save() / show() under the boxes."""

    def __init__(self, ims: List[np.ndarray], pred: List[torch.Tensor], masks: List[torch.Tensor], **fields: Any):
        super().__init__(ims, pred, **fields)
        self.masks = masks

    def item_fields(self, i: int) -> Dict[str, Any]:
        return {**super().item_fields(i), "masks": [self.masks[i]]}

    def draw(self, i: int, im_bgr: np.ndarray, labels: bool = True) -> np.ndarray:
        """Masks in class colours (highest confidence on top), then the boxes."""
        classes = self.pred[i][:, 5].int().flip(0).tolist()
        return super().draw(i, blend_masks(im_bgr, self.masks[i].flip(0), classes, bgr=True), labels)

    def crop_extra(self, i: int, k: int, row: Dict[str, Any]) -> Dict[str, Any]:
        """crop()'s dict with 'mask': the instance's bool mask over the same region as its image crop."""
        mask = self.masks[i][k].numpy()
        return {**row, "mask": save_one_box(row["box"], mask, save=False)}

    def polygons(self, normalize: bool = False) -> List[List[np.ndarray]]:
        """Per image, each mask's largest outer contour as a (k, 2) float32 polygon in pixels (0-1 with normalize),
        as segment/predict.py --save-txt writes them."""
        out = []
        for im, m in zip(self.ims, self.masks):
            polys = masks_to_polygons(m)
            scale = np.array([im.shape[1], im.shape[0]], np.float32) if normalize else np.ones(2, np.float32)
            out.append([p / scale for p in polys])
        return out

    def __repr__(self) -> str:
        return f"<SegDetections: {len(self)} image(s), {sum(len(p) for p in self.pred)} instance(s)>"


class Segmenter(Detector):
    """A loaded segmentation model; call it on images -> SegDetections. Settings (conf, iou, classes, agnostic,
    max_det, size) are attributes as on Detector, plus retina_masks: True (default) makes each mask at the image's
    own size from the prototypes (segment/predict.py --retina-masks), False at the network input's size, then
    resized to the image (segment/predict.py's default; edges coarser by up to half a prototype pixel). On a float
    tensor (B, 3, H, W) it returns the raw (pred (B, N, 5 + nc + nm), protos (B, nm, H / 4, W / 4))."""

    def __init__(self, model: Predictor, size: int = 640, retina_masks: bool = True):
        if model.task != "segment":
            raise UserError(f"not a segmentation model (task {model.task!r}): use utils.deploy.hub.load")
        super().__init__(model, size)
        self.retina_masks = retina_masks

    def forward(self, ims, size: int | None = None, augment: bool = False, bgr: bool = False):
        if augment:
            LOGGER.warning("WARNING: segmentation has no test-time augmentation (as official); plain inference runs")
        return super().forward(ims, size=size, augment=False, bgr=bgr)

    def postprocess(self, pred: Any, shape: Sequence[int], ims: List[np.ndarray]) -> Dict[str, Any]:
        """NMS with the mask coefficients; boxes scaled to each original image, and masks made there (prototypes
        un-padded, upsampled to (h0, w0), cropped by the box, > 0.5)."""
        nms = self.nms_options()
        mode = "proto" if self.retina_masks else "upsample"
        results = postprocess(pred, shape, nms.conf_thres, nms.iou_thres, nms.classes, nms.agnostic,
                              max_det=nms.max_det, mask_mode=mode)  # fmt: skip
        dets, masks = [], []
        for res, im in zip(results, ims):
            det = res.det.clone()
            det[:, :4] = scale_boxes(shape, det[:, :4], im.shape)
            if self.retina_masks:
                m = process_mask_native(res.proto, res.coefs, det[:, :4], im.shape[:2])
            else:  # segment/predict.py's default: masks of the input size, padding cut, resized to the image
                arr = res.masks.permute(1, 2, 0).contiguous().cpu().numpy().astype(np.uint8)
                m = torch.from_numpy(scale_masks(arr, shape, im.shape[:2])).permute(2, 0, 1)
            masks.append(m.bool().cpu())
            dets.append(det.cpu())
        return {"pred": dets, "masks": masks}

    def make_results(self, ims: List[np.ndarray], **fields: Any) -> SegDetections:
        return SegDetections(ims, **fields)


def load(
    weights: Union[str, Path, nn.Module, Predictor] = "yolov5s-seg.pt",
    device: str = "",
    size: int = 640,
    fuse: bool = True,
) -> Segmenter:
    """Load a segmentation model once (.pt ours/official, .onnx, .torchscript, OpenVINO folder; a model or a
    Predictor is used as is) -> a callable Segmenter."""
    if isinstance(weights, Predictor):
        return Segmenter(weights, size)
    if isinstance(weights, nn.Module):
        return Segmenter(ModelPredictor(weights.eval()), size)
    from utils.deploy.backends import load_predictor
    from utils.torch_utils import select_device

    return Segmenter(load_predictor(str(weights), device=select_device(device), fuse=fuse), size)
