"""Focused Linear Attention: equality with a straightforward rendering of the paper math, any size, dtypes, ONNX,
fuse() equal to the unfused path, one constructor vocabulary, the fully transferring C3FLA."""

from __future__ import annotations

import pytest
import torch

from models.fla import C3FLA, FLA, FLABlock, FocusedLinearAttention, focus
from models.fla_fused import FusedAttention
from models.fla_reference import reference_attention, reference_fla


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


@pytest.mark.parametrize("hw", [(12, 10), (3, 7), (1, 1)])
def test_equals_reference_at_other_sizes(hw):
    """Off the base grid the positional encoding is resized; batch 2 checks the batched matmuls."""
    m = _randomised(FocusedLinearAttention(32, 4, base_size=(6, 5)), seed=1).eval()
    x = torch.randn(2, 32, *hw)
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference_fla(m, x), atol=1e-5, rtol=1e-5)


def test_plain_linear_attention_has_no_dwc_and_no_focusing():
    m = FocusedLinearAttention(16, 2, focusing_factor=1, kernel_size=0)
    assert m.dwc is None
    x = torch.rand(1, 16, 5) + 1e-6
    f, r = focus(x, 1, dim=1)
    assert r is None and f is x
    m = _randomised(m).eval()
    x = torch.randn(1, 16, 4, 5)
    with torch.no_grad():
        torch.testing.assert_close(m(x), reference_fla(m, x), atol=1e-5, rtol=1e-5)


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
    t = torch.tensor([[[3.0, 1.0, 0.5, 1e-6]]])
    direct = t**3 * t.norm(dim=-1, keepdim=True) / (t**3).norm(dim=-1, keepdim=True)
    f, r = focus(t, 3, dim=-1)
    assert torch.allclose(f * r, direct)
    f, r = focus(t * 1e15, 3, dim=-1)  # direct powers would overflow fp32 (1e45)
    assert torch.isfinite(f).all() and torch.isfinite(r).all()
    assert torch.allclose(f * r / 1e15, direct)
    f, _ = focus(t * 1e3, 3, dim=-1)  # the relu'd channel: floored, so ||f|| squares no fp32 denormal
    assert (f * f).min() >= torch.finfo(torch.float32).tiny


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
    """The q/kv/proj Linear and the LayerNorm modules are never called (channel-first matmuls), so extra_macs counts
    them as their module hooks would: Linear out x in per token, thop's 4 ops per LayerNorm element."""
    m = FocusedLinearAttention(64, 8, kernel_size=5)
    a, b = m.extra_macs((1, 64, 20, 20)), m.extra_macs((1, 64, 40, 40))
    assert b == 4 * a
    assert a == 400 * (4 * 64 * 64 + 2 * 64 * 8 + 2 * 64 + 64 * 25)
    half = FocusedLinearAttention(64, 8, kernel_size=5, attn_dim=32)
    assert half.extra_macs((1, 64, 20, 20)) == 400 * (4 * 32 * 64 + 2 * 32 * 4 + 2 * 32 + 32 * 25)
    assert FLA(64, 8).extra_macs((2, 64, 20, 20)) == 2 * (400 * 64 * 4) + m.extra_macs((2, 64, 20, 20))
    blk = FLABlock(64, 8)
    assert blk.extra_macs((1, 64, 20, 20)) == 2 * 400 * 64 * 4 + 400 * 2 * 128 * 64 + a


def test_gflops_of_fla_layer_match_module_hook_counts():
    """model_gflops sees the FLA layer as the Linear/LayerNorm hooks of the token-major layer did."""
    from models.yolo import DetectionModel
    from utils.flops import layer_ops

    cfg = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": 1,
           "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "FLA", [8, {"ratio": 0.5}]], [-1, 1, "Conv", [128, 3, 2]]],
           "head": [[[0, 2], 1, "Detect", ["nc", "anchors"]]]}  # fmt: skip
    model = DetectionModel(cfg, verbose=False)
    ops = layer_ops(model, 64)[1]  # FLA on 16 channels at 32 x 32 tokens
    n, c, a = 32 * 32, 16, 8
    assert ops == n * (4 * c + 4 * a * c) + n * (2 * a * 1 + 2 * a + a * 25)


