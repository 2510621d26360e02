"""What detect.py writes: annotated images and videos, per-image label txt files, predictions.csv and crops."""

from __future__ import annotations

import csv
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import torch

from utils.boxes import xyxy2xywh
from utils.data.image_io import opencv_path_ok
from utils.deploy.annotate import draw_detections, save_one_box
from utils.paths import increment_path
from utils.safe_write import write_image, write_text, writing

LOGGER = logging.getLogger(__name__)


@dataclass
class SaveOptions:
    """Output switches, as detect.py flags."""

    save_img: bool = True
    save_txt: bool = False
    save_csv: bool = False
    save_conf: bool = False
    save_format: int = 0  # --save-txt rows: 0 = YOLO 'cls xc yc w h', 1 = Pascal-VOC corners 'cls x1 y1 x2 y2'
    save_crop: bool = False
    view_img: bool = False
    line_thickness: int = 3
    hide_labels: bool = False
    hide_conf: bool = False


def display_available() -> bool:
    """True when OpenCV can open a window (a GUI build and, on Linux, a display)."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    try:
        cv2.namedWindow("yolov5-fla-probe", cv2.WINDOW_NORMAL)
        cv2.destroyWindow("yolov5-fla-probe")
        return True
    except cv2.error:
        return False


def label_rows(det: torch.Tensor, shape: tuple, with_conf: bool, corners: bool = False) -> List[str]:
    """(n, 6) xyxy/conf/cls boxes in pixels of an image of shape (h, w) -> 'cls xc yc w h [conf]' normalised rows.

    corners=True (--save-format 1) writes 'cls x1 y1 x2 y2 [conf]', normalised the same way (as YOLOv5 does).
    """
    gn = torch.tensor(shape[:2])[[1, 0, 1, 0]].float()  # w h w h
    rows = []
    for *xyxy, conf, cls in reversed(det.tolist()):  # ascending confidence, as YOLOv5 writes them
        box = torch.tensor(xyxy).view(1, 4)
        coords = ((box if corners else xyxy2xywh(box)) / gn).view(-1).tolist()
        vals = (int(cls), *coords, conf) if with_conf else (int(cls), *coords)
        rows.append(("%g " * len(vals)).rstrip() % vals)
    return rows


class PredictionSaver:
    """Collects the results of each image/frame and writes them under save_dir as YOLOv5's detect.py does."""

    def __init__(self, save_dir: Path, names: Dict[int, str], opts: SaveOptions):
        self.save_dir, self.names, self.opts = Path(save_dir), names, opts
        self.vid_paths: Dict[int, Path] = {}
        self.vid_writers: Dict[int, cv2.VideoWriter] = {}
        self.csv_file = None
        self.csv_writer = None
        self.n_txt = 0
        if opts.save_txt:
            (self.save_dir / "labels").mkdir(parents=True, exist_ok=True)
        if opts.view_img and not display_available():
            LOGGER.warning("WARNING: --view-img needs a display (none found); images are not shown")
            opts.view_img = False

    def add(
        self,
        p: Path,
        im0: np.ndarray,
        det: torch.Tensor,
        mode: str,
        frame: int = 0,
        fps: float = 30.0,
        stream_index: int = 0,
    ) -> np.ndarray:
        """Record one image's detections (n, 6) in original-image pixels; returns the annotated BGR image.

        mode is the dataset's 'image' | 'video' | 'stream'; frame numbers video label files; fps is for videos.
        """
        o = self.opts
        stem = p.stem if mode == "image" else f"{p.stem}_{frame}"
        if o.save_txt:
            rows = label_rows(det, im0.shape, o.save_conf, corners=o.save_format == 1)
            write_text(self.save_dir / "labels" / f"{stem}.txt", "".join(r + "\n" for r in rows))
            self.n_txt += 1
        if o.save_csv:
            self._csv_rows(p.name, det)
        if o.save_crop:
            self._crops(p.stem, im0, det)
        annotated = self._draw(im0, det) if (o.save_img or o.view_img) else im0
        if o.view_img:
            cv2.imshow(str(p), annotated)
            cv2.waitKey(1)
        if o.save_img:
            if mode == "image":
                write_image(self.save_dir / p.name, annotated)
            else:
                self._video_frame(stream_index, self.save_dir / p.name, annotated, fps)
        return annotated

    def _draw(self, im0: np.ndarray, det: torch.Tensor) -> np.ndarray:
        o = self.opts
        return draw_detections(im0, det, self.names, o.line_thickness, o.hide_labels, o.hide_conf)

    def _crops(self, stem: str, im0: np.ndarray, det: torch.Tensor) -> None:
        for *xyxy, _conf, cls in det.tolist():
            folder = self.save_dir / "crops" / self.names.get(int(cls), str(int(cls)))
            with writing(folder):
                folder.mkdir(parents=True, exist_ok=True)
            save_one_box(xyxy, im0, increment_path(folder / f"{stem}.jpg"))

    def _csv_rows(self, image_name: str, det: torch.Tensor) -> None:
        with writing(self.save_dir / "predictions.csv"):
            self._append_csv(image_name, det)

    def _append_csv(self, image_name: str, det: torch.Tensor) -> None:
        if self.csv_writer is None:
            self.csv_file = open(self.save_dir / "predictions.csv", "w", newline="")
            self.csv_writer = csv.writer(self.csv_file)
            self.csv_writer.writerow(["Image Name", "Prediction", "Confidence", "x1", "y1", "x2", "y2"])
        for *xyxy, conf, cls in reversed(det.tolist()):
            name = self.names.get(int(cls), str(int(cls)))
            self.csv_writer.writerow([image_name, name, f"{conf:.2f}", *(f"{v:g}" for v in xyxy)])

    def _video_frame(self, i: int, path: Path, im: np.ndarray, fps: float) -> None:
        """Append a frame to the video for stream/video i; a new writer when the source file changes."""
        if self.vid_paths.get(i) != path:
            self.vid_paths[i] = path
            if i in self.vid_writers:
                self.vid_writers.pop(i).release()
            fps = fps if fps and fps > 0 else 30.0
            h, w = im.shape[:2]
            out = path.with_suffix(".mp4")
            if not opencv_path_ok(out):  # OpenCV crashes on a non-UTF-8 name: write under a readable one
                out = out.with_name(os.fsencode(out.name).decode("utf-8", "replace"))
            self.vid_writers[i] = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        self.vid_writers[i].write(im)

    def close(self) -> None:
        """Finish videos and the csv file."""
        for w in self.vid_writers.values():
            w.release()
        self.vid_writers.clear()
        if self.csv_file is not None:
            f, self.csv_file = self.csv_file, None
            with writing(self.save_dir / "predictions.csv"):
                f.close()
        if self.opts.view_img:
            cv2.destroyAllWindows()
