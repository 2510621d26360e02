"""Speed against official YOLOv5, ours / official, measured in the same run with the pairs alternated (A B A B).

    python benchmarks/vs_official.py --official /path/to/yolov5 [--python /path/to/venv/bin/python] [--pairs 3]

Rows (issue 14's table): detect.py on BCCD val at 320 saving images; val.py on BCCD val at 320; one fine-tuning
epoch of train.py from yolov5n-bccd.pt and from yolov5n.pt (wall time of the whole command); the fused yolov5s
 forward at 640; the mosaic train loader's images/s at 640; classify/val.py and one classify/train.py epoch on
ants/bees at 224 (issue 22); segment/val.py, segment/predict.py and one segment/train.py epoch on coco128-seg
at 320 (issue 21); and the FLA layers' own cost (ours only). Without
--official it prints why and exits 0, so CI never needs the official code. The official code is only run,
never imported into this process; its python defaults to <official>/../venv/bin/python.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SHARED = ROOT.parent / "shared"
PROBE = Path(__file__).resolve().parent / "probe.py"


@dataclass
class Side:
    """One side of a pair: a command, the folder it runs in and its extra env; `reported` reads the value from the
    JSON line the command prints last, otherwise the value is the command's wall time in seconds."""

    argv: List[str]
    cwd: Path
    env: Dict[str, str] = field(default_factory=dict)
    reported: bool = False


@dataclass
class Row:
    """A table row. higher_better: the value is a throughput, so the ratio's target is a floor, not a ceiling."""

    name: str
    target: float
    ours: Side | None = None
    official: Side | None = None
    unit: str = "s"
    higher_better: bool = False
    own: Callable[[], Dict] | None = None  # ours-only rows: a call returning {'text': str, 'met': bool}


def run_side(side: Side, timeout: float) -> float:
    """Run one side once -> its value (wall seconds, or the reported number); RuntimeError with the tail on failure."""
    env = {**os.environ, **side.env}
    t0 = time.perf_counter()
    r = subprocess.run(side.argv, cwd=side.cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-3:]
        raise RuntimeError(f"{Path(side.argv[1]).name if len(side.argv) > 1 else side.argv[0]} exit "
                           f"{r.returncode}: {' | '.join(tail)[:300]}")  # fmt: skip
    if not side.reported:
        return wall
    lines = [x for x in r.stdout.strip().splitlines() if x.startswith("{")]
    if not lines:
        raise RuntimeError(f"no JSON value printed by {' '.join(side.argv[:3])}")
    return float(json.loads(lines[-1])["value"])


def time_pairs(row: Row, pairs: int, timeout: float, log=print) -> Dict:
    """A B A B ... (the side going first alternates every pair) -> {'ours': [...], 'official': [...], 'ratios'}."""
    out: Dict[str, List[float]] = {"ours": [], "official": []}
    for k in range(pairs):
        order = ("ours", "official") if k % 2 == 0 else ("official", "ours")
        for who in order:
            out[who].append(run_side(getattr(row, who), timeout))
            log(f"  {row.name} pair {k + 1}/{pairs} {who}: {out[who][-1]:.3f} {row.unit}")
    out["ratios"] = [a / b for a, b in zip(out["ours"], out["official"])]
    return out


def verdict(ratio: float, row: Row) -> bool:
    """Whether a ratio meets the row's target."""
    return ratio >= row.target if row.higher_better else ratio <= row.target


def format_row(row: Row, res: Dict) -> str:
    """One Markdown row: | measure | ours | official | ours / official (pairs) | target | met |."""
    if "error" in res:
        return f"| {row.name} | | | n/a ({res['error']}) | | |"
    if "text" in res:
        return f"| {row.name} | | | {res['text']} | {res['target']} | {'yes' if res['met'] else 'no'} |"
    ratio = statistics.median(res["ratios"])
    sign = ">=" if row.higher_better else "<="
    pairs = ", ".join(f"{r:.2f}" for r in res["ratios"])
    ours, off = statistics.median(res["ours"]), statistics.median(res["official"])
    return (
        f"| {row.name} | {ours:.3g} {row.unit} | {off:.3g} {row.unit} | **{ratio:.2f}** ({pairs}) | "
        f"{sign} {row.target:g} | {'yes' if verdict(ratio, row) else 'no'} |"
    )


