"""Focused Linear Attention (Han et al., "FLatten Transformer", ICCV 2023, arXiv 2308.00442) for YOLO feature maps.

The training forward below is the paper's math (docs/fla.md gives the equation numbers) on channel-first tokens
(B, C, N = H*W), a free view of the NCHW map: the q/kv/proj layers are `W @ X` matmuls and the heads are views of
the channels, so no layer transposes tokens. `fuse()` switches a module to its inference form
(models/fla_fused.py), which folds and caches; the paper's math written out plainly, for checks, is
models/fla_reference.py.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.common import C3, Bottleneck
from models.fla_fused import EPS, FusedAttention, FusedMLP, focus, normalize_channels, token_count, tracing
from models.registry import register

__all__ = ["EPS", "FLA", "C3FLA", "FLABlock", "FocusedLinearAttention", "attention_width", "focus"]


def _pair(v: int | tuple | list) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def attention_width(c: int, ratio: float, num_heads: int) -> int:
    """Channels the attention runs at: c for ratio 1, else round(c * ratio) to a multiple of the heads (>= heads)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio={ratio} must be in (0, 1]")
    if ratio == 1 or num_heads < 1:
        return c
    return max(num_heads, round(c * ratio / num_heads) * num_heads)


def _linear(layer: nn.Linear, t: torch.Tensor) -> torch.Tensor:
    """A Linear on channel-first tokens: (B, in, N) -> (B, out, N) = W @ t + b, in fp32."""
    w = layer.weight.float().expand(t.shape[0], -1, -1)
    return w @ t if layer.bias is None else torch.baddbmm(layer.bias.float().view(1, -1, 1), w, t)


def _count(t: torch.Tensor) -> torch.Tensor | int:
    """N = t.shape[-1]; while tracing as a graph value, so a dynamic export stays right at every size."""
    return token_count(t) if tracing() else t.shape[-1]


