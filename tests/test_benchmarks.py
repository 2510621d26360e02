"""Benchmark tools: interleaved timing, the study's statistics, and both CLIs end to end on tiny inputs."""

from __future__ import annotations

import json
import math
import re
import sys
from pathlib import Path

import pytest

from benchmarks.ablate import pooled, pooled_markdown, run_one, run_stem, split_variant, summarise, verdict, welch
from benchmarks.latency import time_interleaved
from benchmarks.vs_official import Row, Side, markdown, time_pairs
from tests.conftest import run_script
from tests.helpers import make_dataset, run_main


def test_time_interleaved_rotates_the_order():
    calls = []
    fns = {k: (lambda k=k: calls.append(k)) for k in "abc"}
    times = time_interleaved(fns, runs=3, warmup=1)
    assert calls[:3] == ["a", "b", "c"]  # warmup, once each
    assert calls[3:] == ["a", "b", "c", "b", "c", "a", "c", "a", "b"]  # each round starts one later
    assert {k: len(v) for k, v in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t >= 0 for v in times.values() for t in v)


def test_welch_by_hand():
    # a = [1, 3]: mean 2, var 2; b = [0, 2]: mean 1, var 2 -> t = 1 / sqrt(2/2 + 2/2), df = 2 -> critical 4.30
    t, sig = welch([1.0, 3.0], [0.0, 2.0])
    assert t == pytest.approx(1 / math.sqrt(2)) and not sig
    t, sig = welch([0.50, 0.51, 0.49, 0.50], [0.40, 0.41, 0.39, 0.40])
    assert t > 10 and sig
    t, sig = welch([0.40, 0.41, 0.39], [0.50, 0.51, 0.49])
    assert t < -10 and sig
    assert math.isnan(welch([0.5], [0.4, 0.5])[0])  # one seed: no verdict
    assert math.isnan(welch([0.5, 0.5], [0.5, 0.5])[0])  # no spread at all


def test_summarise_deltas_and_verdicts():
    runs = {
        "base.yaml": [{"mAP50": 0.7, "mAP50-95": v, "train_hours": 0.1} for v in (0.40, 0.41, 0.39)],
        "same.yaml": [{"mAP50": 0.7, "mAP50-95": v, "train_hours": 0.1} for v in (0.42, 0.38, 0.40)],
        "better.yaml": [{"mAP50": 0.8, "mAP50-95": v, "train_hours": 0.2} for v in (0.45, 0.46, 0.44)],
    }
    costs = {k: {"params": 1, "gflops": 1.0, "latency_ms": ms} for k, ms in zip(runs, (10.0, 10.0, 10.5))}
    rows = {r["cfg"]: r for r in summarise(runs, costs, "base.yaml")}
    assert rows["better.yaml"]["d_mAP50-95"] == pytest.approx(0.05)
    assert rows["better.yaml"]["d_latency_pct"] == pytest.approx(5.0)
    assert rows["better.yaml"]["mAP50-95_std"] == pytest.approx(0.01)
    assert verdict(rows["better.yaml"]) == "gain" and verdict(rows["same.yaml"]) == "noise"
    assert rows["same.yaml"]["seeds"] == 3


def test_latency_cli_table():
    # a child process: run in-process, latency.py left the suite's process so that a later test segfaulted in OpenCV
    r = run_script("benchmarks/latency.py", "--cfgs", "yolov5n.yaml", "yolov5n-fla.yaml", "--imgsz", "64",
                   "--runs", "3", "--warmup", "1")  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "models interleaved" in r.stdout
    for model in ("yolov5n", "yolov5n-fla"):
        for backend in ("PyTorch", "ONNX Runtime"):
            assert re.search(rf"\| {model} \| [\d,]+ \| {backend} \| \d+\.\d \| \d+\.\d \|", r.stdout), r.stdout


ABLATE = ("--epochs", "1", "--imgsz", "64", "--batch-size", "4", "--workers", "0")  # the tiny studies' runs
CFGS = ("--cfgs", "yolov5n.yaml", "yolov5n-fla-r25", "--seeds", "1", "--train-args", "--noplots")


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory) -> dict:
    """A one-dataset study of 2 trained runs, its output in <project>/study/tiny: where the two-datasets study of
    the same project puts its first dataset (tiny.yaml), so that one trains only its second dataset's runs."""
    project = tmp_path_factory.mktemp("ablate")
    data = make_dataset(project / "data", n_train=4, n_val=2)
    common = ("--data", data, "--project", project / "study", "--name", "tiny", *ABLATE, "--latency-runs", "3")
    return {
        "project": project,
        "data": data,
        "common": common,
        "first": run_main("benchmarks/ablate.py", *common, *CFGS),
    }


