"""The built-in dataset: coloured shapes on cluttered backgrounds, generated deterministically on first use."""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np

from utils.paths import user_data_dir

LOGGER = logging.getLogger(__name__)
VERSION = "builtin-shapes/3"
NAMES = ["circle", "square", "triangle", "star"]
COLORS = [(50, 50, 220), (60, 190, 60), (220, 110, 40), (40, 210, 230)]  # BGR: red, green, blue, yellow
SIZES = (160, 192)  # image sides: each of h and w is one of these
SPLITS = {"train": (256, 0), "val": (32, 1)}  # images, seed offset
OBJECTS = (2, 6)  # shapes tried per image: [low, high) (a shape that finds no free place is dropped)
RADIUS = (0.12, 0.24)  # shape radius as a fraction of the image's short side
CLUTTER = (2, 6)  # grey lines and blobs per background: [low, high)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Noisy, low-saturation textured background with grey clutter lines and blobs. -> (h, w, 3) uint8 BGR."""
    base = rng.uniform(70, 170) + rng.uniform(-15, 15, size=3)
    coarse = cv2.resize(rng.normal(0, 18, size=(h // 16 + 1, w // 16 + 1, 1)).astype(np.float32), (w, h))
    im = base + coarse[..., None] + rng.normal(0, 10, size=(h, w, 3))
    im = np.clip(im, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(*CLUTTER))):
        g = int(rng.integers(40, 220))
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
        if rng.random() < 0.6:
            cv2.line(im, p1, p2, (g, g, g), int(rng.integers(1, 3)))
        else:
            cv2.ellipse(im, p1, (int(rng.integers(3, 12)), int(rng.integers(3, 12))), 0, 0, 360, (g, g, g), -1)
    return im


def _polygon(cls: int, cx: float, cy: float, r: float, rng: np.random.Generator) -> np.ndarray:
    """Outline points (k, 2) of shape cls centred at (cx, cy) with radius r (circle: 48-gon)."""
    rot = rng.uniform(0, 2 * math.pi)
    if cls == 0:
        t = np.linspace(0, 2 * math.pi, 48, endpoint=False)
        radii = np.full_like(t, r)
    elif cls == 1:
        rot = rng.uniform(-0.25, 0.25) + math.pi / 4
        t = rot + np.arange(4) * math.pi / 2
        radii = np.full(4, r)
    elif cls == 2:
        t = rot + np.arange(3) * 2 * math.pi / 3
        radii = np.full(3, r)
    else:
        t = rot + np.arange(10) * math.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, 0.45 * r)
    return np.stack((cx + radii * np.cos(t), cy + radii * np.sin(t)), 1)


def _overlaps(box: np.ndarray, boxes: List[np.ndarray], limit: float = 0.3) -> bool:
    """True when box covers more than `limit` of an existing box or is covered that much by one."""
    for b in boxes:
        iw = max(0.0, min(box[2], b[2]) - max(box[0], b[0]))
        ih = max(0.0, min(box[3], b[3]) - max(box[1], b[1]))
        inter = iw * ih
        if inter > limit * min((box[2] - box[0]) * (box[3] - box[1]), (b[2] - b[0]) * (b[3] - b[1])):
            return True
    return False


def make_image(rng: np.random.Generator) -> Tuple[np.ndarray, List[Tuple[int, float, float, float, float]]]:
    """One image and its YOLO rows (cls, x, y, w, h normalised)."""
    im, rows, _ = make_instances(rng)
    return im, rows


def make_instances(rng: np.random.Generator) -> Tuple[np.ndarray, List[tuple], List[np.ndarray]]:
    """One image, its YOLO box rows (cls, x, y, w, h normalised) and each shape's outline (k, 2) normalised."""
    h, w = int(rng.choice(SIZES)), int(rng.choice(SIZES))
    im = _background(rng, h, w)
    boxes, rows, outlines = [], [], []
    for _ in range(int(rng.integers(*OBJECTS))):
        for _attempt in range(20):
            cls = int(rng.integers(len(NAMES)))
            r = rng.uniform(*RADIUS) * min(h, w) * (1.15 if cls == 3 else 1.0)
            cx, cy = rng.uniform(0.1 * w, 0.9 * w), rng.uniform(0.1 * h, 0.9 * h)
            pts = _polygon(cls, cx, cy, r, rng)
            pts[:, 0], pts[:, 1] = pts[:, 0].clip(0, w - 1), pts[:, 1].clip(0, h - 1)
            box = np.array([*pts.min(0), *pts.max(0)])
            if box[2] - box[0] >= 8 and box[3] - box[1] >= 8 and not _overlaps(box, boxes):
                break
        else:
            continue
        color = tuple(int(np.clip(c + rng.integers(-30, 31), 0, 255)) for c in COLORS[cls])
        cv2.fillPoly(im, [np.round(pts).astype(np.int32)], color, lineType=cv2.LINE_AA)
        boxes.append(box)
        x1, y1, x2, y2 = box
        rows.append((cls, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h))
        outlines.append(pts / np.array([w, h]))
    return im, rows, outlines


def _write_split(root: Path, split: str, n: int, seed: int, segments: bool = False) -> None:
    """n images and labels: box rows, or with segments polygon rows 'cls x1 y1 x2 y2 ...' (the same images)."""
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    for i in range(n):
        im, rows, outlines = make_instances(rng)
        name = f"{split}_{i:04d}"
        cv2.imwrite(str(root / "images" / split / f"{name}.jpg"), im, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if segments:
            text = "".join(
                f"{r[0]} " + " ".join(f"{v:.6f}" for v in o.reshape(-1)) + "\n" for r, o in zip(rows, outlines)
            )
        else:
            text = "".join(f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in rows)
        (root / "labels" / split / f"{name}.txt").write_text(text)


def _version(segments: bool) -> str:
    return f"{VERSION}-seg" if segments else VERSION


def _yaml_text(segments: bool = False) -> str:
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES))
    return (
        f"# Built-in synthetic dataset ({_version(segments)}), generated by utils/data/synthetic.py\n"
        f"generator: {_version(segments)}\npath: .\ntrain: images/train\nval: images/val\nnc: {len(NAMES)}\n"
        f"names:\n{names}"
    )


def ensure_builtin_dataset(root: Path | str | None = None, seed: int = 0, segments: bool = False) -> Path:
    """Path to builtin.yaml, generating the dataset into user_data_dir()/'builtin' (or root) when absent or stale.

    segments: the same images with polygon labels (each shape's outline), in user_data_dir()/'builtin-seg', for
    segment/train.py and segment/val.py without --data.
    Built in a temporary sibling folder and renamed into place, so a crash or a parallel run never leaves half a set.
    """
    root = Path(root) if root is not None else user_data_dir() / ("builtin-seg" if segments else "builtin")
    yaml_file = root / "builtin.yaml"
    if yaml_file.is_file() and f"generator: {_version(segments)}\n" in yaml_file.read_text():
        return yaml_file
    root.parent.mkdir(parents=True, exist_ok=True)
    LOGGER.info(f"Generating the built-in dataset in {root} ...")
    tmp = Path(tempfile.mkdtemp(prefix=".builtin-tmp-", dir=root.parent))
    try:
        for split, (n, offset) in SPLITS.items():
            _write_split(tmp, split, n, seed * 1000 + offset, segments)
        (tmp / "builtin.yaml").write_text(_yaml_text(segments))
        if root.exists():  # stale version: replace it
            shutil.rmtree(root, ignore_errors=True)
        try:
            os.rename(tmp, root)
        except OSError:  # another process won the race: use its copy
            if not yaml_file.is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return yaml_file
