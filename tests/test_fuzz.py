"""Property-based fuzzing (hypothesis) of every parser a user's file reaches: model yaml, dataset yaml, label rows,
ONNX metadata and the restricted unpickler. Each must give a valid result or one UserError, never another
exception, never a hang (a per-example deadline). Example counts are bounded so each target runs in seconds;
COUNTS records how many cases each target generated (printed at the end with -s)."""

from __future__ import annotations

import copy
import io
import math
import pickle
import string
from collections import Counter
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tests.hardening_helpers import TINY_CFG  # noqa: E402
from utils.errors import UserError  # noqa: E402

COUNTS: Counter = Counter()
FUZZ = settings(max_examples=60, deadline=10_000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip

NUMBERS = st.one_of(
    st.integers(-(10**13), 10**13), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), st.none(),
    st.sampled_from([0, 1, -1, 2, 3, 64, 1e12, 1e9, 0.5, 1.33, 2**31, "nc", "anchors", "None", "abc"]),
)  # fmt: skip
SCALARS = st.one_of(NUMBERS, st.text(string.printable, max_size=8))
VALUES = st.recursive(SCALARS, lambda c: st.one_of(st.lists(c, max_size=4), st.dictionaries(st.text(max_size=4), c,
                      max_size=3)), max_leaves=12)  # fmt: skip
MODULES = st.sampled_from(["Conv", "C3", "SPPF", "Concat", "nn.Upsample", "Detect", "FLA", "C3FLA", "Focus", "C3x",
                           "nn.MaxPool2d", "Contract", "Expand", "GhostConv", "Nope", 7, None])  # fmt: skip


@st.composite
def model_dicts(draw) -> dict:
    """TINY_CFG with some top-level values and some rows replaced by drawn ones."""
    d = copy.deepcopy(TINY_CFG)
    for key in draw(st.lists(st.sampled_from(["nc", "depth_multiple", "width_multiple", "anchors", "ch"]), max_size=3)):
        d[key] = draw(VALUES)
    rows = d["backbone"] + d["head"]
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(rows) - 1))
        f = draw(st.one_of(st.just(-1), st.integers(-8, 8), st.lists(st.integers(-8, 8), min_size=1, max_size=3)))
        args = draw(st.lists(SCALARS, max_size=5))
        rows[i] = [f, draw(st.one_of(st.integers(-3, 10**12), SCALARS)), draw(MODULES), args]
    d["backbone"], d["head"] = rows[:-1], rows[-1:]
    return d


@settings(FUZZ, max_examples=40)
@given(model_dicts())
def test_model_yaml_parser(d):
    from models.yolo import DetectionModel

    COUNTS["model yaml"] += 1
    try:
        DetectionModel(d, verbose=False)
    except UserError as e:
        assert "\n" not in str(e)


@FUZZ
@given(st.text(max_size=300))
def test_yaml_text_reader(tmp_path_factory, text):
    from utils.yaml_io import read_yaml_mapping

    COUNTS["yaml text"] += 1
    f = tmp_path_factory.getbasetemp() / "fuzz.yaml"
    f.write_text(text, encoding="utf-8", errors="surrogateescape")
    try:
        assert isinstance(read_yaml_mapping(f, "--cfg", "keys"), dict)
    except UserError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["path", "train", "val", "test", "names", "nc", "download"]), VALUES,
                       max_size=6))  # fmt: skip
def test_dataset_yaml(tmp_path_factory, d):
    from utils.data.config import check_dataset

    COUNTS["dataset yaml"] += 1
    base = tmp_path_factory.getbasetemp()
    (base / "images").mkdir(exist_ok=True)
    try:
        out = check_dataset(d)
        assert isinstance(out["names"], list) and out["nc"] == len(out["names"])
    except UserError:
        pass


LABEL_TOKENS = st.sampled_from(["0", "1", "7", "-1", "0.5", "0.25", "1.5", "nan", "inf", "-inf", "1e309", "x", "",
                                "0.0", "1", "2.5", "1e-9", "\t", "\u00a0", "\x00"])  # fmt: skip


