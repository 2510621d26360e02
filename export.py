"""Export YOLOv5-FLA weights to TorchScript, ONNX, OpenVINO: python export.py --weights yolov5s.pt --include onnx."""

from __future__ import annotations

import argparse

from utils.errors import run_cli
from utils.log import setup_logging


def parse_opt(argv=None) -> argparse.Namespace:
    """Command-line options (YOLOv5's export.py flags for the formats we support)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--weights", type=str, default="yolov5s.pt", help="model .pt path (ours or official)")
    parser.add_argument("--imgsz", "--img", "--img-size", nargs="+", type=int, default=[640], help="image (h, w)")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size")
    parser.add_argument("--device", default="cpu", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    parser.add_argument("--half", action="store_true", help="FP16 half-precision export (CUDA only)")
    parser.add_argument("--dynamic", action="store_true", help="ONNX: dynamic batch, height and width axes")
    parser.add_argument("--simplify", action="store_true", help="ONNX: simplify the graph with onnxslim")
    parser.add_argument("--opset", type=int, default=17, help="ONNX: opset version")
    parser.add_argument(
        "--include",
        nargs="+",
        default=["torchscript"],
        help="formats to export: torchscript, onnx, openvino",
        metavar="FORMAT",
    )
    return parser.parse_args(argv)


@run_cli
def main(opt: argparse.Namespace) -> dict:
    """Export opt.weights in each requested format; returns {format: path}."""
    from utils.deploy.export import run_export

    setup_logging()
    return run_export(
        weights=opt.weights,
        imgsz=opt.imgsz,
        batch_size=opt.batch_size,
        device=opt.device,
        half=opt.half,
        dynamic=opt.dynamic,
        simplify=opt.simplify,
        opset=opt.opset,
        include=opt.include,
    )


if __name__ == "__main__":
    main(parse_opt())
