"""LoadImagesAndLabels and create_dataloader: scanning, JSON cache, read-only datasets, rect shapes, batches."""

from __future__ import annotations

import hashlib
import os
import random
import stat
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import utils.data.dataset as dataset_mod
from utils.data.cache import cache_path_for
from utils.data.config import check_dataset
from utils.data.dataset import LoadImagesAndLabels
from utils.data.loader import InfiniteDataLoader, create_dataloader
from utils.data.mosaic import MosaicDataset
from utils.data.options import DataOptions, LoaderOptions
from utils.data.synthetic import SPLITS
from utils.errors import DataError


def square_image(path: Path, h: int, w: int, box) -> str:
    """White box (x1, y1, x2, y2 px) on black; returns the YOLO label row for it (class 0)."""
    im = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    im[y1:y2, x1:x2] = 255
    cv2.imwrite(str(path), im)
    return f"0 {(x1 + x2) / 2 / w} {(y1 + y2) / 2 / h} {(x2 - x1) / w} {(y2 - y1) / h}\n"


@pytest.fixture
def tiny(tmp_path) -> Path:
    """images/train: 4 labelled squares (two wide, two tall), 1 background, 1 unlabelled, 1 corrupt, 1 bad row."""
    img, lab = tmp_path / "ds" / "images" / "train", tmp_path / "ds" / "labels" / "train"
    img.mkdir(parents=True)
    lab.mkdir(parents=True)
    sizes = [
        (60, 100, (10, 10, 50, 40)),
        (80, 120, (60, 20, 110, 70)),
        (100, 50, (5, 30, 45, 90)),
        (90, 60, (0, 0, 30, 30)),
    ]
    for i, (h, w, box) in enumerate(sizes):
        (lab / f"im{i}.txt").write_text(square_image(img / f"im{i}.png", h, w, box))
    square_image(img / "bg.png", 64, 64, (0, 0, 0, 0))
    (lab / "bg.txt").write_text("")
    square_image(img / "nolabel.png", 64, 64, (0, 0, 0, 0))
    (img / "broken.jpg").write_text("not an image")
    (lab / "broken.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    row = square_image(img / "badrow.png", 64, 64, (16, 16, 48, 48))
    (lab / "badrow.txt").write_text(row + "7 0.5 0.5 0.2 0.2\n0 2.0 0.5 0.1 0.1\n")
    return img


def tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        st = p.stat()
        h.update(f"{p.relative_to(root)}|{st.st_mode}|{st.st_mtime_ns}".encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def test_scan_counts_problems_and_items(tiny, caplog):
    caplog.set_level("INFO")
    ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, batch_size=2, nc=1))
    assert ds.n == len(ds) == 7  # broken.jpg skipped
    assert "7 images, 2 backgrounds, 1 corrupt (5 found, 1 missing, 1 empty, 1 skipped, 2 label rows dropped)" in (
        caplog.text
    )
    problems = "\n".join(ds.problems)
    assert "broken.jpg: image skipped" in problems
    assert "badrow.png: line 2: class 7 out of range (nc=1)" in problems and "badrow.png: line 3" in problems
    assert ds.shapes.shape == (7, 2) and len(ds.labels) == len(ds.segments) == 7
    i = ds.im_files.index(str(tiny / "im0.png"))
    assert tuple(ds.shapes[i]) == (100, 60)  # (w, h)
    im, labels, path, shapes = ds[i]
    assert im.dtype == torch.uint8 and im.shape == (3, 64, 64) and path.endswith("im0.png")
    (h0, w0), ((rh, rw), (padw, padh)) = shapes
    assert (h0, w0) == (60, 100) and rh == pytest.approx(39 / 60) and (padw, padh) == (0.0, 12.5)
    _, cls, x, y, w, h = labels[0].tolist()  # the box still sits on the white pixels after letterboxing
    ys, xs = np.nonzero(im[0].numpy() > 200)
    assert cls == 0 and abs((x - w / 2) * 64 - xs.min()) < 1.5 and abs((y + h / 2) * 64 - ys.max() - 1) < 1.5


