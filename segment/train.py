"""Train a segmentation model: python segment/train.py --data coco128-seg.yaml --weights yolov5s-seg.pt --img 640.

The flags are train.py's (same meanings), plus --mask-ratio and --no-overlap; runs go to runs/train-seg/ (--evolve:
runs/evolve-seg/). The shared engine (utils/train/run.py) trains; utils/segment/task.py gives it the segmentation
parts, utils/segment/evolve.py the evolution's columns (docs/evolve.md).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as `python segment/train.py`: the repository root first (its train.py too)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from utils.errors import UserError, run_cli
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("segment.train")


def parse_opt(argv=None) -> argparse.Namespace:
    """segment/train.py flags, as YOLOv5's: train.py's, --mask-ratio and --no-overlap."""
    from train import build_parser

    p = build_parser(__doc__)
    p.set_defaults(project=str(ROOT / "runs" / "train-seg"))
    g = p.add_argument_group("segmentation")
    g.add_argument("--mask-ratio", type=int, default=4, help="downsample the ground-truth masks by this factor")
    g.add_argument("--no-overlap", action="store_true", help="one mask per instance (overlap masks train faster)")
    return p.parse_args(argv)


@run_cli
def main(opt: argparse.Namespace) -> Path:
    """Resolve the options into the frozen TrainConfig and train the segmentation Task (or evolve its
    hyperparameters under --evolve / --resume_evolve); returns the run (evolution) folder."""
    from train import check_unsupported
    from utils.segment.task import segment_task
    from utils.train.config import resolve_config
    from utils.train.run import train
    from utils.train.setup import get_dist_info

    setup_logging(rank=get_dist_info()[1])
    check_unsupported(opt)
    if opt.cache not in (None, "ram", "disk", "val"):
        raise UserError(f"--cache must be ram or disk, got {opt.cache!r}")
    evolving = bool(opt.evolve) or opt.resume_evolve is not None
    if (evolving or not opt.resume) and not opt.weights and not opt.cfg and opt.resume_evolve is None:
        LOGGER.info("no --weights or --cfg given: training yolov5s-seg.yaml from scratch")
        opt.cfg = "yolov5s-seg.yaml"
    if not opt.resume and opt.resume_evolve is None and not opt.data:  # the built-in shapes, with polygon labels
        from utils.data.synthetic import ensure_builtin_dataset

        opt.data = str(ensure_builtin_dataset(segments=True))
        LOGGER.info("no --data given: training on the built-in shapes dataset with polygon labels (%s)", opt.data)
    if evolving:
        from utils.segment.evolve import segment_evolve_task
        from utils.train.evolve import evolve

        if get_dist_info()[1] != -1:
            raise UserError("--evolve is not compatible with DDP training: run it as one process (or on --ray)")
        return evolve(opt, task=segment_evolve_task())
    task = segment_task(mask_ratio=opt.mask_ratio, overlap=not opt.no_overlap)
    return train(resolve_config(opt), task=task)


if __name__ == "__main__":
    main(parse_opt())
