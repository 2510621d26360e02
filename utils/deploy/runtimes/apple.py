"""CoreML: read a .mlpackage / .mlmodel's spec anywhere; predictions need macOS (CoreML's runtime is Apple-only)."""

from __future__ import annotations

import json
import platform
from pathlib import Path
from typing import Any, Dict

import torch

from utils.deploy.predictor import Predictor, register_backend
from utils.deploy.runtimes.meta import apply_meta, need
from utils.errors import UserError


def coreml_meta(spec) -> Dict[str, Any]:
    """The metadata export stores in spec.description.metadata.userDefined (values JSON)."""
    meta = {}
    for k, v in spec.description.metadata.userDefined.items():
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    return meta


@register_backend(".mlpackage", ".mlmodel")
class CoreMLBackend(Predictor):
    """A CoreML model: image input 'image' (RGB 0-255, scaled inside), output 'output0' (B, N, 5 + nc)."""

    format = "coreml"

    def __init__(self, f: Path, device: torch.device, fp16: bool = False, **_):
        super().__init__(device)
        if platform.system() != "Darwin":
            raise UserError(f"{f.name}: running CoreML models needs macOS (CoreML has no Linux/Windows runtime)")
        ct = need("coremltools", "running CoreML weights", "coremltools")
        self.model = ct.models.MLModel(str(f))
        apply_meta(self, coreml_meta(self.model.get_spec()))

    def run(self, im: torch.Tensor) -> torch.Tensor:  # pragma: no cover - macOS only
        from PIL import Image

        out = []
        for x in (im.float().clamp(0, 1) * 255).byte().permute(0, 2, 3, 1).cpu().numpy():
            y = self.model.predict({"image": Image.fromarray(x)})
            out.append(torch.as_tensor(y["output0"]).reshape(-1, y["output0"].shape[-1]))
        return torch.stack(out).to(self.device)
