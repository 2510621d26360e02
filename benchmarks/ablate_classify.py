"""Does FLA help a classifier? Classifiers cut from yolov5n.pt with and without the FLA layer, seeds x configs.

Each run is classify/train.py in a subprocess (what users run). Finished runs are reused when the study is
restarted, interrupted ones resumed from their last.pt, so the study can be stopped and continued. The FLA model
is yolov5n-fla.yaml with yolov5n.pt's weights transferred by structure (FLA itself new), saved once as a
checkpoint and cut like yolov5n.pt (the Classify head takes SPPF's place; FLA is kept). Writes study.md / study.json
with the best top-1 per run (what best.pt holds), mean and spread per config, and Welch's t and p of FLA vs the base.

A run counts as finished when its results.csv has every epoch (its weights are not needed), so the committed
study folder (results.csv, opt.yaml, hyp.yaml per run) is enough to continue on another machine; --report-only
rewrites the tables from the finished runs without training.

    python benchmarks/ablate_classify.py --data ../shared/data/hymenoptera --weights ../shared/weights/yolov5n.pt \
        --seeds 0 1 2 3 4 --epochs 10 --imgsz 224 --out benchmarks/studies/cls
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional

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
        save_checkpoint({"model": model_to_dict(model, half=False)}, f)
    return f


def run_one(name: str, model: Path, seed: int, out: Path, opt: argparse.Namespace) -> List[Dict[str, float]]:
    """One classify/train.py run (reused when finished, resumed when interrupted) -> its results.csv rows."""
    run = out / f"{name}-s{seed}"
    rows = read_results(run / "results.csv") if (run / "results.csv").is_file() else []
    if len(rows) >= opt.epochs or opt.report_only:
        return rows
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
    run.mkdir(parents=True, exist_ok=True)
    with open(run / "train.log", "a") as log:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise RuntimeError(f"{run.name}: classify/train.py exited {proc.returncode} (see {run / 'train.log'})")
    return read_results(run / "results.csv")


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


def write_summary(per_seed: Dict[str, Dict[int, float]], out: Path, opt: argparse.Namespace) -> None:
    """study.json (options, best top-1 per config and seed) and study.md (the table), also printed."""
    results = {k: list(v.values()) for k, v in per_seed.items()}
    record = {"options": vars(opt), "best_top1": results, "seeds": {k: list(v) for k, v in per_seed.items()}}
    (out / "study.json").write_text(json.dumps(record, indent=1))
    (out / "study.md").write_text(table(results, opt))
    print(table(results, opt), flush=True)


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
    per_seed: Dict[str, Dict[int, float]] = {k: {} for k in models}
    for seed in opt.seeds:  # seed-major: an interrupted study has both configs for its first seeds
        for name, model in models.items():
            rows = run_one(name, model, seed, out, opt)
            if len(rows) >= opt.epochs:  # --report-only leaves an unfinished run out
                per_seed[name][seed] = max(r[TOP1] for r in rows)
                write_summary(per_seed, out, opt)
    write_summary(per_seed, out, opt)
    results = {k: list(v.values()) for k, v in per_seed.items()}
    return results


if __name__ == "__main__":
    main(parse_opt())