def test_cache_round_trip_and_invalidation(tiny, monkeypatch):
    LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, nc=1))
    cache = cache_path_for(tiny, [str(tiny.parent.parent / "labels" / "train" / "im0.txt")])[0]
    assert cache.is_file() and str(cache).startswith(os.environ["YOLOV5FLA_CACHE"])  # never in the dataset

    def fail(*a, **k):
        raise AssertionError("scanned although the cache is valid")

    monkeypatch.setattr(dataset_mod, "verify_image_label", fail)
    ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, nc=1))  # served from the cache
    assert ds.n == 7 and any("class 7" in p for p in ds.problems)
    monkeypatch.undo()
    lab = tiny.parent.parent / "labels" / "train" / "im0.txt"
    lab.write_text("0 0.5 0.5 0.5 0.5\n0 0.25 0.25 0.1 0.1\n")
    os.utime(lab, ns=(lab.stat().st_atime_ns, lab.stat().st_mtime_ns + 5_000_000_000))
    ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, nc=1))
    assert len(ds.labels[ds.im_files.index(str(tiny / "im0.png"))]) == 2  # rebuilt after the change
    cache.write_text("{not json")
    assert LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, nc=1)).n == 7  # a broken cache is rebuilt


def test_read_only_dataset_untouched(tiny, tmp_path):
    root = tiny.parent.parent
    for p in [root, *root.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        before = tree_hash(root)
        ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, cache_images="disk", nc=1))
        assert ds[0][0].shape == (3, 64, 64)
        LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, cache_images="ram", nc=1))
        assert tree_hash(root) == before
        user_cache = Path(os.environ["YOLOV5FLA_CACHE"])
        assert list((user_cache / "labels").glob("train-*.cache.json"))
        assert all(str(f).startswith(str(user_cache)) for f in ds.npy_files) and ds.npy_files[0].is_file()
    finally:
        for p in [root, *root.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def test_rect_batch_shapes(tiny):
    ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, batch_size=2, rect=True, stride=32, pad=0.5, nc=1))
    ar = ds.shapes[:, 1] / ds.shapes[:, 0]
    assert (np.diff(ar) >= 0).all()  # sorted by aspect ratio h/w
    # batch 0: the two wide images (h/w 0.6, 0.667) -> [0.667, 1] * 64 / 32 + 0.5 -> ceil -> (2, 3) * 32
    assert ds.batch_shapes[0].tolist() == [64, 96] and ds.batch_shapes[-1].tolist() == [96, 64]
    im, _, _, _ = ds[0]
    assert tuple(im.shape[1:]) == (64, 96)


def test_single_cls_min_items_and_no_images(tiny, tmp_path):
    (tiny.parent.parent / "labels" / "train" / "im1.txt").write_text("0 0.5 0.5 0.2 0.2\n2 0.3 0.3 0.1 0.1\n")
    ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, single_cls=True, min_items=2, nc=1))
    assert ds.n == 2 and [lb[:, 0].tolist() for lb in ds.labels] == [[0, 0], [0, 0]]  # class 2 and 7 kept as 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="No images found"):
        LoadImagesAndLabels(str(tmp_path / "empty"))


def test_txt_list_source(tiny):
    lst = tiny.parent.parent / "train.txt"
    lst.write_text("./images/train/im0.png\n./images/train/im1.png\n")
    ds = LoadImagesAndLabels(str(lst), DataOptions(img_size=64))
    assert ds.n == 2 and cache_path_for(lst, [])[0].is_file() and not (tiny.parent.parent / "train.cache.json").exists()


