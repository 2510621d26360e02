"""Does FLA help a classifier? Classifiers cut from yolov5n.pt with and without the FLA layer, seeds x configs.

Each run is classify/train.py in a subprocess (what users run). Finished runs are reused when the study is
restarted, interrupted ones resumed from their last.pt, so the study can be stopped and continued. The FLA model
is yolov5n-fla.yaml with yolov5n.pt's weights transferred by structure (FLA itself new), saved once as a
checkpoint and cut like yolov5n.pt (the Classify head takes SPPF's place; FLA is kept). Writes study.md / study.json
with the best top-1 per run (what best.pt holds), mean and spread per config, and Welch's t and p of FLA vs the base.

A run counts as finished when its results.csv has every epoch (its weights are not needed), so the committed
study folder (results.csv, opt.yaml, hyp.yaml per run) is enough to continue on another machine; --report-only
rewrites the tables from the finished runs without training. The same command started twice trains two runs at a
time: each run folder is claimed by one process (run/.lock with its pid; a dead process's lock is taken over).

    python benchmarks/ablate_classify.py --data ../shared/data/hymenoptera --weights ../shared/weights/yolov5n.pt \
        --seeds 0 1 2 3 4 --epochs 10 --imgsz 224 --out benchmarks/studies/cls
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.ablate import read_results  # noqa: E402
from benchmarks.stats import welch_test  # noqa: E402

TOP1 = "metrics/accuracy_top1"


def fla_start(weights: Path, out: Path) -> Path:
    """yolov5n-fla.yaml with the detector's weights transferred (FLA new), as our checkpoint (made once)."""
    f = out / "yolov5n-fla-from-yolov5n.pt"
    if not f.is_file():
        import torch

        from models.load import load_model
        from utils.checkpoint import model_to_dict, save_checkpoint

        torch.manual_seed(0)
        model = load_model(weights, fuse=False, cfg="yolov5n-fla.yaml")
        save_checkpoint({"model": model_to_dict(model, half=False)}, f)  # atomic: a second process never reads half
    return f


def _rows(run: Path) -> List[Dict[str, float]]:
    return read_results(run / "results.csv") if (run / "results.csv").is_file() else []


@contextlib.contextmanager
def run_lock(run: Path) -> Iterator[bool]:
    """Claim a run folder for this process (run/.lock holds the pid) -> True, or False when a live process has it.

    Lets several study processes share the seeds (start the same command twice): each trains what no other one holds.
    """
    run.mkdir(parents=True, exist_ok=True)
    lock = run / ".lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            yield False  # held by a live process
            return
        except (ProcessLookupError, ValueError, FileNotFoundError):
            lock.unlink(missing_ok=True)  # stale: its process is gone
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        yield True
    finally:
        lock.unlink(missing_ok=True)


def run_one(name: str, model: Path, seed: int, out: Path, opt: argparse.Namespace) -> None:
    """One classify/train.py run: skipped when finished or held by another study process, resumed when interrupted."""
    run = out / f"{name}-s{seed}"
    if len(_rows(run)) >= opt.epochs:
        return
    with run_lock(run) as mine:
        if mine:
            _train(run, model, seed, out, opt)


def _train(run: Path, model: Path, seed: int, out: Path, opt: argparse.Namespace) -> None:
    last = run / "weights/last.pt"
    if (run / "results.csv").is_file() and not last.is_file():
        (run / "results.csv").unlink()  # a partial run whose weights are gone starts again from epoch 0
    if last.is_file():
        cmd = [sys.executable, str(ROOT / "classify/train.py"), "--resume", str(last)]
    else:
        cmd = [sys.executable, str(ROOT / "classify/train.py"), "--model", str(model), "--data", opt.data,
               "--epochs", str(opt.epochs), "--img", str(opt.imgsz), "--batch-size", str(opt.batch_size),
               "--workers", str(opt.workers), "--device", opt.device, "--seed", str(seed), "--project", str(out),
               "--name", run.name, "--exist-ok", "--noplots"]  # fmt: skip
    with open(run / "train.log", "a") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{run.name}: classify/train.py exited {proc.returncode} (see {run / 'train.log'})")


def table(results: Dict[str, List[float]], opt: argparse.Namespace) -> str:
    """study.md: per config the runs, mean and stdev of the best top-1, and Welch's t / df / p against the base."""
    base = results.get("yolov5n", [])
    done = len(min(results.values(), key=len)) if results else 0
    lines = [f"Classifiers cut from yolov5n.pt, {opt.data}, {opt.epochs} epochs at {opt.imgsz}, seeds {opt.seeds} "
             f"({done} finished for every model); best top-1 per run (best.pt's epoch)",
             "", "| model | runs | best top-1 per seed | mean | stdev | Welch t vs yolov5n | df | p (two-sided) |",
             "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, vals in results.items():
        sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        t, df, p = welch_test(vals, base) if name != "yolov5n" else (float("nan"),) * 3
        mean = statistics.mean(vals) if vals else float("nan")
        shown = ", ".join(f"{v:.3f}" for v in vals)
        lines.append(f"| {name} | {len(vals)} | {shown} | {mean:.4f} | {sd:.4f} | {t:.2f} | {df:.1f} | {p:.3f} |")
    return "\n".join(lines) + "\n"


def write_summary(names: List[str], out: Path, opt: argparse.Namespace) -> Dict[str, List[float]]:
    """study.json (options, best top-1 per config and seed) and study.md (the table) from every finished run on
    disk (whichever process trained it), also printed -> {config: best top-1 per finished seed}."""
    per_seed: Dict[str, Dict[int, float]] = {k: {} for k in names}
    for name in names:
        for seed in opt.seeds:
            rows = _rows(out / f"{name}-s{seed}")
            if len(rows) >= opt.epochs:
                per_seed[name][seed] = max(r[TOP1] for r in rows)
    results = {k: list(v.values()) for k, v in per_seed.items()}
    record = {"options": vars(opt), "best_top1": results, "seeds": {k: list(v) for k, v in per_seed.items()}}
    (out / "study.json").write_text(json.dumps(record, indent=1))
    (out / "study.md").write_text(table(results, opt))
    print(table(results, opt), flush=True)
    return results


def parse_opt(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/hymenoptera"))
    p.add_argument("--weights", default=str(ROOT.parent / "shared/weights/yolov5n.pt"))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--imgsz", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=str(ROOT / "benchmarks/studies/cls"))
    p.add_argument("--report-only", action="store_true", help="tabulate the finished runs, train nothing")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> Dict[str, List[float]]:
    out = Path(opt.out)
    out.mkdir(parents=True, exist_ok=True)
    fla = out / "yolov5n-fla-from-yolov5n.pt" if opt.report_only else fla_start(Path(opt.weights), out)
    models = {"yolov5n": Path(opt.weights), "yolov5n-fla": fla}
    for seed in opt.seeds if not opt.report_only else []:  # seed-major: both configs for the first seeds first
        for name, model in models.items():
            run_one(name, model, seed, out, opt)
            write_summary(list(models), out, opt)
    return write_summary(list(models), out, opt)


if __name__ == "__main__":
    main(parse_opt())