@FUZZ
@given(st.lists(st.lists(LABEL_TOKENS, max_size=9).map(" ".join), max_size=12), st.sampled_from([None, 1, 2, 80]))
def test_label_rows(tmp_path_factory, lines, nc):
    import numpy as np

    from utils.data.labels import read_label_file

    COUNTS["label rows"] += 1
    f = tmp_path_factory.getbasetemp() / "fuzz.txt"
    f.write_text("\n".join(lines))
    labels, segments, problems = read_label_file(f, nc)
    assert labels.dtype == np.float32 and labels.shape[1] == 5 and np.isfinite(labels).all()
    assert ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1)).all() and (labels[:, 3:] > 0).all()
    assert not segments or len(segments) == len(labels)


META_TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["32", "-8", "0", "1e400", "nan", "[1, 2]", "{0: 'a'}",
                      "['a', 'b']", "[" * 200, "{'a': 1}", "10**10", "2e9", "True", '{"0": "x"}', "[[]]"]))  # fmt: skip


@FUZZ
@given(st.dictionaries(st.sampled_from(["stride", "names", "imgsz", "format"]), META_TEXT, max_size=4))
def test_onnx_metadata(meta):
    from utils.deploy.backends import onnx_meta

    COUNTS["onnx metadata"] += 1
    try:
        stride, names = onnx_meta(meta, Path("m.onnx"))
        assert isinstance(stride, int) and 1 <= stride <= 1024 and isinstance(names, list)
    except UserError:
        pass


def _seed_pickles() -> list[bytes]:
    """Pickles like a checkpoint's: plain containers, a tensor, and an official-style module object."""
    buf = io.BytesIO()
    torch.save({"model": {"yaml": TINY_CFG, "state_dict": {"w": torch.ones(2)}}, "epoch": 3}, buf)
    plain = pickle.dumps({"epoch": 1, "best_fitness": 0.5, "opt": {"imgsz": 640}, "x": [1.0, math.pi]}, protocol=2)
    return [plain, pickle.dumps([1, (2, 3), {"a": b"b"}], protocol=4), buf.getvalue()[:4000]]


SEEDS = _seed_pickles()


@FUZZ
@given(st.integers(0, len(SEEDS) - 1), st.lists(st.tuples(st.integers(0, 4000), st.integers(0, 255)), max_size=6),
       st.booleans())  # fmt: skip
def test_restricted_unpickler(seed, flips, truncate):
    from utils.safe_pickle import RestrictedUnpickler

    COUNTS["restricted unpickler"] += 1
    data = bytearray(SEEDS[seed])
    for pos, value in flips:
        data[pos % len(data)] = value
    if truncate:
        data = data[: len(data) // 2]
    try:
        RestrictedUnpickler(io.BytesIO(bytes(data))).load()
    except UserError:
        pass
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError,
            UnicodeDecodeError, OverflowError, MemoryError, RecursionError, RuntimeError):  # fmt: skip
        pass  # a damaged pickle: load_checkpoint turns each of these into one UserError (next test)


@FUZZ
@given(st.binary(max_size=400), st.integers(0, len(SEEDS) - 1), st.integers(0, 3000))
def test_checkpoint_loader_on_damaged_files(tmp_path_factory, noise, seed, cut):
    """What a user meets: load_checkpoint on a damaged file is one UserError (CheckpointError) or a checkpoint."""
    from utils.checkpoint import load_checkpoint

    COUNTS["checkpoint loader"] += 1
    f = tmp_path_factory.getbasetemp() / "fuzz.pt"
    f.write_bytes(SEEDS[seed][:cut] + noise)
    try:
        assert isinstance(load_checkpoint(f), dict)
    except UserError as e:
        assert "\n" not in str(e)


def test_zz_report_counts():
    """Runs last in this file: every target generated cases (see COUNTS in the closing report)."""
    print("\nhypothesis cases per target:", dict(COUNTS))
    assert len(COUNTS) == 7 and all(n >= 10 for n in COUNTS.values()), COUNTS
