"""Python API: `model = load('yolov5n.pt'); results = model('bus.jpg')` -> Detections (boxes, tables, render, save).

Inputs: a path (str/Path), a PIL image, a numpy (H, W, 3) uint8 image in RGB order (pass bgr=True for cv2.imread
output), or a list of these. Everything stored and returned by Detections is RGB.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Sequence, Union

import numpy as np
import torch
import torch.nn as nn
from PIL import Image

from models.registry import make_divisible
from utils.boxes import scale_boxes, xyxy2xywh
from utils.data.image_io import check_array, check_size
from utils.data.sources import read_image
from utils.deploy.annotate import draw_detections, save_one_box
from utils.deploy.predict import NMSOptions, postprocess, summarize, warmup_nms
from utils.deploy.predictor import ModelPredictor, Predictor
from utils.deploy.results import ImageResults
from utils.errors import DataError, UserError
from utils.flag_ranges import MAX_IMGSZ
from utils.paths import increment_path
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)

ImageLike = Union[str, Path, np.ndarray, Image.Image]


def check_size_arg(size: Any) -> int:
    """The hub's `size` argument: an int image side in 1..MAX_IMGSZ, else a UserError."""
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 1 <= size <= MAX_IMGSZ:
        raise UserError(f"size must be an int between 1 and {MAX_IMGSZ} pixels, got {size!r}")
    return int(size)


