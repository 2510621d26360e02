"""Train a classifier on an ImageFolder dataset: python classify/train.py --model yolov5n.pt --data path --img 224.

--model: a classifier or detector .pt (a detector is cut at --cutoff and given a Classify head), a model yaml, or a
torchvision name (resnet18, ...; random weights, or --pretrained path/to/weights.pth: nothing is downloaded).
Multi-GPU: torchrun --nproc_per_node 2 classify/train.py ... --device 0,1
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python classify/train.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.errors import run_cli
from utils.flag_ranges import FRACTION, IMGSZ, NON_NEGATIVE, NON_NEGATIVE_FLOAT
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("classify.train")


def parse_opt(argv=None) -> argparse.Namespace:
    """classify/train.py flags, as YOLOv5's (plus --resume, --cos-lr, --noplots)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=str, default="yolov5s-cls.pt", help="initial weights path, yaml or torchvision name")
    p.add_argument("--data", type=str, default=str(ROOT.parent / "datasets" / "imagenette160"), help="dataset folder")
    p.add_argument("--epochs", type=int, default=10, help="total training epochs")
    p.add_argument("--batch-size", type=int, default=64, help="total batch size for all GPUs")
    p.add_argument("--imgsz", "--img", "--img-size", type=IMGSZ, default=224, help="train, val image size (pixels)")
    p.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    p.add_argument("--cache", type=str, nargs="?", const="ram", help='--cache images in "ram" (default) or "disk"')
    p.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    p.add_argument("--workers", type=NON_NEGATIVE, default=8, help="max dataloader workers (per RANK in DDP mode)")
    p.add_argument("--project", default=str(ROOT / "runs" / "train-cls"), help="save to project/name")
    p.add_argument("--name", default="exp", help="save to project/name")
    p.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    p.add_argument("--pretrained", nargs="?", const=True, default=True, help="--pretrained False, or a weights file")
    p.add_argument("--optimizer", choices=["SGD", "Adam", "AdamW", "RMSProp"], default="Adam", help="optimizer")
    p.add_argument("--lr0", type=NON_NEGATIVE_FLOAT, default=0.001, help="initial learning rate")
    p.add_argument("--decay", type=NON_NEGATIVE_FLOAT, default=5e-5, help="weight decay")
    p.add_argument("--label-smoothing", type=FRACTION, default=0.1, help="label smoothing epsilon")
    p.add_argument("--cutoff", type=int, default=None, help="layer index for the Classify head (default: SPPF's)")
    p.add_argument("--dropout", type=float, default=None, help="dropout (fraction)")
    p.add_argument("--verbose", action="store_true", help="log the model")
    p.add_argument("--seed", type=int, default=0, help="global training seed")
    p.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="set by torchrun; do not change")
    p.add_argument("--resume", nargs="?", const=True, default=False, help="resume the most recent run (or a last.pt)")
    p.add_argument("--cos-lr", action="store_true", help="cosine LR schedule (official: linear)")
    p.add_argument("--noplots", action="store_true", help="save no plot files")
    return p.parse_args(argv)


@run_cli
def main(opt: argparse.Namespace) -> Path:
    """Train; returns the run folder."""
    from utils.classify.config import resolve_classify_config
    from utils.classify.task import train_classifier

    setup_logging(rank=int(os.getenv("RANK", -1)))
    config = resolve_classify_config(opt)
    save_dir = train_classifier(config)
    best = save_dir / "weights" / "best.pt"
    if config.main:
        LOGGER.info(
            f"\nPredict:         python classify/predict.py --weights {best} --source im.jpg"
            f"\nValidate:        python classify/val.py --weights {best} --data {config.data_file}"
            f"\nExport:          python export.py --weights {best} --include onnx"
        )
    return save_dir


def run(**kwargs) -> Path:
    """Python API as official: classify.train.run(model='yolov5n.pt', data='path', epochs=1) -> the run folder."""
    opt = parse_opt([])
    for k, v in kwargs.items():
        setattr(opt, k, v)
    return main(opt)


if __name__ == "__main__":
    main(parse_opt(sys.argv[1:]))
