"""benchmarks.py's engine: export a .pt to each format installed here, validate each, one table of the results."""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence

LOGGER = logging.getLogger(__name__)

# (row name, --include, int8): official benchmarks.py's order, then the int8 rows
ROWS = (
    ("PyTorch", "pt", False),
    ("TorchScript", "torchscript", False),
    ("ONNX", "onnx", False),
    ("OpenVINO", "openvino", False),
    ("TensorRT", "engine", False),
    ("CoreML", "coreml", False),
    ("TensorFlow SavedModel", "saved_model", False),
    ("TensorFlow GraphDef", "pb", False),
    ("TensorFlow Lite", "tflite", False),
    ("TensorFlow Edge TPU", "edgetpu", False),
    ("TensorFlow.js", "tfjs", False),
    ("PaddlePaddle", "paddle", False),
    ("NCNN", "ncnn", False),
    ("ONNX int8", "onnx", True),
    ("OpenVINO int8", "openvino", True),
    ("TensorFlow Lite int8", "tflite", True),
)


@dataclass
class Row:
    """One benchmark result; map and ms are None when the format was not validated."""

    name: str
    status: str  # 'ok', 'export only', 'skipped: why', 'failed: why'
    size_mb: Optional[float] = None
    map: Optional[float] = None
    ms: Optional[float] = None
    export_s: Optional[float] = None
    metric: str = "mAP50-95"  # what map holds: 'top-1' (accuracy) for a classifier


def _size_mb(path: Path) -> float:
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    return sum(p.stat().st_size for p in files) / 1e6


def cannot_run_here(fmt: str, device: str) -> Optional[str]:
    """Why fmt cannot be validated on this machine (its runtime is missing), or None."""
    import platform

    import torch

    if fmt == "engine" and not (torch.cuda.is_available() and device not in ("", "cpu")):
        return "needs a CUDA GPU (--device 0)"
    if fmt == "coreml" and platform.system() != "Darwin":
        return "runs on macOS only"
    return None


def file_task(pt: Path) -> str:
    """'segment', 'classify' or 'detect': the task of a .pt checkpoint (ours or official), read from its model yaml."""
    from models.classify import is_classifier_yaml
    from models.yolo import is_segment_yaml
    from utils.checkpoint import load_checkpoint

    ckpt = load_checkpoint(pt)
    yaml = (ckpt.get("ema") or ckpt["model"]).get("yaml") or {}
    return "segment" if is_segment_yaml(yaml) else "classify" if is_classifier_yaml(yaml) else "detect"


def is_segment_file(pt: Path) -> bool:
    """True when a .pt checkpoint (ours or official) holds a segmentation model (its yaml ends in Segment)."""
    return file_task(pt) == "segment"


@dataclass
class ValResult:
    """What a benchmark row reads of a validation: its metric (detection: box mAP50-95; segmentation: mask mAP50-95,
    official benchmarks.py's choice; classification: top-1 accuracy) and the speeds (ms: pre, inference, post)."""

    map: float
    speeds: tuple


def _validate(weights: Path, opt: argparse.Namespace, task: str = "detect") -> ValResult:
    """val.py (segment/val.py, classify/val.py for those tasks) on weights with the benchmark's data, size, batch and
    device -> the row's metric and speeds."""
    common = ["--imgsz", str(opt.imgsz), "--batch-size", str(opt.batch_size), "--device", opt.device, "--workers",
              "0", "--exist-ok", "--project", str(weights.parent / "val"), "--data", str(opt.data)]  # fmt: skip
    common += ["--half"] if opt.half else []
    if task == "classify":
        from classify import val as cls_val

        m = cls_val.evaluate(cls_val.parse_opt([*common, "--weights", str(weights), "--verbose", "false"]))
        return ValResult(float(m.top1), tuple(m.speeds))
    args = [*common, "--noplots", "--weights", str(weights)]
    if task == "segment":
        from segment import val as seg_val

        m = seg_val.run(seg_val.parse_opt(args))
        return ValResult(float(m.row[7]), tuple(m.speeds))
    import val

    r = val.run(val.parse_opt(args), str(weights), plots=False)
    return ValResult(float(r.map), tuple(r.speeds))


def _export(fmt: str, int8: bool, pt: Path, folder: Path, opt: argparse.Namespace, cache: dict) -> tuple:
    """(exported path, export seconds); the float TF formats come from one onnx2tf run, cached for the next rows."""
    from utils.deploy.export import run_export
    from utils.deploy.export_formats import TF_FORMATS

    if (fmt, int8) in cache:
        return cache[(fmt, int8)]
    together = list(TF_FORMATS) if fmt in TF_FORMATS and not int8 else [fmt]
    sub = folder / (f"{fmt}-int8" if int8 else fmt)
    sub.mkdir(parents=True, exist_ok=True)
    weights = Path(shutil.copy(pt, sub / pt.name))
    t0 = time.time()
    files = run_export(weights, imgsz=[opt.imgsz], batch_size=opt.batch_size, device=opt.device,
                       half=opt.half and fmt not in ("onnx", "openvino", "torchscript"), include=together,
                       int8=int8, data=opt.data)  # fmt: skip
    seconds = time.time() - t0
    cache.update({(f, int8): (files[f], seconds) for f in together})
    return cache[(fmt, int8)]


