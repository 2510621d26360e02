"""Training set-up helpers: hyperparameters, model from --weights/--cfg, freezing, --resume lookup, DDP context."""

from __future__ import annotations

import contextlib
import logging
import os
from datetime import timedelta
from pathlib import Path
from typing import Any, Dict, Iterator, List, Tuple, Union

import torch
import torch.distributed as dist
import torch.nn as nn

from utils.errors import UserError
from utils.paths import DATA_DIR, ROOT, find_file
from utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)

REQUIRED_HYP = ("lr0", "lrf", "momentum", "weight_decay", "warmup_epochs", "warmup_momentum", "warmup_bias_lr",
                "box", "cls", "cls_pw", "obj", "obj_pw", "anchor_t")  # fmt: skip
HYP_DEFAULTS = {"fl_gamma": 0.0, "label_smoothing": 0.0}
DDP_TIMEOUT = timedelta(hours=3)  # rank 0 may scan and cache a large dataset while the others wait


def load_hyp(hyp: Union[str, Path, Dict[str, Any]]) -> Dict[str, Any]:
    """Hyperparameters from a yaml path (or bare name in data/hyps) or a dict; UserError when keys are missing."""
    if not isinstance(hyp, dict):
        hyp = read_yaml_mapping(find_file(hyp, "--hyp", (DATA_DIR / "hyps",)), "--hyp", "hyperparameters")
    missing = [k for k in REQUIRED_HYP if k not in hyp]
    if missing:
        raise UserError(f"--hyp lacks {', '.join(missing)}")
    return {**HYP_DEFAULTS, **hyp}


def scale_loss_gains(hyp: Dict[str, Any], nl: int, nc: int, imgsz: int) -> Dict[str, Any]:
    """box *= 3/nl, cls *= nc/80 * 3/nl, obj *= (imgsz/640)^2 * 3/nl (as YOLOv5 rescales its COCO defaults)."""
    out = dict(hyp)
    out["box"] = hyp["box"] * 3 / nl
    out["cls"] = hyp["cls"] * nc / 80 * 3 / nl
    out["obj"] = hyp["obj"] * (imgsz / 640) ** 2 * 3 / nl
    return out


def freeze_layers(model: nn.Module, freeze: List[int]) -> List[str]:
    """--freeze 10 freezes layers 0-9; --freeze 0 1 2 freezes those indices. Returns the frozen parameter names."""
    prefixes = [f"model.{x}." for x in (freeze if len(freeze) > 1 else range(freeze[0] if freeze else 0))]
    frozen = []
    for name, p in model.named_parameters():
        p.requires_grad = True
        if any(name.startswith(x) for x in prefixes):
            p.requires_grad = False
            frozen.append(name)
    if frozen:
        LOGGER.info(f"freezing {len(frozen)} parameter tensors of layers {sorted({n.split('.')[1] for n in frozen})}")
    return frozen


def build_model(
    cfg: str, weights: str, nc: int, names: List[str], anchors=None
) -> Tuple[nn.Module, dict | None]:  # fmt: skip
    """DetectionModel from --cfg and/or --weights (transferred by structure). Returns (model, checkpoint or None)."""
    from models.yolo import DetectionModel
    from utils.checkpoint import load_checkpoint
    from utils.paths import find_model_cfg
    from utils.transfer import transfer_weights

    cfg = str(find_model_cfg(cfg)) if cfg else None
    if not weights:
        if not cfg:
            raise UserError("give --cfg (e.g. yolov5s.yaml) and/or --weights (e.g. yolov5s.pt)")
        model = DetectionModel(cfg, ch=3, nc=nc, anchors=anchors)
        model.names = list(names)
        return model, None
    weights = find_file(weights, "--weights", (ROOT,))
    ckpt = load_checkpoint(weights)
    md = ckpt.get("ema") or ckpt["model"]
    model = DetectionModel(cfg or md["yaml"], ch=3, nc=nc, anchors=anchors)
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in md["state_dict"].items()}
    if cfg or anchors:
        state = {k: v for k, v in state.items() if not k.endswith("anchors")}  # keep the cfg's anchors
    transfer_weights(state, md["yaml"], model, source=str(weights))
    model.names = list(names)
    return model, ckpt


