"""Does FLA help a classifier? Classifiers cut from yolov5n.pt with and without the FLA layer, seeds x configs.

Each run is classify/train.py in a subprocess (what users run). Finished runs are reused when the study is
restarted, interrupted ones resumed from their last.pt, so the study can be stopped and continued. The FLA model
is yolov5n-fla.yaml with yolov5n.pt's weights transferred by structure (FLA itself new), saved once as a
checkpoint and cut like yolov5n.pt (the Classify head takes SPPF's place; FLA is kept). Writes study.md / study.json
with the best top-1 per run (what best.pt holds), mean and spread per config, and Welch's t of FLA vs the base.

    python benchmarks/ablate_classify.py --data ../shared/data/hymenoptera --weights ../shared/weights/yolov5n.pt \
        --seeds 0 1 2 3 4 --epochs 10 --imgsz 224 --out runs/study-cls
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

from benchmarks.ablate import read_results, welch  # noqa: E402

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
    if len(rows) >= opt.epochs and (run / "weights/best.pt").is_file():
        return rows
    last = run / "weights/last.pt"
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
    """study.md: per config the runs, mean and stdev of the best top-1, and Welch's t against the base."""
    base = results.get("yolov5n", [])
    lines = [f"Classifiers cut from yolov5n.pt, {opt.data}, {opt.epochs} epochs at {opt.imgsz}, seeds {opt.seeds}",
             "", "| model | runs | best top-1 per seed | mean | stdev | Welch t vs yolov5n | significant (95%) |",
             "|---|---|---|---|---|---|---|"]  # fmt: skip
    for name, vals in results.items():
        sd = statistics.stdev(vals) if len(vals) > 1 else float("nan")
        t, sig = welch(vals, base) if name != "yolov5n" else (float("nan"), False)
        mean = statistics.mean(vals) if vals else float("nan")
        shown = ", ".join(f"{v:.3f}" for v in vals)
        lines.append(f"| {name} | {len(vals)} | {shown} | {mean:.4f} | {sd:.4f} | {t:.2f} | {sig} |")
    return "\n".join(lines) + "\n"


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
    p.add_argument("--out", default=str(ROOT / "runs/study-cls"))
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> Dict[str, List[float]]:
    out = Path(opt.out)
    out.mkdir(parents=True, exist_ok=True)
    models = {"yolov5n": Path(opt.weights), "yolov5n-fla": fla_start(Path(opt.weights), out)}
    results: Dict[str, List[float]] = {k: [] for k in models}
    for seed in opt.seeds:  # seed-major: an interrupted study has both configs for its first seeds
        for name, model in models.items():
            rows = run_one(name, model, seed, out, opt)
            results[name].append(max(r[TOP1] for r in rows))
            (out / "study.json").write_text(json.dumps({"options": vars(opt), "best_top1": results}, indent=1))
            (out / "study.md").write_text(table(results, opt))
            print(table(results, opt), flush=True)
    return results


if __name__ == "__main__":
    main(parse_opt())
