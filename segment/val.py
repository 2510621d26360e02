"""Validate a segmentation model: python segment/val.py --weights yolov5s-seg.pt --data coco128-seg.yaml --img 640."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python segment/val.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.compat_flags import CompatFlag, add_compat_flags, check_compat_flags
from utils.errors import UserError, run_cli
from utils.flag_ranges import FRACTION, IMGSZ, NON_NEGATIVE, POSITIVE
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("segment.val")
TASKS = ("train", "val", "test", "speed", "study")
COMPAT = (
    CompatFlag(("--dnn",), "ONNX models run through ONNX Runtime, not OpenCV DNN (same results)"),
    CompatFlag(("--augment",), "official segmentation has no test-time augmentation either; plain inference runs"),
    CompatFlag(("--save-hybrid",), "hybrid label+prediction files are not written for segmentation", fatal=True),
)


def parse_opt(argv=None) -> argparse.Namespace:
    """segment/val.py flags, as YOLOv5's."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=str, default=None, help="dataset yaml with polygons (default: built-in shapes)")
    p.add_argument("--weights", nargs="+", type=str, default=["yolov5s-seg.pt"], help="model path (.pt, .onnx, ...)")
    p.add_argument("--batch-size", type=POSITIVE, default=32, help="batch size")
    p.add_argument("--imgsz", "--img", "--img-size", type=IMGSZ, default=640, help="inference size (pixels)")
    p.add_argument("--conf-thres", type=FRACTION, default=0.001, help="confidence threshold")
    p.add_argument("--iou-thres", type=FRACTION, default=0.6, help="NMS IoU threshold")
    p.add_argument("--max-det", type=POSITIVE, default=300, help="maximum detections per image")
    p.add_argument("--task", default="val", choices=TASKS, help="train, val, test or speed (study: as val)")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--workers", type=NON_NEGATIVE, default=8, help="max dataloader workers")
    p.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    p.add_argument("--verbose", action="store_true", help="report mAP by class")
    p.add_argument("--save-txt", action="store_true", help="save box results to *.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file with RLE masks (scored)")
    p.add_argument("--project", default=str(ROOT / "runs" / "val-seg"), help="save results to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    p.add_argument("--noplots", action="store_true", help="save no plot files")
    add_compat_flags(p, COMPAT, "YOLOv5 flags without effect here")
    return p.parse_args(argv)


def run(opt: argparse.Namespace, save_dir: Path | None = None, plots: bool = False):
    """Validate without the CLI's set-up (benchmarks.py): UserError is raised, nothing written without save_dir."""
    from utils.segment.val_run import run_val

    return run_val(opt, save_dir, plots=plots)


@run_cli
def main(opt: argparse.Namespace):
    """Validate; returns the SegMetrics (box and mask figures)."""
    from utils.paths import increment_path
    from utils.segment.val_run import run_val

    setup_logging()
    check_compat_flags(opt, COMPAT)
    if opt.batch_size < 1:
        raise UserError(f"--batch-size must be positive (got {opt.batch_size})")
    if opt.conf_thres > 0.001 and opt.task in ("train", "val", "test"):
        LOGGER.warning("WARNING: confidence threshold %g > 0.001 produces invalid results", opt.conf_thres)
    if opt.task == "speed":
        opt.conf_thres, opt.iou_thres, opt.save_json = 0.25, 0.45, False
    if not opt.data:  # as segment/train.py: the built-in shapes with polygon labels
        from utils.data.synthetic import ensure_builtin_dataset

        opt.data = str(ensure_builtin_dataset(segments=True))
        LOGGER.info("no --data given: validating on the built-in shapes dataset with polygon labels (%s)", opt.data)
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    metrics = run_val(opt, save_dir, plots=not opt.noplots and opt.task != "speed")
    LOGGER.info("Results saved to %s", save_dir)
    return metrics


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
