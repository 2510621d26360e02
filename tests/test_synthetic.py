"""The built-in dataset: deterministic, fast, valid YOLO labels whose boxes sit on the drawn shapes."""

from __future__ import annotations

import time

import cv2
import numpy as np

from utils.data.labels import read_label_file
from utils.data.synthetic import COLORS, NAMES, SPLITS, ensure_builtin_dataset


def test_generated_once_fast_and_valid(tmp_path):
    t = time.time()
    yaml_file = ensure_builtin_dataset(tmp_path / "b")
    assert time.time() - t < 30  # 288 images: about 17 s on a busy 2-core machine
    root = yaml_file.parent
    assert len(list((root / "images" / "train").glob("*.jpg"))) == SPLITS["train"][0]
    assert len(list((root / "images" / "val").glob("*.jpg"))) == SPLITS["val"][0]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".builtin-tmp")]  # temp folder renamed away
    counts = np.zeros(len(NAMES), int)
    for lab in (root / "labels" / "train").glob("*.txt"):
        labels, _, problems = read_label_file(lab, nc=len(NAMES))
        assert problems == [] and len(labels) >= 1
        assert (labels[:, 3:] > 0.03).all()  # objects are not tiny
        counts += np.bincount(labels[:, 0].astype(int), minlength=len(NAMES))
    assert counts.min() > 60  # every class well represented
    mtime = yaml_file.stat().st_mtime_ns
    assert ensure_builtin_dataset(tmp_path / "b") == yaml_file and yaml_file.stat().st_mtime_ns == mtime


def test_deterministic(tmp_path):
    a, b = ensure_builtin_dataset(tmp_path / "a").parent, ensure_builtin_dataset(tmp_path / "b").parent
    for split in ("train", "val"):
        for f in (a / "labels" / split).glob("*.txt"):
            assert f.read_text() == (b / "labels" / split / f.name).read_text()
    im_a = cv2.imread(str(a / "images" / "val" / "val_0003.jpg"))
    assert (im_a == cv2.imread(str(b / "images" / "val" / "val_0003.jpg"))).all()


def test_boxes_cover_class_coloured_pixels(tmp_path):
    root = ensure_builtin_dataset(tmp_path / "b").parent
    for name in ("train_0000", "train_0001", "val_0000"):
        split = name.split("_")[0]
        im = cv2.imread(str(root / "images" / split / f"{name}.jpg")).astype(int)
        h, w = im.shape[:2]
        labels, _, _ = read_label_file(root / "labels" / split / f"{name}.txt")
        for cls, x, y, bw, bh in labels:
            x1, y1, x2, y2 = int((x - bw / 2) * w), int((y - bh / 2) * h), int((x + bw / 2) * w), int((y + bh / 2) * h)
            patch = im[y1 : y2 + 1, x1 : x2 + 1]
            close = (np.abs(patch - np.array(COLORS[int(cls)])) < 60).all(2)
            assert close.mean() > 0.25  # the class colour fills a good part of its box


def test_stale_version_regenerated(tmp_path):
    yaml_file = ensure_builtin_dataset(tmp_path / "b")
    yaml_file.write_text("generator: old\n")
    assert "builtin-shapes" in ensure_builtin_dataset(tmp_path / "b").read_text()


def test_builtin_segments_same_images_polygon_rows(tmp_path):
    """segments=True (segment/train.py and val.py without --data): the same images, each row the shape's outline,
    whose bounding box is the box row of the detection set."""
    from utils.data.synthetic import _write_split

    _write_split(tmp_path / "det", "val", 3, 1)
    _write_split(tmp_path / "seg", "val", 3, 1, segments=True)
    for f in sorted((tmp_path / "det" / "labels" / "val").glob("*.txt")):
        assert (tmp_path / "det" / "images" / "val" / f"{f.stem}.jpg").read_bytes() == (
            tmp_path / "seg" / "images" / "val" / f"{f.stem}.jpg"
        ).read_bytes()
        boxes = np.loadtxt(f, ndmin=2)
        polys = [
            np.array(r.split(), float) for r in (tmp_path / "seg" / "labels" / "val" / f.name).read_text().splitlines()
        ]
        assert len(polys) == len(boxes) and all(len(p) % 2 == 1 and len(p) >= 7 for p in polys)
        for box, p in zip(boxes, polys):
            xy = p[1:].reshape(-1, 2)
            assert p[0] == box[0] and np.allclose(
                [*(xy.min(0) + xy.max(0)) / 2, *(xy.max(0) - xy.min(0))], box[1:], atol=2e-6
            )
