"""Segmentation parts: mask maths, the dataset with masks under every augmentation, the loss, evaluator and CLIs."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
import yaml

from models.yolo import SegmentationModel
from tests.helpers import in_child
from utils.boxes import xywh2xyxy
from utils.data.loader import create_dataloader
from utils.data.options import DataOptions, LoaderOptions
from utils.paths import MODELS_DIR
from utils.segment.dataset import SegmentDataset
from utils.segment.loss import SegmentLoss
from utils.segment.ops import (
    crop_mask,
    mask_iou,
    masks_to_polygons,
    overlap_to_masks,
    polygon_mask,
    polygons_to_overlap,
    process_mask,
    process_mask_native,
)

COCO_SEG = "data/coco128-seg"
HYP = dict(box=0.05, cls=0.5, obj=1.0, cls_pw=1.0, obj_pw=1.0, anchor_t=4.0, fl_gamma=0.0, label_smoothing=0.0)
ALL_AUG = dict(mosaic=1.0, mixup=1.0, copy_paste=1.0, degrees=10.0, shear=5.0, perspective=0.0005, flipud=0.5,
               fliplr=0.5, translate=0.1, scale=0.5)  # fmt: skip


@pytest.fixture(scope="session")
def seg_data(shared, tmp_path_factory):
    """Six coco128-seg images and labels copied into a writable folder, one label file with bad rows, and a yaml."""
    src = shared / COCO_SEG
    if not src.is_dir():
        pytest.skip("../shared/data/coco128-seg is absent")
    root = tmp_path_factory.mktemp("seg")
    for f in sorted((src / "images" / "train2017").glob("*.jpg"))[:6]:
        for sub, suffix in (("images", ".jpg"), ("labels", ".txt")):
            p = src / sub / "train2017" / (f.stem + suffix)
            if p.is_file():
                (root / sub).mkdir(exist_ok=True)
                shutil.copy(p, root / sub / p.name)
    bad = sorted((root / "labels").glob("*.txt"))[0]
    bad.write_text(
        bad.read_text()
        + "0 0.1 0.1 0.2\n0 0.1 0.1 0.2 0.2 0.3\n99 0.1 0.1 0.2 0.2 0.3 0.1\n0 0.1 0.1 1.5 1.5 0.1 0.4\n"
    )
    names = yaml.safe_load((src / "coco128-seg.yaml").read_text())["names"]
    (root / "seg.yaml").write_text(
        yaml.safe_dump({"path": str(root), "train": "images", "val": "images", "names": names})
    )
    return root


def tiny_seg_model(nc: int = 80) -> SegmentationModel:
    d = yaml.safe_load((MODELS_DIR / "segment" / "yolov5n-seg.yaml").read_text())
    d.update(width_multiple=0.125, nc=nc)
    torch.manual_seed(0)
    return SegmentationModel(d, verbose=False)


def test_mask_ops():
    masks = torch.ones(2, 8, 8)
    cropped = crop_mask(masks, torch.tensor([[2.0, 1.0, 5.0, 4.0], [0.0, 0.0, 8.0, 8.0]]))
    assert cropped[0].sum() == 9 and cropped[0, 1:4, 2:5].all() and cropped[1].sum() == 64
    square = np.array([[2, 2], [10, 2], [10, 10], [2, 10]], np.float32)
    small = np.array([[4, 4], [6, 4], [6, 6], [4, 6]], np.float32)
    m = polygon_mask((16, 16), square)
    assert m.sum() == 81 and polygon_mask((16, 16), square, ratio=2).shape == (8, 8)
    overlap, order = polygons_to_overlap((16, 16), [small, square])
    assert order.tolist() == [1, 0] and overlap[5, 5] == 2 and overlap[2, 2] == 1  # the smaller one drawn on top
    per = overlap_to_masks(torch.from_numpy(overlap), 2)
    assert per.shape == (2, 16, 16) and per[1].sum() == 9
    poly = masks_to_polygons(torch.from_numpy(m)[None])[0]
    assert np.allclose(sorted(map(tuple, poly)), sorted(map(tuple, square)))
    a = torch.from_numpy(m).view(1, -1)
    assert mask_iou(a, torch.cat((a, torch.zeros_like(a)))).tolist() == [[1.0, 0.0]]
    protos, coefs = torch.zeros(1, 4, 4), torch.ones(1, 1)  # sigmoid(0) = 0.5: not above the threshold
    up = process_mask(protos + 1, coefs, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), (16, 16), upsample=True)[0]
    assert up[:7, :7].all() and not up[9:].any() and not up[:, 9:].any()  # on inside the box only
    assert not process_mask(protos, coefs, torch.tensor([[0.0, 0.0, 8.0, 8.0]]), (16, 16)).any()
    none = torch.zeros(0, 1), torch.zeros(0, 4)  # no instance (e.g. nothing above --conf-thres)
    assert process_mask(protos, *none, (16, 16), upsample=True).shape == (0, 16, 16)
    assert process_mask_native(protos, *none, (12, 16)).shape == (0, 12, 16)


def _mask_box_agreement(targets, masks, shape, overlap: bool) -> float:
    """Mean IoU of each instance's mask bounding box with its label box (both in mask pixels)."""
    h, w = masks.shape[-2:]
    ious = []
    for si in range(shape[0]):
        rows = targets[targets[:, 0] == si]
        ms = overlap_to_masks(masks[si], len(rows)) if overlap else masks[targets[:, 0] == si].float()
        for row, m in zip(rows, ms):
            ys, xs = torch.nonzero(m, as_tuple=True)
            if not len(xs):
                continue
            mb = torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)
            lb = xywh2xyxy(row[2:6].view(1, 4))[0] * torch.tensor([w, h, w, h])
            ix = (torch.min(mb[2], lb[2]) - torch.max(mb[0], lb[0])).clamp(0)
            iy = (torch.min(mb[3], lb[3]) - torch.max(mb[1], lb[1])).clamp(0)
            union = (mb[2] - mb[0]) * (mb[3] - mb[1]) + (lb[2] - lb[0]) * (lb[3] - lb[1]) - ix * iy
            ious.append(float(ix * iy / union))
    return float(np.mean(ious))


