"""Benchmark: the top-10 Hessian eigenvalues of a 10⁶-parameter model (issue #19, item 5), with
the process's peak memory.

A one-hidden-layer tanh MLP of width 1 270 on 1 000 MNIST 0/1 digits (784 → 1270 → 2, biases:
d = 999 492), MSE, float64, at an initialisation; ``spectrum.top_eigenvalues`` (ARPACK's
implicitly restarted Lanczos on Hessian-vector products, ncv = 21 vectors).

    python benchmarks/top_eigenvalues.py
"""

import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def main() -> None:
    import jax

    from gdstab import problems, spectrum
    from gdstab.problems import mnist

    with jax.enable_x64(True):
        p = problems.mlp(depth=1, width=1270, data=mnist((0, 1), n=500), activation="tanh", loss="mse")
        th = np.asarray(p.init(jax.random.key(0), 1))[0]
        mv = spectrum.hvp(p, th)
        mv(np.ones(p.dim))
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        r = spectrum.top_eigenvalues(mv, p.dim, 10, key=jax.random.key(1), tol=1e-8)
        t = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(describe())
    print(f"d = {p.dim}: top-10 in {t:.1f} s, {r.matvecs} Hessian-vector products ({1e3 * t / r.matvecs:.0f} ms each), "
          f"converged {r.converged}, largest residual {r.residuals.max():.1e}")
    print("eigenvalues", np.round(r.eigenvalues, 6).tolist())
    print(f"peak resident memory {peak:.2f} GiB (before the eigensolver {before:.2f} GiB); "
          f"one vector is {8 * p.dim / 2**20:.1f} MiB: ncv = 21 vectors {21 * 8 * p.dim / 2**30:.2f} GiB, "
          f"300 (the plain Lanczos' cap) {300 * 8 * p.dim / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
