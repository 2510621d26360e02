"""Hand-made NMS cases with known answers: thresholds, class offsets, multi-label, max_det, autolabels."""

from __future__ import annotations

import pytest
import torch

import utils.nms as nms_module
from utils.nms import greedy_top, nms_boxes, nms_torch, non_max_suppression


def pred_rows(*rows, nc: int = 2) -> torch.Tensor:
    """(1, n, 5+nc) prediction from rows (x, y, w, h, obj, cls scores...)."""
    out = torch.zeros((1, len(rows), 5 + nc))
    for i, r in enumerate(rows):
        out[0, i, : len(r)] = torch.tensor(r, dtype=torch.float32)
    return out


def test_xywh_to_xyxy_and_score_is_obj_times_cls():
    out = non_max_suppression(pred_rows((50, 40, 20, 10, 0.8, 0.5, 0.1)), conf_thres=0.25)
    assert len(out) == 1 and out[0].shape == (1, 6)
    x1, y1, x2, y2, conf, cls = out[0][0].tolist()
    assert (x1, y1, x2, y2) == (40, 35, 60, 45)
    assert conf == pytest.approx(0.4) and cls == 0


def test_conf_threshold_on_obj_then_on_score():
    p = pred_rows(
        (10, 10, 4, 4, 0.20, 1.0, 0.0),  # obj <= conf: dropped before scoring
        (30, 30, 4, 4, 0.30, 0.5, 0.0),  # obj ok but score 0.15 <= 0.25: dropped
        (50, 50, 4, 4, 0.90, 0.0, 0.9),  # score 0.81: kept as class 1
    )
    out = non_max_suppression(p, conf_thres=0.25)[0]
    assert out.shape == (1, 6)
    assert out[0, 5].item() == 1 and out[0, 4].item() == pytest.approx(0.81)


def test_same_class_overlap_suppressed_other_class_kept_agnostic_merges():
    # two 10x10 boxes shifted by 1 px: IoU = 90/110 = 0.818 > 0.45
    a = (10, 10, 10, 10, 1.0, 0.9, 0.0)
    b_same = (11, 10, 10, 10, 1.0, 0.8, 0.0)
    b_other = (11, 10, 10, 10, 1.0, 0.0, 0.8)
    assert len(non_max_suppression(pred_rows(a, b_same))[0]) == 1
    kept = non_max_suppression(pred_rows(a, b_other))[0]
    assert kept[:, 5].tolist() == [0, 1]  # class-aware: both survive, sorted by conf
    agn = non_max_suppression(pred_rows(a, b_other), agnostic=True)[0]
    assert agn.shape[0] == 1 and agn[0, 4].item() == pytest.approx(0.9)


def test_iou_threshold_boundary():
    # 10x10 boxes shifted by 5 px: IoU = 50/150 = 1/3
    a, b = (10, 10, 10, 10, 1.0, 0.9, 0.0), (15, 10, 10, 10, 1.0, 0.8, 0.0)
    assert len(non_max_suppression(pred_rows(a, b), iou_thres=0.30)[0]) == 1
    assert len(non_max_suppression(pred_rows(a, b), iou_thres=0.40)[0]) == 2


def test_multi_label_gives_one_row_per_class_above_conf():
    p = pred_rows((20, 20, 10, 10, 1.0, 0.6, 0.5, 0.1), nc=3)
    multi = non_max_suppression(p, conf_thres=0.25, multi_label=True)[0]
    assert multi[:, 5].tolist() == [0, 1]
    assert multi[:, 4].tolist() == pytest.approx([0.6, 0.5])
    single = non_max_suppression(p, conf_thres=0.25, multi_label=False)[0]
    assert single[:, 5].tolist() == [0]


def test_classes_filter_and_max_det():
    rows = [(20 * i + 10, 10, 8, 8, 1.0, 0.9 - 0.01 * i, 0.0) for i in range(5)]  # disjoint boxes of class 0
    rows.append((200, 200, 8, 8, 1.0, 0.0, 0.95))  # class 1
    p = pred_rows(*rows)
    assert non_max_suppression(p, classes=[1])[0][:, 5].tolist() == [1]
    top = non_max_suppression(p, max_det=3)[0]
    assert top[:, 4].tolist() == pytest.approx([0.95, 0.9, 0.89])


def test_batch_empty_image_and_tuple_input():
    p = torch.cat((pred_rows((20, 20, 10, 10, 0.9, 0.9, 0.1)), pred_rows((20, 20, 10, 10, 0.01, 0.9, 0.1))))
    out = non_max_suppression((p, [torch.zeros(1)]), conf_thres=0.25)  # eval-mode (pred, feats)
    assert [o.shape for o in out] == [(1, 6), (0, 6)]


def test_input_is_not_modified():
    p = pred_rows((20, 20, 10, 10, 0.5, 0.5, 0.1))
    before = p.clone()
    non_max_suppression(p, conf_thres=0.1)
    assert torch.equal(p, before)


def test_labels_are_added_as_perfect_boxes():
    p = pred_rows((20, 20, 10, 10, 0.01, 0.9, 0.1))  # below conf: nothing predicted
    lb = [torch.tensor([[1.0, 60.0, 60.0, 20.0, 10.0]])]  # [cls, x, y, w, h] pixels
    out = non_max_suppression(p, conf_thres=0.25, labels=lb)[0]
    assert out.tolist() == [[50.0, 55.0, 70.0, 65.0, 1.0, 1.0]]


