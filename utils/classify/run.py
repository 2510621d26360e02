"""classify/predict.py's pass over detect.py sources: every image or frame -> top-5 printed, drawn and saved."""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import torch

from utils.classify.predict import ClassifySaver, batch_from_source, postprocess, summary
from utils.deploy.predict import Profile, source_fps
from utils.deploy.predict_io import SaveOptions
from utils.deploy.predictor import Predictor
from utils.errors import UserError
from utils.torch_utils import time_sync

LOGGER = logging.getLogger(__name__)


@torch.no_grad()
def predict_source(model: Predictor, dataset, save_dir: Path, imgsz: int, save: SaveOptions) -> Profile:
    """model: a classifier_predictor; dataset: a sources.load_source loader (its letterboxed copy is unused: the
    official centre crop is taken from each original image)."""
    names = model.names
    saver, prof = ClassifySaver(save_dir, names, save), Profile()
    with contextlib.closing(saver):
        for path, _im, im0s, cap, desc in dataset:
            stream = dataset.mode == "stream"
            t0 = time_sync()
            x = model.prepare(batch_from_source(im0s, stream, imgsz))
            problem = model.check_input(tuple(x.shape))
            if problem:
                raise UserError(f"cannot run this model on the source: {problem}")
            t1 = time_sync()
            logits = model(x)
            t2 = time_sync()
            probs = postprocess(logits)
            t3 = time_sync()
            for k, dt in enumerate((t1 - t0, t2 - t1, t3 - t2)):
                prof.times[k] += dt
            prof.seen += len(probs)
            for i, prob in enumerate(probs):
                p, im0 = (path[i], im0s[i].copy()) if stream else (path, im0s.copy())
                frame = dataset.count if stream else getattr(dataset, "frame", 0)
                s = (f"{desc}{i}: " if stream else desc) + "{:g}x{:g} ".format(*x.shape[2:])
                fps = source_fps(dataset, cap, i)
                saver.add_result(Path(p), im0, prob, mode=dataset.mode, frame=frame, fps=fps, stream_index=i)
                LOGGER.info("%s%s%.1fms", s, summary(prob, names), (t2 - t1) * 1e3)
    return prof
