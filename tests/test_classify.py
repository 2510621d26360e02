"""Classification: Classify head and cut models, ImageFolder data, transforms, criterion, evaluator, predict parts."""

from __future__ import annotations

import logging
import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models.classify import ClassificationModel, Classify, classifier_yaml, default_cutoff
from models.yolo import load_model_yaml
from utils.classify.augment import center_crop, color_jitter, normalize, random_resized_crop
from utils.classify.dataset import create_classification_dataloader, scan_folder, split_dir
from utils.classify.loss import ClassifyLoss
from utils.classify.metrics import ClassifyEvaluator
from utils.classify.predict import annotate, postprocess, result_text
from utils.errors import DataError, UserError


def _image(path, rng, size=(30, 40)):
    im = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    cv2.imwrite(str(path), im)


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory):
    """train/ and val/ with classes a, b, c (4 / 2 images of 30x40 each), plus a text file and a broken .jpg."""
    root = tmp_path_factory.mktemp("cls") / "data"
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("val", 2)):
        for c in "abc":
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                _image(root / split / c / f"{c}{i}.jpg", rng)
    (root / "train" / "a" / "notes.txt").write_text("not an image")
    (root / "train" / "b" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_cut_detector_matches_official_layout():
    d = load_model_yaml("yolov5n.yaml")[0]
    model = ClassificationModel(classifier_yaml(d, nc=3))
    assert len(model.model) == 10 and isinstance(model.model[-1], Classify) and model.model[-1].i == 9
    assert [m.type.rsplit(".", 1)[-1] for m in model.model][-2:] == ["C3", "Classify"]
    assert model(torch.rand(2, 3, 64, 64)).shape == (2, 3)
    assert model.model[-1].conv.conv.in_channels == 256  # yolov5n's SPPF input, as official


def test_fla_cut_keeps_the_fla_layer():
    d = load_model_yaml("yolov5n-fla.yaml")[0]
    assert default_cutoff(d["backbone"]) == 11  # Classify takes SPPF's place
    kinds = [m.type.rsplit(".", 1)[-1] for m in ClassificationModel(classifier_yaml(d, 2)).model]
    assert kinds[-2:] == ["FLA", "Classify"]
    kinds = [m.type.rsplit(".", 1)[-1] for m in ClassificationModel(classifier_yaml(d, 2, cutoff=10)).model]
    assert "FLA" not in kinds  # an explicit --cutoff 10 replaces the FLA layer itself
    with pytest.raises(UserError, match="cutoff"):
        classifier_yaml(d, 2, cutoff=99)


def test_torchvision_random_and_local_weights(tmp_path):
    from models.torchvision_cls import torchvision_classifier

    net = torchvision_classifier("shufflenet_v2_x0_5", 3, pretrained=False)
    assert net(torch.rand(1, 3, 64, 64)).shape == (1, 3)
    f = tmp_path / "sn.pth"
    torch.manual_seed(1)
    ref = torchvision_classifier("shufflenet_v2_x0_5", 1000, pretrained=False).net
    torch.save(ref.state_dict(), f)
    loaded = torchvision_classifier("shufflenet_v2_x0_5", 3, pretrained=str(f))
    assert torch.equal(loaded.net.conv1[0].weight, ref.conv1[0].weight) and loaded.net.fc.out_features == 3
    with pytest.raises(UserError, match="not found"):
        torchvision_classifier("shufflenet_v2_x0_5", 3, pretrained=str(tmp_path / "missing.pth"))
    with pytest.raises(UserError, match="torchvision"):
        torchvision_classifier("resnet_nonexistent", 3)


def test_scan_skips_bad_files_with_one_warning_each(tiny_folder, caplog, monkeypatch):
    with caplog.at_level(logging.WARNING):
        classes, samples = scan_folder(tiny_folder / "train")
    assert classes == ["a", "b", "c"] and len(samples) == 12
    skipped = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(skipped) == 2 and any("notes.txt" in s for s in skipped) and any("broken.jpg" in s for s in skipped)
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # the options check reads the class names without warning again
        from utils.classify.config import _data

        assert _data(str(tiny_folder))["names"] == ["a", "b", "c"]
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]
    from utils.classify.dataset import ClassificationDataset

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)  # a DDP rank other than 0
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    with caplog.at_level(logging.WARNING):
        assert len(ClassificationDataset(tiny_folder / "train", 32)) == 12
    assert not [r for r in caplog.records if "skipping" in r.getMessage()]


def test_no_classes_or_empty_class_is_an_error(tmp_path):
    (tmp_path / "val").mkdir()
    with pytest.raises(DataError, match="no class folders"):
        scan_folder(tmp_path / "val")
    (tmp_path / "val" / "cat").mkdir()
    with pytest.raises(DataError, match="'cat' has no images"):
        scan_folder(tmp_path / "val")
    with pytest.raises(DataError, match="folder not found"):
        split_dir(tmp_path / "missing", "val")