def markdown(rows: Sequence[Row], results: Sequence[Dict], pairs: int) -> str:
    """The table, with a header line saying how it was measured."""
    head = [
        f"ours / official, median of {pairs} alternated pairs (per-pair ratios in brackets); "
        f"{os.cpu_count()} CPUs; values are medians",
        "",
        "| measure | ours | official | ours / official (pairs) | target | met |",
        "|---|---:|---:|---:|---:|---|",
    ]
    return "\n".join(head + [format_row(r, x) for r, x in zip(rows, results)])


def dataset_yaml(data: Path, folder: Path) -> Path:
    """A copy of the dataset yaml with an absolute `path` (the official code resolves it against its own folder)."""
    import yaml

    d = yaml.safe_load(data.read_text(encoding="utf-8"))
    d["path"] = str((data.parent / str(d.get("path") or ".")).resolve())
    out = folder / data.name
    out.write_text(yaml.safe_dump(d, sort_keys=False), encoding="utf-8")
    return out


def build_rows(opt: argparse.Namespace, tmp: Path) -> List[Row]:
    """The rows of issue 14's table for the chosen --rows."""
    ours_py, off_py, off = sys.executable, opt.python, Path(opt.official).resolve()
    env_off = {"YOLO_OFFLINE": "1"}
    data = dataset_yaml(Path(opt.data), tmp)
    val_images = Path(_yaml_field(data, "val"))
    train_images = Path(_yaml_field(data, "train"))
    w = Path(opt.weights_dir)
    common = ["--device", "cpu", "--exist-ok"]

    def pair(script: str, args: List[str], name: str) -> tuple:
        a = Side([ours_py, script, *args, "--project", str(tmp / "ours"), "--name", name, *common], ROOT)
        b = Side([off_py, script, *args, "--project", str(tmp / "off"), "--name", name, *common], off, env_off)
        return a, b

    def train_args(weights: str) -> List[str]:
        return ["--weights", str(w / weights), "--data", str(data), "--imgsz", "320", "--batch-size", "16",
                "--workers", "2", "--epochs", "1", "--noval", "--noplots"]  # fmt: skip

    rows: Dict[str, Row] = {}
    d = ["--weights", str(w / "yolov5n-bccd.pt"), "--source", str(val_images), "--imgsz", "320"]
    rows["detect"] = Row("detect.py, BCCD val (87 images), yolov5n-bccd.pt, 320, saving images", 0.75,
                         *pair("detect.py", d, "detect"))  # fmt: skip
    v = ["--weights", str(w / "yolov5n-bccd.pt"), "--data", str(data), "--imgsz", "320"]
    rows["val"] = Row("val.py, BCCD val, yolov5n-bccd.pt, 320", 0.75, *pair("val.py", v, "val"))
    rows["train"] = Row("train.py 1 epoch from yolov5n-bccd.pt, 320, batch 16, 2 workers, --noval --noplots",
                        0.85, *pair("train.py", train_args("yolov5n-bccd.pt"), "train"))  # fmt: skip
    rows["train-coco"] = Row("the same from yolov5n.pt (new 3-class head)", 1.0,
                             *pair("train.py", train_args("yolov5n.pt"), "train-coco"))  # fmt: skip
    fwd = ["--imgsz", "640", "--runs", str(opt.forward_runs), "--threads", str(opt.threads)]
    rows["forward"] = Row(
        "fused yolov5s forward, 640, batch 1, PyTorch eager", 1.0,
        Side([ours_py, str(PROBE), "forward", "--root", str(ROOT), "--cfg", "yolov5s.yaml", *fwd], ROOT, {}, True),
        Side([off_py, str(PROBE), "forward", "--root", str(off), "--cfg", "models/yolov5s.yaml", *fwd], off,
             env_off, True), unit="ms",
    )  # fmt: skip
    ld = ["loader", "--data", str(train_images), "--imgsz", "640", "--workers", "2", "--epochs", str(opt.loader_epochs)]
    rows["loader"] = Row(
        "train loader, 640, mosaic, batch 16, 2 workers (images/s; higher is better)", 1.2,
        Side([ours_py, str(PROBE), *ld, "--root", str(ROOT)], ROOT, {}, True),
        Side([off_py, str(PROBE), *ld, "--root", str(off)], off, env_off, True), unit="img/s", higher_better=True,
    )  # fmt: skip
    cls_data, cls_w = ["--data", str(SHARED / "data/hymenoptera")], str(w / "yolov5n-cls-hymenoptera.pt")
    cv = [*cls_data, "--weights", cls_w, "--imgsz", "224", "--batch-size", "32", "--workers", "2"]
    rows["cls-val"] = Row("classify/val.py, ants/bees val (153 images), yolov5n-cls-hymenoptera.pt, 224", 0.85,
                          *pair("classify/val.py", cv, "cls-val"))  # fmt: skip
    ct = [*cls_data, "--model", str(w / "yolov5n.pt"), "--img", "224", "--batch-size", "16", "--workers", "2",
          "--epochs", "1"]  # fmt: skip
    rows["cls-train"] = Row("classify/train.py 1 epoch from yolov5n.pt (cut), ants/bees, 224, batch 16", 0.9,
                            *pair("classify/train.py", ct, "cls-train"))  # fmt: skip
    seg_data = dataset_yaml(SHARED / "data" / "coco128-seg" / "coco128-seg.yaml", tmp)
    seg_w = str(w / "yolov5n-seg-coco128.pt")
    sv = ["--weights", seg_w, "--data", str(seg_data), "--imgsz", "320", "--batch-size", "16"]
    rows["seg-val"] = Row("segment/val.py, coco128-seg (128 images), yolov5n-seg-coco128.pt, 320", 0.85,
                          *pair("segment/val.py", sv, "seg-val"))  # fmt: skip
    sp = ["--weights", seg_w, "--source", _yaml_field(seg_data, "val"), "--imgsz", "320"]
    rows["seg-predict"] = Row("segment/predict.py, coco128-seg images, yolov5n-seg-coco128.pt, 320, saving images",
                              0.85, *pair("segment/predict.py", sp, "seg-predict"))  # fmt: skip
    st = ["--weights", seg_w, "--data", str(seg_data), "--imgsz", "320", "--batch-size", "16", "--workers", "2",
          "--epochs", "1", "--noval", "--noplots"]  # fmt: skip
    rows["seg-train"] = Row("segment/train.py 1 epoch from yolov5n-seg-coco128.pt, 320, batch 16, --noval --noplots",
                            0.9, *pair("segment/train.py", st, "seg-train"))  # fmt: skip
    rows["fla-s"] = Row("FLA layer cost, yolov5s-fla vs yolov5s, 640 (ours only)", 2.0,
                        own=lambda: fla_cost("yolov5s.yaml", "yolov5s-fla.yaml", 640, 2.0, opt))  # fmt: skip
    rows["fla-n"] = Row("FLA layer cost, yolov5n-fla vs yolov5n, 320 (ours only)", 3.0,
                        own=lambda: fla_cost("yolov5n.yaml", "yolov5n-fla.yaml", 320, 3.0, opt))  # fmt: skip
    rows["attention"] = Row("FocusedLinearAttention vs the paper in einsum, C 128, 4 heads, 80x80 (ours only)", 1.0,
                            own=lambda: attention_ratio(opt))  # fmt: skip
    return [rows[k] for k in opt.rows]


