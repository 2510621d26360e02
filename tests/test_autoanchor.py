"""AutoAnchor: BPR on hand-made label sets, anchor replacement in grid units, k-means recovering clusters."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn

from utils.train.autoanchor import anchor_metric, check_anchor_order, check_anchors, kmean_anchors, label_wh

DEFAULT_ANCHORS = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
STRIDES = torch.tensor([8.0, 16.0, 32.0])


class FakeDetect(nn.Module):
    def __init__(self, anchors_px):
        super().__init__()
        self.register_buffer("stride", STRIDES.clone())
        a = torch.tensor(anchors_px, dtype=torch.float32).view(3, 3, 2)
        self.register_buffer("anchors", a / STRIDES.view(3, 1, 1))


def fake_model(anchors_px=DEFAULT_ANCHORS) -> nn.Module:
    m = nn.Module()
    m.model = nn.Sequential(FakeDetect(anchors_px))
    return m


def fake_dataset(sizes_px, n_images=20, img=(640, 640), seed=0):
    """Square images; each carries one label of every (w, h) in sizes_px (pixels at 640)."""
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(n_images):
        wh = np.array(sizes_px, dtype=np.float64) * rng.uniform(0.95, 1.05, (len(sizes_px), 1)) / 640
        labels.append(np.concatenate([np.zeros((len(wh), 1)), np.full((len(wh), 2), 0.5), wh], 1))
    return SimpleNamespace(shapes=np.array([img] * n_images), labels=labels)


def test_label_wh_scales_long_side_to_imgsz():
    ds = SimpleNamespace(shapes=np.array([[640, 320]]), labels=[np.array([[0, 0.5, 0.5, 0.5, 0.5]])])
    assert label_wh(ds, 320).tolist() == [[160.0, 80.0]]


def test_anchor_metric_known_answer():
    anchors = torch.tensor([[10.0, 10.0]])
    wh = torch.tensor([[10.0, 10.0], [30.0, 10.0], [50.0, 10.0]])  # ratios 1, 3, 5
    bpr, aat = anchor_metric(anchors, wh, thr=4.0)
    assert bpr == pytest.approx(2 / 3) and aat == pytest.approx(2 / 3)


def test_good_anchors_are_kept():
    model = fake_model()
    before = model.model[-1].anchors.clone()
    ds = fake_dataset([(12, 14), (30, 50), (60, 60), (150, 180)])
    assert check_anchors(ds, model, thr=4.0, imgsz=640) is False
    assert torch.equal(model.model[-1].anchors, before)


def test_poor_anchors_are_replaced_in_grid_units():
    tiny = [[2, 2, 2, 3, 3, 2], [3, 3, 2, 4, 4, 2], [4, 4, 3, 5, 5, 3]]
    model = fake_model(tiny)
    ds = fake_dataset([(40, 40), (100, 60), (200, 300)])
    state = np.random.get_state()[1].copy()
    assert check_anchors(ds, model, thr=4.0, imgsz=640) is True
    assert np.array_equal(np.random.get_state()[1], state)  # global RNG untouched
    det = model.model[-1]
    px = (det.anchors * STRIDES.view(3, 1, 1)).view(-1, 2)
    wh = torch.tensor(label_wh(ds, 640), dtype=torch.float32)
    assert anchor_metric(px, wh, 4.0)[0] == 1.0
    area = det.anchors.prod(-1).mean(-1) * STRIDES**2
    assert torch.all(area[1:] >= area[:-1])  # mean pixel area grows with the stride


def test_kmeans_recovers_clusters():
    ds = fake_dataset([(20, 20), (60, 120), (300, 200)], n_images=30)
    k = kmean_anchors(ds, n=3, imgsz=640, thr=4.0, gen=200)
    assert k.shape == (3, 2)
    assert np.allclose(k, [[20, 20], [60, 120], [300, 200]], rtol=0.15)


def test_anchor_order_flip():
    det = FakeDetect(DEFAULT_ANCHORS)
    det.anchors[:] = torch.tensor(DEFAULT_ANCHORS[::-1], dtype=torch.float32).view(3, 3, 2)  # pixels, wrong order
    check_anchor_order(det)
    assert det.anchors.view(3, 6).tolist() == [[float(v) for v in row] for row in DEFAULT_ANCHORS]
