"""The inference form of Focused Linear Attention, which `fuse()` switches an FLA-family module to.

It computes what the training forward of models/fla.py computes, folded for speed: the pre-norm LayerNorm's affine,
the focusing offset and 1 / softplus(scale) go into the q/kv weights and bias, the positional encoding into the k
bias (cached per input size), the DWC bias into the proj bias, and on small maps the depthwise conv becomes one
matmul against its Toeplitz matrices (cached per size). With autograd off it reuses buffers in place. While
torch.jit / ONNX / torch.export trace it, nothing is cached and no Python branch depends on the input size.
Plain Python objects (not nn.Modules): fusing adds no state_dict keys; the caches are keyed by device.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-6  # focusing offset and normaliser guard, as the reference code (also models.fla.EPS)
DWC_MATRIX_MAX_TOKENS = 196  # maps up to 14x14 run the DWC as a matmul (0.3 MB of matrices at d = 8)


def tracing() -> bool:
    """True while torch.jit / ONNX / torch.export trace the graph: no Python shape branches, no caches then."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling()


def sum_keep(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x.sum(dim, keepdim=True) over a dim of fixed size (channels). While a trace records it, written as
    mean * size: pnnx drops ReduceSum's axes (an ONNX input since opset 13), so the NCNN model summed nothing."""
    if torch.jit.is_tracing():
        return x.mean(dim=dim, keepdim=True) * x.shape[dim]
    return x.sum(dim=dim, keepdim=True)


def token_count(t: torch.Tensor) -> torch.Tensor:
    """N = t.shape[-1] of (..., N) as a graph value (..., 1, 1) for traces (a dynamic export stays right at every
    size): ones (1 x N) @ ones (N x 1), a MatMul every converter maps right (pnnx mis-maps a ReduceSum)."""
    ones = torch.ones_like(t[..., :1, :])
    return ones @ ones.transpose(-2, -1)


def normalize_channels(t: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """LayerNorm over the channels of (B, C, N) tokens with norm's eps, without its affine (folded elsewhere).

    -> (B, C, N) as a transposed view of a contiguous (B, N, C): one fused layer_norm kernel over the last dim.
    """
    return F.layer_norm(t.transpose(1, 2), norm.normalized_shape, None, None, norm.eps).transpose(1, 2)


def focus(x: torch.Tensor, p: float, dim: int, inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The focusing f_p(x) = x^p * ||x|| / ||x^p|| over `dim` of a positive x (paper Eq. 6), as a product f * r.

    f = (x / ||x||)^p cannot overflow; r = ||x|| / ||f|| is the per-token factor (size 1 along dim), None for p = 1
    (then f = x), so callers may fold r into small tensors instead of multiplying it into f.
    x / ||x|| is floored at 1e-36^(1/2p) (1e-6 for p = 3): the squares of f inside ||f|| then stay normal fp32
    numbers (entries below weigh < 1e-18 of a token's largest; denormals make CPU arithmetic 20x slower). The norms
    are sqrt(sum(x * x)), which is vectorised over a channel dim where linalg.vector_norm is not. inplace (no
    autograd) overwrites x.
    """
    if p == 1:
        return x, None
    sq = x * x
    norm = sum_keep(sq, dim).sqrt()
    tiny = 1e-36 ** (0.5 / p)
    if inplace:
        f = x.div_(norm).clamp_min_(tiny).pow_(p)
        return f, norm / torch.mul(f, f, out=sq).sum(dim=dim, keepdim=True).sqrt()
    f = (x / norm).clamp_min(tiny) ** p
    return f, norm / sum_keep(f * f, dim).sqrt()


def fold_norm(w: torch.Tensor, b: torch.Tensor | None, norm: nn.LayerNorm | None) -> tuple:
    """W @ (g * xhat + beta) + b == (W * g) @ xhat + (W @ beta + b): a LayerNorm affine folded into (out, in) W."""
    b = torch.zeros_like(w[:, 0]) if b is None else b.float()
    if norm is None or not norm.elementwise_affine:
        return w, b
    if norm.bias is not None:
        b = b + w @ norm.bias.float()
    return w * norm.weight.float(), b


class _Cache:
    """make() once per key. While tracing, make() runs on every call (the graph computes the value from the
    parameters), except for a constant entry already cached: a trace then takes that tensor as a constant, so
    converters see plain folded weights instead of the folding ops (export.py fills the caches with a forward first).
    """

    def __init__(self):
        self.store: dict = {}

    def get(self, key: tuple, make, constant: bool = False):
        if tracing():
            hit = self.store.get(key) if constant else None
            return make() if hit is None else hit
        hit = self.store.get(key)
        if hit is None:
            with torch.no_grad():
                hit = self.store[key] = make()
        return hit


class FusedAttention:
    """attn(norm(t)) (+ t if residual) for channel-first tokens t (B, C, N), folded and cached.

    attn is the FocusedLinearAttention whose parameters it reads (lazily, per device); norm the owner's pre-norm
    LayerNorm (None for a bare attention).
    """

    def __init__(self, attn: nn.Module, norm: nn.LayerNorm | None = None, residual: bool = False):
        self.attn, self.norm, self.residual = attn, norm, residual
        self.cache = _Cache()

    def __call__(self, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """(B, C, N) -> (B, C, N) in t's dtype, computed in fp32."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            tf = t.float()
            u = tf if self.norm is None else normalize_channels(tf, self.norm)
            w_qkv, b_qkv, inv, floor, w_dwc, w_p, b_p = self.cache.get(("w", t.device), self._weights, constant=True)
            bias = self.cache.get(("b", t.device, h, w), lambda: self._bias(b_qkv, inv, h, w))
            b, a = t.shape[0], self.attn.attn_dim
            inplace = not (torch.is_grad_enabled() or tracing())  # no autograd: reuse buffers
            qkv = torch.baddbmm(bias, w_qkv.expand(b, -1, -1), u)  # (B, 3A, N): [q, k] focusing input, v
            qk = qkv[:, : 2 * a]  # (relu(t) + 1e-6) / s = max(t', 1e-6 / s), 1 / s folded into W and the bias
            qk = torch.maximum(qk, floor, out=qk) if inplace else torch.maximum(qk, floor)
            o = self._attend(qk, qkv[:, 2 * a :], h, w, w_dwc, inplace)  # (B, A, N)
            if inplace and tf.stride(1) == 1 and tf.shape[1] > 1:  # a channels-last map: token-major out
                return self._project_token_major(tf, o, w_p, b_p).to(t.dtype)
            if self.residual:
                y = torch.baddbmm(tf, w_p.expand(b, -1, -1), o)
                y = y.add_(b_p) if inplace else y + b_p
            else:
                y = torch.baddbmm(b_p, w_p.expand(b, -1, -1), o)
        return y.to(t.dtype)

    def _project_token_major(self, tf: torch.Tensor, o: torch.Tensor, w_p: torch.Tensor, b_p: torch.Tensor):
        """W_p o + b_p (+ tf) computed as (B, N, C) and returned as its (B, C, N) transposed view: for tf a view of
        a channels-last map (token-major memory), the residual is read and the output written without a transposing
        copy, and the output is channels-last again for the next conv."""
        b, c = tf.shape[0], tf.shape[1]
        tm = tf.transpose(1, 2)  # (B, N, C), contiguous
        wt = w_p.t().expand(b, -1, -1)  # (B, A, C)
        if self.residual:
            y = torch.baddbmm(tm, o.transpose(1, 2), wt).add_(b_p.view(1, 1, c))
        else:
            y = torch.baddbmm(b_p.view(1, 1, c), o.transpose(1, 2), wt)
        return y.transpose(1, 2)

    def _weights(self) -> tuple:
        """Folded fp32 tensors: W_qkv (3A, C) and bias (3A, 1) with the norm affine in and the q/k rows as
        (t + 1e-6) / s; 1 / s (A, 1); floor (2A, 1) = 1e-6 / s; DWC weight tiled over the heads (A, 1, k, k);
        proj W (C, A) and bias (C, 1), the latter with the DWC bias folded in (W_p @ b_dwc)."""
        m = self.attn
        a, nh = m.attn_dim, m.num_heads
        w = torch.cat((m.q.weight, m.kv.weight)).float()
        bias = None if m.q.bias is None else torch.cat((m.q.bias, m.kv.bias))
        w, bias = fold_norm(w, bias, self.norm)
        inv = 1.0 / F.softplus(m.scale.float()).view(a, 1)
        rows = torch.cat((inv, inv, torch.ones_like(inv)))  # q and k rows / s, v rows unchanged
        eps = torch.cat((torch.full_like(inv, EPS).repeat(2, 1), torch.zeros_like(inv)))
        w, bias = w * rows, (bias.view(-1, 1) + eps) * rows
        w_dwc = None
        w_p, b_p = m.proj.weight.float(), m.proj.bias.float().view(-1, 1)
        if m.dwc is not None:
            w_dwc = m.dwc.weight.float().repeat(nh, 1, 1, 1)
            if m.dwc.bias is not None:  # a per-channel constant of o: W_p @ (o + b) = W_p @ o + W_p @ b
                b_p = b_p + w_p @ m.dwc.bias.float().repeat(nh).view(-1, 1)
        return w, bias, inv, torch.cat((inv, inv)) * EPS, w_dwc, w_p, b_p

    def _bias(self, bias: torch.Tensor, inv: torch.Tensor, h: int, w: int) -> torch.Tensor:
        """The folded (3A, 1) qkv bias, as (3A, N) with the positional encoding / s in the k rows when it has one."""
        m = self.attn
        if m.positional_encoding is None:
            return bias
        a = m.attn_dim
        bk = bias[a : 2 * a] + m.positional_encoding_cf(h, w) * inv  # (A, N)
        return torch.cat((bias[:a].expand_as(bk), bk, bias[2 * a :].expand_as(bk)))

    def _attend(self, qk: torch.Tensor, v: torch.Tensor, h: int, w: int, w_dwc, inplace: bool) -> torch.Tensor:
        """fp32 core: focusing input qk (B, 2A, N) (positive), v (B, A, N) -> (B, A, N) before proj (DWC bias
        excluded: it is folded into the proj bias)."""
        m = self.attn
        b, a, n = v.shape
        nh, d = m.num_heads, m.head_dim
        f, r = focus(qk.view(b, 2, a, n), m.focusing_factor, 2, inplace)  # over all A channels; r (B, 2, 1, N)
        q, k = f[:, 0].view(b, nh, d, n), f[:, 1].view(b, nh, d, n)  # heads are channel views
        if tracing():  # N from the graph, so a dynamic export stays right at every size; no ReduceSum (see sum_keep)
            kr = k if r is None else k * r[:, 1:]  # (B, nh, d, N): focused k
            kw, km = kr / token_count(kr[:, :1, :1]), kr.mean(dim=-1, keepdim=True)  # focused k / N, its mean
        else:
            kw = k * (1.0 / n) if r is None else k * (r[:, 1:] * (1.0 / n))
            km = kw.sum(dim=-1, keepdim=True)
        kv = kw @ v.view(b, nh, d, n).transpose(-2, -1)  # (B, nh, d, d) = mean_n k_n v_n^T
        mk = torch.cat((kv, km), dim=-1).transpose(-2, -1)  # (B, nh, d+1, d)
        o = mk @ q  # (B, nh, d+1, N): one pass over q gives Q (K^T V) and Q mean(K)^T
        num, den = o[:, :, :d], o[:, :, d:]
        z = 1.0 / (den + EPS) if r is None else r[:, :1] / (r[:, :1] * den + EPS)  # focused q = q * rq, folded here
        if w_dwc is None:
            return (num * z).reshape(b, a, n)
        toeplitz = self._dwc_matrix(w_dwc, h, w, v.device) if inplace and n <= DWC_MATRIX_MAX_TOKENS else None
        if toeplitz is not None:  # small maps: the DWC as one (d, N, N) bmm, far cheaper than a tiny conv
            vv = v.view(b, nh, d, n).permute(2, 0, 1, 3).reshape(d, b * nh, n)
            fm = torch.bmm(vv, toeplitz).view(d, b, nh, n).permute(1, 2, 0, 3)  # (B, nh, d, N)
            return (num * z).add_(fm).view(b, a, n)
        fm = F.conv2d(v.view(b, a, h, w), w_dwc, None, padding=m.dwc.padding, groups=a)  # DWC per head
        fm = fm.view(b, nh, d, n)
        if tracing():  # the same sum written without addcmul, which CoreML's converter lacks
            return (fm + num * z).view(b, a, n)
        return torch.addcmul(fm, num, z).view(b, a, n)  # DWC(V) + Q (K^T V) * z

    def _dwc_matrix(self, w_dwc: torch.Tensor, h: int, w: int, device: torch.device) -> torch.Tensor:
        """The depthwise conv (weights shared by the heads) at h x w as its transposed Toeplitz matrices
        (d, N_src, N_out), cached per size, so DWC(v)[j] = v[j] @ T[j]."""
        m = self.attn

        def make() -> torch.Tensor:
            d, n = m.head_dim, h * w
            eye = torch.eye(n, device=device).view(n, 1, h, w).expand(n, d, h, w)  # one image per source pixel
            resp = F.conv2d(eye, w_dwc[:d], None, padding=m.dwc.padding, groups=d)  # (N_src, d, h, w)
            return resp.flatten(2).permute(1, 0, 2).contiguous()  # (d, N_src, N_out)

        return self.cache.get(("dwc", device, h, w), make)


class FusedMLP:
    """An FLABlock's t + MLP(LayerNorm(t)) on channel-first tokens (B, C, N), its LayerNorm affine folded into fc1."""

    def __init__(self, mlp: nn.Sequential, norm: nn.LayerNorm):
        self.mlp, self.norm = mlp, norm
        self.cache = _Cache()

    def _weights(self) -> tuple:
        """fp32 (W1 * g2, b1 + W1 @ beta2) as (hidden, C) and (hidden, 1); W2 (C, hidden), b2 (C, 1)."""
        fc1, fc2 = self.mlp[0], self.mlp[2]
        w1, b1 = fold_norm(fc1.weight.float(), fc1.bias, self.norm)
        return w1, b1.view(-1, 1), fc2.weight.float(), fc2.bias.float().view(-1, 1)

    def __call__(self, t: torch.Tensor) -> torch.Tensor:
        """(B, C, N) -> (B, C, N) in t's dtype, computed in fp32."""
        with torch.autocast(device_type=t.device.type, enabled=False):
            tf = t.float()
            w1, b1, w2, b2 = self.cache.get(("mlp", t.device), self._weights, constant=True)
            hidden = F.gelu(torch.baddbmm(b1, w1.expand(t.shape[0], -1, -1), normalize_channels(tf, self.norm)))
            y = torch.baddbmm(tf, w2.expand(t.shape[0], -1, -1), hidden) + b2
        return y.to(t.dtype)
