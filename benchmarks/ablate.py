"""FLA study: train several configs x seeds on one or more datasets with the same recipe, then tabulate and plot.

Each run is `train.py` in a subprocess (so a study measures exactly what users run). Finished runs are reused
when the study is restarted, interrupted ones are resumed from their last.pt. Writes, in the study folder:
`study.md` (Markdown table), `study.json` (every figure) and `study.png` (mAP50-95 vs CPU latency). With
`--datasets A.yaml B.yaml`, each dataset gets its own subfolder and table, and `study.md` / `pooled.json` in the
study folder add one line per config across the datasets (mean of the per-dataset differences and its spread).

Example (the study published in the README):
    python benchmarks/ablate.py --data ../shared/data/bccd/bccd.yaml --weights ../shared/weights/yolov5n.pt \
        --cfgs yolov5n.yaml yolov5n-fla.yaml --seeds 0 1 2 3 4 --epochs 20 --imgsz 320
On a Ray cluster (`ray start --head` here, `ray start --address HEAD:6379` on the others), all runs at once:
    python benchmarks/ablate.py ... --ray auto        (docs/evolve.md)
Two datasets, one command:
    python benchmarks/ablate.py --datasets ../shared/data/bccd/bccd.yaml ../shared/data/raccoon/raccoon.yaml \
        --weights ../shared/weights/yolov5n.pt --cfgs yolov5n.yaml yolov5n-fla.yaml --seeds 0 1 2 3 4
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
from typing import Dict, List, Optional, Tuple

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


def split_variant(entry: str) -> Tuple[str, str]:
    """'yolov5n-fla.yaml@data/hyps/hyp.attn.yaml' -> (model yaml, hyp yaml); a bare cfg -> (cfg, '')."""
    cfg, _, hyp = entry.partition("@")
    return cfg, hyp


def run_stem(entry: str) -> str:
    """Folder stem of a study entry: the cfg's stem, plus '@' and the hyp's stem for a hyp variant."""
    cfg, hyp = split_variant(entry)
    return Path(cfg).stem + (f"@{Path(hyp).stem}" if hyp else "")


def train_argv(entry: str, seed: int, opt: argparse.Namespace, data: str) -> List[str]:
    """train.py's flags for one (cfg[@hyp], seed) run, without --project / --name."""
    cfg, variant_hyp = split_variant(entry)
    argv = ["--cfg", cfg, "--data", data, "--weights", opt.weights, "--epochs", str(opt.epochs),
            "--imgsz", str(opt.imgsz), "--batch-size", str(opt.batch_size), "--seed", str(seed),
            "--workers", str(opt.workers), "--noplots", *opt.train_args]  # fmt: skip
    return argv + (["--hyp", variant_hyp or opt.hyp] if variant_hyp or opt.hyp else [])


def record_run(run_dir: Path, seconds: float, extra: Optional[Dict[str, str]] = None) -> Dict[str, float]:
    """study_run.json of a finished run (its best epoch's metrics and wall time, plus extra); returns the metrics."""
    best = best_row(read_results(run_dir / "results.csv"))
    result = {
        "mAP50": best["metrics/mAP_0.5"],
        "mAP50-95": best["metrics/mAP_0.5:0.95"],
        "best_epoch": int(best["epoch"]),
        "train_hours": seconds / 3600,
        **(extra or {}),
    }
    (run_dir / "study_run.json").write_text(json.dumps(result, indent=2))
    return result


