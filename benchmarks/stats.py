"""Welch's t-test with its two-sided p-value, in plain Python (no SciPy needed by the studies)."""

from __future__ import annotations

import math
import statistics
from typing import List, Tuple


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta function (modified Lentz, 200 terms at most)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 201):
        even = m * (b - m) * x / ((qam + 2 * m) * (a + 2 * m))
        odd = -(a + m) * (qab + m) * x / ((a + 2 * m) * (qap + 2 * m))
        for num in (even, odd):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-14:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b) for a, b > 0 and 0 <= x <= 1."""
    if x <= 0.0 or x >= 1.0:
        return max(0.0, min(1.0, x))
    ln = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(ln) * _betacf(a, b, x) / a
    return 1.0 - math.exp(ln) * _betacf(b, a, 1.0 - x) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with df (real) degrees of freedom."""
    return betainc(df / 2.0, 0.5, df / (df + t * t))


def welch_test(a: List[float], b: List[float]) -> Tuple[float, float, float]:
    """Welch's t of mean(a) - mean(b), its Welch-Satterthwaite degrees of freedom and two-sided p.

    (nan, nan, nan) when either side has fewer than 2 values or neither has any spread.
    """
    nan = float("nan")
    if len(a) < 2 or len(b) < 2:
        return nan, nan, nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return nan, nan, nan
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return t, df, t_two_sided_p(t, df)
