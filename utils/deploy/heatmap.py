"""detect.py --heatmap: class-activation maps (EigenCAM, from the optional `grad-cam` package) and FLA's own attention.

Per image, two overlays the size of the original image:
- `<stem>_cam.png`: EigenCAM of a chosen layer (the first principal component of its activations, its sign turned
  towards the active positions; no gradients)
  with the detections drawn on top. Default layer: the last FLA / C3FLA layer, else the last backbone layer.
- `<stem>_attention.png` (models with FLA only): the attention weights one query token gives every key token,
  the normalised phi(q_i) . phi(k_j) row of the focused linear attention, averaged over heads; the query is the
  centre of the most confident detection (or of the image) and is marked with a cross.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import List, Sequence, Tuple

import cv2
import numpy as np
import torch
import torch.nn as nn

from utils.deploy.predictor import ModelPredictor
from utils.errors import UserError
from utils.safe_write import write_image

LOGGER = logging.getLogger(__name__)
ATTENTION_TYPES = ("FLA", "C3FLA")


def _layer_type(layer: nn.Module) -> str:
    return str(getattr(layer, "type", type(layer).__name__)).split(".")[-1]


def default_layer(net: nn.Module) -> int:
    """Index of the last FLA / C3FLA layer of a DetectionModel, else of its last backbone layer."""
    fla = [i for i, m in enumerate(net.model) if _layer_type(m) in ATTENTION_TYPES]
    if fla:
        return fla[-1]
    return len(net.yaml.get("backbone", [])) - 1 if isinstance(net.yaml, dict) else len(net.model) - 2


def resolve_layer(net: nn.Module, layer: int | None) -> int:
    """--heatmap's layer index (None or -1: the default); a UserError for one the model does not have."""
    if layer is None or layer == -1:
        return default_layer(net)
    n = len(net.model) - 1  # the Detect head has no feature map
    if not 0 <= layer < n:
        raise UserError(f"--heatmap {layer}: the model has layers 0..{n - 1} with feature maps")
    return layer


@functools.cache
def _eigen_cam_class():
    """pytorch_grad_cam.EigenCAM with its sign fixed (oriented_projection), or a one-line UserError when the optional
    package is missing. Built once."""
    try:
        from pytorch_grad_cam import EigenCAM
    except ImportError as e:
        raise UserError("--heatmap needs the optional grad-cam package: pip install grad-cam") from e

    class OrientedEigenCAM(EigenCAM):
        def get_cam_image(self, input_tensor, target_layer, target_category, activations, grads, eigen_smooth):
            return oriented_projection(activations)

    return OrientedEigenCAM


def oriented_projection(acts: np.ndarray) -> np.ndarray:
    """EigenCAM's projection of activations (B, C, h, w) -> (B, h, w), with its sign fixed.

    The projection onto the first principal component of the centred activations has no sign of its own (v and -v
    are both singular vectors), so after grad-cam's ReLU it shows the objects on one image and the background on
    the next. Each map is turned to correlate positively with the activation energy (the L2 norm over channels
    per position): the high end is where the layer is active.
    """
    from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection

    proj = get_2d_projection(acts)  # (B, h, w), each map of mean 0 (a projection of centred data)
    energy = np.sqrt(np.square(np.nan_to_num(acts)).sum(1))  # (B, h, w)
    sign = np.where((proj * energy).sum((1, 2)) < 0, -1.0, 1.0).astype(proj.dtype)  # the sign of the covariance
    return proj * sign[:, None, None]


def eigen_cam(net: nn.Module, x: torch.Tensor, layer: int) -> np.ndarray:
    """EigenCAM (sign-fixed, see oriented_projection) of net.model[layer] on x (B, 3, H, W) -> (B, H, W) in [0, 1]."""
    cam = _eigen_cam_class()(ModelPredictor(net), target_layers=[net.model[layer]])  # predictions only
    try:
        with torch.enable_grad():  # grad-cam's hooks run under autograd; EigenCAM itself uses no gradients
            maps = cam(input_tensor=x.float(), targets=[])
    finally:
        cam.activations_and_grads.release()
    return np.asarray(maps, dtype=np.float32)


def attention_module(net: nn.Module, layer: int | None = None) -> nn.Module | None:
    """The (last) FLA or FLABlock inside layer (default: the last FLA / C3FLA layer); None without FLA.

    What it returns has `attention_row(x, query, per_head)` for its own input x (models/fla.py)."""
    from models.fla import FLA, FLABlock

    idx = [i for i, m in enumerate(net.model) if _layer_type(m) in ATTENTION_TYPES]
    if layer is not None and layer in idx:
        idx = [layer]
    for i in reversed(idx):
        found = [m for m in net.model[i].modules() if isinstance(m, (FLA, FLABlock))]
        if found:
            return found[-1]
    return None


