"""Reading images safely: the size in the header is checked before any pixel is decoded, in every reader.

A 45 KB JPEG may claim 30000x30000 pixels (2.7 GB once decoded). detect.py, val.py, train.py and the hub API all
read through `read_image` (or the label scan's `verify_image`, which uses `header_size`), so one limit holds
everywhere: MAX_PIXELS, PIL's own decompression-bomb threshold, far above any camera's image.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Tuple, Union

import cv2
import numpy as np
from PIL import Image

from utils.errors import DataError

MAX_PIXELS = 2 * 89_478_485  # PIL refuses more (DecompressionBombError); about 13400 x 13400
CV2_SAFE_FORMATS = ("jpeg", "png", "bmp", "webp", "mpo")  # OpenCV decodes every variant PIL reads of these


class ImageTooLarge(DataError):
    """An image whose header claims more pixels than MAX_PIXELS."""


def too_large_message(path: Union[str, Path], w: int | None, h: int | None) -> str:
    size = f"{w}x{h} pixels" if w and h else f"more than {MAX_PIXELS:,} pixels"
    return f"image too large: {path} is {size}; at most {MAX_PIXELS:,} pixels are decoded"


def header_size(path: Union[str, Path]) -> Tuple[int, int, str]:
    """(w, h, format) from the file's header, nothing decoded. ImageTooLarge above MAX_PIXELS; OSError/ValueError
    when the file is not an image PIL can identify."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(path) as im:
                w, h = im.size
                fmt = (im.format or "").lower()
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(too_large_message(path, None, None)) from e
    if w * h > MAX_PIXELS:
        raise ImageTooLarge(too_large_message(path, w, h))
    return w, h, fmt


def check_size(w: int, h: int, what: str = "image") -> None:
    """An in-memory image of w x h must have pixels, and not more than MAX_PIXELS. DataError otherwise."""
    if w < 1 or h < 1:
        raise DataError(f"{what} is empty ({w}x{h} pixels)")
    if w * h > MAX_PIXELS:
        raise ImageTooLarge(too_large_message(what, w, h))


def check_array(im: np.ndarray, what: str = "image") -> None:
    """A numpy image (H, W) or (H, W, 1|3|4) with pixels, not more than MAX_PIXELS. DataError otherwise."""
    if im.ndim not in (2, 3) or (im.ndim == 3 and im.shape[2] not in (1, 3, 4)):
        raise DataError(f"{what}: shape {tuple(im.shape)} is not an image; expected (H, W) or (H, W, 1|3|4)")
    check_size(im.shape[1], im.shape[0], what)


def opencv_path_ok(path: Union[str, Path]) -> bool:
    """Whether OpenCV may be given this path: a name that is not valid UTF-8 (Python holds its bytes as lone
    surrogates) crashes cv2.imread / imwrite / VideoCapture / VideoWriter with a segmentation fault (OpenCV 5.1)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def decode(path: Union[str, Path], flags: int = cv2.IMREAD_COLOR, strict: bool = False) -> np.ndarray | None:
    """BGR uint8 (H, W, 3) of an image file (non-ASCII paths too), its header size checked first.

    None when the file cannot be read or decoded; ImageTooLarge when its header claims too many pixels. strict
    (detect.py, the hub API) refuses a truncated JPEG; the dataset loader reads it as far as it goes, as the label
    scan announced ("truncated JPEG (read as-is)").
    """
    try:
        header_size(path)
    except ImageTooLarge:
        raise
    except Exception:  # PIL cannot identify it: neither can the label scan, so no reader uses it
        return None
    im = None if strict or not opencv_path_ok(path) else cv2.imread(str(path), flags)  # a truncated JPEG: read as-is
    if im is not None:
        return im
    try:  # imread cannot open some non-ASCII paths (Windows): decode the bytes instead
        data = np.fromfile(str(path), np.uint8)
    except OSError:
        return None
    return cv2.imdecode(data, flags) if data.size else None


def opencv_can_decode(path: Union[str, Path], fmt: str) -> bool:
    """Whether the loader (OpenCV) decodes this file; only formats with variants OpenCV lacks are tried (TIFF: 32-bit
    float, some compressions), so the scan of a JPEG dataset decodes nothing."""
    if fmt in CV2_SAFE_FORMATS:
        return True
    try:
        return decode(path) is not None
    except DataError:
        return False
