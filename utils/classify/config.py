"""classify/train.py's options resolved once into the engine's frozen TrainConfig (utils/train/config.py).

Official classify/train.py has its own flags (--model, --data as a folder, --lr0, --decay, --cutoff, --dropout,
--pretrained); the ones the TrainConfig has no field for travel in its hyp, which the run saves as hyp.yaml and a
--resume reads back. Official's schedule is kept: lr linear (or --cos-lr cosine) to lrf = 0.01, no warmup, no early
stop; momentum 0.9 (Adam's beta1).
"""

from __future__ import annotations

from argparse import Namespace
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, Mapping

from utils.classify.dataset import scan_folder, split_dir
from utils.errors import UserError
from utils.paths import increment_path
from utils.train.config import TrainConfig, resume_options
from utils.train.setup import check_single_process_device, get_dist_info, start_distributed
from utils.yaml_io import read_yaml_mapping

FIXED_HYP = {"lrf": 0.01, "momentum": 0.9, "warmup_epochs": 0.0, "warmup_momentum": 0.9, "warmup_bias_lr": 0.0}


def classify_hyp(o: Mapping[str, Any]) -> Dict[str, Any]:
    """The hyperparameters of a classification run, from its options (or its saved hyp.yaml on --resume)."""
    if o.get("resume") and o.get("hyp") and Path(str(o["hyp"])).is_file():
        return dict(read_yaml_mapping(Path(str(o["hyp"])), "--hyp", "lr0"))
    return {
        "lr0": float(o["lr0"]),
        "weight_decay": float(o["decay"]),
        "label_smoothing": float(o["label_smoothing"]),
        **FIXED_HYP,
        "model": str(o["model"]),
        "cutoff": o.get("cutoff"),
        "dropout": o.get("dropout"),
        "pretrained": o["pretrained"] if isinstance(o["pretrained"], bool) else str(o["pretrained"]),
    }


def _data(folder: str) -> Dict[str, Any]:
    """The dataset record of an ImageFolder root: its split folders and the class names of train/."""
    train, val = split_dir(folder, "train"), split_dir(folder, "val")
    classes, _ = scan_folder(train, check=False, warn=False)
    return {"path": str(folder), "train": str(train), "val": str(val), "nc": len(classes), "names": classes}


def resolve_classify_config(opt: Namespace | Mapping[str, Any]) -> TrainConfig:
    """classify/train.py options -> TrainConfig (hyp carries the classification options, see classify_hyp)."""
    o = dict(vars(opt)) if isinstance(opt, Namespace) else dict(opt)
    resume_path = ""
    if o.get("resume"):
        o, resume_path = resume_options(o)
        o["model"] = o.get("weights") or o.get("model", "")  # the run's own (saved as weights), not --model's default
    local_rank, rank, world_size = get_dist_info()
    if o["epochs"] <= 0 or o["batch_size"] <= 0:
        raise UserError(f"--epochs and --batch-size must be positive (got {o['epochs']}, {o['batch_size']})")
    if local_rank == -1:
        check_single_process_device(o["device"])
    elif o["batch_size"] % world_size:
        raise UserError(f"--batch-size {o['batch_size']} must be a multiple of the {world_size} DDP processes")
    if o.get("optimizer") not in ("SGD", "Adam", "AdamW", "RMSProp"):
        raise UserError(f"--optimizer {o.get('optimizer')} is not supported; choose SGD, Adam, AdamW or RMSProp")
    hyp = classify_hyp(o)
    if resume_path and o.get("save_dir"):
        save_dir = Path(o["save_dir"])
    else:
        save_dir = increment_path(Path(o["project"]) / o["name"], exist_ok=o["exist_ok"])
    if local_rank != -1:
        start_distributed(o["device"], local_rank, world_size)
    data = _data(str(o["data"]))
    return TrainConfig(
        weights=str(o.get("model") or hyp.get("model", "")),
        data=MappingProxyType(data),
        hyp=MappingProxyType(hyp),
        epochs=int(o["epochs"]),
        batch_size=int(o["batch_size"]),
        imgsz=int(o["imgsz"]),
        optimizer=o["optimizer"],
        cos_lr=bool(o.get("cos_lr")),
        label_smoothing=float(hyp["label_smoothing"]),
        patience=0,
        seed=int(o["seed"]),
        resume=bool(resume_path),
        cache=o.get("cache"),
        device=str(o["device"]),
        workers=int(o["workers"]),
        project=str(o["project"]),
        name=str(o["name"]),
        exist_ok=bool(o["exist_ok"]),
        nosave=bool(o.get("nosave")),
        noplots=bool(o.get("noplots")),
        hyp_file=str(save_dir / "hyp.yaml"),
        data_file=str(o["data"]),
        save_dir=str(save_dir),
        resume_path=resume_path,
        nc=data["nc"],
        names=tuple(data["names"]),
        local_rank=local_rank,
        rank=rank,
        world_size=world_size,
    )
