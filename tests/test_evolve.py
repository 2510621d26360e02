"""train.py --evolve: the GA's operators, evolve.csv / hyp_evolve.yaml / evolve.png, seeds, and resume after a kill."""

from __future__ import annotations

import random
from argparse import Namespace
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.evolve_fakes import fake_train, score
from tests.helpers import make_dataset
from train import main as train_main
from train import parse_opt
from utils.scaleout import LocalRunner
from utils.train.evolve import EvolveTask, evolve
from utils.train.evolve_ga import META, clip_hyp, mutate, select_parent
from utils.train.evolve_io import append_evolve_row, read_evolve_csv
from utils.yaml_io import read_yaml_mapping

TINY = ["--cfg", "yolov5n.yaml", "--imgsz", "64", "--epochs", "1", "--batch-size", "4", "--workers", "0",
        "--device", "cpu"]  # fmt: skip


def test_mutation_stays_in_limits_and_keeps_gain_zero_keys():
    base = clip_hyp(read_yaml_mapping(Path("data/hyps/hyp.scratch-low.yaml"), "hyp", "hyp"))
    base["anchors"] = 3.0
    keys = [k for k in META if k in base]
    rng = np.random.default_rng(0)
    moved = set()
    for _ in range(200):
        child = mutate(base, keys, rng)
        for k in keys:
            lo, hi = META[k][1:]
            assert lo <= child[k] <= hi and child[k] == round(child[k], 5), k
            if META[k][0] == 0:
                assert child[k] == base[k], k  # iou_t, fl_gamma, perspective, fliplr never move
        moved |= {k for k in keys if child[k] != base[k]}
        assert child != base  # every trial changes something
    assert {"lr0", "momentum", "anchors", "mosaic"} <= moved


def test_parent_comes_from_the_top_five_by_fitness():
    rows = np.arange(20, dtype=float).reshape(10, 2)  # row i: fitness 2i (first column)
    fit = rows[:, 0]
    picks = {select_parent(rows, fit, random.Random(s))[0] for s in range(300)}
    assert picks <= {10.0, 12.0, 14.0, 16.0, 18.0} and 18.0 in picks and len(picks) >= 3


def test_bare_evolve_means_300_in_both_scripts():
    from segment.train import parse_opt as seg_parse_opt

    for parse in (parse_opt, seg_parse_opt):
        opt = parse(["--evolve", "--resume_evolve"])
        assert opt.evolve == 300 and opt.resume_evolve == "" and parse([]).evolve is None


def test_csv_rows_are_appended_whole(tmp_path):
    f = tmp_path / "evolve.csv"
    for i in range(3):
        assert append_evolve_row(f, ["metrics/mAP_0.5", "lr0"], [0.1 * i, 0.01]) == i + 1
    keys, rows = read_evolve_csv(f)
    assert keys == ["metrics/mAP_0.5", "lr0"] and rows.shape == (3, 2) and rows[2, 0] == pytest.approx(0.2)
    assert len(f.read_text().splitlines()[0].split(",")[0]) == 20  # YOLOv5's 20-wide columns
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def _opt(tmp_path: Path, n: int, *extra: str) -> Namespace:
    opt = parse_opt([*TINY, "--data", "unused.yaml", "--evolve", str(n), "--project", str(tmp_path), *extra])
    opt.fake_seconds = 0.0
    return opt


def test_fake_evolution_layout_seeds_and_progress(tmp_path):
    seeds = tmp_path / "pop"
    seeds.mkdir()
    (seeds / "a.yaml").write_text("lr0: 0.02\nmosaic: 0.5\n")
    save = evolve(_opt(tmp_path, 12, "--evolve_population", str(seeds)), EvolveTask(train_fn=fake_train), seed=0)
    keys, rows = read_evolve_csv(save / "evolve.csv")
    assert rows.shape == (12, 7 + 29) and keys[3] == "metrics/mAP_0.5:0.95" and "anchors" in keys
    hyp0 = dict(zip(keys[7:], rows[0, 7:]))
    assert hyp0["lr0"] == 0.02 and hyp0["mosaic"] == 0.5 and hyp0["anchors"] == 3  # the seed trains first
    for r in rows:  # each row's metrics came from training with that row's hyperparameters
        assert r[3] == pytest.approx(score(dict(zip(keys[7:], r[7:]))), abs=1e-4)
    fit = 0.1 * rows[:, 2] + 0.9 * rows[:, 3]
    best = read_yaml_mapping(save / "hyp_evolve.yaml", "hyp", "hyp")
    assert best["lr0"] == pytest.approx(rows[fit.argmax(), 7]) and best["label_smoothing"] == 0.0
    assert f"# Best generation: {fit.argmax()}" in (save / "hyp_evolve.yaml").read_text()
    assert (save / "evolve.png").stat().st_size > 10_000 and len(list((save / "trials").iterdir())) == 12
    assert not (save / "trials/t0000/weights").exists() and (save / "trials/t0011/results.csv").is_file()