def test_augmented_items_and_collate(tiny):
    random.seed(0)
    np.random.seed(0)
    opts = DataOptions(img_size=64, augment=True, hyp={"mixup": 1.0, "degrees": 5.0}, nc=1)
    ds = MosaicDataset(LoadImagesAndLabels(str(tiny), opts))  # mosaic (and mixup) wrap the dataset
    batch = [ds[i] for i in range(4)]
    ims, targets, paths, shapes = LoadImagesAndLabels.collate_fn(batch)
    assert ims.shape == (4, 3, 64, 64) and targets.shape[1] == 6 and shapes == (None,) * 4
    assert set(targets[:, 0].tolist()) <= {0, 1, 2, 3} and ((targets[:, 2:] >= 0) & (targets[:, 2:] <= 1)).all()
    ims4, targets4, paths4, _ = LoadImagesAndLabels.collate_fn4(batch)
    assert ims4.shape == (1, 3, 128, 128) and len(paths4) == 1 and (targets4[:, 0] == 0).all()
    assert ((targets4[:, 2:] >= 0) & (targets4[:, 2:] <= 1)).all()


def test_dataloader_builtin_and_determinism():
    data = check_dataset("builtin")
    train_opts = DataOptions(96, 8, augment=True, seed=1, nc=4), LoaderOptions(0, shuffle=True)
    loader, ds = create_dataloader(data["train"], *train_opts)
    assert isinstance(loader, InfiniteDataLoader) and len(loader) == SPLITS["train"][0] // 8
    state = loader.generator.get_state()
    rng = (random.getstate(), np.random.get_state())
    first = next(iter(loader))
    ims, targets, paths, _ = first
    assert ims.shape == (8, 3, 96, 96) and targets.shape[1] == 6 and len(paths) == 8
    assert targets[:, 1].max() < 4 and ((targets[:, 2:] > 0) & (targets[:, 2:] <= 1)).all()
    loader2, _ = create_dataloader(data["train"], *train_opts)
    loader2.generator.set_state(state)
    random.setstate(rng[0])
    np.random.set_state(rng[1])
    second = next(iter(loader2))
    assert second[2] == paths and torch.equal(second[0], ims) and torch.equal(second[1], targets)
    val, _ = create_dataloader(data["val"], DataOptions(96, 16, rect=True, pad=0.5), LoaderOptions(workers=2))
    n = sum(len(b[2]) for b in val)
    assert n == 32 and sum(len(b[2]) for b in val) == 32  # second epoch from the same workers


def test_dataloader_coco8(shared):
    root = shared / "data" / "coco8"
    before = tree_hash(root)
    data = check_dataset(root / "coco8.yaml")
    loader, ds = create_dataloader(
        data["val"], DataOptions(160, 4, rect=True, pad=0.5, nc=80, prefix="val: "), LoaderOptions(workers=0)
    )
    ims, targets, paths, shapes = next(iter(loader))
    assert ims.shape == (4, 3, 192, 192) and len(shapes) == 4 and targets.shape[0] == sum(len(lb) for lb in ds.labels)
    assert shapes[0][0] == tuple(int(v) for v in ds.shapes[0][::-1])  # (h0, w0)
    train, _ = create_dataloader(data["train"], DataOptions(128, 4, augment=True, nc=80), LoaderOptions(workers=0))
    assert next(iter(train))[0].shape == (4, 3, 128, 128)
    assert tree_hash(root) == before  # a shared (read-only) dataset is never written to


def test_collate_fn4_tiles_keep_boxes_on_pixels(monkeypatch):
    items = []
    for k in range(4):  # a white square at a different place in each 32x32 image
        im = torch.zeros(3, 32, 32, dtype=torch.uint8)
        x1, y1 = 4 + 4 * k, 8
        im[:, y1 : y1 + 8, x1 : x1 + 8] = 255
        items.append((im, torch.tensor([[0.0, k, (x1 + 4) / 32, (y1 + 4) / 32, 0.25, 0.25]]), f"p{k}", None))
    monkeypatch.setattr(dataset_mod.random, "random", lambda: 0.9)  # take the 2x2 tile branch
    ims, targets, paths, _ = LoadImagesAndLabels.collate_fn4(items)
    assert ims.shape == (1, 3, 64, 64) and paths == ("p0",)
    for _, cls, x, y, w, h in targets.tolist():
        x1, y1 = round((x - w / 2) * 64), round((y - h / 2) * 64)
        assert w * 64 == 8 and (ims[0, 0, y1 : y1 + 8, x1 : x1 + 8] == 255).all(), cls


