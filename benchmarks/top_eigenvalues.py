"""Benchmark: the top-10 Hessian eigenvalues of a 10⁶-parameter model (issue #19, item 5), with
the process's peak memory.

A one-hidden-layer tanh MLP of width 1 270 on 1 000 MNIST 0/1 digits (784 → 1270 → 2, biases:
d = 999 492), MSE, float64, at an initialisation; ``spectrum.top_eigenvalues`` with both of
its solvers on the same Hessian-vector products (ncv = 21 vectors each): the Krylov-Schur
restarted Lanczos whose basis stays a JAX array on the device (the default), and ARPACK's
implicitly restarted Lanczos through ``scipy.sparse.linalg.eigsh`` (host vectors).  Each solver
runs in a fresh process so that its peak memory is its own.

    python benchmarks/top_eigenvalues.py [--width 1270]
"""

import argparse
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def one(method: str, width: int) -> None:
    import jax

    from gdstab import problems, spectrum
    from gdstab.problems import mnist

    with jax.enable_x64(True):
        p = problems.mlp(depth=1, width=width, data=mnist((0, 1), n=500), activation="tanh", loss="mse")
        th = np.asarray(p.init(jax.random.key(0), 1))[0]
        mv = spectrum.hvp(p, th)
        mv(np.ones(p.dim))
        spectrum.top_eigenvalues(mv, p.dim, 10, key=jax.random.key(1), tol=1e-8, method=method, max_iter=25)  # compile
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        t0 = time.perf_counter()
        r = spectrum.top_eigenvalues(mv, p.dim, 10, key=jax.random.key(1), tol=1e-8, method=method)
        t = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"{method:>12}: d = {p.dim}: top-10 in {t:.1f} s, {r.matvecs} Hessian-vector products "
          f"({1e3 * t / r.matvecs:.0f} ms per product, solver included), converged {r.converged}, largest residual "
          f"{r.residuals.max():.1e}; peak resident memory {peak:.2f} GiB (before the solve {before:.2f} GiB)")
    print(f"{'':>12}  eigenvalues", np.round(r.eigenvalues, 6).tolist())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--width", type=int, default=1270)
    ap.add_argument("--method", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.method:
        return one(a.method, a.width)
    print(describe())
    for method in ("krylov-schur", "eigsh"):
        subprocess.run([sys.executable, __file__, "--width", str(a.width), "--method", method], check=True)
    d = 784 * a.width + a.width + 2 * a.width + 2
    print(f"one vector is {8 * d / 2**20:.1f} MiB: ncv + 1 = 21 vectors {21 * 8 * d / 2**30:.2f} GiB, "
          f"300 (the former unrestarted Lanczos' cap) {300 * 8 * d / 2**30:.2f} GiB")


if __name__ == "__main__":
    main()
