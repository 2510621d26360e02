"""The yaml-built YOLOv5 detector: Detect head, parse_model, DetectionModel, and a CLI printing the layer table."""

from __future__ import annotations

import argparse
import logging
import math
import sys
import warnings
from copy import deepcopy
from pathlib import Path

if __package__ in (None, ""):  # run as `python models/yolo.py`: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
import torch.nn.functional as F

import models.fla  # noqa: F401  (registers the FLA blocks)
import models.ghost  # noqa: F401  (registers the Ghost blocks)
from models.activations import activation_scope
from models.common import Conv, Proto, fuse_conv_and_bn  # noqa: F401  (fuse_conv_and_bn: its old home)
from models.registry import RULES, _check_row, _split_kwargs, _substitute, register, resolve
from models.validate import check_channels, check_layer, check_total_params, repeats, validate_model_dict
from utils.errors import UserError, run_cli
from utils.names import names_list
from utils.paths import find_model_cfg
from utils.yaml_io import read_yaml_mapping

LOGGER = logging.getLogger(__name__)


@register
class Detect(nn.Module):
    """YOLOv5 head: one 1x1 Conv2d per level to na*(5+nc) outputs.

    Train: list of (B, na, ny, nx, 5+nc) logits. Eval: (pred (B, N, 5+nc) decoded xywh pixels / obj / cls, list).
    export=True: pred only. `anchors` buffer is (nl, na, 2) in grid units once DetectionModel has set strides.
    """

    channel_rule = "detect"

    def __init__(self, nc: int = 80, anchors: list | tuple = (), ch: list | tuple = (), inplace: bool = True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        if len(ch) != self.nl:
            raise ValueError(f"Detect has {self.nl} anchor levels but {len(ch)} inputs")
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.ones(self.nl), persistent=False)  # set by DetectionModel
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace
        self.export = False
        self.box_scale: torch.Tensor | None = None  # (w, h): boxes in 0-1 of the image (int8 TF exports)

    def forward(self, x: list[torch.Tensor]):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                z.append(self._decode(i, x[i]).reshape(bs, -1, self.no))
        if self.training:
            return x
        return torch.cat(z, 1) if self.export else (torch.cat(z, 1), x)

    def _decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        """Level i logits (B, na, ny, nx, no) -> xywh in pixels, sigmoid obj and class scores."""
        grid, anchor_grid = self._grids(i, p)
        stride, anchor_grid = self._units(i, anchor_grid)
        xy, wh, conf = p.sigmoid().split((2, 2, self.nc + 1), 4)
        return torch.cat(((xy * 2 + grid) * stride, (wh * 2) ** 2 * anchor_grid, conf), 4)

    def _units(self, i: int, anchor_grid: torch.Tensor) -> tuple:
        """Level i's stride and anchor sizes in pixels, or in 0-1 of the image when box_scale (w, h) is set."""
        scale = getattr(self, "box_scale", None)
        return (self.stride[i], anchor_grid) if scale is None else (self.stride[i] / scale, anchor_grid / scale)

    def _grids(self, i: int, p: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cell offsets (1, 1, ny, nx, 2) minus 0.5 and anchor sizes in pixels (1, na, 1, 1, 2) for level i."""
        tracing = torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_compiling()
        g = self.grid[i]
        if tracing or g.shape[2:4] != p.shape[2:4] or g.device != p.device or g.dtype != p.dtype:
            ny, nx = p.shape[2], p.shape[3]
            y = torch.arange(ny, device=p.device).to(p.dtype)  # int arange, then cast: the ONNX exporter fails on
            x = torch.arange(nx, device=p.device).to(p.dtype)  # a float16 Range ("tensor does not have a device")
            yv, xv = torch.meshgrid(y, x, indexing="ij")
            g = torch.stack((xv, yv), 2).unsqueeze(0).unsqueeze(0) - 0.5
            ag = (self.anchors[i] * self.stride[i]).view(1, self.na, 1, 1, 2).to(p.dtype)
            if tracing:
                return g, ag
            self.grid[i], self.anchor_grid[i] = g, ag
        return self.grid[i], self.anchor_grid[i]


@register
class Segment(Detect):
    """Detect with nm mask coefficients per anchor (no = 5 + nc + nm) and a Proto on the first (P3) input.

    Train: (list of (B, na, ny, nx, no) logits, protos (B, nm, 2*ny3, 2*nx3)). Eval: (pred (B, N, no), protos,
    list); the coefficients stay raw (no sigmoid). export=True: (pred, protos).
    """

    channel_rule = "segment"

    def __init__(self, nc: int = 80, anchors=(), nm: int = 32, npr: int = 256, ch=(), inplace: bool = True):
        super().__init__(nc, anchors, ch, inplace)
        self.nm, self.npr = nm, npr
        self.no = 5 + nc + nm
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.proto = Proto(ch[0], npr, nm)

    def forward(self, x: list[torch.Tensor]):
        p = self.proto(x[0])
        out = super().forward(x)
        if self.training:
            return out, p
        return (out, p) if self.export else (out[0], p, out[1])

    def _decode(self, i: int, p: torch.Tensor) -> torch.Tensor:
        grid, anchor_grid = self._grids(i, p)
        stride, anchor_grid = self._units(i, anchor_grid)
        xy, wh, conf, coef = p.split((2, 2, self.nc + 1, self.nm), 4)
        xy = (xy.sigmoid() * 2 + grid) * stride
        wh = (wh.sigmoid() * 2) ** 2 * anchor_grid
        return torch.cat((xy, wh, conf.sigmoid(), coef), 4)


def check_anchor_order(detect: nn.Module) -> None:
    """Flip `detect.anchors` (nl, na, 2) in place when their mean area per level does not grow with the stride."""
    area = detect.anchors.prod(-1).mean(-1).view(-1)  # (nl,)
    da, ds = area[-1] - area[0], detect.stride[-1] - detect.stride[0]
    if da and da.sign() != ds.sign():
        LOGGER.info("Reversing anchor order")
        detect.anchors[:] = detect.anchors.flip(0)


def parse_model(d: dict, ch: int | list, verbose: bool = True) -> tuple[nn.Sequential, list[int]]:
    """Build the layers of a model dict. Returns (nn.Sequential of layers with .i .f .type .np, sorted save list)."""
    act = d.get("activation")
    with activation_scope(act):  # Convs built below take the yaml's activation; later models do not
        layers, save, table = _build_layers(d, ch)
    if verbose:
        if act:
            LOGGER.info(f"activation: {act}")
        _log_table(table)
    return nn.Sequential(*layers), sorted(set(save))


def _build_layers(d: dict, ch: int | list) -> tuple[list, list, list]:
    """The layers of backbone + head, the indices to keep outputs of, and the layer table rows."""
    gd, gw = validate_model_dict({"ch": 3, **d})
    ch = [ch] if isinstance(ch, int) else list(ch)
    rows = d["backbone"] + d["head"]
    layers, save, table, total = [], [], [], 0
    for i, row in enumerate(rows):
        f, n, name, args = _check_row(i, row)
        args, kwargs = _split_kwargs(i, args)
        entry = resolve(name, i)
        n_ = repeats(i, n, gd)
        ch_in = [ch[j] for j in (f if isinstance(f, list) else [f])]
        try:
            cargs, c2, copies = entry.rule(ch_in, _substitute(args, d), n_, gw)
            check_channels(i, c2, entry.rule in (RULES["detect"], RULES["segment"]))  # heads: no channel output
            with torch.device("meta"), warnings.catch_warnings():  # sizes and geometry first, allocating nothing
                warnings.simplefilter("ignore")
                total += check_layer(i, name, [entry.build(cargs, kwargs) for _ in range(copies)])
            check_total_params(i, total)
            mods = [entry.build(cargs, kwargs) for _ in range(copies)]
        except (TypeError, ValueError, IndexError, KeyError, ZeroDivisionError, RuntimeError, OverflowError) as e:
            shown = [*args, kwargs] if kwargs else args
            raise UserError(f"layer {i}: bad arguments {shown!r} for {name}: {_first_line(e)}") from e
        m_ = nn.Sequential(*mods) if copies > 1 else mods[0]
        m_.i, m_.f, m_.type = i, f, f"{entry.cls.__module__}.{entry.cls.__name__}"
        m_.np = sum(p.numel() for p in m_.parameters())
        table.append((i, f, n_, m_.np, m_.type, [*cargs, kwargs] if kwargs else cargs))
        save.extend(j % i for j in (f if isinstance(f, list) else [f]) if j != -1)
        layers.append(m_)
        if i == 0:
            ch = []
        ch.append(c2)
    return layers, save, table


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def _log_table(table: list) -> None:
    """The YOLOv5 layer table: index, from, n, params, module, arguments."""
    LOGGER.info(f"\n{'':>3}{'from':>18}{'n':>3}{'params':>10}  {'module':<40}{'arguments':<30}")
    for i, f, n, np_, t, args in table:
        LOGGER.info(f"{i:>3}{str(f):>18}{n:>3}{np_:10.0f}  {t:<40}{str(args):<30}")


def load_model_yaml(cfg: str | Path) -> tuple[dict, str]:
    """Read a model yaml (by path or bare name from models/) with safe_load. Returns (dict, file name)."""
    path = find_model_cfg(cfg)
    return read_yaml_mapping(path, "--cfg", "nc, anchors, backbone, head"), path.name


class DetectionModel(nn.Module):
    """YOLOv5 detector built from a yaml path/name or dict. See docs/ARCHITECTURE.md for the forward contract."""

    def __init__(self, cfg: str | Path | dict = "yolov5s.yaml", ch: int = 3, nc: int | None = None, anchors=None,
                 verbose: bool = True):  # fmt: skip
        super().__init__()
        if isinstance(cfg, dict):
            self.yaml = deepcopy(cfg)
        else:
            self.yaml, self.yaml_file = load_model_yaml(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc and nc != self.yaml.get("nc"):
            LOGGER.info(f"Overriding model.yaml nc={self.yaml.get('nc')} with nc={nc}")
            self.yaml["nc"] = nc
        if anchors:
            LOGGER.info(f"Overriding model.yaml anchors with anchors={anchors}")
            self.yaml["anchors"] = anchors
        validate_model_dict(self.yaml)
        self.model, self.save = parse_model(deepcopy(self.yaml), ch, verbose)
        names, nc_ = names_list(self.yaml.get("names")), self.yaml["nc"]
        self.names = names if len(names) == nc_ else names_list(None, nc_)
        self.inplace = self.yaml.get("inplace", True)
        self._setup_detect(ch)
        if verbose:
            self.info()
            LOGGER.info("")

    def _setup_detect(self, ch: int, s: int = 256) -> None:
        """Probe strides with a zero image, order anchors like strides, convert anchors to grid units, init biases."""
        m = self.model[-1]
        if not isinstance(m, Detect):
            return
        m.inplace = self.inplace
        training = self.training
        self.eval()
        m.train()  # raw per-level maps; the rest in eval so BatchNorm statistics stay untouched
        try:
            with torch.no_grad():
                out = self._forward_once(torch.zeros(1, ch, s, s))
        except (RuntimeError, ValueError, IndexError, TypeError) as e:  # layers whose shapes do not fit together
            raise UserError(f"model yaml: the layers do not fit together on a {s}x{s} image ({_first_line(e)})") from e
        out = out[0] if isinstance(m, Segment) else out  # (levels, protos)
        self.train(training)
        m.stride.copy_(torch.tensor([s / x.shape[-2] for x in out]))
        check_anchor_order(m)
        m.anchors /= m.stride.view(-1, 1, 1)
        self._initialize_biases()

    def _initialize_biases(self) -> None:
        """obj bias += log(8 / (640/s)^2) (8 objects per 640 image), cls bias += log(0.6 / (nc - 0.99999))."""
        m = self.model[-1]
        for mi, s in zip(m.m, m.stride):
            b = mi.bias.view(m.na, -1)  # (na, no)
            with torch.no_grad():
                b[:, 4] += math.log(8 / (640 / float(s)) ** 2)
                b[:, 5 : 5 + m.nc] += math.log(0.6 / (m.nc - 0.99999))

    @property
    def stride(self) -> torch.Tensor:
        """Strides of the Detect levels, e.g. tensor([8., 16., 32.])."""
        m = self.model[-1]
        return m.stride if isinstance(m, Detect) else torch.tensor([32.0])

    @stride.setter
    def stride(self, value) -> None:
        self.model[-1].stride.copy_(torch.as_tensor(value, dtype=torch.float32))

    def forward(self, x: torch.Tensor, augment: bool = False, profile: bool = False, visualize: bool = False):
        """(B, ch, H, W) with H, W multiples of 32 -> Detect output (see class Detect); augment = TTA.

        profile and visualize are accepted for YOLOv5 compatibility (use `models/yolo.py --profile` and
        `detect.py --visualize`, which saves feature maps through forward hooks: utils/deploy/feature_maps.py).
        """
        if not isinstance(augment, torch.Tensor) and augment:  # the ONNX tracer passes defaults as tensors
            return self._forward_augment(x)
        return self._forward_once(x)

    def _forward_once(self, x: torch.Tensor):
        y = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x

    def _forward_augment(self, x: torch.Tensor):
        """Test-time augmentation: scales 1, 0.83, 0.67 (the second flipped left-right); merged eval preds."""
        img_size = x.shape[-2:]
        gs = int(self.stride.max())
        y = []
        for si, fi in zip((1, 0.83, 0.67), (None, 3, None)):
            xi = _scale_img(x.flip(fi) if fi else x, si, gs)
            yi = self._forward_once(xi)[0]
            yi[..., :4] /= si
            if fi == 3:
                yi[..., 0] = img_size[1] - yi[..., 0]
            y.append(yi)
        return torch.cat(self._clip_augmented(y), 1), None

    def _clip_augmented(self, y: list) -> list:
        """Drop the P5 share of the full-size predictions and the P3 share of the smallest scale (as YOLOv5)."""
        nl = self.model[-1].nl
        g = sum(4**x for x in range(nl))  # grid cells per level ratio
        y[0] = y[0][:, : -(y[0].shape[1] // g)]  # large: drop last (P5-like) share
        y[-1] = y[-1][:, (y[-1].shape[1] // g) * 4 ** (nl - 1) :]  # small: drop first (P3) share
        return y

    def fuse(self) -> DetectionModel:
        """Fold every Conv's BatchNorm into its conv (inference only)."""
        LOGGER.info("Fusing layers... ")
        for m in self.model.modules():
            if isinstance(m, Conv) and m.bn is not None:
                m.conv = fuse_conv_and_bn(m.conv, m.bn)
                m.bn = None
            elif hasattr(m, "fuse"):  # blocks with their own inference folding (FLA family)
                m.fuse()
        self.info()
        return self

    def info(self, verbose: bool = False, imgsz: int = 640) -> None:
        """Log the summary line (and per-parameter table when verbose)."""
        from utils.model_info import model_info

        model_info(self, verbose, imgsz)


class SegmentationModel(DetectionModel):
    """A DetectionModel whose yaml ends in a Segment head (official name, so official -seg pickles map onto it)."""

    def __init__(self, cfg: str | Path | dict = "yolov5s-seg.yaml", ch: int = 3, nc: int | None = None, anchors=None,
                 verbose: bool = True):  # fmt: skip
        super().__init__(cfg, ch, nc, anchors, verbose)


def is_segment_yaml(d: dict) -> bool:
    """True when a model dict's last head row is a Segment layer."""
    head = d.get("head") or []
    return bool(head) and isinstance(head[-1], (list, tuple)) and len(head[-1]) == 4 and head[-1][2] == "Segment"


Model = DetectionModel


def _scale_img(img: torch.Tensor, ratio: float, gs: int = 32) -> torch.Tensor:
    """Resize (B, C, H, W) by ratio, then pad right/bottom with 0.447 to multiples of gs."""
    if ratio == 1.0:
        return img
    h, w = img.shape[2:]
    s = (int(h * ratio), int(w * ratio))
    img = F.interpolate(img, size=s, mode="bilinear", align_corners=False)
    h, w = (math.ceil(v * ratio / gs) * gs for v in (h, w))
    return F.pad(img, [0, w - s[1], 0, h - s[0]], value=0.447)


def parse_opt(argv: list | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Build a model from yaml and print its layer table and summary.")
    parser.add_argument("--cfg", type=str, default="yolov5s.yaml", help="model yaml path or name in models/")
    parser.add_argument("--batch-size", type=int, default=1, help="batch size for --profile")
    parser.add_argument("--imgsz", type=int, default=640, help="image size for GFLOPs and --profile")
    parser.add_argument("--device", default="cpu", help="cpu or cuda index")
    parser.add_argument("--profile", action="store_true", help="time every layer")
    return parser.parse_args(argv)


@run_cli
def main(opt: argparse.Namespace) -> None:
    from utils.log import setup_logging
    from utils.model_info import model_info, profile_layers
    from utils.torch_utils import select_device

    setup_logging()
    device = select_device(opt.device)
    cfg, _ = load_model_yaml(opt.cfg)
    cls = SegmentationModel if is_segment_yaml(cfg) else DetectionModel
    model = cls(opt.cfg, verbose=opt.imgsz == 640).to(device)
    if opt.imgsz != 640:
        parse_model(deepcopy(model.yaml), model.yaml["ch"], verbose=True)  # the layer table
        model_info(model, verbose=False, imgsz=opt.imgsz)
    if opt.profile:
        if opt.imgsz % 32:
            raise UserError(f"--imgsz {opt.imgsz} must be a multiple of 32")
        im = torch.rand(opt.batch_size, 3, opt.imgsz, opt.imgsz, device=device)
        profile_layers(model, im)


if __name__ == "__main__":
    from models import yolo as _yolo  # the package copy, so registry classes and this module agree

    _yolo.main(_yolo.parse_opt())
