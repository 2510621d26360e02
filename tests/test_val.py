"""evaluate() on hand-made batches with known answers, the plots, and val.py parity with the official YOLOv5 figures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from tests.helpers import run_main
from utils.deploy.predictor import ModelPredictor
from utils.task import LossOutput
from utils.val.evaluate import EvalOptions, EvalResult, evaluate
from utils.val.plots import output_to_target, plot_images, plot_labels, plot_results

SIZE = 64
# per image: rows [cls, x, y, w, h] in pixels of a 64x64 image
GT = {0: [[0, 16, 16, 10, 10], [1, 40, 40, 20, 12]], 1: [[1, 32, 32, 30, 30]], 2: []}


def make_batches(n_images: int = 3, batch: int = 2) -> list:
    """Batches (imgs uint8 (B, 3, 64, 64), targets (n, 6) normalised, paths, shapes) covering GT."""
    batches = []
    for start in range(0, n_images, batch):
        idx = list(range(start, min(start + batch, n_images)))
        rows = [[i - start, *r[:1], *(np.array(r[1:]) / SIZE)] for i in idx for r in GT[i]]
        targets = torch.tensor(rows, dtype=torch.float32).reshape(-1, 6)
        paths = tuple(f"/data/images/img{i}.jpg" for i in idx)
        shapes = tuple(((SIZE, SIZE), ((1.0, 1.0), (0.0, 0.0))) for _ in idx)
        batches.append((torch.zeros((len(idx), 3, SIZE, SIZE), dtype=torch.uint8), targets, paths, shapes))
    return batches


class OracleModel(nn.Module):
    """Predicts the ground truth of each image it is shown (obj 0.9, cls 0.9); optionally a low-conf false positive."""

    def __init__(self, nc: int = 2, perfect: bool = True, tuple_out: bool = True, fp: bool = False):
        super().__init__()
        self.nc, self.perfect, self.tuple_out, self.fp, self.calls = nc, perfect, tuple_out, fp, 0
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, im: torch.Tensor):
        start, self.calls = self.calls * 2, self.calls + 1
        pred = torch.zeros((im.shape[0], 4, 5 + self.nc))
        for b in range(im.shape[0]):
            rows = GT[start + b] if self.perfect else []
            for k, (c, x, y, w, h) in enumerate(rows):
                pred[b, k, :5] = torch.tensor([x, y, w, h, 0.9])
                pred[b, k, 5 + int(c)] = 0.9
            if self.fp:
                pred[b, 3, :6] = torch.tensor([58.0, 5.0, 6.0, 6.0, 0.05, 0.9])  # false positive, conf 0.045
        return (pred, [torch.zeros(1)]) if self.tuple_out else pred


def oracle(**kw) -> ModelPredictor:
    return ModelPredictor(OracleModel(**kw), names=["a", "b"], stride=32)


def test_evaluate_perfect_predictions(tmp_path):
    res = evaluate(oracle(), make_batches(), ["a", "b"], EvalOptions(save_txt=True, save_json=True), tmp_path,
                   progress=False)  # fmt: skip
    assert isinstance(res, EvalResult)
    assert res.seen == 3 and res.nt.tolist() == [1, 2]
    assert res.ap50.tolist() == pytest.approx([0.995, 0.995]) and res.ap.tolist() == pytest.approx([0.995, 0.995])
    if res.coco is None:  # no COCO evaluator installed: the table's mAP stays
        assert res.map50 == pytest.approx(0.995) and res.map == pytest.approx(0.995)
    else:  # pycocotools scored the json against the labels; its mAP replaces the table's, as YOLOv5
        assert res.coco == pytest.approx({"mAP50-95": 1.0, "mAP50": 1.0}) and res.map == res.map50 == 1.0
    assert res.mp == pytest.approx(1.0) and res.mr == pytest.approx(1.0)
    assert res.ap_class.tolist() == [0, 1] and res.maps.tolist() == pytest.approx([0.995, 0.995])
    assert res.fitness == pytest.approx(0.995 if res.coco is None else 1.0)
    for f in ("results.json", "confusion_matrix.png", "PR_curve.png", "F1_curve.png", "P_curve.png", "R_curve.png",
              "val_batch0_labels.jpg", "val_batch0_pred.jpg", "val_batch1_pred.jpg", "predictions.json"):  # fmt: skip
        assert (tmp_path / f).is_file(), f
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["all"]["images"] == 3 and saved["all"]["instances"] == 3
    assert saved["classes"]["b"]["instances"] == 2 and saved["classes"]["a"]["mAP50-95"] == pytest.approx(0.995)
    # txt labels: normalised xywh, one row per prediction
    rows = [list(map(float, r.split())) for r in (tmp_path / "labels" / "img1.txt").read_text().splitlines()]
    assert [1.0, 0.5, 0.5, 30 / 64, 30 / 64] in [pytest.approx(r) for r in rows]
    preds = json.loads((tmp_path / "predictions.json").read_text())
    first = next(p for p in preds if p["image_id"] == "img0" and p["category_id"] == 0 and p["score"] > 0.5)
    assert first["bbox"] == [11.0, 11.0, 10.0, 10.0] and first["score"] == pytest.approx(0.81)
    anno = json.loads((tmp_path / "annotations.json").read_text())
    assert len(anno["annotations"]) == 3 and anno["annotations"][0]["bbox"] == [11.0, 11.0, 10.0, 10.0]
    assert [im["id"] for im in anno["images"]] == ["img0", "img1", "img2"]  # the image without labels too
    assert not (tmp_path / "labels" / "img2.txt").exists()  # no predictions: no file, as YOLOv5


def test_evaluate_low_conf_false_positives_keep_ap_but_lower_p():
    # 3 class-0 false positives at conf 0.045 below the only true positive (0.81): the AP envelope is unchanged,
    # but P is interpolated linearly between the two confidences (as YOLOv5), so it drops below 1
    res = evaluate(oracle(fp=True), make_batches(), ["a", "b"], EvalOptions(plots=False), progress=False)
    assert res.ap50.tolist() == pytest.approx([0.995, 0.995])
    assert res.p[0] < 1.0 and res.p[1] == pytest.approx(1.0) and res.mr == pytest.approx(1.0)


def test_evaluate_without_predictions_and_backend_output(tmp_path):
    model = oracle(perfect=False, tuple_out=False)
    res = evaluate(model, make_batches(), ["a", "b"], EvalOptions(save_json=True), tmp_path, progress=False)
    assert res.seen == 3 and res.nt.sum() == 3
    assert res.map50 == 0 and res.map == 0 and res.mp == 0 and len(res.ap_class) == 0 and res.coco is None
    assert json.loads((tmp_path / "predictions.json").read_text()) == []
    assert len(json.loads((tmp_path / "annotations.json").read_text())["annotations"]) == 3  # missed labels count


def test_evaluate_save_hybrid_uses_labels():
    res = evaluate(oracle(perfect=False), make_batches(), ["a", "b"], EvalOptions(save_hybrid=True), progress=False)
    assert res.map50 == pytest.approx(0.995)


def test_evaluate_compute_loss_and_single_cls(caplog):
    def fake_loss(train_out, batch):
        assert isinstance(train_out, list)
        return LossOutput(torch.zeros(1), torch.tensor([1.0, 2.0, 3.0]))

    with caplog.at_level("INFO"):
        res = evaluate(oracle(), make_batches(), ["a", "b"], EvalOptions(single_cls=True, plots=False),
                       criterion=fake_loss, progress=False)  # fmt: skip
    assert res.losses == pytest.approx((1.0, 2.0, 3.0))  # mean over the 2 batches
    assert res.nt.tolist() == [3] and res.map50 == pytest.approx(0.995)
    assert "Speed:" not in caplog.text and "all" in caplog.text  # training: no speed line


def test_evaluate_prints_table(caplog):
    with caplog.at_level("INFO"):
        evaluate(oracle(), make_batches(), ["a", "b"], EvalOptions(plots=False, per_class=True), progress=False,
                 speed_shape=(32, 64))  # fmt: skip
    assert "mAP50-95" in caplog.text and "Speed:" in caplog.text and "(32, 3, 64, 64)" in caplog.text
    lines = [ln.split() for ln in caplog.messages]
    assert ["all", "3", "3", "1", "1", "0.995", "0.995"] in lines and [
        "b",
        "3",
        "2",
        "1",
        "1",
        "0.995",
        "0.995",
    ] in lines


def test_plots_write_files(tmp_path):
    imgs = torch.randint(0, 255, (3, 3, 64, 80), dtype=torch.uint8)
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.2, 0.3], [2, 1, 0.3, 0.3, 0.1, 0.1]])
    assert plot_images(imgs, targets, ["a.jpg", "b.jpg", "c.jpg"], tmp_path / "m.jpg", ["x", "y"]).stat().st_size
    preds = [torch.tensor([[1.0, 2.0, 30.0, 40.0, 0.9, 1.0]]), torch.zeros((0, 6))]
    t = output_to_target(preds)
    assert t.tolist() == [pytest.approx([0, 1, 15.5, 21, 29, 38, 0.9])]
    assert plot_labels(np.array([[0, 0.5, 0.5, 0.2, 0.2], [1, 0.2, 0.7, 0.1, 0.3]]), ["x", "y"], tmp_path).is_file()
    csv = tmp_path / "results.csv"
    head = "epoch,train/box_loss,train/obj_loss,train/cls_loss,metrics/precision,metrics/recall,metrics/mAP_0.5,"
    head += "metrics/mAP_0.5:0.95,val/box_loss,val/obj_loss,val/cls_loss,x/lr0,x/lr1,x/lr2"
    csv.write_text(head + "\n" + "\n".join(",".join(str(e + j / 10) for j in range(14)) for e in range(4)) + "\n")
    assert plot_results(csv) == tmp_path / "results.png" and (tmp_path / "results.png").is_file()


def test_val_cli_errors(tmp_path):
    r = run_main("val.py", "--weights", str(tmp_path / "missing.pt"), "--project", str(tmp_path))
    assert r.returncode != 0 and "error:" in r.stderr and "Traceback" not in r.stderr


# ---- parity with the official YOLOv5 figures (../shared) ----


def _check_against(results: dict, ref: dict) -> None:
    """results.json figures vs a reference block ({'all': ..., class: ...}): mAP within 0.005, P and R within 0.02."""
    for cls, want in ref.items():
        got = results["all"] if cls == "all" else results["classes"][cls]
        assert got["instances"] == want["instances"], cls
        if cls == "all":
            assert got["images"] == want["images"]
        for k, tol in (("mAP50", 0.005), ("mAP50-95", 0.005), ("P", 0.02), ("R", 0.02)):
            assert abs(got[k] - want[k]) <= tol, (cls, k, got[k], want[k])


def _val(tmp_path: Path, *args: str) -> dict:
    r = run_main("val.py", *args, "--device", "cpu", "--project", str(tmp_path), "--name", "exp")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Speed:" in r.stdout and "all" in r.stdout
    return json.loads((tmp_path / "exp" / "results.json").read_text())


@pytest.fixture(scope="module")
def official(shared) -> dict:
    return json.loads((shared / "reference" / "official_yolov5.json").read_text())["val"]


@pytest.mark.slow
def test_val_parity_coco8(shared, official, tmp_path):
    coco8 = shared / "data" / "coco8" / "coco8.yaml"
    res = _val(tmp_path, "--weights", str(shared / "weights" / "yolov5n.pt"), "--data", str(coco8), "--imgsz", "640")
    _check_against(res, official["yolov5n.pt on data/coco8 val, imgsz 640"])


@pytest.mark.slow
def test_val_parity_bccd_320(shared, official, tmp_path):
    weights, bccd = shared / "weights" / "yolov5n-bccd.pt", shared / "data" / "bccd" / "bccd.yaml"
    res = _val(tmp_path, "--weights", str(weights), "--data", str(bccd), "--imgsz", "320", "--noplots")
    _check_against(res, official["yolov5n-bccd.pt on data/bccd val, imgsz 320"])


@pytest.mark.slow
def test_val_fla_cfg_with_plain_weights_matches_plain(shared, official, tmp_path):
    coco8 = shared / "data" / "coco8" / "coco8.yaml"
    args = ("--weights", str(shared / "weights" / "yolov5n.pt"), "--data", str(coco8), "--imgsz", "640", "--noplots")
    res = _val(tmp_path, "--cfg", "models/yolov5n-fla.yaml", *args)
    _check_against(res, official["yolov5n.pt on data/coco8 val, imgsz 640"])


def test_val_cli_builtin_dataset_tiny_model(tmp_path):
    from models.yolo import DetectionModel
    from utils.checkpoint import model_to_dict, save_checkpoint

    model = DetectionModel("yolov5n.yaml", nc=4, verbose=False)
    model.names = ["circle", "square", "triangle", "star"]
    weights = save_checkpoint({"model": model_to_dict(model)}, tmp_path / "tiny.pt")
    args = ("--weights", str(weights), "--imgsz", "64", "--batch-size", "16", "--workers", "0", "--device", "cpu")
    r = run_main("val.py", *args, "--save-txt", "--project", str(tmp_path), "--name", "v")
    assert r.returncode == 0, r.stderr[-2000:]
    res = json.loads((tmp_path / "v" / "results.json").read_text())
    assert res["all"]["images"] == 32 and res["all"]["instances"] > 0
    assert 0 <= res["all"]["mAP50"] <= 1 and len(res["maps"]) == 4
    assert (tmp_path / "v" / "confusion_matrix.png").is_file() and (tmp_path / "v" / "labels").is_dir()
