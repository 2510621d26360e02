"""detect.py sources: image files, folders, globs, .txt lists, videos, webcams and streams, letterboxed for a model."""

from __future__ import annotations

import glob
import logging
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from utils.data.image_io import decode, opencv_path_ok
from utils.data.labels import IMG_FORMATS
from utils.errors import DataError, UserError

LOGGER = logging.getLogger(__name__)

VID_FORMATS = ("asf", "avi", "gif", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "ts", "webm", "wmv")
STREAM_PREFIXES = ("rtsp://", "rtmp://", "http://", "https://")

ImgSize = Union[int, Sequence[int]]
Item = Tuple[Union[str, List[str]], np.ndarray, Union[np.ndarray, List[np.ndarray]], Optional[cv2.VideoCapture], str]


@contextmanager
def _quiet_opencv() -> Iterator[None]:
    """Silence OpenCV's own WARN lines (e.g. 'can't open camera by index') while opening captures."""
    logging_mod = getattr(getattr(cv2, "utils", None), "logging", None)
    if logging_mod is None:
        yield
        return
    old = logging_mod.getLogLevel()
    logging_mod.setLogLevel(logging_mod.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        logging_mod.setLogLevel(old)


def read_image(path: Union[str, Path]) -> np.ndarray | None:
    """Read an image file as BGR uint8 (H, W, 3); None when it cannot be decoded. Works with non-ASCII paths.

    The header's size is checked before decoding (utils/data/image_io.py): ImageTooLarge above MAX_PIXELS.
    """
    return decode(path, strict=True)


def prepare(im0: np.ndarray, img_size: ImgSize, stride: int, auto: bool) -> np.ndarray:
    """BGR (H0, W0, 3) -> letterboxed RGB (3, H, W) uint8, contiguous."""
    from utils.data.augment import letterbox  # imported late: detect-only dependency

    im = letterbox(im0, img_size, stride=stride, auto=auto)[0]
    return np.ascontiguousarray(im.transpose((2, 0, 1))[::-1])  # HWC BGR -> CHW RGB


def _suffix(p: Union[str, Path]) -> str:
    return str(p).rsplit(".", 1)[-1].lower() if "." in Path(str(p)).name else ""


def _expand(entry: str, base: Path | None = None) -> List[str]:
    """One user entry (file, folder, glob) -> sorted file paths. base resolves relative entries of a .txt list."""
    p = os.path.expanduser(entry)
    if base is not None and not os.path.isabs(p) and not os.path.exists(p):
        p = str(base / p)
    if any(c in p for c in "*?["):
        files = sorted(glob.glob(p, recursive=True))
        if not files:
            raise UserError(f"--source glob matched no files: {entry}")
        return [f for f in files if os.path.isfile(f)]
    if os.path.isdir(p):
        return sorted(str(Path(p) / f) for f in os.listdir(p) if os.path.isfile(os.path.join(p, f)))
    if os.path.isfile(p):
        return [str(Path(p).resolve())] if base is not None else [p]
    raise UserError(f"--source not found: {entry}")


def _collect(source: Union[str, Path, Sequence[Union[str, Path]]]) -> List[str]:
    """Flatten a source (file, folder, glob, .txt list, or a list of these) into file paths."""
    if isinstance(source, (list, tuple)):
        return [f for s in source for f in _collect(s)]
    s = str(source)
    if s.lower().endswith(".txt") and os.path.isfile(s):
        base = Path(s).resolve().parent
        entries = [line.strip() for line in Path(s).read_text().splitlines() if line.strip()]
        return [f for e in entries for f in _expand(e, base)]
    return _expand(s)


class LoadImages:
    """Iterate images and videos: yields (path, im (3,H,W) RGB letterboxed, im0 BGR, cap or None, description)."""

    def __init__(self, source, img_size: ImgSize = 640, stride: int = 32, auto: bool = True, vid_stride: int = 1):
        files = _collect(source)
        images = [f for f in files if _suffix(f) in IMG_FORMATS]
        videos = [f for f in files if _suffix(f) in VID_FORMATS]
        self.files = images + videos
        self.nf = len(self.files)
        self.video_flag = [False] * len(images) + [True] * len(videos)
        self.img_size, self.stride, self.auto = img_size, stride, auto
        self.vid_stride = max(int(vid_stride), 1)
        self.mode = "image"
        self.bs = 1
        self.cap: cv2.VideoCapture | None = None
        self.frame = self.frames = 0
        self.count = 0
        if self.nf == 0:
            raise UserError(
                f"--source has no images or videos: {source} "
                f"(images: {', '.join(IMG_FORMATS)}; videos: {', '.join(VID_FORMATS)})"
            )
        for v in videos:  # fail early, before any output, on a video OpenCV cannot decode
            self._check_video(v)

    @staticmethod
    def _check_video(path: str) -> None:
        if not opencv_path_ok(path):
            raise DataError(f"cannot open video {path!r}: OpenCV cannot open a file name that is not UTF-8; rename it")
        with _quiet_opencv():
            cap = cv2.VideoCapture(path)
            ok = cap.isOpened() and cap.read()[0]
            cap.release()
        if not ok:
            raise UserError(f"cannot decode video: {path}")

    def __iter__(self) -> LoadImages:
        self.count = 0
        return self

    def __len__(self) -> int:
        return self.nf

    def _new_video(self, path: str) -> None:
        self.frame = 0
        with _quiet_opencv():
            self.cap = cv2.VideoCapture(path)
        self.frames = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT) / self.vid_stride)

    def _next_frame(self, path: str) -> np.ndarray | None:
        """The next frame (after skipping vid_stride - 1) of the open video; None at its end."""
        for _ in range(self.vid_stride - 1):
            self.cap.grab()
        ok, im0 = self.cap.read()
        if not ok:
            self.cap.release()
            self.cap = None
            return None
        self.frame += 1
        return im0

    def __next__(self) -> Item:
        while self.count < self.nf:
            path = self.files[self.count]
            if self.video_flag[self.count]:
                self.mode = "video"
                if self.cap is None:
                    self._new_video(path)
                im0 = self._next_frame(path)
                if im0 is None:
                    self.count += 1
                    continue
                self.frames = max(self.frames, self.frame)  # some containers under-report their frame count
                desc = f"video {self.count + 1}/{self.nf} (frame {self.frame}/{self.frames}) {path}: "
                return path, prepare(im0, self.img_size, self.stride, self.auto), im0, self.cap, desc
            self.mode = "image"
            self.count += 1
            try:
                im0 = read_image(path)
            except DataError as e:  # too many pixels: refused before decoding
                if self.nf == 1:
                    raise
                LOGGER.warning("WARNING: skipping %s: %s", path, e)
                continue
            if im0 is None:
                if self.nf == 1:
                    raise DataError(f"cannot read image: {path}")
                LOGGER.warning("WARNING: skipping %s: cannot read image", path)
                continue
            desc = f"image {self.count}/{self.nf} {path}: "
            return path, prepare(im0, self.img_size, self.stride, self.auto), im0, None, desc
        raise StopIteration


