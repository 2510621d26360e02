"""Augmentation callables as YOLOv5 applies them: letterbox, perspective, HSV, flips, mixup, copy-paste, mosaic.

Inside the pipeline images are BGR uint8 (H, W, 3) and labels are (n, 5) float arrays [cls, x1, y1, x2, y2] in
pixels; segments are lists of (k, 2) pixel polygons aligned with the labels (or empty).
"""

from __future__ import annotations

import math
import random
from typing import Callable, List, Sequence, Tuple, Union

import cv2
import numpy as np

from utils.boxes import segment2box, xyn2xy, xywhn2xyxy

GREY = (114, 114, 114)
LoadFn = Callable[[int], Tuple[np.ndarray, np.ndarray, List[np.ndarray]]]  # index -> (im, labels xywhn, segments n)


def letterbox(
    im: np.ndarray,
    new_shape: Union[int, Sequence[int]] = 640,
    color: Tuple[int, int, int] = GREY,
    auto: bool = True,
    scaleFill: bool = False,  # noqa: N803 (YOLOv5's keyword)
    scaleup: bool = True,
    stride: int = 32,
) -> Tuple[np.ndarray, Tuple[float, float], Tuple[float, float]]:
    """Resize keeping the aspect ratio and pad to new_shape (h, w) -> (im, ratio (rw, rh), (dw, dh) per side).

    auto: pad only up to the next multiple of stride (the minimum rectangle); scaleFill: stretch, no padding;
    scaleup False: only shrink. dw/dh are the half paddings (floats) as YOLOv5 reports them.
    """
    h0, w0 = im.shape[:2]
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    r = min(new_shape[0] / h0, new_shape[1] / w0)
    if not scaleup:
        r = min(r, 1.0)
    ratio = (r, r)
    new_w, new_h = int(round(w0 * r)), int(round(h0 * r))
    dw, dh = new_shape[1] - new_w, new_shape[0] - new_h
    if auto:
        dw, dh = np.mod(dw, stride), np.mod(dh, stride)
    elif scaleFill:
        dw, dh = 0.0, 0.0
        new_w, new_h = new_shape[1], new_shape[0]
        ratio = (new_shape[1] / w0, new_shape[0] / h0)
    dw, dh = dw / 2, dh / 2  # split the padding between the two sides
    if (w0, h0) != (new_w, new_h):
        im = cv2.resize(im, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=color)
    return im, ratio, (float(dw), float(dh))


def box_candidates(
    box1: np.ndarray, box2: np.ndarray, wh_thr: float = 2, ar_thr: float = 100, area_thr: float = 0.1, eps=1e-16
) -> np.ndarray:
    """Keep mask for boxes after augmentation: box1 (4, n) before, box2 (4, n) after, both xyxy pixels.

    Kept when width and height > wh_thr px, area ratio after/before > area_thr and aspect ratio < ar_thr.
    """
    w1, h1 = box1[2] - box1[0], box1[3] - box1[1]
    w2, h2 = box2[2] - box2[0], box2[3] - box2[1]
    aspect = np.maximum(w2 / (h2 + eps), h2 / (w2 + eps))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + eps) > area_thr) & (aspect < ar_thr)


def resample_segments(segments: List[np.ndarray], n: int = 1000) -> List[np.ndarray]:
    """Resample each closed (k, 2) polygon to n points along its outline (for smooth warping)."""
    out = []
    for s in segments:
        s = np.concatenate((s, s[:1]), 0)
        t = np.linspace(0, len(s) - 1, n)
        idx = np.arange(len(s))
        out.append(np.stack([np.interp(t, idx, s[:, j]) for j in range(2)], 1).astype(np.float32))
    return out


