"""The CPU dry run of benchmarks/device_check.py: tiny inputs and sizes so every check's code path runs in the suite.

`python benchmarks/device_check.py --device cpu` walks each check with a 64 px image size, one epoch, a generated
8-image dataset and a fresh width-0.25 yolov5n-fla; fp32, and bf16 autocast where CUDA uses fp16. Its numbers mean
nothing; that the table comes out, every row run, is what it checks (the GPU run is then one command known to work).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path
from typing import Callable

import torch

DRY = {"imgsz": 64, "epochs": 1, "batch_size": 2, "workers": 0, "detect_extra": ("--conf-thres", "0.001")}
FLA_SIZES = {"cuda": (80, 160), "cpu": (8, 16)}
SDPA_SIZES = {"cuda": (40, 80, 160), "cpu": (8, 16)}


def low_precision(dev: torch.device) -> torch.dtype:
    """fp16 on CUDA; bf16 on the CPU (its autocast type)."""
    return torch.float16 if dev.type == "cuda" else torch.bfloat16


def synchronize(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _cuda_ms(fn: Callable[[], object], runs: int = 20, warmup: int = 5) -> float:
    """Median milliseconds of fn on the GPU (CUDA events)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def median_ms(fn: Callable[[], object], dev: torch.device, runs: int = 20, warmup: int = 5) -> float:
    """Median milliseconds of fn: CUDA events on a GPU, perf_counter on the CPU (3 runs)."""
    import statistics
    import time

    if dev.type == "cuda":
        return _cuda_ms(fn, runs, warmup)
    fn()
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def tiny_inputs(folder: Path) -> tuple[Path, Path]:
    """(dataset yaml, weights) for the dry run: 8 grey 128x96 images with two coloured boxes, a fresh yolov5n-fla."""
    import cv2
    import numpy as np

    from models.yolo import DetectionModel
    from utils.checkpoint import model_to_dict, save_checkpoint

    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (folder / "images" / split).mkdir(parents=True, exist_ok=True)
        (folder / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(8 if split == "train" else 4):
            im, rows = np.full((96, 128, 3), 90, np.uint8), []
            for c in (0, 1):
                x0, y0 = int(rng.integers(4, 80)), int(rng.integers(4, 50))
                cv2.rectangle(im, (x0, y0), (x0 + 40, y0 + 40), (255, 0, 0) if c else (0, 255, 0), -1)
                rows.append(f"{c} {(x0 + 20) / 128:.6f} {(y0 + 20) / 96:.6f} {40 / 128:.6f} {40 / 96:.6f}")
            cv2.imwrite(str(folder / "images" / split / f"{i}.png"), im)
            (folder / "labels" / split / f"{i}.txt").write_text("\n".join(rows) + "\n")
    data = folder / "dry.yaml"
    data.write_text(f"path: {folder}\ntrain: images/train\nval: images/val\nnames: [red, green]\n")
    torch.manual_seed(0)
    model = DetectionModel("yolov5n-fla.yaml", nc=2, verbose=False)
    model.names = ["red", "green"]
    weights = save_checkpoint({"model": model_to_dict(model, half=False)}, folder / "dry.pt")
    return data, weights


def prepare(opt: argparse.Namespace) -> None:
    """Tiny sizes and generated inputs for a --device cpu run (opt.project must exist)."""
    for k, v in DRY.items():
        setattr(opt, k, v)
    opt.data, opt.weights = tiny_inputs(opt.project / "dry_inputs")
