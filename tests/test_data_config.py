"""check_dataset: safe yaml reading, paths relative to the yaml's folder, clear errors, builtin and bare names."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from utils.data.config import check_dataset
from utils.errors import UserError


def make_dataset(root: Path, yaml_text: str) -> Path:
    for split in ("train", "val"):
        (root / "data" / "images" / split).mkdir(parents=True, exist_ok=True)
    f = root / "cfg" / "d.yaml"
    f.parent.mkdir(exist_ok=True)
    f.write_text(yaml_text)
    return f


def test_relative_path_resolves_against_yaml_folder(tmp_path, monkeypatch):
    f = make_dataset(tmp_path, "path: ../data\ntrain: images/train\nval: [images/val]\nnames: [a, b]\n")
    monkeypatch.chdir(tmp_path.parent)  # somewhere else entirely
    d = check_dataset(str(f))
    root = (tmp_path / "data").resolve()
    assert d["path"] == str(root) and d["yaml_file"] == str(f.resolve())
    assert d["train"] == [str(root / "images" / "train")] and d["val"] == [str(root / "images" / "val")]
    assert d["names"] == ["a", "b"] and d["nc"] == 2 and "test" not in d


def test_names_dict_and_nc(tmp_path):
    f = make_dataset(
        tmp_path, "path: ../data\ntrain: images/train\nval: images/val\nnc: 3\nnames: {2: c, 0: a, 1: b}\n"
    )
    d = check_dataset(f)
    assert d["names"] == ["a", "b", "c"] and d["nc"] == 3


def test_nc_only_gives_generic_names(tmp_path):
    f = make_dataset(tmp_path, "path: ../data\ntrain: images/train\nval: images/val\nnc: 2\n")
    assert check_dataset(f)["names"] == ["class0", "class1"]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path: ../data\ntrain: images/train\nval: images/val\nnc: 3\nnames: [a, b]\n", "nc is 3 but 2 names"),
        ("path: ../data\ntrain: images/train\nnames: [a]\n", "missing key(s) val"),
        ("path: ../data\nnames: [a]\n", "missing key(s) train, val"),
        ("path: ../data\ntrain: images/train\nval: images/nope\nnames: [a]\n", "images/nope"),
        ("path: ../data\ntrain: images/train\nval: images/val\nnames: {0: a, 2: c}\n", "without gaps"),
        ("path: ../data\ntrain: images/train\nval: images/val\n", "needs 'names'"),
        ("- just\n- a list\n", "expected a mapping"),
        ("train: [unclosed\n", "cannot read dataset yaml"),
    ],
)
def test_errors(tmp_path, text, message):
    f = make_dataset(tmp_path, text)
    with pytest.raises(UserError) as e:
        check_dataset(f)
    assert message in str(e.value)


def test_missing_yaml_names_the_file(tmp_path):
    with pytest.raises(UserError, match="nothere.yaml"):
        check_dataset(tmp_path / "nothere.yaml")


def test_download_key_is_never_run(tmp_path, caplog):
    marker = tmp_path / "ran"
    text = f"path: ../data\ntrain: images/train\nval: images/val\nnames: [a]\ndownload: touch {marker}\n"
    f = make_dataset(tmp_path, text)
    with caplog.at_level(logging.WARNING):
        d = check_dataset(f)
    assert "never be executed" in caplog.text and "download" not in d and not marker.exists()


def test_yaml_tags_are_not_constructed(tmp_path):
    text = "path: ../data\ntrain: images/train\nval: images/val\nnames: !!python/object/apply:os.system ['true']\n"
    with pytest.raises(UserError, match="cannot read"):
        check_dataset(make_dataset(tmp_path, text))


def test_builtin_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLOV5FLA_HOME", str(tmp_path / "home"))
    d = check_dataset("builtin")
    assert (
        d["nc"] == 4 and Path(d["train"][0]).is_dir() and Path(d["yaml_file"]).parent == tmp_path / "home" / "builtin"
    )
    assert check_dataset(None)["yaml_file"] == d["yaml_file"]


def test_bare_name_from_repo_data_folder():
    with pytest.raises(UserError, match="datasets/coco128"):  # found in data/, then its (absent) images are named
        check_dataset("coco128")
    with pytest.raises(UserError, match="--data file not found"):
        check_dataset("no_such_dataset_xyz")


def test_coco8_from_shared(shared):
    d = check_dataset(shared / "data" / "coco8" / "coco8.yaml")
    assert d["nc"] == 80 and d["names"][0] == "person" and d["val"][0].endswith("images/val")


# ---- a relative 'path:': beside the yaml first, then (official YOLOv5) the current folder, then the repository ----


def _images(root: Path) -> Path:
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
    return root.resolve()


def _chosen_root(caplog) -> str:
    lines = [m for m in caplog.messages if m.startswith("Dataset root ")]
    assert len(lines) == 1, caplog.messages
    return lines[0]


def test_root_beside_the_yaml_wins_over_the_current_folder(tmp_path, monkeypatch, caplog):
    beside = _images(tmp_path / "cfg" / "ds")
    _images(tmp_path / "cwd" / "ds")  # also there from the current folder: the yaml's folder comes first
    f = tmp_path / "cfg" / "d.yaml"
    f.write_text("path: ds\ntrain: images/train\nval: images/val\nnames: [a]\n")
    monkeypatch.chdir(tmp_path / "cwd")
    with caplog.at_level(logging.INFO):
        d = check_dataset(f)
    assert d["path"] == str(beside) and d["val"] == [str(beside / "images" / "val")]
    assert _chosen_root(caplog) == f"Dataset root {beside}"


def test_official_coco128_yaml_from_the_repository_root(tmp_path, monkeypatch, caplog):
    # official data/coco128.yaml says 'path: ../datasets/coco128', meant from the repository root (the current folder)
    repo, data = tmp_path / "yolov5", _images(tmp_path / "datasets" / "coco128")
    (repo / "data").mkdir(parents=True)
    f = repo / "data" / "coco128.yaml"
    f.write_text("path: ../datasets/coco128\ntrain: images/train\nval: images/train\ntest:\nnames:\n  0: person\n")
    monkeypatch.chdir(repo)
    with caplog.at_level(logging.INFO):
        d = check_dataset("data/coco128.yaml")
    assert d["path"] == str(data) and d["train"] == [str(data / "images" / "train")] and "test" not in d
    assert _chosen_root(caplog) == f"Dataset root {data} (path: ../datasets/coco128, not found beside the yaml)"


def test_root_relative_to_the_repository(tmp_path, monkeypatch, caplog):
    import os

    from utils.paths import ROOT

    data = _images(tmp_path / "elsewhere" / "ds")
    rel = os.path.relpath(data, ROOT)  # '../../tmp/...': exists from the repository only
    f = tmp_path / "a" / "b" / "d.yaml"
    f.parent.mkdir(parents=True)
    f.write_text(f"path: {rel}\ntrain: images/train\nval: images/val\nnames: [a]\n")
    (tmp_path / "c" / "d" / "e" / "f").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "c" / "d" / "e" / "f")
    with caplog.at_level(logging.INFO):
        d = check_dataset(f)
    assert d["path"] == str(data) and d["val"] == [str(data / "images" / "val")]
    assert f"Dataset root {data} (path: {rel}" in _chosen_root(caplog)


def test_root_nowhere_names_the_yaml_folder_path(tmp_path, monkeypatch, caplog):
    f = make_dataset(tmp_path, "path: ../missing\ntrain: images/train\nval: images/val\nnames: [a]\n")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level(logging.INFO), pytest.raises(UserError, match=str(tmp_path / "missing" / "images")):
        check_dataset(f)
    assert "Dataset root ../missing not found (tried " in caplog.text
