"""The FLatten Transformer's focused linear attention (Han et al., ICCV 2023) written out plainly, for checks.

The one place the paper's math is spelled out independently of models/fla.py: token-major (B, N, C) layout, einsum
for every product, direct powers, the positional encoding resized on every call, as a straightforward port of the
reference code to any input size would do. tests/test_fla.py compares the module against it, benchmarks/attention.py
times the module against it (`PaperFLA` there holds its own weights and calls `paper_attention`), and
`reference_attention` gives the full attention matrix that the layer's `attention_row` must match.
Equation numbers are those of docs/fla.md. Everything in fp32; not for speed and not for deployment.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

EPS = 1e-6  # the reference code's offset and normaliser guard


def focused(z: torch.Tensor, s: torch.Tensor, p: float) -> torch.Tensor:
    """Eq. 6 with the reference code's offset and scale: x = (relu(z) + 1e-6) / s, then x^p ||x|| / ||x^p||
    over the last dim (the channels). Direct powers: large inputs overflow fp32, as in a naive port."""
    x = (F.relu(z) + EPS) / s
    xp = x**p
    return xp * x.norm(dim=-1, keepdim=True) / xp.norm(dim=-1, keepdim=True)


def _tokens_qkv(x: torch.Tensor, w: dict) -> tuple:
    """Eq. 1 on (B, C, H, W): q, k (+ positional encoding resized to H x W), v as (B, N, A) token-major."""
    b, c, h, wd = x.shape
    a = w["wq"].shape[0]
    t = x.permute(0, 2, 3, 1).reshape(b, h * wd, c)  # NCHW -> (B, N, C)
    q = torch.einsum("bnc,oc->bno", t, w["wq"])
    kv = torch.einsum("bnc,oc->bno", t, w["wkv"])
    if w.get("bq") is not None:
        q, kv = q + w["bq"], kv + w["bkv"]
    k, v = kv[..., :a], kv[..., a:]
    if w.get("pe") is not None:  # stored on the base grid (h0, w0), token-major; resized bilinearly
        h0, w0 = w["base"]
        pe = w["pe"].reshape(1, h0, w0, a).permute(0, 3, 1, 2)
        pe = F.interpolate(pe, size=(h, wd), mode="bilinear", align_corners=False)
        k = k + pe.permute(0, 2, 3, 1).reshape(1, h * wd, a)
    return q, k, v


def paper_attention(x: torch.Tensor, w: dict) -> torch.Tensor:
    """Focused linear attention of x (B, C, H, W) -> (B, C, H, W), steps as the paper, from the weights w:
    wq (A, C), bq, wkv (2A, C), bkv, wp (C, A), bp, dw (d, 1, k, k) or None, db, scale (1, 1, A), pe (1, N0, A) or
    None, base (h0, w0), heads, p (the focusing factor)."""
    b, c, h, wd = x.shape
    n, nh = h * wd, w["heads"]
    q, k, v = _tokens_qkv(x, w)
    a = q.shape[-1]
    d = a // nh
    s = F.softplus(w["scale"])
    q, k = focused(q, s, w["p"]), focused(k, s, w["p"])  # Eq. 6, over all A channels before the head split
    q, k, v = (z.reshape(b, n, nh, d) for z in (q, k, v))  # heads
    kv = torch.einsum("bnhc,bnhe->bhce", k / math.sqrt(n), v / math.sqrt(n))  # Eq. 5: mean_j phi(K_j)^T V_j
    z = 1 / (torch.einsum("bnhc,bhc->bnh", q, k.mean(dim=1)) + EPS)
    out = torch.einsum("bnhc,bhce,bnh->bnhe", q, kv, z)
    if w.get("dw") is not None:  # Eq. 8: + DWC(V), one depthwise conv shared by the heads
        fm = v.permute(0, 2, 3, 1).reshape(b * nh, d, h, wd)
        fm = F.conv2d(fm, w["dw"], w.get("db"), padding=w["dw"].shape[-1] // 2, groups=d)
        out = out + fm.reshape(b, nh, d, n).permute(0, 3, 1, 2)
    out = torch.einsum("bnc,oc->bno", out.reshape(b, n, a), w["wp"]) + w["bp"]  # merge heads, proj
    return out.permute(0, 2, 1).reshape(b, c, h, wd)  # (B, N, C) -> NCHW


def weights_of(m: nn.Module) -> dict:
    """The weights dict of paper_attention, read from a FocusedLinearAttention (as views: no copies)."""
    dwc = m.dwc
    return {
        "wq": m.q.weight, "bq": m.q.bias, "wkv": m.kv.weight, "bkv": m.kv.bias, "wp": m.proj.weight,
        "bp": m.proj.bias, "dw": None if dwc is None else dwc.weight, "db": None if dwc is None else dwc.bias,
        "scale": m.scale, "pe": m.positional_encoding, "base": m.base_size, "heads": m.num_heads,
        "p": m.focusing_factor,
    }  # fmt: skip


def reference_fla(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """What a FocusedLinearAttention m should compute on x (B, C, H, W), by the paper's steps. fp32."""
    return paper_attention(x.float(), weights_of(m))


def reference_attention(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The attention matrix that m's linear term applies (DWC aside): (B, heads, N, N), row i the normalised
    phi(Q_i) phi(K_j)^T over j (Eq. 2 with Sim = phi(Q) phi(K)^T), for x (B, C, H, W) the layer's input."""
    w = weights_of(m)
    b, n, nh = x.shape[0], x.shape[2] * x.shape[3], w["heads"]
    q, k, _ = _tokens_qkv(x.float(), w)
    s = F.softplus(w["scale"])
    q, k = (focused(z, s, w["p"]).reshape(b, n, nh, -1) for z in (q, k))
    sim = torch.einsum("bihc,bjhc->bhij", q, k)
    return sim / sim.sum(dim=-1, keepdim=True)
