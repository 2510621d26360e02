"""CUDA check of the GPU paths: AMP training, --half val/detect/export, FLA under fp16, FLA vs SDPA speed; one table.

Checks (each a row or a few rows; any FAIL makes the exit status 1):
  1. yolov5n-fla fine-tuned from yolov5n-bccd.pt for --epochs on BCCD with AMP: every loss finite, final mAP within
     --map-tol of an fp32 run with the same seed;
  2. val.py and detect.py with --half against fp32 (mAP within 0.005; detections matched by class and IoU);
  3. FLA at 80x80 and 160x160 tokens, inputs scaled by 1e3: forward and backward finite under fp16 autocast, forward
     finite with .half() weights;
  4. FLA against softmax attention (torch SDPA, same q/kv/proj layers) at 40x40, 80x80, 160x160 tokens, fp16;
  5. one AMP training epoch in images/s;
  6. export.py --half --include onnx and the fp16 file run back.
They run as --only names them (default: fla, sdpa, train, half, speed, export).
Without CUDA it says so and exits 0. About 3-5 minutes on one H200 at the defaults (imgsz 320).
--device cpu is a dry run that walks every check with tiny sizes and generated inputs (benchmarks/device_dry.py):
fp32, and bf16 autocast where CUDA uses fp16; the suite runs it, so the GPU run cannot rot unnoticed.

Example:
    python benchmarks/device_check.py --device 0
    python benchmarks/device_check.py --only fla sdpa
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))  # device_engine.py beside this file

from benchmarks.device_dry import FLA_SIZES, SDPA_SIZES, low_precision, median_ms, prepare, synchronize  # noqa: E402

NO_CUDA = "device_check: CUDA is not available on this machine; nothing was checked"
CHECKS = ("fla", "sdpa", "train", "half", "speed", "export", "engine")


class Row(NamedTuple):
    check: str
    result: str
    ok: bool | None  # None: a measurement with no pass/fail


# ---- 1 and 5: training ----------------------------------------------------------------------------------------
def _train_opt(opt: argparse.Namespace, name: str, epochs: int) -> argparse.Namespace:
    """train.py options for a fine-tune of yolov5n-fla from --weights on --data."""
    import train

    return train.parse_opt(
        ["--cfg", "yolov5n-fla.yaml", "--weights", str(opt.weights), "--data", str(opt.data), "--epochs", str(epochs),
         "--imgsz", str(opt.imgsz), "--batch-size", str(opt.batch_size), "--workers", str(opt.workers),
         "--device", opt.device, "--project", str(opt.project), "--name", name, "--exist-ok", "--noplots",
         "--seed", "0"]
    )  # fmt: skip


def _run(opt: argparse.Namespace, name: str, epochs: int, amp: bool):
    """A set-up training run (utils.train.build.Run) whose criterion records every training loss it computes.

    amp=False forces fp32 through the frozen config; the recording criterion is the detection task's with one
    part replaced, so the run itself is the engine's own.
    """
    import dataclasses

    from utils.train.build import setup_run
    from utils.train.config import resolve_config
    from utils.train.tasks import DETECT

    losses: List[torch.Tensor] = []

    def recording(model, hyp):
        inner = DETECT.criterion(model, hyp)

        def criterion(preds, batch):
            out = inner(preds, batch)
            if torch.is_grad_enabled():  # training steps only, not the validation losses
                losses.append(out.total.detach())  # stays on the GPU: no sync per step
            return out

        return criterion

    config = dataclasses.replace(resolve_config(_train_opt(opt, name, epochs)), amp=amp)
    run = setup_run(config, dataclasses.replace(DETECT, criterion=recording))
    return run, losses


def _final_map(save_dir: Path) -> tuple:
    """(mAP50, mAP50-95) of results.csv's last epoch."""
    with open(save_dir / "results.csv", newline="") as f:
        last = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(f)][-1]
    return float(last["metrics/mAP_0.5"]), float(last["metrics/mAP_0.5:0.95"])