class RandomPerspective:
    """Random rotation / scale / shear / translation / perspective warp of an image and its boxes (or segments).

    border (by, bx) grows (negative: shrinks) the output by 2*border per axis, used by Mosaic to go from 2s to s.
    """

    def __init__(self, degrees=0.0, translate=0.1, scale=0.5, shear=0.0, perspective=0.0, border=(0, 0)):
        self.degrees, self.translate, self.scale = degrees, translate, scale
        self.shear, self.perspective, self.border = shear, perspective, border

    def _matrix(self, h: int, w: int, out_h: int, out_w: int) -> Tuple[np.ndarray, float]:
        """3x3 warp matrix (centre -> perspective -> rotate/scale -> shear -> translate) and the scale drawn."""
        c = np.eye(3)
        c[0, 2], c[1, 2] = -w / 2, -h / 2  # move the image centre to the origin
        p = np.eye(3)
        p[2, 0] = random.uniform(-self.perspective, self.perspective)
        p[2, 1] = random.uniform(-self.perspective, self.perspective)
        r = np.eye(3)
        angle = random.uniform(-self.degrees, self.degrees)
        s = random.uniform(1 - self.scale, 1 + self.scale)
        r[:2] = cv2.getRotationMatrix2D(angle=angle, center=(0, 0), scale=s)
        sh = np.eye(3)
        sh[0, 1] = math.tan(random.uniform(-self.shear, self.shear) * math.pi / 180)
        sh[1, 0] = math.tan(random.uniform(-self.shear, self.shear) * math.pi / 180)
        t = np.eye(3)
        t[0, 2] = random.uniform(0.5 - self.translate, 0.5 + self.translate) * out_w
        t[1, 2] = random.uniform(0.5 - self.translate, 0.5 + self.translate) * out_h
        return t @ sh @ r @ p @ c, s

    def _warp_points(self, xy: np.ndarray, m: np.ndarray) -> np.ndarray:
        """(k, 2) points -> (k, 2) warped points."""
        xy1 = np.concatenate((xy, np.ones((len(xy), 1))), 1) @ m.T
        return xy1[:, :2] / xy1[:, 2:3] if self.perspective else xy1[:, :2]

    def __call__(
        self, im: np.ndarray, labels: np.ndarray, segments: Sequence[np.ndarray] = ()
    ) -> Tuple[np.ndarray, np.ndarray]:
        """im (H, W, 3), labels (n, 5) [cls, xyxy px], segments (n of (k, 2) px) -> warped (im, kept labels)."""
        return self.warp(im, labels, segments)[:2]

    def warp(
        self, im: np.ndarray, labels: np.ndarray, segments: Sequence[np.ndarray] = ()
    ) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
        """As __call__, also returning the kept segments warped (resampled to 1000 points; [] without segments)."""
        out_h, out_w = im.shape[0] + self.border[0] * 2, im.shape[1] + self.border[1] * 2
        m, s = self._matrix(im.shape[0], im.shape[1], out_h, out_w)
        if self.border[0] or self.border[1] or (m != np.eye(3)).any():
            if self.perspective:
                im = cv2.warpPerspective(im, m, dsize=(out_w, out_h), borderValue=GREY)
            else:
                im = cv2.warpAffine(im, m[:2], dsize=(out_w, out_h), borderValue=GREY)
        n = len(labels)
        if not n:
            return im, labels, []
        use_segments = len(segments) == n and any(len(x) for x in segments)
        warped: List[np.ndarray] = []
        if use_segments:
            warped = [self._warp_points(seg, m) for seg in resample_segments(segments)]
            new = np.stack([segment2box(xy, out_w, out_h) for xy in warped])
        else:
            corners = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
            xy = self._warp_points(corners, m).reshape(n, 8)
            x, y = xy[:, [0, 2, 4, 6]], xy[:, [1, 3, 5, 7]]
            new = np.stack((x.min(1), y.min(1), x.max(1), y.max(1)), 1)
            new[:, [0, 2]] = new[:, [0, 2]].clip(0, out_w)
            new[:, [1, 3]] = new[:, [1, 3]].clip(0, out_h)
        keep = box_candidates(labels[:, 1:5].T * s, new.T, area_thr=0.01 if use_segments else 0.10)
        labels = labels[keep].copy()
        labels[:, 1:5] = new[keep]
        return im, labels, [xy.astype(np.float32) for xy, k in zip(warped, keep) if k]


