"""YOLOv5 building blocks (Conv, C3, SPPF, ...) with YOLOv5's attribute names, each declaring its yaml channel rule."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from models.activations import default_activation
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
    """Conv2d(bias=False) -> BatchNorm2d(eps 1e-3, momentum 0.03) -> act. (B, c1, H, W) -> (B, c2, H/s, W/s).

    act=True takes the yaml's `activation:` (SiLU by default, models/activations.py); False -> Identity.
    After `DetectionModel.fuse()` the BatchNorm is folded into `conv` and `bn` is None (`forward_fuse`).
    """

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p=None, g: int = 1, d: int = 1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = default_activation() if act is True else act if isinstance(act, nn.Module) else nn.Identity()

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
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@register
class DWConvTranspose2d(nn.ConvTranspose2d):
    """Depth-wise transposed convolution (groups = gcd(c1, c2), with bias): (B, c1, H, W) -> (B, c2, H*s, W*s)."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, p1: int = 0, p2: int = 0):
        super().__init__(c1, c2, k, s, p1, p2, groups=math.gcd(c1, c2))


@register
class MixConv2d(nn.Module):
    """Mixed depth-wise conv (Tan & Le, MixConv, arXiv 1907.09595): one conv per kernel in k, outputs concatenated.

    (B, c1, H, W) -> bn -> SiLU -> (B, c2, H/s, W/s). equal_ch splits c2 evenly over the kernels, otherwise so that
    every kernel gets about the same number of weights (channels proportional to 1/k^2).
    """

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: tuple = (1, 3), s: int = 1, equal_ch: bool = True):
        super().__init__()
        split = _mix_split(c2, list(k), equal_ch)
        self.m = nn.ModuleList(
            nn.Conv2d(c1, c_, kk, s, kk // 2, groups=math.gcd(c1, c_), bias=False) for kk, c_ in zip(k, split)
        )
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()  # fixed, as YOLOv5

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(torch.cat([m(x) for m in self.m], 1)))


def _mix_split(c2: int, k: list, equal_ch: bool) -> list[int]:
    """Output channels per kernel: c2 spread evenly in order, or in proportion to 1/k^2 (rounded half to even)."""
    n = len(k)
    if equal_ch:
        group = torch.linspace(0, n - 1e-6, c2, device="cpu").floor()  # the kernel index of each output channel
        return [int((group == j).sum()) for j in range(n)]
    inv = [1.0 / kk**2 for kk in k]
    return [int(round(c2 * v / sum(inv))) for v in inv]


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
class CrossConv(nn.Module):
    """Cross conv: cv1 (1, k) stride (1, s) -> cv2 (k, 1) stride (s, 1), plus the input when shortcut and c1 == c2."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, g: int = 1, e: float = 1.0, shortcut: bool = False):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, (1, k), (1, s))
        self.cv2 = Conv(c_, c2, (k, 1), (s, 1), g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register
class C3x(C3):
    """C3 whose n bottlenecks are CrossConv(k=3) blocks."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(CrossConv(c_, c_, 3, 1, g, 1.0, shortcut) for _ in range(n)))


@register
class BottleneckCSP(nn.Module):
    """CSP bottleneck (Wang et al., CSPNet, arXiv 1911.11929), YOLOv5 v1-v3's main block. (B,c1,H,W) -> (B,c2,H,W).

    y1 = cv3(m(cv1(x))) and y2 = cv2(x) (plain 1x1 convs, no norm) -> act(bn(cat(y1, y2))) -> cv4.
    """

    channel_rule = "csp"

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = nn.Conv2d(c1, c_, 1, 1, bias=False)
        self.cv3 = nn.Conv2d(c_, c_, 1, 1, bias=False)
        self.cv4 = Conv(2 * c_, c2, 1, 1)
        self.bn = nn.BatchNorm2d(2 * c_, eps=1e-3, momentum=0.03)
        self.act = nn.SiLU()  # fixed, as YOLOv5 (the yaml activation applies to Conv only)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y1 = self.cv3(self.m(self.cv1(x)))
        return self.cv4(self.act(self.bn(torch.cat((y1, self.cv2(x)), 1))))


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
class C3SPP(C3):
    """C3 whose inner block is SPP(k). Yaml [c2, k] is built n times in a row (no depth argument, as YOLOv5)."""

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: tuple = (5, 9, 13), n: int = 1, shortcut: bool = True, g: int = 1,
                 e: float = 0.5):  # fmt: skip
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = SPP(c_, c_, k)


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


@register
class Contract(nn.Module):
    """Space-to-depth by gain s: (B, C, H, W) -> (B, C*s*s, H/s, W/s), channels ordered (row offset, col offset, C)."""

    channel_rule = "contract"

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, c, h // s, s, w // s, s).permute(0, 3, 5, 1, 2, 4)  # (B, s, s, C, H/s, W/s)
        return x.reshape(b, c * s * s, h // s, w // s)


@register
class Expand(nn.Module):
    """Depth-to-space by gain s, the inverse of Contract: (B, C, H, W) -> (B, C/(s*s), H*s, W*s)."""

    channel_rule = "expand"

    def __init__(self, gain: int = 2):
        super().__init__()
        self.gain = gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        s = self.gain
        x = x.view(b, s, s, c // s**2, h, w).permute(0, 3, 4, 1, 5, 2)  # (B, C/s^2, H, s, W, s)
        return x.reshape(b, c // s**2, h * s, w * s)


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


class Proto(nn.Module):
    """Mask prototypes of the Segment head: (B, c1, H, W) -> (B, c2, 2H, 2W) (conv 3x3, 2x nearest, conv 3x3, 1x1)."""

    def __init__(self, c1: int, c_: int = 256, c2: int = 32):
        super().__init__()
        self.cv1 = Conv(c1, c_, k=3)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.cv2 = Conv(c_, c_, k=3)
        self.cv3 = Conv(c_, c2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(self.cv2(self.upsample(self.cv1(x))))


def fuse_conv_and_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold BatchNorm into the preceding conv: one Conv2d with bias computing bn(conv(x)) in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
        dilation=conv.dilation, groups=conv.groups, bias=True,
    ).to(conv.weight.device)  # fmt: skip
    w_bn = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (c2,)
    with torch.no_grad():
        fused.weight.copy_(conv.weight * w_bn.view(-1, 1, 1, 1))
        b_conv = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
        fused.bias.copy_((b_conv - bn.running_mean) * w_bn + bn.bias)
    fused.requires_grad_(False)
    return fused
