"""Faults and bad data: a full disk or an unwritable folder is one line naming the path (and no half-written file),
images the loader cannot decode are skipped at the scan, caches stay out of the dataset, foreign ONNX files are
refused at load (issue 20). Faults are injected in-process: /dev/full for a full disk (tests run as root, where a
read-only chmod does not block writes), monkeypatched calls for a read-only folder."""

from __future__ import annotations

import builtins
import errno
import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

import detect
import export
import val
from tests.hardening_helpers import LAST_OUT, cli, float_tiff, make_dataset, one_error, save_tiny
from utils.errors import CheckpointError, DataError, UserError, run_cli

FULL = "/dev/full"  # every write fails with ENOSPC
needs_dev_full = pytest.mark.skipif(not os.path.exists(FULL), reason="no /dev/full on this system")


def _full_disk_for(module, monkeypatch, match: str) -> None:
    """Make module's open() write to /dev/full for files whose name contains match."""

    def fake_open(file, mode="r", *args, **kwargs):
        if "w" in str(mode) and match in str(file):
            return builtins.open(FULL, mode, *args, **kwargs)
        return builtins.open(file, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", fake_open, raising=False)


def _tree(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "d"
            for p in sorted(root.rglob("*"))}  # fmt: skip


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    t = tmp_path_factory.mktemp("faults")
    return {"t": t, "data": make_dataset(t / "ds"), "w": save_tiny(t / "w.pt")}


# ---------------------------------------------------------------- full disk, read-only folders


class _FillingDisk:
    """A raw file on a disk that fills up: 2000 bytes go through (the last write short), then ENOSPC."""

    def __init__(self, f, room: int = 2000):
        self.f, self.room = f, room

    def write(self, b) -> int:
        b = bytes(b)
        if not self.room:
            raise OSError(errno.ENOSPC, "No space left on device")
        k = min(len(b), self.room)
        self.f.write(b[:k])
        self.room -= k
        return k

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


def test_checkpoint_save_on_a_full_disk_says_so(tmp_path, monkeypatch):
    """Before: 'RuntimeError: [enforce fail at inline_container.cc:672] . unexpected pos' from torch's zip writer."""
    import torch

    import utils.checkpoint as ck

    path = ck.save_checkpoint({"model": {"yaml": {}, "state_dict": {}}, "epoch": 1}, tmp_path / "last.pt")
    before = path.read_bytes()

    def filling(file, mode="r", *a, **k):
        f = builtins.open(file, mode, *a, **k)
        return _FillingDisk(f) if "w" in mode else f

    monkeypatch.setattr(ck, "open", filling, raising=False)
    with pytest.raises(UserError, match=r"cannot save checkpoint .*last.pt: No space left on device$"):
        ck.save_checkpoint({"model": {"yaml": {}, "state_dict": {"w": torch.zeros(10**5)}}, "epoch": 2}, path)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]


@needs_dev_full
def test_detect_on_a_full_disk_is_one_line_and_leaves_no_partial_image(world, tmp_path, monkeypatch, capsys):
    import utils.safe_write as sw

    _full_disk_for(sw, monkeypatch, ".part")
    src = world["data"].parent / "images" / "val"
    code, err = cli(detect, ["--weights", world["w"], "--source", src, "--project", tmp_path, "--imgsz", "64"], capsys)
    line = one_error(err)
    assert code == 1 and "No space left on device" in line and str(tmp_path / "exp") in line
    assert not [p for p in (tmp_path / "exp").iterdir() if p.is_file()]  # no truncated image, no temp file


@needs_dev_full
def test_detect_txt_and_csv_on_a_full_disk(world, tmp_path, monkeypatch, capsys):
    import utils.deploy.predict_io as pio
    import utils.safe_write as sw

    src = world["data"].parent / "images" / "val"
    args = ["--weights", world["w"], "--source", src, "--project", tmp_path, "--imgsz", "64", "--nosave"]
    _full_disk_for(sw, monkeypatch, ".txt")
    code, err = cli(detect, [*args, "--save-txt", "--conf-thres", "0", "--name", "txt"], capsys)
    assert code == 1 and "No space left on device" in one_error(err) and "labels" in one_error(err)
    _full_disk_for(pio, monkeypatch, "predictions.csv")
    code, err = cli(detect, [*args, "--save-csv", "--conf-thres", "0", "--name", "csv"], capsys)
    assert code == 1 and "predictions.csv: No space left on device" in one_error(err)