class LoadStreams:
    """Webcams and stream URLs read in background threads; yields (sources, im (B,3,H,W), im0 list, None, '')."""

    def __init__(
        self,
        sources: Sequence[str],
        img_size: ImgSize = 640,
        stride: int = 32,
        auto: bool = True,
        vid_stride: int = 1,
        timeout: float = 30.0,
    ):
        self.sources = [str(s) for s in sources]
        self.img_size, self.stride, self.vid_stride, self.timeout = img_size, stride, max(int(vid_stride), 1), timeout
        self.mode = "stream"
        self.bs = len(self.sources)
        self.count = 0
        self.caps: List[cv2.VideoCapture] = []
        self.imgs: List[np.ndarray] = []
        self.fresh = [False] * self.bs
        self.fps: List[float] = []
        self.frames: List[float] = []
        self.cond = threading.Condition()
        self.threads: List[threading.Thread] = []
        for i, s in enumerate(self.sources):
            cap = _open_capture(s)
            ok, im = cap.read()
            if not ok:
                cap.release()
                raise UserError(f"stream {s} opened but returned no frame")
            fps = cap.get(cv2.CAP_PROP_FPS)
            n = cap.get(cv2.CAP_PROP_FRAME_COUNT)
            self.fps.append(fps if math.isfinite(fps) and fps > 0 else 30.0)
            self.frames.append(n if math.isfinite(n) and n > 0 else float("inf"))
            self.caps.append(cap)
            self.imgs.append(im)
            self.fresh[i] = True
            LOGGER.info(
                "%d/%d: %s... Success (%s frames %dx%d at %.2f FPS)",
                i + 1,
                self.bs,
                s,
                self.frames[-1],
                im.shape[1],
                im.shape[0],
                self.fps[-1],
            )
        shapes = {prepare(x, img_size, stride, auto).shape for x in self.imgs}
        self.rect = len(shapes) == 1  # same letterbox shape for all streams -> minimal rectangles are safe
        self.auto = auto and self.rect
        if not self.rect:
            LOGGER.warning("WARNING: stream shapes differ; letterboxing all to the full square --imgsz")
        for i in range(self.bs):
            t = threading.Thread(target=self._update, args=(i,), daemon=True)
            t.start()
            self.threads.append(t)

    def _update(self, i: int) -> None:
        """Thread body: keep the latest frame of stream i (every vid_stride-th) until the stream ends."""
        cap, n = self.caps[i], 0
        while cap.isOpened():
            if not cap.grab():
                break
            n += 1
            if n % self.vid_stride:
                continue
            ok, im = cap.retrieve()
            if not ok:
                LOGGER.warning("WARNING: stream %s unresponsive, keeping its last frame", self.sources[i])
                continue
            with self.cond:
                self.imgs[i], self.fresh[i] = im, True
                self.cond.notify_all()
        cap.release()
        with self.cond:
            self.cond.notify_all()

    def __iter__(self) -> LoadStreams:
        self.count = -1
        return self

    def __len__(self) -> int:
        return 1 << 30  # endless unless every stream ends

    def __next__(self) -> Item:
        deadline = time.time() + self.timeout
        with self.cond:
            while not any(self.fresh):
                if not any(t.is_alive() for t in self.threads):
                    raise StopIteration
                if time.time() > deadline:
                    LOGGER.warning("WARNING: no new frame for %.0fs, stopping", self.timeout)
                    raise StopIteration
                self.cond.wait(0.1)
            im0 = [x.copy() for x in self.imgs]
            self.fresh = [False] * self.bs
        self.count += 1
        im = np.stack([prepare(x, self.img_size, self.stride, self.auto) for x in im0])  # (B, 3, H, W)
        return list(self.sources), im, im0, None, ""


