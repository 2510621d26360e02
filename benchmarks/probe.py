"""In-process speed probes run by benchmarks/vs_official.py, for this code or for official YOLOv5 alike.

    python benchmarks/probe.py forward --root . [--cfg yolov5s.yaml --imgsz 640 --runs 20]
    /path/to/venv/bin/python benchmarks/probe.py loader --root /path/to/yolov5 --data train/images [--imgsz 640]

`--root` is the repository whose code is probed (put first on sys.path); both codebases expose the same
`models.yolo` and `create_dataloader` interface, only the dataloader module's name differs. Prints one JSON line
{"value": ..., "unit": ...} last: the median forward milliseconds, or the train loader's images per second.
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import sys
import time
from pathlib import Path

LOADER_MODULES = ("utils.data.loader", "utils.dataloaders")  # ours, official YOLOv5's
AUGMENT = {  # hyp.scratch-low's augmentation values, given to both loaders
    "hsv_h": 0.015, "hsv_s": 0.7, "hsv_v": 0.4, "degrees": 0.0, "translate": 0.1, "scale": 0.5, "shear": 0.0,
    "perspective": 0.0, "flipud": 0.0, "fliplr": 0.5, "mosaic": 1.0, "mixup": 0.0, "copy_paste": 0.0,
}  # fmt: skip


def _import_first(names):
    """The first importable module of names (the probed repository has exactly one of them)."""
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError:
            continue
    raise SystemExit(f"none of {names} importable from {sys.path[0]}")


def forward_ms(cfg: str, imgsz: int, runs: int, warmup: int, threads: int) -> float:
    """Median ms of a fused eval-mode model built from cfg (random weights), input (1, 3, imgsz, imgsz)."""
    import torch

    from models.yolo import Model  # both codebases alias DetectionModel as Model

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Model(cfg).eval().fuse()
    im = torch.zeros(1, 3, imgsz, imgsz)
    ms = []
    with torch.inference_mode():
        for i in range(warmup + runs):
            t0 = time.perf_counter()
            model(im)
            if i >= warmup:
                ms.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(ms)


def loader_images_per_s(data: str, imgsz: int, batch: int, workers: int, epochs: int) -> float:
    """Images/s of the mosaic train loader over `epochs` passes, after its first batch (workers started)."""
    module = _import_first(LOADER_MODULES)
    if module.__name__ == "utils.data.loader":  # ours takes option objects
        from utils.data.options import DataOptions, LoaderOptions

        opts = DataOptions(imgsz, batch, augment=True, hyp=dict(AUGMENT)), LoaderOptions(workers, shuffle=True)
        loader, _ = module.create_dataloader(data, *opts)
    else:
        loader, _ = module.create_dataloader(
            data, imgsz, batch, 32, hyp=dict(AUGMENT), augment=True, workers=workers, shuffle=True, prefix=""
        )
    n, t0 = 0, None
    for _ in range(epochs):
        for ims, *_ in loader:
            if t0 is None:
                t0 = time.perf_counter()  # the clock starts once the first batch is out
                continue
            n += ims.shape[0]
    return n / (time.perf_counter() - t0)


def parse_opt(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("task", choices=("forward", "loader"))
    p.add_argument("--root", required=True, help="repository whose code is probed")
    p.add_argument("--cfg", default="yolov5s.yaml", help="forward: model yaml (a path relative to --root works)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--runs", type=int, default=20, help="forward: timed calls")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data", default="", help="loader: image folder")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=2, help="loader: passes over the images")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> dict:
    root = str(Path(opt.root).resolve())
    sys.path.insert(0, root)
    if opt.task == "forward":
        out = {"value": forward_ms(opt.cfg, opt.imgsz, opt.runs, opt.warmup, opt.threads), "unit": "ms"}
    else:
        out = {"value": loader_images_per_s(opt.data, opt.imgsz, opt.batch_size, opt.workers, opt.epochs),
               "unit": "images/s"}  # fmt: skip
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main(parse_opt())