@pytest.mark.slow
def test_ablate_cli_trains_reuses_and_reports(tiny_study):
    r, common, cfgs = tiny_study["first"], tiny_study["common"], CFGS
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[run 1/2] yolov5n.yaml seed 1 training" in r.stdout
    assert "[run 2/2] yolov5n-fla-r25 seed 1 training" in r.stdout
    assert "study ETA" in r.stdout
    out = tiny_study["project"] / "study" / "tiny"
    for f in ("study.md", "study.json", "study.png"):
        assert (out / f).stat().st_size > 0
    assert sorted(p.name for p in out.glob("*_s[01]")) == ["yolov5n-fla-r25_s1", "yolov5n_s1"]
    study = json.loads((out / "study.json").read_text())
    rows = {r["cfg"]: r for r in study["rows"]}
    assert rows["yolov5n.yaml"]["seeds"] == 1 and rows["yolov5n.yaml"]["d_mAP50-95"] == 0
    assert rows["yolov5n-fla-r25"]["params"] > rows["yolov5n.yaml"]["params"]
    assert rows["yolov5n-fla-r25"]["latency_ms"] > 0
    table = (out / "study.md").read_text()
    assert "| `yolov5n-fla-r25` | 1 |" in table and "Δ mAP50-95" in table

    # restarted: every run reused, nothing trained; report-only with a seed never run uses the finished ones
    r = run_main("benchmarks/ablate.py", *common, *cfgs)
    assert r.returncode == 0 and r.stdout.count("reused") == 2 and "training" not in r.stdout
    r = run_main("benchmarks/ablate.py", *common, "--cfgs", "yolov5n.yaml", "--seeds", "1", "7",
                 "--report-only")  # fmt: skip
    assert r.returncode == 0 and "| `yolov5n.yaml` | 1 |" in r.stdout

    # nothing finished for a config, or a config that does not exist: one line, no traceback
    r = run_main("benchmarks/ablate.py", *common, "--cfgs", "yolov5n-fla.yaml", "--report-only")
    assert r.returncode == 2 and "error: --report-only: no finished run" in r.stderr and "Traceback" not in r.stderr
    r = run_main("benchmarks/ablate.py", *common, "--cfgs", "nope.yaml")
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_ablate_hyp_variant_trains_with_its_hyp(tmp_path, monkeypatch):
    import argparse
    import subprocess

    entry = "yolov5n-c3fla-keep.yaml@data/hyps/hyp.scratch-low-attn5.yaml"
    assert split_variant(entry) == ("yolov5n-c3fla-keep.yaml", "data/hyps/hyp.scratch-low-attn5.yaml")
    assert split_variant("yolov5n.yaml") == ("yolov5n.yaml", "")
    assert run_stem(entry) == "yolov5n-c3fla-keep@hyp.scratch-low-attn5" and run_stem("a/yolov5n.yaml") == "yolov5n"
    seen = []

    def fake_run(cmd, **kw):  # stands in for train.py: records the command, writes a results.csv
        seen.append(cmd)
        run_dir = Path(cmd[cmd.index("--project") + 1]) / cmd[cmd.index("--name") + 1]
        run_dir.mkdir(parents=True)
        (run_dir / "results.csv").write_text(
            "epoch,metrics/mAP_0.5,metrics/mAP_0.5:0.95\n0,0.5,0.25\n1,0.6,0.375\n2,0.55,0.30\n"
        )
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(subprocess, "run", fake_run)
    opt = argparse.Namespace(weights="w.pt", epochs=3, imgsz=64, batch_size=4, workers=0, train_args=[], hyp="")
    res = run_one(entry, 1, tmp_path / f"{run_stem(entry)}_s1", opt, "d.yaml")
    cmd = seen[0]
    assert cmd[cmd.index("--cfg") + 1] == "yolov5n-c3fla-keep.yaml"
    assert cmd[cmd.index("--hyp") + 1] == "data/hyps/hyp.scratch-low-attn5.yaml"
    assert res["best_epoch"] == 1 and res["mAP50-95"] == 0.375
    opt.hyp = "other.yaml"  # the study's --hyp applies to bare entries only
    run_one("yolov5n.yaml", 0, tmp_path / "yolov5n_s0", opt, "d.yaml")
    assert seen[1][seen[1].index("--hyp") + 1] == "other.yaml" and seen[1].count("--hyp") == 1


