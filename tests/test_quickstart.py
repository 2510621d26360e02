"""The README's Quickstart describes the built-in dataset: generate it and check every stated figure."""

from __future__ import annotations

import re

import cv2
import numpy as np

from tests.conftest import ROOT
from utils.data.labels import read_label_file
from utils.data.synthetic import NAMES, ensure_builtin_dataset
from utils.yaml_io import read_yaml_mapping

CLAIM = re.compile(
    r"(\d+) train and (\d+) val images, (\d+)-(\d+) px a side, with (\d+)-(\d+) shapes each of (\d+) classes "
    r"\(([a-z, ]+)\)"
)


def _readme_claim() -> tuple:
    text = (ROOT / "README.md").read_text()
    quickstart = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    m = CLAIM.search(" ".join(quickstart.split()))
    assert m, "the Quickstart no longer describes the built-in dataset in the expected words"
    *numbers, names = m.groups()
    return (*map(int, numbers), [n.strip() for n in names.split(",")])


def test_builtin_dataset_is_what_the_readme_says(tmp_path):
    n_train, n_val, px_lo, px_hi, obj_lo, obj_hi, nc, names = _readme_claim()
    yaml_file = ensure_builtin_dataset(tmp_path / "builtin")
    data = read_yaml_mapping(yaml_file, "builtin", "dataset")
    assert data["nc"] == nc == len(names) and list(data["names"].values()) == names == NAMES
    root = yaml_file.parent
    all_sizes, all_counts = set(), []
    for split, n in (("train", n_train), ("val", n_val)):
        images = sorted((root / "images" / split).glob("*.jpg"))
        assert len(images) == n, split
        per_image, classes, sizes = [], np.zeros(nc, int), set()
        for im_file in images:
            h, w = cv2.imread(str(im_file)).shape[:2]
            sizes |= {h, w}
            labels, _, problems = read_label_file(root / "labels" / split / f"{im_file.stem}.txt", nc=nc)
            assert problems == []
            per_image.append(len(labels))
            classes += np.bincount(labels[:, 0].astype(int), minlength=nc)
        assert (classes > 0).all(), (split, classes)  # every class is present
        all_sizes |= sizes
        all_counts += per_image
    assert (min(all_sizes), max(all_sizes)) == (px_lo, px_hi), sorted(all_sizes)
    assert (min(all_counts), max(all_counts)) == (obj_lo, obj_hi)