@pytest.mark.parametrize("ext", ["jpg", "png"])
def test_training_images_decoded_at_reduced_size(tmp_path, ext):
    # a smooth 96x128 image trained at 32 (r = 1/4) or 64 (r = 1/2): decoded reduced, same shapes as a full decode
    img, lab = tmp_path / "images", tmp_path / "labels"
    img.mkdir()
    lab.mkdir()
    yy, xx = np.mgrid[0:96, 0:128]
    im = np.stack((xx * 2, yy * 2, (xx + yy)), 2).astype(np.uint8)
    cv2.imwrite(str(img / f"a.{ext}"), im)
    (lab / "a.txt").write_text("0 0.5 0.5 0.25 0.25\n")
    for size in (32, 64):
        train = LoadImagesAndLabels(str(img), DataOptions(img_size=size, augment=True, nc=1))
        val = LoadImagesAndLabels(str(img), DataOptions(img_size=size, augment=False, nc=1))
        a, hw0, hw = train.load_image(0)
        b, hw0_val, hw_val = val.load_image(0)
        assert (hw0, hw) == (hw0_val, hw_val) == ((96, 128), (size * 3 // 4, size))
        full = cv2.resize(cv2.imread(str(img / f"a.{ext}")), hw[::-1], interpolation=cv2.INTER_LINEAR)
        assert np.abs(a.astype(int) - full.astype(int)).mean() < 3  # a smooth image: nearly the same pixels
        assert np.array_equal(b, cv2.resize(cv2.imread(str(img / f"a.{ext}")), hw[::-1], interpolation=cv2.INTER_AREA))


def test_cache_ram_and_disk_in_a_thread_pool_match_uncached(tiny):
    plain = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, nc=1))
    ram = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, cache_images="ram", nc=1))
    disk = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, cache_images="disk", nc=1))
    assert all(x is not None for x in ram.ims) and all(f.is_file() for f in disk.npy_files)
    for i in range(plain.n):
        a, b, c = plain.load_image(i), ram.load_image(i), disk.load_image(i)
        assert np.array_equal(a[0], b[0]) and np.array_equal(a[0], c[0]) and a[1:] == b[1:] == c[1:]


def test_image_buffer_keeps_the_recent_images_within_its_share():
    import pickle

    from utils.data.buffer import ImageBuffer

    def item(kb: int):
        return np.zeros(kb * 1024, np.uint8), (1, 1), (1, 1)

    buf = ImageBuffer(total_mb=10 / 1024)  # 10 KB, all of it this process's (no loader worker)
    for i in range(3):
        buf.put(i, item(4))  # 12 KB > 10: index 0 goes
    assert sorted(buf.items) == [1, 2] and buf.nbytes == 8 * 1024
    assert buf.get(1) is not None  # 1 becomes the most recent, so 2 goes next
    buf.put(3, item(4))
    assert sorted(buf.items) == [1, 3] and buf.get(0) is None and buf.get(2) is None
    buf.put(4, item(11))  # larger than the whole share: not kept
    assert 4 not in buf.items
    clone = pickle.loads(pickle.dumps(buf))  # a spawned worker starts empty
    assert clone.items == {} and clone.total_bytes == buf.total_bytes and clone.limit is None


def test_training_dataset_buffers_decoded_images(tiny, monkeypatch):
    ds = LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, augment=True, nc=1))
    first = [ds.load_image(i) for i in range(ds.n)]
    monkeypatch.setattr(ds, "_decode", lambda i: (_ for _ in ()).throw(AssertionError("decoded twice")))
    for i in range(ds.n):
        im, hw0, hw = ds.load_image(i)
        assert im is first[i][0] and (hw0, hw) == first[i][1:]
    assert LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, augment=True, nc=1, buffer_mb=0)).buffer is None
    assert LoadImagesAndLabels(str(tiny), DataOptions(img_size=64, nc=1)).buffer is None  # validation: read once
