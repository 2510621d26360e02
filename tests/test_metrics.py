"""Hand-computed metric cases: matching, AP, P/R at best F1, confusion matrix, fitness, edge cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils.val.metrics import ConfusionMatrix, ap_per_class, compute_ap, fitness, match_predictions, smooth
from utils.val.plots import plot_confusion_matrix

IOUV = torch.linspace(0.5, 0.95, 10)


def test_fitness_weights():
    assert fitness(np.array([[0.9, 0.8, 0.5, 0.3]])).tolist() == pytest.approx([0.05 + 0.27])
    assert fitness(np.array([[0, 0, 0.5, 0.3, 7.0, 7.0]])).shape == (1,)  # extra columns ignored


def test_smooth_keeps_constant_and_length():
    y = np.full(1000, 0.7)
    assert np.allclose(smooth(y, 0.1), 0.7) and smooth(y, 0.1).shape == (1000,)


def test_compute_ap_known_curves():
    # a perfect curve scores 0.995, not 1: the padded end point (recall 1, precision 0) costs half the last step
    assert compute_ap(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(0.995)
    # half the labels found at precision 1: envelope 1 up to recall 0.5, then falls linearly to 0 at recall 1
    assert compute_ap(np.array([0.5]), np.array([1.0]))[0] == pytest.approx(0.75)
    assert compute_ap(np.array([0.0]), np.array([0.0]))[0] == pytest.approx(0.0, abs=1e-3)
    # a false positive at recall 0.5: at x = 0.5 np.interp takes the later point (0.5), so 0.49 + 0.0075 + 0.125
    ap, mpre, mrec = compute_ap(np.array([0.5, 0.5]), np.array([1.0, 0.5]))
    assert ap == pytest.approx(0.6225)
    assert mpre.tolist() == [1.0, 1.0, 0.5, 0.0] and mrec.tolist() == [0.0, 0.5, 0.5, 1.0]


def test_compute_ap_envelope_lifts_precision_dips():
    # precision dips to 0.5 then recovers to 1.0 at recall 1: envelope is 1 everywhere
    ap, mpre, _ = compute_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 1.0]))
    assert ap == pytest.approx(0.995) and mpre[:-1].min() == 1.0


def test_match_predictions_one_to_one_and_class_aware():
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30.0]])
    dets = torch.tensor(
        [
            [0, 0, 10, 10, 0.9, 0],  # exact match of label 0
            [0, 0, 10, 5, 0.8, 0],  # IoU 0.5 with label 0, which is already taken
            [0, 0, 10, 10, 0.7, 1],  # right box, wrong class
            [20, 20, 30, 27.2, 0.6, 1],  # IoU 0.72 with label 1
        ]
    )
    correct = match_predictions(dets, labels, IOUV)
    assert correct.shape == (4, 10) and correct.dtype == torch.bool
    assert correct[0].all()
    assert not correct[1].any() and not correct[2].any()
    assert correct[3].tolist() == [True] * 5 + [False] * 5  # 0.50 .. 0.70 pass, 0.75 .. 0.95 fail


def test_match_predictions_takes_highest_iou_per_detection():
    # one detection overlapping two labels: it goes to the label with the higher IoU, the other stays unmatched
    labels = torch.tensor([[0, 0, 0, 10, 10], [0, 2, 0, 12, 10.0]])  # IoU with det: 0.8 and 1.0
    dets = torch.tensor([[2, 0, 12, 10, 0.9, 0]])
    assert match_predictions(dets, labels, IOUV)[0].all()


def test_match_predictions_label_goes_to_first_detection_as_yolov5():
    # both detections only overlap label 0; YOLOv5 keeps the first (highest-conf) one, not the higher IoU
    labels = torch.tensor([[0, 0, 0, 10, 10.0]])
    dets = torch.tensor([[0, 0, 10, 8, 0.9, 0], [0, 0, 10, 10, 0.8, 0]])  # IoU 0.8, then 1.0
    correct = match_predictions(dets, labels, IOUV)
    assert correct[0].tolist() == [True] * 7 + [False] * 3
    assert correct[1].tolist() == [False] * 7 + [True] * 3  # free again once det 0 fails the threshold


def test_match_predictions_empty():
    assert match_predictions(torch.zeros((0, 6)), torch.zeros((2, 5)), IOUV).shape == (0, 10)
    assert not match_predictions(torch.ones((3, 6)), torch.zeros((0, 5)), IOUV).any()


def test_ap_per_class_perfect_single_class():
    tp = np.ones((2, 10), dtype=bool)
    tp_, fp_, p, r, f1, ap, classes = ap_per_class(tp, np.array([0.9, 0.8]), np.zeros(2), np.zeros(2))
    assert classes.tolist() == [0]
    assert p.tolist() == pytest.approx([1.0]) and r.tolist() == pytest.approx([1.0])
    assert ap.shape == (1, 10) and np.allclose(ap, 0.995)
    assert tp_.tolist() == [2] and fp_.tolist() == [0] and f1.tolist() == pytest.approx([1.0])


def test_ap_per_class_known_values_two_classes():
    # class 0: 2 labels, detections conf 0.9 (tp), 0.8 (fp): AP 0.6225 (see compute_ap); class 1: 1 label, missed
    tp = np.zeros((3, 10), dtype=bool)
    tp[0] = True
    _, _, _, _, _, ap, classes = ap_per_class(tp, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), np.array([0, 0, 1]))
    assert classes.tolist() == [0, 1]
    assert ap[:, 0].tolist() == pytest.approx([0.6225, 0.0])


def test_ap_per_class_p_r_at_best_f1():
    # class 0: fp at conf 0.9 then tp at 0.8 (2 labels); class 1: one fp at 0.7 (1 label).
    # F1 of class 0 is 0.5 for conf <= 0.8 and lower above, so P and R are read at conf 0: P 0.5, R 0.5.
    # AP of class 0: envelope 0.5 up to recall 0.5, then linear to 0: 0.25 + 0.125.
    tp = np.zeros((3, 10), dtype=bool)
    tp[1] = True
    tp_, fp_, p, r, f1, ap, _ = ap_per_class(tp, np.array([0.9, 0.8, 0.7]), np.array([0, 0, 1]), np.array([0, 0, 1]))
    assert p.tolist() == pytest.approx([0.5, 0.0]) and r.tolist() == pytest.approx([0.5, 0.0])
    assert f1.tolist() == pytest.approx([0.5, 0.0])
    assert tp_.tolist() == [1, 0] and fp_.tolist() == [1, 0]
    assert ap[:, 0].tolist() == pytest.approx([0.375, 0.0])


def test_ap_per_class_order_independent():
    rng = np.random.default_rng(0)
    tp = rng.random((50, 10)) > 0.5
    conf, pred_cls, target_cls = rng.random(50), rng.integers(0, 3, 50), rng.integers(0, 3, 40)
    a = ap_per_class(tp, conf, pred_cls, target_cls)
    perm = rng.permutation(50)
    b = ap_per_class(tp[perm], conf[perm], pred_cls[perm], target_cls)
    for x, y in zip(a, b):
        assert np.allclose(x, y)


def test_ap_per_class_empty_predictions_and_empty_labels():
    _, _, p, r, _, ap, classes = ap_per_class(np.zeros((0, 10), bool), np.zeros(0), np.zeros(0), np.array([0, 0, 1]))
    assert classes.tolist() == [0, 1] and not ap.any() and not p.any() and not r.any()
    out = ap_per_class(np.ones((2, 10), bool), np.array([0.9, 0.5]), np.zeros(2), np.zeros(0))
    assert out[5].shape == (0, 10) and out[6].shape == (0,)


def test_confusion_matrix_counts():
    cm = ConfusionMatrix(nc=2)
    labels = torch.tensor([[0, 0, 0, 10, 10], [1, 20, 20, 30, 30], [0, 50, 50, 60, 60.0]])
    dets = torch.tensor(
        [
            [0, 0, 10, 10, 0.9, 0],  # correct class 0
            [20, 20, 30, 30, 0.8, 0],  # label 1 predicted as class 0
            [80, 80, 90, 90, 0.7, 1],  # nothing there: background false positive
            [50, 50, 60, 60, 0.1, 0],  # below conf 0.25: ignored, so label 2 is missed
        ]
    )
    cm.process_batch(dets, labels)
    expected = np.zeros((3, 3))
    expected[0, 0] = 1  # predicted 0, true 0
    expected[0, 1] = 1  # predicted 0, true 1
    expected[2, 0] = 1  # missed class 0 -> background row
    expected[1, 2] = 1  # predicted 1 on background
    assert np.array_equal(cm.matrix, expected)
    tp, fp = cm.tp_fp()
    assert tp.tolist() == [1, 0] and fp.tolist() == [1, 1]
    cm.process_batch(None, torch.tensor([1.0, 1.0]))  # image without predictions: all labels missed
    assert cm.matrix[2, 1] == 2


def test_confusion_matrix_plot(tmp_path):
    cm = ConfusionMatrix(nc=2)
    cm.matrix[0, 0], cm.matrix[1, 2] = 3, 1
    f = plot_confusion_matrix(cm.matrix, tmp_path, names=["a", "b"])
    assert f.name == "confusion_matrix.png" and f.stat().st_size > 1000
