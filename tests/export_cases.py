"""The converter round trips, run by tests/test_export_formats.py in the session's one child pytest process, with the
OpenVINO tests (tests/child_runner.py: TensorFlow, OpenVINO and coremltools stay out of the suite's process; each model
is exported once per session, and its exports are loaded once for the tests).

Tiny width-0.25 models at 64 px holding both FLA and C3FLA (detect, segment, classify), exported to the formats of
FORMATS; each export must give the .pt's outputs: detect/segment boxes at the .pt's 20 most confident anchors with
IoU >= 0.95 and scores within 2e-3, classify probabilities within 1e-3; CoreML specs are read back. int8 TFLite of
the tiny plain detector and of the tiny FLA segment model stays near the .pt (its Proto branch float); int8 ONNX and
OpenVINO of yolov5n-bccd on BCCD val keep mAP50-95 within 0.02 of the float export and of the .pt. Run it alone with
`python -m pytest tests/export_cases.py`.
"""

from __future__ import annotations

import argparse
import shutil

import cv2
import numpy as np
import pytest
import torch

from utils.boxes import box_iou, xywh2xyxy
from utils.data.augment import letterbox
from utils.deploy.backends import load_predictor
from utils.deploy.export import run_export

SIZE = 64
TF = ("saved_model", "pb", "tflite")
ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]]
BACKBONE = [[-1, 1, "Conv", [32, 6, 2, 2]], [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "C3FLA", [64, {"num_heads": 2}]],
            [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "FLA", [2, {"base_size": 8}]]]  # fmt: skip
DET = {"nc": 2, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": ANCHORS,
       "backbone": [*BACKBONE, [-1, 1, "Conv", [256, 3, 2]]],
       "head": [[[4, 5], 1, "Detect", ["nc", "anchors"]]]}  # fmt: skip
SEG = {**DET, "head": [[[4, 5], 1, "Segment", ["nc", "anchors", 8, 16]]]}
CLS = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25, "backbone": BACKBONE,
       "head": [[-1, 1, "Classify", ["nc"]]]}  # fmt: skip
# per task: the formats exported (in one run_export call). TorchScript and the float ONNX / OpenVINO of FLA models are
# checked in the suite itself (tests/test_export.py, tests/test_openvino.py); segment and classify take only the last
# link of the TF chain (TFLite: onnx2tf -> SavedModel -> TFLite). CoreML is spec-checked (it runs on macOS only).
FORMATS = {"detect": ("onnx", "ncnn", *TF, "coreml"), "segment": ("ncnn", "tflite", "coreml"),
           "classify": ("ncnn", "tflite")}  # fmt: skip


def _model(task: str, fla: bool = True) -> torch.nn.Module:
    """The task's tiny model (seed 0) with FLA's output projection and positional encoding randomised (zero-init
    would make them the identity) and, for detect/segment, a raised objectness so that it finds boxes."""
    from models.classify import ClassificationModel
    from models.yolo import DetectionModel, SegmentationModel

    torch.manual_seed(0)
    if task == "classify":
        model, model.names = ClassificationModel(CLS), ["a", "b", "c"]
    else:
        cfg = DET if task == "detect" else SEG
        if not fla:  # the same layout with C3 and a 1x1 Conv in place of C3FLA and FLA
            back = [*BACKBONE[:2], [-1, 1, "C3", [64]], BACKBONE[3], [-1, 1, "Conv", [128, 1, 1]], *DET["backbone"][5:]]
            cfg = {**cfg, "backbone": back}
        model = (DetectionModel if task == "detect" else SegmentationModel)(cfg, verbose=False)
        model.names = ["cat", "dog"]
        with torch.no_grad():
            for conv in model.model[-1].m:
                conv.bias.view(model.model[-1].na, -1)[:, 4] += 2.0
    for m in model.modules():
        if type(m).__name__ == "FocusedLinearAttention":
            torch.nn.init.normal_(m.proj.weight, std=0.1)
            torch.nn.init.normal_(m.positional_encoding, std=0.1)
    return model