def check_train(opt: argparse.Namespace) -> List[Row]:
    """AMP vs fp32 fine-tune: all losses finite, the AMP run's mAP within opt.map_tol of fp32's."""
    rows, maps = [], {}
    for name, amp in (("amp", True), ("fp32", False)):
        from utils.train.run import run_epochs

        run, recorded = _run(opt, f"train_{name}", opt.epochs, amp)
        try:
            run_epochs(run)
        finally:
            run.results.close()
        losses = torch.stack(recorded)
        bad = int((~torch.isfinite(losses)).sum())
        rows.append(Row(f"train {name}: losses finite", f"{len(losses) - bad}/{len(losses)} finite", bad == 0))
        if amp:
            scale = run.state.scaler.get_scale()
            rows.append(Row("train amp: GradScaler scale", f"{scale:.0f}", scale > 0))
        maps[name] = _final_map(Path(run.config.save_dir))
    d50, d = (abs(a - b) for a, b in zip(maps["amp"], maps["fp32"]))
    (a50, a), (f50, f) = maps["amp"], maps["fp32"]
    text = f"mAP50 {a50:.3f} vs {f50:.3f}, mAP50-95 {a:.3f} vs {f:.3f} (AMP vs fp32)"
    rows.append(Row(f"train {opt.epochs} ep: AMP vs fp32 mAP (tol {opt.map_tol})", text, max(d50, d) <= opt.map_tol))
    return rows


def check_speed(opt: argparse.Namespace) -> List[Row]:
    """Images/s of one AMP training epoch (the second: the first warms up cuDNN and the workers)."""
    from utils.train.epoch import train_one_epoch
    from utils.train.run import epoch_settings

    run, _ = _run(opt, "speed", 2, amp=True)
    st, n = run.state, len(run.dataset)
    try:
        times = []
        for epoch in (0, 1):
            synchronize(run.device)
            t0 = time.perf_counter()
            s = epoch_settings(run, epoch)
            train_one_epoch(run.model, run.criterion, run.train_loader, st.optimizer, st.scaler, st.ema, st, s)
            synchronize(run.device)
            times.append(time.perf_counter() - t0)
        dt = times[1]
    finally:
        run.results.close()
    text = f"{n / dt:.0f} images/s ({n} images, {dt:.1f} s, batch {opt.batch_size}, {opt.imgsz} px)"
    return [Row("train epoch speed (AMP)", text, None)]


# ---- 2: --half inference --------------------------------------------------------------------------------------
def _script(*args: str) -> subprocess.CompletedProcess:
    """`python SCRIPT ARGS...` (val.py, detect.py, export.py) in this process: benchmarks/in_process.py."""
    from benchmarks.in_process import run_script

    return run_script(*args)


def _failed(r: subprocess.CompletedProcess, what: str) -> Row | None:
    if r.returncode == 0:
        return None
    tail = (r.stderr.strip().splitlines() or ["no output"])[-1]
    return Row(what, f"exit {r.returncode}: {tail[:100]}", False)


def _labels(folder: Path) -> Dict[str, torch.Tensor]:
    """detect.py --save-txt --save-conf labels: {image stem: (n, 6) cls x y w h conf}."""
    out = {}
    for f in folder.glob("*.txt"):
        rows = [[float(v) for v in line.split()] for line in f.read_text().splitlines() if line.strip()]
        out[f.stem] = torch.tensor(rows).reshape(-1, 6)
    return out


def match_rate(ref: Dict[str, torch.Tensor], other: Dict[str, torch.Tensor], iou: float = 0.9) -> tuple:
    """(matched, total): ref detections with an other detection of the same class at IoU >= iou (same image)."""
    from utils.boxes import box_iou, xywh2xyxy

    matched = total = 0
    for stem, a in ref.items():
        b = other.get(stem, torch.zeros(0, 6))
        total += len(a)
        if len(a) and len(b):
            ious = box_iou(xywh2xyxy(a[:, 1:5]), xywh2xyxy(b[:, 1:5]))
            ious[a[:, :1] != b[:, 0][None]] = 0
            matched += int((ious.max(1).values >= iou).sum())
    return matched, total


def check_half(opt: argparse.Namespace) -> List[Row]:
    """val.py and detect.py with --half against fp32 on the same weights and data."""
    from utils.data.config import check_dataset

    rows, res, labels = [], {}, {}
    for name, extra in (("fp32", ()), ("half", ("--half",))):
        common = ("--weights", opt.weights, "--imgsz", opt.imgsz, "--device", opt.device, *extra)
        r = _script("val.py", *common, "--data", opt.data, "--project", opt.project, "--name", f"val_{name}",
                    "--exist-ok", "--noplots")  # fmt: skip
        if (bad := _failed(r, f"val.py {name}")) is not None:
            return [bad]
        res[name] = json.loads((opt.project / f"val_{name}" / "results.json").read_text())["all"]
        source = check_dataset(str(opt.data))["val"]
        source = source[0] if isinstance(source, (list, tuple)) else source
        r = _script("detect.py", *common, "--source", source, "--project", opt.project, "--name", f"det_{name}",
                    "--exist-ok", "--save-txt", "--save-conf", "--nosave", *opt.detect_extra)  # fmt: skip
        if (bad := _failed(r, f"detect.py {name}")) is not None:
            return [bad]
        labels[name] = _labels(opt.project / f"det_{name}" / "labels")
    d = max(abs(res["half"][k] - res["fp32"][k]) for k in ("mAP50", "mAP50-95"))
    text = f"mAP50-95 {res['half']['mAP50-95']:.4f} vs {res['fp32']['mAP50-95']:.4f} (max diff {d:.4f})"
    rows.append(Row("val.py --half vs fp32 (tol 0.005)", text, d <= 0.005))
    m, n = match_rate(labels["fp32"], labels["half"])
    rows.append(Row("detect.py --half vs fp32 (>= 98% at IoU 0.9)", f"{m}/{n} boxes matched", n > 0 and m >= 0.98 * n))
    return rows