def test_pure_torch_nms_matches_torchvision():
    g = torch.Generator().manual_seed(0)
    xy = torch.rand((300, 2), generator=g) * 100
    wh = torch.rand((300, 2), generator=g) * 30 + 2
    boxes = torch.cat((xy, xy + wh), 1)
    scores = torch.rand(300, generator=g)
    for t in (0.3, 0.5, 0.7):
        assert torch.equal(nms_torch(boxes, scores, t), nms_boxes(boxes, scores, t))


def test_bad_thresholds_raise():
    with pytest.raises(ValueError):
        non_max_suppression(pred_rows((1, 1, 1, 1, 1, 1, 0)), conf_thres=1.5)


def test_greedy_top_known_answer_across_prefixes(monkeypatch):
    # a chain of 10x10 boxes 2 px apart, best first: each overlaps its neighbour at IoU 80/120 = 0.67 > 0.5 and the
    # one after next at IoU 60/140 = 0.43, so greedy NMS keeps every second box: 0, 2, 4, ...
    boxes = torch.tensor([[2.0 * i, 0, 2.0 * i + 10, 10] for i in range(12)])
    monkeypatch.setattr(nms_module, "FIRST_PREFIX", 2)  # the first prefix is 4 * max_det boxes
    assert greedy_top(boxes, max_det=2, iou_thres=0.5).tolist() == [0, 2]  # the first 8 boxes suffice
    assert greedy_top(boxes, max_det=5, iou_thres=0.5).tolist() == [0, 2, 4, 6, 8]  # a prefix of 20: all 12
    assert greedy_top(boxes, max_det=300, iou_thres=0.5).tolist() == [0, 2, 4, 6, 8, 10]
    assert greedy_top(boxes[:0], max_det=3, iou_thres=0.5).tolist() == []


def test_growing_prefix_equals_one_full_nms(monkeypatch):
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(500, 2, generator=g) * 100
    boxes = torch.cat((xy, xy + 5 + torch.rand(500, 2, generator=g) * 20), 1)
    full = nms_boxes(boxes, torch.arange(500, 0, -1).float(), 0.3)  # boxes are in rank order
    monkeypatch.setattr(nms_module, "FIRST_PREFIX", 16)
    for max_det in (1, 7, 50, len(full), 1000):
        assert greedy_top(boxes, max_det, 0.3).tolist() == full[:max_det].tolist()


def test_per_class_split_equals_one_pass_with_offsets(monkeypatch):
    # 4 classes of heavily overlapping boxes in rank order: per-class passes keep exactly what one class-offset
    # pass keeps, in the same order, for every max_det, and also through the growing prefixes
    g = torch.Generator().manual_seed(3)
    n = 2000
    xy = torch.rand(n, 2, generator=g) * 200
    boxes = torch.cat((xy, xy + 10 + torch.rand(n, 2, generator=g) * 40), 1)
    cls = torch.randint(0, 4, (n,), generator=g).float()
    shifted = boxes + cls[:, None] * nms_module.MAX_WH
    full = nms_boxes(shifted, torch.arange(n, 0, -1).float(), 0.45)
    assert len(full) > 300  # the split path runs (n > FIRST_PREFIX) and max_det cuts the union
    for max_det in (1, 37, 300, len(full), 5000):
        assert greedy_top(shifted, max_det, 0.45, cls).tolist() == full[:max_det].tolist()
    monkeypatch.setattr(nms_module, "FIRST_PREFIX", 16)
    assert greedy_top(shifted, 300, 0.45, cls).tolist() == full[:300].tolist()


def test_flood_of_low_scores_every_image_scored():
    # early validation: every anchor of every image passes conf 0.001 with 3 classes (multi-label): no image is
    # dropped and each keeps exactly max_det rows, the best ones, in descending order
    g = torch.Generator().manual_seed(1)
    bs, n = 6, 3000
    p = torch.zeros(bs, n, 8)
    p[..., :2] = torch.rand(bs, n, 2, generator=g) * 320
    p[..., 2:4] = 8 + torch.rand(bs, n, 2, generator=g) * 30
    p[..., 4] = 0.01 + torch.rand(bs, n, generator=g) * 0.04
    p[..., 5:] = 0.2 + torch.rand(bs, n, 3, generator=g) * 0.3
    out = non_max_suppression(p, conf_thres=0.001, iou_thres=0.6, multi_label=True, max_det=300)
    assert [len(o) for o in out] == [300] * bs
    for xi, o in enumerate(out):
        assert (o[1:, 4] <= o[:-1, 4]).all()
        best = (p[xi, :, 5:] * p[xi, :, 4:5]).max()
        assert o[0, 4].item() == pytest.approx(best.item())  # the best candidate always survives


def test_torchvision_op_without_the_package_import():
    """utils.nms loads torchvision's compiled nms op directly (the package import costs ~1.3 s per command)."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, torch\n"
        "import utils.nms as n\n"
        "print('torchvision' in sys.modules, n._TV_NMS is not None)\n"
        "g = torch.Generator().manual_seed(0)\n"
        "b = torch.rand(200, 4, generator=g) * 100; b[:, 2:] += b[:, :2]; s = torch.rand(200, generator=g)\n"
        "import torchvision\n"
        "print(torch.equal(n.nms_boxes(b, s, 0.5), torchvision.ops.nms(b, s, 0.5)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["False", "True", "True"]