def _yaml_field(data: Path, key: str) -> str:
    """An image folder of the (absolute-path) dataset yaml."""
    import yaml

    d = yaml.safe_load(data.read_text(encoding="utf-8"))
    return str(Path(d["path"]) / d[key])


def fla_cost(base: str, fla: str, imgsz: int, target: float, opt: argparse.Namespace) -> Dict:
    """The FLA model's extra latency over its base, in %, from benchmarks/latency.py (PyTorch, interleaved)."""
    from benchmarks.latency import benchmark

    rows = benchmark([base, fla], False, imgsz, opt.threads, opt.latency_runs, 3, onnx=False)
    ms = [r["median_ms"] for r in rows]
    pct = (ms[1] / ms[0] - 1) * 100
    return {"text": f"**{pct:+.1f}%** ({ms[1]:.1f} vs {ms[0]:.1f} ms)", "target": f"<= +{target:g}%",
            "met": pct <= target}  # fmt: skip


def attention_ratio(opt: argparse.Namespace) -> Dict:
    """FocusedLinearAttention forward (unfused and fused) / the independent paper rendering in
    benchmarks/attention.py (PaperFLA, its own weights copied from the module), interleaved, 80x80."""
    import torch

    from benchmarks.attention import PaperFLA
    from benchmarks.latency import time_interleaved
    from models.fla import FocusedLinearAttention

    torch.set_num_threads(opt.threads)
    torch.manual_seed(0)
    x = torch.randn(1, 128, 80, 80)
    fla = FocusedLinearAttention(128, 4).eval()
    mods = {"FLA": fla, "paper": PaperFLA(128, 4).load_from(fla).eval()}
    mods["FLA-fused"] = copy.deepcopy(fla).fuse()
    with torch.inference_mode():
        ms = time_interleaved({k: (lambda m=m: m(x)) for k, m in mods.items()}, opt.latency_runs, 3)
    a, f, b = (statistics.median(ms[k]) for k in ("FLA", "FLA-fused", "paper"))
    return {"text": f"**{a / b:.2f}** unfused, {f / b:.2f} fused ({a:.1f} / {f:.1f} vs {b:.1f} ms)",
            "target": "<= 1", "met": a / b <= 1.0}  # fmt: skip


