"""device_check's TensorRT row: export.py --include engine on the GPU, then the engine against the .pt's output."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import List, Optional, Tuple

import torch


def engine_rows(weights: Path, folder: Path, device: str, imgsz: int) -> List[Tuple[str, str, Optional[bool]]]:
    """(check, result, ok): the engine builds (fp16) and its boxes are within 2 px / scores within 0.02 of the .pt.

    TensorRT needs a CUDA device: on the CPU dry run the row is a reported skip (ok None).
    """
    from utils.deploy.backends import load_predictor
    from utils.deploy.export import run_export
    from utils.errors import UserError

    if str(device) == "cpu":
        return [("export --include engine (TensorRT fp16)", "skipped: TensorRT needs a CUDA device", None)]
    w = Path(shutil.copy(weights, folder / "engine_export.pt"))
    try:
        f = run_export(w, imgsz=[imgsz], device=device, half=True, include=["engine"])["engine"]
    except UserError as e:  # tensorrt not installed: say so in the row
        return [("export --include engine (TensorRT fp16)", str(e), False)]
    dev = torch.device(f"cuda:{device}" if str(device).isdigit() else device)
    x = torch.rand(1, 3, imgsz, imgsz, device=dev)
    with torch.no_grad():
        ref, y = load_predictor(w, device=dev)(x), load_predictor(f, device=dev)(x)
    box, score = float((y[..., :4] - ref[..., :4]).abs().max()), float((y[..., 4:] - ref[..., 4:]).abs().max())
    ok = box <= 2.0 and score <= 0.02
    return [("export --include engine (TensorRT fp16)", f"max box diff {box:.3g} px, score diff {score:.3g}", ok)]
