"""Per-image CPU latency of fused models, PyTorch vs ONNX Runtime vs OpenVINO (vs official YOLOv5): median, p90.

Models are timed interleaved (one call of each in turn, the starting model rotating every round), so a machine
that speeds up or slows down during the benchmark affects every model alike: timing models one after another
on a small shared CPU favours whichever runs last by up to 10-20%.

With --official, official YOLOv5's fused eager model runs in its own python (a child process that does one
forward per request and times it itself), interleaved with ours, and every ratio is against it.

Example:
    python benchmarks/latency.py --cfgs yolov5s.yaml yolov5s-fla.yaml --imgsz 640 --threads 2 --runs 50
    python benchmarks/latency.py --cfgs yolov5s.yaml --official ../official/yolov5
Weights are random (latency does not depend on them); pass --weights to time trained checkpoints instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

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


def calibration(data: str | None, im: torch.Tensor, n: int = 8) -> np.ndarray:
    """(k, 3, h, w) float 0-1 images for the int8 rows: --data's images (utils.deploy.calibration), else n seeded
    random ones (int8 latency does not depend on what the scales were calibrated on)."""
    if data:
        from utils.deploy.calibration import calibration_images

        return calibration_images(data, tuple(im.shape[2:]), n)
    return np.random.default_rng(0).random((n, *im.shape[1:]), dtype=np.float32)


def onnx_session(
    model: nn.Module, im: torch.Tensor, threads: int, folder: Path, calib: np.ndarray | None = None
) -> Callable[[], object]:
    """Export with utils.deploy.export (static shape), int8 (QDQ, utils.deploy.quantize) when calib is given;
    returns a call of an ONNX Runtime CPU session with `threads`."""
    import onnxruntime as ort

    from utils.deploy.export import export_metadata, export_onnx, prepare_for_export

    model = prepare_for_export(model)
    file = folder / f"model_{id(model)}.onnx"
    if not file.is_file():
        export_onnx(model, im, file, export_metadata(model, im, dynamic=False, half=False), simplify=calib is not None)
    if calib is not None:
        from utils.deploy.quantize import quantize_onnx

        file = quantize_onnx(file, file.with_name(f"{file.stem}-int8.onnx"), calib, len(model.model) - 1)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(file), so, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: im.numpy()}
    return lambda: sess.run(None, feed)


def openvino_session(
    model: nn.Module,
    im: torch.Tensor,
    threads: int,
    folder: Path,
    precision: str | None,
    calib: np.ndarray | None = None,
) -> Tuple[Callable[[], object], str]:
    """Export with utils.deploy.export (static shape), int8 (NNCF, utils.deploy.quantize) when calib is given, and
    compile for the CPU -> (call, precision the plugin uses).

    precision 'f32' or None (the plugin's default: bf16 on CPUs with AMX / AVX512-BF16, else f32).
    """
    from utils.deploy.export import export_metadata, export_openvino_ir, prepare_for_export
    from utils.deploy.openvino import OpenVINOSession

    model = prepare_for_export(model)
    stem = f"model_{id(model)}" + ("-int8" if calib is not None else "")
    weights = folder / f"{stem}.pt"  # only names the folder: <stem>_openvino_model
    out = folder / f"{stem}_openvino_model"
    if not out.is_dir():
        export_openvino_ir(model, im, weights, export_metadata(model, im, dynamic=False, half=False))
        if calib is not None:
            from utils.deploy.quantize import quantize_openvino

            quantize_openvino(out, calib, len(model.model) - 1)
    sess = OpenVINOSession(next(out.glob("*.xml")), threads=threads, precision=precision)
    used = sess.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # 'f32', 'bf16'
    x = im.numpy()
    return (lambda: sess(x)), used


OFFICIAL_CHILD = """
import sys, time, torch
from models.yolo import Model
torch.set_num_threads(int(sys.argv[2]))
n = int(sys.argv[3])
model = Model(sys.argv[1]).eval().fuse()
x = torch.zeros(1, 3, n, n)
print("ready", flush=True)
with torch.inference_mode():
    for _ in sys.stdin:
        t0 = time.perf_counter()
        model(x)
        print("ms", (time.perf_counter() - t0) * 1e3, flush=True)
"""


class OfficialEager:
    """Official YOLOv5's fused eager model in its own python, one forward per call (stdin line), timed in the child.

    Calls interleave with ours; `times` holds the child's own per-call milliseconds (pipe overhead excluded).
    """

    def __init__(self, official: Path, python: str, cfg: Path, threads: int, imgsz: int):
        env = {**os.environ, "YOLO_OFFLINE": "1", "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(official)}
        self.err = tempfile.TemporaryFile(mode="w+")
        args = [python, "-c", OFFICIAL_CHILD, str(cfg), str(threads), str(imgsz)]
        self.proc = subprocess.Popen(
            args, cwd=official, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.err, text=True
        )
        self.times: List[float] = []
        self._read("ready")

    def _read(self, prefix: str) -> str:
        """The next stdout line starting with prefix (official logs may print other lines)."""
        for line in self.proc.stdout:
            if line.startswith(prefix):
                return line
        self.err.seek(0)
        tail = self.err.read().strip().splitlines()
        raise RuntimeError(f"official child exited: {tail[-1] if tail else 'no output'}")

    def __call__(self) -> None:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        self.times.append(float(self._read("ms").split()[1]))

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        self.err.close()


def _error(e: Exception) -> str:
    return f"{type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''}"


BACKENDS = ("pytorch", "onnx", "openvino", "openvino-fast", "onnx-int8", "openvino-int8")
DEFAULT_BACKENDS = BACKENDS[:4]  # the int8 rows quantise first (a minute or more each): asked for by name
LABELS = {"pytorch": "PyTorch", "onnx": "ONNX Runtime", "openvino": "OpenVINO", "openvino-fast": "OpenVINO",
          "onnx-int8": "ONNX Runtime int8", "openvino-int8": "OpenVINO int8"}  # fmt: skip


def _backend_fn(
    backend: str, model: nn.Module, im: torch.Tensor, threads: int, tmp: Path, data: str | None = None
) -> Tuple[Callable, str]:
    """(call, backend label) for one of BACKENDS on model; the int8 ones calibrate on data (see calibration)."""
    if backend == "pytorch":
        return (lambda: model(im)), LABELS[backend]
    calib = calibration(data, im) if backend.endswith("-int8") else None
    if backend.startswith("onnx"):
        return onnx_session(model, im, threads, tmp, calib), LABELS[backend]
    fn, used = openvino_session(model, im, threads, tmp, None if backend == "openvino-fast" else "f32", calib)
    return fn, LABELS[backend] if calib is not None else f"OpenVINO {used}"


def benchmark(
    names: List[str],
    weights: bool,
    imgsz: int,
    threads: int,
    runs: int,
    warmup: int,
    onnx: bool = True,
    backends: Sequence[str] | None = None,
    official: Path | None = None,
    official_python: str | None = None,
    data: str | None = None,
) -> List[Dict[str, object]]:
    """One row per (model, backend): model, params, backend, median_ms, p90_ms, ratio (or an 'error'); interleaved.

    official: an official YOLOv5 folder; models whose yaml it also has get an 'official PyTorch' row, and every
    row's ratio is against it (else against our PyTorch row).
    """
    backends = list(backends or (DEFAULT_BACKENDS if onnx else ("pytorch",)))
    torch.set_num_threads(threads)
    im = torch.zeros(1, 3, imgsz, imgsz)
    rows: Dict[tuple, Dict[str, object]] = {}
    fns: Dict[tuple, Callable[[], object]] = {}
    children: Dict[tuple, OfficialEager] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            model = build_model(None if weights else name, name if weights else None)
            params = sum(p.numel() for p in model.parameters())
            cfg = official / "models" / Path(name).name if official and not weights else None
            if cfg is not None and cfg.is_file():
                key = (name, "official")
                rows[key] = {"model": Path(name).stem, "params": params, "backend": "official PyTorch"}
                try:
                    children[key] = fns[key] = OfficialEager(official, official_python, cfg, threads, imgsz)
                except Exception as e:  # a broken official checkout is a result to report
                    rows[key]["error"] = _error(e)
            for backend in backends:
                key = (name, backend)
                rows[key] = {"model": Path(name).stem, "params": params, "backend": LABELS[backend]}
                try:
                    fns[key], rows[key]["backend"] = _backend_fn(backend, model, im, threads, Path(tmp), data)
                except Exception as e:  # an export failure is a result to report, not a crash
                    rows[key]["error"] = _error(e)
        _drop_duplicate_precision(rows, fns)
        try:
            with torch.inference_mode():
                times = time_interleaved(fns, runs, warmup)
        except Exception as e:  # a runtime failure: report it on every row still waiting for figures
            times = {}
            for key in fns:
                rows[key]["error"] = _error(e)
        finally:
            for key, child in children.items():
                if key in times:
                    times[key] = child.times[-runs:]  # the child's own timing of the same calls
                child.close()
    for key, ms in times.items():
        rows[key].update(median_ms=statistics.median(ms), p90_ms=percentile(ms, 90))
    _ratios(rows)
    for r in rows.values():
        LOGGER.info("%s", r)
    return list(rows.values())


def _drop_duplicate_precision(rows: Dict[tuple, Dict[str, object]], fns: Dict[tuple, Callable]) -> None:
    """Where the plugin's fastest precision is f32 anyway, the openvino-fast row repeats the f32 one: drop it."""
    for key in [k for k in rows if k[1] == "openvino-fast"]:
        same = (key[0], "openvino")
        if same in rows and rows[key]["backend"] == rows[same]["backend"]:
            rows.pop(key)
            fns.pop(key, None)


def _ratios(rows: Dict[tuple, Dict[str, object]]) -> None:
    """ratio = median / the model's official PyTorch median when timed, else / our PyTorch median."""
    for (name, _), r in rows.items():
        ref = next((rows[k] for k in ((name, "official"), (name, "pytorch")) if "median_ms" in rows.get(k, {})), None)
        if ref is not None and "median_ms" in r:
            r["ratio"] = r["median_ms"] / ref["median_ms"]
            r["ratio_to"] = ref["backend"]


def markdown(rows: List[Dict[str, object]], imgsz: int, threads: int, runs: int) -> str:
    """The rows as a Markdown table; ratio is against the model's official PyTorch row, else our PyTorch row."""
    head = (
        f"CPU latency per image, batch 1, {imgsz}x{imgsz}, {threads} threads, fused, {runs} timed runs each, "
        "models interleaved\n\n"
    )
    lines = ["| model | params | backend | median ms | p90 ms | ratio |", "|---|---:|---|---:|---:|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['params']:,} | {r['backend']} | n/a ({r['error']}) | | |")
            continue
        ratio = f"{r['ratio']:.2f}x {r['ratio_to']}" if "ratio" in r else ""
        lines.append(
            f"| {r['model']} | {r['params']:,} | {r['backend']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {ratio} |"
        )
    return head + "\n".join(lines)


def parse_opt(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cfgs", nargs="+", default=["yolov5s.yaml", "yolov5s-fla.yaml"], help="model yamls")
    p.add_argument("--weights", nargs="+", default=None, help="checkpoints to time instead of --cfgs")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--threads", type=int, default=2, help="CPU threads for every backend")
    p.add_argument("--runs", type=int, default=50, help="timed runs per model and backend")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--no-onnx", action="store_true", help="time PyTorch only")
    p.add_argument(
        "--backends", nargs="+", choices=BACKENDS, default=None,
        help="pytorch, onnx, openvino (f32), openvino-fast (the plugin's default precision, bf16 on AMX CPUs), "
        "onnx-int8, openvino-int8 (static int8, calibrated on --data; default: the first four)",
    )  # fmt: skip
    p.add_argument("--data", default=None, help="dataset yaml whose images calibrate the int8 rows (default: random)")
    p.add_argument("--official", type=Path, default=None, help="official YOLOv5 folder: add its eager PyTorch rows")
    p.add_argument("--official-python", default=None, help="its python (default: <official>/../venv/bin/python)")
    return p.parse_args(argv)


def _official_python(opt: argparse.Namespace) -> str | None:
    """The python that runs the official code, checked; None without --official."""
    from utils.errors import UserError

    if opt.official is None:
        return None
    if not (opt.official / "models" / "yolo.py").is_file():
        raise UserError(f"--official {opt.official}: not an official YOLOv5 folder (no models/yolo.py)")
    python = opt.official_python or str(opt.official.resolve().parent / "venv" / "bin" / "python")
    if not Path(python).is_file():
        raise UserError(f"official python {python} not found; pass --official-python")
    return python


def main(opt: argparse.Namespace) -> str:
    from utils.errors import run_cli
    from utils.log import setup_logging

    setup_logging(verbose=False)

    @run_cli
    def _run() -> str:
        names = opt.weights or opt.cfgs
        official = opt.official.resolve() if opt.official else None
        rows = benchmark(
            names, bool(opt.weights), opt.imgsz, opt.threads, opt.runs, opt.warmup, not opt.no_onnx,
            backends=opt.backends, official=official, official_python=_official_python(opt), data=opt.data,
        )  # fmt: skip
        table = markdown(rows, opt.imgsz, opt.threads, opt.runs)
        print(table)
        return table

    return _run()


if __name__ == "__main__":
    main(parse_opt())
