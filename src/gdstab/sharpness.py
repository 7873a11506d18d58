"""Sharpness along training, for any model.

* :func:`track_sharpness` -- run GD (or SGD) from one point and record, every ``every`` steps,
  the loss, ‖∇L‖ and the sharpness λ_max(H) (Lanczos on Hessian-vector products, warm-started
  from the previous top eigenvector) next to the stability threshold 2/η: the edge of
  stability made visible.  Works for any :class:`Problem`, user JAX models included.

The empirical critical step size built on it is in :mod:`gdstab.critical`.
"""

from __future__ import annotations

import functools
import math
import time

import numpy as np

from ._validation import fail, finite_float, positive_int
from .problems.base import Problem

__all__ = ["track_sharpness", "sharpness_at"]


def sharpness_at(problem: Problem, theta: np.ndarray, *, v0=None, key=None, tol: float = 1e-8, max_iter: int = 100):
    """λ_max of the Hessian at θ and its eigenvector: dense for small d, else Lanczos."""
    import jax
    import jax.numpy as jnp

    from .spectrum import hessian, hvp, lanczos

    if problem.dim <= 256:
        h = hessian(problem, theta)
        ev, V = np.linalg.eigh(0.5 * (h + h.T))
        return float(ev[-1]), V[:, -1], True, problem.dim
    with jax.enable_x64(True):
        mv = hvp(problem, jnp.asarray(theta, dtype=jnp.float64))
        r = lanczos(mv, problem.dim, 1, key=key, v0=v0, tol=tol, max_iter=max_iter)
    return float(r.eigenvalues[0]), r.eigenvectors[:, 0], bool(r.converged), r.matvecs


@functools.lru_cache(maxsize=16)
def _compiled(problem: Problem, every: int, batch_size: int):
    """Compiled (value and gradient, k GD/SGD updates) per problem, k and batch size: a new
    run, η, start or key does not recompile."""
    import jax

    vg = jax.jit(jax.value_and_grad(problem.loss))
    if not batch_size:
        def advance(t, e, t0, kd):
            return jax.lax.fori_loop(0, every, lambda _, s: problem.gd_map(s, e), t)
    else:
        from .dynamics import sgd_batch_indices

        bgrad = jax.grad(problem.batch_loss)

        def advance(t, e, t0, kd):
            def body(i, s):
                idx = sgd_batch_indices(kd, t0 + i, problem.n_samples, batch_size)
                return s - e * bgrad(s, idx)

            return jax.lax.fori_loop(0, every, body, t)
    return vg, jax.jit(advance)


