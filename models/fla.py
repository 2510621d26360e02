"""Focused Linear Attention (Han et al., "FLatten Transformer", ICCV 2023, arXiv 2308.00442) for YOLO feature maps."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.common import C3
from models.registry import register


def _pair(v: int | tuple | list) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


class FocusedLinearAttention(nn.Module):
    """Focused linear attention over the H*W tokens of a feature map. (B, C, H, W) -> (B, C, H, W).

    Parameters follow the reference code: q Linear(C, A), kv Linear(C, 2A), proj Linear(A, C), dwc depthwise
    Conv2d(d, d, k) shared by the heads (d = A / num_heads), scale (1, 1, A), positional_encoding (1, H0*W0, A)
    stored on the base grid H0 x W0 and resized bilinearly to H x W on every call (exact at the base size).
    A = attn_dim (default C, as the paper) is the width the attention runs at: A < C is a cheaper attention.
    focusing_factor=1 and kernel_size=0 give plain linear attention (no focusing power, no DWC);
    pos_enc=False drops the positional encoding.
    The attention core runs in fp32 with autocast off; the result is cast back to the input dtype.
    """

    def __init__(self, dim: int, num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5,
                 base_size: int | tuple = (20, 20), qkv_bias: bool = True, attn_dim: int | None = None,
                 pos_enc: bool = True):  # fmt: skip
        super().__init__()
        a = dim if attn_dim is None else int(attn_dim)
        if num_heads < 1 or a < 1 or a % num_heads:
            raise ValueError(f"num_heads={num_heads} must divide the attention width {a}")
        if kernel_size < 0 or (kernel_size and kernel_size % 2 == 0):
            raise ValueError(f"kernel_size={kernel_size} must be 0 (no DWC) or odd")
        self.dim, self.attn_dim, self.num_heads, self.head_dim = dim, a, num_heads, a // num_heads
        self.focusing_factor = focusing_factor
        self.base_size = _pair(base_size)
        self.q = nn.Linear(dim, a, bias=qkv_bias)
        self.kv = nn.Linear(dim, 2 * a, bias=qkv_bias)
        self.proj = nn.Linear(a, dim)
        d = self.head_dim
        self.dwc = nn.Conv2d(d, d, kernel_size, padding=kernel_size // 2, groups=d) if kernel_size else None
        self.scale = nn.Parameter(torch.zeros(1, 1, a))
        n0 = self.base_size[0] * self.base_size[1]
        self.positional_encoding = nn.Parameter(torch.zeros(1, n0, a)) if pos_enc else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        t = x.flatten(2).transpose(1, 2)  # (B, N, C), N = H*W row-major
        out = self.forward_tokens(t, x.shape[2], x.shape[3])
        return out.transpose(1, 2).reshape_as(x)

    def forward_tokens(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """Tokens (B, N=h*w, C) -> (B, N, C)."""
        q = self.q(t)
        k, v = self.kv(t).chunk(2, dim=-1)  # as the reference: kv reshaped (B, N, 2, C)
        with torch.autocast(device_type=t.device.type, enabled=False):
            out = self._attend(q.float(), k.float(), v.float(), h, w)
        return self.proj(out.to(q.dtype))

    def positional_encoding_at(self, h: int, w: int) -> torch.Tensor:
        """The positional encoding resized to h x w: (1, h*w, C) fp32."""
        h0, w0 = self.base_size
        pe = self.positional_encoding.float().reshape(1, h0, w0, self.attn_dim).permute(0, 3, 1, 2)
        pe = F.interpolate(pe, size=(h, w), mode="bilinear", align_corners=False)
        return pe.flatten(2).transpose(1, 2)

    def _focus(self, t: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Focusing on (B, N, C): x = (relu(t) + 1e-6) / s ; x^p * ||x|| / ||x^p||, returned as a product f * r.

        f = (x/||x||)^p (B, N, C) cannot overflow; r = ||x|| / ||f|| (B, N, 1) is the per-token factor, None when
        focusing_factor is 1 (then f = x). The caller folds r into small tensors, saving a full pass over tokens.
        """
        t = (F.relu(t) + 1e-6) / s
        if self.focusing_factor == 1:
            return t, None
        norm = t.norm(dim=-1, keepdim=True)
        f = (t / norm) ** self.focusing_factor
        return f, norm / f.norm(dim=-1, keepdim=True)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """fp32 core on (B, N, C) q, k, v -> (B, N, C) before proj."""
        if self.positional_encoding is not None:
            k = k + self.positional_encoding_at(h, w)
        s = F.softplus(self.scale.float())
        (q, rq), (k, rk) = self._focus(q, s), self._focus(k, s)  # focused q = q * rq, k = k * rk
        b, n, c = q.shape
        nh, d = self.num_heads, self.head_dim
        q, k, v = (x.reshape(b, n, nh, d).transpose(1, 2) for x in (q, k, v))  # (B, nh, N, d)
        n_tok = torch.ones_like(k[:, :1, :, :1]).sum(dim=-2, keepdim=True)  # (B, 1, 1, 1) = N, traceable
        wk = (1.0 if rk is None else rk.unsqueeze(1)) / n_tok  # (B, 1, N, 1) or (B, 1, 1, 1): rk / N
        kv = k.transpose(-2, -1) @ (v * wk)  # (B, nh, d, d) = mean_n k_n v_n^T
        k_mean = wk.expand(b, 1, n, 1).transpose(-2, -1) @ k  # (B, nh, 1, d) = mean_n k_n
        qkv = q @ torch.cat((kv, k_mean.transpose(-2, -1)), dim=-1)  # (B, nh, N, d+1): one pass over q
        num, den = qkv[..., :d], qkv[..., d:]  # Q (K^T V) (B, nh, N, d) and Q mean(K)^T (B, nh, N, 1)
        if rq is None:
            z = 1.0 / (den + 1e-6)
        else:
            rq = rq.unsqueeze(1)  # (B, 1, N, 1)
            z = rq / (rq * den + 1e-6)  # focused q = q * rq, folded into the (B, nh, N, 1) normaliser
        if self.dwc is None:
            out = num * z  # (B, nh, N, d)
        else:
            fm = v.transpose(-2, -1).reshape(-1, d, h, w)  # (B*nh, d, H, W)
            dw = self.dwc.weight.float(), None if self.dwc.bias is None else self.dwc.bias.float()
            fm = F.conv2d(fm, dw[0], dw[1], padding=self.dwc.padding, groups=self.dwc.groups)
            out = torch.addcmul(fm.reshape(b, nh, d, n).transpose(-2, -1), num, z)  # DWC(V) + Q (K^T V) * z
        return out.transpose(1, 2).reshape(b, n, c)  # merge heads

    def extra_macs(self, shape: tuple) -> int:
        """Multiply-accumulates of the attention matmuls (missed by module hooks) for an input (B, C, H, W)."""
        b, _, h, w = shape
        n, c = h * w, self.attn_dim
        k = self.dwc.kernel_size[0] * self.dwc.kernel_size[1] if self.dwc is not None else 0
        return int(b * (2 * n * c * self.head_dim + 2 * n * c + n * c * k))  # K^T V, Q (K^T V), mean(K), Q mean(K), DWC


