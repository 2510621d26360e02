"""FLA study: train several configs x seeds on one dataset with the same recipe, then tabulate and plot.

Each run is `train.py` in a subprocess (so a study measures exactly what users run). Finished runs are reused
when the study is restarted, interrupted ones are resumed from their last.pt. Writes, in the study folder:
`study.md` (Markdown table), `study.json` (every figure) and `study.png` (mAP50-95 vs CPU latency).

Example (the study published in the README):
    python benchmarks/ablate.py --data ../shared/data/bccd/bccd.yaml --weights ../shared/weights/yolov5n.pt \
        --cfgs yolov5n.yaml yolov5n-fla.yaml --seeds 0 1 2 3 4 --epochs 20 --imgsz 320
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def read_results(csv_path: Path) -> List[Dict[str, float]]:
    """results.csv rows as dicts with stripped keys and float values."""
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    if len(rows) < 2:
        return []
    keys = [k.strip() for k in rows[0]]
    return [{k: float(v) for k, v in zip(keys, r)} for r in rows[1:] if len(r) == len(keys)]


def best_row(rows: List[Dict[str, float]]) -> Dict[str, float]:
    """The epoch with the best YOLOv5 fitness (0.1 mAP50 + 0.9 mAP50-95): the one best.pt holds."""
    return max(rows, key=lambda r: 0.1 * r["metrics/mAP_0.5"] + 0.9 * r["metrics/mAP_0.5:0.95"])


def run_one(cfg: str, seed: int, run_dir: Path, opt: argparse.Namespace) -> Dict[str, float]:
    """Train one (cfg, seed) unless a finished run exists; returns its best-epoch metrics and wall time."""
    done = run_dir / "study_run.json"
    if done.is_file():
        return json.loads(done.read_text())
    last = run_dir / "weights" / "last.pt"
    if last.is_file():
        cmd = [sys.executable, str(ROOT / "train.py"), "--resume", str(last)]
    else:
        cmd = [
            sys.executable,
            str(ROOT / "train.py"),
            "--cfg",
            cfg,
            "--data",
            opt.data,
            "--weights",
            opt.weights,
            "--epochs",
            str(opt.epochs),
            "--imgsz",
            str(opt.imgsz),
            "--batch-size",
            str(opt.batch_size),
            "--seed",
            str(seed),
            "--workers",
            str(opt.workers),
            "--project",
            str(run_dir.parent),
            "--name",
            run_dir.name,
            "--exist-ok",
            "--noplots",
            *opt.train_args,
        ]
        if opt.hyp:
            cmd += ["--hyp", opt.hyp]
    t0 = time.time()
    log = run_dir.parent / f"{run_dir.name}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"error: training {cfg} seed {seed} failed (exit {proc.returncode}); see {log}")
    rows = read_results(run_dir / "results.csv")
    best = best_row(rows)
    result = {
        "mAP50": best["metrics/mAP_0.5"],
        "mAP50-95": best["metrics/mAP_0.5:0.95"],
        "best_epoch": int(best["epoch"]),
        "train_hours": (time.time() - t0) / 3600,
    }
    done.write_text(json.dumps(result, indent=2))
    return result


def model_costs(cfg: str, nc: int, imgsz: int, runs: int = 30) -> Dict[str, float]:
    """Parameters, GFLOPs (at imgsz) and median CPU latency (2 threads, fused, batch 1) of a config."""
    import torch

    from models.yolo import DetectionModel
    from utils.flops import model_gflops

    torch.set_num_threads(2)
    model = DetectionModel(cfg, nc=nc, verbose=False).eval()
    params = sum(p.numel() for p in model.parameters())
    gflops = model_gflops(model, imgsz)
    model.fuse()
    x = torch.zeros(1, 3, imgsz, imgsz)
    times = []
    with torch.inference_mode():
        for i in range(runs + 5):
            t = time.perf_counter()
            model(x)
            if i >= 5:
                times.append((time.perf_counter() - t) * 1000)
    return {"params": params, "gflops": gflops, "latency_ms": statistics.median(times)}


def summarise(results: Dict[str, List[Dict[str, float]]], costs: Dict[str, Dict[str, float]], base: str) -> List[dict]:
    """Mean / std over seeds per config and the difference of the mean to the baseline."""
    rows = []
    for cfg, runs in results.items():
        row = {"cfg": cfg, "seeds": len(runs), **costs[cfg]}
        for key in ("mAP50", "mAP50-95", "train_hours"):
            vals = [r[key] for r in runs]
            row[key] = statistics.mean(vals)
            row[key + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    ref = next(r for r in rows if r["cfg"] == base)
    for r in rows:
        r["d_mAP50-95"] = r["mAP50-95"] - ref["mAP50-95"]
        r["d_latency_pct"] = 100 * (r["latency_ms"] / ref["latency_ms"] - 1)
    return rows


def markdown(rows: List[dict], opt: argparse.Namespace) -> str:
    """The study table as Markdown."""
    head = (
        f"Dataset `{opt.data}`, {opt.epochs} epochs at {opt.imgsz}, weights `{opt.weights or 'scratch'}`, "
        f"seeds {' '.join(map(str, opt.seeds))}; mean ± std over seeds; latency: CPU, 2 threads, batch 1, fused.\n\n"
    )
    lines = [
        "| config | params | GFLOPs | latency ms | train h | mAP50 | mAP50-95 | Δ mAP50-95 | Δ latency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| `{r['cfg']}` | {r['params']:,} | {r['gflops']:.1f} | {r['latency_ms']:.1f} | {r['train_hours']:.3f} "
            f"| {r['mAP50']:.3f} ± {r['mAP50_std']:.3f} | {r['mAP50-95']:.3f} ± {r['mAP50-95_std']:.3f} "
            f"| {100 * r['d_mAP50-95']:+.1f} pt | {r['d_latency_pct']:+.1f}% |"
        )
    return head + "\n".join(lines) + "\n"


def plot(rows: List[dict], path: Path) -> None:
    """mAP50-95 (mean ± std) against CPU latency, one point per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), tight_layout=True)
    for r in rows:
        ax.errorbar(r["latency_ms"], r["mAP50-95"], yerr=r["mAP50-95_std"], fmt="o", capsize=4, label=r["cfg"])
    ax.set_xlabel("CPU latency (ms, batch 1)")
    ax.set_ylabel("mAP50-95 (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def parse_opt(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="dataset yaml")
    p.add_argument("--weights", default="", help="initial weights for every run ('' = scratch)")
    p.add_argument("--cfgs", nargs="+", required=True, help="model yamls; the first is the baseline")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--hyp", default="")
    p.add_argument("--project", default="runs/study")
    p.add_argument("--name", default="exp")
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="extra train.py flags, last")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> None:
    from utils.data.config import check_dataset

    nc = check_dataset(opt.data)["nc"]
    out = Path(opt.project) / opt.name
    out.mkdir(parents=True, exist_ok=True)
    plan = [(cfg, seed) for seed in opt.seeds for cfg in opt.cfgs]  # seed-major: a cut-short study covers every cfg
    results: Dict[str, List[Dict[str, float]]] = {cfg: [] for cfg in opt.cfgs}
    t0, trained = time.time(), 0
    for k, (cfg, seed) in enumerate(plan, 1):
        run_dir = out / f"{Path(cfg).stem}_s{seed}"
        fresh = not (run_dir / "study_run.json").is_file()
        eta = (
            (time.time() - t0)
            / trained
            * sum(1 for c, s in plan[k - 1 :] if not (out / f"{Path(c).stem}_s{s}" / "study_run.json").is_file())
            if trained
            else float("nan")
        )
        print(
            f"[run {k}/{len(plan)}] {cfg} seed {seed} {'training' if fresh else 'reused'}"
            f"{f', study ETA {eta / 60:.0f} min' if eta == eta else ''}",
            flush=True,
        )
        results[cfg].append(run_one(cfg, seed, run_dir, opt))
        trained += fresh
    costs = {cfg: model_costs(cfg, nc, opt.imgsz) for cfg in opt.cfgs}
    rows = summarise(results, costs, opt.cfgs[0])
    (out / "study.json").write_text(json.dumps({"opt": vars(opt), "rows": rows, "runs": results}, indent=2))
    table = markdown(rows, opt)
    (out / "study.md").write_text(table)
    plot(rows, out / "study.png")
    print(table)
    print(f"Study saved to {out}")


if __name__ == "__main__":
    main(parse_opt())
