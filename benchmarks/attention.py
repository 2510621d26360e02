"""Benchmark FLA against an independent rendering of the paper's math, softmax attention and linear attention.

    python benchmarks/attention.py [--dim 128] [--heads 4] [--sizes 20 40 80 160] [--plot attention.png]

Prints a Markdown table: forward time, forward+backward time and peak memory of forward+backward per method and
token count N = size^2, and each method's forward CPU time over FLA-paper's (the plain einsum rendering with
its own weights, timed on the same NCHW input, its layout changes and positional-encoding resize included).
Forwards are timed interleaved. Softmax attention is skipped above --softmax-max tokens (its N x N matrix).
Methods: FLA (FocusedLinearAttention), FLA-fused (after fuse()), FLA-paper, softmax (C3TR's call),
softmax-sdpa (fused kernel), linear (FLA without focusing and DWC).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn

from models.fla import FocusedLinearAttention
from models.fla_reference import paper_attention


class SoftmaxAttention(nn.Module):
    """Softmax self-attention over H*W tokens as in C3TR: q/k/v Linear + nn.MultiheadAttention. (B,C,H,W).

    need_weights=True is how YOLOv5's C3TR calls it (the N x N weights are materialised); False lets PyTorch
    use its fused scaled-dot-product kernel.
    """

    def __init__(self, dim: int, num_heads: int, need_weights: bool = True):
        super().__init__()
        self.q, self.k, self.v = (nn.Linear(dim, dim, bias=False) for _ in range(3))
        self.ma = nn.MultiheadAttention(dim, num_heads, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = x.flatten(2).transpose(1, 2)  # (B, N, C)
        out = self.ma(self.q(t), self.k(t), self.v(t), need_weights=self.need_weights)[0]
        return out.transpose(1, 2).reshape_as(x)


class PaperFLA(nn.Module):
    """The paper's math as models/fla_reference.py writes it out (`paper_attention`): the speed reference for FLA.

    Its own parameters (copy them from a FocusedLinearAttention with `load_from` to compare outputs), the
    linear layers as einsum, direct powers, NCHW -> (B, N, C) tokens and back, and the positional encoding
    resized bilinearly on every call, as a port of the reference code to any input size would do.
    (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, dim: int, num_heads: int = 8, focusing_factor: float = 3, kernel_size: int = 5,
                 base_size: int = 20):  # fmt: skip
        super().__init__()
        d = dim // num_heads
        self.num_heads, self.p, self.base = num_heads, focusing_factor, base_size
        self.wq, self.bq = nn.Parameter(torch.randn(dim, dim) * dim**-0.5), nn.Parameter(torch.zeros(dim))
        self.wkv, self.bkv = nn.Parameter(torch.randn(2 * dim, dim) * dim**-0.5), nn.Parameter(torch.zeros(2 * dim))
        self.wp, self.bp = nn.Parameter(torch.randn(dim, dim) * dim**-0.5), nn.Parameter(torch.zeros(dim))
        self.dw, self.db = nn.Parameter(torch.randn(d, 1, kernel_size, kernel_size) * 0.2), nn.Parameter(torch.zeros(d))
        self.scale = nn.Parameter(torch.zeros(1, 1, dim))
        self.pe = nn.Parameter(torch.randn(1, base_size * base_size, dim) * 0.02)

    @torch.no_grad()
    def load_from(self, m: FocusedLinearAttention) -> PaperFLA:
        """Copy the weights of a full-width FocusedLinearAttention (same dim, heads, kernel, base size)."""
        pairs = [(self.wq, m.q.weight), (self.bq, m.q.bias), (self.wkv, m.kv.weight), (self.bkv, m.kv.bias),
                 (self.wp, m.proj.weight), (self.bp, m.proj.bias), (self.dw, m.dwc.weight), (self.db, m.dwc.bias),
                 (self.scale, m.scale), (self.pe, m.positional_encoding)]  # fmt: skip
        for dst, src in pairs:
            dst.copy_(src)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = {"wq": self.wq, "bq": self.bq, "wkv": self.wkv, "bkv": self.bkv, "wp": self.wp, "bp": self.bp,
             "dw": self.dw, "db": self.db, "scale": self.scale, "pe": self.pe, "base": (self.base, self.base),
             "heads": self.num_heads, "p": self.p}  # fmt: skip
        return paper_attention(x, w)


def build(method: str, dim: int, heads: int) -> nn.Module:
    """A fresh eval-mode module for a benchmark method name (see --methods)."""
    if method in ("FLA", "FLA-fused"):
        m = FocusedLinearAttention(dim, heads)
        return m.fuse() if method == "FLA-fused" else m
    if method == "linear":
        return FocusedLinearAttention(dim, heads, focusing_factor=1, kernel_size=0)
    if method in ("softmax", "softmax-sdpa"):
        return SoftmaxAttention(dim, heads, need_weights=method == "softmax")
    if method == "FLA-paper":
        return PaperFLA(dim, heads)
    raise ValueError(method)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(fns: dict, runs: int, device: torch.device) -> dict:
    """{name: (median wall ms, median process CPU ms)} of fns called in turn, the start rotating every round.

    Interleaving exposes every method to the same machine load; CPU time (all threads) is not inflated by
    waiting for other processes. One warm-up call each first.
    """
    for fn in fns.values():
        fn()
    keys = list(fns)
    wall: dict = {k: [] for k in keys}
    cpu: dict = {k: [] for k in keys}
    for r in range(runs):
        for k in keys[r % len(keys) :] + keys[: r % len(keys)]:
            t0, c0 = time.perf_counter(), time.process_time()
            fns[k]()
            _sync(device)
            wall[k].append((time.perf_counter() - t0) * 1000)
            cpu[k].append((time.process_time() - c0) * 1000)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in keys}


