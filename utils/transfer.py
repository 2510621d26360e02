"""Weight transfer between model configs, matching layers by structure (so inserted layers do not shift weights)."""

from __future__ import annotations

import logging
import re
from typing import Any, Dict, List, Tuple

import torch
import torch.nn as nn

from utils.torch_utils import de_parallel

LOGGER = logging.getLogger(__name__)

_KEY = re.compile(r"^model\.(\d+)\.(.+)$")


def _family(module: str) -> str:
    """Blocks that share sub-layer names count as relatives (C3, C3FLA, C3TR ... -> C3)."""
    return "C3" if module.startswith("C3") else module


def layer_signatures(yaml: dict) -> List[Tuple[str, str]]:
    """One (module name, args) pair per layer of a model yaml, backbone then head (the index order)."""
    layers = [r for key in ("backbone", "head") if isinstance(yaml.get(key), list) for r in yaml[key]]
    sigs = []
    for layer in layers:
        if not isinstance(layer, (list, tuple)) or len(layer) < 3:  # a malformed row matches nothing
            sigs.append(("?", repr(layer)))
            continue
        raw = layer[3] if len(layer) > 3 and isinstance(layer[3], (list, tuple)) else []
        args = [None if a == "None" else a for a in raw]  # yaml 'None' == None
        sigs.append((str(layer[2]).split(".")[-1], repr(args)))
    return sigs


def align_layers(src: List[Tuple[str, str]], dst: List[Tuple[str, str]]) -> Dict[int, int]:
    """Source layer index -> target layer index by a weighted longest common subsequence.

    An exact (module, args) match scores 3, the same module with other args 2, a relative (C3 vs C3FLA) 1, so
    inserted or removed layers are skipped and the remaining ones keep their order.
    """
    n, m = len(src), len(dst)

    def score(i: int, j: int) -> int:
        if src[i][0] == dst[j][0]:
            return 3 if src[i][1] == dst[j][1] else 2
        return int(_family(src[i][0]) == _family(dst[j][0]))

    best = [[0] * (m + 1) for _ in range(n + 1)]  # best[i][j]: best score of src[i:], dst[j:]
    for i in range(n - 1, -1, -1):
        for j in range(m - 1, -1, -1):
            s = score(i, j)
            best[i][j] = max(best[i + 1][j], best[i][j + 1], best[i + 1][j + 1] + s if s else 0)
    mapping, i, j = {}, 0, 0
    while i < n and j < m:
        s = score(i, j)
        if s and best[i][j] == best[i + 1][j + 1] + s:
            mapping[i] = j
            i, j = i + 1, j + 1
        elif best[i][j] == best[i + 1][j]:
            i += 1
        else:
            j += 1
    return mapping


def remap_state_dict(state: Dict[str, torch.Tensor], mapping: Dict[int, int]) -> Dict[str, torch.Tensor]:
    """Rename 'model.{i}.rest' keys to 'model.{mapping[i]}.rest'; keys of unmapped layers are dropped."""
    out = {}
    for k, v in state.items():
        match = _KEY.match(k)
        if match is None:
            out[k] = v
        elif int(match.group(1)) in mapping:
            out[f"model.{mapping[int(match.group(1))]}.{match.group(2)}"] = v
    return out


def transfer_weights(
    src_state_dict: Dict[str, torch.Tensor], src_yaml: Any, model: nn.Module, source: str = "weights"
) -> Tuple[int, int]:
    """Copy every source tensor whose structurally matched target has the same shape; returns (n_copied, n_target).

    Layers are aligned on their yaml (module, args) sequence, so e.g. yolov5n.pt lands fully in yolov5n-fla.yaml
    even though the FLA layer shifts later indices; a Detect head with another nc keeps its own conv weights.
    """
    model = de_parallel(model)
    target = model.state_dict()
    mapping = (
        align_layers(layer_signatures(src_yaml), layer_signatures(model.yaml))
        if isinstance(src_yaml, dict) and isinstance(getattr(model, "yaml", None), dict)
        else None
    )
    state = remap_state_dict(src_state_dict, mapping) if mapping is not None else dict(src_state_dict)
    copied = {}
    for k, v in state.items():
        if k in target and target[k].shape == v.shape:
            copied[k] = v.to(target[k].dtype)
    model.load_state_dict(copied, strict=False)
    LOGGER.info("Transferred %d/%d items from %s", len(copied), len(target), source)
    return len(copied), len(target)
