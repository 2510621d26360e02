"""Export to ONNX / TorchScript and run back through DetectMultiBackend; the export.py CLI."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.helpers import run_main
from utils.deploy.backends import DetectMultiBackend
from utils.deploy.export import run_export
from utils.errors import UserError


def _close(y: torch.Tensor, ref: torch.Tensor) -> None:
    """Boxes (pixels) within 1e-3 plus a float32 relative margin, scores within 1e-4."""
    assert y.shape == ref.shape
    torch.testing.assert_close(y[..., :4], ref[..., :4], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(y[..., 4:], ref[..., 4:], atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def official_copy(shared, tmp_path_factory):
    """yolov5n.pt copied into a temp folder: exports are written next to the weights, never into shared/."""
    folder = tmp_path_factory.mktemp("official")
    return shutil.copy(shared / "weights" / "yolov5n.pt", folder / "yolov5n.pt")


def test_export_official_onnx_and_torchscript(official_copy):
    files = run_export(official_copy, imgsz=[640], include=["onnx", "torchscript"])
    assert files["onnx"].name == "yolov5n.onnx" and files["torchscript"].name == "yolov5n.torchscript"
    pt = DetectMultiBackend(official_copy)
    x = torch.rand(1, 3, 640, 640)
    with torch.no_grad():
        ref = pt(x)
    assert ref.shape == (1, 25200, 85)
    for f in files.values():
        backend = DetectMultiBackend(f)
        assert backend.stride == 32 and len(backend.names) == 80 and backend.names[0] == "person"
        assert not backend.dynamic and backend.imgsz == (640, 640)
        _close(backend(x), ref)
    onnx_backend = DetectMultiBackend(files["onnx"])
    assert onnx_backend.onnx and not onnx_backend.pt
    assert [i.name for i in onnx_backend.session.get_inputs()] == ["images"]
    assert [o.name for o in onnx_backend.session.get_outputs()] == ["output0"]
    assert onnx_backend.check_input((1, 3, 320, 320)) is not None and onnx_backend.check_input(x.shape) is None


def test_dynamic_onnx_other_size(official_copy, tmp_path):
    w = shutil.copy(official_copy, tmp_path / "dyn.pt")
    files = run_export(w, imgsz=[320], include=["onnx"], dynamic=True, simplify=True)
    backend = DetectMultiBackend(files["onnx"])
    assert backend.dynamic and backend.imgsz is None
    x = torch.rand(2, 3, 256, 416)
    with torch.no_grad():
        ref = DetectMultiBackend(w)(x)
    y = backend(x)
    assert y.shape == (2, 3 * (32 * 52 + 16 * 26 + 8 * 13), 85)
    _close(y, ref)


def test_export_fla_dynamic(tiny_fla):
    import onnx

    files = run_export(tiny_fla, imgsz=[128], include=["onnx", "torchscript"], dynamic=True)
    ops = {n.op_type for n in onnx.load(str(files["onnx"])).graph.node}
    assert "ReduceSum" not in ops, ops  # pnnx drops its axes (NCNN summed nothing): FLA traces sum another way
    ref_backend = DetectMultiBackend(tiny_fla)
    for size in ((128, 128), (96, 160)):
        x = torch.rand(1, 3, *size)
        with torch.no_grad():
            ref = ref_backend(x)
        y = DetectMultiBackend(files["onnx"])(x)
        assert y.shape == (1, 3 * (size[0] * size[1] // 64) * (1 + 1 / 4 + 1 / 16), 7)
        _close(y, ref)
    jit = DetectMultiBackend(files["torchscript"])
    assert jit.jit and jit.names == {0: "cat", 1: "dog"} and jit.dynamic  # the Predictor carries names as a dict
    x = torch.rand(1, 3, 96, 160)
    with torch.no_grad():
        _close(jit(x), ref_backend(x))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_without_our_metadata_is_refused(tmp_path):
    f = tmp_path / "foreign.torchscript"
    torch.jit.save(torch.jit.script(torch.nn.Identity()), str(f), _extra_files={"config.txt": json.dumps({})})
    with pytest.raises(UserError, match="not exported by YOLOv5-FLA"):
        DetectMultiBackend(f)


def test_backend_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        DetectMultiBackend(tmp_path / "missing.pt")
    (tmp_path / "model.caffemodel").write_bytes(b"x")
    with pytest.raises(UserError, match="unsupported weights format"):
        DetectMultiBackend(tmp_path / "model.caffemodel")
    (tmp_path / "model.tflite").write_bytes(b"x")  # a format we run, but not a model: one line, no traceback
    with pytest.raises(UserError, match="cannot load TFLite model"):
        DetectMultiBackend(tmp_path / "model.tflite")


def test_ensemble_concatenates(tiny_fla):
    ens = DetectMultiBackend([tiny_fla, tiny_fla])
    single = DetectMultiBackend(tiny_fla)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        y, y1 = ens(x), single(x)
    assert y.shape == (1, 2 * y1.shape[1], 7)
    torch.testing.assert_close(y[:, : y1.shape[1]], y1)


def test_cli_exports_and_reports_difference(tiny_fla):
    r = run_main("export.py", "--weights", tiny_fla, "--include", "onnx", "--imgsz", "64", "96")
    assert r.returncode == 0, r.stderr
    assert "onnx: max abs difference from PyTorch" in r.stdout
    assert tiny_fla.with_suffix(".onnx").is_file()
    assert DetectMultiBackend(tiny_fla.with_suffix(".onnx")).imgsz == (64, 96)


def test_cli_missing_weights(tmp_path):
    r = run_main("export.py", "--weights", tmp_path / "nope.pt", "--include", "onnx")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [f"error: weights file not found: {tmp_path / 'nope.pt'}"]


def _fla_nodes(onnx_file, scopes) -> tuple:
    """({op type: count} of the nodes under scopes (no QuantizeLinear / DequantizeLinear), the number of those that
    read a DequantizeLinear output from inside the scopes, the number of Conv nodes that read one anywhere)."""
    import onnx

    nodes = onnx.load(str(onnx_file)).graph.node
    dq = {o: n.name for n in nodes if n.op_type == "DequantizeLinear" for o in n.output}
    qdq = ("QuantizeLinear", "DequantizeLinear")
    inside = [n for n in nodes if n.name.startswith(tuple(scopes)) and n.op_type not in qdq]
    counts: dict = {}
    for n in inside:
        counts[n.op_type] = counts.get(n.op_type, 0) + 1
    int8_inside = sum(any(dq.get(i, "").startswith(tuple(scopes)) for i in n.input) for n in inside)
    int8_convs = sum(n.op_type == "Conv" and any(i in dq for i in n.input) for n in nodes)
    return counts, int8_inside, int8_convs


def test_onnx_int8_keeps_fla_float(tiny_fla, shared, tmp_path):
    """--int8 ONNX of yolov5n-fla (64 px, calibrated on coco8): FLA's nodes are the float export's, none of them
    quantised (its 4 MatMuls, 4 Divs, LayerNorm), while the other convs read int8 (DequantizeLinear) inputs."""
    from models.load import load_model
    from utils.deploy.quantize import float_scopes

    w = shutil.copy(tiny_fla, tmp_path / "fla.pt")
    f = run_export(w, imgsz=[64], include=["onnx"], int8=True, data=shared / "data/coco8/coco8.yaml")["onnx"]
    scopes = float_scopes(load_model(w))
    assert f.name == "fla-int8.onnx" and scopes == ["/model/model.9/"]
    ref, _, _ = _fla_nodes(f.with_name("fla.onnx"), scopes)
    counts, int8_inside, int8_convs = _fla_nodes(f, scopes)
    assert counts == ref and (counts["MatMul"], counts["Div"], counts["LayerNormalization"]) == (4, 4, 1), counts
    assert int8_inside == 0 and int8_convs >= 50, (int8_inside, int8_convs)