@pytest.fixture(scope="session", params=["detect", "segment", "classify"])
def exported(request, tmp_path_factory):
    """(task, .pt path, {format: exported path}): the tiny model of the task exported once to FORMATS[task]."""
    from utils.checkpoint import model_to_dict, save_checkpoint

    task = request.param
    f = tmp_path_factory.mktemp(task) / f"tiny-{task}.pt"
    save_checkpoint({"model": model_to_dict(_model(task), half=False)}, f)
    return task, f, run_export(f, imgsz=[SIZE], include=FORMATS[task])


def _images(shared) -> torch.Tensor:
    """bus.jpg and zidane.jpg letterboxed to SIZE: (2, 3, SIZE, SIZE) float 0-1."""
    ims = [letterbox(cv2.imread(str(shared / "images" / n)), SIZE, auto=False)[0] for n in ("bus.jpg", "zidane.jpg")]
    return torch.from_numpy(np.stack([im[..., ::-1].transpose(2, 0, 1) for im in ims]).copy()).float() / 255


def _same_boxes(ref: torch.Tensor, y: torch.Tensor, nc: int = 2, k: int = 20, iou_min=0.95, atol=2e-3) -> None:
    """At ref's k most confident anchors of (1, N, 5 + nc [+ nm]): boxes with IoU >= iou_min, obj * cls within atol.
    Anchor-wise, so near-equal scores of a random model cannot reorder NMS and swap boxes."""

    def conf(p: torch.Tensor) -> torch.Tensor:
        return p[0, :, 4:5] * p[0, :, 5 : 5 + nc]

    top = conf(ref).max(1).values.topk(k).indices
    iou = box_iou(xywh2xyxy(ref[0, top, :4]), xywh2xyxy(y[0, top, :4])).diagonal()
    assert float(iou.min()) >= iou_min, iou
    torch.testing.assert_close(conf(y)[top], conf(ref)[top], atol=atol, rtol=0)


@pytest.fixture(scope="session")
def predictors(exported) -> dict:
    """{format: its predictor} of the task's exports (CoreML runs on macOS only), loaded once for the tests below."""
    return {fmt: load_predictor(f) for fmt, f in exported[2].items() if fmt != "coreml"}


def test_metadata(exported, predictors):
    task = exported[0]
    assert set(predictors) == set(FORMATS[task]) - {"coreml"}
    for fmt, p in predictors.items():
        assert p.task == task and p.stride in (16, 32) and p.imgsz == (SIZE, SIZE), fmt
        assert p.names == ({0: "a", 1: "b", 2: "c"} if task == "classify" else {0: "cat", 1: "dog"}), fmt


def test_outputs_match_pt(exported, predictors, shared):
    """Every export of the task gives the .pt's boxes / prototypes / probabilities on bus.jpg and zidane.jpg."""
    task, w, _ = exported
    pt, x = load_predictor(w), _images(shared)
    if task == "classify":
        from utils.classify.predict import classifier_predictor

        pt = classifier_predictor(pt)
    for fmt, exp in predictors.items():
        if task == "classify":
            exp = classifier_predictor(exp)
        with torch.no_grad():
            for i in range(len(x)):
                ref, y = pt(x[i : i + 1]), exp(x[i : i + 1])
                if task == "classify":
                    torch.testing.assert_close(y.softmax(1), ref.softmax(1), atol=1e-3, rtol=0, msg=fmt)
                elif task == "segment":
                    _same_boxes(ref[0], y[0])
                    torch.testing.assert_close(y[1], ref[1], atol=2e-3, rtol=1e-3, msg=fmt)
                else:
                    _same_boxes(ref, y)