@register
class FLA(nn.Module):
    """Residual FLA on a feature map: y = x + FLA(LayerNorm(x)). (B, C, H, W) -> (B, C, H, W), channels unchanged.

    The output projection starts at zero (zero_init), so y == x at initialisation: inserting FLA into a
    pretrained network changes nothing at step 0. ratio < 1 runs the attention at round(C * ratio) channels
    (a multiple of the heads): q/kv/proj cost scales with it. pos_enc=False drops the positional encoding.
    Yaml: [-1, 1, FLA, [heads, focusing_factor, kernel_size]], other options by name as a trailing mapping,
    e.g. [-1, 1, FLA, [8, {ratio: 0.5, zero_init: false}]].
    """

    channel_rule = "same_c1"

    def __init__(self, c1: int, num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5,
                 base_size: int | tuple = 20, zero_init: bool = True, ratio: float = 1.0,
                 pos_enc: bool = True):  # fmt: skip
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"ratio={ratio} must be in (0, 1]")
        a = max(num_heads, round(c1 * ratio / num_heads) * num_heads) if num_heads >= 1 else c1
        self.norm = nn.LayerNorm(c1)
        self.attn = FocusedLinearAttention(
            c1, num_heads, focusing_factor, kernel_size, base_size, attn_dim=a, pos_enc=pos_enc
        )
        if zero_init:
            nn.init.zeros_(self.attn.proj.weight)
            nn.init.zeros_(self.attn.proj.bias)

    def extra_macs(self, shape: tuple) -> int:
        """Attention matmul MACs for an input (B, C, H, W) (see FocusedLinearAttention.extra_macs)."""
        return self.attn.extra_macs(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        t = t + self.attn.forward_tokens(self.norm(t), x.shape[2], x.shape[3])
        return t.transpose(1, 2).reshape_as(x)


@register
class FLABlock(nn.Module):
    """Transformer block with FLA: t += FLA(LN(t)); t += MLP(LN(t)). (B, C, H, W) -> (B, C, H, W)."""

    channel_rule = "same_c1"

    def __init__(self, c1: int, num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5,
                 mlp_ratio: float = 2.0, base_size: int | tuple = 20):  # fmt: skip
        super().__init__()
        hidden = int(c1 * mlp_ratio)
        self.norm1 = nn.LayerNorm(c1)
        self.attn = FocusedLinearAttention(c1, num_heads, focusing_factor, kernel_size, base_size)
        self.norm2 = nn.LayerNorm(c1)
        self.mlp = nn.Sequential(nn.Linear(c1, hidden), nn.GELU(), nn.Linear(hidden, c1))

    def extra_macs(self, shape: tuple) -> int:
        """Attention matmul MACs for an input (B, C, H, W) (see FocusedLinearAttention.extra_macs)."""
        return self.attn.extra_macs(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        t = t + self.attn.forward_tokens(self.norm1(t), x.shape[2], x.shape[3])
        t = t + self.mlp(self.norm2(t))
        return t.transpose(1, 2).reshape_as(x)


@register
class C3FLA(C3):
    """C3 whose bottlenecks are n FLABlocks on the hidden c_ = c2/2 channels. Yaml: [-1, 3, C3FLA, [c2, heads]]."""

    def __init__(self, c1: int, c2: int, n: int = 1, num_heads: int = 8, focusing_factor: float = 3,
                 kernel_size: int = 5, e: float = 0.5):  # fmt: skip
        super().__init__(c1, c2, n, e=e)
        c_ = int(c2 * e)
        self.m = nn.Sequential(*(FLABlock(c_, num_heads, focusing_factor, kernel_size) for _ in range(n)))
