"""Calibration images for int8 quantisation: --data's val (or train) images, letterboxed, as float 0-1 arrays."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from utils.data.image_io import ImageTooLarge, decode
from utils.errors import UserError

LOGGER = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def _image_files(source) -> List[Path]:
    """Image files of a dataset split entry: a folder, a list file, or a list of either."""
    files: List[Path] = []
    for s in source if isinstance(source, (list, tuple)) else [source]:
        p = Path(s)
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES)
        elif p.suffix == ".txt" and p.is_file():
            rows = [r.strip() for r in p.read_text().splitlines() if r.strip()]
            files += [(p.parent / r).resolve() if not Path(r).is_absolute() else Path(r) for r in rows]
        elif p.is_file():
            files.append(p)
    return files


def _center_crop(im: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """The square centre crop of im resized to size (h, w): a classifier's eval transform."""
    import cv2

    h, w = im.shape[:2]
    m = min(h, w)
    top, left = (h - m) // 2, (w - m) // 2
    return cv2.resize(im[top : top + m, left : left + m], (size[1], size[0]), interpolation=cv2.INTER_LINEAR)


def _classifier_files(folder: Path) -> List[Path]:
    """A classification dataset folder's images: its train/ split, then val/ (else test/); else the folder."""
    evals = [folder / s for s in ("val", "test") if (folder / s).is_dir()][:1]
    train = [folder / "train"] if (folder / "train").is_dir() else ([] if evals else [folder])
    return list(dict.fromkeys(_image_files([*train, *evals])))


def calibration_images(data: Optional[str], imgsz: Tuple[int, int], n: int = 100, classify: bool = False) -> np.ndarray:
    """(k, 3, h, w) float32 RGB: up to n images of --data's train split, then its val split, letterboxed, 0-1 (the
    train split first, as official YOLOv5's TFLite calibration: the images the model is validated on are not the ones
    it is calibrated on when train has n).

    classify: --data is an image-folder dataset; centre-cropped and ImageNet-normalised, as an exported classifier
    takes its input."""
    from utils.data.augment import letterbox
    from utils.data.config import check_dataset

    if not data:
        raise UserError("--int8 calibrates on images: give a dataset yaml with --data (e.g. --data coco8.yaml)")
    if classify and not Path(data).is_dir():
        raise UserError(f"--int8 for a classifier calibrates on an image-folder dataset: --data {data} is no folder")
    if classify:
        files = _classifier_files(Path(data))
    else:
        cfg = check_dataset(data)
        files = list(dict.fromkeys(_image_files(cfg.get("train")) + _image_files(cfg.get("val"))))
    if not files:
        raise UserError(f"--int8: no calibration images found in {data}")
    batch = []
    for f in files[:n]:
        try:
            im = decode(f)  # the header's pixel count is checked before decoding
        except ImageTooLarge as e:
            LOGGER.warning("WARNING: int8 calibration skips %s: %s", f, e)
            continue
        if im is None:
            continue
        im = _center_crop(im, imgsz) if classify else letterbox(im, imgsz, auto=False)[0]
        batch.append(im[..., ::-1].transpose(2, 0, 1).astype(np.float32) / 255.0)
    if not batch:
        raise UserError(f"--int8: none of the calibration images in {data} could be read")
    LOGGER.info("int8: calibrating on %d images of %s", len(batch), data)
    out = np.stack(batch)
    if classify:
        from models.input_norm import IMAGENET_MEAN, IMAGENET_STD

        out = (out - np.float32(IMAGENET_MEAN).reshape(1, 3, 1, 1)) / np.float32(IMAGENET_STD).reshape(1, 3, 1, 1)
    return np.ascontiguousarray(out, dtype=np.float32)
