"""The helpers that have one home (issue 11): class names, --imgsz rounding, test-time augmentation, image formats."""

from __future__ import annotations

import logging

import pytest
import torch

from utils.errors import UserError
from utils.img_size import check_img_size
from utils.names import names_dict, names_list


@pytest.mark.parametrize(
    "names, nc, as_dict",
    [
        (["a", "b"], 0, {0: "a", 1: "b"}),
        (("a", 2), 0, {0: "a", 1: "2"}),
        ({1: "b", 0: "a"}, 0, {0: "a", 1: "b"}),
        ({"1": "b", "0": "a"}, 0, {0: "a", 1: "b"}),  # JSON keys are strings
        ({0: "a", 2: "c"}, 0, {0: "a", 2: "c"}),  # gaps kept; callers that need none check them
        (None, 2, {0: "class0", 1: "class1"}),
        ([], 1, {0: "class0"}),
        ({}, 0, {}),
    ],
)
def test_names_dict_and_list(names, nc, as_dict):
    assert names_dict(names, nc) == as_dict
    assert names_list(names, nc) == [as_dict[k] for k in sorted(as_dict)]


@pytest.mark.parametrize("bad", ["person", 3, {"x": "a"}])
def test_names_bad_input_is_a_user_error(bad):
    with pytest.raises(UserError, match="class names"):
        names_list(bad)


def test_check_img_size_keeps_the_input_shape(caplog):
    with caplog.at_level(logging.WARNING):
        assert check_img_size(640, 32) == 640 and check_img_size([640], 32) == [640, 640]
        assert not caplog.text
        assert check_img_size(70, 32) == 96 and check_img_size((300, 500), 32) == [320, 512]
        assert check_img_size(20, 32, floor=32) == 32 and check_img_size(20, 32) == 32
        assert check_img_size([16], 32, floor=64) == [64, 64]
    assert "--imgsz 70 must be multiple of max stride 32, updating to 96" in caplog.text
    assert "--imgsz [300, 500] must be multiple of max stride 32, updating to [320, 512]" in caplog.text


def test_augmented_forward_model_backend_and_ensemble():
    from models.yolo import DetectionModel
    from utils.deploy.predictor import Ensemble, ModelPredictor, Predictor

    torch.manual_seed(0)
    model = DetectionModel({"nc": 2, "depth_multiple": 0.33, "width_multiple": 0.25, **_TINY}, verbose=False).eval()
    im = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        direct = model(im, augment=True)[0]
        assert torch.equal(ModelPredictor(model).augmented(im), direct)
        assert torch.equal(ModelPredictor(model)(im, augment=True), direct)  # the predictor's own forward
        both = ModelPredictor(Ensemble([model, model])).augmented(im)  # an ensemble: concatenated
        assert both.shape == (1, 2 * direct.shape[1], 7) and torch.equal(both[:, direct.shape[1] :], direct)
    assert Predictor().augmented(im) is None  # ONNX / TorchScript: no augmented forward
    assert ModelPredictor(torch.nn.Conv2d(3, 3, 1), names=[], stride=32).augmented(im) is None


def test_img_formats_have_one_home():
    import utils.data.labels as labels
    import utils.data.sources as sources

    assert sources.IMG_FORMATS is labels.IMG_FORMATS and "jpg" in labels.IMG_FORMATS


_TINY = {
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [64, 6, 2, 2]], [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "Conv", [256, 3, 2]],
                 [-1, 1, "Conv", [512, 3, 2]], [-1, 1, "Conv", [1024, 3, 2]]],
    "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]],
}  # fmt: skip
