"""The segmentation steps of official YOLOv5's CI (.github/workflows/ci-testing.yml), in-process, on coco128-seg.

As the issue asks: --data points at ../shared/data/coco128-seg; the first training starts from yolov5n.pt with
--cfg yolov5n-seg.yaml (the Detect rows transfer into the Segment head), the second from scratch. Then val, predict
and TorchScript export of the official -seg checkpoint and of the run's best.pt.
"""

from __future__ import annotations

import shutil

import pytest


@pytest.fixture(scope="module")
def ci_dir(shared, tmp_path_factory):
    d = tmp_path_factory.mktemp("segci")
    (d / "images").mkdir()
    for name in ("bus.jpg", "zidane.jpg"):
        shutil.copy(shared / "images" / name, d / "images" / name)
    shutil.copy(shared / "weights" / "yolov5n-seg-coco128.pt", d / "yolov5n-seg.pt")
    return d


@pytest.mark.slow
def test_official_ci_segment_steps(shared, ci_dir):
    import export
    from segment import predict, train, val

    data = str(shared / "data" / "coco128-seg" / "coco128-seg.yaml")
    runs = ci_dir / "runs"
    common = ["--imgsz", "64", "--batch", "32", "--epochs", "1", "--device", "cpu", "--data", data, "--workers", "0"]
    best = train.main(train.parse_opt(["--weights", str(shared / "weights" / "yolov5n.pt"), "--cfg", "yolov5n-seg.yaml",
                                       *common, "--project", str(runs / "train-seg")]))  # fmt: skip
    scratch = train.main(train.parse_opt(["--weights", "", "--cfg", "yolov5n-seg.yaml", *common,
                                          "--project", str(runs / "train-seg")]))  # fmt: skip
    assert (scratch / "weights" / "best.pt").is_file() and (scratch / "results.csv").is_file()
    for w in (ci_dir / "yolov5n-seg.pt", best / "weights" / "best.pt"):
        m = val.main(val.parse_opt(["--imgsz", "64", "--batch", "32", "--weights", str(w), "--device", "cpu",
                                    "--data", data, "--project", str(runs / "val-seg"), "--workers", "0"]))  # fmt: skip
        assert m.seen == 128 and len(m.row) == 8
        out = predict.main(predict.parse_opt(["--imgsz", "64", "--weights", str(w), "--device", "cpu",
                                              "--source", str(ci_dir / "images"),
                                              "--project", str(runs / "predict-seg")]))  # fmt: skip
        assert (out / "bus.jpg").is_file()
        files = export.main(export.parse_opt(["--weights", str(w), "--img", "64", "--include", "torchscript",
                                              "--device", "cpu"]))  # fmt: skip
        assert files
