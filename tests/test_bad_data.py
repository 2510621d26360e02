"""Broken datasets: bad images and label rows are dropped and named per file, good rows kept, runs finish (exit 0)."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.helpers import run_main

pytestmark = pytest.mark.slow
GOOD = ["0 0.30 0.30 0.20 0.20", "1 0.70 0.60 0.25 0.30"]
BAD_ROWS = {  # row text -> the words the log must show for it
    "0 0.5 0.5 0.2": "wrong number of values",
    "1 a 0.5 0.2 0.2": "non-numeric value",
    "7 0.5 0.5 0.2 0.2": "class 7 out of range",
    "0 1.5 0.5 0.2 0.2": "coordinates outside 0-1",
    "0 0.5 0.5 -0.2 0.2": "zero or negative box size",
    GOOD[0]: "duplicate row",
}
BROKEN_IMAGES = {  # file name -> bytes
    "random.jpg": bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)),
    "text.jpg": b"this is a text file, not an image\n",
}
EXPECTED_INSTANCES = 2 + 2 + 2  # good.png, mixed.png (good rows of a partly bad file), truncated.jpg


def _image(seed: int) -> np.ndarray:
    """A 96x128 grey image with two coloured rectangles where GOOD puts its boxes."""
    im = np.full((96, 128, 3), 90, np.uint8)
    cv2.rectangle(im, (26, 19), (51, 38), (0, 255, 0), -1)
    cv2.rectangle(im, (74, 43), (106, 72), (255, 0, seed % 255), -1)
    return im


def make_bad_split(images: Path, labels: Path) -> None:
    """One split holding each kind of problem next to good files."""
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    good = "\n".join(GOOD) + "\n"
    for i, stem in enumerate(("good", "mixed", "empty", "nolabel")):
        cv2.imwrite(str(images / f"{stem}.png"), _image(i))
    (labels / "good.txt").write_text(good)
    (labels / "mixed.txt").write_text("\n".join([GOOD[0], *BAD_ROWS, GOOD[1]]) + "\n")
    (labels / "empty.txt").write_text("")
    ok, jpg = cv2.imencode(".jpg", _image(9))
    (images / "truncated.jpg").write_bytes(jpg.tobytes()[: len(jpg) * 3 // 4])  # no end-of-image marker
    (labels / "truncated.txt").write_text(good)
    for name, data in BROKEN_IMAGES.items():
        (images / name).write_bytes(data)
        (labels / name.replace(".jpg", ".txt")).write_text(good)


def make_bad_dataset(root: Path) -> Path:
    """train and val splits both broken the same way; returns the dataset yaml (2 classes)."""
    for split in ("train", "val"):
        make_bad_split(root / "images" / split, root / "labels" / split)
    yaml_file = root / "bad.yaml"
    yaml_file.write_text("path: .\ntrain: images/train\nval: images/val\nnames: [green, blue]\n")
    return yaml_file


def _check_problems_named(log: str) -> None:
    """Every bad file and row kind is named in the log with its file."""
    for row_words in BAD_ROWS.values():
        assert re.search(rf"mixed\.png: line \d+: {re.escape(row_words)}", log), row_words
    for name in BROKEN_IMAGES:
        assert re.search(rf"{re.escape(name)}: image skipped: unreadable image", log), name
    assert "truncated.jpg: truncated JPEG" in log


def test_train_and_val_finish_on_bad_data(tmp_path):
    data = make_bad_dataset(tmp_path / "bad")
    common = ("--imgsz", "64", "--device", "cpu", "--workers", "0", "--project", tmp_path / "runs", "--exist-ok")
    r = run_main("train.py", "--cfg", "yolov5n.yaml", "--data", data, "--epochs", "1", "--batch-size", "4",
                   "--noplots", "--name", "train", *common)  # fmt: skip
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    assert "Traceback" not in r.stderr
    _check_problems_named(log)
    assert "2 corrupt" in log and "2 backgrounds" in log  # random.jpg + text.jpg; empty.png + nolabel.png
    weights = tmp_path / "runs/train/weights/last.pt"
    r = run_main("val.py", "--weights", weights, "--data", data, "--batch-size", "4", "--name", "val", *common)
    log = r.stdout + r.stderr
    assert r.returncode == 0, log[-3000:]
    _check_problems_named(log)
    row = re.search(r"^\s+all\s+(\d+)\s+(\d+)\s", r.stdout, re.M)
    assert row, r.stdout[-2000:]
    assert (int(row.group(1)), int(row.group(2))) == (5, EXPECTED_INSTANCES)  # 5 usable images, good rows only


def test_cached_labels_equal_scanned_labels(tmp_path, monkeypatch):
    import utils.data.dataset as dataset_mod
    from utils.data.cache import cache_path_for
    from utils.data.dataset import scan_dataset
    from utils.data.labels import img2label_paths, verify_image_label

    images, labels = tmp_path / "d/images", tmp_path / "d/labels"
    images.mkdir(parents=True)
    labels.mkdir(parents=True)
    cv2.imwrite(str(images / "a.png"), _image(0))
    # the first row is clipped on the left: x1 = -0.0033 -> 0, giving 0.0833325-wide boxes that 6 decimals would change
    rows = ["0 0.04 0.5 0.0866 0.2", "1 0.123456789 0.987654 0.0123456789 0.0111111111", "0 0.1 0.1 0.1 0.1 0.2 0.3"]
    (labels / "a.txt").write_text("\n".join(rows) + "\n")
    im_files = [str(images / "a.png")]
    lb_files = img2label_paths(im_files)
    fresh = verify_image_label(im_files[0], lb_files[0], nc=2)
    first = scan_dataset(images, im_files, lb_files, nc=2)  # scans and writes the cache
    monkeypatch.setattr(dataset_mod, "verify_image_label", None)  # a second scan would fail: the cache must serve
    cached = scan_dataset(images, im_files, lb_files, nc=2)
    assert cache_path_for(images, lb_files)[0].is_file() and not (images.parent / "labels.cache.json").exists()
    for entry in (first[im_files[0]], cached[im_files[0]]):
        assert entry["labels"].dtype == np.float32 and entry["labels"].shape == (3, 5)
        assert np.array_equal(entry["labels"], fresh["labels"])
        assert len(entry["segments"]) == len(fresh["segments"]) == 3
        assert all(np.array_equal(a, b) for a, b in zip(entry["segments"], fresh["segments"]))
        assert entry["problems"] == fresh["problems"] == ["line 1: clipped to 0-1"]
