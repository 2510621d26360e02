"""Focused Linear Attention (Han et al., "FLatten Transformer", ICCV 2023, arXiv 2308.00442) for YOLO feature maps.

Everything runs on channel-first tokens (B, C, N = H*W), a free view of the NCHW map: the q/kv/proj layers are
`W @ X` matmuls, the heads are views of the channels and V is already the depthwise conv's (B, A, H, W) map, so
no layer ever transposes tokens. A pre-norm LayerNorm's affine is folded into the q/kv weights, the focusing
`(relu(t) + 1e-6) / s` into their weights and bias, and the positional encoding into the k bias. `fuse()` caches
these folded tensors (and the bias per input size); the unfused path computes the same tensors on every call.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.common import C3, Bottleneck
from models.registry import register

EPS = 1e-6  # focusing offset and normaliser guard, as the reference code
DWC_MATRIX_MAX_TOKENS = 196  # fused maps up to 14x14 run the DWC as a matmul (0.3 MB of matrices at d = 8)


def _pair(v: int | tuple | list) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _tracing() -> bool:
    """True while torch.jit / ONNX / torch.export trace the graph: no Python shape branches, no caches then."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def attention_width(c: int, ratio: float, num_heads: int) -> int:
    """Channels the attention runs at: c for ratio 1, else round(c * ratio) to a multiple of the heads (>= heads)."""
    if not 0 < ratio <= 1:
        raise ValueError(f"ratio={ratio} must be in (0, 1]")
    if ratio == 1 or num_heads < 1:
        return c
    return max(num_heads, round(c * ratio / num_heads) * num_heads)


def normalize_channels(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the channels of (B, C, N) tokens, with norm's eps and without its affine (folded into the
    next weights).

    -> (B, C, N) as a transposed view of a contiguous (B, N, C): one fused layer_norm kernel over the last dim
    (after one transposing copy) instead of seven elementwise passes; matmuls take the transposed view as is.
    """
    return F.layer_norm(t.transpose(1, 2), norm.normalized_shape, None, None, norm.eps).transpose(1, 2)


def focus(x: torch.Tensor, p: float, dim: int, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Focusing x^p * ||x|| / ||x^p|| over `dim` of a positive x, returned as a product f * r.

    f = (x / ||x||)^p cannot overflow; r = ||x|| / ||f|| is the per-token factor (size 1 along dim), None for p = 1
    (then f = x). Callers fold r into small tensors instead of multiplying it into f.
    x / ||x|| is floored at 1e-36^(1/2p) (1e-6 for p = 3): the squares of f inside ||f|| then stay normal fp32
    numbers; entries below it (the relu'd channels) weigh < 1e-18 of a token's largest and would otherwise
    land in the denormal range, where CPU arithmetic is 20x slower. The norms are sqrt(sum(x * x)): a plain
    sum over a channel dim is vectorised, linalg.vector_norm over it is not. inplace (no autograd) overwrites x.
    """
    if p == 1:
        return x, None
    sq = x * x
    norm = sq.sum(dim=dim, keepdim=True).sqrt()
    tiny = 1e-36 ** (0.5 / p)
    if inplace:
        f = x.div_(norm).clamp_min_(tiny).pow_(p)
        return f, norm / torch.mul(f, f, out=sq).sum(dim=dim, keepdim=True).sqrt()
    f = (x / norm).clamp_min(tiny) ** p
    return f, norm / (f * f).sum(dim=dim, keepdim=True).sqrt()


def _fold_norm(w: torch.Tensor, b: torch.Tensor | None, norm: nn.LayerNorm | None) -> tuple:
    """W @ (g * xhat + beta) + b == (W * g) @ xhat + (W @ beta + b): fold a LayerNorm affine into (out, in) W."""
    b = torch.zeros_like(w[:, 0]) if b is None else b.float()
    if norm is None or not norm.elementwise_affine:
        return w, b
    if norm.bias is not None:
        b = b + w @ norm.bias.float()
    return w * norm.weight.float(), b