class _Capture:
    """Keeps the input (B, C, H, W) of an FLA / FLABlock through a forward pre-hook, until remove()."""

    def __init__(self, owner: nn.Module):
        self.x: torch.Tensor | None = None
        self.handle = owner.register_forward_pre_hook(self._keep)

    def _keep(self, module: nn.Module, args: tuple) -> None:
        self.x = args[0].detach()

    def remove(self) -> None:
        self.handle.remove()


def unletterbox(m: np.ndarray, shape0: Tuple[int, int]) -> np.ndarray:
    """A map (H, W) over the letterboxed input -> (h0, w0) over the original image (padding cut, then resized)."""
    hl, wl = m.shape
    h0, w0 = shape0
    g = min(hl / h0, wl / w0)
    pw, ph = (wl - round(w0 * g)) / 2, (hl - round(h0 * g)) / 2
    top, left = int(round(ph - 0.1)), int(round(pw - 0.1))
    crop = m[top : hl - int(round(ph + 0.1)) or None, left : wl - int(round(pw + 0.1)) or None]
    return cv2.resize(crop, (w0, h0), interpolation=cv2.INTER_LINEAR)


def overlay(im0: np.ndarray, m: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """BGR image (h0, w0, 3) blended with map m (h0, w0) in a jet colour map (m scaled to [0, 1] first)."""
    lo, hi = float(m.min()), float(m.max())
    u8 = np.uint8(255 * (m - lo) / (hi - lo)) if hi > lo else np.zeros(m.shape, np.uint8)
    return cv2.addWeighted(im0, 1 - alpha, cv2.applyColorMap(u8, cv2.COLORMAP_JET), alpha, 0)


def draw_boxes(im: np.ndarray, det: torch.Tensor) -> np.ndarray:
    """Detections (n, 6) in original-image pixels drawn as white boxes."""
    for x1, y1, x2, y2 in det[:, :4].round().int().tolist():
        cv2.rectangle(im, (x1, y1), (x2, y2), (255, 255, 255), 2)
    return im


class HeatmapWriter:
    """Writes the CAM and FLA-attention overlays of each image of a detect.py run into save_dir/heatmaps/."""

    def __init__(self, net: nn.Module, save_dir: Path, layer: int | None = None):
        _eigen_cam_class()  # a missing package stops the run before the first image
        self.net = net
        self.layer = resolve_layer(net, layer)
        self.dir = Path(save_dir) / "heatmaps"
        self.attn = attention_module(net, self.layer)
        self.count = 0
        kind = _layer_type(net.model[self.layer])
        LOGGER.info("Heatmaps: EigenCAM of layer %d (%s)%s", self.layer, kind, ", FLA attention" * bool(self.attn))

    def write(self, x: torch.Tensor, names: Sequence[str], images: List[np.ndarray], dets: List[torch.Tensor]):
        """x (B, 3, H, W) the model input; per element its file stem, original BGR image and final detections."""
        cap = _Capture(self.attn) if self.attn is not None else None
        try:
            maps = eigen_cam(self.net, x, self.layer)
        finally:
            if cap is not None:
                cap.remove()
        self.dir.mkdir(parents=True, exist_ok=True)
        for b, (stem, im0, det) in enumerate(zip(names, images, dets)):
            cam = unletterbox(maps[b], im0.shape[:2])
            write_image(self.dir / f"{stem}_cam.png", draw_boxes(overlay(im0, cam), det))  # any file name, atomic
            if cap is not None and cap.x is not None:
                self._attention(cap.x[b : b + 1], x.shape[2:], stem, im0, det)
            self.count += 1

    def _attention(self, fx: torch.Tensor, in_hw, stem: str, im0: np.ndarray, det: torch.Tensor) -> None:
        """fx (1, C, h, w): the attention layer's input for this image."""
        h, w = fx.shape[2], fx.shape[3]
        h0, w0 = im0.shape[:2]
        if len(det):
            x1, y1, x2, y2 = det[det[:, 4].argmax(), :4].tolist()
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        else:
            cx, cy = w0 / 2, h0 / 2
        g = min(in_hw[0] / h0, in_hw[1] / w0)  # original -> letterboxed input -> attention grid
        px, py = (in_hw[1] - w0 * g) / 2, (in_hw[0] - h0 * g) / 2
        gx = int(np.clip((cx * g + px) * w / in_hw[1], 0, w - 1))
        gy = int(np.clip((cy * g + py) * h / in_hw[0], 0, h - 1))
        row = self.attn.attention_row(fx, gy * w + gx).cpu().numpy()
        full = cv2.resize(row, (int(in_hw[1]), int(in_hw[0])), interpolation=cv2.INTER_NEAREST)
        im = draw_boxes(overlay(im0, unletterbox(full, (h0, w0))), det)
        cv2.drawMarker(im, (int(cx), int(cy)), (255, 255, 255), cv2.MARKER_CROSS, 24, 3)
        write_image(self.dir / f"{stem}_attention.png", im)

    def close(self) -> None:
        if self.count:
            LOGGER.info("Heatmaps of %d image(s) saved to %s", self.count, self.dir)