def bench_one(
    name: str,
    fmt: str,
    int8: bool,
    pt: Path,
    folder: Path,
    opt: argparse.Namespace,
    cache: dict | None = None,
    task: str = "detect",
) -> Row:
    """Export pt (copied into folder) to fmt and validate it (task: 'detect', 'segment' or 'classify'); failures
    become a 'failed: ...' row."""
    from utils.errors import UserError

    skip = None if fmt == "pt" else unavailable_reason(fmt)
    if skip is None and fmt == "engine":  # its export needs the GPU too: skipped, not failed
        skip = cannot_run_here(fmt, opt.device)
    if skip:
        return Row(name, f"skipped: {skip}")
    try:
        weights, export_s = (
            (pt, None) if fmt == "pt" else _export(fmt, int8, pt, folder, opt, {} if cache is None else cache)
        )
        size = _size_mb(weights)
        why = cannot_run_here(fmt, opt.device)
        if why or opt.test:
            return Row(name, f"export only ({why})" if why else "export only", size, export_s=export_s)
        res = _validate(weights, opt, task)
        metric = "top-1" if task == "classify" else "mAP50-95"
        return Row(name, "ok", size, float(res.map), float(res.speeds[1]), export_s, metric)
    except (UserError, RuntimeError, ValueError, OSError, ImportError, AssertionError) as e:
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        LOGGER.warning("%s: %s", name, msg)
        return Row(name, f"failed: {msg[:160]}")


CHILD_FORMATS = ("paddle",)
_OPT_TYPES = (str, int, float, bool, type(None))


def bench_in_child(name: str, fmt: str, int8: bool, pt: Path, folder: Path, opt: argparse.Namespace,
                   task: str = "detect") -> Row:  # fmt: skip
    """bench_one(...) in `python -c` (its output shown as it runs); a crash of the child is a failed row."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "row.json"
        args = {"name": name, "fmt": fmt, "int8": int8, "pt": str(pt), "folder": str(folder), "task": task,
                "out": str(out), "opt": {k: v for k, v in vars(opt).items() if isinstance(v, _OPT_TYPES)}}  # fmt: skip
        code = "from utils.deploy.benchmark_child import child_main; child_main()"
        from utils.paths import ROOT

        r = subprocess.run([sys.executable, "-c", code, json.dumps(args)], cwd=str(ROOT))
        if not out.is_file():
            return Row(name, f"failed: its child process exited with code {r.returncode} and no result")
        return Row(**json.loads(out.read_text()))


def run_benchmarks(opt: argparse.Namespace) -> List[Row]:
    """Every row of ROWS (only PyTorch with --pt-only; no int8 rows with --no-int8) on a copy of opt.weights."""
    pt = Path(opt.weights)
    rows = [r for r in ROWS if not opt.pt_only or r[1] == "pt"]
    if not getattr(opt, "int8", True):
        rows = [r for r in rows if not r[2]]
    with tempfile.TemporaryDirectory(prefix="benchmarks-") as tmp:
        local = Path(shutil.copy(pt, Path(tmp) / pt.name))
        cache: dict = {}
        task = file_task(local) if pt.suffix == ".pt" else "detect"
        out = []
        for name, fmt, int8 in rows:
            if fmt in CHILD_FORMATS and not unavailable_reason(fmt):
                out.append(bench_in_child(name, fmt, int8, local, Path(tmp), opt, task))
            else:
                out.append(bench_one(name, fmt, int8, local, Path(tmp), opt, cache, task=task))
        return out


def unavailable_reason(fmt: str) -> Optional[str]:
    """export_formats.unavailable's message for fmt, or None when it can be exported here."""
    from utils.deploy.export_formats import unavailable
    from utils.errors import UserError

    try:
        unavailable(fmt)
    except UserError as e:
        return str(e)
    return None


def format_table(rows: Sequence[Row]) -> str:
    """A markdown table: format, status, size MB, the metric (mAP50-95; top-1 for a classifier), inference ms/image,
    export seconds (the float TF formats share one onnx2tf run, so they show the same export time)."""
    metric = " / ".join(dict.fromkeys(r.metric for r in rows if r.map is not None)) or "mAP50-95"
    head = f"| format | status | size (MB) | {metric} | inference (ms/im) | export (s) |"
    lines = [head, "|---|---|---|---|---|---|"]

    def f(v, spec):
        return "" if v is None else format(v, spec)

    for r in rows:
        lines.append(f"| {r.name} | {r.status} | {f(r.size_mb, '.1f')} | {f(r.map, '.4f')} | {f(r.ms, '.1f')} "
                     f"| {f(r.export_s, '.1f')} |")  # fmt: skip
    return "\n".join(lines)


def hard_fail(rows: Sequence[Row], floor) -> List[str]:
    """The problems --hard-fail exits on: failed formats, and validated metrics (mAP50-95, top-1) below floor."""
    problems = [f"{r.name}: {r.status}" for r in rows if r.status.startswith("failed")]
    if floor is not True and floor is not False and floor is not None:
        problems += [f"{r.name}: {r.metric} {r.map:.4f} < {float(floor)}" for r in rows
                     if r.map is not None and r.map < float(floor)]  # fmt: skip
    return problems
