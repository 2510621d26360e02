"""Training throughput (images/second of a training epoch): python benchmarks/train_speed.py [--epochs 2]."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from train import parse_opt  # noqa: E402
from utils.log import setup_logging  # noqa: E402
from utils.train.build import setup_run  # noqa: E402
from utils.train.config import resolve_config  # noqa: E402
from utils.train.epoch import train_one_epoch  # noqa: E402
from utils.train.run import epoch_settings  # noqa: E402
from utils.train.tasks import DETECT  # noqa: E402

LOGGER = logging.getLogger("train_speed")
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "bccd" / "bccd.yaml"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--cfg", default="yolov5n.yaml")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--epochs", type=int, default=1, help="epochs to time (after set-up; the first includes warm-up)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    setup_logging(verbose=False)
    with tempfile.TemporaryDirectory() as tmp:
        opt = parse_opt(
            ["--cfg", args.cfg, "--data", args.data, "--imgsz", str(args.imgsz), "--batch-size", str(args.batch_size),
             "--workers", str(args.workers), "--epochs", str(args.epochs), "--device", args.device,
             "--project", tmp, "--noval", "--noplots", "--nosave", "--noautoanchor"]
        )  # fmt: skip
        run = setup_run(resolve_config(opt), DETECT)
        st, n = run.state, len(run.dataset)
        per_epoch = []
        try:
            for epoch in range(args.epochs):
                start = time.perf_counter()
                s = epoch_settings(run, epoch)
                train_one_epoch(run.model, run.criterion, run.train_loader, st.optimizer, st.scaler, st.ema, st, s)
                per_epoch.append(n / (time.perf_counter() - start))
        finally:
            run.results.close()
    result = {
        "cfg": args.cfg, "imgsz": args.imgsz, "batch_size": args.batch_size, "workers": args.workers,
        "images_per_epoch": n, "images_per_second": [round(x, 2) for x in per_epoch],
    }  # fmt: skip
    print(json.dumps(result))


if __name__ == "__main__":
    main()
