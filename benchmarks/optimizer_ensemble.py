"""Benchmark: update rules on the one loop (issue #15): GD, heavy-ball momentum, Nesterov and Adam
ensembles of the 784→32→32→2 MLP (tanh, MSE) on MNIST digits 0/1.

``n`` trajectories × ``STEPS`` full-batch steps through ``gdstab.trajectories`` (JAX engine, per-
trajectory classification on the full state) for each rule, in one run, best of ``REPEATS``
timed calls after a compiling one, all taken round-robin; and what a user would otherwise write: a per-model loop of
the same steps calling optax directly (jitted ``lax.fori_loop``, model after model, no
classification).  Prints model-steps/s, each rule's rate relative to GD's (the acceptance of
issue #15: momentum and Adam >= 85 % of GD), the same ratio for the per-model optax loop (what the
rule's own arithmetic costs where the gradient is cheap) and gdstab's rate relative to the loop.

    python benchmarks/optimizer_ensemble.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

CASES = (  # (samples, dtype, trajectories)
    (1000, "float32", 16),
    (200, "float32", 64),
    (200, "float64", 16),
)
RULES = ("gd", "momentum:0.9", "nesterov:0.9", "adam:0.9,0.999")
STEPS, ETA, REPEATS = 100, 1e-3, 5


def _optax_loop(problem, theta0: np.ndarray, spec: str, dtype: str):
    import jax
    import jax.numpy as jnp
    import optax

    from gdstab.optimizers import parse_rule

    r = parse_rule(spec)
    if r.name == "gd":
        tx = optax.sgd(ETA)
    elif r.name in ("momentum", "nesterov"):
        tx = optax.sgd(ETA, momentum=r["beta"], nesterov=r.name == "nesterov")
    else:
        tx = optax.adam(ETA, r["b1"], r["b2"], r["eps"])
    grad = jax.grad(problem.loss)

    @jax.jit
    def run(th):
        def body(_, c):
            th, st = c
            upd, st = tx.update(grad(th), st, th)
            return optax.apply_updates(th, upd), st

        return jax.lax.fori_loop(0, STEPS, body, (th, tx.init(th)))[0]

    return lambda: np.stack([np.asarray(run(jnp.asarray(t, dtype=dtype))) for t in theta0])


def _interleaved(fns: dict) -> dict:
    """Best of REPEATS timed calls of every function, after a compiling call, taken round-robin
    (the machine is shared and noisy: interleaving spreads the noise over all of them)."""
    outs = {k: fn() for k, fn in fns.items()}  # compile
    best = {k: np.inf for k in fns}
    for _ in range(REPEATS):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            outs[k] = fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    return {k: (best[k], outs[k]) for k in fns}


def main() -> int:
    import jax

    from gdstab import Criteria, problems, trajectories
    from gdstab.random import init_points

    print(describe())
    print(f"{'samples':>7} {'dtype':>8} {'n':>3}  {'rule':<15} {'gdstab model-steps/s':>21}  {'vs GD':>6}  "
          f"{'optax loop':>11}  {'loop vs GD':>10}  {'gdstab/loop':>11}  {'max |dtheta|':>12}")
    for samples, dtype, n in CASES:
        p = problems.get("mlp", depth=2, width=32, activation="tanh", samples=samples)
        th0 = init_points(p, 0, np.arange(n))
        crit = Criteria(tol=1e-30)  # nothing settles: every trajectory runs all its steps
        with jax.enable_x64(dtype == "float64"):
            fns = {}
            for spec in RULES:
                fns[("gdstab", spec)] = (lambda spec=spec: trajectories(p, th0, ETA, steps=STEPS, dtype=dtype,
                                                                        criteria=crit, backend="jax", optimizer=spec))
                fns[("loop", spec)] = _optax_loop(p, th0, spec, dtype)
            t = _interleaved(fns)
        for spec in RULES:
            (t_g, res), (t_l, ref) = t[("gdstab", spec)], t[("loop", spec)]
            rate, loop = n * STEPS / t_g, n * STEPS / t_l
            gd_rate, gd_loop = n * STEPS / t[("gdstab", "gd")][0], n * STEPS / t[("loop", "gd")][0]
            diff = float(np.max(np.abs(res.theta - ref)))
            print(f"{samples:>7} {dtype:>8} {n:>3}  {spec:<15} {rate:>21,.0f}  {rate / gd_rate:>5.0%}  {loop:>11,.0f}  "
                  f"{loop / gd_loop:>9.0%}  {t_l / t_g:>10.2f}x  {diff:>12.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
