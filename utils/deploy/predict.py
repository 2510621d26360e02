"""The detect.py inference loop: sources -> model -> NMS -> annotated images/videos, txt/csv labels and crops."""

from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Sequence

import cv2
import numpy as np
import torch

from utils.boxes import scale_boxes
from utils.deploy.feature_maps import FeatureMapWriter
from utils.deploy.predict_io import PredictionSaver, SaveOptions
from utils.deploy.predictor import Predictor
from utils.errors import UserError
from utils.names import names_dict
from utils.nms import non_max_suppression
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


@dataclass
class NMSOptions:
    """Post-processing settings (detect.py defaults)."""

    conf_thres: float = 0.25
    iou_thres: float = 0.45
    classes: List[int] | None = None
    agnostic: bool = False
    max_det: int = 1000


@dataclass
class Profile:
    """Accumulated seconds for pre-process, inference and NMS, and the number of images seen."""

    times: List[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    seen: int = 0

    def per_image_ms(self) -> List[float]:
        return [t / max(self.seen, 1) * 1e3 for t in self.times]


def to_tensor(im: np.ndarray) -> torch.Tensor:
    """uint8 (3, H, W) or (B, 3, H, W) RGB -> uint8 tensor (B, 3, H, W); Predictor.prepare casts and scales it."""
    t = torch.from_numpy(np.ascontiguousarray(im))
    return t[None] if t.ndim == 3 else t


def load_backend(
    weights: Sequence[str], device: torch.device, data: str | None = None, half: bool = False
) -> Predictor:
    """The predictor for --weights (several = ensemble); class names from --data when the weights carry none."""
    from utils.deploy.backends import load_predictor

    w = [str(x) for x in weights] if isinstance(weights, (list, tuple)) else [str(weights)]
    model = load_predictor(w if len(w) > 1 else w[0], device=device, fp16=half)
    if data and not model.names:
        from utils.data.config import check_dataset

        model.names = names_dict(check_dataset(data)["names"])
    return model


def postprocess(pred: torch.Tensor, nms: NMSOptions) -> List[torch.Tensor]:
    """(B, N, 5+nc) -> per image (n, 6) [x1, y1, x2, y2, conf, cls] in letterboxed pixels."""
    return non_max_suppression(pred, nms.conf_thres, nms.iou_thres, nms.classes, nms.agnostic, max_det=nms.max_det)


def warmup_nms() -> None:
    """One NMS call on a single box, so that the lazy torchvision import is not timed on the first image."""
    non_max_suppression(torch.tensor([[[10.0, 10.0, 4.0, 4.0, 0.9, 0.9]]]))


def summarize(det: torch.Tensor, names: Dict[int, str]) -> str:
    """'4 persons, 1 bus, ' as YOLOv5 prints it (classes in index order); '(no detections), ' when empty."""
    if not len(det):
        return "(no detections), "
    s = ""
    for c in det[:, 5].unique():
        n = int((det[:, 5] == c).sum())
        s += f"{n} {names.get(int(c), int(c))}{'s' * (n > 1)}, "
    return s


def source_fps(dataset, cap, i: int) -> float:
    """Frames per second for the saved video of stream/video i: the source's fps divided by --vid-stride."""
    if dataset.mode == "stream":
        fps = dataset.fps[i]
    else:
        fps = cap.get(cv2.CAP_PROP_FPS) if cap is not None else 30.0
    fps = fps if fps and math.isfinite(fps) and fps > 0 else 30.0
    return fps / max(getattr(dataset, "vid_stride", 1), 1)


def feature_writer(model: Predictor, save_dir: Path) -> FeatureMapWriter | None:
    """Hooks for --visualize on a PyTorch model; None (after one warning) for ONNX / TorchScript backends."""
    nets = model.modules_for_hooks()
    if not nets:
        LOGGER.warning("WARNING: --visualize needs PyTorch (.pt) weights; feature maps are not saved")
        return None
    return FeatureMapWriter(nets[0], save_dir)


def heatmap_writer(model: Predictor, save_dir: Path, layer: int):
    """HeatmapWriter for --heatmap on a PyTorch model; None (after one warning) for exported backends."""
    from utils.deploy.heatmap import HeatmapWriter  # late: only --heatmap needs grad-cam

    nets = model.modules_for_hooks()
    if not nets:
        LOGGER.warning("WARNING: --heatmap needs PyTorch (.pt) weights; heatmaps are not saved")
        return None
    return HeatmapWriter(nets[0], save_dir, layer)


def visualize_names(dataset, path) -> List[str] | None:
    """Feature-map folder names for one dataset item: the image stem; '<stem>_<frame>' for the first frame of each
    video (and the first batch of streams) only, None for later frames."""
    if dataset.mode == "image":
        return [Path(path).stem]
    if dataset.mode == "video":
        return [f"{Path(path).stem}_{dataset.frame}"] if dataset.frame == 1 else None
    return [f"{Path(p).stem}_{dataset.count}" for p in path] if dataset.count == 0 else None


@torch.no_grad()
def run_detection(
    model: Predictor,
    dataset,
    save_dir: Path,
    nms: NMSOptions,
    save: SaveOptions,
    augment: bool = False,
    progress=None,
    visualize: bool = False,
    heatmap: int | None = None,
) -> Profile:
    """Run model over every item of a sources.load_source dataset; print, draw and save as detect.py does.

    visualize: save each stage's feature maps per image under save_dir (see utils.deploy.feature_maps; .pt only).
    heatmap: a layer index (-1: the default layer) whose EigenCAM, and FLA's attention, are drawn per image under
    save_dir/heatmaps (see utils.deploy.heatmap; .pt only); None: off.
    """
    names = model.names
    saver = PredictionSaver(save_dir, names, save)
    prof = Profile()
    warmup_nms()
    model.use_channels_last()
    viz = feature_writer(model, save_dir) if visualize else None
    hm = heatmap_writer(model, save_dir, heatmap) if heatmap is not None else None
    with contextlib.closing(saver), viz or contextlib.nullcontext():
        for path, im, im0s, cap, desc in dataset:
            t0 = time_sync()
            x = model.prepare(to_tensor(im))
            t1 = time_sync()
            problem = model.check_input(tuple(x.shape))
            if problem:
                raise UserError(f"cannot run this model on the source: {problem}")
            if viz is not None:
                viz.target(visualize_names(dataset, path))
            pred = model(x, augment=augment)
            t2 = time_sync()
            dets = postprocess(pred, nms)
            t3 = time_sync()
            for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                prof.times[k] += dt
            prof.seen += len(dets)
            stream = dataset.mode == "stream"
            drawn = visualize_names(dataset, path) if hm is not None else None
            for i, det in enumerate(dets):
                p, im0 = (path[i], im0s[i].copy()) if stream else (path, im0s.copy())
                frame = dataset.count if stream else getattr(dataset, "frame", 0)
                s = f"{desc}{i}: " if stream else desc
                s += "{:g}x{:g} ".format(*x.shape[2:])
                if len(det):
                    det[:, :4] = scale_boxes(x.shape[2:], det[:, :4], im0.shape).round()
                s += summarize(det, names)
                fps = source_fps(dataset, cap, i)
                saver.add(Path(p), im0, det, mode=dataset.mode, frame=frame, fps=fps, stream_index=i)
                LOGGER.info("%s%.1fms", s, (t2 - t1) * 1e3)
            if drawn is not None:
                hm.write(x, drawn, list(im0s) if stream else [im0s], dets)
            if progress is not None:
                progress()
    if hm is not None:
        hm.close()
    return prof