def test_coreml_spec(exported):
    from utils.deploy.export_coreml import coreml_spec_summary

    task, _, files = exported
    if "coreml" not in files:
        pytest.skip(f"CoreML is not exported for {task}")
    spec = coreml_spec_summary(files["coreml"])
    outputs = ["output0", "output1"] if task == "segment" else ["output0"]  # segment: predictions, prototypes
    assert spec["inputs"] == {"image": [SIZE, SIZE]} and spec["outputs"] == outputs
    assert spec["meta"]["names"] == ["cat", "dog"] and spec["meta"]["task"] == task
    assert spec["meta"]["imgsz"] == [SIZE, SIZE] and spec["meta"]["stride"] in (16, 32)


@pytest.fixture(scope="session")
def int8_setup(shared, tmp_path_factory):
    """(yolov5n-bccd.pt copy, benchmark options at 320 px on BCCD, the float ONNX row, the .pt row): the references
    of the int8 rows. The float ONNX and OpenVINO exports score the same (both letterbox square); the .pt's val is
    rectangular, as official's benchmarks.py runs it."""
    from utils.deploy.benchmark import bench_one

    folder = tmp_path_factory.mktemp("int8")
    w = shutil.copy(shared / "weights/yolov5n-bccd.pt", folder / "yolov5n-bccd.pt")
    opt = argparse.Namespace(imgsz=320, batch_size=1, device="cpu", half=False, test=False,
                             data=str(shared / "data/bccd/bccd.yaml"))  # fmt: skip
    fp32 = bench_one("ONNX", "onnx", False, w, folder, opt)
    pt = bench_one("PyTorch", "pt", False, w, folder, opt)
    assert fp32.status == "ok" and fp32.map > 0.35 and pt.status == "ok" and pt.map > 0.35, (fp32, pt)
    return w, opt, fp32, pt


@pytest.mark.parametrize("fmt", ["onnx", "openvino"])
def test_int8_map_within_002_of_float(int8_setup, tmp_path, fmt):
    """yolov5n-bccd --int8, calibrated on BCCD (train first, up to 100 images), 320 px: mAP50-95 on BCCD val (87
    images) within 0.02 of the float export and of the .pt, and a file under half the float one's size for ONNX.

    BCCD, not coco8: on coco8's 4 val images (17 boxes) ONNX int8 calibration variants spread 0.392-0.435 around the
    float 0.415 (percentile 99.999, the default: 0.392), so that set cannot tell a good calibration from a bad one
    (docs/export-formats.md, int8 round 2)."""
    from utils.deploy.benchmark import bench_one

    w, opt, fp32, pt = int8_setup
    int8 = bench_one(f"{fmt} int8", fmt, True, shutil.copy(w, tmp_path / w.name), tmp_path, opt)
    assert int8.status == "ok", int8
    assert abs(int8.map - fp32.map) <= 0.02, (fp32.map, int8.map)
    assert abs(int8.map - pt.map) <= 0.02, (pt.map, int8.map)
    if fmt == "onnx":
        assert int8.size_mb < fp32.size_mb / 2


def _int8_op_types(f) -> set:
    """The op types of a .tflite whose outputs are int8 (its quantised ops)."""
    from utils.deploy.runtimes.tf import _interpreter

    it = _interpreter(f, None)
    dtypes = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    return {op["op_name"] for op in it._get_ops_details() if op["outputs"].size and dtypes[op["outputs"][0]] == np.int8}