def test_ablate_bad_variant_hyp_is_one_line(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=2, n_val=1)
    r = run_main("benchmarks/ablate.py", "--data", data, "--project", tmp_path, "--cfgs", "yolov5n.yaml",
                   "yolov5n.yaml@nope.yaml")  # fmt: skip
    assert r.returncode == 2 and "error:" in r.stderr and "nope.yaml" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "exp").exists() or not any((tmp_path / "exp").iterdir())


def _runs(vals):
    return [{"mAP50-95": v} for v in vals]


def test_pooled_mean_spread_and_verdicts():
    base = [0.40, 0.42, 0.44]  # mean 0.42, variance 4e-4
    per = {
        "a.yaml": {"b": _runs(base), "up": _runs([0.45, 0.47, 0.49]), "mixed": _runs([0.50, 0.52, 0.54])},
        "c.yaml": {"b": _runs(base), "up": _runs([0.44, 0.46, 0.48]), "mixed": _runs([0.30, 0.32, 0.34])},
    }
    rows = {r["cfg"]: r for r in pooled(per, "b")}
    up, mixed = rows["up"], rows["mixed"]
    assert up["diffs"] == pytest.approx([0.05, 0.04]) and up["pooled"] == pytest.approx(0.045)
    # each dataset's standard error^2 = 4e-4/3 + 4e-4/3; pooled spread = sqrt(sum) / 2
    assert up["spread"] == pytest.approx(math.sqrt(4 * 4e-4 / 3) / 2)
    assert up["verdict"] == "helps"  # gains on both, 0.045 > 1.96 * 0.0115
    assert mixed["diffs"] == pytest.approx([0.10, -0.10]) and mixed["verdict"] == "no clear effect"
    table = pooled_markdown(list(rows.values()), ["x/a.yaml", "y/c.yaml"], "b")
    assert "| `up` | +5.0 pt | +4.0 pt | +4.5 pt | 1.2 pt | helps |" in table and "Δ a | Δ c" in table


@pytest.mark.slow
def test_ablate_cli_two_datasets_one_command(tiny_study):
    """Two datasets in one command: a study per dataset and the pooled lines. The first dataset's runs are the
    tiny_study fixture's (reused: same folder, flags and seed), so only the second dataset's 2 runs are trained."""
    project, d1 = tiny_study["project"], tiny_study["data"]
    same_name = make_dataset(project / "two", n_train=4, n_val=2)
    common = ("--project", project, "--name", "study", *ABLATE, "--latency-runs", "2", *CFGS)
    r = run_main("benchmarks/ablate.py", "--datasets", d1, same_name, *common)
    assert r.returncode == 2 and "share a name" in r.stderr and "Traceback" not in r.stderr
    d2 = same_name.rename(same_name.with_name("tiny2.yaml"))
    r = run_main("benchmarks/ablate.py", "--datasets", d1, d2, *common)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "[tiny: run 2/2] yolov5n-fla-r25 seed 1 reused" in r.stdout  # the fixture's
    assert "[tiny2: run 2/2] yolov5n-fla-r25 seed 1 training" in r.stdout
    out = project / "study"
    names = [Path(d).stem for d in (d1, d2)]
    for n in names:
        assert (out / n / "study.md").is_file() and len(list((out / n).glob("*_s1"))) == 2
    text = (out / "study.md").read_text()
    assert text.count("| `yolov5n-fla-r25` | 1 |") == 2 and "Across datasets" in text
    row = json.loads((out / "pooled.json").read_text())["rows"][0]
    assert row["cfg"] == "yolov5n-fla-r25" and len(row["diffs"]) == 2 and row["spread"] >= 0
    r = run_main("benchmarks/ablate.py", "--datasets", d1, d2, *common)  # restart: all 4 runs reused
    assert r.returncode == 0 and r.stdout.count("reused") == 4 and "training" not in r.stdout


def test_vs_official_skips_without_official():
    r = run_main("benchmarks/vs_official.py")
    assert r.returncode == 0 and "skipped" in r.stdout and "Traceback" not in r.stderr
    r = run_main("benchmarks/vs_official.py", "--official", "/nonexistent/yolov5")
    assert r.returncode == 2 and "error: --official" in r.stderr


