"""Drawing boxes and labels on images with OpenCV, or PIL with a font already on the machine (never downloaded)."""

from __future__ import annotations

import colorsys
import functools
import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Dict, Sequence, Tuple, Union

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from utils.boxes import clip_boxes, xywh2xyxy, xyxy2xywh
from utils.safe_write import write_image

LOGGER = logging.getLogger(__name__)

Color = Tuple[int, int, int]
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/Library/Fonts/Arial.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:/Windows/Fonts/arial.ttf",
)


@functools.cache
def _palette(n: int = 20) -> Tuple[Color, ...]:
    """n well separated RGB colours: hues stepped by the golden ratio, alternating saturation/value."""
    out = []
    for i in range(n):
        h = (0.02 + i * 0.618034) % 1.0
        s, v = (0.85, 1.0) if i % 2 == 0 else (0.65, 0.85)
        out.append(tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(h, s, v)))
    return tuple(out)


def colors(i: int, bgr: bool = False) -> Color:
    """Colour of class i (RGB, or BGR for OpenCV images); the palette repeats every 20 classes."""
    c = _palette()[int(i) % 20]
    return (c[2], c[1], c[0]) if bgr else c


@functools.cache
def find_font_file() -> str | None:
    """A TrueType font already on this machine (common paths, then fc-list), or None."""
    env = os.environ.get("YOLOV5FLA_FONT")
    for p in ((env,) if env else ()) + FONT_CANDIDATES:
        if p and Path(p).is_file():
            return p
    if shutil.which("fc-list"):
        try:
            out = subprocess.run(["fc-list", ":fontformat=TrueType", "file"], capture_output=True, text=True, timeout=5)
            files = sorted(line.split(":")[0].strip() for line in out.stdout.splitlines() if line.strip())
            sans = [f for f in files if "sans" in f.lower() and "mono" not in f.lower()]
            return (sans or files or [None])[0]
        except (OSError, subprocess.SubprocessError):
            return None
    return None


@functools.cache
def load_font(size: int = 12) -> ImageFont.ImageFont:
    """A PIL font of ~size px from a local TrueType file, else PIL's built-in default font."""
    path = find_font_file()
    if path:
        try:
            return ImageFont.truetype(path, size)
        except OSError:
            LOGGER.debug("cannot load font %s", path)
    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1 scales its built-in font
    except TypeError:
        return ImageFont.load_default()


def printable(text: str) -> str:
    """text with the lone surrogates of a non-UTF-8 file name replaced (cv2.putText crashes on them, PIL raises)."""
    return text.encode("utf-8", "replace").decode("utf-8")