@pytest.mark.parametrize("module", ["attention", "block", "fla-fused", "c3fla-keep-fused"])
def test_onnx_dynamic_hw(tmp_path, module):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    make = {
        "attention": lambda: FocusedLinearAttention(16, 2),
        "block": lambda: FLABlock(16, 2),
        "fla-fused": lambda: FLA(16, 2, ratio=0.5),
        "c3fla-keep-fused": lambda: C3FLA(16, 16, 1, num_heads=2, bottleneck=True),
    }[module]
    m = _randomised(make()).eval()
    if module.endswith("-fused"):  # the fused path never uses its caches while tracing: H and W stay dynamic
        m = _fused_pair(m)[1]
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
    assert len(rows) == 12  # 6 methods x 2 sizes
    assert "| softmax | 8x8 = 64 | skipped |" in table
    assert all("skipped" in r or float(r.split("|")[3]) > 0 for r in rows)
    fla = next(r for r in rows if r.startswith("| FLA | 8x8"))
    assert float(fla.split("|")[-2]) > 0  # its forward time over FLA-paper's


def test_paper_rendering_equals_the_module():
    """benchmarks/attention.py's speed reference computes the same function, with its own parameters."""
    from benchmarks.attention import PaperFLA

    m = _randomised(FocusedLinearAttention(32, 4, base_size=5)).eval()
    ref = PaperFLA(32, 4, base_size=5).load_from(m).eval()
    for hw in [(5, 5), (9, 7)]:
        x = torch.randn(2, 32, *hw)
        with torch.no_grad():
            torch.testing.assert_close(ref(x), m(x), atol=1e-5, rtol=1e-5)


def _inference_forms(m: torch.nn.Module) -> list:
    """The FusedAttention each FLA-family owner runs after fuse(): FLA's and FLABlock's own, a bare layer's own."""
    if isinstance(m, FocusedLinearAttention):
        return [m.fused]
    forms = [sub.fused for sub in m.modules() if isinstance(sub, (FLA, FLABlock))]
    return [f if isinstance(f, FusedAttention) else f[0] for f in forms]


@pytest.mark.parametrize("focusing", [3, 1])
def test_attention_row_is_the_reference_attention_matrix(focusing):
    """The public attention_row (used by detect.py --heatmap) is row i of the paper's normalised phi(Q) phi(K)^T."""
    m = _randomised(FocusedLinearAttention(16, 2, focusing, base_size=(4, 5))).eval()
    x = torch.randn(1, 16, 4, 5)
    ref = reference_attention(m, x)[0]  # (heads, N, N)
    for i in (0, 7, 19):
        torch.testing.assert_close(m.attention_row(x.flatten(2), 4, 5, i, per_head=True).flatten(1), ref[:, i])
        torch.testing.assert_close(m.attention_row(x.flatten(2), 4, 5, i), ref[:, i].mean(0).view(4, 5))
    fla = _randomised(FLA(16, 2, base_size=(4, 5)))  # FLA's row is its attention's row for the normalised input
    u = torch.nn.functional.layer_norm(x.permute(0, 2, 3, 1), (16,), fla.norm.weight, fla.norm.bias)
    torch.testing.assert_close(
        fla.attention_row(x, 3), reference_attention(fla.attn, u.permute(0, 3, 1, 2))[0, :, 3].mean(0).view(4, 5)
    )


def _fused_pair(m: torch.nn.Module) -> tuple:
    """(m, a deep copy whose FLA-family submodules are fused, as DetectionModel.fuse() does), both eval."""
    import copy

    fused = copy.deepcopy(m).eval()
    for sub in fused.modules():
        if hasattr(sub, "fuse"):
            sub.fuse()
    return m.eval(), fused