def find_last_checkpoint(search_dir: Union[str, Path] = "runs") -> Path:
    """The most recently written last.pt under search_dir (for a bare --resume)."""
    found = sorted(Path(search_dir).glob("**/last*.pt"), key=os.path.getmtime)
    if not found:
        raise UserError(f"--resume: no last.pt found under {Path(search_dir).resolve()}; pass the checkpoint path")
    return found[-1]


def get_dist_info() -> Tuple[int, int, int]:
    """(LOCAL_RANK, RANK, WORLD_SIZE) from the torchrun environment; (-1, -1, 1) for a single process."""
    return (int(os.getenv("LOCAL_RANK", -1)), int(os.getenv("RANK", -1)), int(os.getenv("WORLD_SIZE", 1)))


@contextlib.contextmanager
def rank_zero_first(local_rank: int) -> Iterator[None]:
    """Let rank 0 run the block (e.g. scan and cache labels) before the other ranks, which wait at a barrier."""
    if local_rank not in (-1, 0):
        dist.barrier()
    yield
    if local_rank == 0:
        dist.barrier()


def sync_bn(model: nn.Module, enabled: bool, device: torch.device) -> nn.Module:
    """Convert BatchNorm to SyncBatchNorm for DDP (CUDA only; CPU gloo runs keep plain BatchNorm with a warning)."""
    if not enabled:
        return model
    if device.type != "cuda":
        LOGGER.warning("WARNING: --sync-bn needs CUDA; keeping plain BatchNorm on CPU")
        return model
    LOGGER.info("Using SyncBatchNorm()")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model).to(device)


def broadcast_flag(flag: bool, rank: int) -> bool:
    """Share rank 0's decision (early stop) with every rank."""
    if rank == -1:
        return flag
    box = [flag]
    dist.broadcast_object_list(box, 0)
    return bool(box[0])


def listed_devices(device: str) -> List[str]:
    """CUDA indices listed in --device ('0,1' -> ['0', '1']; '', 'cpu' -> [])."""
    s = str(device).strip().lower().replace("cuda:", "").replace("none", "")
    return [] if s in ("", "cpu", "mps") else [i for i in s.split(",") if i]


def ddp_device(device: str, local_rank: int, world_size: int) -> torch.device:
    """The device of DDP process local_rank: the local_rank-th of --device's list (cuda:LOCAL_RANK when none is listed).

    --device cpu, or no CUDA, trains on the CPU (gloo).
    """
    ids = listed_devices(device)
    if str(device).strip().lower() == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if not ids:
        ids = [str(i) for i in range(torch.cuda.device_count())]
    if len(ids) < world_size or not all(i.isdigit() for i in ids):
        raise UserError(f"--device {device} lists {len(ids)} CUDA devices for {world_size} DDP processes")
    if int(ids[local_rank]) >= torch.cuda.device_count():
        raise UserError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device("cuda", int(ids[local_rank]))


def check_single_process_device(device: str) -> None:
    """--device 0,1 outside torchrun would silently train on one GPU: say how to use them all."""
    ids = listed_devices(device)
    if len(ids) > 1:
        raise UserError(
            f"--device {device} lists {len(ids)} GPUs but this is one process; train on all of them with "
            f"python -m torch.distributed.run --nproc_per_node {len(ids)} train.py --device {device} ..."
        )


def start_distributed(device: str, local_rank: int, world_size: int) -> torch.device:
    """This DDP process's device (see ddp_device), made current, and the process group (once) -> the device."""
    dev = ddp_device(device, local_rank, world_size)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=DDP_TIMEOUT)
    return dev


def train_device(device: str, local_rank: int, world_size: int, batch_size: int) -> torch.device:
    """Single process: --device as given (one device). DDP: the local_rank-th listed device, its group started."""
    from utils.torch_utils import select_device

    if local_rank == -1:
        return select_device(device, batch_size)
    return start_distributed(device, local_rank, world_size)
