"""Run a YOLOv5(-FLA) model on images, folders, globs, videos, webcams, streams: python detect.py --source a.jpg."""

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

LOGGER = logging.getLogger("detect")
COMPAT = (
    CompatFlag(("--dnn",), "ONNX models run through ONNX Runtime, not OpenCV DNN (same detections)"),
    CompatFlag(("--update",), "detect.py never rewrites weights files (YOLOv5 strips their optimizer state)"),
)


def parse_opt(argv=None) -> argparse.Namespace:
    """detect.py flags, as YOLOv5's."""
    p = argparse.ArgumentParser(description=__doc__)
    g = p.add_argument_group("model and input")
    g.add_argument("--weights", nargs="+", type=str, default=["yolov5s.pt"], help="model path(s); several = ensemble")
    g.add_argument(
        "--source",
        type=str,
        default=None,
        help="file, folder, glob, .txt list, video, webcam index, URL or .streams file "
        "(default: the built-in dataset's val images)",
    )
    g.add_argument("--data", type=str, default=None, help="dataset yaml, only for class names of bare models")
    g.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=IMGSZ, default=[640], help="inference size h,w")
    g.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    g.add_argument("--half", action="store_true", help="FP16 half-precision inference (CUDA only)")
    g.add_argument("--vid-stride", type=POSITIVE, default=1, help="video frame-rate stride")
    g = p.add_argument_group("post-processing")
    g.add_argument("--conf-thres", type=FRACTION, default=0.25, help="confidence threshold")
    g.add_argument("--iou-thres", type=FRACTION, default=0.45, help="NMS IoU threshold")
    g.add_argument("--max-det", type=POSITIVE, default=1000, help="maximum detections per image")
    g.add_argument("--classes", nargs="+", type=NON_NEGATIVE, help="filter by class: --classes 0, or --classes 0 2 3")
    g.add_argument("--agnostic-nms", action="store_true", help="class-agnostic NMS")
    g.add_argument("--augment", action="store_true", help="augmented inference (flips and scales)")
    g.add_argument(
        "--visualize",
        action="store_true",
        help="save feature maps: per image a folder <run>/<image stem>/ with stage{i}_{Module}_features.png (first 32 "
        "channels of each layer's output, grayscale, 8 per row; Detect excluded) and the same channels as .npy; "
        "videos and streams: first frame only (<stem>_<frame>/); .pt weights only",
    )
    g.add_argument(
        "--heatmap",
        nargs="?",
        type=int,
        const=-1,
        default=None,
        metavar="LAYER",
        help="save per image <run>/heatmaps/<stem>_cam.png (EigenCAM of layer LAYER, default: the last FLA layer, "
        "else the last backbone layer) and, with FLA, <stem>_attention.png (what the most confident box's centre "
        "attends to); videos: first frame only; .pt weights only; needs the optional grad-cam package",
    )
    g = p.add_argument_group("output")
    g.add_argument("--view-img", action="store_true", help="show results (needs a display)")
    g.add_argument("--save-txt", action="store_true", help="save results to *.txt")
    g.add_argument(
        "--save-format",
        type=int,
        default=0,
        choices=(0, 1),
        help="--save-txt boxes: 0 = YOLO (cls xc yc w h), 1 = Pascal-VOC corners (cls x1 y1 x2 y2), both normalised",
    )
    g.add_argument("--save-csv", action="store_true", help="save results in CSV format")
    g.add_argument("--save-conf", action="store_true", help="save confidences in --save-txt labels")
    g.add_argument("--save-crop", action="store_true", help="save cropped prediction boxes")
    g.add_argument("--nosave", action="store_true", help="do not save images/videos")
    g.add_argument("--project", default=str(ROOT / "runs" / "detect"), help="save results to project/name")
    g.add_argument("--name", default="exp", help="save results to project/name")
    g.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    g.add_argument("--line-thickness", default=3, type=POSITIVE, help="bounding box thickness (pixels)")
    g.add_argument("--hide-labels", action="store_true", help="hide labels")
    g.add_argument("--hide-conf", action="store_true", help="hide confidences")
    add_compat_flags(p, COMPAT, "YOLOv5 flags without effect here")
    opt = p.parse_args(argv)
    if len(opt.imgsz) > 2:
        p.error("--imgsz takes one or two integers (h w)")
    opt.imgsz = opt.imgsz * 2 if len(opt.imgsz) == 1 else opt.imgsz
    return opt


def default_source() -> str:
    """data/images as in YOLOv5 when it holds files (no sample images are shipped), else the built-in val images."""
    images = ROOT / "data" / "images"
    if images.is_dir() and any(images.iterdir()):
        return str(images)
    try:
        from utils.data.config import check_dataset
    except ImportError as e:
        raise UserError("--source is required (the built-in dataset is not available)") from e
    return check_dataset(None)["val"][0]


@run_cli
def main(opt: argparse.Namespace) -> Path:
    """Detect on opt.source; returns the run folder."""
    from utils.data.sources import load_source
    from utils.deploy.predict import NMSOptions, load_backend, run_detection
    from utils.deploy.predict_io import SaveOptions
    from utils.img_size import check_img_size
    from utils.paths import increment_path
    from utils.torch_utils import select_device

    setup_logging()
    check_compat_flags(opt, COMPAT)
    source = opt.source or default_source()
    device = select_device(opt.device)
    half = opt.half and device.type != "cpu"
    if opt.half and not half:
        LOGGER.warning("WARNING: --half needs CUDA; running in FP32 on CPU")
    model = load_backend(opt.weights, device, data=opt.data, half=half)
    imgsz = check_img_size(opt.imgsz, stride=model.stride)
    if model.imgsz and list(model.imgsz) != imgsz:  # a static export takes one size only
        LOGGER.warning("WARNING: --imgsz %s differs from the exported size %s; using the latter", imgsz, model.imgsz)
        imgsz = list(model.imgsz)
    dataset = load_source(source, imgsz, model.stride, auto=model.rect, vid_stride=opt.vid_stride)
    save_dir = increment_path(Path(opt.project) / opt.name, exist_ok=opt.exist_ok, mkdir=True)
    model.warmup(imgsz=(1 if model.pt else dataset.bs, 3, *imgsz))
    nms = NMSOptions(opt.conf_thres, opt.iou_thres, opt.classes, opt.agnostic_nms, opt.max_det)
    save = SaveOptions(
        save_img=not opt.nosave,
        save_txt=opt.save_txt,
        save_csv=opt.save_csv,
        save_conf=opt.save_conf,
        save_format=opt.save_format,
        save_crop=opt.save_crop,
        view_img=opt.view_img,
        line_thickness=opt.line_thickness,
        hide_labels=opt.hide_labels,
        hide_conf=opt.hide_conf,
    )
    prof = run_detection(
        model,
        dataset,
        save_dir,
        nms,
        save,
        augment=opt.augment,
        visualize=opt.visualize,
        heatmap=opt.heatmap,
    )
    pre, inf, post = prof.per_image_ms()
    LOGGER.info(
        "Speed: %.1fms pre-process, %.1fms inference, %.1fms NMS per image at shape %s", pre, inf, post, (1, 3, *imgsz)
    )
    n_txt = len(list((save_dir / "labels").glob("*.txt"))) if opt.save_txt else 0
    LOGGER.info("Results saved to %s%s", save_dir, f"\n{n_txt} labels saved to {save_dir / 'labels'}" * bool(n_txt))
    return save_dir


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
