"""What GD does when it does not converge: orbit (bifurcation) diagrams with period detection
and Lyapunov exponents of the GD map (basin maps: :mod:`gdstab.basins`).

Main entry points:

* :func:`orbit_diagram` -- for every step size, discard a transient, record the attractor's
  points (through an observable such as the coordinate x or the loss) and detect the period of
  every trajectory; :func:`bifurcation_points` locates where the dominant period changes.
* :func:`lyapunov` -- the largest Lyapunov exponent (or the whole spectrum, by QR
  re-orthonormalisation) of G(θ) = θ − η∇L(θ) along a trajectory, from Jacobian-vector products
  of G, with a batch-means standard error as its convergence report; vectorised over (θ₀, η).

Period detection (:func:`detect_period`): after the transient, the recorded iterates
θ_0 … θ_{R−1} have period p (1 ≤ p ≤ ``max_period``) when max_k ‖θ_{k+p} − θ_k‖ ≤ ``rtol`` ·
(1 + max_k ‖θ_k‖), and p is the smallest such; a period of 1 is a fixed point.  Codes: p ≥ 1
periodic with period p, 0 no period ≤ ``max_period`` (aperiodic: chaos, quasi-periodicity, or a
transient too short), −1 diverged (a non-finite iterate or ‖θ‖ > ``max_norm``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ._records import Record
from ._validation import check_batch, fail, finite_float, positive_int
from .optimizers import as_rule
from .problems.base import Problem

__all__ = [
    "PERIOD_APERIODIC",
    "PERIOD_DIVERGED",
    "detect_period",
    "transient_settled",
    "orbit_diagram",
    "dominant_period",
    "bifurcation_points",
    "LyapunovResult",
    "lyapunov",
    "BOUNDED_REGIMES",
    "diagnose_bounded",
]

PERIOD_APERIODIC = 0
PERIOD_DIVERGED = -1


def _guard(th, max_norm: float):
    """Freeze a diverged iterate (non-finite, or ‖θ‖ > max_norm) at NaN (no overflow warnings
    later); NaN stays NaN, so divergence is read off the end of a run."""
    import jax.numpy as jnp

    bad = ~jnp.all(jnp.isfinite(th)) | (jnp.sum(th * th) > max_norm * max_norm)
    return jnp.where(bad, jnp.nan, th)


def _observable(problem: Problem, observe: Any, caller: str) -> tuple[Callable, str]:
    """θ ↦ scalar: a coordinate (index or variable name), ``"loss"``, or a JAX callable."""
    if callable(observe):
        return observe, getattr(observe, "__name__", "observable")
    if isinstance(observe, str) and observe == "loss":
        return problem.loss, "loss"
    names = list(problem.variables) or []
    if isinstance(observe, str):
        if observe in names:
            i = names.index(observe)
        elif problem.dim >= 1 and observe in ("x", "y", "z")[: problem.dim] and not names:
            i = ("x", "y", "z").index(observe)
        else:
            raise fail("observe", caller, f"'loss', a coordinate index 0..{problem.dim - 1}, a variable name "
                       f"({', '.join(names[:6]) or 'x, y, ...'}) or a callable", observe)
        label = observe
    elif isinstance(observe, (int, np.integer)) and not isinstance(observe, bool) and 0 <= int(observe) < problem.dim:
        i = int(observe)
        label = names[i] if names else f"theta[{i}]"
    else:
        raise fail("observe", caller, f"'loss', a coordinate index 0..{problem.dim - 1}, a variable name or a callable",
                   observe)
    return (lambda th: th[i]), label


def detect_period(points: np.ndarray, *, max_period: int, rtol: float = 1e-6, max_norm: float = 1e6) -> np.ndarray:
    """Period codes of recorded iterates ``points`` (R, B, d) (see the module docstring):
    p ≥ 1, 0 = aperiodic, −1 = diverged.  Needs R ≥ 2·max_period."""
    caller = "detect_period"
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3:
        raise fail("points", caller, "an array (R, B, d) of recorded iterates", np.shape(pts))
    max_period = positive_int(max_period, "max_period", caller)
    R = pts.shape[0]
    if R < 2 * max_period:
        raise fail("points", caller, f"at least 2 * max_period = {2 * max_period} recorded iterates", f"{R}")
    norms = np.linalg.norm(pts, axis=2)  # (R, B)
    finite = np.isfinite(norms)
    with np.errstate(invalid="ignore"):
        diverged = ~np.all(finite, axis=0) | np.any(np.where(finite, norms, np.inf) > max_norm, axis=0)
    scale = 1.0 + np.max(np.where(finite, norms, 0.0), axis=0)
    out = np.full(pts.shape[1], PERIOD_APERIODIC, dtype=np.int32)
    open_ = ~diverged
    for p in range(1, max_period + 1):
        if not open_.any():
            break
        idx = np.flatnonzero(open_)
        gap = np.linalg.norm(pts[p:, idx] - pts[:-p, idx], axis=2).max(axis=0)
        hit = gap <= rtol * scale[idx]
        out[idx[hit]] = p
        open_[idx[hit]] = False
    out[diverged] = PERIOD_DIVERGED
    return out


#: a relative change of a return distance between the two halves of the record above which the
#: attractor is still moving (a transient), and the floor below which distances are rounding
SETTLE_RTOL = 1e-6
SETTLE_FLOOR = 1e-12


def transient_settled(points: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """Whether each trajectory's detected period describes where it has arrived, judged on the
    recorded iterates ``points`` (R, B, d) split into two halves: for a period p >= 1 the p-step
    return distance must not grow from the first half to the second (a trajectory still leaving
    an unstable p-cycle), and for every divisor q < p of p the q-step return distance must not
    shrink (a trajectory still converging to a q-cycle, which looks like period p while the
    transient lasts -- the situation near a period doubling).  Aperiodic and diverged codes
    count as settled (nothing to check).  Changes below ``SETTLE_RTOL`` relative, or below
    ``SETTLE_FLOOR`` (1 + |θ|), are rounding."""
    pts = np.asarray(points, dtype=np.float64)
    periods = np.asarray(periods)
    R = pts.shape[0]
    half = R // 2
    out = np.ones(pts.shape[1], dtype=bool)
    norms = np.linalg.norm(pts, axis=2)
    scale = 1.0 + np.max(np.where(np.isfinite(norms), norms, 0.0), axis=0)  # diverged rows are not checked

    def dist(q, idx, part):
        seg = pts[:half, idx] if part == 0 else pts[R - half:, idx]
        return np.linalg.norm(seg[q:] - seg[:-q], axis=2).max(axis=0)

    for p in np.unique(periods[periods >= 1]):
        idx = np.flatnonzero(periods == p)
        if half <= p:
            continue
        floor = SETTLE_FLOOR * scale[idx]
        a, b = dist(int(p), idx, 0), dist(int(p), idx, 1)
        bad = b > np.maximum(a * (1 + SETTLE_RTOL), floor)
        for q in range(1, int(p)):
            if p % q == 0:
                a, b = dist(q, idx, 0), dist(q, idx, 1)
                bad |= (a > floor) & (b < a * (1 - SETTLE_RTOL))
        out[idx[bad]] = False
    return out


def _check_transient(transient: int, max_period: int, caller: str) -> None:
    need = 100 * max_period
    if transient < need:
        warnings.warn(
            f"{caller}: transient = {transient} steps is short for period detection up to period {max_period} "
            f"(fewer than {need} = 100 x max_period); orbits still approaching their attractor are reported "
            f"as aperiodic (period 0). Raise 'transient' if periods look wrong.",
            RuntimeWarning,
            stacklevel=3,
        )


def orbit_diagram(
    problem: Problem,
    etas,
    inits,
    *,
    transient: int = 20_000,
    record: int = 256,
    observe: Any = 0,
    max_period: int = 64,
    rtol: float = 1e-6,
    max_norm: float = 1e6,
    chunk: int = 4096,
    optimizer=None,
    on_chunk=None,
):
    """Orbit (bifurcation) diagram of GD (or of the update rule ``optimizer``, a
    :class:`gdstab.optimizers.Rule` or its text): for every step size of ``etas`` and every
    initial point of ``inits`` (B, d), run ``transient`` steps, then record ``record`` iterates.
    With a rule the period is detected on the full state (θ and the rule's buffers) and the
    observable is a function of θ.

    Main arguments:
        problem: any :class:`Problem`.
        etas: step sizes (1-D).
        inits: initial points (B, d); each is run at every step size.

    Other arguments (keyword-only):
        transient: steps discarded before recording (warned about when < 100 · max_period).
        record: iterates recorded on the attractor (>= 2 · max_period).
        observe: what the diagram shows of a point: a coordinate index or variable name,
            ``"loss"``, or a JAX function θ ↦ scalar.
        max_period, rtol, max_norm: period detection (see :func:`detect_period`).
        chunk: trajectories per compiled call.
        on_chunk: callback ``on_chunk(done, total)`` (trajectories) after each chunk (progress).

    Returns an ``xarray.Dataset`` with dims (eta, init, record): ``value`` (the observable on
    the recorded iterates), ``period`` (eta, init) codes, ``dominant_period`` (eta) (the most
    common code among trajectories that did not diverge, −1 if all diverged), ``theta_last``
    (eta, init, coord); attrs state the settings.  Runs in float64."""
    import xarray as xr

    caller = "orbit_diagram"
    etas = np.asarray(etas, dtype=np.float64).reshape(-1)
    if etas.size == 0 or not np.all(np.isfinite(etas)) or np.any(etas <= 0):
        raise fail("etas", caller, "a non-empty array of finite floats > 0", etas)
    th0, _ = check_batch(problem, inits, 1.0, caller)
    transient = positive_int(transient, "transient", caller, minimum=0)
    max_period = positive_int(max_period, "max_period", caller)
    record = positive_int(record, "record", caller)
    if record < 2 * max_period:
        raise fail("record", caller, f"an int >= 2 * max_period = {2 * max_period}", record)
    rtol = finite_float(rtol, "rtol", caller, low=0.0)
    max_norm = finite_float(max_norm, "max_norm", caller, low=0.0)
    chunk = positive_int(chunk, "chunk", caller)
    _check_transient(transient, max_period, caller)
    obs, label = _observable(problem, observe, caller)
    rule = as_rule(optimizer, caller)

    B, d = th0.shape
    E = etas.size
    values, periods, settled, last = _record_orbits(problem, np.tile(th0, (E, 1)), np.repeat(etas, B), obs, transient,
                                                    record, max_period, rtol, max_norm, chunk, rule, on_chunk)
    periods = periods.reshape(E, B)
    ds = xr.Dataset(
        {
            "value": (("eta", "init", "record"), values.reshape(E, B, record), {"observable": label}),
            "period": (("eta", "init"), periods, {"codes": "p >= 1: period p; 0: aperiodic; -1: diverged"}),
            "dominant_period": (("eta",), dominant_period(periods)),
            "settled": (("eta", "init"), settled.reshape(E, B),
                        {"definition": "the period describes the attractor: no return distance still growing "
                                       "(or, for a divisor of the period, shrinking) between the two halves of the "
                                       "record; False means the transient was too short (gdstab.orbits.transient_settled)"}),
            "theta_last": (("eta", "init", "coord"), last.reshape(E, B, d)),
            "theta0": (("init", "coord"), th0),
        },
        coords={"eta": etas, "init": np.arange(B), "record": np.arange(record), "coord": np.arange(d)},
        attrs={
            "problem": problem.name,
            "normalisation": problem.normalisation,
            "optimizer": rule.spec(),
            "observable": label,
            "transient": transient,
            "record": record,
            "max_period": max_period,
            "rtol": rtol,
            "max_norm": max_norm,
            "definition": "period p: smallest p <= max_period with max_k |theta_{k+p} - theta_k| <= rtol (1 + max_k |theta_k|) "
                          "over the recorded iterates; 0 aperiodic, -1 diverged",
        },
    )
    return ds


def _record_orbits(problem, all_th, all_eta, obs, transient, record, max_period, rtol, max_norm, chunk, rule,
                   on_chunk=None):
    """Per trajectory (θ₀, η): the observable on ``record`` iterates after ``transient`` steps,
    the period code (of the full state), whether the transient had settled, and the last
    iterate (float64)."""
    import jax
    import jax.numpy as jnp

    from .dynamics import rule_step

    n, d = all_th.shape
    values = np.empty((n, record))
    periods = np.empty(n, dtype=np.int32)
    settled = np.empty(n, dtype=bool)
    last = np.empty((n, d))
    with jax.enable_x64(True):
        rs = rule_step(problem, rule)
        hyper = jnp.asarray(rule.values)

        def G(c, eta):
            z, aux = rs.step(c[0], c[1], eta, hyper)
            return rs.states.unravel(_guard(rs.states.ravel(z), max_norm)), aux

        def one(th, eta):
            c = jax.lax.fori_loop(0, transient, lambda _, c: G(c, eta), rs.init(th, eta, hyper))

            def rec(c, _):
                return G(c, eta), rs.states.ravel(c[0])

            return jax.lax.scan(rec, c, None, length=record)[1]

        run = jax.jit(jax.vmap(one))
        vobs = jax.jit(jax.vmap(jax.vmap(obs)))
        size = min(chunk, n)
        for s in range(0, n, size):
            sl = slice(s, min(n, s + size))
            m = sl.stop - sl.start
            pad_th = np.zeros((size, d))
            pad_th[:m] = all_th[sl]
            pad_eta = np.ones(size)
            pad_eta[:m] = all_eta[sl]
            path = np.asarray(run(jnp.asarray(pad_th), jnp.asarray(pad_eta)))[:m]  # (m, R, D): the full states
            periods[sl] = detect_period(np.swapaxes(path, 0, 1), max_period=max_period, rtol=rtol, max_norm=max_norm)
            settled[sl] = transient_settled(np.swapaxes(path, 0, 1), periods[sl])
            path = path[:, :, :d]
            values[sl] = np.asarray(vobs(jnp.asarray(path)))
            last[sl] = path[:, -1]
            if on_chunk is not None:
                on_chunk(sl.stop, n)
    return values, periods, settled, last


def dominant_period(periods: np.ndarray) -> np.ndarray:
    """Per row of ``periods`` (E, B): the most common code among non-diverged trajectories
    (ties: the smaller period, aperiodic counted as largest), −1 when all diverged."""
    periods = np.asarray(periods)
    out = np.full(periods.shape[0], PERIOD_DIVERGED, dtype=np.int32)
    for i, row in enumerate(periods):
        alive = row[row != PERIOD_DIVERGED]
        if alive.size == 0:
            continue
        vals, counts = np.unique(alive, return_counts=True)
        order = sorted(range(len(vals)), key=lambda j: (-counts[j], vals[j] if vals[j] > 0 else math.inf))
        out[i] = vals[order[0]]
    return out


def bifurcation_points(ds) -> list[dict[str, Any]]:
    """Where the dominant period changes between consecutive step sizes of an orbit diagram:
    for each change, the bracketing step sizes, their midpoint (the location, to the grid's
    resolution) and the periods before and after.  Step sizes at which some trajectory had not
    settled (``ds.settled``: the transient was too short, as happens close to a bifurcation) do
    not count as evidence: the bracket widens to the nearest settled step sizes on both sides
    (``reliable`` is False, with a ``note``, when there is none)."""
    etas = np.asarray(ds["eta"].values)
    dom = np.asarray(ds["dominant_period"].values)
    ok = np.asarray(ds["settled"].values).all(axis=1) if "settled" in ds else np.ones(len(etas), bool)
    out = []
    for i in range(len(etas) - 1):
        if dom[i] != dom[i + 1]:
            # step sizes whose transient had not died out do not locate anything: the bracket
            # reaches out to the nearest step sizes on both sides where it had
            lo, hi = i, i + 1
            while lo > 0 and not ok[lo]:
                lo -= 1
            while hi < len(etas) - 1 and not ok[hi]:
                hi += 1
            reliable = bool(ok[lo] and ok[hi])
            out.append({
                "eta_low": float(etas[lo]),
                "eta_high": float(etas[hi]),
                "eta": float(0.5 * (etas[lo] + etas[hi])),
                "resolution": float(abs(etas[hi] - etas[lo]) / 2),
                "period_before": int(dom[i]),
                "period_after": int(dom[i + 1]),
                "reliable": reliable,
                **({} if reliable else {"note": "the transient had not died out at the ends of this bracket; "
                                                "rerun with a longer transient"}),
            })
    return out


# ------------------------------------------------------------------------------ Lyapunov


@dataclass(frozen=True, repr=False)
class LyapunovResult(Record):
    """Lyapunov exponents of the GD map along trajectories (one row per trajectory).

    Attributes:
        exponents: (B, k) estimates, descending (natural log per step); NaN where diverged.
        stderr: (B, k) batch-means standard errors (from ``blocks`` consecutive blocks).
        converged: (B,) True where every stderr <= max(atol, rtol · |exponent|).
        diverged: (B,) True where the trajectory left the finite region.
        history: (B, blocks, k) running estimates after each block (convergence report).
        steps, transient, blocks: the settings used.
    """

    exponents: np.ndarray
    stderr: np.ndarray
    converged: np.ndarray
    diverged: np.ndarray
    history: np.ndarray
    steps: int
    transient: int
    blocks: int

    def to_dict(self) -> dict[str, Any]:
        def clean(a):
            return [[None if not np.isfinite(v) else float(v) for v in row] for row in np.atleast_2d(a)]

        return {
            "exponents": clean(self.exponents),
            "stderr": clean(self.stderr),
            "converged": [bool(c) for c in self.converged],
            "diverged": [bool(c) for c in self.diverged],
            "steps": self.steps,
            "transient": self.transient,
            "blocks": self.blocks,
        }

    def to_xarray(self):
        """Exponents and standard errors over (``trajectory``, ``exponent``), the running
        estimates over ``block``, the flags over ``trajectory``; the settings in ``attrs``."""
        import xarray as xr

        B, k = self.exponents.shape
        return xr.Dataset(
            {"exponents": (("trajectory", "exponent"), self.exponents, {"units": "per step (natural log)"}),
             "stderr": (("trajectory", "exponent"), self.stderr, {"long_name": "batch-means standard error"}),
             "converged": (("trajectory",), self.converged), "diverged": (("trajectory",), self.diverged),
             "history": (("trajectory", "block", "exponent"), self.history)},
            coords={"trajectory": np.arange(B), "exponent": np.arange(k), "block": np.arange(self.history.shape[1])},
            attrs={"steps": self.steps, "transient": self.transient, "blocks": self.blocks})


def lyapunov(
    problem: Problem,
    theta0,
    eta,
    *,
    steps: int = 20_000,
    transient: int = 1_000,
    n_exponents: int | str = 1,
    blocks: int = 20,
    atol: float = 1e-3,
    rtol: float = 0.05,
    max_norm: float = 1e6,
    key=None,
    optimizer=None,
) -> LyapunovResult:
    """Lyapunov exponents of G(θ) = θ − η∇L(θ) (or of the update rule ``optimizer``'s map on
    its full state z = (θ, buffers), dimension D) along the trajectories from ``theta0`` (B, d)
    at step sizes ``eta`` (scalar or (B,)).

    Tangent vectors are pushed forward by Jacobian-vector products of G (DG = I − η H, never
    formed); with k > 1 they are re-orthonormalised by a QR factorisation every step and the
    exponents are the time averages of log |R_ii| over ``steps`` steps (Benettin's method);
    with k = 1 the vector is renormalised.  The first ``transient`` steps are discarded: they
    bring θ onto its attractor and the tangent frame onto the growth directions.  ``n_exponents``: k, or ``"all"``
    (k = d, or D with a rule: the tangent space is that of the full state).  The initial tangent vectors are the first k columns of a random orthogonal matrix
    (explicit ``key``; default: the identity's first k columns).

    Convergence report: the steps are cut into ``blocks`` blocks; the standard error of the
    block averages (batch means) is returned, and an exponent counts as converged when it is
    <= max(``atol``, ``rtol`` · |λ|).  A trajectory that diverges has NaN exponents."""
    caller = "lyapunov"
    th0, et = check_batch(problem, theta0, eta, caller)
    rule = as_rule(optimizer, caller)
    d = th0.shape[1] if rule.is_gd else _state_size(problem, rule)
    steps = positive_int(steps, "steps", caller)
    transient = positive_int(transient, "transient", caller, minimum=0)
    blocks = positive_int(blocks, "blocks", caller, minimum=2)
    if steps % blocks:
        raise fail("steps", caller, f"a multiple of blocks = {blocks}", steps)
    if n_exponents == "all":
        k = d
    else:
        k = positive_int(n_exponents, "n_exponents", caller)
        if k > d:
            raise fail("n_exponents", caller, f"an int <= the dimension {d} or 'all'", n_exponents)
    atol = finite_float(atol, "atol", caller, low=0.0, low_inclusive=True)
    rtol = finite_float(rtol, "rtol", caller, low=0.0, low_inclusive=True)
    means, finite = _lyapunov_block_means(problem, th0, et, k, steps // blocks, blocks, transient, max_norm, key, rule)
    diverged = ~finite | ~np.all(np.isfinite(means), axis=(1, 2))
    est = means.mean(axis=1)
    se = means.std(axis=1, ddof=1) / math.sqrt(blocks)
    history = np.cumsum(means, axis=1) / np.arange(1, blocks + 1)[None, :, None]
    est[diverged] = np.nan
    se[diverged] = np.nan
    conv = ~diverged & np.all(se <= np.maximum(atol, rtol * np.abs(est)), axis=1)
    return LyapunovResult(est, se, conv, diverged, history, steps, transient, blocks)


def _state_size(problem, rule) -> int:
    import jax

    from .optimizers import state_rule

    with jax.enable_x64(True):
        return state_rule(rule, problem.dim, "float64").size


def _lyapunov_block_means(problem, th0, et, k, per_block, blocks, transient, max_norm, key, rule):
    """Per trajectory: the block averages (blocks, k) of the log growth factors of k tangent
    vectors of the full state after ``transient`` steps, and whether the trajectory stayed
    finite."""
    import jax
    import jax.numpy as jnp

    from .dynamics import rule_step

    with jax.enable_x64(True):
        rs = rule_step(problem, rule)
        D = rs.size
        hyper = jnp.asarray(rule.values)
        if key is None:
            Q0 = np.eye(D)[:, :k]
        else:
            Q0 = np.linalg.qr(np.asarray(jax.random.normal(key, (D, D), dtype=jnp.float64)))[0][:, :k]

        def one(th, eta, Q):
            def G(v, aux):  # the map on the flat full state
                return rs.states.ravel(rs.step(rs.states.unravel(v), aux, eta, hyper)[0])

            def push(c, Q):
                """The next full state, the re-orthonormalised frame and the log growth factors."""
                z, aux = c
                z2, V = jax.vmap(lambda q: jax.jvp(lambda v: G(v, aux), (z,), (q,)), in_axes=1, out_axes=(None, 1))(Q)
                c2 = (_guard(z2, max_norm), rs.step(rs.states.unravel(z), aux, eta, hyper)[1])
                if k == 1:
                    r = jnp.linalg.norm(V[:, 0])
                    return c2, V / r, jnp.log(r)[None]
                Q2, R = jnp.linalg.qr(V)
                diag = jnp.diagonal(R)
                return c2, Q2 * jnp.sign(diag)[None, :], jnp.log(jnp.abs(diag))

            # the transient also aligns the frame with the growth directions (no bias from Q0)
            z0, aux0 = rs.init(th, eta, hyper)
            th, Q = jax.lax.fori_loop(0, transient, lambda _, c: push(*c)[:2], ((rs.states.ravel(z0), aux0), Q))

            def step(carry, _):
                t, Q, acc = carry
                t2, Q2, logs = push(t, Q)
                return (t2, Q2, acc + logs), None

            def block(carry, _):
                t, Q = carry
                (t, Q, acc), _ = jax.lax.scan(step, (t, Q, jnp.zeros(k)), None, length=per_block)
                return (t, Q), acc / per_block

            (t_end, _), means = jax.lax.scan(block, (th, Q), None, length=blocks)
            return means, jnp.all(jnp.isfinite(t_end[0]))

        means, finite = jax.jit(jax.vmap(one, in_axes=(0, 0, None)))(jnp.asarray(th0), jnp.asarray(et), jnp.asarray(Q0))
        means = np.asarray(means)  # (B, blocks, k)
        finite = np.asarray(finite)
    return means, finite


# ------------------------------------------------------------------------------ basin maps


# ------------------------------------------------------------------ what "bounded" was doing

#: the regimes of a trajectory still undecided (``bounded``) at its last step
BOUNDED_REGIMES = ("slow", "edge_of_stability", "chaotic", "oscillating", "diverging")

#: sharpness within this relative distance of 2/η counts as "at the edge of stability"
EOS_BAND = 0.1


def diagnose_bounded(problem: Problem, theta, eta, *, steps: int = 1000, blocks: int = 10,
                     max_norm: float = 1e6, key=None) -> list[dict[str, Any]]:
    """What undecided (``bounded``) trajectories were doing: GD continues ``steps`` steps from
    each final point ``theta`` (B, d) at its step size ``eta`` and each is labelled, in this
    order of precedence:

    * ``diverging``: the continuation leaves the finite region (or ‖θ‖ > ``max_norm``);
    * ``chaotic``: the largest Lyapunov exponent over the continuation is positive beyond two
      batch-means standard errors (:func:`lyapunov`, ``blocks`` blocks);
    * ``slow``: over the second half of the continuation the loss never increases (up to
      rounding) and ends lower: still descending, convergence slower than the step budget;
    * ``edge_of_stability``: over the second half the loss is not monotone but lower at the end
      than at the start on average (first vs last tenth of the half), and the sharpness λ_max
      at the end is within ``EOS_BAND`` = 10 % of 2/η (Cohen et al. 2021's regime);
    * ``oscillating``: anything else (a long transient towards a cycle, a quasi-periodic orbit,
      an oscillation away from 2/η).

    Returns one dict per trajectory: ``regime``, ``lyapunov`` and its ``lyapunov_stderr``,
    ``sharpness`` (at the end), ``two_over_eta``, ``loss_start`` and ``loss_end`` (means of the
    first and last tenth of the second half), ``increases`` (steps of the second half at which
    the loss rose).  Float64."""
    import jax
    import jax.numpy as jnp

    from .dynamics import iterate
    from .sharpness import sharpness_at

    caller = "diagnose_bounded"
    th, et = check_batch(problem, theta, eta, caller)
    steps = positive_int(steps, "steps", caller, minimum=20)
    blocks = positive_int(blocks, "blocks", caller, minimum=2)
    steps -= steps % blocks
    path = iterate(problem, th, et, steps=steps)  # (T + 1, B, d)
    with jax.enable_x64(True):
        loss = np.asarray(jax.vmap(jax.vmap(problem.loss))(jnp.asarray(path)))  # (T + 1, B)
    lyap = lyapunov(problem, th, et, steps=steps, transient=0, blocks=blocks, max_norm=max_norm)
    out = []
    tenth = max(1, steps // 20)
    for b in range(th.shape[0]):
        finite = np.all(np.isfinite(path[:, b])) and np.all(np.linalg.norm(path[:, b], axis=1) <= max_norm)
        row: dict[str, Any] = {"eta": float(et[b]), "two_over_eta": 2.0 / float(et[b])}
        if not finite or lyap.diverged[b]:
            out.append({**row, "regime": "diverging"})
            continue
        L = loss[steps // 2:, b]  # the second half: after the continuation's own transient
        rises = np.diff(L) > 1e-12 * (1.0 + np.abs(L[:-1]))
        s = float(sharpness_at(problem, path[-1, b], key=key if key is not None else jax.random.key(0))[0])
        row.update(lyapunov=float(lyap.exponents[b, 0]), lyapunov_stderr=float(lyap.stderr[b, 0]), sharpness=s,
                   loss_start=float(L[:tenth].mean()), loss_end=float(L[-tenth:].mean()), increases=int(rises.sum()))
        if row["lyapunov"] - 2 * row["lyapunov_stderr"] > 0:
            row["regime"] = "chaotic"
        elif not rises.any() and row["loss_end"] < row["loss_start"]:
            row["regime"] = "slow"
        elif row["loss_end"] < row["loss_start"] and abs(s * et[b] / 2 - 1) <= EOS_BAND:
            row["regime"] = "edge_of_stability"
        else:
            row["regime"] = "oscillating"
        out.append(row)
    return out
