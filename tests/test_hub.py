"""Python API (utils.deploy.hub): path, numpy, PIL and list inputs, Detections views, tables, render, save, parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.test_detect import tiny_weights  # noqa: F401  (session fixture shared with the detect tests)
from utils.deploy.hub import Detections, load
from utils.errors import UserError


@pytest.fixture(scope="module")
def model(tiny_weights):  # noqa: F811
    m = load(tiny_weights, device="cpu", size=64)
    m.max_det = 5
    return m


def _image(h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(1).integers(0, 255, (h, w, 3), dtype=np.uint8)


def test_inputs_path_numpy_pil_list(model, tmp_path):
    rgb = _image()
    Image.fromarray(rgb).save(tmp_path / "x.png")
    by_path = model(tmp_path / "x.png")
    by_numpy = model(rgb)
    by_pil = model(Image.fromarray(rgb))
    by_bgr = model(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)
    for r in (by_numpy, by_pil, by_bgr):
        assert torch.allclose(r.xyxy[0], by_path.xyxy[0])
    assert by_path.files == ["x.png"] and len(by_path) == 1
    batch = model([tmp_path / "x.png", rgb, _image(100, 40)])
    assert len(batch) == 3 and batch.shape[0] == 3 and batch.shape[2] % 32 == 0
    assert torch.allclose(batch.xyxy[0], batch.xyxy[1])


def test_views_and_settings(model):
    r = model(_image())
    p = r.xyxy[0]
    assert 0 < len(p) <= 5 and p.shape[1] == 6  # max_det respected
    h, w = 48, 64
    assert (p[:, [0, 2]] <= w).all() and (p[:, [1, 3]] <= h).all() and (p[:, :4] >= 0).all()
    assert torch.allclose(r.xywh[0][:, 2], p[:, 2] - p[:, 0])
    assert torch.allclose(r.xyxyn[0][:, 0], p[:, 0] / w) and torch.allclose(r.xywhn[0][:, 3], r.xywh[0][:, 3] / h)
    rows = r.tables()[0]
    assert rows[0].keys() == {"xmin", "ymin", "xmax", "ymax", "confidence", "class", "name"}
    assert rows[0]["name"] == "cat" and rows[0]["class"] == 0
    assert [len(x) for x in r.to_list()] == [1]
    model.classes = [2]
    try:
        assert len(model(_image()).xyxy[0]) == 0  # only 'bird' allowed, the model only finds cats
    finally:
        model.classes = None
    model.conf = 0.999
    try:
        assert len(model(_image()).xyxy[0]) == 0
    finally:
        model.conf = 0.25


def test_render_save_print(model, tmp_path, caplog):
    r = model([_image(), _image(40, 40)])
    ims = r.render()
    assert [im.shape for im in ims] == [(48, 64, 3), (40, 40, 3)]
    assert (ims[0] != r.ims[0]).any()  # boxes drawn on a copy
    out = r.save(tmp_path / "exp")
    assert sorted(p.name for p in out.iterdir()) == ["image0.jpg", "image1.jpg"]
    text = str(r)
    assert text.startswith("image 1/2: 48x64 ") and "cat" in text and "Speed:" in text
    assert repr(r).startswith("<Detections: 2 image(s)")


def test_pandas_optional(model):
    r = model(_image())
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="tables"):
            r.pandas()
    else:
        assert list(r.pandas()[0]["name"]) == [row["name"] for row in r.tables()[0]]


def test_bad_inputs(model, tmp_path):
    with pytest.raises(UserError, match="cannot read image"):
        model(tmp_path / "missing.jpg")
    with pytest.raises(UserError, match="unsupported image type"):
        model(3.5)


def test_model_instance_accepted():
    from models.yolo import DetectionModel
    from tests.test_detect import TINY

    d = load(DetectionModel(TINY, verbose=False), size=64)(_image())
    assert isinstance(d, Detections) and d.xyxy[0].shape[1] == 6


@pytest.mark.slow
def test_official_weights_match_reference(shared):
    m = load(shared / "weights/yolov5n.pt", device="cpu")
    r = m(shared / "images/zidane.jpg")
    names = [row["name"] for row in r.tables()[0]]
    assert sorted(names) == ["person", "person", "tie"]
    ref = np.loadtxt(shared / "reference/detect_yolov5n_640/zidane.txt", ndmin=2)
    assert np.allclose(np.sort(r.xywhn[0][:, 4].numpy()), np.sort(ref[:, 5]), atol=0.01)
