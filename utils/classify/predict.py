"""Classification inference parts: preprocessing, softmax top-5 postprocess, the drawn text and --save-txt rows."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch

from utils.classify.augment import center_crop, normalize, to_chw_rgb
from utils.deploy.annotate import Annotator
from utils.deploy.predict_io import PredictionSaver, write_image
from utils.deploy.predictor import Predictor
from utils.errors import UserError

LOGGER = logging.getLogger(__name__)
TOP_K = 5


def preprocess(im0: np.ndarray, size: int) -> torch.Tensor:
    """BGR (H, W, 3) -> RGB (3, size, size) uint8: official's centre crop (see utils/classify/augment.py)."""
    return to_chw_rgb(center_crop(im0, size))


class NormalizedInput(Predictor):
    """An exported classifier (its input ImageNet-normalised, as official's exports take it) behind the 0-1 face of
    every predictor. PyTorch classifiers normalise inside (models/input_norm.py) and need no wrapper."""

    task = "classify"

    def __init__(self, inner: Predictor):
        super().__init__(inner.device)
        self.inner, self.format = inner, inner.format
        for k in ("names", "stride", "imgsz", "batch", "fp16", "dynamic", "nhwc", "meta"):
            setattr(self, k, getattr(inner, k))

    def run(self, im: torch.Tensor) -> torch.Tensor:
        return self.inner.run(normalize(im * 255).to(im.dtype))


NOT_A_CLASSIFIER = "these weights are a {} model; classification needs a classifier (-cls) model"


def classifier_predictor(predictor: Predictor) -> Predictor:
    """The predictor a classification loop calls with 0-1 images, whatever the backend. A detection or segmentation
    model is refused here when its kind is known (PyTorch, or a segmentation graph), else at its first output."""
    model = predictor.members()[0] if predictor.pt and hasattr(predictor, "members") else None
    is_cls = getattr(model, "task", "") == "classify" if model is not None else predictor.task != "segment"
    if not is_cls:
        raise UserError(NOT_A_CLASSIFIER.format("segmentation" if predictor.task == "segment" else "detection"))
    return predictor if predictor.pt else NormalizedInput(predictor)


def check_logits(logits) -> torch.Tensor:
    """A classifier's output must be float (B, nc) scores; a detector's (B, N, 5 + nc) or a segmenter's tuple is a
    UserError naming the mix-up."""
    if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
        raise UserError(NOT_A_CLASSIFIER.format("segmentation" if isinstance(logits, tuple) else "detection"))
    return logits


def postprocess(logits: torch.Tensor, **_) -> List[torch.Tensor]:
    """logits (B, nc) -> per image (nc,) softmax probabilities (float32)."""
    return list(check_logits(logits).float().softmax(1))


def top_k(prob: torch.Tensor, k: int = TOP_K) -> List[Tuple[int, float]]:
    """(nc,) probabilities -> [(class, probability)] best first, at most k."""
    idx = prob.argsort(0, descending=True)[:k].tolist()
    return [(i, float(prob[i])) for i in idx]


def result_text(prob: torch.Tensor, names: Dict[int, str]) -> str:
    """The official drawn text and --save-txt rows: one 'prob name' line per top class, best first."""
    return "\n".join(f"{p:.2f} {names.get(i, str(i))}" for i, p in top_k(prob))


def annotate(im0: np.ndarray, prob: torch.Tensor, names: Dict[int, str], **_) -> Tuple[np.ndarray, List[str]]:
    """Draw the top-5 text at (32, 32) in white on a BGR image (as official). Returns (image, txt rows)."""
    text = result_text(prob, names)
    ann = Annotator(im0, example=str(names), pil=True)
    ann.text((32, 32), text, txt_color=(255, 255, 255))
    return ann.result(), text.splitlines()


def summary(prob: torch.Tensor, names: Dict[int, str]) -> str:
    """The console text per image: 'bees 0.99, ants 0.01, '."""
    return "".join(f"{names.get(i, str(i))} {p:.2f}, " for i, p in top_k(prob))


class ClassifySaver(PredictionSaver):
    """predict.py's outputs for classifiers: annotated images / videos and labels/<stem>.txt (appended, as official)."""

    def add_result(self, p: Path, im0: np.ndarray, prob: torch.Tensor, mode: str, frame: int = 0, fps: float = 30.0,
                   stream_index: int = 0) -> np.ndarray:  # fmt: skip
        o = self.opts
        stem = p.stem if mode == "image" else f"{p.stem}_{frame}"
        annotated, rows = annotate(im0, prob, self.names) if (o.save_img or o.view_img) else (im0, None)
        if o.save_txt:
            rows = rows or result_text(prob, self.names).splitlines()
            with open(self.save_dir / "labels" / f"{stem}.txt", "a") as f:
                f.write("".join(r + "\n" for r in rows))
            self.n_txt += 1
        if o.view_img:
            import cv2

            cv2.imshow(str(p), annotated)
            cv2.waitKey(1)
        if o.save_img:
            if mode == "image":
                write_image(self.save_dir / p.name, annotated)
            else:
                self._video_frame(stream_index, self.save_dir / p.name, annotated, fps)
        return annotated


def batch_from_source(im0s: np.ndarray | Sequence[np.ndarray], stream: bool, size: int) -> torch.Tensor:
    """A sources.load_source item's original image(s) -> (B, 3, size, size) uint8 (the letterboxed copy is unused)."""
    ims = list(im0s) if stream else [im0s]
    return torch.stack([preprocess(im, size) for im in ims])
