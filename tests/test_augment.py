"""Augmentation callables: letterbox parity with YOLOv5, and every transform keeps boxes on their pixels."""

from __future__ import annotations

import random

import cv2
import numpy as np
import pytest

from utils.data.augment import (
    AugmentHSV,
    Mosaic,
    RandomFlip,
    RandomPerspective,
    box_candidates,
    copy_paste,
    letterbox,
    mixup,
)


def white_square(h=120, w=160, box=(40, 30, 90, 70)) -> tuple[np.ndarray, np.ndarray]:
    """Black image with one white rectangle; labels (1, 5) [cls, x1, y1, x2, y2] in pixels."""
    im = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    im[y1:y2, x1:x2] = 255
    return im, np.array([[0, x1, y1, x2, y2]], dtype=np.float64)


def white_bbox(im: np.ndarray, thr: int = 200) -> np.ndarray:
    """xyxy (x2, y2 exclusive) of the pixels brighter than thr in every channel."""
    ys, xs = np.nonzero((im > thr).all(2))
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def test_letterbox_bus_shapes_and_padding():
    im = np.zeros((1080, 810, 3), np.uint8)
    out, ratio, (dw, dh) = letterbox(im, 640)  # auto: the smallest stride-multiple rectangle
    assert out.shape == (640, 480, 3) and ratio == (640 / 1080, 640 / 1080) and (dw, dh) == (0.0, 0.0)
    out, ratio, (dw, dh) = letterbox(im, 640, auto=False)
    assert out.shape == (640, 640, 3) and (dw, dh) == (80.0, 0.0)
    assert (out[:, :80] == 114).all() and (out[:, -80:] == 114).all()


def test_letterbox_odd_padding_split_and_options():
    im = np.full((100, 201, 3), 255, np.uint8)
    out, ratio, (dw, dh) = letterbox(im, 256, auto=False, scaleup=False)
    assert ratio == (1.0, 1.0) and out.shape == (256, 256, 3)
    assert dw == 27.5 and dh == 78.0
    assert (out[:, 26, 0] == 114).all() and (out[78:178, 27, 0] == 255).all()  # left pad 27 = round(27.4)
    assert (out[78:178, -29, 0] == 255).all() and (out[:, -28, 0] == 114).all()  # right pad 28 = round(27.6)
    out, ratio, _ = letterbox(im, (64, 128), auto=False, scaleFill=True)
    assert out.shape == (64, 128, 3) and ratio == (128 / 201, 64 / 100)


def test_letterbox_matches_official_bus(shared):
    im = cv2.imread(str(shared / "images" / "bus.jpg"))
    ref = cv2.imread(str(shared / "reference" / "bus_letterboxed_640x480.png"))
    out = letterbox(im, 640)[0]
    assert out.shape == ref.shape == (640, 480, 3)
    assert np.abs(out.astype(int) - ref.astype(int)).max() <= 1


def test_box_candidates():
    before = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 100, 100]], float).T
    after = np.array([[0, 0, 10, 10], [0, 0, 2, 10], [0, 0, 10, 0.5], [0, 0, 20, 20]], float).T
    assert box_candidates(before, after).tolist() == [True, False, False, False]  # too thin x2, area 4 % < 10 %


@pytest.mark.parametrize("seed", range(6))
def test_random_perspective_box_covers_white_pixels(seed):
    random.seed(seed)
    im, labels = white_square()
    warp = RandomPerspective(degrees=20, translate=0.1, scale=0.3, shear=5, perspective=0.0005)
    out, new = warp(im, labels)
    assert out.shape == im.shape and new.shape == (1, 5) and new[0, 0] == 0
    assert np.allclose(new[:, 1:], white_bbox(out), atol=3)


def test_random_perspective_border_and_segments():
    random.seed(0)
    im, labels = white_square(200, 200, (50, 60, 120, 150))
    seg = [np.array([[50, 60], [120, 60], [120, 150], [50, 150]], np.float32)]
    warp = RandomPerspective(degrees=0, translate=0, scale=0, shear=0, border=(-50, -50))
    out, new = warp(im, labels, seg)
    assert out.shape == (100, 100, 3)  # 200 + 2 * -50
    assert np.allclose(new[0, 1:], [0, 10, 70, 100], atol=1)  # the centre crop shifts the box by -50 px