def test_center_crop_is_official_square_crop_and_resize():
    im = np.arange(40 * 60 * 3, dtype=np.uint8).reshape(40, 60, 3)
    out = center_crop(im, 20)
    ref = cv2.resize(im[:, 10:50], (20, 20), interpolation=cv2.INTER_LINEAR)
    assert out.shape == (20, 20, 3) and np.array_equal(out, ref)


def test_train_augmentations_are_seeded_and_sized():
    im = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    np.random.seed(3)
    a = color_jitter(random_resized_crop(im, 32))
    np.random.seed(3)
    b = color_jitter(random_resized_crop(im, 32))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    x = normalize(torch.full((1, 3, 2, 2), 255, dtype=torch.uint8))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225]))


def test_loader_batches_and_repeatable_epochs(tiny_folder):
    loader, ds = create_classification_dataloader(tiny_folder / "train", 32, 5, augment=True, workers=0, seed=1)
    ims, labels = next(iter(loader))
    assert ims.shape == (5, 3, 32, 32) and ims.dtype == torch.uint8 and labels.dtype == torch.long
    again, _ = create_classification_dataloader(tiny_folder / "train", 32, 5, augment=True, workers=0, seed=1)
    assert torch.equal(next(iter(again))[0], ims)  # the epoch-0 pass depends only on (seed, epoch)


def test_criterion_is_label_smoothed_cross_entropy():
    logits, labels = torch.randn(4, 3), torch.tensor([0, 2, 1, 1])
    out = ClassifyLoss(hyp={"label_smoothing": 0.1})(logits, (None, labels))
    assert math.isclose(float(out.total), float(F.cross_entropy(logits, labels, label_smoothing=0.1)), rel_tol=1e-6)
    assert out.items.shape == (1,)


def test_evaluator_top1_top5_and_per_class():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    ev = ClassifyEvaluator(["a", "b", "c"])
    ev.update(list(probs[:2]), (None, torch.tensor([0, 1])))
    ev.update(list(probs[2:]), (None, torch.tensor([1, 2])))
    m = ev.summarize()
    assert (m.top1, m.top5, m.images, m.fitness) == (0.5, 1.0, 4, 0.5)
    assert m.per_class["b"] == (2, 0.0, 1.0) and m.row == (0.5, 1.0)


def test_postprocess_text_and_annotation():
    probs = postprocess(torch.tensor([[2.0, 0.0, 1.0]]))
    assert torch.isclose(probs[0].sum(), torch.tensor(1.0))
    assert result_text(probs[0], {0: "ant", 1: "bee", 2: "wasp"}).splitlines() == ["0.67 ant", "0.24 wasp", "0.09 bee"]
    im = np.zeros((120, 160, 3), np.uint8)
    drawn, rows = annotate(im, probs[0], {0: "ant", 1: "bee", 2: "wasp"})
    assert drawn.shape == im.shape and drawn.max() == 255 and rows[0] == "0.67 ant"


def test_study_table_reports_welch_t():
    from benchmarks.ablate_classify import parse_opt, table

    md = table({"yolov5n": [0.80, 0.82, 0.81], "yolov5n-fla": [0.78, 0.80, 0.79]}, parse_opt([]))
    assert "| yolov5n-fla | 3 | 0.780, 0.800, 0.790 | 0.7900 | 0.0100 | -2.45 | 4.0 | 0.070 |" in md
    assert "(3 finished for every model)" in md


def test_welch_p_matches_student_t_tables():
    from benchmarks.stats import t_two_sided_p, welch_test

    assert abs(t_two_sided_p(2.228, 10) - 0.0500) < 1e-4 and abs(t_two_sided_p(-2.0, 10) - 0.07339) < 1e-5
    assert abs(t_two_sided_p(0.0, 5) - 1.0) < 1e-12 and t_two_sided_p(12.71, 1) < 0.0501
    t, df, p = welch_test([0.78, 0.80, 0.79], [0.80, 0.82, 0.81])  # equal spreads: df = 2 (n - 1)
    assert round(t, 4) == -2.4495 and abs(df - 4.0) < 1e-9 and abs(p - 0.07048) < 1e-5


def test_study_run_lock_shares_runs_between_processes(tmp_path):
    import os

    from benchmarks.ablate_classify import run_lock

    run = tmp_path / "yolov5n-s0"
    with run_lock(run) as mine:
        assert mine and (run / ".lock").read_text() == str(os.getpid())
        with run_lock(run) as other:  # a second claim while a live process holds it
            assert not other
    assert not (run / ".lock").exists()
    (run / ".lock").write_text("999999999")  # a dead process's lock is taken over
    with run_lock(run) as mine:
        assert mine