def test_val_plots_on_a_full_disk_name_the_file(world, tmp_path, monkeypatch, capsys):
    import matplotlib.figure

    def full(self, fname, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device", str(fname))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full)
    code, err = cli(val, ["--weights", world["w"], "--data", world["data"], "--imgsz", "64", "--project", tmp_path,
                          "--workers", "0", "--device", "cpu"], capsys)  # fmt: skip
    line = one_error(err)
    assert code == 1 and "No space left on device" in line and ".png" in line


def test_export_into_a_read_only_folder_is_one_line(world, tmp_path, monkeypatch, capsys):
    import tempfile

    def read_only(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system", str(k.get("dir", "")))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)
    code, err = cli(export, ["--weights", world["w"], "--include", "torchscript", "--imgsz", "64"], capsys)
    assert code == 1 and one_error(err) == f"error: cannot write {world['w'].parent}: Read-only file system"


@needs_dev_full
def test_export_on_a_full_disk_leaves_no_partial_file(world, tmp_path, monkeypatch, capsys):
    import utils.safe_write as sw

    w = save_tiny(tmp_path / "x.pt")
    _full_disk_for(sw, monkeypatch, ".part")
    code, err = cli(export, ["--weights", w, "--include", "onnx", "--imgsz", "64"], capsys)
    assert code == 1 and f"cannot write {tmp_path / 'x.onnx'}: No space left on device" in one_error(err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.pt"]


def test_any_stray_os_error_is_one_line(capsys):
    @run_cli
    def main():
        raise OSError(errno.EIO, "Input/output error", "/some/file")

    with pytest.raises(SystemExit) as e:
        main()
    assert (
        e.value.code == 1 and capsys.readouterr().err == "error: cannot write or read /some/file: Input/output error\n"
    )


# ---------------------------------------------------------------- bad data: skipped, never fatal


def test_float_tiff_is_skipped_at_the_scan_and_training_goes_on(tmp_path):
    """PIL reads a 32-bit float TIFF, OpenCV does not: the scan used to accept it and the loader then stopped."""
    from utils.data.dataset import LoadImagesAndLabels
    from utils.data.options import DataOptions

    data = make_dataset(tmp_path / "ds")
    tif = float_tiff(data.parent / "images" / "train" / "float.tif")
    assert cv2.imread(str(tif)) is None
    (data.parent / "labels" / "train" / "float.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    ds = LoadImagesAndLabels(str(data.parent / "images" / "train"), DataOptions(img_size=64, nc=2))
    assert ds.n == 4 and any(
        "float.tif: image skipped: unreadable image (OpenCV cannot decode" in p for p in ds.problems
    )
    assert all(ds[i][0].shape[0] == 3 for i in range(ds.n))


def test_non_utf8_file_names_are_hashed_and_cached(tmp_path):
    from utils.data.cache import cache_path_for
    from utils.data.dataset import LoadImagesAndLabels
    from utils.data.options import DataOptions

    data = make_dataset(tmp_path / "ds")
    images, labels = data.parent / "images" / "train", data.parent / "labels" / "train"
    name = os.fsdecode(b"bad\xff\xfename")
    (images / "0.png").rename(images / f"{name}.png")
    (labels / "0.txt").rename(labels / f"{name}.txt")
    ds = LoadImagesAndLabels(str(images), DataOptions(img_size=64, nc=2))
    assert ds.n == 4 and any(name in f for f in ds.im_files)
    assert cache_path_for(images, [str(labels / "1.txt")])[0].is_file()
    assert LoadImagesAndLabels(str(images), DataOptions(img_size=64, nc=2)).n == 4  # served from the cache


def test_classify_folder_bomb_is_skipped_and_disk_cache_stays_out(tmp_path):
    """Red team 2026-12-06: an image bomb in a class folder raised PIL's DecompressionBombError at the scan, and
    --cache disk wrote a .npy beside every image."""
    from tests.hardening_helpers import bomb_jpeg
    from utils.classify.dataset import ClassificationDataset

    root = tmp_path / "cls" / "train"
    for c in "ab":
        (root / c).mkdir(parents=True)
        cv2.imwrite(str(root / c / "0.png"), np.full((20, 24, 3), 90 if c == "a" else 200, np.uint8))
    bomb_jpeg(root / "a" / "bomb.jpg")
    before = _tree(root)
    ds = ClassificationDataset(root, imgsz=16, cache="disk")
    assert [Path(f).name for f, _ in ds.samples] == ["0.png", "0.png"]
    assert ds[0][0].shape == (3, 16, 16) and ds[1][1] == 1
    assert _tree(root) == before
    assert len(list((Path(os.environ["YOLOV5FLA_CACHE"]) / "images-cls").glob("0-*.npy"))) == 2


def test_int8_calibration_skips_a_bomb(tmp_path):
    """Red team 2026-12-06: export --int8 decoded a 30000 x 30000 JPEG header of its --data (minutes, GBs)."""
    from tests.hardening_helpers import bomb_jpeg
    from utils.deploy.calibration import calibration_images

    data = make_dataset(tmp_path / "ds")  # 8 train images (read first), 4 val
    bomb_jpeg(data.parent / "images" / "train" / "bomb.jpg")  # the 9th train file: read, refused, skipped
    assert calibration_images(str(data), (32, 32), n=9).shape == (8, 3, 32, 32)


def test_non_detection_outputs_and_bad_thresholds_are_user_errors():
    """A classifier's (B, nc) output reached NMS as an IndexError; bad thresholds were a bare ValueError."""
    import torch

    from utils.errors import ArgumentError
    from utils.nms import non_max_suppression

    with pytest.raises(UserError, match="is not detections"):
        non_max_suppression(torch.rand(2, 3))
    with pytest.raises(ArgumentError, match="conf_thres"):  # also a ValueError, for Python callers
        non_max_suppression(torch.rand(1, 4, 7), conf_thres=5.0)


def test_corrupt_exported_files_are_exit_1(tmp_path):
    """A text file named .tflite was a usage error (2); a text file named .onnx broke the hub with protobuf's error."""
    from utils.classify.hub import is_classifier_file
    from utils.deploy.backends import load_predictor

    for suffix, module in ((".tflite", "ai_edge_litert.interpreter"), (".onnx", "onnx")):
        f = tmp_path / f"text{suffix}"
        f.write_text("not a model\n")
        if suffix == ".tflite":
            pytest.importorskip(module)
            with pytest.raises(CheckpointError, match="cannot load TFLite model"):
                load_predictor(str(f))
        else:
            pytest.importorskip(module)
            with pytest.raises(CheckpointError, match="cannot load ONNX model"):
                is_classifier_file(f)


def test_non_utf8_names_never_reach_opencv(tmp_path):
    """Red team 2026-12-06: segment/val.py on a dataset with a non-UTF-8 image name died of a segmentation fault
    (cv2.imread, then cv2.putText of the name in the val mosaic): OpenCV 5.1 crashes on lone surrogates."""
    from utils.data.image_io import decode, opencv_path_ok
    from utils.data.sources import LoadImages
    from utils.deploy.annotate import Annotator

    name = os.fsdecode(b"bad\xff\xfename")
    ok, png = cv2.imencode(".png", np.full((8, 8, 3), 7, np.uint8))
    (tmp_path / f"{name}.png").write_bytes(png.tobytes())
    (tmp_path / f"{name}.mp4").write_bytes(b"")
    assert not opencv_path_ok(tmp_path / f"{name}.png") and opencv_path_ok(tmp_path / "plain.png")
    assert decode(tmp_path / f"{name}.png").shape == (8, 8, 3)  # the loader's (non-strict) read
    ann = Annotator(np.zeros((32, 64, 3), np.uint8))
    ann.text((2, 2), name)
    ann.box_label((1, 1, 20, 20), name)
    with pytest.raises(DataError, match="not UTF-8"):
        LoadImages(str(tmp_path / f"{name}.mp4"), img_size=32)


def test_opencv_file_calls_go_through_the_guarded_helpers():
    """detect.py --visualize / --heatmap on a non-UTF-8 image name also died in cv2.imwrite: image files are read by
    utils/data/image_io.decode and written by utils/safe_write.write_image only (synthetic.py and device_dry.py
    write their own ASCII names)."""
    root = Path(__file__).resolve().parents[1]
    allowed = {"utils/data/image_io.py", "utils/data/synthetic.py", "benchmarks/device_dry.py"}
    for f in root.glob("**/*.py"):
        rel = f.relative_to(root).as_posix()
        if rel.startswith(("tests/", ".")) or rel in allowed:
            continue
        text = f.read_text(errors="replace")
        assert "cv2.imwrite(" not in text and "cv2.imread(" not in text, rel


def test_label_caches_never_go_into_the_dataset(tmp_path):
    """The dataset folders are writable here: the cache used to land in labels/ (or beside a .txt list)."""
    from utils.data.dataset import LoadImagesAndLabels
    from utils.data.options import DataOptions

    data = make_dataset(tmp_path / "ds")
    root = data.parent
    (root / "train.txt").write_text("./images/train/0.png\n./images/train/1.png\n")
    before = _tree(root)
    LoadImagesAndLabels(str(root / "images" / "train"), DataOptions(img_size=64, nc=2))
    LoadImagesAndLabels(str(root / "train.txt"), DataOptions(img_size=64, nc=2, cache_images="disk"))
    assert _tree(root) == before
    assert list((Path(os.environ["YOLOV5FLA_CACHE"]) / "labels").glob("*.cache.json"))


def test_full_problem_list_goes_to_the_run_folder(world, tmp_path, capsys):
    """35 duplicate rows used to hide the NaN and inf rows behind '... and N more (see .problems)'."""
    data = make_dataset(tmp_path / "ds")
    lab = data.parent / "labels" / "val" / "0.txt"
    row = lab.read_text().strip()
    lab.write_text("\n".join([row] * 36 + ["0 nan 0.5 0.1 0.1", "1 0.5 inf 0.1 0.1"]) + "\n")
    code, err = cli(val, ["--weights", world["w"], "--data", data, "--imgsz", "64", "--project", tmp_path,
                          "--workers", "0", "--device", "cpu", "--noplots"], capsys)  # fmt: skip
    assert code == 0
    listing = tmp_path / "exp" / "val_problems.txt"
    text = listing.read_text()
    assert text.count("duplicate row") == 35 and text.count("non-finite value") == 2
    log = "\n".join(LAST_OUT + err)
    assert f"all 37 are listed in {listing}" in log and "2 non-finite value" in log


# ---------------------------------------------------------------- exported files that are not detectors


def _onnx_file(path: Path, out_shape: list, out_type: int | None = None, in_shape: list | None = None) -> Path:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper

    in_shape = in_shape or [1, 3, 64, 64]
    n = int(np.prod(in_shape))
    m = int(np.prod(out_shape))
    out_type = out_type if out_type is not None else TensorProto.FLOAT
    nodes = [helper.make_node("Reshape", ["images", "flat_shape"], ["flat"]),
             helper.make_node("Slice", ["flat", "zero", "m"], ["part"]),
             helper.make_node("Reshape", ["part", "out_shape"], ["y"]),
             helper.make_node("Cast", ["y"], ["output0"], to=out_type)]  # fmt: skip
    inits = [helper.make_tensor("flat_shape", TensorProto.INT64, [1], [n]),
             helper.make_tensor("zero", TensorProto.INT64, [1], [0]),
             helper.make_tensor("m", TensorProto.INT64, [1], [min(m, n)]),
             helper.make_tensor("out_shape", TensorProto.INT64, [len(out_shape)], out_shape)]  # fmt: skip
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("images", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("output0", out_type, out_shape)], inits)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    entry = model.metadata_props.add()
    entry.key, entry.value = "names", '["a", "b"]'
    onnx.save(model, str(path))
    return path


ONNX_CASES = [
    ([1, 3, 64, 64, 1], None, None, "rank 5"),
    ([1, 100], None, None, "rank 2"),
    ([1, 100, 4], None, None, "4 columns"),
    ([1, 100, 9], None, None, "4 columns"),  # 5 + 2 names = 7 expected
    ([1, 100, 7], 7, None, "not float"),  # int64
    ([1, 100, 7], None, [1, 64, 64], "input is"),
]


@pytest.mark.parametrize("out_shape,out_type,in_shape,match", ONNX_CASES, ids=[c[3] for c in ONNX_CASES])
def test_foreign_onnx_files_are_refused_at_load(tmp_path, out_shape, out_type, in_shape, match, capsys):
    from utils.deploy.backends import load_predictor

    f = _onnx_file(tmp_path / "m.onnx", out_shape, out_type, in_shape)
    match = {"4 columns": "columns", "not float": "not float", "input is": "its input is"}.get(match, match)
    with pytest.raises(CheckpointError, match=match):
        load_predictor(f)
    code, err = cli(detect, ["--weights", f, "--source", tmp_path, "--project", tmp_path], capsys)
    assert code == 1 and "is not a YOLOv5 detection model" in one_error(err)


def test_a_valid_onnx_shape_still_loads(tmp_path):
    from utils.deploy.backends import load_predictor

    p = load_predictor(_onnx_file(tmp_path / "ok.onnx", [1, 100, 7]))
    assert p.stride == 32 and len(p.names) == 2
