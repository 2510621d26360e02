"""JSON label cache (never pickle): per-image scan results keyed by a hash of paths, sizes and mtimes."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from utils.paths import user_cache_dir

LOGGER = logging.getLogger(__name__)
CACHE_VERSION = "yolov5-fla-labels/2"  # 2: images OpenCV cannot decode are skipped at the scan


def is_writable_dir(path: Path) -> bool:
    """True when path is a folder we may write to: the OS allows it AND its mode has write bits (root respects them)."""
    try:
        return path.is_dir() and os.access(path, os.W_OK) and bool(path.stat().st_mode & 0o222)
    except OSError:
        return False


def files_hash(files: Sequence[str], extra: str = "") -> str:
    """sha256 over (path, size, mtime_ns) of each file (absent files count as absent) plus an extra string.

    Paths are hashed as the OS's bytes (os.fsencode), so names that are not valid UTF-8 hash too."""
    h = hashlib.sha256(extra.encode())
    for f in files:
        try:
            st = os.stat(f)
            h.update(os.fsencode(f) + f"\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
        except OSError:
            h.update(os.fsencode(f) + b"\0-\n")
    return h.hexdigest()


def cache_path_for(source: Path, label_files: Sequence[str]) -> List[Path]:
    """Where the label cache lives: the user cache folder, in a file named by the dataset's labels folder (or list
    file) and a hash of its resolved path. Never inside the dataset: its folders are not written to."""
    source = Path(source)
    if source.is_file():
        key_path = source
    else:
        key_path = Path(label_files[0]).parent if label_files else source / "labels"
    key = hashlib.sha1(os.fsencode(key_path.resolve())).hexdigest()[:16]
    stem = "".join(c if c.isalnum() or c in "-_" else "_" for c in key_path.stem)[:40] or "labels"
    return [user_cache_dir() / "labels" / f"{stem}-{key}.cache.json"]


def _to_json(entry: Dict) -> Dict:
    return {
        "shape": [int(v) for v in entry["shape"]],
        "status": entry["status"],
        # float32 -> Python float is exact and JSON keeps a float's repr, so a cached scan equals a fresh one
        "labels": np.asarray(entry["labels"], dtype=np.float32).tolist(),
        "segments": [np.asarray(s, dtype=np.float32).tolist() for s in entry["segments"]],
        "problems": list(entry["problems"]),
    }


def _from_json(entry: Dict) -> Dict:
    return {
        "ok": entry["status"] != "corrupt",
        "shape": tuple(entry["shape"]),
        "status": entry["status"],
        "labels": np.array(entry["labels"], dtype=np.float32).reshape(-1, 5),
        "segments": [np.array(s, dtype=np.float32).reshape(-1, 2) for s in entry["segments"]],
        "problems": list(entry["problems"]),
    }


def load_cache(paths: Sequence[Path], hash_: str) -> Dict[str, Dict] | None:
    """The entries {im_file: result} of the first valid cache among paths whose hash matches; None otherwise."""
    for p in paths:
        if not p.is_file():
            continue
        try:
            with open(p, encoding="utf-8") as f:
                data = json.load(f)
            if data.get("version") != CACHE_VERSION or data.get("hash") != hash_:
                LOGGER.debug("label cache %s is stale or from another version; rebuilding", p)
                continue
            return {k: _from_json(v) for k, v in data["entries"].items()}
        except (OSError, ValueError, KeyError, TypeError) as e:
            LOGGER.debug("label cache %s unreadable (%s); rebuilding", p, e)
    return None


def save_cache(paths: Sequence[Path], hash_: str, entries: Dict[str, Dict]) -> Path | None:
    """Write the cache atomically to the first writable location of paths; returns it (None when none worked)."""
    data = {"version": CACHE_VERSION, "hash": hash_, "entries": {k: _to_json(v) for k, v in entries.items()}}
    for p in paths:
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            LOGGER.debug("cannot create %s (%s)", p.parent, e)
        if not is_writable_dir(p.parent):
            continue
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f)
            os.replace(tmp, p)
            return p
        except OSError as e:
            LOGGER.debug("could not write label cache %s (%s)", p, e)
            if tmp:
                Path(tmp).unlink(missing_ok=True)
    LOGGER.warning(
        "WARNING: could not write a label cache (%s); set $YOLOV5FLA_CACHE to a writable folder",
        ", ".join(str(p) for p in paths),
    )
    return None