# ---- 3 and 4: the FLA layer -----------------------------------------------------------------------------------
def _fla(c: int, heads: int, device: torch.device) -> nn.Module:
    from models.fla import FLA

    torch.manual_seed(0)
    return FLA(c, heads, zero_init=False).to(device)


def check_fla(opt: argparse.Namespace) -> List[Row]:
    """FLA(128, 4 heads) with inputs x1e3 at 80x80 and 160x160: finite under autocast (fwd+bwd) and in .half()."""
    dev, rows = torch.device(opt.cuda), []
    low = low_precision(dev)
    for s in FLA_SIZES[dev.type]:
        m = _fla(128, 4, dev).train()
        x = (torch.randn(2, 128, s, s, device=dev) * 1e3).requires_grad_(True)
        with torch.autocast(dev.type, dtype=low):
            y = m(x)
        y.float().square().mean().backward()
        grads = [p.grad for p in m.parameters() if p.grad is not None] + [x.grad]
        ok = bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(g).all()) for g in grads)
        name = str(low).split(".")[-1]
        rows.append(Row(f"FLA {s}x{s} x1e3 autocast {name} fwd+bwd", f"out {y.dtype}, |y| max {y.abs().max():.3g}", ok))
        with torch.no_grad():
            yh = m.eval().to(low)(x.detach().to(low))
        finite = bool(yh.isfinite().all())
        rows.append(Row(f"FLA {s}x{s} x1e3 {name} weights forward", f"|y| max {yh.abs().max():.3g}", finite))
    return rows