@pytest.mark.parametrize(
    "make,c_in",
    [
        (lambda: FocusedLinearAttention(32, 4, base_size=(6, 5)), 32),
        (lambda: FLA(32, 4, ratio=0.5, zero_init=False, base_size=(6, 5)), 32),
        (lambda: FLA(32, 4, 1, 0, pos_enc=False, zero_init=False), 32),
        (lambda: FLABlock(32, 4, zero_init=False, base_size=(6, 5)), 32),
        (lambda: C3FLA(16, 32, 2, num_heads=4, base_size=(6, 5)), 16),
        (lambda: C3FLA(16, 32, 2, False, num_heads=4, bottleneck=True, zero_init=False, base_size=(6, 5)), 16),
    ],
)
def test_fused_equals_unfused(make, c_in):
    """fuse() folds the LayerNorm affine and 1/s into q/kv and caches the bias per size: same outputs."""
    torch.manual_seed(0)
    plain, fused = _fused_pair(_randomised(make()))
    for hw in [(6, 5), (12, 10), (6, 5), (7, 3), (20, 16)]:  # base, resized, base again, odd, > 196 tokens (conv)
        x = torch.randn(2, c_in, *hw)
        with torch.no_grad():
            torch.testing.assert_close(fused(x), plain(x), atol=2e-5, rtol=2e-5)
            xc = x.contiguous(memory_format=torch.channels_last)  # the predictor's CPU layout: token-major output
            torch.testing.assert_close(fused(xc), plain(x), atol=2e-5, rtol=2e-5)
            if isinstance(fused, (FLA, FocusedLinearAttention)):  # and it stays channels-last for the next conv
                assert fused(xc).is_contiguous(memory_format=torch.channels_last)
    forms = _inference_forms(fused)
    assert forms and all(f.cache.store for f in forms)  # the folded tensors were cached
    with_dwc = [f for f in forms if f.attn.dwc is not None]  # small maps ran the DWC as cached Toeplitz matmuls
    assert all(("dwc", torch.device("cpu"), 12, 10) in f.cache.store for f in with_dwc)
    assert not any(("dwc", torch.device("cpu"), 20, 16) in f.cache.store for f in with_dwc)
    assert not any(p.requires_grad for f in forms for p in f.attn.parameters())  # inference only, like Conv + BN


def test_fused_detection_model_equals_unfused():
    import copy

    from models.yolo import DetectionModel

    cfg = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": 1,
           "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "FLA", [8, {"zero_init": False}]],
                        [-1, 1, "C3FLA", [64, {"num_heads": 4}]], [-1, 1, "Conv", [128, 3, 2]]],
           "head": [[[2, 3], 1, "Detect", ["nc", "anchors"]]]}  # fmt: skip
    torch.manual_seed(0)
    model = DetectionModel(cfg, verbose=False).eval()
    fused = copy.deepcopy(model).fuse()
    assert fused.model[1].fused is not None and fused.model[2].m[0].fused is not None
    for hw in [(64, 64), (96, 64)]:
        x = torch.rand(1, 3, *hw)
        with torch.no_grad():
            torch.testing.assert_close(fused(x)[0], model(x)[0], atol=1e-4, rtol=1e-4)


def test_state_dict_names_unchanged_and_fuse_adds_none():
    """Checkpoints (and the official-weight transfer) rely on these names: the channel-first rewrite kept them."""
    attn = {"scale", "positional_encoding", "q.weight", "q.bias", "kv.weight", "kv.bias", "proj.weight", "proj.bias",
            "dwc.weight", "dwc.bias"}  # fmt: skip
    m = FLA(16, 2)
    assert set(m.state_dict()) == {"norm.weight", "norm.bias"} | {f"attn.{k}" for k in attn}
    blk = {"norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias", "mlp.0.weight", "mlp.0.bias", "mlp.2.weight",
           "mlp.2.bias"} | {f"attn.{k}" for k in attn}  # fmt: skip
    assert set(FLABlock(16, 2).state_dict()) == blk
    assert set(_fused_pair(m)[1].state_dict()) == set(m.state_dict())


def test_one_constructor_vocabulary():
    import inspect

    from models.common import C3

    family = ("num_heads", "focusing_factor", "kernel_size", "ratio", "pos_enc", "zero_init")
    for cls in (FLA, FLABlock, C3FLA):
        assert set(family) <= set(inspect.signature(cls).parameters), cls.__name__
    c3 = list(inspect.signature(C3).parameters)
    assert list(inspect.signature(C3FLA).parameters)[: len(c3)] == c3  # `C3 [512, False]` -> `C3FLA [512, False]`
    m = FLABlock(32, 4, ratio=0.5, pos_enc=False, zero_init=True)
    assert m.attn.attn_dim == 16 and m.attn.positional_encoding is None
    x = torch.randn(1, 32, 3, 4)
    assert torch.equal(m(x), x)  # zero_init: attention output and MLP output start at zero
    c = C3FLA(16, 32, 1, False, 1, 0.5, 4, 2, 3, 0.5, False, True)  # all positional, in the documented order
    a = c.m[0].attn
    assert (a.num_heads, a.focusing_factor, a.dwc.kernel_size, a.attn_dim, a.positional_encoding) == (
        4,
        2,
        (3, 3),
        8,
        None,
    )
    assert torch.count_nonzero(a.proj.weight) == 0


