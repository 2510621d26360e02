"""The frozen training config: train.py's options resolved once (resume merge, hyp, run folder, dataset, DDP split).

`resolve_config(opt)` is the only place that reads argparse options, a --resume checkpoint's saved options or the
--hyp file. Everything after it (the run loop, `train_one_epoch`, the task parts) reads a `TrainConfig` and never
changes it; what depends on the built model (the image size rounded to its stride, the loss gains rescaled for
its levels) is derived from it where the model is built, not written back.
"""

from __future__ import annotations

import dataclasses
import logging
from argparse import Namespace
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Dict, Mapping, Tuple

from utils.errors import UserError
from utils.paths import ROOT, increment_path

LOGGER = logging.getLogger(__name__)


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(d))


@dataclass(frozen=True)
class TrainConfig:
    """Every train.py option (same names and defaults), plus what resolve_config derived from them.

    Derived: hyp (the hyperparameters as a read-only mapping, not yet rescaled for the model), hyp_file (where they
    came from, as --hyp gave it), save_dir, resume_path (the checkpoint a --resume continues, else ''), data (the
    dataset dict), nc and names (after --single-cls), the DDP split (local_rank, rank, world_size) and amp (train
    with autocast and a GradScaler when the device is CUDA; False forces fp32).
    """

    weights: str = ""
    cfg: str = ""
    data: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    hyp: Mapping[str, Any] = field(default_factory=lambda: _frozen({}))
    single_cls: bool = False
    freeze: Tuple[int, ...] = (0,)
    epochs: int = 100
    batch_size: int = 16
    imgsz: int = 640
    rect: bool = False
    multi_scale: bool = False
    image_weights: bool = False
    quad: bool = False
    optimizer: str = "SGD"
    cos_lr: bool = False
    label_smoothing: float = 0.0
    patience: int = 100
    seed: int = 0
    noautoanchor: bool = False
    resume: bool = False
    cache: str | None = None
    device: str = ""
    workers: int = 8
    sync_bn: bool = False
    project: str = str(ROOT / "runs/train")
    name: str = "exp"
    exist_ok: bool = False
    nosave: bool = False
    noval: bool = False
    noplots: bool = False
    save_period: int = -1
    evolve: int | None = None
    # derived by resolve_config
    hyp_file: str = ""
    data_file: str | None = None
    save_dir: str = ""
    resume_path: str = ""
    nc: int = 0
    names: Tuple[str, ...] = ()
    local_rank: int = -1
    rank: int = -1
    world_size: int = 1
    amp: bool = True

    @property
    def main(self) -> bool:
        """True on the process that logs, validates and saves (single process, or DDP rank 0)."""
        return self.rank in (-1, 0)

    @property
    def batch_per_process(self) -> int:
        return self.batch_size // max(self.world_size, 1) if self.rank != -1 else self.batch_size

    @property
    def plots(self) -> bool:
        return not self.evolve and not self.noplots and self.main

    def options(self) -> Dict[str, Any]:
        """The options as train.py names them (opt.yaml, the checkpoint's 'opt'): --hyp is the file, --data the yaml."""
        skip = {"hyp", "data", "hyp_file", "data_file", "nc", "names", "rank", "world_size", "amp"}
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in skip}
        out["freeze"] = list(self.freeze)
        return {**out, "hyp": self.hyp_file, "data": self.data_file}


DERIVED = ("hyp_file", "data_file", "save_dir", "resume_path", "nc", "names", "local_rank", "rank", "world_size", "amp")
OPTION_NAMES = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in DERIVED)


def resume_options(opt: Dict[str, Any]) -> Tuple[Dict[str, Any], str]:
    """--resume: the interrupted run's saved options (only --device may change) -> (options, checkpoint path)."""
    from utils.checkpoint import load_checkpoint
    from utils.train.setup import find_last_checkpoint

    resume = opt["resume"]
    path = Path(resume) if isinstance(resume, str) and resume else find_last_checkpoint(opt["project"])
    saved = dict(load_checkpoint(path).get("opt") or {})
    if not saved:
        raise UserError(f"--resume {path}: the checkpoint has no saved options")
    merged = {**opt, **saved, "device": opt["device"] or saved.get("device", "")}
    save_dir = path.resolve().parent.parent
    hyp_file = save_dir / "hyp.yaml"  # the run's own (unscaled) hyperparameters
    merged.update(resume=True, exist_ok=True, save_dir=str(save_dir))
    if hyp_file.is_file():
        merged["hyp"] = str(hyp_file)
    return merged, str(path)


def _check(o: Dict[str, Any], local_rank: int, world_size: int) -> None:
    """Option checks that need no set-up: positive sizes, the DDP batch split, several GPUs without torchrun."""
    from utils.train.setup import check_single_process_device

    if o["epochs"] <= 0 or o["batch_size"] <= 0:
        raise UserError(f"--epochs and --batch-size must be positive (got {o['epochs']}, {o['batch_size']})")
    if local_rank == -1:
        check_single_process_device(o["device"])
    elif o["batch_size"] % world_size:
        raise UserError(f"--batch-size {o['batch_size']} must be a multiple of the {world_size} DDP processes")


def resolve_config(opt: Namespace | Mapping[str, Any], hyp: Mapping[str, Any] | None = None) -> TrainConfig:
    """train.py options (a Namespace or dict) -> TrainConfig; hyp (a dict) replaces --hyp when given.

    A --resume takes the interrupted run's options, folder and hyp.yaml. The run folder is named here
    (project/name, incremented unless --exist-ok) but created by the run. The dataset yaml is read here (rank 0
    first under DDP, so that it alone builds caches or the built-in dataset).
    """
    from utils.data.config import check_dataset
    from utils.train.setup import get_dist_info, load_hyp, rank_zero_first, start_distributed

    o = dict(vars(opt)) if isinstance(opt, Namespace) else dict(opt)
    resume_path = ""
    if o.get("resume"):
        o, resume_path = resume_options(o)
    local_rank, rank, world_size = get_dist_info()
    _check(o, local_rank, world_size)
    hyp_dict = load_hyp(dict(hyp) if hyp is not None else o["hyp"])
    if o.get("label_smoothing"):
        hyp_dict["label_smoothing"] = o["label_smoothing"]
    if o.get("save_dir") and resume_path:
        save_dir = Path(o["save_dir"])
    else:
        save_dir = increment_path(Path(o["project"]) / o["name"], exist_ok=o["exist_ok"])
    if local_rank != -1:
        start_distributed(o["device"], local_rank, world_size)  # the barrier below needs the process group
    with rank_zero_first(local_rank):
        data = check_dataset(o.get("data") or None)
    single = bool(o.get("single_cls"))
    names = ["item"] if single and len(data["names"]) != 1 else [str(n) for n in data["names"]]
    known = {k: v for k, v in o.items() if k in OPTION_NAMES and k not in ("hyp", "data")}
    known["freeze"] = tuple(o.get("freeze") or (0,))
    return TrainConfig(
        **known,
        hyp=_frozen(hyp_dict),
        hyp_file=str(o["hyp"]),
        data=_frozen(data),
        data_file=o.get("data"),
        save_dir=str(save_dir),
        resume_path=resume_path,
        nc=1 if single else int(data["nc"]),
        names=tuple(names),
        local_rank=local_rank,
        rank=rank,
        world_size=world_size,
    )
