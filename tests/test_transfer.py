"""Structural weight transfer: layer alignment by known answers, official yolov5n into the FLA config."""

from __future__ import annotations

import pytest
import torch

from models.load import model_from_dict
from models.yolo import DetectionModel
from utils.checkpoint import load_checkpoint
from utils.transfer import align_layers, layer_signatures, remap_state_dict, transfer_weights

CONV, C3, SPPF, DET = ("Conv", "[64]"), ("C3", "[64]"), ("SPPF", "[64, 5]"), ("Detect", "['nc', 'anchors']")


def test_align_skips_inserted_layer():
    src = [CONV, C3, SPPF, CONV, DET]
    dst = [CONV, C3, ("FLA", "[8]"), SPPF, CONV, DET]
    assert align_layers(src, dst) == {0: 0, 1: 1, 2: 3, 3: 4, 4: 5}
    assert align_layers(dst, src) == {0: 0, 1: 1, 3: 2, 4: 3, 5: 4}


def test_align_prefers_exact_args_and_relatives():
    src = [CONV, ("Conv", "[128]"), C3]
    dst = [("Conv", "[128]"), ("C3FLA", "[64, 8]")]
    assert align_layers(src, dst) == {1: 0, 2: 1}  # Conv[128] exact, C3 -> C3FLA as a relative


def test_signatures_treat_none_string_as_none():
    a = layer_signatures({"backbone": [[-1, 1, "nn.Upsample", ["None", 2, "nearest"]]], "head": []})
    b = layer_signatures({"backbone": [[-1, 1, "nn.Upsample", [None, 2, "nearest"]]], "head": []})
    assert a == b == [("Upsample", "[None, 2, 'nearest']")]


def test_remap_drops_unmapped_layers():
    sd = {"model.0.w": torch.zeros(1), "model.1.w": torch.ones(1), "model.2.w": torch.full((1,), 2.0)}
    out = remap_state_dict(sd, {0: 0, 2: 3})
    assert set(out) == {"model.0.w", "model.3.w"} and out["model.3.w"].item() == 2.0


@pytest.fixture(scope="module")
def official_n(shared):
    return load_checkpoint(shared / "weights" / "yolov5n.pt")["model"]


def test_official_into_fla_config_lands_everything(official_n):
    src = model_from_dict(official_n).eval()
    fla = DetectionModel("yolov5n-fla.yaml", verbose=False)
    n, total = transfer_weights(official_n["state_dict"], official_n["yaml"], fla)
    assert n == len(official_n["state_dict"]) == 349
    assert total > n  # the FLA layer's own tensors stay new
    fla.eval()
    x = torch.rand(1, 3, 128, 160)
    with torch.no_grad():
        y_src, y_fla = src(x)[0], fla(x)[0]
    assert y_src.shape == y_fla.shape == (1, 3 * (16 * 20 + 8 * 10 + 4 * 5), 85)
    torch.testing.assert_close(y_fla, y_src, atol=1e-5, rtol=1e-5)  # the FLA branch starts at zero


def test_other_nc_keeps_new_detect_convs(official_n, caplog):
    model = DetectionModel("yolov5n.yaml", nc=3, verbose=False)
    before = model.model[-1].m[0].weight.clone()
    with caplog.at_level("INFO"):
        n, total = transfer_weights(official_n["state_dict"], official_n["yaml"], model, source="yolov5n.pt")
    assert (n, total) == (349 - 6, 349)  # 3 Detect convs x (weight, bias) differ in shape
    assert torch.equal(model.model[-1].m[0].weight, before)
    assert torch.equal(model.model[0].conv.weight, official_n["state_dict"]["model.0.conv.weight"])
    assert "Transferred 343/349 items from yolov5n.pt" in caplog.text


def test_load_model_with_cfg_transfers(shared):
    from models.load import load_model

    model = load_model(shared / "weights" / "yolov5n.pt", fuse=False, cfg="yolov5n-fla.yaml")
    assert not model.training and len(model.names) == 80 and model.names[0] == "person"
    assert any(type(m).__name__ == "FLA" for m in model.model)