def _layer_norm(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """The LayerNorm over the channels of (B, C, N) tokens, affine included, in fp32."""
    u = normalize_channels(t, norm)
    if norm.elementwise_affine:
        u = u * norm.weight.float().view(-1, 1)
        u = u if norm.bias is None else u + norm.bias.float().view(-1, 1)
    return u


class FocusedLinearAttention(nn.Module):
    """Focused linear attention over the H*W tokens of a feature map. (B, C, H, W) -> (B, C, H, W).

    Parameters follow the reference code: q Linear(C, A), kv Linear(C, 2A), proj Linear(A, C), dwc depthwise
    Conv2d(d, d, k) shared by the heads (d = A / num_heads), scale (1, 1, A), positional_encoding (1, H0*W0, A)
    stored on the base grid H0 x W0 and resized bilinearly to H x W (exact at the base size, so skipped there).
    A = attn_dim (default C, as the paper) is the width the attention runs at: A < C is a cheaper attention.
    focusing_factor=1 and kernel_size=0 give plain linear attention (no focusing power, no DWC);
    pos_enc=False drops the positional encoding.
    The layer runs in fp32 with autocast off; the result is cast back to the input dtype.
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
        self.fused: FusedAttention | None = None  # the inference form after fuse()

    def fuse(self) -> FocusedLinearAttention:
        """Inference only: switch to the folded, cached form (models/fla_fused.py); freezes the layer."""
        self.fused = FusedAttention(self)
        self.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        h, w = x.shape[2], x.shape[3]
        if self.fused is not None:
            return self.fused(x.flatten(2), h, w).view(x.shape)
        with torch.autocast(device_type=x.device.type, enabled=False):
            y = self.attend(x.flatten(2).float(), h, w)
        return y.to(x.dtype).view(x.shape)

    def attend(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The paper's focused linear attention of fp32 channel-first tokens t (B, C, N = h*w) -> (B, C, N)."""
        b, _, n = t.shape
        nh, d = self.num_heads, self.head_dim
        q, k, v = self.qkv(t, h, w)  # Eq. 1, plus the positional encoding on K: (B, A, N) each
        k = self.phi(k)  # Eq. 6: the focused function
        q, rq = self.focus_parts(q)  # phi(Q) = q * rq, with rq (B, 1, N) one factor per token
        q, k, v = (z.view(b, nh, d, n) for z in (q, k, v))  # heads are views of the channels
        kv = k @ v.transpose(-2, -1) / _count(k)  # (B, nh, d, d) = mean_j phi(K_j)^T V_j (Eq. 5, in the mean form)
        den = k.mean(dim=-1, keepdim=True).transpose(-2, -1) @ q  # (B, nh, 1, N) = phi(Q_i) mean_j phi(K_j)^T / rq
        z = 1.0 / (den + EPS) if rq is None else rq.unsqueeze(1) / (rq.unsqueeze(1) * den + EPS)  # 1 / normaliser
        o = (kv.transpose(-2, -1) @ q) * z  # (B, nh, d, N) = phi(Q_i) (phi(K)^T V) / (phi(Q_i) sum_j phi(K_j)^T)
        if self.dwc is not None:  # Eq. 8: rank restoration, O += DWC(V), one conv shared by the heads
            dwc = self.dwc  # called functionally in fp32 (its MACs are in extra_macs, not seen by module hooks)
            fm = F.conv2d(
                v.reshape(b * nh, d, h, w), dwc.weight.float(), dwc.bias.float(), padding=dwc.padding, groups=d
            )
            o = o + fm.view(b, nh, d, n)
        return _linear(self.proj, o.reshape(b, self.attn_dim, n))  # merge the heads, project back to C

    def qkv(self, t: torch.Tensor, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Q = W_Q t, K = W_K t (+ the positional encoding at h x w), V = W_V t: (B, A, N) each, fp32."""
        q = _linear(self.q, t)
        k, v = _linear(self.kv, t).chunk(2, dim=1)
        if self.positional_encoding is not None:
            k = k + self.positional_encoding_cf(h, w)
        return q, k, v

    def phi(self, z: torch.Tensor) -> torch.Tensor:
        """The focused function phi_p(z) = f_p((relu(z) + 1e-6) / softplus(scale)) over the A channels (dim 1)."""
        f, r = self.focus_parts(z)
        return f if r is None else f * r

    def focus_parts(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """phi_p(z) of (B, A, N) as f (B, A, N) times r (B, 1, N) (None for focusing_factor 1): see fla_fused.focus."""
        s = F.softplus(self.scale.float()).view(-1, 1)
        return focus((F.relu(z) + EPS) / s, self.focusing_factor, dim=1)

    def positional_encoding_cf(self, h: int, w: int) -> torch.Tensor:
        """Positional encoding at h x w, channel-first (A, h*w) fp32; resized only when the size differs."""
        h0, w0 = self.base_size
        pe = self.positional_encoding.float()[0].t()  # (A, N0)
        if tracing() or (h, w) != (h0, w0):
            pe = F.interpolate(pe.reshape(1, -1, h0, w0), size=(h, w), mode="bilinear", align_corners=False)
            pe = pe[0].flatten(1)
        return pe

    def positional_encoding_at(self, h: int, w: int) -> torch.Tensor:
        """The positional encoding resized to h x w: (1, h*w, A) fp32 (token-major, as stored)."""
        return self.positional_encoding_cf(h, w).t().unsqueeze(0)

    @torch.no_grad()
    def attention_row(self, t: torch.Tensor, h: int, w: int, query: int, per_head: bool = False) -> torch.Tensor:
        """The attention weights token `query` gives every token: the normalised phi(Q_i) phi(K_j)^T row.

        t: the tokens (1, C, N = h*w) this layer attends over (after its owner's LayerNorm). -> (h, w) averaged
        over the heads, summing to 1; per_head: (heads, h, w), each summing to 1. The DWC term is not included.
        """
        q, k, _ = self.qkv(t.float(), h, w)
        q, k = self.phi(q)[0], self.phi(k)[0]  # (A, N)
        nh, d = self.num_heads, self.head_dim
        wgt = (q[:, query].view(nh, d, 1) * k.view(nh, d, -1)).sum(dim=1)  # (nh, N)
        wgt = wgt / wgt.sum(dim=-1, keepdim=True).clamp_min(1e-30)
        return wgt.view(nh, h, w) if per_head else wgt.mean(dim=0).view(h, w)

    def extra_macs(self, shape: tuple) -> int:
        """MACs of q/kv/proj and the attention matmuls for an input (B, C, H, W) (the Linear modules are not called,
        so module hooks never see them)."""
        b, c, h, w = shape
        n, a = h * w, self.attn_dim
        k = self.dwc.kernel_size[0] * self.dwc.kernel_size[1] if self.dwc is not None else 0
        linear = 4 * a * c  # q (A x C), kv (2A x C), proj (C x A) per token
        return int(
            b * n * (linear + 2 * a * self.head_dim + 2 * a + a * k)
        )  # + K^T V, Q (K^T V), mean(K), Q mean(K), DWC


def _norm_macs(shape: tuple) -> int:
    """thop's count for an affine LayerNorm on (B, C, H, W) tokens: 4 ops per element."""
    return 4 * shape[0] * shape[1] * shape[2] * shape[3]


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
                 ratio: float = 1.0, pos_enc: bool = True, zero_init: bool = True,
                 base_size: int | tuple = 20):  # fmt: skip
        super().__init__()
        a = attention_width(c1, ratio, num_heads)
        self.norm = nn.LayerNorm(c1)
        self.attn = FocusedLinearAttention(
            c1, num_heads, focusing_factor, kernel_size, base_size, attn_dim=a, pos_enc=pos_enc
        )
        if zero_init:
            nn.init.zeros_(self.attn.proj.weight)
            nn.init.zeros_(self.attn.proj.bias)

        self.fused: FusedAttention | None = None  # the inference form after fuse()

    def fuse(self) -> FLA:
        """Inference only: switch to the folded, cached form (the LayerNorm affine folded too); freezes the layer."""
        self.attn.fuse()
        self.fused = FusedAttention(self.attn, self.norm, residual=True)
        self.requires_grad_(False)
        return self

    @torch.no_grad()
    def attention_row(self, x: torch.Tensor, query: int, per_head: bool = False) -> torch.Tensor:
        """The attention row of token `query` for this layer's input x (1, C, H, W): see
        FocusedLinearAttention.attention_row. -> (H, W), or (heads, H, W) per_head."""
        t = _layer_norm(x.flatten(2).float(), self.norm)
        return self.attn.attention_row(t, x.shape[2], x.shape[3], query, per_head)

    def extra_macs(self, shape: tuple) -> int:
        """MACs of the LayerNorm, q/kv/proj and attention matmuls for an input (B, C, H, W)."""
        return _norm_macs(shape) + self.attn.extra_macs(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if self.fused is not None:
            return self.fused(x.flatten(2), h, w).view(x.shape)
        with torch.autocast(device_type=x.device.type, enabled=False):
            t = x.flatten(2).float()  # (B, C, N)
            y = t + self.attn.attend(_layer_norm(t, self.norm), h, w)
        return y.to(x.dtype).view(x.shape)


@register
class FLABlock(nn.Module):
    """Transformer block with FLA: t += FLA(LN(t)); t += MLP(LN(t)). (B, C, H, W) -> (B, C, H, W).

    Options as FLA (ratio, pos_enc), plus mlp_ratio (hidden = C * mlp_ratio); zero_init zeroes the attention's
    output projection and the MLP's last layer, so the block starts as the identity. Runs in fp32 like FLA.
    """

    channel_rule = "same_c1"

    def __init__(self, c1: int, num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5,
                 ratio: float = 1.0, pos_enc: bool = True, zero_init: bool = False, base_size: int | tuple = 20,
                 mlp_ratio: float = 2.0):  # fmt: skip
        super().__init__()
        a = attention_width(c1, ratio, num_heads)
        self.norm1 = nn.LayerNorm(c1)
        self.attn = FocusedLinearAttention(
            c1, num_heads, focusing_factor, kernel_size, base_size, attn_dim=a, pos_enc=pos_enc
        )
        self.norm2 = nn.LayerNorm(c1)
        hidden = int(c1 * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(c1, hidden), nn.GELU(), nn.Linear(hidden, c1))
        if zero_init:
            for layer in (self.attn.proj, self.mlp[2]):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)
        self.fused: tuple[FusedAttention, FusedMLP] | None = None  # the inference form after fuse()

    def fuse(self) -> FLABlock:
        """Inference only: switch to the folded, cached form of the attention and the MLP; freezes the block."""
        self.attn.fuse()
        self.fused = FusedAttention(self.attn, self.norm1, residual=True), FusedMLP(self.mlp, self.norm2)
        self.requires_grad_(False)
        return self

    @torch.no_grad()
    def attention_row(self, x: torch.Tensor, query: int, per_head: bool = False) -> torch.Tensor:
        """The attention row of token `query` for this block's input x (1, C, H, W) (see FLA.attention_row)."""
        t = _layer_norm(x.flatten(2).float(), self.norm1)
        return self.attn.attention_row(t, x.shape[2], x.shape[3], query, per_head)

    def extra_macs(self, shape: tuple) -> int:
        """MACs of both LayerNorms, the MLP, q/kv/proj and the attention matmuls for an input (B, C, H, W)."""
        b, c, h, w = shape
        mlp = 2 * self.mlp[0].out_features * c * b * h * w
        return 2 * _norm_macs(shape) + mlp + self.attn.extra_macs(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if self.fused is not None:
            attn, mlp = self.fused
            return mlp(attn(x.flatten(2), h, w)).view(x.shape)
        with torch.autocast(device_type=x.device.type, enabled=False):
            t = x.flatten(2).float()  # (B, C, N)
            t = t + self.attn.attend(_layer_norm(t, self.norm1), h, w)
            t = t + _linear(self.mlp[2], F.gelu(_linear(self.mlp[0], _layer_norm(t, self.norm2))))
        return t.to(x.dtype).view(x.shape)


class BottleneckFLA(Bottleneck):
    """A C3 Bottleneck followed by a residual FLA: y = FLA(Bottleneck(x)). (B, c, H, W) -> (B, c, H, W).

    cv1 / cv2 keep the Bottleneck's names, so a C3's pretrained weights load; with zero_init the FLA is the
    identity at step 0 and the block computes exactly what the pretrained Bottleneck did.
    """

    def __init__(self, c: int, shortcut: bool = True, g: int = 1, **fla_options):
        super().__init__(c, c, shortcut, g, e=1.0)
        self.fla = FLA(c, **fla_options)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fla(super().forward(x))


@register
class C3FLA(C3):
    """C3 with Focused Linear Attention on the hidden c_ = c2 * e channels. (B, c1, H, W) -> (B, c2, H, W).

    Arguments in C3's order (c1, c2, n, shortcut, g, e), then the FLA family's (num_heads, focusing_factor,
    kernel_size, ratio, pos_enc, zero_init), so `C3 [512, False]` -> `C3FLA [512, False]` is a token swap.
    bottleneck=False (default): the n bottlenecks are FLABlocks (attention + MLP; shortcut and g unused).
    bottleneck=True: C3's own n Bottlenecks stay (they load from an official C3) and each is followed by a
    residual FLA, e.g. [-1, 3, C3FLA, [1024, {bottleneck: true}]]. zero_init (None = True with bottleneck,
    False for FLABlocks) zeroes the attention output, so a bottleneck C3FLA starts as the pretrained C3.
    """

    def __init__(self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5,
                 num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5, ratio: float = 1.0,
                 pos_enc: bool = True, zero_init: bool | None = None, bottleneck: bool = False,
                 base_size: int | tuple = 20, mlp_ratio: float = 2.0):  # fmt: skip
        super().__init__(c1, c2, n, shortcut, g, e)
        c_ = int(c2 * e)
        opts = dict(num_heads=num_heads, focusing_factor=focusing_factor, kernel_size=kernel_size, ratio=ratio,
                    pos_enc=pos_enc, base_size=base_size)  # fmt: skip
        if bottleneck:
            zi = zero_init is not False
            self.m = nn.Sequential(*(BottleneckFLA(c_, shortcut, g, zero_init=zi, **opts) for _ in range(n)))
        else:
            zi = bool(zero_init)
            self.m = nn.Sequential(*(FLABlock(c_, zero_init=zi, mlp_ratio=mlp_ratio, **opts) for _ in range(n)))
