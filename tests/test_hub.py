"""Python API (utils.deploy.hub): path, numpy, PIL and list inputs, Detections views, tables, render, save, parity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from utils.deploy.hub import Detections, load
from utils.errors import UserError


@pytest.fixture(scope="module")
def model(tiny_weights):
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
    crops = r.crop(save_dir=tmp_path / "c")
    assert len(crops) == sum(len(p) for p in r.xyxy) and crops[0]["im"].ndim == 3 and "cat" in crops[0]["label"]
    assert len(list((tmp_path / "c" / "crops").rglob("*.jpg"))) == len(crops)
    r.show()  # no display here: one warning, nothing raised


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
    from tests.helpers import TINY

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


# ---------------------------------------------------------------- hubconf.py (torch.hub entry points)


def _hub(name: str, **kwargs):
    from tests.conftest import ROOT

    return torch.hub.load(str(ROOT), name, source="local", **kwargs)


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_hub_custom_inputs_and_trace(tiny_weights, tmp_path):
    m = _hub("custom", path=str(tiny_weights.with_suffix("")), device="cpu")  # a bare name gets '.pt'
    f = tmp_path / "a.jpg"
    Image.fromarray(_image()).save(f)
    for inputs in (str(f), _image(), Image.open(f), [f, _image(30, 50)]):
        assert isinstance(m(inputs), Detections)
    im = torch.zeros(1, 3, 64, 64)
    y = m(im)
    assert y.shape == (1, 3 * (8 * 8 + 4 * 4 + 2 * 2), 8)
    traced = torch.jit.trace(m, [im])
    torch.testing.assert_close(traced(im), y)
    bare = _hub("custom", path=str(tiny_weights), autoshape=False)
    assert type(bare).__name__ == "DetectionModel" and bare.names == ["cat", "dog", "bird"]


def test_hub_named_models(tiny_weights, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    m = _hub("yolov5n", pretrained=False, classes=3, autoshape=False)
    assert m.yaml["nc"] == 3 and m.model[-1].no == 8
    fla = _hub("yolov5n-fla", pretrained=False, classes=2)
    assert any(type(x).__name__ == "FLA" for x in fla.model.modules()) and len(fla.names) == 2
    if not (tmp_path / "yolov5n.pt").exists():
        from utils.paths import ROOT

        if not (ROOT / "yolov5n.pt").exists():
            with pytest.raises(UserError, match=r"yolov5n.pt not found: put it in .* nothing is downloaded"):
                _hub("yolov5n")
    with pytest.raises(UserError, match="weights file not found"):
        _hub("yolov5s", path=str(tmp_path / "none.pt"))
    with pytest.raises(UserError, match="unknown model"):
        from hubconf import _create

        _create("yolov5q")


@pytest.mark.slow
def test_hub_pretrained_from_path_and_cli(shared, tmp_path, monkeypatch):
    import shutil

    from tests.helpers import run_main

    w = shutil.copy(shared / "weights/yolov5n.pt", tmp_path / "yolov5n.pt")
    m = _hub("yolov5n", path=w, device="cpu")
    res = m(str(shared / "images/bus.jpg"))
    assert "4 persons, 1 bus" in str(res)
    two = _hub("yolov5n", path=w, classes=2, autoshape=False)  # re-targeted: backbone kept, head rebuilt
    assert two.model[-1].no == 7
    monkeypatch.chdir(tmp_path)  # `python hubconf.py` in-process (tests/test_official_ci.py runs the script itself)
    r = run_main("hubconf.py", "--model", "yolov5n")  # yolov5n.pt found in the current folder
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "Speed:" in r.stdout
    r = run_main("hubconf.py", "--model", "yolov5s", "--path", tmp_path / "no.pt")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        f"error: weights file not found: {tmp_path / 'no.pt'}"
    ]
