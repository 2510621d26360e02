"""Focused Linear Attention: equality with a straightforward rendering of the paper math, any size, dtypes, ONNX."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from models.fla import C3FLA, FLA, FLABlock, FocusedLinearAttention


def reference_fla(m: FocusedLinearAttention, x: torch.Tensor) -> torch.Tensor:
    """docs/fla.md steps 1-7 written plainly (einsum, direct powers, pos. encoding used as stored). (B,C,H,W) fp32."""
    b, c, h, w = x.shape
    n, nh, a = h * w, m.num_heads, m.attn_dim
    d = a // nh
    t = x.flatten(2).transpose(1, 2)  # (B, N, C)
    q = t @ m.q.weight.T + m.q.bias
    kv = t @ m.kv.weight.T + m.kv.bias
    k, v = kv[..., :a], kv[..., a:]
    if m.positional_encoding is not None:
        k = k + m.positional_encoding  # only valid at the base size
    s = F.softplus(m.scale)
    p = m.focusing_factor

    def focus(z):
        z = (torch.relu(z) + 1e-6) / s
        zp = z**p
        return zp * z.norm(dim=-1, keepdim=True) / zp.norm(dim=-1, keepdim=True)

    q, k = focus(q), focus(k)
    q, k, v = (z.reshape(b, n, nh, d) for z in (q, k, v))  # (B, N, h, d)
    kv_ = torch.einsum("bnhc,bnhe->bhce", k / math.sqrt(n), v / math.sqrt(n))
    z = 1 / (torch.einsum("bnhc,bhc->bnh", q, k.mean(dim=1)) + 1e-6)
    out = torch.einsum("bnhc,bhce,bnh->bnhe", q, kv_, z)
    if m.dwc is not None:
        fm = v.permute(0, 2, 3, 1).reshape(b * nh, d, h, w)
        fm = m.dwc(fm).reshape(b, nh, d, n).permute(0, 3, 1, 2)
        out = out + fm
    out = out.reshape(b, n, a) @ m.proj.weight.T + m.proj.bias
    return out.transpose(1, 2).reshape(b, c, h, w)


def _randomised(m: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Give every parameter (scale and positional encoding included) random non-zero values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return m


@pytest.mark.parametrize(
    "focusing,kernel,attn_dim,pos_enc", [(3, 5, None, True), (1, 0, None, True), (2, 3, None, True), (3, 5, 16, False)]
)
def test_equals_reference_at_base_size(focusing, kernel, attn_dim, pos_enc):
    torch.manual_seed(0)
    fla = FocusedLinearAttention(32, 4, focusing, kernel, base_size=(6, 5), attn_dim=attn_dim, pos_enc=pos_enc)
    m = _randomised(fla).eval()
    x = torch.randn(2, 32, 6, 5)
    with torch.no_grad():
        ours, ref = m(x), reference_fla(m, x)
    assert ours.shape == (2, 32, 6, 5)
    assert torch.allclose(ours, ref, atol=1e-5, rtol=1e-5), (ours - ref).abs().max()


def test_positional_encoding_resized_exactly_at_base_size():
    m = _randomised(FocusedLinearAttention(16, 2, base_size=(4, 3)))
    pe = m.positional_encoding_at(4, 3)
    assert torch.equal(pe, m.positional_encoding)
    assert m.positional_encoding_at(8, 6).shape == (1, 48, 16)


def test_plain_linear_attention_has_no_dwc_and_no_focusing():
    m = FocusedLinearAttention(16, 2, focusing_factor=1, kernel_size=0)
    assert m.dwc is None
    t = torch.rand(1, 5, 16) - 0.5
    f, r = m._focus(t, torch.full((1, 1, 16), 2.0))
    assert r is None and torch.allclose(f, (torch.relu(t) + 1e-6) / 2.0)


@pytest.mark.parametrize("hw", [(1, 1), (20, 15), (13, 21), (160, 160)])
def test_any_size(hw):
    m = _randomised(FocusedLinearAttention(16, 4)).eval()
    x = torch.randn(1, 16, *hw)
    with torch.no_grad():
        y = m(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()


def test_focusing_is_scale_safe_for_large_activations():
    """t^3 of large values overflows fp32 in a naive rendering; ours stays finite and equals the math."""
    m = _randomised(FocusedLinearAttention(16, 2)).eval()
    x = torch.randn(1, 16, 8, 8) * 1e4
    with torch.no_grad():
        y = m(x)
    assert torch.isfinite(y).all()
    t = torch.tensor([[[3.0, 1.0, 0.5]]])
    one = torch.ones(1, 1, 3)
    direct = (t + 1e-6) ** 3 * (t + 1e-6).norm(dim=-1, keepdim=True) / ((t + 1e-6) ** 3).norm(dim=-1, keepdim=True)
    f, r = m._focus(t, one)
    assert torch.allclose(f * r, direct)
    f, r = m._focus(t * 1e15, one)  # direct powers would overflow fp32 (1e45)
    assert torch.isfinite(f).all() and torch.isfinite(r).all()
    assert torch.allclose(f * r / 1e15, direct)


def test_autocast_bf16_runs_core_in_fp32():
    m = _randomised(FLABlock(32, 4)).eval()
    x = torch.randn(2, 32, 10, 12) * 50
    with torch.no_grad():
        ref = m(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = m(x)
    assert torch.isfinite(y).all()
    assert (y.float() - ref).abs().max() / ref.abs().max() < 0.05


def test_half_weights_finite():
    m = _randomised(FocusedLinearAttention(16, 2)).eval().half()
    x = (torch.randn(1, 16, 6, 6) * 10).half()
    try:
        with torch.no_grad():
            y = m(x)
    except RuntimeError as e:  # some CPU builds lack half kernels
        pytest.skip(f"fp16 on CPU unsupported: {e}")
    assert y.dtype == torch.float16
    assert torch.isfinite(y).all()


def test_fla_token_is_identity_at_init_and_trains():
    m = FLA(32, 4)
    x = torch.randn(2, 32, 7, 9, requires_grad=True)
    y = m(x)
    assert torch.equal(y, x)
    y.square().sum().backward()
    assert m.attn.proj.weight.grad.abs().sum() > 0


def test_fla_options_ratio_pos_enc_zero_init():
    m = FLA(256, 8, ratio=0.5, pos_enc=False)
    assert m.attn.attn_dim == 128 and m.attn.head_dim == 16 and m.attn.positional_encoding is None
    assert m.attn.q.weight.shape == (128, 256) and m.attn.kv.weight.shape == (256, 256)
    assert m.attn.proj.weight.shape == (256, 128)
    x = torch.randn(1, 256, 5, 7)
    assert torch.equal(m(x), x)  # still the identity at init
    assert FLA(24, 8, ratio=0.25).attn.attn_dim == 8  # rounded to a multiple of the heads, at least one per head
    assert not torch.equal(FLA(32, 4, zero_init=False)(x[:, :32]), x[:, :32])
    for bad in (0, 1.5):
        with pytest.raises(ValueError, match="ratio"):
            FLA(32, 4, ratio=bad)
    with pytest.raises(ValueError, match="must divide"):
        FocusedLinearAttention(32, 4, attn_dim=10)


def test_c3fla_shapes_and_heads_check():
    m = C3FLA(32, 64, n=2, num_heads=4)
    assert m(torch.randn(1, 32, 8, 6)).shape == (1, 64, 8, 6)
    assert len(m.m) == 2
    with pytest.raises(ValueError, match="num_heads"):
        C3FLA(32, 64, n=1, num_heads=5)


def test_extra_macs_counts_linear_cost():
    m = FocusedLinearAttention(64, 8, kernel_size=5)
    a, b = m.extra_macs((1, 64, 20, 20)), m.extra_macs((1, 64, 40, 40))
    assert b == 4 * a
    assert a == 400 * (2 * 64 * 8 + 2 * 64 + 64 * 25)
    half = FocusedLinearAttention(64, 8, kernel_size=5, attn_dim=32)
    assert half.extra_macs((1, 64, 20, 20)) == 400 * (2 * 32 * 4 + 2 * 32 + 32 * 25)


@pytest.mark.parametrize("module", ["attention", "block"])
def test_onnx_dynamic_hw(tmp_path, module):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    m = _randomised(FocusedLinearAttention(16, 2) if module == "attention" else FLABlock(16, 2)).eval()
    f = tmp_path / "fla.onnx"
    torch.onnx.export(
        m, (torch.randn(1, 16, 20, 20),), str(f), input_names=["x"], output_names=["y"], opset_version=17,
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "y": {0: "b", 2: "h", 3: "w"}}, dynamo=False,
    )  # fmt: skip
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    for shape in [(1, 16, 20, 20), (2, 16, 13, 21), (1, 16, 1, 1), (1, 16, 40, 24)]:
        x = torch.randn(*shape)
        with torch.no_grad():
            ref = m(x).numpy()
        out = sess.run(None, {"x": x.numpy()})[0]
        assert out.shape == ref.shape
        assert abs(out - ref).max() < 1e-4, (shape, abs(out - ref).max())


def test_attention_benchmark_smoke():
    from benchmarks.attention import main, parse_opt

    table = main(
        parse_opt(
            ["--dim", "16", "--heads", "2", "--sizes", "4", "8", "--runs", "1", "--softmax-max", "20", "--threads", "1"]
        )
    )
    rows = [r for r in table.splitlines() if r.startswith("| ") and "method" not in r]
    assert len(rows) == 10
    assert "| softmax | 8x8 = 64 | skipped |" in table
    assert all("skipped" in r or float(r.split("|")[3]) > 0 for r in rows)
