"""Train a YOLOv5(-FLA) detector: python train.py --data coco128.yaml --cfg yolov5s-fla.yaml --weights yolov5s.pt."""

from __future__ import annotations

import argparse
import logging

from utils.errors import UserError, run_cli
from utils.flag_ranges import FRACTION, IMGSZ, NON_NEGATIVE, POSITIVE
from utils.log import setup_logging
from utils.paths import ROOT

LOGGER = logging.getLogger("train")


def parse_opt(argv=None) -> argparse.Namespace:
    """train.py flags, as YOLOv5's."""
    return build_parser().parse_args(argv)


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The parser of train.py's flags (segment/train.py adds its own to it)."""
    p = argparse.ArgumentParser(description=description)
    g = p.add_argument_group("model and data")
    g.add_argument("--weights", type=str, default="", help="initial weights: an official YOLOv5 .pt or ours")
    g.add_argument("--cfg", type=str, default="", help="model yaml (path, or a bare name from models/)")
    g.add_argument("--data", type=str, default=None, help="dataset yaml (default: the built-in dataset)")
    g.add_argument("--hyp", type=str, default=str(ROOT / "data/hyps/hyp.scratch-low.yaml"), help="hyperparameters")
    g.add_argument("--single-cls", action="store_true", help="train multi-class data as single-class")
    g.add_argument(
        "--freeze", nargs="+", type=NON_NEGATIVE, default=[0], help="freeze layers: backbone=10, first3=0 1 2"
    )
    g = p.add_argument_group("schedule")
    g.add_argument("--epochs", type=int, default=100, help="total training epochs")
    g.add_argument("--batch-size", type=int, default=16, help="total batch size for all GPUs")
    g.add_argument("--imgsz", "--img", "--img-size", type=IMGSZ, default=640, help="train, val image size (pixels)")
    g.add_argument("--rect", action="store_true", help="rectangular training")
    g.add_argument("--multi-scale", action="store_true", help="vary img-size +/- 50%%")
    g.add_argument("--image-weights", action="store_true", help="use weighted image selection for training")
    g.add_argument("--quad", action="store_true", help="quad dataloader")
    g.add_argument("--optimizer", type=str, choices=["SGD", "Adam", "AdamW"], default="SGD", help="optimizer")
    g.add_argument("--cos-lr", action="store_true", help="cosine LR scheduler")
    g.add_argument("--label-smoothing", type=FRACTION, default=0.0, help="label smoothing epsilon")
    g.add_argument(
        "--patience", type=NON_NEGATIVE, default=100, help="EarlyStopping patience (epochs without improvement)"
    )
    g.add_argument("--seed", type=int, default=0, help="global training seed")
    g.add_argument("--noautoanchor", action="store_true", help="disable AutoAnchor")
    g = p.add_argument_group("hyperparameter evolution (docs/evolve.md)")
    g.add_argument("--evolve", type=POSITIVE, nargs="?", const=300, help="evolve hyperparameters for x trials")
    g.add_argument("--evolve_population", type=str, default=None, help="evolve: folder of hyp yamls, the first trials")
    g.add_argument(
        "--resume_evolve", type=str, nargs="?", const="", default=None, help="evolve: resume this folder (or newest)"
    )
    g.add_argument("--bucket", type=str, default=None, help="evolve: gsutil bucket (ignored: nothing is uploaded)")
    g.add_argument("--ray", nargs="?", const="local", default=None, help="evolve on Ray: local, auto or an address")
    g.add_argument("--ray-cpus", type=int, default=None, help="--ray: CPUs per trial (default: 1 GPU, else 1 CPU)")
    g = p.add_argument_group("runtime")
    g.add_argument("--resume", nargs="?", const=True, default=False, help="resume most recent training (or path)")
    g.add_argument("--cache", type=str, nargs="?", const="ram", help="image --cache ram/disk")
    g.add_argument("--device", default="", help="cuda device, i.e. 0 or 0,1,2,3 or cpu")
    g.add_argument("--workers", type=NON_NEGATIVE, default=8, help="max dataloader workers (per RANK in DDP mode)")
    g.add_argument("--sync-bn", action="store_true", help="use SyncBatchNorm, only available in DDP mode")
    g.add_argument("--local_rank", "--local-rank", type=int, default=-1, help="set by torchrun; do not change")
    g = p.add_argument_group("output")
    g.add_argument("--project", default=str(ROOT / "runs/train"), help="save to project/name")
    g.add_argument("--name", default="exp", help="save to project/name")
    g.add_argument("--exist-ok", action="store_true", help="existing project/name ok, do not increment")
    g.add_argument("--nosave", action="store_true", help="only save final checkpoint")
    g.add_argument("--noval", action="store_true", help="only validate final epoch")
    g.add_argument("--noplots", action="store_true", help="save no plot files")
    g.add_argument("--save-period", type=int, default=-1, help="save checkpoint every x epochs (disabled if < 1)")
    g = p.add_argument_group("official flags without an effect here (a warning, or exit 2 where it would matter)")
    g.add_argument("--entity", default=None, help="W&B / ClearML entity (no logger integrations: ignored)")
    g.add_argument("--upload_dataset", nargs="?", const=True, default=None, help="logger dataset upload (ignored)")
    g.add_argument("--bbox_interval", type=int, default=None, help="logger box-image interval (ignored)")
    return p


