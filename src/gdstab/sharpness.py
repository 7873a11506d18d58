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
from typing import Any

import numpy as np

from ._validation import fail, finite_float, positive_int
from .optimizers import as_rule
from .problems.base import Problem

__all__ = ["eos_onset", "track_sharpness", "sharpness_at", "sharpness_plateau", "PLATEAU_WINDOW", "PLATEAU_SETTLED"]


#: the plateau of the sharpness is read over this last fraction of the records
PLATEAU_WINDOW = 0.1
#: ... and counts as settled when its relative spread there is at most this
PLATEAU_SETTLED = 1e-3


def eos_onset(ratio, level: float = 1.0) -> int:
    """The index of the first record where λ_max η / c >= ``level`` (at 1 the sharpness has
    reached the stability threshold c/η: the start of the edge-of-stability phase), −1 if none;
    NaN records (after a divergence) never count."""
    r = np.asarray(ratio, dtype=np.float64)
    hit = np.flatnonzero(np.isfinite(r) & (r >= level))
    return int(hit[0]) if hit.size else -1


def sharpness_plateau(step: np.ndarray, sharpness: np.ndarray, window: float = PLATEAU_WINDOW) -> dict[str, Any]:
    """The sharpness a run ends at, with its evidence: the median over the last ``window``
    fraction of the finite records, the window (steps), the relative spread (max − min) /
    median there, and ``settled`` (spread <= ``PLATEAU_SETTLED``; False means the run was still
    moving at its end, so the value is not a plateau yet, or fewer than two records were
    measured)."""
    fin = np.isfinite(sharpness)
    st, s = step[fin], sharpness[fin]
    if s.size < 2:  # nothing to compare: no evidence of a plateau
        return {"value": float(s[-1]) if s.size else math.nan, "window": [int(st[-1])] * 2 if s.size else None,
                "records": int(s.size), "relative_spread": math.nan, "settled": False}
    k = min(s.size, max(2, int(math.ceil(window * s.size))))
    w = s[-k:]
    med = float(np.median(w))
    spread = float((w.max() - w.min()) / abs(med)) if med else math.inf
    return {"value": med, "window": [int(st[-k]), int(st[-1])], "records": int(k), "relative_spread": spread,
            "settled": bool(spread <= PLATEAU_SETTLED)}


def sharpness_at(problem: Problem, theta: np.ndarray, *, v0=None, key=None, tol: float = 1e-8, max_iter: int = 100,
                 preconditioner=None):
    """λ_max of the Hessian at θ and its eigenvector: dense for small d, else Lanczos.  With a
    diagonal ``preconditioner`` P (d,), the preconditioned sharpness λ_max(P⁻¹H), computed as
    λ_max of the symmetric P^{-1/2} H P^{-1/2} (same eigenvalues), and that matrix's eigenvector."""
    import jax
    import jax.numpy as jnp

    from .spectrum import hessian, hvp, lanczos

    s = None if preconditioner is None else 1.0 / np.sqrt(np.asarray(preconditioner, dtype=np.float64))
    if problem.dim <= 256:
        h = hessian(problem, theta)
        if s is not None:
            h = s[:, None] * h * s[None, :]
        ev, V = np.linalg.eigh(0.5 * (h + h.T))
        return float(ev[-1]), V[:, -1], True, problem.dim
    with jax.enable_x64(True):
        mv = hvp(problem, jnp.asarray(theta, dtype=jnp.float64))
        if s is not None:
            sj = jnp.asarray(s)
            plain = mv

            def mv(v):
                return sj * plain(sj * v)
        r = lanczos(mv, problem.dim, 1, key=key, v0=v0, tol=tol, max_iter=max_iter)
    return float(r.eigenvalues[0]), r.eigenvectors[:, 0], bool(r.converged), r.matvecs


