"""Benchmark the instruments of issue #19 against what a user would otherwise write, in one run:

* SLQ spectral density of the 784-32-32-2 tanh MLP Hessian (1 000 MNIST 0/1 digits, d = 26 242):
  seconds, Hessian-vector products per probe, and the cost of one HVP against one gradient;
* gradient flow: ``gdstab.flow.gradient_flow`` (diffrax Tsit5, vmapped over B initial points)
  against a loop of ``scipy.integrate.solve_ivp`` (RK45 and DOP853 on a jitted gradient), same
  tolerances, same system: a 2-layer tanh MLP on 200 scikit-free Gaussian samples; also the
  largest deviation between the two.

    python benchmarks/instruments.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def slq() -> None:
    import jax

    from gdstab import problems, spectrum
    from gdstab.problems import mnist

    with jax.enable_x64(True):
        p = problems.mlp(depth=2, width=32, data=mnist((0, 1), n=500), activation="tanh", loss="mse")
        th = np.asarray(p.init(jax.random.key(0), 1))[0]
        mv = spectrum.hvp(p, th)
        mv(np.ones(p.dim))  # compile
        g = jax.jit(jax.grad(p.loss))
        g(th).block_until_ready()
        _, t_hvp = _timed(lambda: [np.asarray(mv(np.ones(p.dim))) for _ in range(20)])
        _, t_grad = _timed(lambda: [np.asarray(g(th)) for _ in range(20)])
        for probes, steps in ((10, 80), (4, 40)):
            r, t = _timed(lambda: spectrum.spectral_density(mv, p.dim, key=jax.random.key(1), probes=probes,
                                                            lanczos_steps=steps))
            print(f"SLQ d = {p.dim}: {probes} probes x {steps} steps: {t:.1f} s, {r.matvecs / probes:.0f} HVPs per probe, "
                  f"{1e3 * t / r.matvecs:.1f} ms per HVP with reorthogonalisation")
        tr, t = _timed(lambda: spectrum.trace_estimate(mv, p.dim, key=jax.random.key(2), probes=99))
        print(f"Hutch++ trace, 99 HVPs: {t:.1f} s, {tr.estimate:.5g} +- {tr.stderr:.2g}")
        print(f"one HVP {1e3 * t_hvp / 20:.1f} ms, one gradient {1e3 * t_grad / 20:.1f} ms "
              f"(ratio {t_hvp / t_grad:.2f})")


def flow() -> None:
    import jax
    import jax.numpy as jnp
    from scipy.integrate import solve_ivp

    from gdstab import Problem
    from gdstab.flow import gradient_flow

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(200, 10)), rng.normal(size=(200, 1))

    def loss(p, data):
        x, y = data
        return 0.5 * jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)

    with jax.enable_x64(True):
        p = Problem.from_jax(loss, {"w1": jnp.zeros((10, 16)), "w2": jnp.zeros((16, 1))}, (X, Y))
        th0 = np.asarray(p.init(jax.random.key(0), 16))
        grad = jax.jit(jax.grad(p.loss))
        grad(th0[0])
    T, ts = 20.0, np.linspace(0, 20.0, 21)
    res, t_first = _timed(lambda: gradient_flow(p, th0, T, times=ts, rtol=1e-8, atol=1e-10))
    res, t_g = _timed(lambda: gradient_flow(p, th0, T, times=ts, rtol=1e-8, atol=1e-10))
    _, t_t = _timed(lambda: gradient_flow(p, th0, T, times=ts, rtol=1e-8, atol=1e-10, solver="tsit5"))
    print(f"\ngradient flow, d = {p.dim}, {len(th0)} initial points, t = 0..{T:g}, rtol 1e-8 atol 1e-10:")
    print(f"  gdstab with solver='tsit5' named (no stiffness estimate: no dense Hessians): {t_t:.2f} s")
    print(f"  gdstab (diffrax {res.solver}, vmapped): {t_g:.2f} s ({t_first:.1f} s with compilation), "
          f"{int(res.accepted_steps.mean())} steps per trajectory")
    for method in ("RK45", "DOP853"):
        def run():
            with jax.enable_x64(True):
                return [solve_ivp(lambda t, z: -np.asarray(grad(z)), (0, T), z, t_eval=ts, rtol=1e-8, atol=1e-10,
                                  method=method) for z in th0]
        sols, t_s = _timed(run)
        dev = max(np.abs(s.y.T - res.theta[i]).max() for i, s in enumerate(sols))
        print(f"  scipy solve_ivp {method} loop: {t_s:.2f} s, {int(np.mean([s.nfev for s in sols]))} gradient "
              f"evaluations per trajectory; ratio {t_s / t_g:.1f}x; largest difference to gdstab {dev:.1e}")


if __name__ == "__main__":
    print(describe())
    slq()
    flow()