class AugmentHSV:
    """Random hue / saturation / value gains applied in place through lookup tables (YOLOv5's augment_hsv)."""

    def __init__(self, hgain: float = 0.5, sgain: float = 0.5, vgain: float = 0.5):
        self.gains = np.array([hgain, sgain, vgain])

    def __call__(self, im: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """BGR uint8 (H, W, 3), modified in place; labels unchanged."""
        if not self.gains.any():
            return im, labels
        r = np.random.uniform(-1, 1, 3) * self.gains + 1
        hue, sat, val = cv2.split(cv2.cvtColor(im, cv2.COLOR_BGR2HSV))
        x = np.arange(0, 256, dtype=r.dtype)
        lut_h = ((x * r[0]) % 180).astype(im.dtype)
        lut_s = np.clip(x * r[1], 0, 255).astype(im.dtype)
        lut_v = np.clip(x * r[2], 0, 255).astype(im.dtype)
        hsv = cv2.merge((cv2.LUT(hue, lut_h), cv2.LUT(sat, lut_s), cv2.LUT(val, lut_v)))
        cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR, dst=im)
        return im, labels


class RandomFlip:
    """Flip up-down with probability flipud and left-right with probability fliplr (in that order)."""

    def __init__(self, flipud: float = 0.0, fliplr: float = 0.5):
        self.flipud, self.fliplr = flipud, fliplr

    def __call__(self, im: np.ndarray, labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """im (H, W, 3), labels (n, 5) [cls, xyxy px] -> flipped (im may be a strided view: the caller's final
        HWC -> CHW copy makes it contiguous once)."""
        h, w = im.shape[:2]
        if random.random() < self.flipud:
            im = np.flipud(im)
            labels = labels.copy()
            labels[:, [2, 4]] = h - labels[:, [4, 2]]
        if random.random() < self.fliplr:
            im = np.fliplr(im)
            labels = labels.copy()
            labels[:, [1, 3]] = w - labels[:, [3, 1]]
        return im, labels


def mixup(im: np.ndarray, labels: np.ndarray, im2: np.ndarray, labels2: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Blend two same-size images with a Beta(32, 32) ratio and keep both label sets."""
    r = np.random.beta(32.0, 32.0)
    im = (im * r + im2 * (1 - r)).astype(np.uint8)
    return im, np.concatenate((labels, labels2), 0)


def _ioa(box: np.ndarray, boxes: np.ndarray, eps: float = 1e-7) -> np.ndarray:
    """Intersection of box (4,) with each of boxes (n, 4) over the area of each of boxes (xyxy)."""
    iw = (np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0])).clip(0)
    ih = (np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1])).clip(0)
    return iw * ih / ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + eps)


def copy_paste(
    im: np.ndarray, labels: np.ndarray, segments: List[np.ndarray], p: float = 0.5
) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
    """Paste a left-right mirrored copy of round(p*n) segmented objects onto the image (Ghiasi et al. 2021).

    A copy is pasted only where it hides < 30 % of every existing box. Needs segments; otherwise a no-op.
    """
    n = len(segments)
    if not p or not n or len(labels) != n:
        return im, labels, segments
    w = im.shape[1]
    segments = list(segments)
    mask = np.zeros(im.shape[:2], np.uint8)
    for j in random.sample(range(n), k=round(p * n)):
        cls, x1, y1, x2, y2 = labels[j]
        box = np.array([w - x2, y1, w - x1, y2])
        if (_ioa(box, labels[:, 1:5]) < 0.30).all():
            labels = np.concatenate((labels, [[cls, *box]]), 0)
            seg = segments[j]
            segments.append(np.stack((w - seg[:, 0], seg[:, 1]), 1).astype(np.float32))
            cv2.drawContours(mask, [seg.astype(np.int32)], -1, 1, cv2.FILLED)
    if mask.any():
        mirrored = cv2.flip(im, 1)
        take = cv2.flip(mask, 1).astype(bool)
        im[take] = mirrored[take]
    return im, labels, segments


class Mosaic:
    """Four images on a 2s x 2s grey canvas around a random centre in [s/2, 3s/2], then warped back to s x s.

    load(index) -> (im BGR resized so its long side is s, labels (n, 5) [cls, xywhn], segments normalised).
    """

    def __init__(
        self, load: LoadFn, indices: Sequence[int], img_size: int, perspective: RandomPerspective, copy_paste_p=0.0
    ):
        self.load, self.indices, self.s = load, indices, img_size
        self.perspective, self.copy_paste_p = perspective, copy_paste_p
        self.perspective.border = (-img_size // 2, -img_size // 2)

    def _place(self, i: int, xc: int, yc: int, h: int, w: int) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """Canvas slice (x1a, y1a, x2a, y2a) and image slice (x1b, y1b, x2b, y2b) for tile i (TL, TR, BL, BR)."""
        s2 = self.s * 2
        if i == 0:
            a = (max(xc - w, 0), max(yc - h, 0), xc, yc)
            b = (w - (a[2] - a[0]), h - (a[3] - a[1]), w, h)
        elif i == 1:
            a = (xc, max(yc - h, 0), min(xc + w, s2), yc)
            b = (0, h - (a[3] - a[1]), min(w, a[2] - a[0]), h)
        elif i == 2:
            a = (max(xc - w, 0), yc, xc, min(s2, yc + h))
            b = (w - (a[2] - a[0]), 0, w, min(a[3] - a[1], h))
        else:
            a = (xc, yc, min(xc + w, s2), min(s2, yc + h))
            b = (0, 0, min(w, a[2] - a[0]), min(a[3] - a[1], h))
        return a, b

    def __call__(self, index: int, indices: Sequence[int] | None = None) -> Tuple[np.ndarray, np.ndarray]:
        """-> (im (s, s, 3) BGR, labels (n, 5) [cls, xyxy px]). indices: the 4 images to use (default: random)."""
        return self.with_segments(index, indices)[:2]

    def with_segments(
        self, index: int, indices: Sequence[int] | None = None
    ) -> Tuple[np.ndarray, np.ndarray, List[np.ndarray]]:
        """As __call__, also returning the kept instances' warped (k, 2) pixel polygons ([] without segments)."""
        s = self.s
        xc, yc = (int(random.uniform(s / 2, 3 * s / 2)) for _ in range(2))
        if indices is None:
            indices = [index, *random.choices(self.indices, k=3)]
            random.shuffle(indices)
        canvas, all_labels, all_segments = None, [], []
        for i, idx in enumerate(indices):
            im, labels, segments = self.load(idx)
            h, w = im.shape[:2]
            if canvas is None:
                canvas = np.full((s * 2, s * 2, im.shape[2]), 114, dtype=np.uint8)
            (x1a, y1a, x2a, y2a), (x1b, y1b, x2b, y2b) = self._place(i, xc, yc, h, w)
            canvas[y1a:y2a, x1a:x2a] = im[y1b:y2b, x1b:x2b]
            padw, padh = x1a - x1b, y1a - y1b
            labels = labels.copy()
            if len(labels):
                labels[:, 1:] = xywhn2xyxy(labels[:, 1:], w, h, padw, padh)
            all_labels.append(labels)
            all_segments += [xyn2xy(x, w, h, padw, padh) for x in segments]
        labels = np.concatenate(all_labels, 0) if all_labels else np.zeros((0, 5), np.float32)
        for x in (labels[:, 1:], *all_segments):
            np.clip(x, 0, 2 * s, out=x)
        canvas, labels, all_segments = copy_paste(canvas, labels, all_segments, p=self.copy_paste_p)
        return self.perspective.warp(canvas, labels, all_segments)
