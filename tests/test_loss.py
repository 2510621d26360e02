"""ComputeLoss / build_targets on hand-made targets with known assignments and losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from utils.train.loss import ComputeLoss, FocalLoss, build_targets, smooth_bce_targets

HYP = dict(box=0.05, cls=0.5, obj=1.0, cls_pw=1.0, obj_pw=1.0, anchor_t=4.0, fl_gamma=0.0)


class FakeDetect(nn.Module):
    """Just what the loss reads from a Detect head: nc, nl, na, anchors (nl, na, 2) in grid units, stride."""

    def __init__(self, nc: int, anchors: torch.Tensor, strides=(8, 16, 32)):
        super().__init__()
        self.nc, self.nl, self.na = nc, anchors.shape[0], anchors.shape[1]
        self.register_buffer("anchors", anchors.float())
        self.register_buffer("stride", torch.tensor(strides[: self.nl], dtype=torch.float32))
        self.m = nn.Conv2d(1, 1, 1)


class FakeModel(nn.Module):
    def __init__(self, nc: int, anchors: torch.Tensor, strides=(8, 16, 32)):
        super().__init__()
        self.model = nn.Sequential(FakeDetect(nc, anchors, strides))


def zero_preds(bs: int, na: int, nc: int, imgsz: int = 64, strides=(8, 16, 32)):
    return [torch.zeros(bs, na, imgsz // s, imgsz // s, 5 + nc) for s in strides]


def logit(x: torch.Tensor) -> torch.Tensor:
    return torch.log(x / (1 - x))


def test_assignment_own_cell_and_two_neighbours():
    # one level 8x8, target centre at grid (2.4, 4.4), size 2x2 grid cells: only anchor 0 (2x2) passes the ratio test
    anchors = torch.tensor([[[2.0, 2.0], [10.0, 10.0], [0.4, 0.4]]])
    targets = torch.tensor([[0, 1, 0.3, 0.55, 0.25, 0.25]])
    (tg,) = build_targets([torch.zeros(1, 3, 8, 8, 7)], targets, anchors, anchor_t=4.0)
    cells = sorted(zip(tg.gi.tolist(), tg.gj.tolist()))
    assert cells == [(1, 4), (2, 3), (2, 4)]  # own cell, left neighbour, upper neighbour
    assert tg.a.tolist() == [0, 0, 0] and tg.cls.tolist() == [1, 1, 1] and tg.b.tolist() == [0, 0, 0]
    own = (tg.gi == 2) & (tg.gj == 4)
    assert torch.allclose(tg.tbox[own], torch.tensor([[0.4, 0.4, 2.0, 2.0]]), atol=1e-6)
    left = tg.gi == 1
    assert torch.allclose(tg.tbox[left, :2], torch.tensor([[1.4, 0.4]]), atol=1e-6)


def test_assignment_counts_per_level():
    # 3 levels at 64 px (8x8, 4x4, 2x2); a 16x16-pixel target near a cell's lower-right corner
    anchors = torch.tensor(
        [[[10, 13], [16, 30], [33, 23]], [[30, 61], [62, 45], [59, 119]], [[116, 90], [156, 198], [373, 326]]]
    )
    anchors = anchors.float() / torch.tensor([8.0, 16.0, 32.0]).view(3, 1, 1)
    targets = torch.tensor([[0, 0, 0.4, 0.4, 0.25, 0.25]])  # centre (25.6, 25.6) px, 16x16 px
    out = build_targets(zero_preds(1, 3, 1), targets, anchors, anchor_t=4.0)
    # P3: 16/8=2 cells; anchors (1.25,1.625) (2,3.75) (4.125,2.875) all within 4x -> 3 anchors x 3 cells
    # P4: 1x1 cell: only anchors 0 and 1 within 4x; centre 1.6 -> own cell + right + down
    # P5: 0.5 cell vs (3.6,2.8),(4.9,6.2),(11.7,10.2): all ratios > 4 -> nothing
    assert [len(t.b) for t in out] == [9, 6, 0]
    assert sorted(set(out[1].a.tolist())) == [0, 1]


def test_no_targets_objectness_only():
    anchors = torch.ones(3, 3, 2)
    model = FakeModel(nc=2, anchors=anchors)
    loss, items = ComputeLoss(model, HYP)(zero_preds(2, 3, 2), torch.zeros(0, 6))
    expected = math.log(2) * (4.0 + 1.0 + 0.4)  # BCE(0, 0) = log 2 on every level, times the balance
    assert items.tolist() == pytest.approx([0.0, expected, 0.0], rel=1e-5)
    assert loss.item() == pytest.approx(expected * 2, rel=1e-5)  # times batch size
    assert loss.shape == (1,) and not items.requires_grad


def perfect_preds(model: FakeModel, targets: torch.Tensor, nc: int):
    """Predictions whose decoded boxes equal every assigned target box, cls logits +/-10 for the right class."""
    det = model.model[-1]
    preds = zero_preds(1, det.na, nc, strides=det.stride.int().tolist())
    for p, tg in zip(preds, build_targets(preds, targets, det.anchors, 4.0)):
        xy = logit((tg.tbox[:, :2] + 0.5) / 2)
        wh = logit(torch.sqrt(tg.tbox[:, 2:] / tg.anchors) / 2)
        p[tg.b, tg.a, tg.gj, tg.gi, :4] = torch.cat((xy, wh), 1)
        cls = torch.full((len(tg.b), nc), -10.0)
        cls[torch.arange(len(tg.b)), tg.cls] = 10.0
        p[tg.b, tg.a, tg.gj, tg.gi, 5:] = cls
    return preds


def test_exact_prediction_gives_zero_box_loss():
    anchors = torch.tensor([[[2.0, 2.0], [3.0, 1.0], [1.0, 3.0]]])
    model = FakeModel(nc=3, anchors=anchors, strides=(8,))
    targets = torch.tensor([[0, 2, 0.3, 0.55, 0.25, 0.2], [0, 0, 0.7, 0.2, 0.3, 0.3]])
    preds = [p.requires_grad_() for p in perfect_preds(model, targets, 3)]
    loss, items = ComputeLoss(model, HYP)(preds, targets)
    assert items[0].item() == pytest.approx(0.0, abs=1e-5)
    assert items[2].item() < 1e-3  # confident correct classes
    loss.backward()  # gradient flows (objectness still pulls the other cells down)
    assert preds[0].grad is not None and preds[0].grad.abs().sum() > 0


def test_objectness_target_is_detached_iou_and_cls_uses_smoothing():
    anchors = torch.tensor([[[2.0, 2.0], [30.0, 30.0], [40.0, 40.0]]])
    model = FakeModel(nc=2, anchors=anchors, strides=(8,))
    targets = torch.tensor([[0, 1, 0.3, 0.55, 0.25, 0.25]])
    preds = perfect_preds(model, targets, 2)
    hyp = {**HYP, "label_smoothing": 0.2, "box": 1.0, "obj": 1.0, "cls": 1.0}
    _, items = ComputeLoss(model, hyp)(preds, targets)
    # obj target is 1 (IoU 1) at the 3 assigned cells, 0 elsewhere; obj logits are all 0 -> BCE = log 2 everywhere
    assert items[1].item() == pytest.approx(math.log(2) * 4.0, rel=1e-4)
    cp, cn = smooth_bce_targets(0.2)
    assert (cp, cn) == pytest.approx((0.9, 0.1))
    expected_cls = F.binary_cross_entropy_with_logits(torch.tensor([-10.0, 10.0]), torch.tensor([cn, cp]))
    assert items[2].item() == pytest.approx(expected_cls.item(), rel=1e-4)


def test_single_class_skips_cls_loss():
    model = FakeModel(nc=1, anchors=torch.tensor([[[2.0, 2.0], [3.0, 3.0], [1.5, 1.5]]]), strides=(8,))
    targets = torch.tensor([[0, 0, 0.5, 0.5, 0.25, 0.25]])
    _, items = ComputeLoss(model, HYP)(zero_preds(1, 3, 1, strides=(8,)), targets)
    assert items[2].item() == 0.0 and items[0].item() > 0


def test_focal_loss_formula():
    bce = nn.BCEWithLogitsLoss()
    fl = FocalLoss(bce, gamma=2.0, alpha=0.25)
    x, t = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 0.0])
    p = torch.sigmoid(x)
    ce = F.binary_cross_entropy_with_logits(x, t, reduction="none")
    expected = torch.stack([ce[0] * 0.25 * (1 - p[0]) ** 2, ce[1] * 0.75 * p[1] ** 2]).mean()
    assert fl(x, t).item() == pytest.approx(expected.item(), rel=1e-6)
    model = FakeModel(nc=2, anchors=torch.ones(3, 3, 2))
    assert isinstance(ComputeLoss(model, {**HYP, "fl_gamma": 1.5}).bce_obj, FocalLoss)