def test_hsv_known_gain_and_labels_unchanged():
    im = np.full((8, 8, 3), 100, np.uint8)  # grey: hue and saturation 0, value 100
    labels = np.array([[1, 1, 1, 5, 5]], float)
    np.random.seed(3)
    r = np.random.uniform(-1, 1, 3) * [0.0, 0.0, 0.5] + 1
    np.random.seed(3)
    out, lb = AugmentHSV(0.0, 0.0, 0.5)(im.copy(), labels)
    assert lb is labels
    assert (out == int(np.clip(100 * r[2], 0, 255))).all()
    same, _ = AugmentHSV(0, 0, 0)(im.copy(), labels)
    assert (same == im).all()


def test_flips_move_boxes_with_pixels():
    im, labels = white_square()
    random.seed(0)
    out, lb = RandomFlip(flipud=1.0, fliplr=1.0)(im, labels)
    assert np.allclose(lb[0, 1:], white_bbox(out)) and np.allclose(lb[0, 1:], [70, 50, 120, 90])
    out, lb = RandomFlip(flipud=0.0, fliplr=0.0)(im, labels)
    assert (out == im).all() and (lb == labels).all()


def test_mixup_blends_and_concatenates():
    np.random.seed(0)
    a, la = white_square()
    b, lb = np.zeros_like(a), np.array([[2, 0, 0, 10, 10]], float)
    out, lab = mixup(a, la, b, lb)
    assert lab.shape == (2, 5) and lab[1, 0] == 2
    v = out[50, 60, 0]
    assert 90 < v < 165 and out[0, 0, 0] == 0  # Beta(32, 32) keeps the ratio near 0.5


def test_copy_paste_adds_mirrored_object():
    random.seed(0)
    im, labels = white_square(100, 200, (10, 20, 50, 60))
    seg = [np.array([[10, 20], [50, 20], [50, 60], [10, 60]], np.float32)]
    out, lab, segs = copy_paste(im.copy(), labels, seg, p=1.0)
    assert lab.shape == (2, 5) and len(segs) == 2
    assert np.allclose(lab[1, 1:], [150, 20, 190, 60])
    assert (out[25:55, 155:185] == 255).all()  # pasted pixels inside the new box
    same, lab2, _ = copy_paste(im.copy(), labels, [], p=1.0)  # no segments: no-op
    assert (same == im).all() and len(lab2) == 1


def test_mosaic_size_and_labels_on_white_pixels():
    def load(i):
        im, _ = white_square(64, 64, (16, 16, 48, 48))
        return im, np.array([[i, 0.5, 0.5, 0.5, 0.5]], np.float32), []

    for seed in range(4):
        random.seed(seed)
        mosaic = Mosaic(load, [0, 1, 2, 3], 64, RandomPerspective(degrees=0, translate=0.1, scale=0.5))
        out, lab = mosaic(0)
        assert out.shape == (64, 64, 3)
        assert ((out == 114) | (out == 0) | (out == 255)).mean() > 0.8  # canvas grey, images black/white
        for _, x1, y1, x2, y2 in lab:
            patch = out[int(y1 + 1) : int(y2 - 1), int(x1 + 1) : int(x2 - 1)]
            assert patch.size and (patch > 200).mean() > 0.9


def test_mosaic_fixed_indices_without_warp_puts_four_tiles_around_centre():
    def load(i):
        im, _ = white_square(32, 32, (8, 8, 24, 24))
        return im, np.array([[i, 0.5, 0.5, 0.5, 0.5]], np.float32), []

    random.seed(1)
    warp = RandomPerspective(degrees=0, translate=0, scale=0)
    out, lab = Mosaic(load, [0, 1, 2, 3], 32, warp)(0, indices=[0, 1, 2, 3])
    assert out.shape == (32, 32, 3)
    assert sorted(lab[:, 0].tolist()) == sorted(set(lab[:, 0].tolist()))  # at most one box per tile
    w = lab[:, 3] - lab[:, 1]
    assert (w > 2).all()
