"""GhostNet blocks (Han et al., "GhostNet: More Features from Cheap Operations", CVPR 2020, arXiv 1911.11907)."""

from __future__ import annotations

import torch
import torch.nn as nn

from models.common import C3, Conv, DWConv
from models.registry import register


@register
class GhostConv(nn.Module):
    """Half the outputs from cv1 (k x k, stride s), the other half from a cheap 5x5 depth-wise cv2 on those.

    (B, c1, H, W) -> cat(y, cv2(y)) -> (B, 2 * (c2 // 2), H/s, W/s).
    """

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 1, s: int = 1, g: int = 1, act=True):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv1(x)
        return torch.cat((y, self.cv2(y)), 1)


@register
class GhostBottleneck(nn.Module):
    """GhostConv 1x1 -> (stride 2: DWConv k) -> linear GhostConv 1x1, plus a shortcut (DWConv + Conv when s == 2).

    (B, c1, H, W) -> (B, c2, H/s, W/s); with s == 1 the shortcut is the identity, so c1 must equal c2.
    """

    channel_rule = "conv"

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1):
        super().__init__()
        c_ = c2 // 2
        self.conv = nn.Sequential(
            GhostConv(c1, c_, 1, 1),
            DWConv(c_, c_, k, s, act=False) if s == 2 else nn.Identity(),
            GhostConv(c_, c2, 1, 1, act=False),
        )
        down = s == 2
        self.shortcut = (
            nn.Sequential(DWConv(c1, c1, k, s, act=False), Conv(c1, c2, 1, 1, act=False)) if down else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.shortcut(x)


@register
class C3Ghost(C3):
    """C3 whose n bottlenecks are GhostBottlenecks (stride 1)."""

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5):
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(GhostBottleneck(c_, c_) for _ in range(n)))
