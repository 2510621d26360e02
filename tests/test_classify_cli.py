"""classify/val.py, classify/predict.py, export and hub on a tiny classifier; parity with official on ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.helpers import in_child
from tests.test_classify import tiny_folder  # noqa: F401  (the session fixture)

REF = "reference/classify_yolov5n-cls-hymenoptera_224/labels"


@pytest.fixture(scope="module")
def tiny_cls(tmp_path_factory):
    """A width-0.25 yolov5n cut at its default cutoff, 3 classes (a, b, c), saved in our checkpoint format."""
    from models.classify import ClassificationModel, classifier_yaml
    from models.yolo import load_model_yaml
    from utils.checkpoint import model_to_dict, save_checkpoint

    torch.manual_seed(0)
    model = ClassificationModel(classifier_yaml(load_model_yaml("yolov5n.yaml")[0], 3))
    model.names = ["a", "b", "c"]
    f = tmp_path_factory.mktemp("tinycls") / "tiny-cls.pt"
    save_checkpoint({"model": model_to_dict(model, half=False)}, f)
    return f


def _val(weights, data, tmp_path, imgsz=32, **kw):
    from classify import val

    opt = val.parse_opt(["--weights", str(weights), "--data", str(data), "--imgsz", str(imgsz), "--device", "cpu",
                         "--workers", "0", "--project", str(tmp_path), "--batch-size", "16"])  # fmt: skip
    for k, v in kw.items():
        setattr(opt, k, v)
    return val.main(opt)


def _predict(weights, source, tmp_path, imgsz=32):
    from classify import predict

    args = ["--weights", str(weights), "--source", str(source), "--imgsz", str(imgsz), "--device", "cpu",
            "--save-txt", "--project", str(tmp_path)]  # fmt: skip
    return predict.main(predict.parse_opt(args))


def _labels(run: Path) -> dict:
    return {f.stem: [ln.split() for ln in f.read_text().splitlines()] for f in (run / "labels").glob("*.txt")}


def test_val_predict_export_and_hub(tiny_cls, tiny_folder, tmp_path, restore_logging):  # noqa: F811
    from utils.classify.hub import load
    from utils.deploy.export import run_export

    m = _val(tiny_cls, tiny_folder, tmp_path)
    assert m.images == 6 and 0 <= m.top1 <= m.top5 == 1.0  # 3 classes: top-5 always holds the label
    run = _predict(tiny_cls, tiny_folder / "val" / "a", tmp_path)
    rows = _labels(run)
    assert len(rows) == 2 and all(len(r) == 3 for r in rows.values())  # 'prob name' per class, best first
    assert (run / "a0.jpg").is_file()
    files = run_export(tiny_cls, imgsz=32, include=("onnx", "torchscript"))
    assert _val(files["onnx"], tiny_folder, tmp_path, batch_size=1).top1 == m.top1
    got = _labels(_predict(files["torchscript"], tiny_folder / "val" / "a", tmp_path))
    assert got.keys() == rows.keys()
    for stem, r in got.items():
        assert [x[1] for x in r] == [x[1] for x in rows[stem]]
        assert np.allclose([float(x[0]) for x in r], [float(x[0]) for x in rows[stem]], atol=0.011)
    res = load(tiny_cls, size=32)([str(tiny_folder / "val" / "b" / "b0.jpg")])
    assert len(res) == 1 and len(res.top5[0]) == 3 and abs(sum(p for _, p in res.top5[0]) - 1) < 1e-5


def test_cli_errors(tiny_cls, tmp_path, capsys, restore_logging):
    with pytest.raises(SystemExit) as e:
        _val(tiny_cls, tmp_path / "nowhere", tmp_path)
    assert e.value.code == 1 and capsys.readouterr().err.strip().startswith("error: --data")


# --- parity with official YOLOv5 (../shared) ---


def test_official_checkpoint_val_parity(shared, tmp_path, restore_logging):
    ref = json.loads((shared / "reference/official_classify.json").read_text())["val"]
    data = shared / "data/hymenoptera"
    m = _val(shared / "weights/yolov5n-cls-hymenoptera.pt", data, tmp_path, imgsz=224, batch_size=32)
    assert m.images == ref["images"]
    assert abs(m.top1 - ref["top1"]) <= 0.005 and abs(m.top5 - ref["top5"]) <= 0.005
    for name, acc in ref["per_class_top1"].items():
        assert abs(m.per_class[name][1] - acc) <= 0.005


def test_official_onnx_runs_in_val(shared, tmp_path, restore_logging):
    """The official ONNX export through classify/val.py on 3 images per class, scored as the .pt scores them."""
    for split in ("val/ants", "val/bees"):
        (tmp_path / "data" / split).mkdir(parents=True)
        for f in sorted((shared / "data/hymenoptera" / split).glob("*.jpg"))[:3]:
            (tmp_path / "data" / split / f.name).write_bytes(f.read_bytes())
    pt = _val(shared / "weights/yolov5n-cls-hymenoptera.pt", tmp_path / "data", tmp_path, imgsz=224)
    onnx = _val(shared / "weights/yolov5n-cls-hymenoptera-official.onnx", tmp_path / "data", tmp_path, imgsz=224)
    assert onnx.images == 6 and (onnx.top1, onnx.top5) == (pt.top1, pt.top5)


@pytest.mark.parametrize("weights", ["yolov5n-cls-hymenoptera.pt", "yolov5n-cls-hymenoptera-official.onnx"])
def test_official_predict_parity(shared, tmp_path, weights):
    """Official top-5 classes, probabilities within 0.01, for 16 of the reference images (val covers them all)."""
    from utils.classify.hub import load

    refs = sorted((shared / REF).glob("*.txt"))
    refs = refs[::5][:16]
    model = load(shared / "weights" / weights, device="cpu")
    images = [shared / "data/hymenoptera/val/bees" / f"{f.stem}.jpg" for f in refs]
    for i in range(0, len(images), 16):
        res = model([str(p) for p in images[i : i + 16]], bgr=False)
        for top5, f in zip(res.top5, refs[i : i + 16]):
            want = [ln.split() for ln in f.read_text().splitlines()]
            assert [n for n, _ in top5] == [w[1] for w in want], f.name
            assert all(abs(p - float(w[0])) <= 0.01 for (_, p), w in zip(top5, want)), f.name


def test_official_predict_cli_writes_official_rows(shared, tmp_path, restore_logging):
    src = tmp_path / "src"
    src.mkdir()
    refs = sorted((shared / REF).glob("*.txt"))[:1]
    for f in refs:
        im = cv2.imread(str(shared / "data/hymenoptera/val/bees" / f"{f.stem}.jpg"))
        cv2.imwrite(str(src / f"{f.stem}.png"), im)  # lossless copy
    rows = _labels(_predict(shared / "weights/yolov5n-cls-hymenoptera.pt", src, tmp_path, imgsz=224))
    for f in refs:
        want = [ln.split() for ln in f.read_text().splitlines()]
        assert [r[1] for r in rows[f.stem]] == [w[1] for w in want]
        assert all(abs(float(r[0]) - float(w[0])) <= 0.011 for r, w in zip(rows[f.stem], want))


@pytest.mark.slow
@in_child
def test_openvino_export_gives_the_pt_probabilities(tiny_cls, tiny_folder, tmp_path):  # noqa: F811
    pytest.importorskip("openvino")
    import shutil

    from utils.classify.hub import load
    from utils.deploy.export import run_export

    w = tmp_path / tiny_cls.name
    shutil.copy(tiny_cls, w)
    folder = run_export(w, imgsz=32, include=("openvino",))["openvino"]
    images = [str(p) for p in sorted((tiny_folder / "val").rglob("*.jpg"))]
    ref, got = load(w, size=32)(images), load(folder, size=32)(images)
    assert all(torch.allclose(a, b, atol=1e-4) for a, b in zip(ref.probs, got.probs))


def test_predict_on_a_video(tiny_cls, tmp_path, restore_logging):
    """A video source: one labels/<stem>_<frame>.txt per frame and an annotated .mp4, as official."""
    f = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(f), cv2.VideoWriter_fourcc(*"mp4v"), 5, (48, 40))
    for i in range(3):
        writer.write(np.full((40, 48, 3), 60 * i, np.uint8))
    writer.release()
    run = _predict(tiny_cls, f, tmp_path)
    assert sorted(_labels(run)) == ["clip_1", "clip_2", "clip_3"] and (run / "clip.mp4").is_file()