def track_sharpness(
    problem: Problem,
    theta0,
    eta: float,
    *,
    steps: int = 1000,
    every: int = 10,
    batch_size: int | None = None,
    key=None,
    tol: float = 1e-6,
    max_iter: int = 100,
    warm_start: bool = True,
):
    """GD (SGD with ``batch_size``) from ``theta0`` at step size ``eta``, recording every
    ``every`` steps the full-batch loss, ‖∇L‖ and the sharpness λ_max(H).

    Main arguments:
        problem: any :class:`Problem` (for SGD one with data, e.g. from ``Problem.from_jax``).
        theta0: the initial point (d,).
        eta: the step size.

    Other arguments (keyword-only):
        steps: GD updates; every: record every k updates (step 0 included).
        batch_size, key: SGD minibatches (:func:`gdstab.dynamics.sgd_batch_indices` with this
            trajectory key); ``key`` also starts the first Lanczos run.
        tol, max_iter: Lanczos tolerance (relative residual) and Krylov dimension; later
            runs start from the previous top eigenvector (``warm_start=False``: every run from
            a random vector drawn with ``key``).  Dense eigenvalues for d <= 256.

    Returns an ``xarray.Dataset`` over ``step``: ``loss``, ``grad_norm``, ``sharpness``,
    ``lanczos_converged``, ``matvecs``; ``theta_last``; attrs: eta, the threshold 2/η, the
    status (``ok`` or ``diverged``: the records after a non-finite iterate are NaN) and the
    wall time spent training and computing sharpness (their ratio is the tracker's overhead).
    """
    import xarray as xr

    caller = "track_sharpness"
    eta = finite_float(eta, "eta", caller, low=0.0)
    steps = positive_int(steps, "steps", caller)
    every = positive_int(every, "every", caller)
    tol = finite_float(tol, "tol", caller, low=0.0)
    max_iter = positive_int(max_iter, "max_iter", caller)
    th = np.asarray(theta0, dtype=np.float64).reshape(-1) if np.ndim(theta0) else None
    if th is None or th.shape != (problem.dim,) or not np.all(np.isfinite(th)):
        raise fail("theta0", caller, f"{problem.dim} finite floats", theta0 if th is None else f"shape {th.shape}")
    if batch_size is not None:
        batch_size = positive_int(batch_size, "batch_size", caller)
        if problem.batch_loss is None or problem.n_samples is None:
            raise fail("batch_size", caller, "None for a problem without data (SGD needs Problem.batch_loss)", batch_size)
        if batch_size > problem.n_samples:
            raise fail("batch_size", caller, f"an int <= the number of samples {problem.n_samples}", batch_size)
        if key is None:
            raise fail("key", caller, "a JAX PRNG key (SGD shuffles the samples with it)", key)
    if key is None and problem.dim > 256:
        raise fail("key", caller, "a JAX PRNG key (it starts the first Lanczos run)", key)
    loss, gnorm, sharp, conv, mvs, last, info = _run_and_measure(problem, th, eta, steps, every, batch_size, key, tol,
                                                                 max_iter, warm_start)
    status, diverged_between, t_train, t_sharp = info
    rec_steps = np.arange(loss.size) * every
    return xr.Dataset(
        {
            "loss": (("step",), loss),
            "grad_norm": (("step",), gnorm),
            "sharpness": (("step",), sharp),
            "lanczos_converged": (("step",), conv),
            "matvecs": (("step",), mvs),
            "theta_last": (("coord",), last),
            "theta0": (("coord",), th),
        },
        coords={"step": rec_steps, "coord": np.arange(problem.dim)},
        attrs={
            "problem": problem.name,
            "normalisation": problem.normalisation,
            "eta": eta,
            "threshold": 2.0 / eta,
            "every": every,
            "batch_size": int(batch_size or 0),
            "status": status,
            # a diverged run: the iterate was finite at the first step and not at the second
            **({"diverged_between": diverged_between} if diverged_between else {}),
            "wall_train_s": t_train,
            "wall_sharpness_s": t_sharp,
            "method": "dense Hessian" if problem.dim <= 256 else f"Lanczos (tol {tol:g}, warm start)",
        },
    )


def _run_and_measure(problem, th, eta, steps, every, batch_size, key, tol, max_iter, warm_start):
    """The loop of :func:`track_sharpness`: records (loss, ‖∇L‖, sharpness, Lanczos converged,
    matvecs), the last iterate, and (status, diverged_between, train seconds, sharpness seconds)."""
    import jax
    import jax.numpy as jnp

    n_rec = steps // every + 1
    loss = np.full(n_rec, np.nan)
    gnorm = np.full(n_rec, np.nan)
    sharp = np.full(n_rec, np.nan)
    conv = np.zeros(n_rec, dtype=bool)
    mvs = np.zeros(n_rec, dtype=np.int32)
    t_train = t_sharp = 0.0
    status = "ok"
    diverged_between = None  # (last finite record, first non-finite record) steps
    with jax.enable_x64(True):
        vg, advance = _compiled(problem, every, batch_size or 0)
        kd = jax.random.key_data(key) if batch_size else None
        theta = jnp.asarray(th)
        v = None
        for r in range(n_rec):
            t0 = time.perf_counter()
            if r > 0:
                theta = advance(theta, eta, (r - 1) * every, kd).block_until_ready()
            val, g = vg(theta)
            t_train += time.perf_counter() - t0
            val = float(val)
            gn = float(jnp.linalg.norm(g))
            th_np = np.asarray(theta)
            if not (math.isfinite(val) and math.isfinite(gn) and np.all(np.isfinite(th_np))):
                status = "diverged"
                diverged_between = [int((r - 1) * every), int(r * every)]
                break
            loss[r], gnorm[r] = val, gn
            t0 = time.perf_counter()
            lam, v, ok, n = sharpness_at(problem, th_np, v0=v if warm_start else None, key=key, tol=tol,
                                       max_iter=max_iter)
            t_sharp += time.perf_counter() - t0
            sharp[r], conv[r], mvs[r] = lam, ok, n
        last = np.asarray(theta)
    return loss, gnorm, sharp, conv, mvs, last, (status, diverged_between, t_train, t_sharp)


# ------------------------------------------------------------------------------ critical η