def test_vs_official_alternates_pairs_and_formats_the_table(tmp_path):
    # fake sides: "ours" reports 2.0, "official" 4.0 (as probe.py prints them); wall-time sides just run
    def side(value: float) -> Side:
        return Side([sys.executable, "-c", f"print('noise'); print('{{\"value\": {value}}}')"], tmp_path, {}, True)

    log = []
    row = Row("fake probe", 1.0, side(2.0), side(4.0), unit="ms")
    res = time_pairs(row, pairs=3, timeout=60, log=log.append)
    assert res["ours"] == [2.0] * 3 and res["official"] == [4.0] * 3 and res["ratios"] == [0.5] * 3
    assert [x.split()[-3] for x in log] == ["ours:", "official:", "official:", "ours:", "ours:", "official:"]
    fast = Row("fake throughput", 1.2, side(3.0), side(2.0), unit="img/s", higher_better=True)
    wall = Row(
        "fake command",
        0.75,
        Side([sys.executable, "-c", "pass"], tmp_path),
        Side([sys.executable, "-c", "pass"], tmp_path),
    )
    broken = Row("fake broken", 1.0, Side([sys.executable, "-c", "raise SystemExit(3)"], tmp_path), side(1.0))
    results = [res, time_pairs(fast, 2, 60, log.append), time_pairs(wall, 1, 60, log.append)]
    with pytest.raises(RuntimeError, match="exit 3"):
        time_pairs(broken, 1, 60, log.append)
    own = Row("fake own", 2.0, own=lambda: {})
    table = markdown(
        [row, fast, wall, broken, own],
        results + [{"error": "exit 3"}, {"text": "+1.0%", "target": "<= +2%", "met": True}],
        3,
    )
    lines = table.splitlines()
    assert "median of 3 alternated pairs" in lines[0]
    assert "| fake probe | 2 ms | 4 ms | **0.50** (0.50, 0.50, 0.50) | <= 1 | yes |" in lines
    assert "| fake throughput | 3 img/s | 2 img/s | **1.50** (1.50, 1.50) | >= 1.2 | yes |" in lines
    assert re.search(
        r"\| fake command \| [\d.e+-]+ s \| [\d.e+-]+ s \| \*\*[\d.]+\*\* \([\d.]+\) \| <= 0.75 \| (yes|no) \|", table
    )
    assert "| fake broken | | | n/a (exit 3) | | |" in lines and "| fake own | | | +1.0% | <= +2% | yes |" in lines


def test_vs_official_attention_row_times_against_the_paper_rendering():
    """The 'attention' row needs no official code: FLA unfused and fused against PaperFLA with the same weights."""
    import argparse

    from benchmarks.vs_official import attention_ratio

    res = attention_ratio(argparse.Namespace(threads=2, latency_runs=2))
    m = re.fullmatch(r"\*\*([\d.]+)\*\* unfused, ([\d.]+) fused \(([\d.]+) / ([\d.]+) vs ([\d.]+) ms\)", res["text"])
    assert m, res["text"]
    unfused, fused, a, f, b = map(float, m.groups())
    assert unfused == pytest.approx(a / b, abs=0.01) and fused == pytest.approx(f / b, abs=0.01)
    assert res["target"] == "<= 1"
    if abs(a / b - 1) > 0.02:  # the printed ms are rounded: near 1.00 they cannot tell met from missed
        assert res["met"] == (a / b <= 1.0)


def test_keep_study_copies_results_not_weights(tmp_path):
    from tools.keep_study import keep

    run = tmp_path / "src" / "bccd" / "yolov5n_s0"
    (run / "weights").mkdir(parents=True)
    for name in ("study_run.json", "results.csv", "opt.yaml", "hyp.yaml"):
        (run / name).write_text(name)
    (run / "weights" / "last.pt").write_bytes(b"x")
    (run / "weights" / "study_run.json").write_text("not a result")
    (run.parent / "yolov5n_s0.log").write_text("log")
    (tmp_path / "src" / "study.md").write_text("| table |")
    assert keep(tmp_path / "src", tmp_path / "dst") == 5
    got = sorted(str(p.relative_to(tmp_path / "dst")) for p in (tmp_path / "dst").rglob("*") if p.is_file())
    assert got == ["bccd/yolov5n_s0/hyp.yaml", "bccd/yolov5n_s0/opt.yaml", "bccd/yolov5n_s0/results.csv",
                   "bccd/yolov5n_s0/study_run.json", "study.md"]  # fmt: skip