@functools.lru_cache(maxsize=16)
def _compiled(problem: Problem, every: int, batch_size: int, kind):
    """Compiled (value and gradient, init, k updates of the rule (GD/SGD or an optimizer on its
    full state), preconditioner) per problem, k, batch size and kind of rule: a new run, η, β,
    start or key does not recompile."""
    import jax

    from .dynamics import rule_step

    rs = rule_step(problem, kind.example, batch_size=batch_size)
    vg = jax.jit(jax.value_and_grad(problem.loss))

    def advance(c, e, hyper, t0, kd):
        return jax.lax.fori_loop(0, every, lambda i, c: rs.step(c[0], c[1], e, hyper, t0 + i, kd), c)

    return vg, jax.jit(rs.init), jax.jit(advance), jax.jit(rs.states.preconditioner) if rs.rule.adaptive else None


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
    optimizer=None,
    on_record=None,
    keep_iterates: bool = False,
):
    """GD (SGD with ``batch_size``; any update rule with ``optimizer``) from ``theta0`` at step
    size ``eta``, recording every ``every`` steps the full-batch loss, ‖∇L‖ and the sharpness
    λ_max(H); for the adaptive rules (rmsprop, adam) also the preconditioned sharpness
    λ_max(P⁻¹H) with P the rule's diagonal preconditioner at that step
    (:meth:`gdstab.optimizers.StateRule.preconditioner`; NaN at step 0, where no step was made).

    Main arguments:
        problem: any :class:`Problem` (for SGD one with data, e.g. from ``Problem.from_jax``).
        theta0: the initial point (d,).
        eta: the step size.

    Other arguments (keyword-only):
        steps: GD updates; every: record every k updates (step 0 included).
        batch_size, key: SGD minibatches (:func:`gdstab.dynamics.sgd_batch_indices` with this
            trajectory key); ``key`` also starts the first Lanczos run.
        optimizer: None (GD), a :class:`gdstab.optimizers.Rule` or its text ("adam:0.9,0.999").
        tol, max_iter: Lanczos tolerance (relative residual) and Krylov dimension; later
            runs start from the previous top eigenvector (``warm_start=False``: every run from
            a random vector drawn with ``key``).  Dense eigenvalues for d <= 256.
        on_record: callback ``on_record(done, total)`` after each record (progress).
        keep_iterates: also return θ at every record (``theta``, (step, coord); NaN after a
            divergence) — e.g. to compare GD with the gradient flow at t = kη.

    Returns an ``xarray.Dataset`` over ``step``: ``loss``, ``grad_norm``, ``sharpness``,
    ``lanczos_converged``, ``matvecs`` (and ``preconditioned_sharpness`` for adaptive rules);
    ``theta_last``; attrs: eta, the optimizer, the threshold c(rule)/η (2/η for GD) on the
    sharpness, or on the preconditioned sharpness for adaptive rules (``threshold_on``), the
    status (``ok`` or ``diverged``: the records after a non-finite iterate are NaN) and the
    wall time spent training and computing sharpness (their ratio is the tracker's overhead).
    """
    import xarray as xr

    caller = "track_sharpness"
    rule = as_rule(optimizer, caller)
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
    if not isinstance(keep_iterates, bool):
        raise fail("keep_iterates", caller, "a bool", keep_iterates)
    iterates = np.full((steps // every + 1, problem.dim), np.nan) if keep_iterates else None
    loss, gnorm, sharp, conv, mvs, last, info = _run_and_measure(problem, th, eta, steps, every, batch_size, key, tol,
                                                                 max_iter, warm_start, rule, on_record, iterates)
    status, diverged_between, t_train, t_sharp, psharp = info
    rec_steps = np.arange(loss.size) * every
    extra = {} if psharp is None else {"preconditioned_sharpness": (("step",), psharp)}
    if iterates is not None:
        extra["theta"] = (("step", "coord"), iterates)
    return xr.Dataset(
        {
            "loss": (("step",), loss),
            "grad_norm": (("step",), gnorm),
            "sharpness": (("step",), sharp),
            **extra,
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
            "optimizer": rule.spec(),
            "threshold": rule.threshold / eta,
            "threshold_on": "preconditioned_sharpness" if rule.adaptive else "sharpness",
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


def _run_and_measure(problem, th, eta, steps, every, batch_size, key, tol, max_iter, warm_start, rule, on_record,
                     iterates=None):
    """The loop of :func:`track_sharpness`: records (loss, ‖∇L‖, sharpness, Lanczos converged,
    matvecs), the last iterate, and (status, diverged_between, train seconds, sharpness seconds);
    θ at every record into ``iterates`` when given."""
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
    psharp = np.full(n_rec, np.nan) if rule.adaptive else None
    with jax.enable_x64(True):
        vg, init, advance, precond = _compiled(problem, every, batch_size or 0, rule.kind)
        kd = jax.random.key_data(key) if batch_size else None
        hyper = jnp.asarray(rule.values)
        c = init(jnp.asarray(th), eta, hyper)
        v = pv = None
        for r in range(n_rec):
            t0 = time.perf_counter()
            if r > 0:
                c = jax.block_until_ready(advance(c, eta, hyper, (r - 1) * every, kd))
            theta = c[0][0]  # θ of the full state (θ, buffers)
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
            if iterates is not None:
                iterates[r] = th_np
            t0 = time.perf_counter()
            lam, v, ok, n = sharpness_at(problem, th_np, v0=v if warm_start else None, key=key, tol=tol,
                                       max_iter=max_iter)
            sharp[r], conv[r], mvs[r] = lam, ok, n
            if precond is not None and r > 0:
                P = np.asarray(precond(*c, hyper))
                if np.all(np.isfinite(P)):
                    psharp[r], pv, _, _ = sharpness_at(problem, th_np, v0=pv if warm_start else None, key=key, tol=tol,
                                                       max_iter=max_iter, preconditioner=P)
            t_sharp += time.perf_counter() - t0
            if on_record is not None:
                on_record(r + 1, n_rec)
        last = np.asarray(theta)
    return loss, gnorm, sharp, conv, mvs, last, (status, diverged_between, t_train, t_sharp, psharp)


# ------------------------------------------------------------------------------ critical η
