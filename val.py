"""Validate a YOLOv5(-FLA) model on a dataset split: python val.py --weights yolov5s.pt --data coco128.yaml."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from utils.compat_flags import CompatFlag, add_compat_flags, check_compat_flags
from utils.errors import UserError, run_cli
from utils.flag_ranges import FRACTION, IMGSZ, NON_NEGATIVE, POSITIVE
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("val")
TASKS = ("train", "val", "test", "speed", "study")
COMPAT = (CompatFlag(("--dnn",), "ONNX models run through ONNX Runtime, not OpenCV DNN (same results)"),)


def parse_opt(argv=None) -> argparse.Namespace:
    """val.py flags, as YOLOv5's."""
    p = argparse.ArgumentParser(description=__doc__)
    g = p.add_argument_group("model and data")
    g.add_argument("--data", type=str, default=None, help="dataset yaml (default: the built-in dataset)")
    g.add_argument("--weights", nargs="+", type=str, default=["yolov5s.pt"], help="model path(s); several = ensemble")
    g.add_argument("--cfg", type=str, default=None, help="model yaml to build; weights are transferred by structure")
    g.add_argument("--batch-size", type=int, default=32, help="batch size")
    g.add_argument("--imgsz", "--img", "--img-size", type=IMGSZ, default=640, help="inference size (pixels)")
    g.add_argument("--task", default="val", choices=TASKS, help="train, val, test, speed or study")
    g.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    g.add_argument("--workers", type=NON_NEGATIVE, default=8, help="max dataloader workers")
    g.add_argument("--single-cls", action="store_true", help="treat as single-class dataset")
    g.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    g = p.add_argument_group("evaluation")
    g.add_argument("--conf-thres", type=FRACTION, default=0.001, help="confidence threshold")
    g.add_argument("--iou-thres", type=FRACTION, default=0.6, help="NMS IoU threshold")
    g.add_argument("--max-det", type=POSITIVE, default=300, help="maximum detections per image")
    g.add_argument("--augment", action="store_true", help="augmented inference (flips and scales)")
    g.add_argument("--verbose", action="store_true", help="report mAP by class")
    g = p.add_argument_group("output")
    g.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    g.add_argument("--save-hybrid", action="store_true", help="save label+prediction hybrid results to *.txt")
    g.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    g.add_argument("--save-json", action="store_true", help="save a COCO-JSON results file (scored when possible)")
    g.add_argument("--project", default=str(ROOT / "runs" / "val"), help="save to project/name")
    g.add_argument("--name", default="exp", help="save to project/name")
    g.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    g.add_argument("--noplots", action="store_true", help="save no plot files")
    add_compat_flags(p, COMPAT, "YOLOv5 flags without effect here")
    opt = p.parse_args(argv)
    opt.save_txt |= opt.save_hybrid
    opt.save_json |= str(opt.data or "").endswith("coco.yaml")
    return opt


def _loader_settings(model, opt: argparse.Namespace, speed: bool):
    """(imgsz, batch_size, rect, pad) for this predictor: rect batches for PyTorch, the export size for static files."""
    from utils.img_size import check_img_size

    imgsz, batch_size = opt.imgsz, opt.batch_size
    pad, rect = (0.0, False) if speed else (0.5, model.pt)
    if not model.pt:
        if model.imgsz is not None:  # static export: fixed square input
            h, w = model.imgsz
            if h != w:
                raise UserError(f"the model was exported for {h}x{w}; val.py needs a square export (--imgsz N)")
            if h != imgsz:
                LOGGER.warning("WARNING: --imgsz %d does not fit the static export, using %d", imgsz, h)
            imgsz, rect = h, False
        else:
            rect = not speed
        if model.batch:
            batch_size = int(model.batch)
            LOGGER.info("Using --batch-size %d of the static export", batch_size)
    imgsz = check_img_size(imgsz, stride=int(model.stride))
    return imgsz, batch_size, rect, pad


