"""torch.hub / Python API classifiers: the top-5 per image equals classify/predict.py's; print, tables, render, save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import ROOT


def _predict_rows(weights: Path, source: Path, project: Path) -> dict:
    """classify/predict.py --save-txt, in process -> {stem: [(name, prob)]}."""
    from classify import predict

    args = ["--weights", str(weights), "--source", str(source), "--imgsz", "224", "--device", "cpu", "--save-txt",
            "--nosave", "--project", str(project)]  # fmt: skip
    run = predict.main(predict.parse_opt(args))
    return {
        f.stem: [(ln.split()[1], float(ln.split()[0])) for ln in f.read_text().splitlines()]
        for f in (run / "labels").glob("*.txt")
    }


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hub_classifier_top5_matches_predict(shared, tmp_path, restore_logging):
    from utils.classify.results import Classifications

    weights = shared / "weights/yolov5n-cls-hymenoptera.pt"
    ant = sorted((shared / "data/hymenoptera/val/ants").glob("*.jpg"))[0]
    src = tmp_path / "src"
    src.mkdir()
    for f in (shared / "images/bus.jpg", ant):
        (src / f.name).write_bytes(f.read_bytes())
    want = _predict_rows(weights, src, tmp_path / "runs")

    model = torch.hub.load(str(ROOT), "custom", path=str(weights), source="local", device="cpu")
    res = model(sorted(str(p) for p in src.iterdir()))
    assert isinstance(res, Classifications) and len(res) == 2
    for f, top5, table in zip(res.files, res.top5, res.tables()):
        rows = want[Path(f).stem]
        assert [n for n, _ in top5] == [n for n, _ in rows] == [r["name"] for r in table]
        assert all(abs(p - q) <= 0.006 for (_, p), (_, q) in zip(top5, rows))  # the txt rows are rounded to 0.01
    text = str(res)
    assert "bus.jpg: " in text and f"{ant.name}: " in text and "Speed:" in text
    drawn = res[0].render()[0]
    assert drawn.shape == res.ims[0].shape and not np.array_equal(drawn, res.ims[0])  # the top-5 text is drawn
    out = res.save(tmp_path / "saved", exist_ok=True)
    assert sorted(p.name for p in out.iterdir()) == sorted(res.files)


def test_openvino_classifier_folder_is_recognised(tmp_path):
    """hubconf.custom picks the top-5 Classifier for an OpenVINO folder by the task in its metadata yaml."""
    from utils.classify.hub import is_classifier_file
    from utils.deploy.hub_models import custom_path

    folder = tmp_path / "best_openvino_model"
    folder.mkdir()
    assert custom_path(folder) == folder  # an export folder is kept as official's hub keeps it
    assert not is_classifier_file(folder)  # no .xml: not an OpenVINO model
    (folder / "best.xml").write_text("<net/>")
    (folder / "best.yaml").write_text("stride: 32\nnames: {0: ants, 1: bees}\ntask: classify\n")
    assert is_classifier_file(folder) and is_classifier_file(folder / "best.xml")
    (folder / "best.yaml").write_text("stride: 32\nnames: {0: person}\n")  # a detector's
    assert not is_classifier_file(folder)
