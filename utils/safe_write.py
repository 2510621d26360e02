"""Writing outputs so that a full disk or a read-only folder is one line naming the path, and no file is left
half-written: bytes go to a temporary name in the same folder, then are renamed over the target."""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Iterator, Union

import numpy as np

from utils.errors import OutputError

PathLike = Union[str, Path]


def output_error(path: PathLike, e: OSError) -> OutputError:
    """'cannot write <path>: No space left on device' (the OS's reason)."""
    return OutputError(f"cannot write {path}: {e.strerror or e}")


@contextlib.contextmanager
def writing(path: PathLike) -> Iterator[None]:
    """Turn an OSError raised while writing path into one OutputError line naming it."""
    try:
        yield
    except OSError as e:
        raise output_error(path, e) from e


def write_all(f, data: Union[bytes, memoryview]) -> None:
    """f.write until every byte is written: a short write (a disk filling up) continues, and one that writes
    nothing is ENOSPC, so a file is never silently cut short."""
    view = memoryview(data).cast("B")
    while len(view):
        n = f.write(view)
        if n is None:  # a buffered writer wrote everything
            return
        if n <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[n:]


def write_bytes(path: PathLike, data: Union[bytes, memoryview, np.ndarray]) -> Path:
    """Write data to path atomically (temp file + os.replace); the temp file is removed on failure."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write_all(f, data.tobytes() if isinstance(data, np.ndarray) else data)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise output_error(path, e) from e
    return path


def write_text(path: PathLike, text: str) -> Path:
    """write_bytes of UTF-8 text."""
    return write_bytes(path, text.encode("utf-8", errors="surrogateescape"))


def write_image(path: PathLike, im: np.ndarray) -> Path:
    """Encode a BGR image by the path's suffix (.jpg by default) and write it atomically; non-ASCII paths work."""
    import cv2

    path = Path(path)
    ok, buf = cv2.imencode(path.suffix or ".jpg", im)
    if not ok:
        raise OutputError(f"cannot write {path}: OpenCV cannot encode a {im.shape} image as {path.suffix or '.jpg'}")
    return write_bytes(path, buf)
