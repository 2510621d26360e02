"""YOLOv5 building blocks (Conv, C3, SPPF, ...) with YOLOv5's attribute names, each declaring its yaml channel rule."""

from __future__ import annotations

import torch
import torch.nn as nn

from models.registry import register


def autopad(k: int | tuple, p: int | tuple | None = None, d: int = 1) -> int | list:
    """'Same' padding for kernel k and dilation d (k // 2 for odd kernels) unless p is given."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


@register
class Conv(nn.Module):
    """Conv2d(bias=False) -> BatchNorm2d(eps 1e-3, momentum 0.03) -> SiLU. (B, c1, H, W) -> (B, c2, H/s, W/s).

    After `DetectionModel.fuse()` the BatchNorm is folded into `conv` and `bn` is None (`forward_fuse`).
    """

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1, d: int = 1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.bn is None:
            return self.forward_fuse(x)
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        """Forward once BatchNorm has been folded into conv."""
        return self.act(self.conv(x))


@register
class DWConv(Conv):
    """Depth-wise convolution: groups = gcd(c1, c2)."""

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, d: int = 1, act=True):
        super().__init__(c1, c2, k, s, g=_gcd(c1, c2), d=d, act=act)


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


@register
class Focus(nn.Module):
    """Space-to-depth (B, c1, H, W) -> (B, 4*c1, H/2, W/2), then Conv. Used by YOLOv5 v1-v5 stems."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1))


@register
class Bottleneck(nn.Module):
    """cv1 1x1 -> cv2 3x3, plus the input when shortcut and c1 == c2."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register
class C3(nn.Module):
    """CSP bottleneck with 3 convs: cat(m(cv1(x)), cv2(x)) -> cv3. (B, c1, H, W) -> (B, c2, H, W)."""

    channel_rule = "csp"

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register
class SPP(nn.Module):
    """Spatial pyramid pooling (YOLOv3-SPP): cv1 -> cat(x, maxpool k for k in ks) -> cv2."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: tuple = (5, 9, 13)):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@register
class SPPF(nn.Module):
    """Fast SPP: cv1 (to c1//2) -> three chained MaxPool(k) -> cat of 4 -> cv2. Equals SPP(k=(5, 9, 13)) for k=5."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register
class Concat(nn.Module):
    """Concatenate a list of tensors along `dimension` (channels by default)."""

    channel_rule = "concat"

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


class TransformerLayer(nn.Module):
    """Softmax self-attention + 2-layer linear MLP, both residual, no norms (YOLOv5 style). (N, B, C) -> (N, B, C)."""

    def __init__(self, c: int, num_heads: int):
        super().__init__()
        self.q = nn.Linear(c, c, bias=False)
        self.k = nn.Linear(c, c, bias=False)
        self.v = nn.Linear(c, c, bias=False)
        self.ma = nn.MultiheadAttention(embed_dim=c, num_heads=num_heads)
        self.fc1 = nn.Linear(c, c, bias=False)
        self.fc2 = nn.Linear(c, c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ma(self.q(x), self.k(x), self.v(x), need_weights=False)[0] + x
        return self.fc2(self.fc1(x)) + x


@register
class TransformerBlock(nn.Module):
    """Optional Conv to c2, learned position embedding (Linear), TransformerLayers. (B,c1,H,W) -> (B,c2,H,W)."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, num_heads: int, num_layers: int):
        super().__init__()
        self.conv = Conv(c1, c2) if c1 != c2 else None
        self.linear = nn.Linear(c2, c2)
        self.tr = nn.Sequential(*(TransformerLayer(c2, num_heads) for _ in range(num_layers)))
        self.c2 = c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
        b, _, h, w = x.shape
        p = x.flatten(2).permute(2, 0, 1)  # (B, C, H, W) -> (N, B, C)
        p = self.tr(p + self.linear(p))
        return p.permute(1, 2, 0).reshape(b, self.c2, h, w)


@register
class C3TR(C3):
    """C3 whose bottlenecks are one softmax TransformerBlock (4 heads, n layers)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = TransformerBlock(c_, c_, 4, n)