def _to_rgb(im: ImageLike, i: int, bgr: bool) -> tuple:
    """One input -> (RGB uint8 (H, W, 3), file name)."""
    if isinstance(im, (str, Path)):
        arr = read_image(im)
        if arr is None:
            raise DataError(f"cannot read image: {im}")
        return np.ascontiguousarray(arr[..., ::-1]), Path(im).name
    if isinstance(im, Image.Image):
        check_size(im.width, im.height, f"image {i}")
        return np.asarray(im.convert("RGB")).copy(), Path(getattr(im, "filename", "") or f"image{i}.jpg").name
    if isinstance(im, np.ndarray):
        if not (np.issubdtype(im.dtype, np.number) or im.dtype == bool):
            raise UserError(f"image {i}: numpy dtype {im.dtype} is not a number type")
        arr = im
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3, 4):
            arr = arr.transpose(1, 2, 0)  # CHW -> HWC
        check_array(arr, f"image {i}")
        arr = np.nan_to_num(arr.astype(np.float32)) if arr.dtype.kind == "f" else arr
        arr = arr if arr.ndim == 3 else arr[..., None]
        arr = np.repeat(arr, 3, -1) if arr.shape[-1] == 1 else arr[..., :3]  # greyscale -> 3 channels
        if arr.dtype != np.uint8:
            arr = np.clip(arr * (255 if arr.max() <= 1 else 1), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(arr[..., ::-1] if bgr else arr), f"image{i}.jpg"
    raise UserError(f"unsupported image type {type(im).__name__}: use a path, PIL image or numpy array")


def _letterbox_batch(ims: List[np.ndarray], size: int, stride: int, fixed: Sequence[int] | None = None) -> tuple:
    """RGB images -> float-ready uint8 batch (B, 3, H, W) sharing one stride-multiple shape, and that shape (fixed:
    a static export's (H, W), used as is)."""
    from utils.data.augment import letterbox

    scaled = [(h * size / max(h, w), w * size / max(h, w)) for h, w in (im.shape[:2] for im in ims)]
    shape = list(fixed) if fixed else [make_divisible(max(s[k] for s in scaled), stride) for k in (0, 1)]
    batch = np.stack([letterbox(im, shape, auto=False)[0].transpose(2, 0, 1) for im in ims])
    return np.ascontiguousarray(batch), shape


class Detector(nn.Module):
    """A loaded model plus inference settings; call it on images to get Detections. Settings are attributes.

    Called on a float tensor batch (B, 3, H, W) in 0-1 it returns the raw prediction (B, N, 5 + nc) without NMS,
    so torch.jit.trace(detector, [im]) works as with YOLOv5's AutoShape.
    """

    def __init__(self, model: Predictor, size: int = 640):
        super().__init__()
        self.model = model
        self.size = size
        self.conf, self.iou, self.classes, self.agnostic, self.max_det = 0.25, 0.45, None, False, 1000
        self.stride, self.names, self.device = model.stride, model.names, model.device
        self.train(False)
        warmup_nms()

    @torch.no_grad()
    def forward(
        self,
        ims: Union[ImageLike, Sequence[ImageLike], torch.Tensor],
        size: int | None = None,
        augment: bool = False,
        bgr: bool = False,
    ) -> Union[Detections, torch.Tensor]:
        """Detect on one image or a list; size is the long side in pixels (default self.size).

        A tensor (B, 3, H, W) float 0-1 (H, W multiples of the stride) -> raw (B, N, 5 + nc), no NMS.
        """
        if isinstance(ims, torch.Tensor):
            return self.model(ims if ims.ndim == 4 else ims[None], augment=augment)
        t0 = time_sync()
        items = list(ims) if isinstance(ims, (list, tuple)) else [ims]
        if not items:
            raise UserError("no images given")
        size = check_size_arg(self.size if size is None else size)
        rgb, files = zip(*(_to_rgb(im, i, bgr) for i, im in enumerate(items)))
        if getattr(self.model, "batch", None) not in (None, len(items)):
            raise UserError(f"this export takes batches of {self.model.batch} images, got {len(items)}")
        batch, shape = _letterbox_batch(list(rgb), int(size), self.stride, getattr(self.model, "imgsz", None))
        x = self.model.prepare(torch.from_numpy(batch))
        t1 = time_sync()
        pred = self.model(x, augment=augment)
        t2 = time_sync()
        found = self.postprocess(pred, shape, list(rgb))
        t3 = time_sync()
        times = tuple((b - a) * 1e3 / len(items) for a, b in ((t0, t1), (t1, t2), (t2, t3)))
        return self.make_results(list(rgb), files=list(files), names=self.names, times=times,
                                 shape=(len(items), 3, *shape), **found)  # fmt: skip

    def make_results(self, ims: List[np.ndarray], **fields: Any) -> Detections:
        """The results object of one call (a task's detector returns its own kind)."""
        return Detections(ims, **fields)

    def nms_options(self) -> NMSOptions:
        """The current settings as detect.py's NMS options."""
        return NMSOptions(self.conf, self.iou, self.classes, self.agnostic, self.max_det)

    def postprocess(self, pred: Any, shape: Sequence[int], ims: List[np.ndarray]) -> Dict[str, Any]:
        """Raw predictions of the letterboxed batch of shape (H, W) -> the results' per-image fields: here pred,
        (n, 6) boxes in each original image's pixels, on the CPU."""
        if self.model.task != "detect":
            raise UserError(
                f"this is a {self.model.task} model: load it with torch.hub 'custom' (hubconf.py) or "
                f"utils.{self.model.task}.hub.load, not utils.deploy.hub.load"
            )
        dets = postprocess(pred, self.nms_options())
        for det, im in zip(dets, ims):
            det[:, :4] = scale_boxes(shape, det[:, :4], im.shape)
        return {"pred": [d.cpu() for d in dets]}


def load(
    weights: Union[str, Path, Sequence[str], nn.Module] = "yolov5s.pt",
    device: str = "",
    size: int = 640,
    fuse: bool = True,
) -> Detector:
    """Load weights once (.pt ours/official, .onnx, .torchscript, or a list = ensemble) -> a callable Detector.

    A DetectionModel instance is accepted too (used as is, in eval mode), and so is a Predictor.
    """
    if isinstance(weights, Predictor):
        return Detector(weights, size)
    if isinstance(weights, nn.Module):
        return Detector(ModelPredictor(weights.eval()), size)
    from utils.deploy.backends import load_predictor
    from utils.torch_utils import select_device

    w = [str(x) for x in weights] if isinstance(weights, (list, tuple)) else str(weights)
    return Detector(load_predictor(w, device=select_device(device), fuse=fuse), size)


class Detections(ImageResults):
    """Results of one call: per image RGB image and (n, 6) [x1, y1, x2, y2, conf, cls] boxes in its own pixels."""

    COLUMNS = ["xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"]

    def __init__(
        self,
        ims: List[np.ndarray],
        pred: List[torch.Tensor],
        files: List[str],
        names: Dict[int, str],
        times: tuple = (0.0, 0.0, 0.0),
        shape: tuple = (),
    ):
        self.ims, self.pred, self.files, self.names, self.times, self.shape = ims, pred, files, names, times, shape
        gn = [torch.tensor([im.shape[1], im.shape[0], im.shape[1], im.shape[0], 1.0, 1.0]) for im in ims]
        self.xyxy = pred
        self.xywh = [torch.cat([xyxy2xywh(p[:, :4]), p[:, 4:]], 1) for p in pred]
        self.xyxyn = [p / g for p, g in zip(self.xyxy, gn)]
        self.xywhn = [p / g for p, g in zip(self.xywh, gn)]

    def item_fields(self, i: int) -> Dict[str, Any]:
        """The constructor's arguments for image i alone (a subclass adds its own per-image fields)."""
        return dict(ims=[self.ims[i]], pred=[self.pred[i]], files=[self.files[i]], names=self.names,
                    times=self.times, shape=self.shape)  # fmt: skip

    def __getitem__(self, i: int) -> Detections:
        return type(self)(**self.item_fields(i))

    def tables(self) -> List[List[Dict[str, Any]]]:
        """Per image, one dict per box: xmin ymin xmax ymax confidence class name (pandas-free .pandas().xyxy)."""
        out = []
        for p in self.pred:
            rows = []
            for x1, y1, x2, y2, conf, cls in p.tolist():
                c = int(cls)
                rows.append(dict(xmin=x1, ymin=y1, xmax=x2, ymax=y2, confidence=conf, name=self.names.get(c, str(c))))
                rows[-1]["class"] = c
            out.append(rows)
        return out

    def render(self, labels: bool = True) -> List[np.ndarray]:
        """Annotated copies of the images (RGB uint8 (H, W, 3))."""
        out = []
        for i, im in enumerate(self.ims):
            drawn = self.draw(i, np.ascontiguousarray(im[..., ::-1]), labels)  # BGR
            out.append(np.ascontiguousarray(drawn[..., ::-1]))
        return out

    def draw(self, i: int, im_bgr: np.ndarray, labels: bool = True) -> np.ndarray:
        """Image i (BGR (H, W, 3) uint8) with its results drawn -> a new BGR image."""
        return draw_detections(im_bgr, self.pred[i], self.names, hide_labels=not labels)

    def show(self, labels: bool = True) -> None:
        """Show the annotated images in OpenCV windows (a warning instead where there is no display)."""
        import cv2

        from utils.deploy.predict_io import display_available

        if not display_available():
            LOGGER.warning("WARNING: show() needs a display; use save() instead")
            return
        for f, im in zip(self.files, self.render(labels)):
            cv2.imshow(f, im[..., ::-1])
        cv2.waitKey(1)

    def crop(self, save: bool = True, save_dir: Union[str, Path] = "runs/detect/exp", exist_ok: bool = False
             ) -> List[Dict[str, Any]]:  # fmt: skip
        """One dict per box of every image: box (4,), conf, cls, label, im (the BGR crop, as YOLOv5's crop()); with
        save, each crop is written to <run>/crops/<class name>/<file>."""
        folder = increment_path(save_dir, exist_ok=exist_ok, mkdir=True) if save else None
        out = []
        for i, (im, f) in enumerate(zip(self.ims, self.files)):
            bgr = np.ascontiguousarray(im[..., ::-1])
            for k, (*box, conf, cls) in enumerate(self.pred[i].tolist()):
                name = self.names.get(int(cls), str(int(cls)))
                file = folder / "crops" / name / f"{Path(f).stem}_{k}.jpg" if folder is not None else None
                crop = save_one_box(box, bgr, file=file, save=save)
                row = dict(box=torch.tensor(box), conf=conf, cls=int(cls), label=f"{name} {conf:.2f}", im=crop)
                out.append(self.crop_extra(i, k, row))
        if folder is not None:
            LOGGER.info("Saved crops to %s", folder / "crops")
        return out

    def crop_extra(self, i: int, k: int, row: Dict[str, Any]) -> Dict[str, Any]:
        """crop()'s dict for box k of image i; a subclass adds its own fields (segmentation: the mask's crop)."""
        return row

    def __str__(self) -> str:
        lines = []
        for i, (im, p) in enumerate(zip(self.ims, self.pred)):
            counts = summarize(p, self.names).rstrip(", ")
            lines.append(f"image {i + 1}/{len(self)}: {im.shape[0]}x{im.shape[1]} {counts}")
        pre, inf, nms = self.times
        lines.append(
            f"Speed: {pre:.1f}ms pre-process, {inf:.1f}ms inference, {nms:.1f}ms NMS per image at shape {self.shape}"
        )
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<Detections: {len(self)} image(s), {sum(len(p) for p in self.pred)} box(es)>"