def test_resume_keeps_stored_workers_and_device_unless_given(tmp_path):
    """--resume_evolve alone keeps the evolution's --workers and --device (train.py's defaults do not replace them);
    --ray is this command line's (absent: local)."""
    from segment.train import parse_opt as seg_parse_opt
    from utils.train.evolve_setup import UNSET, evolve_folder

    save = evolve(_opt(tmp_path, 1, "--workers", "2", "--ray"), EvolveTask(train_fn=fake_train), LocalRunner(), 0)
    for extra, workers in (([], 2), (["--workers", "3"], 3)):
        _, new, _ = evolve_folder(parse_opt(["--resume_evolve", str(save), *extra]), META)
        assert new.workers == workers and new.device == "cpu" and new.ray is None and new.evolve == 1
    for parse in (parse_opt, seg_parse_opt):
        assert UNSET == {k: getattr(parse([]), k) for k in UNSET}


@pytest.mark.slow
def test_evolve_3_real_trainings_resume_after_kill(tmp_path, restore_logging):
    """Real tiny trainings: a kill during trial 3 keeps rows 1-2; --resume_evolve adds only row 3."""
    data = make_dataset(tmp_path / "data", n_train=4, n_val=4)
    opt = _opt(tmp_path / "runs", 3, "--noautoanchor")
    opt.data = str(data)
    calls = []

    def killed_third(o, hyp):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return EvolveTask().train_fn(o, hyp)

    with pytest.raises(KeyboardInterrupt):
        evolve(opt, replace(EvolveTask(), train_fn=killed_third))
    save = tmp_path / "runs" / "exp"
    before = (save / "evolve.csv").read_text()
    assert len(before.splitlines()) == 1 + 2 and not (save / "evolve.png").exists()
    train_main(parse_opt(["--resume_evolve", str(save)]))  # the CLI path; an error would exit
    after = (save / "evolve.csv").read_text()
    assert after.startswith(before) and len(after.splitlines()) == 1 + 3  # the two finished rows untouched
    keys, rows = read_evolve_csv(save / "evolve.csv")
    fit = 0.1 * rows[:, 2] + 0.9 * rows[:, 3]
    best = read_yaml_mapping(save / "hyp_evolve.yaml", "hyp", "hyp")
    row = dict(zip(keys, rows[fit.argmax()]))
    assert all(best[k] == pytest.approx(row[k]) for k in keys[7:]) and len(best) == len(keys) - 7 + 1  # + fixed
    assert "anchors" not in keys  # --noautoanchor keeps the anchors of the cfg
    trials = sorted(p.name for p in (save / "trials").iterdir())
    assert (save / "evolve.png").is_file() and trials == ["t0000", "t0001", "t0002"]


@pytest.fixture
def seg4(shared, tmp_path):
    """Four coco128-seg images with their polygon labels and a dataset yaml."""
    import shutil

    import yaml

    src = shared / "data/coco128-seg"
    if not src.is_dir():
        pytest.skip("../shared/data/coco128-seg is absent")
    for f in sorted((src / "images/train2017").glob("*.jpg"))[:4]:
        for sub, suffix in (("images", ".jpg"), ("labels", ".txt")):
            (tmp_path / sub).mkdir(exist_ok=True)
            shutil.copy(src / sub / "train2017" / (f.stem + suffix), tmp_path / sub)
    names = yaml.safe_load((src / "coco128-seg.yaml").read_text())["names"]
    (tmp_path / "seg.yaml").write_text(yaml.safe_dump({"path": str(tmp_path), "train": "images", "val": "images",
                                                       "names": names}))  # fmt: skip
    return tmp_path / "seg.yaml"


@pytest.mark.slow
def test_segment_evolve_real_training(seg4, tmp_path, restore_logging, capsys):
    """segment/train.py --evolve: a real trial records box and mask columns; fitness weighs both (YOLOv5's)."""
    from segment.train import main as seg_main
    from segment.train import parse_opt as seg_parse_opt
    from utils.segment.evolve import segment_evolve_task

    argv = [*TINY, "--cfg", "yolov5n-seg.yaml", "--data", str(seg4), "--evolve", "1", "--noautoanchor"]
    save = seg_main(seg_parse_opt([*argv, "--project", str(tmp_path / "runs"), "--name", "seg"]))
    keys, rows = read_evolve_csv(save / "evolve.csv")
    assert keys[:12] == [
        *(f"metrics/{m}({k})" for k in "BM" for m in ("precision", "recall", "mAP_0.5", "mAP_0.5:0.95")),
        "val/box_loss", "val/seg_loss", "val/obj_loss", "val/cls_loss",
    ]  # fmt: skip
    assert rows.shape == (1, 12 + 28) and "copy_paste" in keys and "anchors" not in keys
    assert rows[0, 8] > 0 and rows[0, 9] > 0  # val box and seg losses of the final epoch: a real validation ran
    assert (save / "evolve.png").is_file() and [p.name for p in (save / "trials").iterdir()] == ["t0000"]
    out = capsys.readouterr().out
    assert "Usage example: python segment/train.py --hyp" in out
    assert "Validating" not in out  # a trial saves no best.pt, so its final epoch is validated once (YOLOv5)
    row = np.array([[0.5, 0.5, 0.4, 0.2, 0.5, 0.5, 0.3, 0.1, 1, 1, 1, 1]])
    assert segment_evolve_task().fitness(row)[0] == pytest.approx(0.04 + 0.18 + 0.03 + 0.09)
