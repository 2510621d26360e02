"""OpenVINO export (YOLOv5's *_openvino_model/ layout) and inference through DetectMultiBackend, detect.py, val.py."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import pytest
import torch
import yaml

from models.yolo import DetectionModel
from tests.helpers import in_child, run_main
from utils.checkpoint import model_to_dict, save_checkpoint
from utils.deploy.backends import DetectMultiBackend
from utils.deploy.export import run_export
from utils.errors import UserError

if importlib.util.find_spec("openvino") is None:  # not imported here: see tests/child_runner.py
    pytest.skip("openvino is not installed", allow_module_level=True)


def _close(y: torch.Tensor, ref: torch.Tensor) -> None:
    """Boxes (pixels) within 2e-3 plus a float32 relative margin, scores within 1e-4 (OpenVINO fuses differently)."""
    assert y.shape == ref.shape
    torch.testing.assert_close(y[..., :4], ref[..., :4], atol=2e-3, rtol=1e-5)
    torch.testing.assert_close(y[..., 4:], ref[..., 4:], atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def static_ov(tiny_fla):
    """tiny_fla's static 128x128 OpenVINO export (made in the child, where the tests below run)."""
    return run_export(tiny_fla, imgsz=[128], include=["openvino"])["openvino"]


@in_child
def test_static_export_layout_and_outputs(tiny_fla, static_ov):
    folder = static_ov
    assert folder == tiny_fla.parent / "tiny-fla_openvino_model" and folder.is_dir()
    assert {p.name for p in folder.iterdir()} == {"tiny-fla.xml", "tiny-fla.bin", "tiny-fla.yaml"}
    meta = yaml.safe_load((folder / "tiny-fla.yaml").read_text())
    assert meta["stride"] == 32 and meta["names"] == {0: "cat", 1: "dog"}
    for given in (folder, folder / "tiny-fla.xml"):  # the folder (as YOLOv5 takes it) or the .xml
        backend = DetectMultiBackend(given)
        assert backend.xml and not backend.pt and not backend.onnx
        assert backend.names == {0: "cat", 1: "dog"} and backend.stride == 32
        assert not backend.dynamic and backend.imgsz == (128, 128) and backend.batch == 1
    assert backend.check_input((1, 3, 96, 96)) is not None and backend.check_input((1, 3, 128, 128)) is None
    x = torch.rand(1, 3, 128, 128)
    with torch.no_grad():
        _close(backend(x), DetectMultiBackend(tiny_fla)(x))


@in_child
def test_dynamic_export_other_sizes(tiny_fla, tmp_path):
    w = shutil.copy(tiny_fla, tmp_path / "dyn.pt")
    backend = DetectMultiBackend(run_export(w, imgsz=[128], include=["openvino"], dynamic=True)["openvino"])
    assert backend.dynamic and backend.imgsz is None and backend.batch is None
    ref = DetectMultiBackend(w)
    for shape in ((2, 3, 96, 160), (1, 3, 64, 64)):
        x = torch.rand(*shape)
        with torch.no_grad():
            y = backend(x)
            assert y.shape == (shape[0], 3 * (shape[2] * shape[3] // 64) * (1 + 1 / 4 + 1 / 16), 7)
            _close(y, ref(x))


@in_child
def test_missing_openvino_is_one_line(tiny_fla, static_ov, monkeypatch, tmp_path):
    w = shutil.copy(tiny_fla, tmp_path / "m.pt")
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    for call in (
        lambda: run_export(w, imgsz=[64], include=["openvino"]),
        lambda: DetectMultiBackend(static_ov),
    ):
        with pytest.raises(UserError, match="pip install openvino") as e:
            call()
        assert "\n" not in str(e.value)


@in_child
def test_bad_folders(tmp_path):
    """detect.py's main in the OpenVINO child (tests/child_runner.py): OpenVINO parsing a corrupt model must not
    touch the suite's process."""
    empty = tmp_path / "x_openvino_model"
    empty.mkdir()
    src = tmp_path / "im.png"
    src.write_bytes(b"")
    steps = [  # a part missing is a usage error (2); parts present but unreadable are an unusable file (1)
        ("no OpenVINO .xml", None, 2),
        ("x.bin", ("x.xml", b"<net/>"), 2),
        ("cannot load OpenVINO model", ("x.bin", b""), 1),
    ]
    for message, add, code in steps:
        if add is not None:
            (empty / add[0]).write_bytes(add[1])
        r = run_main("detect.py", "--weights", empty, "--source", src, "--project", tmp_path)
        assert r.returncode == code and message in r.stderr and "Traceback" not in r.stderr, r.stderr[-1500:]


@in_child
def test_val_cli_matches_pt(tmp_path):
    """val.py on the built-in dataset: a dynamic OpenVINO export scores exactly as its .pt (export.py and val.py in
    the OpenVINO child, tests/child_runner.py)."""
    torch.manual_seed(1)
    model = DetectionModel("yolov5n.yaml", nc=4, verbose=False)
    model.names = ["circle", "square", "triangle", "star"]
    weights = save_checkpoint({"model": model_to_dict(model, half=False)}, tmp_path / "tiny.pt")
    r = run_main("export.py", "--weights", weights, "--include", "openvino", "--imgsz", "64", "--dynamic")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "openvino: max abs difference from PyTorch" in r.stdout
    res = {}
    for name, w in (("pt", weights), ("ov", tmp_path / "tiny_openvino_model")):
        args = ("--weights", w, "--imgsz", "64", "--batch-size", "16", "--workers", "0", "--noplots")
        r = run_main("val.py", *args, "--project", tmp_path, "--name", name)
        assert r.returncode == 0, r.stderr[-2000:]
        res[name] = json.loads((tmp_path / name / "results.json").read_text())["all"]
    assert res["ov"]["images"] == 32 and res["ov"]["instances"] > 0
    for k in ("P", "R", "mAP50", "mAP50-95"):
        assert abs(res["ov"][k] - res["pt"][k]) <= 1e-3, (k, res)


@pytest.mark.slow
@in_child
def test_detect_bus_same_boxes_as_pt(shared, tmp_path):
    """yolov5n.pt on bus.jpg: detect.py with the .pt and with a dynamic OpenVINO export writes the same labels
    (export.py and detect.py in the OpenVINO child, tests/child_runner.py)."""
    w = shutil.copy(shared / "weights" / "yolov5n.pt", tmp_path / "yolov5n.pt")
    r = run_main("export.py", "--weights", w, "--include", "openvino", "--dynamic")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {}
    for name, weights in (("pt", w), ("ov", tmp_path / "yolov5n_openvino_model")):
        args = ("--weights", weights, "--source", shared / "images" / "bus.jpg", "--save-txt", "--save-conf")
        r = run_main("detect.py", *args, "--project", tmp_path, "--name", name)
        assert r.returncode == 0, r.stderr[-2000:]
        rows[name] = [[float(v) for v in line.split()] for line in (tmp_path / name / "labels" / "bus.txt").open()]
    assert len(rows["pt"]) >= 4 and len(rows["ov"]) == len(rows["pt"])
    for a, b in zip(sorted(rows["pt"]), sorted(rows["ov"])):
        assert a[0] == b[0] and max(abs(x - y) for x, y in zip(a[1:], b[1:])) <= 2e-3, (a, b)
