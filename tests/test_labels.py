"""Label rows checked one by one (each bad case dropped or clipped with a message) and image verification."""

from __future__ import annotations

import os

import cv2
import numpy as np
import pytest

from utils.data.labels import img2label_paths, read_label_file, verify_image, verify_image_label


def write(path, text: str):
    path.write_text(text)
    return path


def test_img2label_paths_uses_last_images_folder():
    sep = os.sep
    p = f"{sep}d{sep}images{sep}x{sep}images{sep}a.b.jpg"
    assert img2label_paths([p]) == [f"{sep}d{sep}images{sep}x{sep}labels{sep}a.b.txt"]
    assert img2label_paths([f"{sep}flat{sep}a.png"]) == [f"{sep}flat{sep}a.txt"]


def test_good_rows_kept_exactly(tmp_path):
    f = write(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.4\n\n2 0.25 0.75 0.1 0.1\n")
    labels, segments, problems = read_label_file(f, nc=3)
    assert labels.dtype == np.float32 and labels.shape == (2, 5)
    assert np.allclose(labels, [[0, 0.5, 0.5, 0.2, 0.4], [2, 0.25, 0.75, 0.1, 0.1]])
    assert segments == [] and problems == []


@pytest.mark.parametrize(
    "row, reason",
    [
        ("0 0.5 0.5 0.2", "wrong number of values (4"),
        ("0 0.5 0.5 0.2 0.2 0.3", "wrong number of values (6"),
        ("0 0.5 0.5 0.2 0.2 0.3 0.4 0.5", "wrong number of values (8"),
        ("0 0.5 abc 0.2 0.2", "non-numeric"),
        ("0 0.5 nan 0.2 0.2", "non-finite"),
        ("3 0.5 0.5 0.2 0.2", "class 3 out of range (nc=3)"),
        ("-1 0.5 0.5 0.2 0.2", "class -1 out of range"),
        ("1.5 0.5 0.5 0.2 0.2", "class 1.5 out of range"),
        ("0 1.5 0.5 0.2 0.2", "coordinates outside 0-1"),
        ("0 320 240 50 60", "coordinates outside 0-1"),
        ("0 0.5 0.5 0 0.2", "zero or negative box size"),
        ("0 0.5 0.5 0.2 -0.1", "zero or negative box size"),
    ],
)
def test_each_bad_row_dropped_alone(tmp_path, row, reason):
    f = write(tmp_path / "a.txt", f"1 0.5 0.5 0.2 0.2\n{row}\n2 0.3 0.3 0.1 0.1\n")
    labels, _, problems = read_label_file(f, nc=3)
    assert labels[:, 0].tolist() == [1, 2]  # the good rows on both sides survive
    assert len(problems) == 1 and problems[0].startswith("line 2: ") and reason in problems[0]
    assert problems[0].endswith("(dropped)")


def test_slightly_out_clipped_and_reported(tmp_path):
    f = write(tmp_path / "a.txt", "0 0.995 0.5 0.02 0.2\n1 0.5 0.5 1.0000004 0.2\n")
    labels, _, problems = read_label_file(f, nc=2)
    assert len(labels) == 2
    assert np.allclose(labels[0], [0, 0.9925, 0.5, 0.015, 0.2])  # x2 = 1.005 clipped to 1
    assert np.allclose(labels[1], [1, 0.5, 0.5, 1.0, 0.2])  # rounding noise: clipped silently
    assert problems == ["line 1: clipped to 0-1"]


def test_duplicates_dropped(tmp_path):
    f = write(tmp_path / "a.txt", "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.3\n")
    labels, _, problems = read_label_file(f)
    assert len(labels) == 2 and problems == ["line 2: duplicate row (dropped)"]


def test_polygon_rows_become_boxes_and_keep_segments(tmp_path):
    f = write(tmp_path / "a.txt", "1 0.1 0.2 0.5 0.2 0.3 0.6\n0 0.5 0.5 0.2 0.2\n")
    labels, segments, problems = read_label_file(f, nc=2)
    assert problems == []
    assert np.allclose(labels[0], [1, 0.3, 0.4, 0.4, 0.4])
    assert len(segments) == 2 and segments[0].shape == (3, 2)
    assert np.allclose(segments[1], [[0.4, 0.4], [0.6, 0.4], [0.6, 0.6], [0.4, 0.6]])  # box row -> its corners


def make_image(path, h=32, w=48):
    im = np.zeros((h, w, 3), np.uint8)
    im[4:20, 8:30] = 200
    assert cv2.imwrite(str(path), im)
    return path


def test_verify_image_cases(tmp_path):
    ok, shape, msg = verify_image(make_image(tmp_path / "a.jpg"))
    assert ok and shape == (32, 48) and msg == ""
    ok, _, msg = verify_image(write(tmp_path / "b.jpg", "this is text, not a JPEG"))
    assert not ok and "unreadable" in msg
    ok, shape, msg = verify_image(make_image(tmp_path / "c.png", 5, 40))
    assert not ok and "too small" in msg and shape == (5, 40)
    ok, _, msg = verify_image(tmp_path / "missing.jpg")
    assert not ok


def test_truncated_jpeg_read_as_is_not_repaired(tmp_path):
    src = make_image(tmp_path / "full.jpg", 64, 64).read_bytes()
    f = tmp_path / "trunc.jpg"
    f.write_bytes(src[:-2])  # drop the end-of-image marker
    before = (f.read_bytes(), f.stat().st_mtime_ns)
    ok, shape, msg = verify_image(f)
    assert ok and shape == (64, 64) and "truncated" in msg
    assert (f.read_bytes(), f.stat().st_mtime_ns) == before


def test_verify_image_label_status(tmp_path):
    im = make_image(tmp_path / "a.jpg")
    assert verify_image_label(str(im), str(tmp_path / "none.txt"))["status"] == "missing"
    assert verify_image_label(str(im), str(write(tmp_path / "e.txt", "\n")))["status"] == "empty"
    r = verify_image_label(str(im), str(write(tmp_path / "g.txt", "0 0.5 0.5 0.2 0.2\n5 0.5 0.5 0.2 0.2\n")), nc=2)
    assert r["status"] == "found" and r["ok"] and r["shape"] == (48, 32) and len(r["labels"]) == 1
    assert len(r["problems"]) == 1
    bad = verify_image_label(str(write(tmp_path / "t.jpg", "text")), str(tmp_path / "g.txt"))
    assert bad["status"] == "corrupt" and not bad["ok"] and bad["problems"][0].startswith("image skipped")


def test_exif_rotation_swaps_reported_shape_like_cv2(tmp_path):
    from PIL import Image

    f = tmp_path / "rot.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    Image.new("RGB", (40, 20), (200, 10, 10)).save(f, exif=exif.tobytes())
    ok, shape, _ = verify_image(f)
    assert ok and shape == (40, 20)  # (h, w) after rotation
    assert cv2.imread(str(f)).shape[:2] == shape  # cv2 applies the orientation too, so shapes agree
