"""Segment images, videos, folders or streams: python segment/predict.py --weights yolov5s-seg.pt --source img.jpg."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python segment/predict.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.compat_flags import CompatFlag, add_compat_flags, check_compat_flags
from utils.errors import UserError, run_cli
from utils.flag_ranges import FRACTION, IMGSZ, NON_NEGATIVE, POSITIVE
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("segment.predict")
COMPAT = (
    CompatFlag(("--dnn",), "ONNX models run through ONNX Runtime, not OpenCV DNN (same results)"),
    CompatFlag(("--update",), "segment/predict.py never rewrites weights files"),
    CompatFlag(("--augment",), "official segmentation has no test-time augmentation either; plain inference runs"),
)


def parse_opt(argv=None) -> argparse.Namespace:
    """segment/predict.py flags, as YOLOv5's."""
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--weights", nargs="+", type=str, default=["yolov5s-seg.pt"], help="model path (.pt, .onnx, ...)")
    p.add_argument("--source", type=str, default=None, help="file/dir/glob/video/stream/0 (default: data/images)")
    p.add_argument("--data", type=str, default=None, help="(optional) dataset yaml, for class names")
    p.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=IMGSZ, default=[640], help="inference size h,w")
    p.add_argument("--conf-thres", type=FRACTION, default=0.25, help="confidence threshold")
    p.add_argument("--iou-thres", type=FRACTION, default=0.45, help="NMS IoU threshold")
    p.add_argument("--max-det", type=POSITIVE, default=1000, help="maximum detections per image")
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--view-img", action="store_true", help="show results")
    p.add_argument("--save-txt", action="store_true", help="save polygons to labels/*.txt")
    p.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    p.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    p.add_argument("--nosave", action="store_true", help="do not save images/videos")
    p.add_argument("--classes", nargs="+", type=NON_NEGATIVE, help="filter by class: --classes 0, or --classes 0 2 3")
    p.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    p.add_argument("--project", default=str(ROOT / "runs" / "predict-seg"), help="save results to project/name")
    p.add_argument("--name", default="exp", help="save results to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--line-thickness", default=3, type=POSITIVE, help="bounding box thickness (pixels)")
    p.add_argument("--hide-labels", action="store_true", help="hide labels")
    p.add_argument("--hide-conf", action="store_true", help="hide confidences")
    p.add_argument("--half", action="store_true", help="use FP16 half-precision inference (CUDA only)")
    p.add_argument("--vid-stride", type=POSITIVE, default=1, help="video frame-rate stride")
    p.add_argument("--retina-masks", action="store_true", help="masks at the original image's resolution")
    add_compat_flags(p, COMPAT, "YOLOv5 flags without effect here")
    opt = p.parse_args(argv)
    if len(opt.imgsz) > 2:
        p.error("--imgsz takes one or two integers (h w)")
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


@run_cli
def main(opt: argparse.Namespace) -> Path:
    """Segment opt.source; returns the run folder."""
    from utils.data.sources import load_source
    from utils.deploy.predict import NMSOptions, load_backend
    from utils.deploy.predict_io import SaveOptions
    from utils.img_size import check_img_size
    from utils.paths import increment_path
    from utils.segment.predict import run_segmentation
    from utils.torch_utils import select_device

    setup_logging()
    check_compat_flags(opt, COMPAT)
    if not opt.source:  # official default: data/images (no sample images are shipped)
        images = ROOT / "data" / "images"
        if not (images.is_dir() and any(images.iterdir())):
            raise UserError("--source is required (an image, folder, video, glob or stream)")
        opt.source = str(images)
    if len(opt.weights) > 1:
        raise UserError("segment/predict.py takes one --weights file (no ensembles of segmentation models)")
    device = select_device(opt.device)
    half = opt.half and device.type != "cpu"
    model = load_backend(opt.weights, device, data=opt.data, half=half)
    imgsz = check_img_size(opt.imgsz, stride=model.stride)
    if model.imgsz and list(model.imgsz) != imgsz:
        LOGGER.warning("WARNING: --imgsz %s differs from the exported size %s; using the latter", imgsz, model.imgsz)
        imgsz = list(model.imgsz)
    auto = model.rect  # PyTorch or a dynamic export: letterbox to the image's own stride-multiple shape
    dataset = load_source(opt.source, imgsz, model.stride, auto=auto, vid_stride=opt.vid_stride)
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    nms = NMSOptions(opt.conf_thres, opt.iou_thres, opt.classes, opt.agnostic_nms, opt.max_det)
    save = SaveOptions(save_img=not opt.nosave, save_txt=opt.save_txt, save_conf=opt.save_conf,
                       save_crop=opt.save_crop, view_img=opt.view_img, line_thickness=opt.line_thickness,
                       hide_labels=opt.hide_labels, hide_conf=opt.hide_conf)  # fmt: skip
    prof = run_segmentation(model, dataset, save_dir, nms, save, retina_masks=opt.retina_masks)
    pre, inf, post = prof.per_image_ms()
    LOGGER.info("Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape %s", pre, inf, post,
                (1, 3, *imgsz))  # fmt: skip
    n_txt = len(list((save_dir / "labels").glob("*.txt"))) if opt.save_txt else 0
    LOGGER.info("Results saved to %s%s", save_dir, f"\n{n_txt} labels saved to {save_dir / 'labels'}" * bool(n_txt))
    return save_dir


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