IGNORED = {  # official flag -> why ignoring it changes nothing the run relies on
    "entity": "there are no W&B / ClearML loggers; results go to results.csv and TensorBoard",
    "upload_dataset": "there are no W&B / ClearML loggers",
    "bbox_interval": "there are no W&B / ClearML loggers",
}


def check_unsupported(opt: argparse.Namespace) -> None:
    """Official flags we do not implement: one warning line each, or a UserError (exit 2) where the run would differ."""
    evolving = bool(opt.evolve) or opt.resume_evolve is not None
    if opt.ray is not None and not evolving:
        raise UserError("--ray runs hyperparameter evolution on Ray: add --evolve (one training needs no cluster)")
    if opt.bucket:
        LOGGER.warning(
            "WARNING: --bucket is ignored: YOLOv5-FLA never downloads or uploads; evolve.csv stays in the run "
            "folder (share a cluster with --ray, or copy the folder and --resume_evolve it)"
        )
    if opt.evolve_population and not evolving:
        LOGGER.warning("WARNING: --evolve_population is ignored: it only matters with --evolve")
    for name, why in IGNORED.items():
        if getattr(opt, name, None) not in (None, ""):
            LOGGER.warning(f"WARNING: --{name} is not supported by YOLOv5-FLA and is ignored ({why})")


@run_cli
def main(opt: argparse.Namespace) -> None:
    """Check the options that need no set-up, resolve them into the frozen TrainConfig, and train (detection)."""
    from utils.train.config import resolve_config
    from utils.train.run import train
    from utils.train.setup import get_dist_info

    setup_logging(rank=get_dist_info()[1])
    check_unsupported(opt)
    if opt.cache not in (None, "ram", "disk", "val"):
        raise UserError(f"--cache must be ram or disk, got {opt.cache!r}")
    evolving = bool(opt.evolve) or opt.resume_evolve is not None
    if (evolving or not opt.resume) and not opt.weights and not opt.cfg and opt.resume_evolve is None:
        LOGGER.info("no --weights or --cfg given: training yolov5s.yaml from scratch")
        opt.cfg = "yolov5s.yaml"
    if evolving:
        from utils.train.evolve import evolve

        if get_dist_info()[1] != -1:
            raise UserError("--evolve is not compatible with DDP training: run it as one process (or on --ray)")
        evolve(opt)
        return
    train(resolve_config(opt))


if __name__ == "__main__":
    main(parse_opt())
