"""Export a model to every format installed here, validate each, print one table (YOLOv5's benchmarks.py flags).

python benchmarks.py --weights yolov5n.pt --imgsz 320 --data coco8.yaml [--hard-fail 0.29]
"""

from __future__ import annotations

import argparse
import logging
import platform

from utils.errors import UserError, run_cli
from utils.flag_ranges import IMGSZ, POSITIVE
from utils.log import setup_logging

LOGGER = logging.getLogger("benchmarks")


def _floor(v: str):
    """--hard-fail's value: a float mAP floor (or true/false)."""
    if v.lower() in ("true", "false"):
        return v.lower() == "true"
    return float(v)


def parse_opt(argv=None) -> argparse.Namespace:
    """Command-line options (official names)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", type=str, default="yolov5s.pt", help="weights path")
    p.add_argument("--imgsz", "--img", "--img-size", type=IMGSZ, default=640, help="inference size (pixels)")
    p.add_argument("--batch-size", type=POSITIVE, default=1, help="batch size")
    p.add_argument("--data", type=str, default=None, help="dataset.yaml path")
    p.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference")
    p.add_argument("--test", action="store_true", help="test exports only")
    p.add_argument("--pt-only", action="store_true", help="test PyTorch only")
    p.add_argument("--no-int8", dest="int8", action="store_false", help="skip the int8 rows (ONNX, OpenVINO, TFLite)")
    p.add_argument("--hard-fail", nargs="?", const=True, default=False, type=_floor,
                   help="exit 1 when a format fails; a float also fails on mAP50-95 below it")  # fmt: skip
    return p.parse_args(argv)


@run_cli
def main(opt: argparse.Namespace):
    """Run the benchmarks; returns the rows. Exits 1 with --hard-fail when a format fails or is below the floor."""
    from utils.deploy.benchmark import format_table, hard_fail, run_benchmarks

    setup_logging()
    if opt.data is None:
        raise UserError("--data is required: the dataset yaml each format is validated on")
    rows = run_benchmarks(opt)
    table = format_table(rows)
    machine = platform.processor() or platform.machine()
    print(f"\nBenchmarks complete: {opt.weights}, {opt.imgsz}px, batch {opt.batch_size}, {machine}\n{table}")
    if opt.hard_fail:
        problems = hard_fail(rows, opt.hard_fail)
        if problems:
            raise SystemExit("error: --hard-fail: " + "; ".join(problems))
    return rows


if __name__ == "__main__":
    main(parse_opt())