def run_one(entry: str, seed: int, run_dir: Path, opt: argparse.Namespace, data: str) -> Dict[str, float]:
    """Train one (cfg[@hyp], seed) unless a finished run exists; returns its best-epoch metrics and wall time."""
    done = run_dir / "study_run.json"
    if done.is_file():
        return json.loads(done.read_text())
    last = run_dir / "weights" / "last.pt"
    if last.is_file():
        cmd = [sys.executable, str(ROOT / "train.py"), "--resume", str(last)]
    else:
        where = ["--project", str(run_dir.parent), "--name", run_dir.name, "--exist-ok"]
        cmd = [sys.executable, str(ROOT / "train.py"), *train_argv(entry, seed, opt, data), *where]
    t0 = time.time()
    log = run_dir.parent / f"{run_dir.name}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a") as f:
        proc = subprocess.run(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise SystemExit(f"error: training {entry} seed {seed} failed (exit {proc.returncode}); see {log}")
    return record_run(run_dir, time.time() - t0)


def model_costs(cfgs: List[str], nc: int, imgsz: int, runs: int = 100) -> Dict[str, Dict[str, float]]:
    """Parameters, GFLOPs (at imgsz) and median CPU latency (2 threads, fused, batch 1) of each config.

    The models are timed interleaved (benchmarks/latency.py), so machine load drifts hit every config alike.
    """
    import torch

    from benchmarks.latency import time_interleaved
    from models.yolo import DetectionModel
    from utils.flops import model_gflops

    torch.set_num_threads(2)
    x = torch.zeros(1, 3, imgsz, imgsz)
    costs, fns = {}, {}
    for cfg in cfgs:
        model = DetectionModel(split_variant(cfg)[0], nc=nc, verbose=False).eval()
        costs[cfg] = {"params": sum(p.numel() for p in model.parameters()), "gflops": model_gflops(model, imgsz)}
        fns[cfg] = lambda m=model.fuse(): m(x)
    with torch.inference_mode():
        times = time_interleaved(fns, runs, warmup=5)
    for cfg in cfgs:
        costs[cfg]["latency_ms"] = statistics.median(times[cfg])
    return costs


# Two-sided 95% critical values of Student's t by degrees of freedom (standard table); 1.96 beyond 30.
_T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18,
        15: 2.13, 20: 2.09, 30: 2.04}  # fmt: skip


def welch(a: List[float], b: List[float]) -> tuple:
    """Welch's t statistic of mean(a) - mean(b) and whether it is significant at 95% (two-sided).

    Returns (t, significant); (nan, False) when either side has fewer than 2 values or both have no spread.
    """
    if len(a) < 2 or len(b) < 2:
        return float("nan"), False
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return float("nan"), False
    t = (statistics.mean(a) - statistics.mean(b)) / (va + vb) ** 0.5
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    crit = next((v for k, v in sorted(_T95.items()) if df <= k), 1.96)  # rounding df down: conservative
    return t, abs(t) > crit