def test_c3fla_bottleneck_keeps_c3_weights_and_starts_as_c3():
    from models.common import C3

    torch.manual_seed(0)
    c3 = C3(16, 32, 2, False).eval()
    keep = C3FLA(16, 32, 2, False, bottleneck=True, num_heads=4).eval()
    sd = c3.state_dict()
    target = keep.state_dict()
    assert all(k in target and target[k].shape == v.shape for k, v in sd.items())  # every C3 tensor has a home
    missing, unexpected = keep.load_state_dict(sd, strict=False)
    assert not unexpected and all(".fla." in k for k in missing)  # only the FLA residuals stay new
    x = torch.randn(2, 16, 9, 7)
    with torch.no_grad():
        assert torch.equal(keep(x), c3(x))  # zero-initialised FLA residuals: exactly the C3
    assert not C3FLA(16, 32, 1, bottleneck=True, zero_init=False, num_heads=4).m[0].fla.attn.proj.weight.eq(0).all()


def test_official_yolov5n_into_c3fla_keep_starts_at_the_pretrained_model(shared):
    """Step-0 parity: every yolov5n.pt tensor lands in yolov5n-c3fla-keep.yaml and the outputs are the same."""
    from models.load import model_from_dict
    from models.yolo import DetectionModel
    from utils.checkpoint import load_checkpoint
    from utils.transfer import transfer_weights

    official = load_checkpoint(shared / "weights" / "yolov5n.pt")["model"]
    src = model_from_dict(official).eval()
    model = DetectionModel("yolov5n-c3fla-keep.yaml", verbose=False)
    n, total = transfer_weights(official["state_dict"], official["yaml"], model)
    assert n == len(official["state_dict"]) == 349 and total > n
    model.eval()
    x = torch.rand(1, 3, 160, 128)
    with torch.no_grad():
        torch.testing.assert_close(model(x)[0], src(x)[0], atol=0, rtol=0)


def test_attention_parameter_groups():
    """hyp attn_lr: the FLA family's parameters get their own groups at lr * attn_lr; scale and the positional
    encoding are never decayed; without it the official three groups are unchanged."""
    from models.yolo import DetectionModel
    from utils.train.optim import apply_warmup, build_optimizer, build_scheduler

    cfg = {"nc": 3, "depth_multiple": 0.33, "width_multiple": 0.25, "anchors": 1,
           "backbone": [[-1, 1, "Conv", [64, 3, 2]], [-1, 1, "C3FLA", [64, {"num_heads": 4, "bottleneck": True}]],
                        [-1, 1, "Conv", [128, 3, 2]], [-1, 1, "FLA", [8]]],
           "head": [[[1, 3], 1, "Detect", ["nc", "anchors"]]]}  # fmt: skip
    model = DetectionModel(cfg, verbose=False)
    plain = build_optimizer(model, "SGD", lr=0.01, decay=5e-4)
    assert [g["name"] for g in plain.param_groups] == ["bias", "weight", "norm"]
    opt = build_optimizer(model, "SGD", lr=0.01, decay=5e-4, attn_lr=0.5)
    groups = {g["name"]: g for g in opt.param_groups}
    assert list(groups) == ["bias", "weight", "norm", "attn", "attn_no_decay"]
    assert groups["attn"]["lr"] == groups["attn_no_decay"]["lr"] == 0.005
    assert (groups["attn"]["weight_decay"], groups["attn_no_decay"]["weight_decay"]) == (5e-4, 0.0)
    ids = lambda name: {id(p) for p in groups[name]["params"]}  # noqa: E731
    fla, keep = model.model[3], model.model[1].m[0]
    assert {id(fla.attn.scale), id(fla.attn.positional_encoding), id(fla.norm.weight)} <= ids("attn_no_decay")
    assert {id(fla.attn.q.weight), id(fla.attn.dwc.weight), id(keep.fla.attn.kv.weight)} <= ids("attn")
    assert id(keep.cv1.conv.weight) in ids("weight")  # the kept (pretrained) bottleneck stays in YOLOv5's groups
    n_all = sum(len(g["params"]) for g in opt.param_groups)
    assert n_all == len(list(model.parameters())) == sum(len(g["params"]) for g in plain.param_groups)
    build_scheduler(opt, epochs=10, lrf=0.01)
    hyp = {"warmup_bias_lr": 0.1, "warmup_momentum": 0.8, "momentum": 0.937}
    apply_warmup(opt, ni=50, nw=100, lr_factor=1.0, hyp=hyp, batch_size=16)
    assert groups["attn"]["lr"] == pytest.approx(0.0025)  # half-way through warmup from 0, at its own rate