def _open_capture(source: str) -> cv2.VideoCapture:
    """cv2.VideoCapture for a webcam index ('0') or a URL; UserError when it cannot be opened."""
    if source.isnumeric():
        index = int(source)
        if sys.platform.startswith("linux") and not os.path.exists(f"/dev/video{index}"):
            raise UserError(f"webcam {index} not found / cannot be opened (no /dev/video{index})")
        with _quiet_opencv():
            cap = cv2.VideoCapture(index)
        if not cap.isOpened():
            raise UserError(f"webcam {index} not found / cannot be opened")
        return cap
    with _quiet_opencv():
        cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        raise UserError(f"cannot open stream: {source}")
    return cap


def is_stream(source: Union[str, Path]) -> bool:
    """True for a webcam index, a stream URL or a .streams file of URLs."""
    s = str(source)
    return s.isnumeric() or s.lower().startswith(STREAM_PREFIXES) or s.endswith(".streams")


def load_source(source, img_size: ImgSize = 640, stride: int = 32, auto: bool = True, vid_stride: int = 1):
    """The right loader for a detect.py --source: LoadStreams for webcams/URLs/.streams, else LoadImages.

    Iterating gives (path, im, im0, cap, description); im is (3,H,W) RGB uint8 for images and videos, and
    (B,3,H,W) for streams (then path and im0 are lists). Raises UserError for sources that cannot be opened.
    """
    if isinstance(source, (list, tuple)):
        return LoadImages(source, img_size, stride, auto, vid_stride)
    s = str(source)
    if s.endswith(".streams"):
        if not os.path.isfile(s):
            raise UserError(f"--source not found: {s}")
        urls = [line.strip() for line in Path(s).read_text().splitlines() if line.strip()]
        if not urls:
            raise UserError(f"--source {s} lists no streams")
        return LoadStreams(urls, img_size, stride, auto, vid_stride)
    if is_stream(s):
        return LoadStreams([s], img_size, stride, auto, vid_stride)
    return LoadImages(s, img_size, stride, auto, vid_stride)
