"""Gradient flow θ'(t) = −∇L(θ(t)) and how far gradient descent strays from it.

GD with step size η is the explicit Euler discretisation of the gradient flow, so for small η
the iterate θ_k stays near the flow's point θ_GF(kη); the edge-of-stability literature measures
where it stops doing so.  :func:`gradient_flow` solves the flow with diffrax (adaptive steps,
error control on every coordinate, an L-stable implicit solver where the Hessian is small
enough to factor); :func:`distance_to_flow` runs GD and the flow side by side and records
‖θ_GD(k) − θ_GF(kη)‖ for many initial points at once.

Both run in float64 and are deterministic: the same input gives the same numbers whatever the
chunking (each trajectory is solved with its own step-size controller; a test checks it).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._records import Record
from ._validation import check_batch, choice, fail, finite_float, positive_int
from .problems import Problem

__all__ = ["SOLVERS", "FlowResult", "DistanceResult", "gradient_flow", "distance_to_flow", "flow_distance"]

#: the ODE solvers.  "auto" picks Tsit5 (explicit, 5th order) unless the flow is stiff at the
#: start: λ_max(H(θ₀))·t_max > STIFF for some initial point (an explicit solver would need about
#: that / 3 steps) and d <= IMPLICIT_MAX_DIM, where the implicit Kvaerno5 (L-stable, Newton
#: iterations on the d x d Jacobian −H) is affordable
SOLVERS = ("auto", "tsit5", "dopri8", "kvaerno5")
IMPLICIT_MAX_DIM = 256
STIFF = 1e4
#: the status of a solve: reached every requested time, ran out of solver steps, or failed
#: (a non-finite state or a step size that underflowed: the flow blew up)
FLOW_STATUSES = ("ok", "max_steps", "failed")


#: a stored status is its index in FLOW_STATUSES (CF flag attributes say so)
_STATUS_ATTRS = {"flag_values": list(range(len(FLOW_STATUSES))), "flag_meanings": " ".join(FLOW_STATUSES)}


def _codes(status: np.ndarray) -> np.ndarray:
    return np.array([FLOW_STATUSES.index(str(s)) for s in status], dtype=np.int8)


@dataclass(frozen=True, repr=False)
class FlowResult(Record):
    """Gradient-flow paths from :func:`gradient_flow`.

    Attributes:
        t: (n,) the requested times, increasing from 0.
        theta: (B, n, d) θ(t) of each initial point (NaN at times after a solve stopped).
        loss: (B, n) L(θ(t)).
        status: (B,) "ok", "max_steps" (the solver's step budget ran out: raise max_steps) or
            "failed" (the state became non-finite or the step size underflowed).
        accepted_steps, rejected_steps: (B,) the adaptive solver's step counts.
        solver: the diffrax solver used; rtol, atol: its error tolerances (local, per step: the
            global error is typically 10-100x larger).
        stiffness: max λ_max(H(θ₀))·t_max over the initial points, what "auto" chose by (NaN
            when it was not estimated: a solver was named, or d > 256).
    """

    t: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    status: np.ndarray
    accepted_steps: np.ndarray
    rejected_steps: np.ndarray
    solver: str
    rtol: float
    atol: float
    stiffness: float

    def to_xarray(self):
        import xarray as xr

        return xr.Dataset(
            {"theta": (("trajectory", "t", "coordinate"), self.theta), "loss": (("trajectory", "t"), self.loss),
             "status": ("trajectory", _codes(self.status), _STATUS_ATTRS),
             "accepted_steps": ("trajectory", self.accepted_steps), "rejected_steps": ("trajectory", self.rejected_steps)},
            coords={"t": self.t},
            attrs={"solver": self.solver, "rtol": self.rtol, "atol": self.atol, "stiffness": self.stiffness})


@dataclass(frozen=True, repr=False)
class DistanceResult(Record):
    """GD against the gradient flow, from :func:`distance_to_flow`.

    Attributes:
        step: (n,) recorded GD steps k (0, every, 2·every, ... <= steps); t = k·η the flow time.
        distance: (B, n) ‖θ_GD(k) − θ_GF(kη)‖ (inf once GD diverged).
        gd_loss, flow_loss: (B, n) L along GD and along the flow.
        departure: (B,) the first recorded step with distance > rtol · (1 + ‖θ_GF(kη)‖), −1 if
            none: where GD left the flow, at the resolution of ``every``.
        flow_status: (B,) the flow solve's status (see :class:`FlowResult`); a distance to a
            flow that did not reach its time is NaN.
        eta, rtol, solver: the step size, the departure tolerance, the ODE solver.
    """

    step: np.ndarray
    distance: np.ndarray
    gd_loss: np.ndarray
    flow_loss: np.ndarray
    departure: np.ndarray
    flow_status: np.ndarray
    eta: float
    rtol: float
    solver: str

    def to_xarray(self):
        import xarray as xr

        return xr.Dataset(
            {"distance": (("trajectory", "step"), self.distance), "gd_loss": (("trajectory", "step"), self.gd_loss),
             "flow_loss": (("trajectory", "step"), self.flow_loss), "departure": ("trajectory", self.departure),
             "flow_status": ("trajectory", _codes(self.flow_status), _STATUS_ATTRS)},
            coords={"step": self.step, "t": ("step", self.step * self.eta)},
            attrs={"eta": self.eta, "rtol": self.rtol, "solver": self.solver})


def _times(times, t_max: float, caller: str) -> np.ndarray:
    """Requested times: n points of [0, t_max] (an int n >= 2) or an increasing array in it."""
    if isinstance(times, (int, np.integer)) and not isinstance(times, bool):
        return np.linspace(0.0, t_max, positive_int(times, "times", caller, minimum=2))
    try:
        ts = np.asarray(times, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise fail("times", caller, "an int >= 2 or increasing finite times in [0, t_max]", times) from None
    if ts.size < 1 or not np.all(np.isfinite(ts)) or ts[0] < 0 or ts[-1] > t_max or np.any(np.diff(ts) <= 0):
        raise fail("times", caller, f"an int >= 2 or increasing finite times in [0, t_max = {t_max:g}]", times)
    return ts


def _stiffness(problem: Problem, th: np.ndarray, t_max: float) -> float:
    """max over the initial points of λ_max(H(θ₀))·t_max (dense Hessians; d <= IMPLICIT_MAX_DIM)."""
    import jax
    import jax.numpy as jnp

    fn = _COMPILED.get((problem.loss, "stiffness"))
    if fn is None:
        fn = _COMPILED[(problem.loss, "stiffness")] = jax.jit(
            jax.vmap(lambda x: jnp.linalg.eigvalsh(jax.hessian(problem.loss)(x))[-1]))
    lam = fn(jnp.asarray(th))
    lam = np.asarray(lam)
    return float(np.max(lam[np.isfinite(lam)], initial=0.0) * t_max)


def _solver(name: str, problem: Problem, th: np.ndarray, t_max: float, rtol: float, atol: float):
    """(name, diffrax solver, stiffness estimate or NaN)."""
    import diffrax
    import optimistix

    stiff = math.nan
    if name == "auto":
        if problem.dim <= IMPLICIT_MAX_DIM:
            stiff = _stiffness(problem, th, t_max)
        name = "kvaerno5" if stiff > STIFF else "tsit5"
    if name == "kvaerno5":  # Newton to well below the step's error tolerance (the default chord
        # iteration at the controller's tolerances rejected about half of the steps on ½(1 − xy)²)
        return name, diffrax.Kvaerno5(root_finder=optimistix.Newton(rtol=rtol * 1e-2, atol=atol * 1e-2)), stiff
    return name, {"tsit5": diffrax.Tsit5, "dopri8": diffrax.Dopri8}[name](), stiff


_COMPILED: dict = {}


def _flow_solver(problem: Problem, solver, max_steps: int, key: tuple):
    """A compiled solve of one batch: (θ₀ (B, d), ts, rtol, atol) -> (ys, result codes, counts);
    cached per (loss, solver, max_steps, Newton tolerances): a new θ₀, t or tolerance does not
    recompile."""
    key = (problem.loss, max_steps, *key)
    if key not in _COMPILED:
        if len(_COMPILED) > 32:
            _COMPILED.clear()
        _COMPILED[key] = _build_flow_solver(problem, solver, max_steps)
    return _COMPILED[key]


def _build_flow_solver(problem: Problem, solver, max_steps: int):
    import diffrax
    import jax
    import jax.numpy as jnp

    grad = jax.grad(problem.loss)
    term = diffrax.ODETerm(lambda t, y, args: -grad(y))

    def one(y0, ts, rtol, atol):
        sol = diffrax.diffeqsolve(
            term, solver, t0=0.0, t1=ts[-1], dt0=None, y0=y0, saveat=diffrax.SaveAt(ts=ts),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol), max_steps=max_steps, throw=False)
        code = jnp.where(sol.result == diffrax.RESULTS.successful, 0,
                         jnp.where(sol.result == diffrax.RESULTS.max_steps_reached, 1, 2))
        return sol.ys, code, sol.stats["num_accepted_steps"], sol.stats["num_rejected_steps"]

    return jax.jit(jax.vmap(one, in_axes=(0, None, None, None)))


def _pad_rows(a: np.ndarray, size: int) -> np.ndarray:
    return a if a.shape[0] == size else np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)])


def gradient_flow(
    problem: Problem,
    theta0,
    t_max: float,
    *,
    times: Any = 101,
    solver: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
    max_steps: int = 100_000,
    chunk_size: int = 64,
) -> FlowResult:
    """Solve the gradient flow θ'(t) = −∇L(θ), θ(0) = θ₀, for every initial point.

    Main arguments:
        problem: the :class:`~gdstab.problems.Problem`.
        theta0: (B, d) initial points (or (d,) for one).
        t_max: the final time (> 0).

    Other arguments (keyword-only):
        times: the times to return: an int n >= 2 (n equally spaced points of [0, t_max],
            default 101) or increasing times in [0, t_max].
        solver: "auto" (default), "tsit5", "dopri8" or "kvaerno5".  "auto" is Tsit5 (explicit)
            unless λ_max(H(θ₀))·t_max > 1e4 at some initial point and d <= 256: then the flow is
            stiff and Kvaerno5 (implicit, L-stable) takes far fewer steps.  An explicit solver on
            a stiff flow takes about λ_max·t_max/3 steps (a Hessian that sharpens along the path
            is not foreseen): a solve that runs out of steps says so in its status.
        rtol, atol: the step-size controller's relative and absolute error tolerances (the
            local error of every coordinate is kept below atol + rtol·|θ_i|).
        max_steps: the solver's step budget per trajectory; a solve that exhausts it has status
            "max_steps" and NaN after the last time it reached.
        chunk_size: trajectories per compiled call (results do not depend on it).

    Returns a :class:`FlowResult`.
    """
    import jax

    caller = "gradient_flow"
    if not isinstance(problem, Problem):
        raise fail("problem", caller, "a gdstab Problem", problem)
    t_max = finite_float(t_max, "t_max", caller, low=0.0)
    ts = _times(times, t_max, caller)
    solver = choice(solver, "solver", caller, SOLVERS)
    rtol, atol = finite_float(rtol, "rtol", caller, low=0.0), finite_float(atol, "atol", caller, low=0.0)
    max_steps = positive_int(max_steps, "max_steps", caller)
    chunk_size = positive_int(chunk_size, "chunk_size", caller)
    th, _ = check_batch(problem, theta0, 1.0, caller)
    with jax.enable_x64(True):
        name, slv, stiff = _solver(solver, problem, th, t_max, rtol, atol)
        tag = (name, rtol, atol) if name == "kvaerno5" else (name,)  # the Newton tolerances are static
        ys, code, acc, rej = _solve_chunks(_flow_solver(problem, slv, max_steps, tag), th, ts, rtol, atol, chunk_size)
        ys = np.where(np.isfinite(ys), ys, np.nan)
        loss = _losses(problem, ys)
    status = np.asarray(FLOW_STATUSES, dtype=object)[code]
    return FlowResult(t=ts, theta=ys, loss=loss, status=status, accepted_steps=acc, rejected_steps=rej,
                      solver=name, rtol=rtol, atol=atol, stiffness=stiff)


def _solve_chunks(solve, th: np.ndarray, ts: np.ndarray, rtol: float, atol: float, chunk: int):
    B = th.shape[0]
    # at least two rows: XLA compiles a batch of one to different floating-point code (measured:
    # last-bit differences), so one trajectory alone would not equal itself inside a batch
    chunk = max(2, min(chunk, B))
    parts = []
    for s in range(0, B, chunk):
        m = min(B, s + chunk) - s
        out = solve(_pad_rows(th[s:s + m], chunk), ts, rtol, atol)
        parts.append([np.asarray(o)[:m] for o in out])
    ys, code, acc, rej = (np.concatenate([p[i] for p in parts]) for i in range(4))
    return ys, code.astype(int), acc.astype(np.int64), rej.astype(np.int64)


def _losses(problem: Problem, ys: np.ndarray) -> np.ndarray:
    """L at every finite point of a (B, n, d) array (NaN elsewhere)."""
    import jax

    flat = ys.reshape(-1, ys.shape[-1])
    ok = np.all(np.isfinite(flat), axis=1)
    out = np.full(flat.shape[0], np.nan)
    if ok.any():
        fn = _COMPILED.get((problem.loss, "loss"))
        if fn is None:
            fn = _COMPILED[(problem.loss, "loss")] = jax.jit(jax.vmap(problem.loss))
        out[ok] = np.asarray(fn(flat[ok]))
    return out.reshape(ys.shape[:2])


def _gd_records(problem: Problem, th: np.ndarray, eta: float, n_rec: int, every: int) -> np.ndarray:
    """GD iterates θ_0, θ_every, ... (n_rec of them), (B, n_rec, d), without storing the others
    (compiled once per loss and record layout; η is traced)."""
    import jax
    import jax.numpy as jnp

    run = _COMPILED.get((problem.loss, "gd"))
    if run is None:
        grad = jax.vmap(jax.grad(problem.loss))

        @functools.partial(jax.jit, static_argnums=(2, 3))
        def run(x, eta, n_rec, every):
            def block(x, _):
                x2 = jax.lax.fori_loop(0, every, lambda i, y: y - eta * grad(y), x)
                return x2, x2

            _, rest = jax.lax.scan(block, x, None, length=n_rec - 1)
            return jnp.concatenate([x[None], rest], axis=0)

        _COMPILED[(problem.loss, "gd")] = run
    return np.moveaxis(np.asarray(run(jnp.asarray(th), jnp.asarray(eta), n_rec, every)), 0, 1)


def flow_distance(gd, flow_theta) -> tuple[np.ndarray, np.ndarray]:
    """‖θ_GD − θ_GF‖ and the same relative to 1 + ‖θ_GF‖ (the scale the departure tolerance of
    :func:`distance_to_flow` applies to), over the last axis of two arrays of the same shape:
    inf where GD is not finite, NaN where the flow is not (a solve that failed)."""
    gd = np.asarray(gd, dtype=np.float64)
    flow_theta = np.asarray(flow_theta, dtype=np.float64)
    with np.errstate(over="ignore", invalid="ignore"):
        diff = gd - flow_theta
        dist = np.sqrt(np.sum(diff * diff, axis=-1))
        dist = np.where(np.isnan(flow_theta).any(axis=-1), np.nan, np.where(np.isfinite(gd).all(axis=-1), dist, np.inf))
        return dist, dist / (1.0 + np.sqrt(np.sum(flow_theta * flow_theta, axis=-1)))


def distance_to_flow(
    problem: Problem,
    theta0,
    eta: float,
    steps: int,
    *,
    every: int = 1,
    rtol: float = 1e-2,
    solver: str = "auto",
    ode_rtol: float = 1e-10,
    ode_atol: float = 1e-12,
    max_steps: int = 100_000,
    chunk_size: int = 64,
) -> DistanceResult:
    """‖θ_GD(k) − θ_GF(kη)‖ along GD runs of ``steps`` steps at step size η, vmapped over the
    initial points.

    Main arguments:
        problem: the :class:`~gdstab.problems.Problem`.
        theta0: (B, d) initial points (or (d,)).
        eta: the GD step size (> 0); the flow is compared at times t = kη.
        steps: GD steps (>= 1).

    Other arguments (keyword-only):
        every: record every k-th step (steps 0, every, ... up to ``steps``).
        rtol: the departure tolerance: GD has left the flow at the first recorded step where
            ‖θ_GD − θ_GF‖ > rtol · (1 + ‖θ_GF‖) (default 1e-2).
        solver, ode_rtol, ode_atol, max_steps, chunk_size: of the flow, see
            :func:`gradient_flow`.

    Returns a :class:`DistanceResult`; a diverging GD run is a result (distance inf), not an
    error.
    """
    import jax

    caller = "distance_to_flow"
    if not isinstance(problem, Problem):
        raise fail("problem", caller, "a gdstab Problem", problem)
    eta = finite_float(eta, "eta", caller, low=0.0)
    steps = positive_int(steps, "steps", caller)
    every = positive_int(every, "every", caller)
    rtol = finite_float(rtol, "rtol", caller, low=0.0)
    if every > steps:
        raise fail("every", caller, f"an int in [1, steps = {steps}]", every)
    th, _ = check_batch(problem, theta0, eta, caller)
    rec = np.arange(0, steps + 1, every)
    flow = gradient_flow(problem, th, float(rec[-1] * eta), times=rec * eta, solver=solver, rtol=ode_rtol, atol=ode_atol,
                         max_steps=max_steps, chunk_size=chunk_size)
    with jax.enable_x64(True), np.errstate(over="ignore", invalid="ignore"):
        gd = _gd_records(problem, th, eta, rec.size, every)
        gd_loss = _losses(problem, gd)
        dist, rel = flow_distance(gd, flow.theta)
        away = rel > rtol
    departure = np.where(away.any(axis=1), rec[np.argmax(away, axis=1)], -1)
    return DistanceResult(step=rec, distance=dist, gd_loss=gd_loss, flow_loss=flow.loss, departure=departure,
                          flow_status=flow.status, eta=eta, rtol=rtol, solver=flow.solver)
