"""Segmentation models: official seg yamls build the official architecture; ours match them; official -seg.pt loads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from models.load import load_model
from models.yolo import SegmentationModel, is_segment_yaml
from tests.conftest import SHARED
from tests.helpers import zero_weight_init
from tests.test_hub_models import set_reference_weights
from utils.paths import MODELS_DIR

SEG_YAMLS = sorted(p.stem for p in (SHARED / "reference" / "segment_models" / "yaml").glob("*.yaml")) or ["(absent)"]


@pytest.mark.parametrize("name", SEG_YAMLS)
def test_seg_yaml_matches_official(shared, name):
    """Our yaml of each size has the official rows; n and s built: official parameter count, prediction, protos."""
    cfg = shared / "reference" / "segment_models" / "yaml" / f"{name}.yaml"
    if not cfg.is_file():
        pytest.skip("../shared/reference/segment_models/yaml is absent")
    official, ours = (
        yaml.safe_load(cfg.read_text()),
        yaml.safe_load((MODELS_DIR / "segment" / f"{name}.yaml").read_text()),
    )
    for k in ("nc", "depth_multiple", "width_multiple", "anchors", "backbone", "head"):
        assert ours[k] == official[k], k
    if name not in ("yolov5n-seg", "yolov5s-seg"):  # same rows as official; building the large ones costs CPU time
        return
    ref = np.load(cfg.parents[1] / f"{name}.npz")
    with zero_weight_init():  # every weight is set by the reference rule below
        model = SegmentationModel(ours, verbose=False)
    assert sum(p.numel() for p in model.parameters()) == int(ref["parameters"])
    set_reference_weights(model)
    with torch.no_grad():
        y, proto, _ = model.eval()(torch.from_numpy(ref["x"]))
    for a, b in ((y, ref["y"]), (proto, ref["proto"])):
        assert a.shape == b.shape
        assert np.abs(a.numpy() - b).max() <= 1e-4 * np.abs(b).max()


def test_seg_fla_yaml_builds_and_trains_shapes():
    d = yaml.safe_load((MODELS_DIR / "segment" / "yolov5n-seg-fla.yaml").read_text())
    assert is_segment_yaml(d) and any(row[2] == "FLA" for row in d["backbone"])
    d.update(nc=3, width_multiple=0.125)
    model = SegmentationModel(d, verbose=False).train()
    levels, protos = model(torch.rand(2, 3, 64, 96))
    assert [tuple(x.shape) for x in levels] == [(2, 3, 8, 12, 40), (2, 3, 4, 6, 40), (2, 3, 2, 3, 40)]
    assert tuple(protos.shape) == (2, 32, 16, 24)
    model.eval().model[-1].export = True
    pred, protos = model(torch.rand(1, 3, 64, 64))
    assert tuple(pred.shape) == (1, 3 * (64 + 16 + 4), 40) and tuple(protos.shape) == (1, 32, 16, 16)


def test_official_seg_checkpoint_loads_safely(shared):
    f = shared / "weights" / "yolov5n-seg-coco128.pt"
    if not f.is_file():
        pytest.skip("no official seg checkpoint")
    model = load_model(f, fuse=True)
    assert isinstance(model, SegmentationModel) and model.model[-1].nm == 32 and len(model.names) == 80
    with torch.no_grad():
        pred, proto, levels = model(torch.zeros(1, 3, 64, 64))
    assert pred.shape == (1, 3 * (64 + 16 + 4), 117) and proto.shape == (1, 32, 16, 16) and len(levels) == 3
