"""detect.py sources: files, folders, globs, .txt lists, videos, .streams, webcams and their errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from utils.data.sources import LoadImages, LoadStreams, is_stream, load_source
from utils.errors import DataError, UserError


def write_image(path: Path, h: int = 48, w: int = 64, value: int = 0) -> Path:
    im = np.full((h, w, 3), value, np.uint8)
    im[: h // 2, : w // 2] = (0, 0, 255)  # red top-left quadrant (BGR)
    assert cv2.imwrite(str(path), im)
    return path


def write_video(path: Path, n: int = 12, h: int = 48, w: int = 64, fps: float = 10.0) -> Path:
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    for i in range(n):
        vw.write(np.full((h, w, 3), i * 20, np.uint8))
    vw.release()
    return path


@pytest.fixture
def folder(tmp_path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    write_image(d / "b.jpg")
    write_image(d / "a.png", h=100, w=60)
    write_video(d / "clip.mp4", n=5)
    (d / "notes.md").write_text("not an image")
    return d


def test_single_image_letterboxed_rgb(tmp_path):
    p = write_image(tmp_path / "x.png", h=48, w=64)  # png: exact colours
    items = list(load_source(p, img_size=64, stride=32))
    assert len(items) == 1
    path, im, im0, cap, desc = items[0]
    assert path == str(p) and cap is None
    assert im0.shape == (48, 64, 3)
    assert im.shape == (3, 64, 64) and im.dtype == np.uint8  # 48 -> 64: minimal rectangle multiple of 32
    assert im.flags["C_CONTIGUOUS"]
    assert tuple(im[:, 12, 5]) == (255, 0, 0)  # RGB order: the red quadrant (after 8 px of top padding)
    assert tuple(im[:, 1, 5]) == (114, 114, 114)  # letterbox grey
    assert desc == f"image 1/1 {p}: "


def test_folder_images_then_videos_sorted(folder):
    ds = load_source(folder, img_size=64, stride=32)
    assert ds.mode == "image" and ds.bs == 1 and len(ds) == 3
    items = list(ds)
    names = [Path(p).name for p, *_ in items]
    assert names == ["a.png", "b.jpg"] + ["clip.mp4"] * 5
    descs = [d for *_, d in items]
    assert descs[0] == f"image 1/3 {folder / 'a.png'}: "
    assert descs[2] == f"video 3/3 (frame 1/5) {folder / 'clip.mp4'}: "
    assert descs[-1] == f"video 3/3 (frame 5/5) {folder / 'clip.mp4'}: "
    assert items[0][1].shape == (3, 64, 64) and items[0][2].shape == (100, 60, 3)
    assert items[2][3] is not None  # videos hand out their capture


def test_video_stride(tmp_path):
    v = write_video(tmp_path / "v.mp4", n=12)
    ds = load_source(v, img_size=64, vid_stride=3)
    frames = list(ds)
    assert len(frames) == 4
    assert frames[-1][4].endswith(f"(frame 4/4) {v}: ")


def test_glob_and_txt_list(folder, tmp_path):
    got = [Path(p).name for p, *_ in load_source(str(folder / "*.jpg"), img_size=64)]
    assert got == ["b.jpg"]
    lst = tmp_path / "list.txt"
    lst.write_text("src/b.jpg\n\nsrc/a.png\n")  # relative to the list's folder
    got = [Path(p).name for p, *_ in load_source(lst, img_size=64)]
    assert got == ["b.jpg", "a.png"]


def test_list_of_paths(folder):
    ds = load_source([folder / "b.jpg", folder / "a.png"], img_size=64)
    assert isinstance(ds, LoadImages) and len(ds) == 2


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: d / "missing.jpg", "not found"),
        (lambda d: d, "no images or videos"),  # empty folder
        (lambda d: str(d / "*.png"), "matched no files"),
    ],
)
def test_errors(tmp_path, make, message):
    with pytest.raises(UserError, match=message):
        load_source(make(tmp_path))


def test_undecodable_video_and_image(tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00not a video" * 10)
    with pytest.raises(UserError, match="cannot decode video"):
        load_source(tmp_path / "bad.mp4")
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError, match="cannot read image"):  # an unusable file: exit 1
        list(load_source(tmp_path / "bad.jpg"))


def test_corrupt_image_in_folder_is_skipped(folder):
    (folder / "c.jpg").write_bytes(b"garbage")
    names = [Path(p).name for p, *_ in load_source(folder, img_size=64)]
    assert "c.jpg" not in names and "a.png" in names


def test_webcam_absent_is_one_line_error():
    assert is_stream("0") and is_stream("rtsp://host/x") and not is_stream("a.jpg")
    with pytest.raises(UserError, match="webcam 7 not found / cannot be opened"):
        load_source("7")


def test_streams_file_reads_local_video_in_thread(tmp_path):
    v1 = write_video(tmp_path / "s1.mp4", n=6)
    v2 = write_video(tmp_path / "s2.mp4", n=6, h=64, w=32)
    lst = tmp_path / "list.streams"
    lst.write_text(f"{v1}\n{v2}\n")
    ds = load_source(lst, img_size=64)
    assert isinstance(ds, LoadStreams) and ds.mode == "stream" and ds.bs == 2
    batches = list(ds)
    assert len(batches) >= 1  # a consumer faster than the reader threads sees the latest frame again (as YOLOv5)
    paths, im, im0, cap, desc = batches[0]
    assert paths == [str(v1), str(v2)] and cap is None and desc == ""
    assert im.shape == (2, 3, 64, 64)  # shapes differ -> both padded to the full square
    assert im0[0].shape == (48, 64, 3) and im0[1].shape == (64, 32, 3)
    assert ds.fps == [10.0, 10.0]