def run(opt: argparse.Namespace, weights, imgsz: int | None = None, save_dir: Path | None = None, plots: bool = True):
    """Validate one weights entry (a path or a list = ensemble) on opt.task's split -> EvalResult."""
    from utils.data.config import check_dataset
    from utils.data.loader import create_dataloader
    from utils.data.options import DataOptions, LoaderOptions
    from utils.data.problems import report_to
    from utils.deploy.backends import load_predictor
    from utils.torch_utils import select_device
    from utils.val.coco import coco_target
    from utils.val.evaluate import EvalOptions, evaluate

    device = select_device(opt.device, opt.batch_size)
    half = opt.half and device.type != "cpu"
    if opt.half and not half:
        LOGGER.warning("WARNING: --half needs CUDA; running in FP32 on CPU")
    data = check_dataset(opt.data)
    model = load_predictor(weights, device=device, fp16=half, cfg=opt.cfg)
    nc = 1 if opt.single_cls else int(data["nc"])
    names = dict(model.names) if model.names else list(data["names"])
    if not opt.single_cls and len(names) != nc:
        raise UserError(f"{weights} has {len(names)} classes but --data {opt.data} has {nc}; pass matching weights")
    speed = opt.task == "speed"
    sub = imgsz or opt.imgsz
    opt_i = argparse.Namespace(**{**vars(opt), "imgsz": sub})
    imgsz, batch_size, rect, pad = _loader_settings(model, opt_i, speed)
    split = "val" if opt.task in ("speed", "study") else opt.task
    if not data.get(split):
        raise UserError(f"--data {opt.data} has no '{split}' split")
    model.warmup(imgsz=(1 if model.pt else batch_size, 3, imgsz, imgsz))
    model.use_channels_last()
    data_opt = DataOptions(img_size=imgsz, batch_size=batch_size, rect=rect, single_cls=opt.single_cls,
                           stride=model.stride, pad=pad, prefix=f"{split}: ", nc=int(data["nc"]))  # fmt: skip
    with report_to(save_dir):
        loader = create_dataloader(data[split], data_opt, LoaderOptions(workers=opt.workers))[0]
    stem = Path(weights[0] if isinstance(weights, (list, tuple)) else weights).stem
    options = EvalOptions(
        conf_thres=opt.conf_thres, iou_thres=opt.iou_thres, max_det=opt.max_det, single_cls=opt.single_cls,
        plots=plots and not opt.noplots, per_class=opt.verbose or nc < 50, save_txt=opt.save_txt,
        save_hybrid=opt.save_hybrid, save_conf=opt.save_conf, save_json=opt.save_json,
        json_name=f"{stem}_predictions.json", coco=coco_target(data) if opt.save_json else None,
    )  # fmt: skip
    return evaluate(model, loader, names, options, save_dir, augment=opt.augment, speed_shape=(batch_size, imgsz))


def study(opt: argparse.Namespace, save_dir: Path) -> list:
    """mAP and speed against image size (256 .. 1536) for each weights file; study_<data>_<weights>.txt rows."""
    results = []
    for w in opt.weights:
        f = save_dir / f"study_{Path(opt.data or 'builtin').stem}_{Path(w).stem}.txt"
        rows = []
        for size in range(256, 1536 + 128, 128):
            LOGGER.info("\nRunning %s --imgsz %d...", f.name, size)
            res = run(opt, w, imgsz=size, plots=False)
            rows.append((size, *res.results, *res.speeds))
        f.write_text("".join(" ".join(f"{v:10.4g}" for v in row) + "\n" for row in rows))
        results.append(rows)
    return results


@run_cli
def main(opt: argparse.Namespace):
    """Run opt.task; returns the EvalResult (a list for speed / study / several runs)."""
    from utils.paths import increment_path

    setup_logging()
    check_compat_flags(opt, COMPAT)
    if opt.batch_size < 1:
        raise UserError(f"--batch-size must be positive (got {opt.batch_size})")
    if opt.conf_thres > 0.001 and opt.task in ("train", "val", "test"):
        LOGGER.warning("WARNING: confidence threshold %g > 0.001 produces invalid results", opt.conf_thres)
    if opt.save_hybrid:
        LOGGER.warning("WARNING: --save-hybrid returns high mAP from hybrid labels, not from predictions alone")
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    if opt.task == "study":
        out = study(opt, save_dir)
    elif opt.task == "speed":
        opt.conf_thres, opt.iou_thres, opt.save_json = 0.25, 0.45, False
        out = [run(opt, w, save_dir=save_dir, plots=False) for w in opt.weights]
    else:
        weights = opt.weights if len(opt.weights) > 1 else opt.weights[0]
        out = run(opt, weights, save_dir=save_dir)
    LOGGER.info("Results saved to %s", save_dir)
    return out


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
