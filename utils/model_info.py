"""Model summary line (layers, parameters, gradients, GFLOPs) as YOLOv5 prints it, and per-layer profiling."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
import torch.nn as nn

from utils.flops import layer_ops, model_gflops

LOGGER = logging.getLogger(__name__)

_ACTIVATIONS = (nn.SiLU, nn.ReLU, nn.LeakyReLU, nn.Hardswish, nn.GELU, nn.Sigmoid)  # YOLOv5's shareable defaults


def count_layers(model: nn.Module) -> int:
    """Layers as YOLOv5 counts them: distinct leaf modules.

    YOLOv5's yaml-built models share one activation object across all un-fused Conv layers, while its
    released (fused) checkpoints carry one per Conv; our Conv owns its activation, so the activations of
    un-fused Convs count once per type. yolov5s -> 125 layers; yolov5n fused -> 124, as the official code.
    """
    leaves = {id(m): m for m in model.modules() if not list(m.children())}
    shared = {
        id(m.act): type(m.act)
        for m in model.modules()
        if getattr(m, "bn", None) is not None and isinstance(getattr(m, "act", None), _ACTIVATIONS)
    }
    return len(leaves) - len(shared) + len(set(shared.values()))


def model_name(model: nn.Module) -> str:
    """'YOLOv5s' from yolov5s.yaml, 'Model' for dict-built models."""
    yaml_file = getattr(model, "yaml_file", None)
    return Path(yaml_file).stem.replace("yolov5", "YOLOv5") if yaml_file else "Model"


def model_info(model: nn.Module, verbose: bool = False, imgsz: int | tuple = 640) -> str:
    """Log (and return) `YOLOv5s summary: 125 layers, 7,235,389 parameters, 7,235,389 gradients, 16.6 GFLOPs`."""
    n_p = sum(p.numel() for p in model.parameters())
    n_g = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if verbose:
        LOGGER.info(
            f"{'layer':>5} {'name':>40} {'gradient':>9} {'parameters':>12} {'shape':>20} {'mu':>10} {'sigma':>10}"
        )
        for i, (name, p) in enumerate(model.named_parameters()):
            name = name.replace("module_list.", "")
            sigma = p.std().item() if p.numel() > 1 else 0.0
            LOGGER.info(
                f"{i:5g} {name:>40} {p.requires_grad!s:>9} {p.numel():12g} {list(p.shape)!s:>20} "
                f"{p.mean().item():10.3g} {sigma:10.3g}"
            )
    try:
        fs = f", {model_gflops(model, imgsz):.1f} GFLOPs"
    except Exception as e:  # a model that cannot run at the probe size still gets its summary line
        LOGGER.debug(f"GFLOPs not computed: {e}")
        fs = ""
    line = f"{model_name(model)} summary: {count_layers(model)} layers, {n_p:,} parameters, {n_g:,} gradients{fs}"
    LOGGER.info(line)
    return line


def profile_layers(model: nn.Module, x: torch.Tensor, runs: int = 3) -> list[tuple]:
    """Time each top-level layer (ms, best of runs) on input x; log and return rows (i, ms, GFLOPs, params, type)."""
    ops = layer_ops(model, tuple(x.shape[2:]))
    times = [float("inf")] * len(model.model)
    model.eval()
    with torch.no_grad():
        for _ in range(runs):
            y, h = [], x
            for m in model.model:
                if m.f != -1:
                    h = y[m.f] if isinstance(m.f, int) else [h if j == -1 else y[j] for j in m.f]
                inp = h if not isinstance(h, list) else list(h)
                t0 = time.perf_counter()
                h = m(inp)
                times[m.i] = min(times[m.i], (time.perf_counter() - t0) * 1000)
                y.append(h if m.i in model.save else None)
    LOGGER.info(f"{'time (ms)':>10s} {'GFLOPs':>10s} {'params':>10s}  module")
    rows = []
    for m, t, o in zip(model.model, times, ops):
        rows.append((m.i, t, 2 * o * x.shape[0] / 1e9, m.np, m.type))
        LOGGER.info(f"{t:10.2f} {2 * o * x.shape[0] / 1e9:10.2f} {m.np:10.0f}  {m.type}")
    LOGGER.info(f"{sum(times):10.2f} {'-':>10s} {'-':>10s}  Total")
    return rows
