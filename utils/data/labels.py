"""YOLO label files and images, checked row by row: bad rows are dropped (or clipped) and reported, never fatal."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image

from utils.data.image_io import ImageTooLarge, header_size, opencv_can_decode

IMG_FORMATS = ("bmp", "dng", "jpeg", "jpg", "mpo", "png", "tif", "tiff", "webp", "pfm")  # also detect.py sources
COORD_TOL = 0.02  # coordinates up to this far outside 0-1 are clipped; further out the row is dropped
SILENT_TOL = 1e-3  # ... and within this, without a message (rounding noise)
MIN_IMAGE_PX = 10

PathLike = Union[str, Path]


def img2label_paths(img_paths: List[str]) -> List[str]:
    """images/.../a.jpg -> labels/.../a.txt (the last /images/ in the path becomes /labels/)."""
    sa, sb = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    out = []
    for p in img_paths:
        p = str(p)
        head, sep, tail = p.rpartition(sa)
        p = head + sb + tail if sep else p
        out.append(os.path.splitext(p)[0] + ".txt")
    return out


def _parse_row(values: List[str], nc: int | None) -> Tuple[np.ndarray | None, np.ndarray | None, str]:
    """One row's text fields -> (box [cls, x, y, w, h], polygon (k, 2) or None, problem ('' when fine)).

    The box is None when the row is dropped; a problem with a box means the row was clipped.
    """
    n = len(values)
    if n != 5 and (n < 7 or n % 2 == 0):
        return None, None, f"wrong number of values ({n}; need 5, or class + at least 3 x,y points)"
    try:
        nums = np.array([float(v) for v in values], dtype=np.float64)
    except ValueError:
        return None, None, "non-numeric value"
    if not np.isfinite(nums).all():
        return None, None, "non-finite value"
    cls = nums[0]
    if cls != int(cls) or cls < 0 or (nc is not None and cls >= nc):
        limit = f" (nc={nc})" if nc is not None else ""
        return None, None, f"class {values[0]} out of range{limit}"
    if n == 5:
        x, y, w, h = nums[1:]
        if w <= 0 or h <= 0:
            return None, None, "zero or negative box size"
        pts = np.array([[x - w / 2, y - h / 2], [x + w / 2, y + h / 2]])
        polygon = None
    else:
        pts = polygon = nums[1:].reshape(-1, 2)
    if (pts < -COORD_TOL).any() or (pts > 1 + COORD_TOL).any():
        return None, None, "coordinates outside 0-1 (not normalised?)"
    clipped = (pts < -SILENT_TOL).any() or (pts > 1 + SILENT_TOL).any()  # rounding noise is clipped silently
    pts = pts.clip(0, 1)
    x1, y1 = pts.min(0)
    x2, y2 = pts.max(0)
    if x2 - x1 <= 0 or y2 - y1 <= 0:
        return None, None, "zero or negative box size" + (" after clipping" if clipped else "")
    box = np.array([cls, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1])
    if polygon is not None:
        polygon = pts
    return box, polygon, "clipped to 0-1" if clipped else ""


def read_label_file(path: PathLike, nc: int | None = None) -> Tuple[np.ndarray, List[np.ndarray], List[str]]:
    """Read a YOLO label file -> (labels (n, 5) float32 [cls, x, y, w, h], segments, problems).

    segments is empty unless some row is a polygon; then it holds one (k, 2) normalised polygon per label (box rows
    become their 4 corners). problems: one message per dropped or clipped row, e.g. 'line 3: non-numeric value'.
    """
    boxes, polys, problems, seen = [], [], [], set()
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    for lineno, line in enumerate(lines, 1):
        values = line.split()
        if not values:
            continue
        box, poly, problem = _parse_row(values, nc)
        if problem:
            problems.append(f"line {lineno}: {problem}" + (" (dropped)" if box is None else ""))
        if box is None:
            continue
        key = tuple(np.round(box, 6))
        if key in seen:
            problems.append(f"line {lineno}: duplicate row (dropped)")
            continue
        seen.add(key)
        boxes.append(box)
        polys.append(poly)
    labels = np.array(boxes, dtype=np.float32).reshape(-1, 5)
    segments: List[np.ndarray] = []
    if any(p is not None for p in polys):
        for box, poly in zip(labels, polys):
            if poly is None:
                _, x, y, w, h = box
                poly = np.array(
                    [[x - w / 2, y - h / 2], [x + w / 2, y - h / 2], [x + w / 2, y + h / 2], [x - w / 2, y + h / 2]]
                )
            segments.append(np.asarray(poly, dtype=np.float32))
    return labels, segments, problems


def exif_size(img: Image.Image) -> Tuple[int, int]:
    """(w, h) of a PIL image after its EXIF orientation is applied (90/270 degree rotations swap them)."""
    w, h = img.size
    try:
        orientation = img.getexif().get(0x0112, 1)
    except Exception:  # broken EXIF: use the stored size
        return w, h
    return (h, w) if orientation in (5, 6, 7, 8) else (w, h)


def verify_image(path: PathLike) -> Tuple[bool, Tuple[int, int], str]:
    """Check an image without decoding it fully -> (ok, shape (h, w), message; a warning when ok, else the reason).

    The file is opened once: a JPEG's size, format and EXIF come from the header parsed for verify(); other formats
    are parsed again after verify() (which leaves the image unusable; a PNG's EXIF may sit after the pixels).
    """
    try:
        header_size(path)  # the pixel count, before anything is decoded
    except ImageTooLarge as e:
        return False, (0, 0), str(e)
    except Exception as e:
        return False, (0, 0), f"unreadable image ({type(e).__name__}: {e})"
    try:
        with open(path, "rb") as f:
            im = Image.open(f)
            fmt = (im.format or "").lower()
            if fmt in ("jpeg", "jpg"):
                w, h = exif_size(im)
                im.verify()
            else:
                im.verify()
                f.seek(0)
                w, h = exif_size(Image.open(f))
            truncated = False
            if fmt in ("jpeg", "jpg"):
                f.seek(-2, 2)
                truncated = f.read() != b"\xff\xd9"
    except Exception as e:
        return False, (0, 0), f"unreadable image ({type(e).__name__}: {e})"
    if h < MIN_IMAGE_PX or w < MIN_IMAGE_PX:
        return False, (h, w), f"image too small ({w}x{h} < {MIN_IMAGE_PX} px)"
    if fmt not in IMG_FORMATS:
        return False, (h, w), f"unsupported image format '{fmt}'"
    if not opencv_can_decode(path, fmt):  # e.g. a 32-bit float TIFF: PIL reads it, the loader's OpenCV does not
        return False, (h, w), f"unreadable image (OpenCV cannot decode this {fmt.upper()} variant; re-save it as 8-bit)"
    return True, (h, w), "truncated JPEG (read as-is)" if truncated else ""


def verify_image_label(im_file: str, lb_file: str, nc: int | None = None) -> Dict:
    """Check one image and its label file -> dict(ok, shape (w, h), labels, segments, status, problems).

    status: 'found', 'missing' (no label file), 'empty' (no rows kept) or 'corrupt' (image skipped).
    """
    ok, (h, w), msg = verify_image(im_file)
    out = {"ok": ok, "shape": (w, h), "labels": np.zeros((0, 5), np.float32), "segments": [], "problems": []}
    if not ok:
        out.update(status="corrupt", problems=[f"image skipped: {msg}"])
        return out
    if msg:
        out["problems"].append(msg)
    if not os.path.isfile(lb_file):
        out["status"] = "missing"
        return out
    try:
        labels, segments, problems = read_label_file(lb_file, nc)
    except OSError as e:
        out.update(status="missing", problems=out["problems"] + [f"label file unreadable ({e})"])
        return out
    out.update(labels=labels, segments=segments, problems=out["problems"] + problems)
    out["status"] = "found" if len(labels) else "empty"
    return out
