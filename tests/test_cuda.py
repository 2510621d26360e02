"""The GPU paths of benchmarks/device_check.py as tests (marked cuda, skipped without CUDA), plus their CPU parts."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.device_check import NO_CUDA, SoftmaxAttention, match_rate
from models.yolo import DetectionModel
from tests.conftest import run_script
from utils.checkpoint import model_to_dict, save_checkpoint

no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture
def tiny(tmp_path) -> Path:
    """A width-0.25 yolov5n-fla with 4 classes (the built-in dataset's) in our checkpoint format."""
    torch.manual_seed(0)
    model = DetectionModel("yolov5n-fla.yaml", nc=4, verbose=False)
    model.names = ["circle", "square", "triangle", "star"]
    return save_checkpoint({"model": model_to_dict(model, half=False)}, tmp_path / "tiny.pt")


# ---- CPU: what runs everywhere -----------------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="the no-CUDA message is for machines without one")
def test_device_check_without_cuda_says_so():
    r = run_script("benchmarks/device_check.py", timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines() == [NO_CUDA]


def test_fp16_onnx_graph_exports(tmp_path):
    """The --half ONNX graph builds (Detect's grid arange in fp16 once broke the exporter) and runs fp16 in ORT."""
    from utils.deploy.backends import DetectMultiBackend
    from utils.deploy.export import export_metadata, export_onnx, prepare_for_export

    model = prepare_for_export(DetectionModel("yolov5n.yaml", nc=2, verbose=False).fuse()).half()
    im = torch.zeros(1, 3, 64, 64).half()
    f = export_onnx(model, im, tmp_path / "h.onnx", export_metadata(model, im, dynamic=False, half=True))
    backend = DetectMultiBackend(f)
    assert backend.fp16
    y = backend(torch.rand(1, 3, 64, 64))
    assert y.shape == (1, 3 * 64 * (1 + 1 / 4 + 1 / 16), 7) and torch.isfinite(y).all()


def test_match_rate_by_class_and_iou():
    a = {"im": torch.tensor([[0, 0.5, 0.5, 0.2, 0.2, 0.9], [1, 0.2, 0.2, 0.1, 0.1, 0.8]])}
    b = {"im": torch.tensor([[0, 0.5, 0.5, 0.2, 0.201, 0.9], [0, 0.2, 0.2, 0.1, 0.1, 0.8]])}  # 2nd: other class
    assert match_rate(a, b) == (1, 2)
    assert match_rate(a, {}) == (0, 2)


def test_softmax_attention_shapes():
    m = SoftmaxAttention(32, 4)
    assert m(torch.randn(2, 50, 32)).shape == (2, 50, 32)


# ---- CUDA ----------------------------------------------------------------------------------------------------------
@pytest.mark.cuda
@no_cuda
@pytest.mark.parametrize("size", [80, 160])
def test_fla_fp16_autocast_large_inputs_finite(size):
    from models.fla import FLA

    torch.manual_seed(0)
    m = FLA(128, 4, zero_init=False).cuda().train()
    x = (torch.randn(2, 128, size, size, device="cuda") * 1e3).requires_grad_(True)
    with torch.autocast("cuda", dtype=torch.float16):
        y = m(x)
    y.float().square().mean().backward()
    assert torch.isfinite(y).all() and torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in m.parameters() if p.grad is not None)


@pytest.mark.cuda
@no_cuda
def test_amp_training_losses_finite(tmp_path, tiny):
    args = ("--weights", tiny, "--cfg", "yolov5n-fla.yaml", "--epochs", "2", "--imgsz", "64", "--batch-size", "8",
            "--workers", "0", "--device", "0", "--project", tmp_path, "--name", "amp", "--noplots")  # fmt: skip
    r = run_script("train.py", *args)
    assert r.returncode == 0, r.stderr[-2000:]
    rows = (tmp_path / "amp" / "results.csv").read_text().splitlines()[1:]
    values = [float(v) for row in rows for v in row.split(",")[1:]]
    assert len(rows) == 2 and all(v == v and abs(v) != float("inf") for v in values)


@pytest.mark.cuda
@no_cuda
def test_val_half_matches_fp32(tmp_path, tiny):
    import json

    res = {}
    for name, extra in (("fp32", ()), ("half", ("--half",))):
        r = run_script("val.py", "--weights", tiny, "--imgsz", "64", "--device", "0", "--workers", "0", *extra,
                       "--project", tmp_path, "--name", name, "--noplots")  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        res[name] = json.loads((tmp_path / name / "results.json").read_text())["all"]
    assert abs(res["half"]["mAP50-95"] - res["fp32"]["mAP50-95"]) <= 0.01


@pytest.mark.cuda
@no_cuda
def test_half_validation_keeps_callers_fp32_weights(tiny):
    """Training validates its fp32 EMA with half=True: evaluate must not round those weights to fp16."""
    from models.load import load_model
    from utils.data.config import check_dataset
    from utils.data.loader import create_dataloader
    from utils.deploy.predictor import ModelPredictor
    from utils.val.evaluate import EvalOptions, evaluate

    model = load_model(tiny, device="cuda", fuse=False).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    data = check_dataset(None)
    loader = create_dataloader(data["val"], 64, 8, 32, pad=0.5, rect=True, workers=0)[0]
    predictor = ModelPredictor(model, device=torch.device("cuda"), fp16=True)
    evaluate(predictor, loader, data["names"], EvalOptions(plots=False), progress=False)
    after = model.state_dict()
    assert all(after[k].dtype == v.dtype and torch.equal(after[k], v) for k, v in before.items())


@pytest.mark.cuda
@no_cuda
def test_export_half_onnx_on_cuda(tiny):
    r = run_script("export.py", "--weights", tiny, "--include", "onnx", "--half", "--device", "0", "--imgsz", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    from utils.deploy.backends import DetectMultiBackend

    assert DetectMultiBackend(tiny.with_suffix(".onnx")).fp16
