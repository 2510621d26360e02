"""Validate a classifier on an ImageFolder split: python classify/val.py --weights best.pt --data path/to/data."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python classify/val.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.compat_flags import CompatFlag, add_compat_flags, check_compat_flags
from utils.errors import UserError, run_cli
from utils.flag_ranges import IMGSZ, NON_NEGATIVE, POSITIVE
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("classify.val")
COMPAT = (CompatFlag(("--dnn",), "ONNX models run through ONNX Runtime, not OpenCV DNN (same results)"),)


def parse_opt(argv=None) -> argparse.Namespace:
    """classify/val.py flags, as YOLOv5's."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", type=str, default=str(ROOT.parent / "datasets" / "mnist"), help="dataset folder")
    p.add_argument("--weights", nargs="+", type=str, default=["yolov5s-cls.pt"], help="model .pt/.onnx/... path")
    p.add_argument("--batch-size", type=POSITIVE, default=128, help="batch size")
    p.add_argument("--imgsz", "--img", "--img-size", type=IMGSZ, default=224, help="inference size (pixels)")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--workers", type=NON_NEGATIVE, default=8, help="max dataloader workers")
    p.add_argument("--verbose", nargs="?", const=True, default=True, help="per-class table and speeds")
    p.add_argument("--project", default=str(ROOT / "runs" / "val-cls"), help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    add_compat_flags(p, COMPAT, "YOLOv5 flags without effect here")
    return p.parse_args(argv)


def _truthy(v) -> bool:
    return v if isinstance(v, bool) else str(v).lower() not in ("false", "0", "no")


@run_cli
def main(opt: argparse.Namespace):
    """Validate opt.weights on the data's test/ (else val/) split; returns ClassifyMetrics."""
    return evaluate(opt)


def evaluate(opt: argparse.Namespace):
    """main() without the CLI wrapper: a UserError propagates (benchmarks.py turns it into a failed row)."""
    import json

    from utils.classify.dataset import create_classification_dataloader, split_dir
    from utils.classify.metrics import ClassifyEvaluator
    from utils.classify.predict import classifier_predictor
    from utils.deploy.backends import load_predictor
    from utils.paths import increment_path
    from utils.torch_utils import select_device
    from utils.val.loop import validate

    setup_logging()
    check_compat_flags(opt, COMPAT)
    if len(opt.weights) > 1:
        raise UserError("classify/val.py takes one --weights file (classifier ensembles are not supported)")
    if opt.batch_size < 1:
        raise UserError(f"--batch-size must be positive (got {opt.batch_size})")
    device = select_device(opt.device, opt.batch_size)
    model = classifier_predictor(load_predictor(opt.weights[0], device=device, fp16=opt.half and device.type != "cpu"))
    imgsz, bs = opt.imgsz, opt.batch_size
    if model.imgsz is not None and model.imgsz[0] != imgsz:
        LOGGER.warning("WARNING: --imgsz %s differs from the exported size %s; using the latter", imgsz, model.imgsz[0])
        imgsz = model.imgsz[0]
    if model.batch is not None and bs != model.batch:
        LOGGER.info("Forcing --batch-size %s for a model exported with that static batch", model.batch)
        bs = model.batch
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    loader, dataset = create_classification_dataloader(
        split_dir(opt.data, "val"), imgsz, bs, augment=False, workers=opt.workers, shuffle=False
    )
    names = model.names or dict(enumerate(dataset.classes))
    evaluator = ClassifyEvaluator(names, save_dir, per_class=_truthy(opt.verbose))
    metrics = validate(model, loader, evaluator, speed_shape=(1, imgsz))
    (save_dir / "metrics.json").write_text(json.dumps(metrics.to_dict(), indent=1))
    LOGGER.info("Results saved to %s", save_dir)
    return metrics


def run(**kwargs):
    """Python API as official: classify.val.run(weights=..., data=..., imgsz=224) -> ClassifyMetrics."""
    opt = parse_opt([])
    for k, v in kwargs.items():
        setattr(opt, k, [str(v)] if k == "weights" and not isinstance(v, (list, tuple)) else v)
    return main(opt)


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