ROW_KEYS = ("detect", "val", "train", "train-coco", "forward", "loader", "cls-val", "cls-train", "seg-val",
            "seg-predict", "seg-train", "fla-s", "fla-n", "attention")  # fmt: skip


def parse_opt(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", default="", help="official YOLOv5 checkout; without it the benchmark skips")
    p.add_argument("--python", default="", help="official's python (default <official>/../venv/bin/python)")
    p.add_argument("--data", default=str(SHARED / "data" / "bccd" / "bccd.yaml"))
    p.add_argument("--weights-dir", default=str(SHARED / "weights"), help="holds yolov5n-bccd.pt and yolov5n.pt")
    p.add_argument("--rows", nargs="+", default=list(ROW_KEYS), choices=ROW_KEYS)
    p.add_argument("--pairs", type=int, default=2, help="alternated pairs per compared row")
    p.add_argument("--threads", type=int, default=2, help="torch threads for the in-process probes")
    p.add_argument("--forward-runs", type=int, default=20)
    p.add_argument("--loader-epochs", type=int, default=2)
    p.add_argument("--latency-runs", type=int, default=20, help="timed calls per model for the FLA rows")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per command")
    p.add_argument("--out", default="", help="also write the table to this Markdown file")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> int:
    if not opt.official:
        print("vs_official: skipped (no --official PATH to an official YOLOv5 checkout given)")
        return 0
    off = Path(opt.official)
    opt.python = opt.python or str(off.resolve().parent / "venv" / "bin" / "python")
    for p, what in ((off / "train.py", "--official"), (Path(opt.python), "--python"), (Path(opt.data), "--data")):
        if not p.exists():
            print(f"error: {what}: {p} not found", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="vs_official-") as tmp:
        rows = build_rows(opt, Path(tmp))
        results = []
        for row in rows:
            print(f"{row.name} ...", flush=True)
            try:
                results.append(row.own() if row.own else time_pairs(row, opt.pairs, opt.timeout))
            except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError, ValueError) as e:
                results.append({"error": str(e).splitlines()[0][:200] if str(e) else type(e).__name__})
    table = markdown(rows, results, opt.pairs)
    print(table)
    if opt.out:
        Path(opt.out).write_text(table + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(parse_opt()))