class SoftmaxAttention(nn.Module):
    """The same q / kv / proj layers as FocusedLinearAttention with softmax attention (SDPA): (B, N, C) -> (B, N, C)."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.q, self.kv, self.proj, self.h = (
            nn.Linear(dim, dim),
            nn.Linear(dim, 2 * dim),
            nn.Linear(dim, dim),
            num_heads,
        )

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        b, n, c = t.shape
        q = self.q(t).reshape(b, n, self.h, -1).transpose(1, 2)  # (B, h, N, d)
        k, v = self.kv(t).reshape(b, n, 2, self.h, -1).permute(2, 0, 3, 1, 4)  # 2 x (B, h, N, d)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, c))


def check_sdpa(opt: argparse.Namespace) -> List[Row]:
    """Forward time of FocusedLinearAttention vs SDPA softmax attention, C 128, 4 heads, batch 8, fp16 autocast."""
    from utils.torch_utils import set_deterministic

    dev, rows = torch.device(opt.cuda), []
    flags = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    set_deterministic(False)  # a training check before may have turned these on: time free kernels
    torch.backends.cudnn.deterministic = False
    try:
        rows = _time_attention(dev)
    finally:
        set_deterministic(flags[0])
        torch.backends.cudnn.deterministic = flags[1]
    return rows


def _time_attention(dev: torch.device) -> List[Row]:
    rows = []
    fla = _fla(128, 4, dev).attn.eval()
    soft = SoftmaxAttention(128, 4).to(dev).eval()
    for s in SDPA_SIZES[dev.type]:
        t = torch.randn(8, s * s, 128, device=dev)
        with torch.no_grad(), torch.autocast(dev.type, dtype=low_precision(dev)):
            x = t.transpose(1, 2).reshape(8, 128, s, s).contiguous()  # FLA takes feature maps (B, C, H, W)
            ms_fla = median_ms(lambda x=x: fla(x), dev)
            ms_soft = median_ms(lambda t=t: soft(t), dev)
        text = f"FLA {ms_fla:.2f} ms, SDPA {ms_soft:.2f} ms ({ms_fla / ms_soft:.2f}x)"
        rows.append(Row(f"FLA vs SDPA {s}x{s} tokens (B 8, C 128)", text, None))
    return rows


# ---- 6: --half ONNX export ------------------------------------------------------------------------------------
def check_export(opt: argparse.Namespace) -> List[Row]:
    """export.py --half --include onnx on CUDA; the file runs back with fp16 input."""
    from utils.deploy.backends import DetectMultiBackend

    w = Path(shutil.copy(opt.weights, opt.project / "half_export.pt"))
    half = ("--half",) if opt.device != "cpu" else ()  # export --half needs CUDA: the dry run exports fp32
    r = _script("export.py", "--weights", w, "--include", "onnx", *half, "--device", opt.device, "--imgsz", opt.imgsz)
    if (bad := _failed(r, "export.py --half onnx")) is not None:
        return [bad]
    line = next((x for x in r.stdout.splitlines() + r.stderr.splitlines() if "max abs difference" in x), "")
    diff = float(line.split()[-1]) if line else float("nan")
    backend = DetectMultiBackend(w.with_suffix(".onnx"), device=opt.cuda)
    y = backend(torch.rand(1, 3, opt.imgsz, opt.imgsz, device=opt.cuda))
    ok = (backend.fp16 or not half) and bool(torch.isfinite(y).all()) and diff <= 2.0
    return [Row("export --half ONNX (diff <= 2 px)", f"fp16 input {backend.fp16}, max abs diff {diff:.3g}", ok)]


# ---- the table ------------------------------------------------------------------------------------------------
RUNNERS = {"train": check_train, "half": check_half, "fla": check_fla, "sdpa": check_sdpa, "speed": check_speed,
           "export": check_export, "engine": lambda opt: [Row(*r) for r in __import__("device_engine").engine_rows(
               opt.weights, opt.project, opt.device, opt.imgsz)]}  # fmt: skip


def table(rows: List[Row]) -> str:
    status = {True: "PASS", False: "FAIL", None: "-"}
    lines = ["| check | result | status |", "|---|---|---|"]
    lines += [f"| {r.check} | {r.result} | {status[r.ok]} |" for r in rows]
    return "\n".join(lines)


def parse_opt(argv=None) -> argparse.Namespace:
    shared = ROOT.parent / "shared"
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=shared / "data" / "bccd" / "bccd.yaml", help="dataset yaml")
    p.add_argument("--weights", type=Path, default=shared / "weights" / "yolov5n-bccd.pt", help="start weights")
    p.add_argument("--device", default="0", help="CUDA device index, or cpu for the dry run with tiny sizes")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=8)
    p.add_argument("--map-tol", type=float, default=0.03, help="AMP vs fp32 mAP tolerance after --epochs")
    p.add_argument("--only", nargs="+", choices=CHECKS, default=list(CHECKS), help="run these checks only")
    p.set_defaults(detect_extra=())  # the dry run's untrained model: --conf-thres 0.001 so boxes are compared
    p.add_argument("--project", type=Path, default=None, help="run folder (default: a temporary one, removed)")
    return p.parse_args(argv)


def run_checks(opt: argparse.Namespace) -> List[Row]:
    """Every check in opt.only; a check that raises is one FAIL row, the others still run."""
    rows: List[Row] = []
    for name in opt.only:
        t0 = time.time()
        try:
            rows += RUNNERS[name](opt)
        except Exception as e:  # report and go on: the table shows every path that broke
            rows.append(Row(name, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}", False))
        print(f"device_check: {name} done in {time.time() - t0:.0f}s", flush=True)
    return rows


def main(opt: argparse.Namespace) -> int:
    dry = opt.device == "cpu"
    if not dry and not torch.cuda.is_available():
        print(NO_CUDA)
        return 0
    from utils.errors import UserError, run_cli
    from utils.log import setup_logging

    setup_logging(verbose=False)

    @run_cli
    def _run() -> int:
        needs = {"train": (opt.data, opt.weights), "half": (opt.data, opt.weights), "speed": (opt.data, opt.weights),
                 "export": (opt.weights,)}  # fmt: skip
        for f in {f for c in opt.only for f in needs.get(c, ())} if not dry else ():
            if not f.is_file():
                raise UserError(f"{f} not found (see --data / --weights)")
        opt.cuda = "cpu" if dry else f"cuda:{opt.device.split(',')[0]}"
        with tempfile.TemporaryDirectory() as tmp:
            opt.project = (opt.project or Path(tmp)).resolve()
            opt.project.mkdir(parents=True, exist_ok=True)
            if dry:
                prepare(opt)
            t0 = time.time()
            rows = run_checks(opt)
        where = "CPU dry run" if dry else torch.cuda.get_device_name(opt.cuda)
        print(f"\n{where}, torch {torch.__version__}, {time.time() - t0:.0f}s\n")
        print(table(rows))
        return 1 if any(r.ok is False for r in rows) else 0

    return _run()


if __name__ == "__main__":
    sys.exit(main(parse_opt()))
