"""Checkpoints: safe loading (ours and official YOLOv5), atomic saving, and building a model from weights."""

from __future__ import annotations

import argparse
import copy
import io
import logging
import os
import pickle
import re
from pathlib import Path
from typing import Any, Union

import numpy as np
import torch
import torch.nn as nn

from utils.errors import CheckpointError, UserError
from utils.safe_pickle import load_official
from utils.safe_write import write_all
from utils.torch_utils import de_parallel

LOGGER = logging.getLogger(__name__)

FORMAT = "yolov5-fla/1"
CKPT_DEFAULTS = {
    "model": None,
    "ema": None,
    "optimizer": None,
    "epoch": -1,
    "best_fitness": 0.0,
    "opt": {},
    "hyp": {},
    "scaler": None,
    "rng": {},
    "date": "",
    "format": FORMAT,
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


def load_checkpoint(path: Union[str, Path]) -> dict:
    """Read a checkpoint (ours or an official YOLOv5 pickle) into the normalised dict of ARCHITECTURE.md.

    Ours open with torch.load(weights_only=True); anything that needs more goes through the restricted unpickler,
    which refuses every global that is not a tensor, a plain container or an inert stub of a YOLOv5/torch class.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    try:
        raw = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # a pickle with classes: maybe an official YOLOv5 checkpoint
        ckpt = load_official(path)
        LOGGER.debug("read official YOLOv5 checkpoint %s", path)
        return ckpt
    except Exception as e:  # weights_only loading is safe; any other failure means a damaged or foreign file
        raise CheckpointError(f"cannot read {path}: not a PyTorch checkpoint or corrupt ({_first_line(e)})") from e
    if not isinstance(raw, dict) or "format" not in raw or not isinstance(raw.get("model"), dict):
        raise CheckpointError(f"{path} is not a YOLOv5-FLA checkpoint (expected a dict with 'model' and 'format')")
    if not str(raw["format"]).startswith("yolov5-fla/"):
        raise CheckpointError(f"{path} has unknown checkpoint format {raw['format']!r}")
    for key in ("model", "ema"):
        md = raw.get(key)
        if md is not None and not (isinstance(md, dict) and {"yaml", "state_dict"} <= set(md)):
            raise CheckpointError(f"{path}: checkpoint entry '{key}' lacks 'yaml' / 'state_dict'")
    return {**copy.deepcopy(CKPT_DEFAULTS), **raw}


def to_weights_only(obj: Any, where: str = "ckpt") -> Any:
    """Convert a value to what torch.load(weights_only=True) accepts: Path -> str, Namespace -> dict, numpy -> torch."""
    if obj is None or isinstance(obj, (str, int, float, bool, torch.Tensor)):
        return obj
    if isinstance(obj, dict):
        return {k: to_weights_only(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_weights_only(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, argparse.Namespace):
        return to_weights_only(vars(obj), where)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if isinstance(obj, torch.Size):
        return tuple(obj)
    raise TypeError(f"{where}: {type(obj).__name__} cannot be stored in a weights_only checkpoint")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but is not ours, or cannot tell: keep its file
    return True


def _remove_stale_temps(path: Path) -> None:
    """Delete the `.<name>.<pid>.tmp` files in path's folder left by a process killed mid-save (pid not running)."""
    for f in path.parent.glob(".*.tmp"):
        m = re.fullmatch(r"\.(.+)\.(\d+)\.tmp", f.name)
        if m and int(m.group(2)) != os.getpid() and not _pid_alive(int(m.group(2))):
            f.unlink(missing_ok=True)


def save_checkpoint(ckpt: dict, path: Union[str, Path]) -> Path:
    """Write ckpt atomically (temp file in the same folder, fsync, os.replace); UserError leaves the old file intact."""
    path = Path(path)
    data = to_weights_only({**CKPT_DEFAULTS, **ckpt, "format": FORMAT})
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()  # serialise in memory: a full disk then fails in write() with its own errno (ENOSPC),
        torch.save(data, buf)  # not inside torch's zip writer as "unexpected pos"
        with open(tmp, "wb") as f:
            write_all(f, buf.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _remove_stale_temps(path)
    except (OSError, RuntimeError) as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass
        reason = e.strerror if isinstance(e, OSError) and e.strerror else _first_line(e)
        raise UserError(f"cannot save checkpoint {path}: {reason}") from e
    return path


def model_to_dict(model: nn.Module, half: bool = True) -> dict:
    """{'yaml', 'state_dict', 'names', 'stride'} of a DetectionModel; floats fp16 when half (anchors stay fp32)."""
    model = de_parallel(model)
    state = {}
    for k, v in model.state_dict().items():
        v = v.detach().cpu().clone()
        if half and v.is_floating_point() and not k.endswith("anchors"):
            v = v.half()
        state[k] = v
    stride = getattr(model, "stride", None)
    return {
        "yaml": copy.deepcopy(model.yaml),
        "state_dict": state,
        "names": [str(n) for n in getattr(model, "names", [])],
        "stride": [float(s) for s in stride.tolist()] if isinstance(stride, torch.Tensor) else list(stride or []),
    }