def summarise(results: Dict[str, List[Dict[str, float]]], costs: Dict[str, Dict[str, float]], base: str) -> List[dict]:
    """Mean / std over seeds per config, the difference of the mean to the baseline and whether it is real."""
    rows = []
    for cfg, runs in results.items():
        row = {"cfg": cfg, "seeds": len(runs), **costs[cfg]}
        for key in ("mAP50", "mAP50-95", "train_hours"):
            vals = [r[key] for r in runs]
            row[key] = statistics.mean(vals)
            row[key + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0
        rows.append(row)
    ref = next(r for r in rows if r["cfg"] == base)
    base_vals = [r["mAP50-95"] for r in results[base]]
    for r in rows:
        r["d_mAP50-95"] = r["mAP50-95"] - ref["mAP50-95"]
        r["d_latency_pct"] = 100 * (r["latency_ms"] / ref["latency_ms"] - 1)
        r["t"], r["significant"] = welch([x["mAP50-95"] for x in results[r["cfg"]]], base_vals)
    return rows


def verdict(r: dict) -> str:
    """'gain' / 'loss' when Welch's t-test says the mAP50-95 difference is real at 95%, else 'noise'."""
    if r["t"] != r["t"]:
        return "n/a"
    return ("gain" if r["t"] > 0 else "loss") if r["significant"] else "noise"


def markdown(rows: List[dict], opt: argparse.Namespace, data: str) -> str:
    """The study table as Markdown."""
    head = (
        f"Dataset `{data}`, {opt.epochs} epochs at {opt.imgsz}, weights `{opt.weights or 'scratch'}`, "
        f"seeds {' '.join(map(str, opt.seeds))} ('seeds': finished runs used); mean ± std over seeds; "
        "latency: CPU, 2 threads, batch 1, fused, "
        f"configs timed interleaved; t: Welch's t of the mAP50-95 difference to `{rows[0]['cfg']}`, "
        "'noise' unless significant at 95%.\n\n"
    )
    lines = [
        "| config | seeds | params | GFLOPs | latency ms | train h | mAP50 | mAP50-95 | Δ mAP50-95 | t | Δ latency |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        v = verdict(r)
        t = "" if r is rows[0] else v if v == "n/a" else f"{r['t']:+.1f} {v}"
        lines.append(
            f"| `{r['cfg']}` | {r['seeds']} | {r['params']:,} | {r['gflops']:.1f} | {r['latency_ms']:.1f} "
            f"| {r['train_hours']:.3f} | {r['mAP50']:.3f} ± {r['mAP50_std']:.3f} "
            f"| {r['mAP50-95']:.3f} ± {r['mAP50-95_std']:.3f} | {100 * r['d_mAP50-95']:+.1f} pt | {t} "
            f"| {r['d_latency_pct']:+.1f}% |"
        )
    return head + "\n".join(lines) + "\n"


def pooled(per_dataset: Dict[str, Dict[str, List[Dict[str, float]]]], base: str) -> List[dict]:
    """One row per non-baseline config across datasets: the mean of the per-dataset mAP50-95 differences to the
    baseline and its spread (the standard error of that mean, from each dataset's Welch standard error).

    verdict: 'helps' only when the config gains on every dataset and the pooled difference clears 1.96 spreads;
    'hurts' when it loses on every dataset and clears them; otherwise 'no clear effect'.
    """
    cfgs = [c for c in next(iter(per_dataset.values())) if c != base]
    rows = []
    for cfg in cfgs:
        diffs, variances = [], []
        for results in per_dataset.values():
            a = [r["mAP50-95"] for r in results[cfg]]
            b = [r["mAP50-95"] for r in results[base]]
            diffs.append(statistics.mean(a) - statistics.mean(b))
            va = statistics.variance(a) / len(a) if len(a) > 1 else 0.0
            vb = statistics.variance(b) / len(b) if len(b) > 1 else 0.0
            variances.append(va + vb)
        mean = statistics.mean(diffs)
        spread = sum(variances) ** 0.5 / len(diffs)
        clears = spread > 0 and abs(mean) > 1.96 * spread
        if clears and all(d > 0 for d in diffs):
            v = "helps"
        elif clears and all(d < 0 for d in diffs):
            v = "hurts"
        else:
            v = "no clear effect"
        rows.append({"cfg": cfg, "diffs": diffs, "pooled": mean, "spread": spread, "verdict": v})
    return rows


def pooled_markdown(rows: List[dict], datasets: List[str], base: str) -> str:
    """The across-datasets lines as Markdown."""
    names = [Path(d).stem for d in datasets]
    head = (
        f"Across datasets ({', '.join(names)}): Δ mAP50-95 to `{base}` per dataset, their mean and its spread "
        "(standard error); 'helps' only if it gains on every dataset and the mean clears 1.96 spreads.\n\n"
    )
    lines = [
        "| config | " + " | ".join(f"Δ {n}" for n in names) + " | pooled Δ | spread | verdict |",
        "|---|" + "---:|" * len(names) + "---:|---:|---|",
    ]
    for r in rows:
        per = " | ".join(f"{100 * d:+.1f} pt" for d in r["diffs"])
        lines.append(
            f"| `{r['cfg']}` | {per} | {100 * r['pooled']:+.1f} pt | {100 * r['spread']:.1f} pt | {r['verdict']} |"
        )
    return head + "\n".join(lines) + "\n"


def plot(rows: List[dict], path: Path) -> None:
    """mAP50-95 (mean ± std) against CPU latency, one point per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 5.5), tight_layout=True)
    colors = plt.get_cmap("tab20").colors
    base = rows[0]
    lo, hi = base["mAP50-95"] - base["mAP50-95_std"], base["mAP50-95"] + base["mAP50-95_std"]
    ax.axhspan(lo, hi, color="grey", alpha=0.15, label=f"{base['cfg']} mean ± std")
    ax.axhline(base["mAP50-95"] + 0.01, color="green", ls=":", lw=1, label="baseline + 1.0 pt")
    ax.axvline(base["latency_ms"] * 1.05, color="red", ls=":", lw=1, label="baseline latency + 5%")
    for k, r in enumerate(rows):
        label = f"{r['cfg']} ({r['seeds']} seeds)"
        style = dict(fmt="osD^v<>"[k // 2 % 7], color=colors[k % 20], capsize=4, label=label)
        ax.errorbar(r["latency_ms"], r["mAP50-95"], yerr=r["mAP50-95_std"], **style)
    ax.set_xlabel("CPU latency (ms, batch 1)")
    ax.set_ylabel("mAP50-95 (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.savefig(path, dpi=150)
    plt.close(fig)


def parse_opt(argv: Optional[List[str]] = None) -> argparse.Namespace:
    from utils.flag_ranges import IMGSZ, NON_NEGATIVE, POSITIVE  # after the repository root is on sys.path

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", help="dataset yaml (one dataset; runs go straight into the study folder)")
    src.add_argument("--datasets", nargs="+", help="several dataset yamls: one table each plus the pooled lines")
    p.add_argument("--weights", default="", help="initial weights for every run ('' = scratch)")
    p.add_argument(
        "--cfgs",
        nargs="+",
        required=True,
        help="model yamls; the first is the baseline. CFG@HYP trains CFG with that --hyp file (a hyp variant)",
    )
    p.add_argument("--seeds", nargs="+", type=NON_NEGATIVE, default=[0, 1, 2])
    p.add_argument("--epochs", type=POSITIVE, default=20)
    p.add_argument("--imgsz", type=IMGSZ, default=320)
    p.add_argument("--batch-size", type=POSITIVE, default=16)
    p.add_argument("--workers", type=NON_NEGATIVE, default=2)
    p.add_argument("--hyp", default="")
    p.add_argument("--project", default="runs/study")
    p.add_argument("--name", default="exp")
    p.add_argument("--latency-runs", type=POSITIVE, default=100, help="timed calls per config (interleaved)")
    p.add_argument("--report-only", action="store_true", help="train nothing: tabulate the finished runs of each cfg")
    p.add_argument("--ray", nargs="?", const="local", default=None, help="train the runs as Ray tasks: local|auto|ADDR")
    p.add_argument("--ray-cpus", type=POSITIVE, default=None, help="--ray: CPUs per run (default: 1 GPU, else 1 CPU)")
    p.add_argument("--train-args", nargs=argparse.REMAINDER, default=[], help="extra train.py flags, last")
    return p.parse_args(argv)


def finished(out: Path, cfg: str, seed: int) -> bool:
    return (out / f"{run_stem(cfg)}_s{seed}" / "study_run.json").is_file()


def study_dataset(data: str, nc: int, out: Path, opt: argparse.Namespace) -> Dict[str, List[Dict[str, float]]]:
    """Train (or reuse) every (cfg, seed) of one dataset, then write its study.md / .json / .png into out."""
    from utils.errors import UserError

    out.mkdir(parents=True, exist_ok=True)
    plan = [(cfg, seed) for seed in opt.seeds for cfg in opt.cfgs]  # seed-major: a cut-short study covers all
    if opt.report_only:
        plan = [(c, s) for c, s in plan if finished(out, c, s)]
        missing = [c for c in opt.cfgs if not any(c == pc for pc, _ in plan)]
        if missing:
            raise UserError(f"--report-only: no finished run in {out} for {', '.join(missing)}")
    results: Dict[str, List[Dict[str, float]]] = {cfg: [] for cfg in opt.cfgs}
    t0, trained = time.time(), 0
    for k, (cfg, seed) in enumerate(plan, 1):
        fresh = not finished(out, cfg, seed)
        todo = sum(1 for c, s in plan[k - 1 :] if not finished(out, c, s))
        eta = f", study ETA {(time.time() - t0) / trained * todo / 60:.0f} min" if trained and fresh else ""
        tag = f"{Path(data).stem}: " if opt.datasets else ""
        print(f"[{tag}run {k}/{len(plan)}] {cfg} seed {seed} {'training' if fresh else 'reused'}{eta}", flush=True)
        results[cfg].append(run_one(cfg, seed, out / f"{run_stem(cfg)}_s{seed}", opt, data))
        trained += fresh
    print(f"Timing {len(opt.cfgs)} configs interleaved ({opt.latency_runs} calls each)...", flush=True)
    costs = model_costs(opt.cfgs, nc, opt.imgsz, opt.latency_runs)
    rows = summarise(results, costs, opt.cfgs[0])
    (out / "study.json").write_text(
        json.dumps({"opt": vars(opt), "data": data, "rows": rows, "runs": results}, indent=2)
    )
    table = markdown(rows, opt, data)
    (out / "study.md").write_text(table)
    plot(rows, out / "study.png")
    print(table)
    return results


def main(opt: argparse.Namespace) -> None:
    from models.yolo import load_model_yaml
    from utils.data.config import check_dataset
    from utils.errors import UserError, run_cli
    from utils.train.setup import load_hyp

    @run_cli
    def _run() -> None:
        datasets = opt.datasets or [opt.data]
        stems = [Path(d).stem for d in datasets]
        if len(set(stems)) != len(stems):
            raise UserError(f"--datasets: two yamls share a name ({', '.join(stems)}); each needs its own folder")
        ncs = [check_dataset(d)["nc"] for d in datasets]  # every dataset is checked before any training
        for entry in opt.cfgs:
            cfg, variant_hyp = split_variant(entry)
            load_model_yaml(cfg)  # a missing or malformed yaml stops the study before any training
            if variant_hyp:
                load_hyp(variant_hyp)
        out = Path(opt.project) / opt.name
        if opt.ray is not None and not opt.report_only:
            from benchmarks.ablate_ray import train_on_ray

            jobs = []
            for data in datasets:
                sub = out / Path(data).stem if opt.datasets else out
                jobs += [(c, s, sub / f"{run_stem(c)}_s{s}", train_argv(c, s, opt, data))
                         for s in opt.seeds for c in opt.cfgs if not finished(sub, c, s)]  # fmt: skip
            train_on_ray(jobs, opt, record_run)
        per_dataset = {}
        for data, nc in zip(datasets, ncs):
            sub = out / Path(data).stem if opt.datasets else out
            per_dataset[data] = study_dataset(data, nc, sub, opt)
        if opt.datasets:
            rows = pooled(per_dataset, opt.cfgs[0])
            (out / "pooled.json").write_text(json.dumps({"datasets": datasets, "rows": rows}, indent=2))
            tables = [(out / Path(d).stem / "study.md").read_text() for d in datasets]
            text = "\n".join(tables) + "\n" + pooled_markdown(rows, datasets, opt.cfgs[0])
            (out / "study.md").write_text(text)
            print(pooled_markdown(rows, datasets, opt.cfgs[0]))
        print(f"Study saved to {out}")

    _run()


if __name__ == "__main__":
    main(parse_opt())
