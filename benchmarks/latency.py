"""Per-image CPU latency of fused models, PyTorch vs ONNX Runtime: median and p90 as a Markdown table.

Models are timed interleaved (one call of each in turn, the starting model rotating every round), so a machine
that speeds up or slows down during the benchmark affects every model alike: timing models one after another
on a small shared CPU favours whichever runs last by up to 10-20%.

Example:
    python benchmarks/latency.py --cfgs yolov5s.yaml yolov5s-fla.yaml --imgsz 640 --threads 2 --runs 50
Weights are random (latency does not depend on them); pass --weights to time trained checkpoints instead.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

LOGGER = logging.getLogger("latency")


def time_interleaved(fns: Dict[str, Callable[[], object]], runs: int, warmup: int) -> Dict[str, List[float]]:
    """Milliseconds of `runs` calls of each fn, called in turn (start rotating per round) after `warmup` each."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    keys = list(fns)
    out: Dict[str, List[float]] = {k: [] for k in keys}
    for r in range(runs):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0 = time.perf_counter()
            fns[k]()
            out[k].append((time.perf_counter() - t0) * 1e3)
    return out


def percentile(xs: List[float], q: float) -> float:
    """q-th percentile (0-100) with linear interpolation."""
    return float(np.percentile(np.asarray(xs), q))


def build_model(cfg: str | None, weights: str | None) -> nn.Module:
    """A fused eval-mode DetectionModel from a yaml (random weights) or a checkpoint."""
    from models.load import load_model

    if weights:
        return load_model(weights, device="cpu", fuse=True)
    from models.yolo import DetectionModel

    model = DetectionModel(cfg, verbose=False).eval()
    return model.fuse() if hasattr(model, "fuse") else model


def onnx_session(model: nn.Module, im: torch.Tensor, threads: int, folder: Path) -> Callable[[], object]:
    """Export with utils.deploy.export (static shape); returns a call of an ONNX Runtime CPU session with `threads`."""
    import onnxruntime as ort

    from utils.deploy.export import export_metadata, export_onnx, prepare_for_export

    model = prepare_for_export(model)
    file = folder / f"model_{id(model)}.onnx"
    export_onnx(model, im, file, export_metadata(model, im, dynamic=False, half=False))
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(file), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: im.numpy()}
    return lambda: sess.run(None, feed)


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


def benchmark(
    names: List[str], weights: bool, imgsz: int, threads: int, runs: int, warmup: int, onnx: bool = True
) -> List[Dict[str, object]]:
    """One row per (model, backend): model, params, backend, median_ms, p90_ms (or an 'error'); timed interleaved."""
    torch.set_num_threads(threads)
    im = torch.zeros(1, 3, imgsz, imgsz)
    rows: Dict[tuple, Dict[str, object]] = {}
    fns: Dict[tuple, Callable[[], object]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = build_model(None if weights else name, name if weights else None)
            params = sum(p.numel() for p in model.parameters())
            for backend in ("PyTorch", "ONNX Runtime") if onnx else ("PyTorch",):
                key = (name, backend)
                rows[key] = {"model": Path(name).stem, "params": params, "backend": backend}
                try:
                    if backend == "PyTorch":
                        fns[key] = lambda m=model: m(im)
                    else:
                        fns[key] = onnx_session(model, im, threads, Path(tmp))
                except Exception as e:  # an export failure is a result to report, not a crash
                    rows[key]["error"] = _error(e)
        try:
            with torch.inference_mode():
                times = time_interleaved(fns, runs, warmup)
        except Exception as e:  # a runtime failure: report it on every row still waiting for figures
            times = {}
            for key in fns:
                rows[key]["error"] = _error(e)
    for key, ms in times.items():
        rows[key].update(median_ms=statistics.median(ms), p90_ms=percentile(ms, 90))
        LOGGER.info("%s", rows[key])
    return list(rows.values())


def markdown(rows: List[Dict[str, object]], imgsz: int, threads: int, runs: int) -> str:
    """The rows as a Markdown table."""
    head = (
        f"CPU latency per image, batch 1, {imgsz}x{imgsz}, {threads} threads, fused, {runs} timed runs each, "
        "models interleaved\n\n"
    )
    lines = ["| model | params | backend | median ms | p90 ms |", "|---|---:|---|---:|---:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['params']:,} | {r['backend']} | n/a ({r['error']}) | |")
        else:
            lines.append(
                f"| {r['model']} | {r['params']:,} | {r['backend']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} |"
            )
    return head + "\n".join(lines)


def parse_opt(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfgs", nargs="+", default=["yolov5s.yaml", "yolov5s-fla.yaml"], help="model yamls")
    p.add_argument("--weights", nargs="+", default=None, help="checkpoints to time instead of --cfgs")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for PyTorch and ONNX Runtime")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model and backend")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-onnx", action="store_true", help="time PyTorch only")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> str:
    from utils.errors import run_cli
    from utils.log import setup_logging

    setup_logging(verbose=False)

    @run_cli
    def _run() -> str:
        names = opt.weights or opt.cfgs
        rows = benchmark(names, bool(opt.weights), opt.imgsz, opt.threads, opt.runs, opt.warmup, not opt.no_onnx)
        table = markdown(rows, opt.imgsz, opt.threads, opt.runs)
        print(table)
        return table

    return _run()


if __name__ == "__main__":
    main(parse_opt())
