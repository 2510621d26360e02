"""Paths: run folders (runs/train/exp2), user data/cache folders, and lookup of bundled yaml files."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Union

from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]  # repository root
MODELS_DIR = ROOT / "models"
DATA_DIR = ROOT / "data"


def increment_path(path: Union[str, Path], exist_ok: bool = False, sep: str = "", mkdir: bool = False) -> Path:
    """runs/train/exp -> runs/train/exp2, exp3, ... (the first free one) unless exist_ok."""
    path = Path(path)
    if path.exists() and not exist_ok:
        stem, suffix = (path.with_suffix(""), path.suffix) if path.is_file() else (path, "")
        for n in range(2, 100000):
            candidate = Path(f"{stem}{sep}{n}{suffix}")
            if not candidate.exists():
                path = candidate
                break
    if mkdir:
        ensure_dir(path)
    return path


def ensure_dir(path: Union[str, Path]) -> Path:
    """mkdir -p path; UserError (one line) when it cannot be made, e.g. a parent is a file or the disk is read-only."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create output folder {path}: {e.strerror or e} (choose another --project)") from e
    return path


def user_data_dir() -> Path:
    """Per-user folder for generated data (the built-in dataset). $YOLOV5FLA_HOME overrides."""
    env = os.environ.get("YOLOV5FLA_HOME")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share"))
    return base / "yolov5-fla"


def user_cache_dir() -> Path:
    """Per-user cache folder (label caches of read-only datasets). $YOLOV5FLA_CACHE overrides."""
    env = os.environ.get("YOLOV5FLA_CACHE")
    if env:
        return Path(env)
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "yolov5-fla"


def find_file(name: Union[str, Path], kind: str, search: tuple = ()) -> Path:
    """Resolve a user-given file: as given, else in each folder of `search` (by name). UserError when absent.

    kind names the flag for the message, e.g. '--cfg'.
    """
    p = Path(name).expanduser()
    if p.is_file():
        return p
    for folder in search:
        q = Path(folder) / p.name
        if q.is_file():
            return q
    where = f" (also looked in {', '.join(str(s) for s in search)})" if search else ""
    raise UserError(f"{kind} file not found: {name}{where}")


def find_model_cfg(name: Union[str, Path]) -> Path:
    """A model yaml by path, or by bare name from models/, models/segment/, models/study/ (e.g. 'yolov5s-fla')."""
    p = Path(name)
    if not p.suffix:
        p = p.with_suffix(".yaml")
    return find_file(p, "--cfg", (MODELS_DIR, MODELS_DIR / "segment", MODELS_DIR / "study", MODELS_DIR / "hub"))