class Annotator:
    """Draw labelled boxes on a BGR uint8 image (H, W, 3) with OpenCV, or with PIL (pil=True or non-ASCII labels)."""

    def __init__(
        self,
        im: np.ndarray,
        line_width: int | None = None,
        font_size: int | None = None,
        pil: bool = False,
        example: str = "abc",
    ):
        if not isinstance(im, np.ndarray) or im.ndim != 3:
            raise ValueError("Annotator needs an (H, W, 3) numpy image")
        self.pil = pil or not example.isascii()
        self.lw = line_width or max(round(sum(im.shape[:2]) / 2 * 0.003), 2)
        if self.pil:
            self.im = Image.fromarray(np.ascontiguousarray(im[..., ::-1]))  # BGR -> RGB for PIL
            self.draw = ImageDraw.Draw(self.im)
            self.font = load_font(font_size or max(round(sum(im.shape[:2]) / 2 * 0.035), 12))
        else:
            self.im = np.ascontiguousarray(im)  # drawn in place when already contiguous
            self.tf = max(self.lw - 1, 1)  # text thickness
            self.sf = self.lw / 3  # text scale

    def box_label(
        self, box: Sequence[float], label: str = "", color: Color = (128, 128, 128), txt_color: Color = (255, 255, 255)
    ) -> None:
        """One box (x1, y1, x2, y2 pixels) plus an optional label on a filled tab; colours in image order (BGR)."""
        if isinstance(box, torch.Tensor):
            box = box.tolist()
        x1, y1, x2, y2 = (int(round(float(v))) for v in box[:4])
        label = printable(label)
        if self.pil:
            self._box_label_pil((x1, y1, x2, y2), label, color[::-1], txt_color[::-1])
            return
        cv2.rectangle(self.im, (x1, y1), (x2, y2), color, thickness=self.lw, lineType=cv2.LINE_AA)
        if not label:
            return
        w, h = cv2.getTextSize(label, 0, fontScale=self.sf, thickness=self.tf)[0]
        outside = y1 - h - 3 >= 0  # tab above the box when it fits, else inside it
        ty2 = y1 - h - 3 if outside else y1 + h + 3
        cv2.rectangle(self.im, (x1, y1), (x1 + w, ty2), color, -1, cv2.LINE_AA)
        ty = y1 - 2 if outside else y1 + h + 2
        cv2.putText(self.im, label, (x1, ty), 0, self.sf, txt_color, thickness=self.tf, lineType=cv2.LINE_AA)

    def _box_label_pil(self, box: Tuple[int, int, int, int], label: str, color: Color, txt_color: Color) -> None:
        self.draw.rectangle(box, width=self.lw, outline=color)
        if not label:
            return
        left, top, right, bottom = self.draw.textbbox((0, 0), label, font=self.font)
        w, h = right - left, bottom - top
        outside = box[1] - h - 3 >= 0
        y = box[1] - h - 3 if outside else box[1]
        self.draw.rectangle((box[0], y, box[0] + w + 2, y + h + 3), fill=color)
        self.draw.text((box[0] + 1, y - top + 1), label, fill=txt_color, font=self.font)

    def text(self, xy: Tuple[int, int], text: str, txt_color: Color = (255, 255, 255)) -> None:
        """Plain text with its top-left corner at xy."""
        text = printable(text)
        if self.pil:
            self.draw.text(xy, text, fill=txt_color[::-1], font=self.font)
        else:
            h = cv2.getTextSize(text, 0, fontScale=self.sf, thickness=self.tf)[0][1]
            cv2.putText(self.im, text, (xy[0], xy[1] + h), 0, self.sf, txt_color, self.tf, cv2.LINE_AA)

    def result(self) -> np.ndarray:
        """The annotated image, BGR uint8 (H, W, 3)."""
        return np.ascontiguousarray(np.asarray(self.im)[..., ::-1]) if self.pil else self.im


def draw_detections(
    im: np.ndarray,
    det,
    names: Dict[int, str],
    line_width: int | None = None,
    hide_labels: bool = False,
    hide_conf: bool = False,
) -> np.ndarray:
    """Detection's annotator: a BGR (H, W, 3) image with det (n, 6) [x1, y1, x2, y2, conf, cls] drawn -> new image."""
    ann = Annotator(im, line_width=line_width, example=str(names))
    for *xyxy, conf, cls in reversed(det.tolist()):
        c = int(cls)
        name = names.get(c, str(c))
        label = None if hide_labels else (name if hide_conf else f"{name} {conf:.2f}")
        ann.box_label(xyxy, label or "", color=colors(c, True))
    return ann.result()


def save_one_box(
    xyxy: Union[torch.Tensor, Sequence[float]],
    im: np.ndarray,
    file: Union[str, Path] | None = None,
    gain: float = 1.02,
    pad: int = 10,
    square: bool = False,
    save: bool = True,
) -> np.ndarray:
    """Crop box xyxy (enlarged by gain and pad pixels, clipped) from BGR image im; saved as file when save."""
    b = xyxy2xywh(torch.as_tensor(xyxy, dtype=torch.float32).view(-1, 4))
    if square:
        b[:, 2:] = b[:, 2:].max(1, keepdim=True)[0]
    b[:, 2:] = b[:, 2:] * gain + pad
    xyxy = clip_boxes(xywh2xyxy(b).long(), im.shape[:2])[0].tolist()
    crop = np.ascontiguousarray(im[xyxy[1] : xyxy[3], xyxy[0] : xyxy[2]])
    if save and file is not None:
        write_image(file, crop)
    return crop