@pytest.mark.parametrize("overlap", [True, False])
def test_dataset_masks_follow_every_augmentation(seg_data, overlap, caplog):
    before = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in seg_data.rglob("*") if p.is_file()}
    for augment in (False, True):
        options = DataOptions(128, 3, augment=augment, hyp=ALL_AUG, stride=32, seed=1, nc=80)
        loader, ds = create_dataloader(str(seg_data / "images"), options, LoaderOptions(workers=0), SegmentDataset,
                                       {"mask_ratio": 2, "overlap": overlap})  # fmt: skip
        for im, targets, _, _, masks in loader:
            assert masks.shape[-2:] == (64, 64) and masks.shape[0] == (im.shape[0] if overlap else len(targets))
            assert _mask_box_agreement(targets, masks, im.shape, overlap) > 0.8
    assert sum("(dropped)" in p for p in ds.problems) == 4  # the four bad rows, one warning each
    after = {p: hashlib.sha1(p.read_bytes()).hexdigest() for p in before}
    assert after == before  # images and labels are only read


def test_box_only_dataset_is_one_line_error(tmp_path):
    from utils.errors import DataError

    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    import cv2

    cv2.imwrite(str(tmp_path / "images" / "a.jpg"), np.full((64, 64, 3), 100, np.uint8))
    (tmp_path / "labels" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.raises(DataError, match="box labels only"):
        SegmentDataset(str(tmp_path / "images"), DataOptions(64, augment=True))
    with pytest.raises(DataError, match=r"^\S+images has box labels only"):  # a list of folders: no list brackets
        SegmentDataset([str(tmp_path / "images")], DataOptions(64, augment=True))


def test_loss_overlap_equals_per_instance_masks(seg_data):
    """The same batch with overlap masks and with one mask per instance: equal losses where instances do not
    overlap; each part finite, positive and differentiable. (Checked against official ComputeLoss: identical.)"""
    model = tiny_seg_model().train()
    im = torch.rand(1, 3, 64, 64)
    targets = torch.tensor([[0, 1, 0.3, 0.3, 0.3, 0.3], [0, 2, 0.7, 0.7, 0.4, 0.4]])
    inst = torch.zeros(2, 16, 16)
    inst[0, 2:7, 2:7], inst[1, 8:14, 8:14] = 1, 1
    over = (inst[0] + 2 * inst[1])[None]
    preds = model(im)
    a = SegmentLoss(model, HYP, overlap=True)(preds, (im, targets, None, None, over))
    b = SegmentLoss(model, HYP, overlap=False)(preds, (im, targets, None, None, inst))
    assert torch.allclose(a.items, b.items) and (a.items > 0).all() and a.items.shape == (4,)
    a.total.backward()
    assert model.model[-1].proto.cv3.conv.weight.grad.abs().sum() > 0


def test_loss_and_masks_take_channels_last_protos():
    """The task trains channels-last on CPU: the same predictions with NCHW and channels-last protos give the same
    losses and gradients (to float rounding) and the same masks: the mask maths flatten protos in any layout."""
    model = tiny_seg_model().train()
    im = torch.rand(2, 3, 64, 64)
    targets = torch.tensor([[0, 1, 0.3, 0.3, 0.3, 0.3], [0, 2, 0.7, 0.7, 0.4, 0.4], [1, 0, 0.5, 0.5, 0.6, 0.5]])
    over = torch.zeros(2, 16, 16)
    over[0, 2:7, 2:7], over[0, 8:14, 8:14], over[1, 4:12, 3:13] = 1, 2, 1
    coefs, boxes = torch.randn(2, model.model[-1].nm), torch.tensor([[0.0, 0.0, 40.0, 40.0], [10.0, 5.0, 60.0, 50.0]])
    with torch.no_grad():
        levels, proto = model(im)
    out = []
    for fmt in (torch.contiguous_format, torch.channels_last):
        p = proto.clone().contiguous(memory_format=fmt).requires_grad_(True)
        loss = SegmentLoss(model, HYP)(([x.clone() for x in levels], p), (im, targets, None, None, over))
        loss.total.backward()
        out.append((loss.items, p.grad, process_mask(p.detach()[0], coefs, boxes, (64, 64))))
    assert out[1][1].is_contiguous(memory_format=torch.channels_last) and not out[1][1].is_contiguous()
    assert torch.allclose(out[0][0], out[1][0], rtol=1e-6, atol=0) and out[0][0][1] > 0
    assert torch.allclose(out[0][1], out[1][1], rtol=1e-5, atol=1e-9)
    assert torch.equal(out[0][2], out[1][2]) and out[0][2].any()


def test_official_seg_val_parity(shared):
    """Our segment/val.py on the official -seg checkpoint at 320: official box and mask figures within 0.005."""
    from segment.val import parse_opt
    from utils.segment.val_run import run_val

    ref = json.loads((shared / "reference" / "official_segment.json").read_text())["val"]
    w = shared / "weights" / "yolov5n-seg-coco128.pt"
    opt = parse_opt(["--weights", str(w), "--data", str(shared / COCO_SEG / "coco128-seg.yaml"), "--img", "320",
                     "--batch-size", "16", "--workers", "0"])  # fmt: skip
    m = run_val(opt, None, plots=False)
    assert m.seen == ref["images"] and int(m.nt.sum()) == ref["instances"]
    assert np.allclose(m.row, ref["box"] + ref["mask"], atol=0.005), (m.row, ref)
    assert m.names[0] == "person" and m.names[79] == "toothbrush"  # class names (--verbose table, plots), not ids


def _instances(f):
    rows = [list(map(float, line.split())) for line in f.read_text().splitlines()]
    return sorted(((int(r[0]), np.array(r[1:-1]).reshape(-1, 2), r[-1]) for r in rows), key=lambda x: -x[2])


@pytest.mark.parametrize("weights", ["yolov5n-seg-coco128.pt", "yolov5n-seg-coco128-official.onnx"])
def test_official_seg_predict_parity(shared, tmp_path, weights):
    """segment/predict.py --save-txt on images/: official's instances (class, polygon-box IoU >= 0.95, mask IoU
    >= 0.9). The official ONNX export (static 320x320, where the reference's .pt run letterboxed bus.jpg to 320x256)
    gives the same instances with looser shapes (IoU 0.8). A mask picture is written."""
    from segment.predict import main, parse_opt

    mask_min, box_min = (0.9, 0.95) if weights.endswith(".pt") else (0.8, 0.8)
    ref_dir = shared / "reference" / "segment_yolov5n-seg-coco128_320" / "labels"
    out = main(parse_opt(["--weights", str(shared / "weights" / weights), "--source", str(shared / "images"),
                          "--img", "320", "--save-txt", "--save-conf", "--project", str(tmp_path)]))  # fmt: skip
    assert (out / "bus.jpg").is_file()
    for ref_file in sorted(ref_dir.glob("*.txt")):
        import cv2

        h, w = cv2.imread(str(shared / "images" / f"{ref_file.stem}.jpg")).shape[:2]
        ref, ours = _instances(ref_file), _instances(out / "labels" / ref_file.name)
        assert [r[0] for r in ref] == [o[0] for o in ours]
        for (_, p, _), (_, q, _) in zip(ref, ours):
            a, b = polygon_mask((h, w), p * [w, h]).astype(bool), polygon_mask((h, w), q * [w, h]).astype(bool)
            assert (a & b).sum() / (a | b).sum() >= mask_min
            ba, bb = (np.array([*x.min(0), *x.max(0)]) for x in (p, q))
            inter = np.prod((np.minimum(ba[2:], bb[2:]) - np.maximum(ba[:2], bb[:2])).clip(0))
            assert inter / (np.prod(ba[2:] - ba[:2]) + np.prod(bb[2:] - bb[:2]) - inter) >= box_min


def test_segment_cli_errors(shared, tmp_path, capsys):
    """A detection checkpoint given to segment/val.py and segment/predict.py: one error line, no traceback."""
    from segment import predict, val

    data = str(shared / COCO_SEG / "coco128-seg.yaml")
    det = str(shared / "weights" / "yolov5n.pt")
    for mod, args in ((val, ["--data", data]), (predict, ["--source", str(shared / "images" / "bus.jpg")])):
        with pytest.raises(SystemExit) as e:
            mod.main(mod.parse_opt(["--weights", det, "--project", str(tmp_path), *args]))
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code in (1, 2) and err[-1].startswith("error:") and "detection model" in err[-1]


@in_child
def test_seg_fla_export_runs_in_every_backend(tmp_path):
    """A tiny FLA seg model exported (dynamic H/W) to TorchScript, ONNX and OpenVINO: each backend gives the .pt's
    predictions and prototypes at a size other than the export's."""
    pytest.importorskip("onnxruntime")
    from utils.checkpoint import model_to_dict, save_checkpoint
    from utils.deploy.backends import DetectMultiBackend
    from utils.deploy.export import run_export

    d = yaml.safe_load((MODELS_DIR / "segment" / "yolov5n-seg-fla.yaml").read_text())
    d.update(width_multiple=0.125, nc=3)
    torch.manual_seed(0)
    model = SegmentationModel(d, verbose=False)
    model.names = ["a", "b", "c"]
    f = tmp_path / "tiny-seg-fla.pt"
    save_checkpoint({"model": model_to_dict(model, half=False)}, f)
    formats = ["torchscript", "onnx"]
    try:
        import openvino  # noqa: F401

        formats.append("openvino")
    except ImportError:
        pass
    files = run_export(f, imgsz=64, include=formats, dynamic=True)
    im = torch.rand(1, 3, 96, 64)
    ref = DetectMultiBackend(f)
    with torch.no_grad():
        pred, protos = ref(im)
    assert ref.task == "segment" and protos.shape == (1, 32, 24, 16)
    for fmt, path in files.items():
        backend = DetectMultiBackend(path)
        p, q = backend(im)
        assert backend.task == "segment", fmt
        assert torch.allclose(p, pred, atol=1e-2 * float(pred.abs().max())), fmt
        assert torch.allclose(q, protos, atol=1e-3 * float(protos.abs().max()) + 1e-4), fmt