def peak_mb(fn, device: torch.device) -> float:
    """Peak memory allocated during fn() in MB (CUDA allocator stats, or the profiler's CPU allocation trace)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cur = peak = 0
    for e in sorted(prof.events(), key=lambda e: e.time_range.start):  # allocations (+) and frees (-) in order
        cur += e.self_cpu_memory_usage
        peak = max(peak, cur)
    return peak / 2**20


def bench_size(size: int, methods: list, opt: argparse.Namespace, device: torch.device) -> dict:
    """{method: result dict} at one size: forwards timed interleaved, then fwd+bwd (not for -fused) one by one."""
    torch.manual_seed(0)
    x = torch.randn(opt.batch, opt.dim, size, size, device=device)
    mods = {m: build(m, opt.dim, opt.heads).to(device).eval() for m in methods}

    def fwd(m: nn.Module):
        def call():
            with torch.no_grad():
                m(x)

        return call

    def fwd_bwd(m: nn.Module):
        def call():
            xi = x.clone().requires_grad_(True)
            m(xi).sum().backward()

        return call

    fwd_t = time_interleaved({k: fwd(m) for k, m in mods.items()}, opt.runs, device)
    out = {}
    for k, m in mods.items():
        out[k] = {"fwd": fwd_t[k][0], "fwd_cpu": fwd_t[k][1]}
        if not k.endswith("-fused"):  # fuse() is inference only
            (fb_wall, fb_cpu) = time_interleaved({k: fwd_bwd(m)}, opt.runs, device)[k]
            out[k].update({"fwd+bwd": fb_wall, "fwd+bwd_cpu": fb_cpu, "mem": peak_mb(fwd_bwd(m), device)})
    return out


def run(opt: argparse.Namespace) -> dict:
    """{(method, size): result dict or None when skipped}."""
    device = torch.device(opt.device)
    results = {}
    for size in opt.sizes:
        skip = [m for m in opt.methods if m.startswith("softmax") and size * size > opt.softmax_max]
        results.update({(m, size): None for m in skip})
        done = bench_size(size, [m for m in opt.methods if m not in skip], opt, device)
        results.update({(m, size): r for m, r in done.items()})
        print(f"done N={size}x{size}", file=sys.stderr, flush=True)
    return results


def _ratio(results: dict, method: str, size: int, ref: str = "FLA-paper") -> str:
    r, base = results.get((method, size)), results.get((ref, size))
    return f"{r['fwd_cpu'] / base['fwd_cpu']:.2f}" if r and base and method != ref else ""


def markdown(results: dict, opt: argparse.Namespace) -> str:
    rows = [
        f"C={opt.dim}, heads={opt.heads}, batch={opt.batch}, device={opt.device}, threads={opt.threads}, "
        f"medians of {opt.runs} runs, forwards interleaved; ratio = forward CPU time / FLA-paper's",
        "",
        "| method | N (tokens) | forward ms | fwd+bwd ms | forward CPU ms | fwd+bwd CPU ms | peak fwd+bwd MB "
        "| / FLA-paper |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in opt.sizes:
        for method in opt.methods:
            r = results[method, size]
            n = f"{size}x{size} = {size * size}"
            if r is None:
                rows.append(f"| {method} | {n} |" + " skipped |" * 6)
                continue
            cells = [f"{r[k]:.2f}" if k in r else "-" for k in ("fwd", "fwd+bwd", "fwd_cpu", "fwd+bwd_cpu")]
            cells.append(f"{r['mem']:.1f}" if "mem" in r else "-")
            rows.append(f"| {method} | {n} | {' | '.join(cells)} | {_ratio(results, method, size)} |")
    return "\n".join(rows)


def plot(results: dict, opt: argparse.Namespace, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method in opt.methods:
        pts = [(s * s, results[method, s]) for s in opt.sizes if results[method, s] is not None]
        axes[0].plot([n for n, _ in pts], [r["fwd+bwd"] for _, r in pts], "o-", label=method)
        axes[1].plot([n for n, _ in pts], [r["mem"] for _, r in pts], "o-", label=method)
    for ax, label in zip(axes, ("fwd+bwd time (ms)", "peak memory (MB)")):
        ax.set(xscale="log", yscale="log", xlabel="tokens N", ylabel=label)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def parse_opt(argv: list | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--sizes", type=int, nargs="+", default=[20, 40, 80, 160], help="H = W of the feature map")
    p.add_argument(
        "--methods", nargs="+", default=["FLA", "FLA-fused", "FLA-paper", "softmax", "softmax-sdpa", "linear"]
    )
    p.add_argument("--softmax-max", type=int, default=80 * 80, help="skip softmax above this many tokens")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--plot", default="", help="save a log-log plot to this .png")
    return p.parse_args(argv)


def main(opt: argparse.Namespace) -> str:
    threads = torch.get_num_threads()
    torch.set_num_threads(opt.threads)
    try:
        results = run(opt)
    finally:
        torch.set_num_threads(threads)
    table = markdown(results, opt)
    print(table)
    if opt.plot:
        plot(results, opt, opt.plot)
    return table


if __name__ == "__main__":
    main(parse_opt())
