"""Benchmark: basin map of ½(1 − xy)² at one step size (issue #8).

2048 × 2048 pixels of [−2, 2]², η = 0.9, T = 1000, default criteria: gdstab.basins.basin_map
(all pixels in one vectorised engine call: the compiled toy kernel on all cores, and the JAX
engine) against the naive NumPy-vectorised loop (gdstab._reference.numpy_engine, one array
operation per step over all pixels, decided pixels dropped at segment boundaries) on a
512 × 512 sub-grid (per-pixel rates compared).  All in one run; results must agree.

    python benchmarks/basin_map.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def main() -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from gdstab import Criteria, basins, problems
    from gdstab._reference import TOY_GRADS_NP, numpy_engine

    print(describe())
    p = problems.get("hyperbola")
    eta, T = 0.9, 1000
    basins.basin_map(p, eta, resolution=64, steps=T)  # warm-up
    basins.basin_map(p, eta, resolution=64, steps=T, backend="jax")
    rates = {}
    for name, n, kw in (("gdstab native kernel", 2048, {}), ("gdstab JAX engine", 512, {"backend": "jax"})):
        t0 = time.perf_counter()
        ds = basins.basin_map(p, eta, resolution=n, steps=T, **kw)
        wall = time.perf_counter() - t0
        rates[name] = n * n / wall
        frac = {k: float((ds.status.values == c).mean()) for k, c in basins.BASIN_CODES.items()}
        print(f"{name:<22} {n} x {n}: {wall:7.2f} s, {rates[name]:.3g} pixels/s; "
              + ", ".join(f"{k} {v:.3f}" for k, v in frac.items() if v))
    n = 512
    a = np.linspace(-2, 2, n)
    A, B = np.meshgrid(a, a)
    th = np.stack([A.ravel(), B.ravel()], axis=1)
    t0 = time.perf_counter()
    st, step, per, _ = numpy_engine(TOY_GRADS_NP["hyperbola"], th, np.full(n * n, eta), T, Criteria())
    wall = time.perf_counter() - t0
    rates["NumPy loop"] = n * n / wall
    ref = basins.basin_map(p, eta, resolution=n, steps=T)
    same = np.array_equal(ref.decision_step.values.ravel(), step)
    print(f"{'NumPy loop':<22} {n} x {n}: {wall:7.2f} s, {rates['NumPy loop']:.3g} pixels/s (decision steps equal "
          f"to gdstab's: {same})")
    base = rates["NumPy loop"]
    print("ratios to the NumPy loop: " + ", ".join(f"{k} {v / base:.1f}x" for k, v in rates.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
