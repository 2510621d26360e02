"""Classify images, videos, webcams, streams: python classify/predict.py --weights best.pt --source im.jpg"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python classify/predict.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.compat_flags import CompatFlag, add_compat_flags, check_compat_flags
from utils.errors import UserError, run_cli
from utils.flag_ranges import IMGSZ, POSITIVE
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("classify.predict")
COMPAT = (
    CompatFlag(("--dnn",), "ONNX models run through ONNX Runtime, not OpenCV DNN (same results)"),
    CompatFlag(("--update",), "predict.py never rewrites weights files (YOLOv5 strips their optimizer state)"),
)


def parse_opt(argv=None) -> argparse.Namespace:
    """classify/predict.py flags, as YOLOv5's."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", nargs="+", type=str, default=["yolov5s-cls.pt"], help="model .pt/.onnx/... path")
    p.add_argument("--source", type=str, default=str(ROOT / "data" / "images"), help="file/dir/glob/video/0(webcam)")
    p.add_argument("--data", type=str, default=None, help="dataset yaml, only for class names of bare models")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=IMGSZ, default=[224], help="inference size h,w")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--view-img", action="store_true", help="show results (needs a display)")
    p.add_argument("--save-txt", action="store_true", help="save the top-5 'prob name' rows to labels/*.txt")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--project", default=str(ROOT / "runs" / "predict-cls"), help="save results to project/name")
    p.add_argument("--name", default="exp", help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    p.add_argument("--vid-stride", type=POSITIVE, default=1, help="video frame-rate stride")
    add_compat_flags(p, COMPAT, "YOLOv5 flags without effect here")
    opt = p.parse_args(argv)
    if len(opt.imgsz) > 2:
        p.error("--imgsz takes one or two integers (h w)")
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


@run_cli
def main(opt: argparse.Namespace) -> Path:
    """Classify every image / frame of opt.source; returns the run folder."""
    from utils.classify.predict import classifier_predictor
    from utils.classify.run import predict_source
    from utils.data.sources import load_source
    from utils.deploy.predict import load_backend
    from utils.deploy.predict_io import SaveOptions
    from utils.paths import increment_path
    from utils.torch_utils import select_device

    setup_logging()
    check_compat_flags(opt, COMPAT)
    if len(opt.weights) > 1:
        raise UserError("classify/predict.py takes one --weights file (classifier ensembles are not supported)")
    imgsz = opt.imgsz if isinstance(opt.imgsz, (list, tuple)) else [opt.imgsz] * 2
    if imgsz[0] != imgsz[-1]:
        raise UserError(f"--imgsz {imgsz}: classifiers take a square size (the centre crop), e.g. --imgsz 224")
    device = select_device(opt.device)
    half = opt.half and device.type != "cpu"
    model = classifier_predictor(load_backend(opt.weights, device, data=opt.data, half=half))
    size = int(imgsz[0])
    if model.imgsz is not None and model.imgsz[0] != size:
        LOGGER.warning("WARNING: --imgsz %s differs from the exported size %s; using the latter", size, model.imgsz[0])
        size = model.imgsz[0]
    dataset = load_source(opt.source, [size, size], model.stride, auto=False, vid_stride=opt.vid_stride)
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    save = SaveOptions(save_img=not opt.nosave and not str(opt.source).endswith(".txt"), save_txt=opt.save_txt,
                       view_img=opt.view_img)  # fmt: skip
    prof = predict_source(model, dataset, save_dir, size, save)
    pre, inf, post = prof.per_image_ms()
    LOGGER.info(f"Speed: {pre:.1f}ms pre-process, {inf:.1f}ms inference, {post:.1f}ms post-process per image "
                f"at shape {(1, 3, size, size)}")  # fmt: skip
    n_txt = len(list((save_dir / "labels").glob("*.txt"))) if opt.save_txt else 0
    LOGGER.info("Results saved to %s%s", save_dir, f"\n{n_txt} labels saved to {save_dir / 'labels'}" * bool(n_txt))
    return save_dir


def run(**kwargs) -> Path:
    """Python API as official: classify.predict.run(weights=..., source=...) -> the run folder."""
    opt = parse_opt([])
    for k, v in kwargs.items():
        setattr(opt, k, [str(v)] if k == "weights" and not isinstance(v, (list, tuple)) else v)
    return main(opt)


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
