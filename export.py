"""Export YOLOv5-FLA weights to every deployment format: python export.py --weights yolov5s.pt --include onnx tflite."""

from __future__ import annotations

import argparse

from utils.compat_flags import CompatFlag, add_compat_flags, check_compat_flags
from utils.errors import run_cli
from utils.flag_ranges import IMGSZ, POSITIVE, onnx_opset
from utils.log import setup_logging

TF_ONLY = "in-model NMS for TensorFlow formats is not written; detect.py and val.py run NMS"
TRT_ONLY = "TensorRT's builder log / timing cache are not set here"
COMPAT = (
    CompatFlag(("--keras",), "TensorFlow / Keras export is not available; use --include onnx", True),
    CompatFlag(("--optimize",), "TorchScript for PyTorch Mobile's lite interpreter is not written", True),
    CompatFlag(("--nms",), "NMS inside the exported model is not available; detect.py and val.py run NMS", True),
    CompatFlag(
        ("--agnostic-nms",), "NMS inside the exported model is not available; use detect.py --agnostic-nms", True
    ),
    CompatFlag(("--inplace",), "the Detect head gives the same output either way"),
    CompatFlag(("--per-tensor",), "TFLite int8 is quantised per channel"),
    CompatFlag(("--mlmodel",), "CoreML is written as an ML Program (.mlpackage), not the old .mlmodel"),
    CompatFlag(("--cache",), f"timing cache: {TRT_ONLY}", kwargs={"type": str, "default": ""}),
    CompatFlag(("--verbose",), f"verbose log: {TRT_ONLY}"),
    CompatFlag(("--topk-per-class",), f"in-model NMS setting: {TF_ONLY}", kwargs={"type": int, "default": 100}),
    CompatFlag(("--topk-all",), f"in-model NMS setting: {TF_ONLY}", kwargs={"type": int, "default": 100}),
    CompatFlag(("--iou-thres",), f"in-model NMS setting: {TF_ONLY}", kwargs={"type": float, "default": 0.45}),
    CompatFlag(("--conf-thres",), f"in-model NMS setting: {TF_ONLY}", kwargs={"type": float, "default": 0.25}),
)


def parse_opt(argv=None) -> argparse.Namespace:
    """Command-line options: YOLOv5's export.py flags; those of formats we do not build are accepted (see --help)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", nargs="+", type=str, default=["yolov5s.pt"], help="model .pt path(s)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=IMGSZ, default=[640], help="image (h, w)")
    parser.add_argument("--batch-size", type=POSITIVE, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 export (TorchScript/ONNX/OpenVINO need CUDA)")
    parser.add_argument("--int8", action="store_true", help="INT8 quantisation calibrated on --data images")
    parser.add_argument("--data", default=None, help="dataset yaml whose images calibrate --int8")
    parser.add_argument("--workspace", type=int, default=4, help="TensorRT: workspace size (GiB)")
    parser.add_argument("--dynamic", action="store_true", help="ONNX / TorchScript: dynamic batch, height and width")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify the graph with onnxslim")
    parser.add_argument("--opset", type=onnx_opset, default=17, help="ONNX: opset version")
    parser.add_argument(
        "--include",
        nargs="+",
        default=["torchscript"],
        help="formats: torchscript onnx openvino saved_model pb tflite coreml ncnn engine paddle (tfjs edgetpu)",
        metavar="FORMAT",
    )
    add_compat_flags(parser, COMPAT, "YOLOv5 flags of formats not exported here")
    return parser.parse_args(argv)


@run_cli
def main(opt: argparse.Namespace):
    """Export each of opt.weights in each requested format; returns {format: path} (a list of them for several)."""
    from utils.deploy.export import run_export

    setup_logging()
    check_compat_flags(opt, COMPAT)
    weights = opt.weights if isinstance(opt.weights, (list, tuple)) else [opt.weights]
    out = [
        run_export(
            weights=w,
            imgsz=opt.imgsz,
            batch_size=opt.batch_size,
            device=opt.device,
            half=opt.half,
            dynamic=opt.dynamic,
            simplify=opt.simplify,
            opset=opt.opset,
            include=opt.include,
            int8=opt.int8,
            data=opt.data,
            workspace=opt.workspace,
        )
        for w in weights
    ]
    return out[0] if len(out) == 1 else out


if __name__ == "__main__":
    main(parse_opt())