def _cached(owner: nn.Module, key: tuple, make, constant: bool = False):
    """make() once per key after owner.fuse() (owner._cache is a dict); on every call before, or while tracing.

    constant: a size-independent entry (folded weights) that a trace may take from the cache as a constant, so
    converters see plain weights rather than the folding ops; a trace never stores into the cache.
    """
    if owner._cache is None or (_tracing() and not constant):
        return make()
    hit = owner._cache.get(key)
    if hit is None and _tracing():
        return make()
    if hit is None:
        with torch.no_grad():
            hit = owner._cache[key] = make()
    return hit


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
        self._cache: dict | None = None  # folded tensors after fuse(); None = recompute on every call

    def fuse(self) -> FocusedLinearAttention:
        """Inference only: cache the folded weights (and the bias per input size) from now on; freezes the layer."""
        self._cache = {}
        self.requires_grad_(False)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W)."""
        return self.run(x.flatten(2), x.shape[2], x.shape[3]).view(x.shape)

    def run(self, t: torch.Tensor, h: int, w: int, norm: nn.LayerNorm | None = None, residual: bool = False):
        """Channel-first tokens (B, C, N=h*w) -> (B, C, N) in t's dtype: attention of norm(t), plus t if residual."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            tf = t.float()
            u = tf if norm is None else normalize_channels(tf, norm)
            w_qkv, b_qkv, inv, floor, w_dwc, w_p, b_p = _cached(
                self, ("w", t.device, norm is None), lambda: self._weights(norm), constant=True
            )
            bias = _cached(self, ("b", t.device, h, w), lambda: self._bias(b_qkv, inv, h, w))
            b, a = t.shape[0], self.attn_dim
            inplace = not (torch.is_grad_enabled() or _tracing())  # no autograd: reuse buffers, skip allocations
            qkv = torch.baddbmm(bias, w_qkv.expand(b, -1, -1), u)  # (B, 3A, N): [q, k] focusing input, v
            qk = qkv[:, : 2 * a]  # (relu(t) + 1e-6) / s = max(t', 1e-6 / s), 1 / s folded into W and the bias
            qk = torch.maximum(qk, floor, out=qk) if inplace else torch.maximum(qk, floor)
            o = self._attend(qk, qkv[:, 2 * a :], h, w, w_dwc, inplace)  # (B, A, N)
            if residual:
                y = torch.baddbmm(tf, w_p.expand(b, -1, -1), o)
                y = y.add_(b_p) if inplace else y + b_p
            else:
                y = torch.baddbmm(b_p, w_p.expand(b, -1, -1), o)
        return y.to(t.dtype)

    def _weights(self, norm: nn.LayerNorm | None) -> tuple:
        """Folded fp32 tensors: W_qkv (3A, C) and bias (3A, 1) with the norm affine in and the q/k rows as
        (t + 1e-6) / s; 1 / s (A, 1); floor (2A, 1) = 1e-6 / s; DWC weight tiled over the heads (A, 1, k, k);
        proj W (C, A) and bias (C, 1), the latter with the DWC bias folded in (W_p @ b_dwc)."""
        a, nh = self.attn_dim, self.num_heads
        w = torch.cat((self.q.weight, self.kv.weight)).float()
        bias = None if self.q.bias is None else torch.cat((self.q.bias, self.kv.bias))
        w, bias = _fold_norm(w, bias, norm)
        inv = 1.0 / F.softplus(self.scale.float()).view(a, 1)
        rows = torch.cat((inv, inv, torch.ones_like(inv)))  # q and k rows / s, v rows unchanged
        eps = torch.cat((torch.full_like(inv, EPS).repeat(2, 1), torch.zeros_like(inv)))
        w, bias = w * rows, (bias.view(-1, 1) + eps) * rows
        w_dwc = None
        w_p, b_p = self.proj.weight.float(), self.proj.bias.float().view(-1, 1)
        if self.dwc is not None:
            w_dwc = self.dwc.weight.float().repeat(nh, 1, 1, 1)
            if self.dwc.bias is not None:  # a per-channel constant of o: W_p @ (o + b) = W_p @ o + W_p @ b
                b_p = b_p + w_p @ self.dwc.bias.float().repeat(nh).view(-1, 1)
        return w, bias, inv, torch.cat((inv, inv)) * EPS, w_dwc, w_p, b_p

    def _bias(self, bias: torch.Tensor, inv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The folded (3A, 1) qkv bias, as (3A, N) with the positional encoding / s in the k rows when it has one."""
        if self.positional_encoding is None:
            return bias
        a = self.attn_dim
        bk = bias[a : 2 * a] + self._pe(h, w) * inv  # (A, N)
        return torch.cat((bias[:a].expand_as(bk), bk, bias[2 * a :].expand_as(bk)))

    def _pe(self, h: int, w: int) -> torch.Tensor:
        """Positional encoding at h x w, channel-first (A, h*w) fp32; resized only when the size differs."""
        h0, w0 = self.base_size
        pe = self.positional_encoding.float()[0].t()  # (A, N0)
        if _tracing() or (h, w) != (h0, w0):
            pe = F.interpolate(pe.reshape(1, -1, h0, w0), size=(h, w), mode="bilinear", align_corners=False)
            pe = pe[0].flatten(1)
        return pe

    def positional_encoding_at(self, h: int, w: int) -> torch.Tensor:
        """The positional encoding resized to h x w: (1, h*w, A) fp32 (token-major, as stored)."""
        return self._pe(h, w).t().unsqueeze(0)

    def _attend(self, qk: torch.Tensor, v: torch.Tensor, h: int, w: int, w_dwc, inplace: bool = False):
        """fp32 core: focusing input qk (B, 2A, N) (positive), v (B, A, N) -> (B, A, N) before proj (DWC bias
        excluded: it is folded into the proj bias)."""
        b, a, n = v.shape
        nh, d = self.num_heads, self.head_dim
        f, r = focus(qk.view(b, 2, a, n), self.focusing_factor, 2, inplace)  # over all A channels; r (B, 2, 1, N)
        q, k = f[:, 0].view(b, nh, d, n), f[:, 1].view(b, nh, d, n)  # heads are channel views
        if _tracing():  # N from the graph, so a dynamic export stays right at every size
            rk = torch.ones_like(qk[:, None, :1]) if r is None else r[:, 1:]  # (B, 1, 1, N), focused k = k * rk
            kw = k * (rk / torch.ones_like(rk).sum(dim=-1, keepdim=True))  # (B, nh, d, N): focused k / N
        else:
            kw = k * (1.0 / n) if r is None else k * (r[:, 1:] * (1.0 / n))
        kv = kw @ v.view(b, nh, d, n).transpose(-2, -1)  # (B, nh, d, d) = mean_n k_n v_n^T
        m = torch.cat((kv, kw.sum(dim=-1, keepdim=True)), dim=-1).transpose(-2, -1)  # (B, nh, d+1, d): [kv^T; mean k]
        o = m @ q  # (B, nh, d+1, N): one pass over q gives Q (K^T V) and Q mean(K)^T
        num, den = o[:, :, :d], o[:, :, d:]
        z = 1.0 / (den + EPS) if r is None else r[:, :1] / (r[:, :1] * den + EPS)  # focused q = q * rq, folded here
        if w_dwc is None:
            return (num * z).reshape(b, a, n)
        toeplitz = self._dwc_matrix(w_dwc, h, w, v.device) if inplace and n <= DWC_MATRIX_MAX_TOKENS else None
        if toeplitz is not None:  # small fused maps: the DWC as one (d, N, N) bmm, far cheaper than a tiny conv
            vv = v.view(b, nh, d, n).permute(2, 0, 1, 3).reshape(d, b * nh, n)
            fm = torch.bmm(vv, toeplitz).view(d, b, nh, n).permute(1, 2, 0, 3)  # (B, nh, d, N)
            return (num * z).add_(fm).view(b, a, n)
        fm = F.conv2d(v.view(b, a, h, w), w_dwc, None, padding=self.dwc.padding, groups=a)  # DWC per head
        if _tracing():  # the same sum in ops every converter has (CoreML has no addcmul)
            return (fm.view(b, nh, d, n) + num * z).view(b, a, n)
        return torch.addcmul(fm.view(b, nh, d, n), num, z).view(b, a, n)  # DWC(V) + Q (K^T V) * z

    def _dwc_matrix(self, w_dwc: torch.Tensor, h: int, w: int, device: torch.device) -> torch.Tensor | None:
        """After fuse(): the depthwise conv (weights shared by the heads) at h x w as its transposed Toeplitz
        matrices (d, N_src, N_out), cached per size, so DWC(v)[j] = v[j] @ T[j]; None before fuse()."""
        if self._cache is None:
            return None

        def make() -> torch.Tensor:
            d, n = self.head_dim, h * w
            eye = torch.eye(n, device=device).view(n, 1, h, w).expand(n, d, h, w)  # one image per source pixel
            resp = F.conv2d(eye, w_dwc[:d], None, padding=self.dwc.padding, groups=d)  # (N_src, d, h, w)
            return resp.flatten(2).permute(1, 0, 2).contiguous()  # (d, N_src, N_out)

        return _cached(self, ("dwc", device, h, w), make)

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

    def fuse(self) -> FLA:
        """Inference only: fold and cache (see FocusedLinearAttention.fuse)."""
        self.attn.fuse()
        self.requires_grad_(False)
        return self

    def extra_macs(self, shape: tuple) -> int:
        """MACs of the LayerNorm, q/kv/proj and attention matmuls for an input (B, C, H, W)."""
        return _norm_macs(shape) + self.attn.extra_macs(shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn.run(x.flatten(2), x.shape[2], x.shape[3], self.norm, residual=True).view(x.shape)


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
        self._cache: dict | None = None

    def fuse(self) -> FLABlock:
        """Inference only: fold and cache the attention's and the MLP's weights."""
        self.attn.fuse()
        self._cache = {}
        self.requires_grad_(False)
        return self

    def extra_macs(self, shape: tuple) -> int:
        """MACs of both LayerNorms, the MLP, q/kv/proj and the attention matmuls for an input (B, C, H, W)."""
        b, c, h, w = shape
        mlp = 2 * self.mlp[0].out_features * c * b * h * w
        return 2 * _norm_macs(shape) + mlp + self.attn.extra_macs(shape)

    def _mlp_weights(self) -> tuple:
        """fp32 (W1 * g2, b1 + W1 @ beta2) as (hidden, C) and (hidden, 1); W2 (C, hidden), b2 (C, 1)."""
        fc1, fc2 = self.mlp[0], self.mlp[2]
        w1, b1 = _fold_norm(fc1.weight.float(), fc1.bias, self.norm2)
        return w1, b1.view(-1, 1), fc2.weight.float(), fc2.bias.float().view(-1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        t = self.attn.run(x.flatten(2), h, w, self.norm1, residual=True)  # (B, C, N)
        with torch.autocast(device_type=x.device.type, enabled=False):
            tf = t.float()
            w1, b1, w2, b2 = _cached(self, ("mlp", x.device), self._mlp_weights, constant=True)
            hidden = F.gelu(torch.baddbmm(b1, w1.expand(b, -1, -1), normalize_channels(tf, self.norm2)))
            y = torch.baddbmm(tf, w2.expand(b, -1, -1), hidden) + b2
        return y.to(x.dtype).view(x.shape)


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
