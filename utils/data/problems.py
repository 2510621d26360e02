"""The dataset scan's problem list: the first lines in the log, the full list in a file whose path the log names.

The file goes to the run folder set with `report_to(save_dir)` around the dataset's creation (train.py and val.py
do), else to the user cache folder beside the label cache; never into the dataset's folders.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Iterator, List

from utils.paths import user_cache_dir

LOGGER = logging.getLogger(__name__)
MAX_PROBLEM_LINES = 30  # problems logged one per line; the rest are in the file
_FOLDER: contextvars.ContextVar[Path | None] = contextvars.ContextVar("problems_folder", default=None)


@contextlib.contextmanager
def report_to(folder: str | Path | None) -> Iterator[None]:
    """Datasets created inside write their full problem list into folder (the run folder)."""
    token = _FOLDER.set(Path(folder) if folder else None)
    try:
        yield
    finally:
        _FOLDER.reset(token)


def _kind(problem: str) -> str:
    """'a.jpg: line 3: non-finite value (dropped)' -> 'non-finite value'."""
    text = problem.rsplit(": line ", 1)[-1] if ": line " in problem else problem.split(": ", 1)[-1]
    text = re.sub(r"^\d+: ", "", text)
    return re.sub(r"\s*\(.*$", "", text).strip()


def _write(problems: List[str], prefix: str) -> Path | None:
    name = re.sub(r"[^A-Za-z0-9_-]+", "", prefix.split(":")[0]) or "dataset"
    folder = _FOLDER.get() or user_cache_dir() / "problems"
    path = folder / f"{name}_problems.txt"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{p}\n" for p in problems), encoding="utf-8", errors="surrogateescape")
    except OSError as e:
        LOGGER.warning(f"{prefix}WARNING: cannot write the problem list to {path}: {e.strerror or e}")
        return None
    return path


def log_problems(problems: List[str], prefix: str = "") -> Path | None:
    """Log up to MAX_PROBLEM_LINES problems; above that, a count per kind and the file holding them all."""
    for p in problems[:MAX_PROBLEM_LINES]:
        LOGGER.warning(f"{prefix}WARNING: {p}")
    if len(problems) <= MAX_PROBLEM_LINES:
        return None
    kinds = ", ".join(f"{n} {k}" for k, n in Counter(map(_kind, problems)).most_common())
    path = _write(problems, prefix)
    where = f"all {len(problems)} are listed in {path}" if path else "the full list could not be written"
    LOGGER.warning(f"{prefix}... and {len(problems) - MAX_PROBLEM_LINES} more ({kinds}); {where}")
    return path
