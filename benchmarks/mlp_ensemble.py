"""Benchmark: full-batch GD on ensembles of MLPs on MNIST digits 0/1 (issues #6, #14).

784-32×depth-1 GELU + MSE MLPs on the first ``samples`` images of the offline MNIST subset,
``n`` trajectories (random initialisations) × 100 GD steps at η = 0.05, through
``gdstab.trajectories`` (JAX engine: one compiled loop, vmap over the trajectories, per-trajectory
classification) against what a user would otherwise write: a per-model loop, one jitted
``lax.fori_loop`` of the same 100 plain GD steps run model after model (no classification).
Both timed on their second call (compiled), in one run; the final losses must agree.  Like the
``gdstab`` command, the script asks XLA:CPU for 512-bit vectors on AVX-512 CPUs
(:func:`gdstab.dynamics.use_wide_cpu_vectors`; ``--no-wide-vectors`` leaves its default).  The last
column is gdstab's rate of matrix-product flops (:func:`_matmul_flops`) over the GEMM peak of a
2048² product in the same dtype, measured in the same round; ``--rounds`` (default 3) repeats the
peak and every case, alternating, and the table gives medians (a shared machine moves single
calls by up to 2×).

    python benchmarks/mlp_ensemble.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

CASES = (  # (samples, depth, dtype, trajectories)
    (200, 1, "float32", 16),
    (200, 1, "float64", 16),
    (1000, 1, "float32", 16),
    (200, 16, "float32", 16),
    (200, 1, "float32", 64),
    (200, 2, "float64", 16),
    (200, 8, "float64", 16),
)
WIDTH = 32


def _matmul_flops(n: int, depth: int) -> float:
    """Flops of the matrix products of one GD step of a 784-32xdepth-2 MLP on ``n`` inputs:
    forward 2*n*in*out per layer, backward the same twice (weight and input gradients), less
    the input gradient of the first layer (the data are not differentiated)."""
    dims = [784] + [WIDTH] * depth + [2]
    return sum(6.0 * n * a * b for a, b in zip(dims, dims[1:])) - 2.0 * n * dims[0] * dims[1]


def _gemm_peak(dtype: str, size: int = 2048, repeat: int = 5) -> float:
    """Flop/s of a jitted size x size matrix product in ``dtype`` (best of ``repeat``)."""
    import jax
    import jax.numpy as jnp

    a = jnp.asarray(np.random.default_rng(0).normal(size=(size, size)), dtype=dtype)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = min(_timed(lambda: f(a).block_until_ready()) for _ in range(repeat))
    return 2.0 * size ** 3 / best


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
STEPS, ETA = 100, 0.05


def _per_model_loop(problem, theta0: np.ndarray, dtype: str):
    import jax
    import jax.numpy as jnp

    grad = jax.grad(problem.loss)

    @jax.jit
    def run(th):
        return jax.lax.fori_loop(0, STEPS, lambda _, t: t - ETA * grad(t), th)

    def all_models():
        return np.stack([np.asarray(run(jnp.asarray(t, dtype=dtype))) for t in theta0])

    return all_models


def _case(p, th0, dtype: str, n: int) -> tuple[dict, float]:
    """One case: gdstab's and the per-model loop's trajectory-steps/s (second, compiled call of
    each) and the largest difference of their final losses."""
    import jax

    from gdstab import Criteria, trajectories

    crit = Criteria(tol=1e-30)  # nothing settles in 100 steps: every trajectory runs all of them
    with jax.enable_x64(dtype == "float64"):
        loop = _per_model_loop(p, th0, dtype)
        times = {}
        for name, fn in (("gdstab", lambda: trajectories(p, th0, ETA, steps=STEPS, dtype=dtype, criteria=crit,
                                                         backend="jax")),
                         ("loop", loop)):
            fn()  # compile
            t0 = time.perf_counter()
            out = fn()
            times[name] = (time.perf_counter() - t0, out)
        res, final = times["gdstab"][1], times["loop"][1]
        loss_loop = np.array([float(p.loss(jax.numpy.asarray(t))) for t in final])
    rate = {k: n * STEPS / v[0] for k, v in times.items()}
    return rate, float(np.max(np.abs(res.loss - loss_loop)))


def main() -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-wide-vectors", action="store_true",
                    help="leave XLA:CPU at its 256-bit default (the gdstab command asks for 512 on AVX-512 CPUs)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="measure the GEMM peak and every case this many times, alternating (default 3); the "
                         "table gives medians, the last column the median and range of the per-round percentages")
    args = ap.parse_args()
    if args.rounds < 1:
        ap.error(f"--rounds: expected a count >= 1, got {args.rounds}")
    from gdstab.dynamics import use_wide_cpu_vectors

    wide = False if args.no_wide_vectors else use_wide_cpu_vectors()  # as the gdstab command runs
    import jax

    jax.config.update("jax_enable_x64", True)
    from gdstab import problems
    from gdstab.random import init_points

    print(describe(), f"XLA:CPU 512-bit vectors: {'yes' if wide else 'no'}")
    cases = [(c, problems.get("mlp", depth=c[1], samples=c[0])) for c in CASES]
    rows: dict = {c: [] for c in CASES}
    peaks = []
    for r in range(args.rounds):
        peak = {dt: _gemm_peak(dt) for dt in ("float32", "float64")}
        peaks.append(peak)
        for (samples, depth, dtype, n), p in cases:
            rate, diff = _case(p, init_points(p, 0, np.arange(n)), dtype, n)
            pct = 100 * rate["gdstab"] * _matmul_flops(p.n_samples, depth) / peak[dtype]
            rows[(samples, depth, dtype, n)].append((rate["gdstab"], rate["loop"], diff, pct))
        print(f"round {r + 1}/{args.rounds} done", flush=True)
    for dt in ("float32", "float64"):
        vals = [pk[dt] / 1e9 for pk in peaks]
        print(f"GEMM peak {dt} (2048^2 matrix product, per round): " + ", ".join(f"{v:.1f}" for v in vals) + " GFLOP/s")
    print(f"{'samples':>8} {'depth':>5} {'dtype':>8} {'n':>4}  {'gdstab traj-steps/s':>20}  "
          f"{'per-model loop':>15}  {'ratio':>6}  {'max |dL|':>9}  {'% of GEMM peak (range)':>22}")
    for (samples, depth, dtype, n), got in rows.items():
        g, lp, diff, pct = (np.array([x[i] for x in got]) for i in range(4))
        ratio = np.median(g / lp)
        print(f"{samples:>8} {depth:>5} {dtype:>8} {n:>4}  {np.median(g):>20,.0f}  {np.median(lp):>15,.0f}  "
              f"{ratio:>5.2f}x  {diff.max():>9.2e}  {np.median(pct):>7.0f}% ({pct.min():.0f}-{pct.max():.0f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
