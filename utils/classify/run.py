"""Classification passes over data: validation (top-1/top-5, loss) and prediction on detect.py sources."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import torch

from utils.classify.metrics import ClassifyEvaluator, ClassifyMetrics
from utils.classify.predict import ClassifySaver, batch_from_source, postprocess, summary, takes_normalized, to_input
from utils.deploy.predict import Profile
from utils.deploy.predict_io import SaveOptions
from utils.errors import UserError
from utils.names import names_dict
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


def model_device(model) -> torch.device:
    """The device a backend or nn.Module runs on."""
    if isinstance(getattr(model, "device", None), torch.device):
        return model.device
    p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
    return p.device if p is not None else torch.device("cpu")


def _fits(model, x: torch.Tensor) -> None:
    problem = model.check_input(tuple(x.shape)) if hasattr(model, "check_input") else None
    if problem:
        raise UserError(f"cannot run this model on the data: {problem}")


@torch.no_grad()
def validate(
    model,
    loader,
    names: Dict[int, str],
    criterion: Optional[Callable] = None,
    half: bool = False,
    progress: Optional[Callable[[], None]] = None,
) -> Tuple[ClassifyMetrics, float, Profile]:
    """One pass of a classifier (nn.Module in eval mode or a backend) over (ims uint8, labels) batches.

    Returns (metrics, mean loss per batch as official (0 without a criterion), per-stage timings).
    """
    device = model_device(model)
    evaluator, loss, prof = ClassifyEvaluator(names), torch.zeros(1, device=device), Profile()
    for batch in loader:
        t0 = time_sync()
        x = to_input(batch[0], device, half, takes_normalized(model))
        _fits(model, x)
        t1 = time_sync()
        logits = model(x)
        logits = logits[0] if isinstance(logits, (list, tuple)) else logits
        t2 = time_sync()
        if criterion is not None:
            loss += criterion(logits, batch).items.to(device)
        evaluator.update(postprocess(logits), batch)
        t3 = time_sync()
        for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
            prof.times[k] += dt
        prof.seen += len(batch[0])
        if progress is not None:
            progress()
    return evaluator.summarize(), float(loss) / max(len(loader), 1), prof


@torch.no_grad()
def predict_source(model, dataset, save_dir: Path, imgsz: int, save: SaveOptions, half: bool = False) -> Profile:
    """predict.py's loop: every image / frame of a sources.load_source dataset -> top-5 printed, drawn, saved."""
    device, names = model_device(model), names_dict(getattr(model, "names", None))
    saver, prof = ClassifySaver(save_dir, names, save), Profile()
    with contextlib.closing(saver):
        for path, _im, im0s, cap, desc in dataset:
            stream = dataset.mode == "stream"
            t0 = time_sync()
            x = to_input(batch_from_source(im0s, stream, imgsz), device, half, takes_normalized(model))
            _fits(model, x)
            t1 = time_sync()
            logits = model(x)
            t2 = time_sync()
            probs = postprocess(logits[0] if isinstance(logits, (list, tuple)) else logits)
            t3 = time_sync()
            for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                prof.times[k] += dt
            prof.seen += len(probs)
            for i, prob in enumerate(probs):
                p, im0 = (path[i], im0s[i].copy()) if stream else (path, im0s.copy())
                frame = dataset.count if stream else getattr(dataset, "frame", 0)
                s = (f"{desc}{i}: " if stream else desc) + "{:g}x{:g} ".format(*x.shape[2:])
                fps = _fps(cap, dataset.mode)
                saver.add_result(Path(p), im0, prob, mode=dataset.mode, frame=frame, fps=fps, stream_index=i)
                LOGGER.info("%s%s%.1fms", s, summary(prob, names), (t2 - t1) * 1e3)
    return prof


def _fps(cap, mode: str) -> float:
    if mode == "video" and cap is not None:
        import cv2

        return float(cap.get(cv2.CAP_PROP_FPS) or 30.0)
    return 30.0