@pytest.mark.parametrize(
    ("task", "fla", "iou_min", "atol"), [("detect", False, 0.98, 1e-3), ("segment", True, 0.83, 5e-3)],
    ids=["plain", "fla-segment"],
)  # fmt: skip
def test_tflite_int8_near_pt(shared, tmp_path, task, fla, iou_min, atol):
    """--int8 TFLite of a tiny model, calibrated on coco8 (8 images), run by LiteRT through our predictor: the plain
    detector, and the FLA segment model (FLA and C3FLA, and a Proto branch).

    Both int8 weights and activations, except the Detect head (its 1x1 convs and the decode; for a segment model
    also the Proto's last conv) and FLA's DIV ops (an int8 divisor rounds to zero), which stay float. Bounds at the
    .pt's 20 top anchors (IoU of the boxes, scores): plain >= 0.98 and 1e-3 (measured 0.988, 5.4e-4); FLA >= 0.83
    and 5e-3 (measured 0.86, 2.4e-3: FLA's attention in int8 moves this random 64 px model's boxes by ~0.5 px; int8
    weights with float activations gave 0.997). The segment model's Proto branch, read back from the written file: the
    Detect head's walk keeps its last conv (cv3) and SiLU float (a DEQUANTIZE before them), cv1, the upsample and cv2
    run int8. Keeping the whole Proto float too gave yolov5n-seg the same mask mAP50-95 on coco128-seg at 320 px
    (0.1615 vs 0.1621, .pt 0.1603) in a 0.2 MB larger file, so it is not done (docs/export-formats.md)."""
    from utils.checkpoint import model_to_dict, save_checkpoint
    from utils.deploy.runtimes.tf import read_tflite_meta

    w = tmp_path / f"{task}.pt"
    save_checkpoint({"model": model_to_dict(_model(task, fla=fla), half=False)}, w)
    data = shared / "data/coco8/coco8.yaml"
    f = run_export(w, imgsz=[SIZE], include=["tflite"], int8=True, data=data)["tflite"]
    meta = read_tflite_meta(f)
    assert meta["int8"] and meta["quant"] == "full" and meta["float_ops"] > 0, meta
    assert meta["xywh"] == "normalized"
    int8_ops = _int8_op_types(f)  # FLA's matmuls quantised too; the decode's LOGISTIC is float
    assert "CONV_2D" in int8_ops and ("BATCH_MATMUL" in int8_ops) == fla, int8_ops
    if task == "segment":  # the Proto (3 convs, 3 SiLUs, the upsample): its last conv and SiLU float, the rest int8
        proto = sorted((k, np.dtype(d).name) for k, d in _proto_branch(f))
        floats = [("CONV_2D", "float32"), ("DEQUANTIZE", "float32"), ("LOGISTIC", "float32"), ("MUL", "float32")]
        int8s = [("CONV_2D", "int8"), ("LOGISTIC", "int8"), ("MUL", "int8")] * 2 + [("RESIZE_NEAREST_NEIGHBOR", "int8")]
        assert proto == sorted(floats + int8s), proto
    pt, exp, x = load_predictor(w), load_predictor(f), _images(shared)
    assert exp.format == "tflite" and exp.imgsz == (SIZE, SIZE)
    with torch.no_grad():
        for i in range(len(x)):
            ref, y = pt(x[i : i + 1]), exp(x[i : i + 1])
            ref, y = (ref[0], y[0]) if task == "segment" else (ref, y)
            assert y.shape == ref.shape and torch.isfinite(y).all()
            _same_boxes(ref, y, iou_min=iou_min, atol=atol)


def _proto_branch(f) -> list:
    """(op type, output dtype) of a segment .tflite's ops from its prototype output (rank 4) back to the third
    CONV_2D on each path: the Proto module's cv3, cv2, cv1 and what lies between them."""
    from utils.deploy.runtimes.tf import _interpreter

    it = _interpreter(f, None)
    dtypes = {t["index"]: t["dtype"] for t in it.get_tensor_details()}
    ops = it._get_ops_details()
    producer = {int(t): op for op in ops for t in op["outputs"]}
    todo = [(o["index"], 3) for o in it.get_output_details() if len(o["shape"]) == 4]
    seen, found = set(), []
    while todo:
        t, convs = todo.pop()
        op = producer.get(t)
        if op is None or op["index"] in seen:
            continue
        seen.add(op["index"])
        found.append((op["op_name"], dtypes[op["outputs"][0]]))
        convs -= op["op_name"] == "CONV_2D"
        todo += [(int(i), convs) for i in op["inputs"] if i >= 0] if convs > 0 else []
    return found
