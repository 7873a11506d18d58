"""Benchmark: a hyperparameter map (issue #19) against a per-pixel loop, in one run.

The network of the fractal-trainability experiment (Sohl-Dickstein 2024): a two-layer tanh
network of width 16 without biases, f(x) = W1 tanh(W0 x) / ..., on Gaussian data with as many
samples as parameters (d_in = 8: 8*16 + 16*1 = 144 parameters, 144 samples), MSE; the map is over
the two layers' learning-rate multipliers (log-spaced), every pixel from the same initial point,
1000 steps of GD in float64 (each pixel stops early once decided).

* gdstab: ``hyperparameter_map`` (all pixels through the compiled engine, vmapped);
* a per-pixel loop: what a user would write, one jitted ``lax.fori_loop`` of 1000 GD steps per
  pixel (compiled once, the step sizes as arguments), no classification.

Prints pixels/s of both and the ratio, and the projected time of a 512 x 512 map.

    python benchmarks/hypermap.py              # a 128 x 128 map
    python benchmarks/hypermap.py --side 512   # the full 512 x 512 map
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

SIDE, LOOP_PIXELS, STEPS = 128, 64, 1000
if "--side" in sys.argv:  # e.g. --side 512 for the full map (about 25 minutes)
    SIDE = int(sys.argv[sys.argv.index("--side") + 1])


def main() -> None:
    import jax
    import jax.numpy as jnp

    from gdstab import Problem
    from gdstab.hypermaps import hyperparameter_map
    from gdstab.problems import parameter_groups

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(144, 8)), rng.normal(size=(144, 1))

    def loss(p, data):
        x, y = data
        return jnp.mean((jnp.tanh(x @ p["w0"]) @ p["w1"] / 4.0 - y) ** 2)

    with jax.enable_x64(True):
        p = Problem.from_jax(loss, {"w0": jnp.zeros((8, 16)), "w1": jnp.zeros((16, 1))}, (X, Y))
        th0 = np.asarray(p.init(jax.random.key(0), 1))[0]
    m = np.geomspace(0.05, 50.0, SIDE)
    hyperparameter_map(p, ("lr:w0", m[:8]), ("lr:w1", m[:8]), eta=1.0, theta0=th0, steps=STEPS)  # compile
    t0 = time.perf_counter()
    ds = hyperparameter_map(p, ("lr:w0", m), ("lr:w1", m), eta=1.0, theta0=th0, steps=STEPS)
    t_map = time.perf_counter() - t0
    idx = np.zeros(p.dim, int)
    for i, ix in enumerate(parameter_groups(p).values()):
        idx[ix] = i
    with jax.enable_x64(True):
        grad = jax.grad(p.loss)
        mask = jnp.asarray(idx)

        @jax.jit
        def run(theta, m0, m1):
            lr = jnp.where(mask == 0, m0, m1)
            return jax.lax.fori_loop(0, STEPS, lambda i, t: t - lr * grad(t), theta)

        run(jnp.asarray(th0), 1.0, 1.0).block_until_ready()
        pix = rng.integers(0, SIDE, size=(LOOP_PIXELS, 2))
        t0 = time.perf_counter()
        for a, b in pix:
            run(jnp.asarray(th0), m[a], m[b]).block_until_ready()
        t_loop = time.perf_counter() - t0
    print(describe())
    print(f"two-layer tanh network, d = {p.dim}, {len(X)} samples, {STEPS} GD steps per pixel, float64")
    frac = {k: float(np.mean(ds.status.values == v)) for k, v in (("converged", 1), ("diverged", 2))}
    print(f"gdstab hyperparameter_map {SIDE}x{SIDE}: {t_map:.1f} s, {SIDE * SIDE / t_map:.0f} pixels/s "
          f"(fractions {frac}; decided pixels stop early)")
    print(f"per-pixel jitted loop, {LOOP_PIXELS} random pixels: {LOOP_PIXELS / t_loop:.1f} pixels/s")
    print(f"ratio {SIDE * SIDE / t_map / (LOOP_PIXELS / t_loop):.2f}x; projected 512x512: gdstab "
          f"{512 * 512 * t_map / SIDE**2 / 60:.1f} min, loop {512 * 512 * t_loop / LOOP_PIXELS / 3600:.1f} h")


if __name__ == "__main__":
    main()
