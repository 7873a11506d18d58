"""Small statistics used across gdstab."""

from __future__ import annotations

import math

__all__ = ["wilson_interval", "relative_spread", "Z95"]

#: two-sided 95% standard-normal quantile
Z95 = 1.959963984540054


def wilson_interval(k: int, n: int, z: float = Z95) -> tuple[float, float, float]:
    """Proportion k/n and its Wilson score interval ``(p, low, high)``.

    For n = 0 the proportion is undefined: returns ``(nan, 0.0, 1.0)``.
    """
    if n < 0 or k < 0 or k > n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n. Got k={k}, n={n} instead.")
    if n == 0:
        return math.nan, 0.0, 1.0
    p = k / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    low = 0.0 if k == 0 else max(0.0, centre - half)  # exact endpoints where rounding would blur them
    high = 1.0 if k == n else min(1.0, centre + half)
    return p, low, high


def relative_spread(values) -> float:
    """(max − min) / min of the finite values: how far apart the results of several starts of
    one estimate end.  NaN with fewer than two finite values or a minimum <= 0."""
    v = [float(x) for x in values if math.isfinite(float(x))]
    if len(v) < 2 or min(v) <= 0:
        return math.nan
    return (max(v) - min(v)) / min(v)
