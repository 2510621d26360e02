"""Benchmark FLA against softmax attention, plain linear attention and an einsum rendering of the FLA math.

    python benchmarks/attention.py [--dim 128] [--heads 4] [--sizes 20 40 80 160] [--plot attention.png]

Prints a Markdown table: forward time, forward+backward time and peak memory of forward+backward per method and
token count N = size^2. Softmax attention is skipped above --softmax-max tokens (its N x N matrix).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.fla import FocusedLinearAttention


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


class EinsumFLA(nn.Module):
    """The FLA math written straightforwardly with einsum and direct powers, sharing weights with `fla`."""

    def __init__(self, fla: FocusedLinearAttention):
        super().__init__()
        self.fla = fla

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.fla
        b, c, h, w = x.shape
        n, nh, d = h * w, m.num_heads, m.head_dim
        t = x.flatten(2).transpose(1, 2)
        q, (k, v) = m.q(t), m.kv(t).chunk(2, -1)
        k = k + m.positional_encoding_at(h, w)
        s = F.softplus(m.scale)

        def focus(z: torch.Tensor) -> torch.Tensor:
            z = (F.relu(z) + 1e-6) / s
            zp = z**m.focusing_factor
            return zp * z.norm(dim=-1, keepdim=True) / zp.norm(dim=-1, keepdim=True)

        q, k = focus(q), focus(k)
        q, k, v = (z.reshape(b, n, nh, d) for z in (q, k, v))
        kv = torch.einsum("bnhc,bnhe->bhce", k / math.sqrt(n), v / math.sqrt(n))
        z = 1 / (torch.einsum("bnhc,bhc->bnh", q, k.mean(1)) + 1e-6)
        out = torch.einsum("bnhc,bhce,bnh->bnhe", q, kv, z)
        fm = m.dwc(v.permute(0, 2, 3, 1).reshape(b * nh, d, h, w))
        out = out + fm.reshape(b, nh, d, n).permute(0, 3, 1, 2)
        out = m.proj(out.reshape(b, n, c))
        return out.transpose(1, 2).reshape_as(x)


def build(method: str, dim: int, heads: int) -> nn.Module:
    if method == "FLA":
        return FocusedLinearAttention(dim, heads)
    if method == "linear":
        return FocusedLinearAttention(dim, heads, focusing_factor=1, kernel_size=0)
    if method in ("softmax", "softmax-sdpa"):
        return SoftmaxAttention(dim, heads, need_weights=method == "softmax")
    if method == "FLA-einsum":
        return EinsumFLA(FocusedLinearAttention(dim, heads))
    raise ValueError(method)


def time_ms(fn, runs: int) -> tuple[float, float]:
    """Best wall time and best process CPU time (all threads) of fn() in ms, after one warm-up call.

    The minimum is robust on a shared machine; CPU time is not inflated by waiting for other processes.
    """
    fn()
    wall, cpu = [], []
    for _ in range(runs):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return min(wall), min(cpu)


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


def bench(method: str, size: int, opt: argparse.Namespace, device: torch.device) -> dict:
    torch.manual_seed(0)
    m = build(method, opt.dim, opt.heads).to(device)
    x = torch.randn(opt.batch, opt.dim, size, size, device=device)

    def fwd():
        with torch.no_grad():
            m(x)

    def fwd_bwd():
        xi = x.clone().requires_grad_(True)
        m(xi).sum().backward()

    (f_wall, f_cpu), (fb_wall, fb_cpu) = time_ms(fwd, opt.runs), time_ms(fwd_bwd, opt.runs)
    return {"fwd": f_wall, "fwd_cpu": f_cpu, "fwd+bwd": fb_wall, "fwd+bwd_cpu": fb_cpu, "mem": peak_mb(fwd_bwd, device)}


def run(opt: argparse.Namespace) -> dict:
    """{(method, size): result dict or None when skipped}."""
    device = torch.device(opt.device)
    results = {}
    for size in opt.sizes:
        for method in opt.methods:
            if method.startswith("softmax") and size * size > opt.softmax_max:
                results[method, size] = None
                continue
            results[method, size] = bench(method, size, opt, device)
            print(f"done {method} N={size}x{size}", file=sys.stderr, flush=True)
    return results


def markdown(results: dict, opt: argparse.Namespace) -> str:
    rows = [
        f"C={opt.dim}, heads={opt.heads}, batch={opt.batch}, device={opt.device}, threads={opt.threads}",
        "",
        "| method | N (tokens) | forward ms | fwd+bwd ms | forward CPU ms | fwd+bwd CPU ms | peak fwd+bwd MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for size in opt.sizes:
        for method in opt.methods:
            r = results[method, size]
            n = f"{size}x{size} = {size * size}"
            if r is None:
                rows.append(f"| {method} | {n} |" + " skipped |" * 5)
            else:
                times = " | ".join(f"{r[k]:.2f}" for k in ("fwd", "fwd+bwd", "fwd_cpu", "fwd+bwd_cpu"))
                rows.append(f"| {method} | {n} | {times} | {r['mem']:.1f} |")
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
    p.add_argument("--methods", nargs="+", default=["FLA", "softmax", "softmax-sdpa", "linear", "FLA-einsum"])
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
