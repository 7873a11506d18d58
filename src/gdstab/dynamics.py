"""The gradient-descent map as a dynamical system, run for many trajectories at once.

Main entry point: :func:`trajectories`.  Each trajectory has its own initial point θ₀ and its
own step size η and follows θ_{t+1} = G(θ_t) = θ_t − η ∇L(θ_t) for at most T steps.  Every
trajectory ends with a :class:`Status` and the step at which it was decided.

Classification (all tolerances are fields of :class:`Criteria`; the definition is applied at
every step t = 0, 1, …, T to the current iterate θ_t with g = ∇L(θ_t)):

* **diverged** at t if L(θ_t), θ_t or η g is not finite, or ‖θ_t‖ > ``max_norm``;
* **settled** at t if the displacement ‖θ_{t+1} − θ_t‖ = η‖g‖ is ≤ ``tol`` at ``window``
  consecutive steps ending at t.  A settled trajectory is **converged** if L(θ_t) − L* ≤
  ``f_tol`` (or L* is unknown), and **stationary** otherwise (a critical point that is not a
  global minimum, e.g. a saddle).  Below η = ``ETA_CRITICAL`` = 10⁻³ a small displacement only
  says that η is small: there a settled trajectory that is not at a global minimum (or whose L*
  is unknown) must also have ``ETA_CRITICAL``·‖g‖ ≤ ``tol``, else it is **bounded** (undecided);
* **periodic** with period p: the iterates are cut into segments of ``check_every`` steps.  At
  the start of each segment the current point is an anchor; the segment's *return time* is the
  smallest k in 2..``max_period`` with ‖θ_{anchor+k} − θ_anchor‖ ≤ ``tol`` (none if the point
  already returned after one step, which is settling, not a cycle).  A trajectory is periodic
  with period p when ``period_checks`` consecutive segments have the same return time p and the
  cycle persists: the largest one-step displacement ‖θ_{k+1} − θ_k‖ over the probe steps
  k = anchor + 1 … anchor + ``max_period`` (which cover every phase of a p-cycle) has not shrunk
  by more than ``PERSISTENCE`` = 0.1 % relative since the previous segment.  Without that
  condition a slowly contracting oscillation (θ_t − θ* ∝ (1 − ηλ)^t with |1 − ηλ| close to 1,
  e.g. near η = 2/λ) returns within tol after two steps long before it settles and would be
  called a 2-cycle.  (Oscillations contracting by less than 0.1 % per ``check_every`` steps
  remain indistinguishable from cycles.)  The cycle must also close: the squared distance of the
  segment's first return to its anchor may not grow from one segment to the next unless it is
  below max((``DRIFT``·tol)², 2(64 eps)²(1 + ‖θ‖²)) (``DRIFT`` = 10⁻³, :mod:`gdstab.outcomes`);
  an orbit drifting slowly outwards (near a neutrally stable point, e.g. x²/2 + x⁴/4 at η = 2)
  returns within tol too, but its return distance grows.  It is decided at step anchor +
  ``max_period`` of the last of the agreeing segments;
* **bounded** at t = T if none of the above happened (e.g. a chaotic orbit, or convergence
  slower than T steps).

If several verdicts occur at the same step the order is diverged > settled > periodic >
bounded.  Once decided, a trajectory is frozen: ``theta`` is the iterate at the decision step.

Update rules (``optimizer=``: heavy-ball momentum, Nesterov, RMSProp, Adam, any optax
transformation; :mod:`gdstab.optimizers`) run through the same loop and the same definition,
applied to the full state z_t = (θ_t, the rule's buffers) instead of θ_t: the displacement is
‖z_{t+1} − z_t‖ (settled needs θ *and* the buffers at rest: a momentum buffer that still moves
is not converged), the return distances of the periodic test compare full states, and a
trajectory diverges when any entry of z is non-finite or ‖z‖ > ``max_norm``.  For GD, z = θ and
the displacement is η‖g‖, as above.

Two backends follow this definition: ``"jax"`` (any problem and rule, CPU or GPU, float64 or
float32, optional per-step metrics) and ``"native"`` (compiled register-blocked kernels for the
closed-form toys, plain GD, float64 on the CPU).  ``"auto"`` picks native where it applies.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import os
from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from . import interrupts
from .outcomes import ETA_CRITICAL, Criteria, Status, fraction_rows, rounding2
from .outcomes import PERSIST2 as _PERSIST2
from ._validation import InvalidParameterError, check_batch, choice, fail, positive_int
from .optimizers import GD, Rule, RuleKind, as_rule, state_rule
from .problems.base import Problem
from .stats import wilson_interval
from ._records import Record, eta_value

__all__ = [
    "Status",
    "Criteria",
    "Metrics",
    "Trajectories",
    "trajectories",
    "gd_map",
    "iterate",
    "RuleStep",
    "rule_step",
    "trace_count",
    "sgd_batch_indices",
    "use_wide_cpu_vectors",
]


# raw codes shared with the native kernels (before the settled -> converged/stationary split)
_RAW_SETTLED, _RAW_DIVERGED, _RAW_PERIODIC, _RAW_BOUNDED = 1, 2, 3, 4
_RAW_IDLE = 5  # a lane of the JAX engine with no trajectory (never reported)


@dataclass(frozen=True, repr=False)
class Metrics(Record):
    """Per-step metrics recorded every ``record_every`` steps: arrays of shape (R, B) at the
    steps ``steps`` (R,).  After its decision step a trajectory is frozen, so its values stay
    those of the decision step: for a diverged trajectory non-finite, or finite (e.g. a huge
    loss) when it was decided by ‖θ‖ > ``max_norm``; use ``status`` and ``step`` to tell which
    records come after a divergence (as :func:`gdstab.experiments.paper_nets.heatmap_data` does)."""

    steps: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    step_norm: np.ndarray  # η ‖∇L‖


@dataclass(frozen=True, repr=False)
class Trajectories(Record):
    """Outcome of :func:`trajectories` for B trajectories (host NumPy arrays).

    Attributes:
        status: (B,) int8 :class:`Status` codes.
        step: (B,) decision step (T for bounded trajectories).
        period: (B,) detected period for periodic trajectories, else 0.
        theta: (B, d) iterate at the decision step.
        loss, grad_norm: (B,) L and ‖∇L‖ at ``theta``.
        eta: (B,) step sizes.
        steps: T.  criteria: the :class:`Criteria` used.  backend: "jax" or "native".
        metrics: :class:`Metrics` when ``record_every`` was given, else None.
        optimizer: the update rule (:class:`gdstab.optimizers.Rule`).
        buffers: (B, D − d) the rule's float buffers at the decision step (the rest of the full
            state z = (θ, buffers), :func:`gdstab.optimizers.state_rule`); None for GD.
    """

    status: np.ndarray
    step: np.ndarray
    period: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    grad_norm: np.ndarray
    eta: np.ndarray
    steps: int
    criteria: Criteria
    backend: str
    metrics: Metrics | None = None
    optimizer: Rule = GD
    buffers: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.status.shape[0])

    def count(self, status: Status | str, mask: np.ndarray | None = None) -> int:
        code = Status[status.upper()] if isinstance(status, str) else Status(status)
        sel = self.status == code
        if mask is not None:
            sel &= mask
        return int(sel.sum())

    def fraction(self, status: Status | str, mask: np.ndarray | None = None) -> tuple[float, float, float]:
        """Fraction of trajectories (optionally within ``mask``) with ``status``, and its Wilson
        95% interval: ``(p, low, high)``."""
        n = len(self) if mask is None else int(np.sum(mask))
        return wilson_interval(self.count(status, mask), n)

    def summary(self) -> list[dict[str, Any]]:
        """Per distinct η (at the precision it was given): the number of trajectories and, per
        status, the fraction with its Wilson 95% interval (:func:`gdstab.outcomes.fraction_rows`).
        :meth:`summary_table` is the same as a flat table."""
        return [{"eta": eta_value(eta), **fraction_rows(self.status[self.eta == eta])} for eta in np.unique(self.eta)]

    def summary_table(self):
        """:meth:`summary` as a ``pandas.DataFrame``: one row per η, columns ``n`` and, per
        status, ``<status>`` (fraction), ``<status>_count``, ``<status>_low``, ``<status>_high``."""
        import pandas as pd

        rows = []
        for r in self.summary():
            row = {"eta": r["eta"], "n": r["n"]}
            for k, v in r.items():
                if isinstance(v, dict):
                    row.update({k: v["fraction"], f"{k}_count": v["count"], f"{k}_low": v["low"], f"{k}_high": v["high"]})
            rows.append(row)
        return pd.DataFrame(rows).set_index("eta")

    def to_xarray(self):
        """The trajectories as an ``xarray.Dataset`` over ``trajectory`` (and ``coord``,
        ``record``, ``buffer``): status with CF ``flag_values``/``flag_meanings``, decision step,
        period, final θ, loss, ‖∇L‖, η, the rule's buffers and the recorded metrics; attrs: T,
        backend, optimizer, criteria."""
        import xarray as xr

        from .outcomes import status_variable_attrs

        B = len(self)
        data = {"status": (("trajectory",), self.status, status_variable_attrs()),
                "decision_step": (("trajectory",), self.step, {"long_name": "step of the decision", "units": "steps"}),
                "period": (("trajectory",), self.period, {"long_name": "period of a periodic trajectory (else 0)"}),
                "theta": (("trajectory", "coord"), self.theta, {"long_name": "iterate at the decision step"}),
                "loss": (("trajectory",), self.loss, {"long_name": "loss at theta"}),
                "grad_norm": (("trajectory",), self.grad_norm, {"long_name": "|grad L| at theta"}),
                "eta": (("trajectory",), self.eta, {"long_name": "step size"})}
        if self.buffers is not None:
            data["buffers"] = (("trajectory", "buffer"), self.buffers, {"long_name": "the rule's buffers"})
        if self.metrics is not None:
            m = self.metrics
            for name, v in (("loss_t", m.loss), ("grad_norm_t", m.grad_norm), ("step_norm_t", m.step_norm)):
                data[name] = (("trajectory", "record"), np.asarray(v).T)
        coords = {"trajectory": np.arange(B), "coord": np.arange(self.theta.shape[1])}
        if self.metrics is not None:
            coords["record"] = ("record", np.asarray(self.metrics.steps), {"units": "steps"})
        return xr.Dataset(data, coords=coords, attrs={"steps": self.steps, "backend": self.backend,
                                                      "optimizer": self.optimizer.spec(),
                                                      "criteria": json.dumps(self.criteria.to_dict())})

    def to_dataframe(self):
        """One row per trajectory: status (its name), decision step, period, η, loss, ‖∇L‖ and,
        for d <= 16, the final θ as columns ``theta_0`` …"""
        import pandas as pd

        df = pd.DataFrame({"status": [Status(int(c)).label for c in self.status], "decision_step": self.step,
                           "period": self.period, "eta": self.eta, "loss": self.loss, "grad_norm": self.grad_norm})
        if self.theta.shape[1] <= 16:
            for i in range(self.theta.shape[1]):
                df[f"theta_{i}"] = self.theta[:, i]
        df.index.name = "trajectory"
        return df


# ---------------------------------------------------------------------------------------------
# the GD map itself


def gd_map(problem: Problem, theta, eta):
    """G(θ) = θ − η ∇L(θ) for one point (pure; jit/vmap as you like)."""
    return problem.gd_map(theta, eta)


class RuleStep(NamedTuple):
    """One trajectory's step under an update rule, on the full state z = (θ, buffers, ...) (a
    tuple, :func:`gdstab.optimizers.state_rule`): the single step that ``iterate``, orbit
    diagrams, Lyapunov exponents and sharpness tracking all loop over (the trajectory engine adds
    its classification around the same :class:`~gdstab.optimizers.StateRule`).

    ``init(theta, eta, hyper) -> (z, aux)``; ``step(z, aux, eta, hyper, t, kd) -> (z', aux')``
    (``t``, ``kd``: the update's index and the trajectory's key data, used by SGD only);
    ``states``: the :class:`~gdstab.optimizers.StateRule` (``ravel``/``unravel`` flatten z).
    For GD, z = (θ,) and step is G(θ) = θ − η∇L(θ), bit for bit."""

    rule: Rule
    dim: int
    size: int
    init: Callable
    step: Callable
    states: Any


def rule_step(problem: Problem, rule: Rule = GD, *, dtype: str = "float64", batch_size: int = 0) -> RuleStep:
    """The :class:`RuleStep` of ``rule`` on ``problem`` (full batch, or minibatch SGD with
    ``batch_size`` > 0 on the batches of :func:`sgd_batch_indices`)."""
    import jax

    d = problem.dim
    fr = state_rule(rule, d, dtype)
    if batch_size:
        bgrad = jax.grad(problem.batch_loss)
        n = int(problem.n_samples)

        def step(z, aux, eta, hyper, t=0, kd=None):
            g = bgrad(z[0], sgd_batch_indices(kd, t, n, batch_size))
            return fr.step(z, aux, g, eta, hyper)
    else:
        def step(z, aux, eta, hyper, t=0, kd=None):
            return fr.step(z, aux, problem.grad(z[0]), eta, hyper)

    return RuleStep(rule, d, fr.size, fr.init, step, fr)


def iterate(problem: Problem, theta0, eta, *, steps: int, optimizer: Rule | str | None = None) -> np.ndarray:
    """All iterates θ_0 … θ_T of GD (or of the update rule ``optimizer``), without
    classification: an array (T + 1, B, d) in float64.

    Non-finite iterates are kept as they are (a diverging path ends in inf/nan).  Meant for
    drawing paths and orbits of a few trajectories; use :func:`trajectories` for outcomes."""
    import jax
    import jax.numpy as jnp

    steps = positive_int(steps, "steps", "iterate")
    rule = as_rule(optimizer, "iterate")
    th, et = check_batch(problem, theta0, eta, "iterate")
    with jax.enable_x64(True):
        rs = rule_step(problem, rule)
        hyper = jnp.asarray(rule.values)
        eta_j = jnp.asarray(et)
        z0 = jax.vmap(rs.init, in_axes=(0, 0, None))(jnp.asarray(th), eta_j, hyper)
        G = jax.vmap(rs.step, in_axes=(0, 0, 0, None))

        def body(c, _):
            z, aux = G(c[0], c[1], eta_j, hyper)
            return (z, aux), z[0]

        _, path = jax.lax.scan(body, z0, None, length=steps)
        return np.concatenate([th[None], np.asarray(path)], axis=0)


# ---------------------------------------------------------------------------------------------
# JAX backend

_TRACES: collections.Counter = collections.Counter()


def trace_count(problem: Problem | None = None) -> int:
    """How many times the JAX engine was traced (compiled), in total or for one problem.
    Tests use it to check that new step sizes or seeds do not recompile."""
    if problem is None:
        return sum(_TRACES.values())
    return _TRACES[id(problem)]


class _State(NamedTuple):
    theta: Any  # the full state z = (θ, the rule's float buffers); θ alone for GD
    aux: Any  # the rule's integer state (Adam's step count); () for most rules
    st: Any
    cnt: Any
    s1: Any
    anc: Any
    pseg: Any
    pprev: Any
    pcnt: Any
    pdec: Any
    pdmx: Any  # largest squared displacement over the probe steps of the current segment
    pdprev: Any  # the same of the previous segment
    pret: Any  # squared distance of the current segment's first return to its anchor
    prprev: Any  # the same of the previous segment
    sn: Any  # a rule's θ-step norm ‖θ_{t+1} − θ_t‖ at the last step (what a frozen trajectory records)
    lv: Any  # L(θ_t) at the last step while running (the decision step's, once frozen)
    lg: Any  # ‖∇L(θ_t)‖ likewise


def _gd_move(eta):
    """GD's move on z = (θ,): (θ − ηg, no aux, squared displacement η²‖g‖², no θ-step norm)."""
    def move(z, aux, g, gg):
        return (z[0] - eta * g,), aux, (eta * eta) * gg, None
    return move


def _sum2(parts):
    """Σ over the parts of the full state of the sum of squares (one part: exactly jnp.sum(x·x))."""
    import jax.numpy as jnp

    out = jnp.sum(parts[0] * parts[0])
    for x in parts[1:]:
        out = out + jnp.sum(x * x)
    return out


def _rule_move(fr, eta, hyper):
    """A rule's move on the full state z: the squared displacement is that of the full state."""
    import jax.numpy as jnp

    def move(z, aux, g, gg):
        z2, aux2 = fr.step(z, aux, g, eta, hyper)
        d2 = [jnp.sum((a - b) * (a - b)) for a, b in zip(z2, z)]
        return z2, aux2, sum(d2[1:], d2[0]), jnp.sqrt(d2[0])
    return move


def _step_one(value_grad_fn, move, s: _State, t, k, T, tol2, W, maxn2, P, checks, drift2, rnd2):
    """One step of the engine for one trajectory: classify the full state z_t (θ_t and the
    rule's buffers; θ_t alone for GD), then move if still running.  ``move(z, aux, g, ‖g‖²)``
    returns the next state, the squared displacement ‖z_{t+1} − z_t‖² and the θ-step norm
    (None for GD: η‖g‖).  Returns the new state and (L(θ_t), ‖∇L(θ_t)‖, θ-step norm) for
    optional recording.

    Mirrors the native kernels line by line (see the module docstring for the definition)."""
    import jax
    import jax.numpy as jnp

    z = s.theta
    anc = tuple(jnp.where(k == 0, a, b) for a, b in zip(z, s.anc))
    value, g = value_grad_fn(z[0])
    n2 = _sum2(z)
    gg = jnp.sum(g * g)
    moved, aux_moved, d2, step_norm = move(z, s.aux, g, gg)
    ok = (n2 <= maxn2) & (d2 < jnp.inf) & jnp.isfinite(value)
    small = d2 <= tol2
    s1 = jnp.where(small, s.s1 + 1, 0)
    settled = s1 >= W
    act = s.st == 0
    probe = (k >= 1) & (k <= P)
    dd = _sum2(tuple(a - b for a, b in zip(z, anc)))
    ret = dd <= tol2
    first = ret & (s.pseg == 0)
    pseg_probe = jnp.where(k == 1, jnp.where(ret, -1, 0), jnp.where(first, k, s.pseg))
    pseg = jnp.where(probe, pseg_probe, s.pseg).astype(s.pseg.dtype)
    pret = jnp.where(probe, jnp.where(k == 1, 0.0, jnp.where(first, dd, s.pret)), s.pret).astype(s.pret.dtype)
    pdmx = jnp.where(probe, jnp.where(k == 1, d2, jnp.maximum(s.pdmx, d2)), s.pdmx).astype(s.pdmx.dtype)
    seg_end = k == P
    found = pseg > 0
    # a cycle persists: its largest step does not shrink between segments (a slowly contracting
    # oscillation returns within tol after p steps long before it settles, but shrinks)
    # ... and closes: its return distance does not grow (an orbit drifting slowly outwards
    # returns within tol too), unless it is below the drift and rounding floors
    closes = (pret <= s.prprev) | (pret <= jnp.maximum(drift2, rnd2 * (1 + n2)))
    same = found & (pseg == s.pprev) & (pdmx >= s.pdprev * _PERSIST2) & closes
    pcnt = jnp.where(seg_end, jnp.where(same, s.pcnt + 1, jnp.where(found, 1, 0)), s.pcnt).astype(s.pcnt.dtype)
    pprev = jnp.where(seg_end, pseg, s.pprev)
    pdprev = jnp.where(seg_end, pdmx, s.pdprev)
    prprev = jnp.where(seg_end, pret, s.prprev)
    isper = seg_end & found & (pcnt >= checks)
    pdec = jnp.where(act & isper, pseg, s.pdec)
    ns = jnp.where(
        ~ok,
        _RAW_DIVERGED,
        jnp.where(settled, _RAW_SETTLED, jnp.where(isper, _RAW_PERIODIC, jnp.where(t == T, _RAW_BOUNDED, 0))),
    )
    st = jnp.where(act, ns, s.st).astype(s.st.dtype)
    cnt = s.cnt + act.astype(s.cnt.dtype)
    run = st == 0
    new_theta = tuple(jnp.where(run, a, b) for a, b in zip(moved, z))
    aux = jax.tree_util.tree_map(lambda a, b: jnp.where(run, a, b), aux_moved, s.aux)
    sn = s.sn if step_norm is None else step_norm.astype(s.sn.dtype)
    gn = jnp.sqrt(gg)
    new = _State(new_theta, aux, st, cnt, s1.astype(s.s1.dtype), anc, pseg, pprev, pcnt, pdec, pdmx, pdprev, pret,
                 prprev, sn, jnp.where(act, value, s.lv).astype(s.lv.dtype), jnp.where(act, gn, s.lg).astype(s.lg.dtype))
    return new, value, gn, step_norm


def sgd_batch_indices(key_data, t, n_samples: int, batch_size: int):
    """The sample indices of SGD update t (0-based) of one trajectory.

    An epoch is ``n_samples // batch_size`` updates on the consecutive batches of one random
    permutation of the samples; the ``n_samples mod batch_size`` samples left at the end of the
    permutation are not used in that epoch ("drop last").  Epoch e = t // updates_per_epoch
    uses the permutation ``jax.random.permutation(fold_in(key, e), n_samples)``, where ``key``
    is the trajectory's own key (``key_data`` is its ``jax.random.key_data``), so every
    trajectory has its independent shuffles."""
    import jax

    per_epoch = n_samples // batch_size
    key = jax.random.wrap_key_data(key_data)
    e = t // per_epoch
    j = t % per_epoch
    perm = jax.random.permutation(jax.random.fold_in(key, e), n_samples)
    return jax.lax.dynamic_slice(perm, (j * batch_size,), (batch_size,))


def _unpack(opts, dtype):
    """The traced criteria (:meth:`Criteria.as_array`) as the engine uses them."""
    import jax.numpy as jnp

    return ((opts[0] * opts[0]).astype(dtype), opts[1].astype(jnp.int32), (opts[2] * opts[2]).astype(dtype),
            opts[3].astype(jnp.int32), opts[4].astype(jnp.int32), opts[5].astype(jnp.int32),
            opts[7].astype(dtype), jnp.asarray(rounding2(float(jnp.finfo(dtype).eps)), dtype))


@functools.lru_cache(maxsize=64)
def _jax_runner(problem: Problem, chunk: int, n_records: int, dtype_name: str, batch_size: int = 0,
                kind: RuleKind = GD.kind, sequential: bool = False):
    """Compiled runner for one problem, chunk size (lanes), record layout, batch size (0: full
    batch), kind of update rule (:class:`~gdstab.optimizers.RuleKind`) and lane mode
    (``sequential``: see :func:`_sequential_run`; else :func:`_vector_run`).  η, the rule's
    hyperparameters, θ₀, the SGD keys, T and the tolerances are traced arguments, so changing
    them does not recompile."""
    import jax
    import jax.numpy as jnp

    value_grad_one = jax.value_and_grad(problem.loss)
    dtype = jnp.dtype(dtype_name)
    rule = kind.example
    fr = state_rule(rule, problem.dim, dtype)
    if batch_size:
        value_grad_batch = jax.value_and_grad(problem.batch_loss)
        n_samples = int(problem.n_samples)

    def traj_step(eta, hyper, kd, s, t, *rest):
        move = _gd_move(eta) if rule.is_gd else _rule_move(fr, eta, hyper)
        if batch_size:
            idx = sgd_batch_indices(kd, t, n_samples, batch_size)
            return _step_one(lambda th: value_grad_batch(th, idx), move, s, t, *rest)
        return _step_one(value_grad_one, move, s, t, *rest)

    def start(theta0, eta, hyper):
        B = theta0.shape[0]
        z0, aux0 = jax.vmap(fr.init)(theta0, eta, hyper)
        zi = jnp.zeros((B,), jnp.int32)
        zf = jnp.zeros((B,), dtype)
        state = _State(z0, aux0, zi, zi, zi, z0, zi, zi, zi, zi, zf, zf, zf, zf, zf, zf, zf)
        bufs = (jnp.full((n_records, B), jnp.nan, dtype),) * 3 if n_records else ()
        return state, bufs

    def load(state, bufs, lane_t, fresh, idle, theta0, eta, hyper):
        """Start new trajectories in the lanes where ``fresh`` is set (step 0, empty records)
        and mark the ``idle`` lanes as not running; the other lanes keep their state."""
        new_state, new_bufs = start(theta0, eta, hyper)

        def pick(a, b):
            return jnp.where(fresh.reshape(fresh.shape + (1,) * (a.ndim - 1)), a, b)

        state = jax.tree_util.tree_map(pick, new_state, state)
        state = state._replace(st=jnp.where(idle, _RAW_IDLE, state.st).astype(state.st.dtype))
        bufs = tuple(jnp.where(fresh[None, :], a, b) for a, b in zip(new_bufs, bufs))
        return state, bufs, jnp.where(fresh, 0, lane_t)

    runs = _sequential_run if sequential else _vector_run
    run = runs(problem, traj_step, n_records, dtype)
    jitted = jax.jit(run, donate_argnums=(0, 1, 2))

    @jax.jit
    def evaluate(theta):
        loss, g = jax.vmap(value_grad_one)(theta)
        return loss, jnp.sqrt(jnp.sum(g * g, axis=1))

    return _Runner(jax.jit(start), jitted, evaluate, jax.jit(load, donate_argnums=(0, 1, 2)))


def _record(bufs, at, t, T, record_every, n_records: int, values):
    """Write the metrics ``values`` of step t into the record buffers at ``at(row)`` (the index of
    the record row of t), where t is a recorded step no later than T."""
    import jax.numpy as jnp

    idx = at(jnp.minimum(t // record_every, n_records - 1))
    do = (t % record_every == 0) & (t <= T)
    return tuple(b.at[idx].set(jnp.where(do, v, b[idx])) for b, v in zip(bufs, values))


def _vector_run(problem: Problem, traj_step, n_records: int, dtype):
    """The engine's compiled call with the lanes vectorised (vmap: every lane computes every
    step, a finished lane on its frozen state): for small problems, whose per-lane work is
    too small to run alone.

    ``run(state, bufs, lane_t, n_seg, need, n_idle, η, hyper, keys, T, opts, every)`` runs at
    most ``n_seg`` segments of K steps, every lane at its own step lane_t + i (all lanes
    started at a segment boundary, so the segment phase i is common), while a lane is running
    and fewer than ``need`` lanes have finished beyond the ``n_idle`` idle ones (the host then
    moves waiting trajectories into the finished lanes).  A lane's step past its decision only
    repeats its frozen state, so the segments executed do not change any result."""
    import jax
    import jax.numpy as jnp
    from jax import lax

    def run(state, bufs, lane_t, n_seg, need, n_idle, eta, hyper, keys, T, opts, record_every):
        _TRACES[id(problem)] += 1  # runs at trace time only
        tol2, W, maxn2, P, K, checks, drift2, rnd2 = _unpack(opts, dtype)
        step = jax.vmap(traj_step, in_axes=(0, 0, 0, 0, 0) + (None,) * 9)
        lanes = jnp.arange(lane_t.shape[0])

        def body(i, c):
            state, bufs, lane_t = c
            t = lane_t + i
            state, loss_b, gn, sn = step(eta, hyper, keys, state, t, i, T, tol2, W, maxn2, P, checks, drift2, rnd2)
            if n_records:  # metrics of θ_t (before the move), in each lane's own row
                bufs = _record(bufs, lambda row: (row, lanes), t, T, record_every, n_records,
                               (loss_b, gn, eta * gn if sn is None else sn))
            return state, bufs, lane_t

        def segment(carry):
            seg, state, bufs, lane_t = carry
            # a segment stops once every running lane has classified its step T (later steps
            # would only repeat frozen states); no running lane is then left to continue it
            youngest = jnp.min(jnp.where(state.st == 0, lane_t, T))
            state, bufs, _ = lax.fori_loop(0, jnp.minimum(K, T + 1 - youngest), body, (state, bufs, lane_t))
            return seg + 1, state, bufs, jnp.minimum(lane_t + K, T + 1)

        def cond(carry):
            seg, state, _, _ = carry
            running = state.st == 0
            return (seg < n_seg) & jnp.any(running) & (jnp.sum(~running) - n_idle < need)

        seg, state, bufs, lane_t = lax.while_loop(cond, segment, (jnp.asarray(0, jnp.int32), state, bufs, lane_t))
        return state, bufs, lane_t, seg

    return run


def _sequential_run(problem: Problem, traj_step, n_records: int, dtype):
    """The engine's compiled call with the lanes run one after the other (``lax.map``), each
    for up to ``n_seg`` × K of its own steps and only while it is running: for problems whose
    step is already a large computation per trajectory (networks: a GEMM per layer), where a
    lane runs as fast alone as vectorised and a finished lane then costs nothing (true
    per-trajectory early exit).  Each lane's arithmetic is the same compiled code whatever the
    number of lanes, so the results do not depend on it.  Same signature as
    :func:`_vector_run` (``need`` and ``n_idle`` are not needed: the call returns after one
    pass over the lanes)."""
    import jax.numpy as jnp
    from jax import lax

    def run(state, bufs, lane_t, n_seg, need, n_idle, eta, hyper, keys, T, opts, record_every):
        _TRACES[id(problem)] += 1  # runs at trace time only
        tol2, W, maxn2, P, K, checks, drift2, rnd2 = _unpack(opts, dtype)
        budget = n_seg * K

        def one(args):
            s, b, t0, e, h, kd = args

            def body(c):
                i, s, b = c
                t = t0 + i
                s, loss_b, gn, sn = traj_step(e, h, kd, s, t, t % K, T, tol2, W, maxn2, P, checks, drift2, rnd2)
                if n_records:  # metrics of θ_t (before the move)
                    b = _record(b, lambda row: row, t, T, record_every, n_records,
                                (loss_b, gn, e * gn if sn is None else sn))
                return i + 1, s, b

            def cond(c):
                i, s, _ = c
                return (i < budget) & (s.st == 0)

            i, s, b = lax.while_loop(cond, body, (jnp.asarray(0, jnp.int32), s, b))
            return s, b, t0 + i

        state, bufs_t, lane_t = lax.map(one, (state, tuple(x.T for x in bufs), lane_t, eta, hyper, keys))
        return state, tuple(x.T for x in bufs_t), lane_t, jnp.asarray(n_seg, jnp.int32)

    return run


class _Runner(NamedTuple):
    start: Any  # theta0 -> (state, bufs)
    run: Any  # bounded segments of every lane, see _jax_runner
    evaluate: Any  # L and |grad L| at points
    load: Any  # new trajectories into finished lanes


# host-side segmenting of the engine: each compiled call runs about this long (an interrupt is
# honoured between calls).  The first call of a runner does SEGMENTS_FIRST segments of
# check_every steps; later calls use the measured time per segment.
CALL_SECONDS = 0.25
SEGMENTS_FIRST = 4
_SECONDS_PER_SEGMENT: dict = {}
#: a worker's compiled call returns to the host, which moves waiting trajectories into the
#: finished lanes, once this fraction of its lanes (at least one) has finished
REFILL_FRACTION = 1 / 8


class _Queue:
    """The trajectories waiting for a lane, in index order, shared by the worker threads; counts
    the finished ones for ``on_chunk(done, total)``."""

    def __init__(self, total: int, on_chunk):
        import threading

        self.next, self.total, self.done, self.on_chunk = 0, total, 0, on_chunk
        self.lock = threading.Lock()

    def take(self, n: int) -> np.ndarray:
        with self.lock:
            a, self.next = self.next, min(self.total, self.next + int(n))
            return np.arange(a, self.next)

    def pending(self) -> bool:
        with self.lock:
            return self.next < self.total

    def finished(self, n: int) -> None:
        with self.lock:
            self.done += int(n)
            if self.on_chunk is not None and n:
                self.on_chunk(self.done, self.total)


class _Inputs(NamedTuple):
    theta: np.ndarray  # (B, d) θ₀
    eta: np.ndarray
    hyper: np.ndarray
    keys: np.ndarray


class _Outputs(NamedTuple):
    theta: np.ndarray
    raw: np.ndarray
    step: np.ndarray
    period: np.ndarray
    sn: np.ndarray  # a rule's θ-step norm at the decision step
    last: list  # the engine's L and ‖∇L‖ at the decision step
    rec: list | None  # (n_records, B) loss, ‖∇L‖, step norm
    buffers: list  # [the rule's (B, D − d) buffers] once known


def _collect(state, bufs, lane: np.ndarray, fin: np.ndarray, out: _Outputs, is_gd: bool) -> None:
    """Copy the finished lanes' results into the host arrays at their trajectories' rows."""
    rows = lane[fin]
    out.theta[rows] = np.asarray(state.theta[0])[fin]
    out.raw[rows] = np.asarray(state.st)[fin]
    out.step[rows] = np.asarray(state.cnt)[fin] - 1
    out.period[rows] = np.asarray(state.pdec)[fin]
    out.sn[rows] = np.asarray(state.sn)[fin]
    out.last[0][rows] = np.asarray(state.lv)[fin]
    out.last[1][rows] = np.asarray(state.lg)[fin]
    if not is_gd:
        parts = [np.asarray(x).reshape(lane.size, -1)[fin] for x in state.theta[1:]]
        z = np.concatenate(parts, axis=1) if parts else np.empty((rows.size, 0), out.theta.dtype)  # stateless rule
        if not out.buffers:
            out.buffers.append(np.empty((out.theta.shape[0], z.shape[1]), out.theta.dtype))
        out.buffers[0][rows] = z
    if out.rec is not None:
        for r, b in enumerate(bufs):
            out.rec[r][:, rows] = np.asarray(b)[:, fin]


def _lane_inputs(inp: _Inputs, lane: np.ndarray):
    import jax.numpy as jnp

    src = np.where(lane >= 0, lane, lane.max())  # an idle lane holds a copy it never reports
    return jnp.asarray(inp.theta[src]), tuple(jnp.asarray(a[src]) for a in (inp.eta, inp.hyper, inp.keys))


def _segments(key) -> int:
    """Segments for the next compiled call of the runner ``key`` (about CALL_SECONDS)."""
    per = _SECONDS_PER_SEGMENT.get(key)
    return SEGMENTS_FIRST if per is None else int(max(1, min(2**20, CALL_SECONDS / max(per, 1e-9))))


def _lane_worker(runner: "_Runner", inp: _Inputs, out: _Outputs, queue: _Queue, chunk: int, args, is_gd):
    """One worker: ``chunk`` lanes run trajectories taken from the shared queue; a lane whose
    trajectory finished gets the next waiting one at the next segment boundary (persistent
    lanes), so the lanes stay busy until the work runs out.  Each trajectory's arithmetic does
    not depend on its lane or its neighbours, so the results do not depend on the chunk size,
    the threads or the order in which lanes were filled.  An interrupt is honoured between
    compiled calls of about CALL_SECONDS."""
    import time

    import jax.numpy as jnp

    lane = np.full(chunk, -1, np.int64)
    first = queue.take(chunk)
    if first.size == 0:
        return
    lane[: first.size] = first
    theta, ins = _lane_inputs(inp, lane)
    state, bufs = runner.start(theta, ins[0], ins[1])
    lane_t = jnp.zeros(chunk, jnp.int32)
    if (lane < 0).any():
        state, bufs, lane_t = runner.load(state, bufs, lane_t, jnp.zeros(chunk, bool), jnp.asarray(lane < 0), theta,
                                          ins[0], ins[1])
    key = id(runner.run)
    while True:
        interrupts.check()
        need = max(1, int(chunk * REFILL_FRACTION)) if queue.pending() else chunk + 1
        tic = time.perf_counter()
        state, bufs, lane_t, seg = runner.run(state, bufs, lane_t, jnp.asarray(_segments(key), jnp.int32),
                                              jnp.asarray(need, jnp.int32), jnp.asarray(int((lane < 0).sum()), jnp.int32),
                                              *ins, *args)
        st = np.asarray(state.st)
        # the latest rate (a first call that compiled overestimates it once; the next call corrects it)
        _SECONDS_PER_SEGMENT[key] = (time.perf_counter() - tic) / max(1, int(seg))
        fin = (st != 0) & (lane >= 0)
        if fin.any():
            _collect(state, bufs, lane, fin, out, is_gd)
            queue.finished(int(fin.sum()))
            lane[fin] = -1
            slots = np.flatnonzero(fin)
            new = queue.take(slots.size)
            if new.size:
                slots = slots[: new.size]
                lane[slots] = new
                fresh = np.zeros(chunk, bool)
                fresh[slots] = True
                theta, ins = _lane_inputs(inp, lane)
                state, bufs, lane_t = runner.load(state, bufs, lane_t, jnp.asarray(fresh), jnp.asarray(lane < 0),
                                                  theta, ins[0], ins[1])
        if not (lane >= 0).any():
            return


def _run_jax(problem, theta0, eta, steps, criteria, chunk, record_every, dtype_name, on_chunk, threads,
             batch_size=0, key_data=None, rule: Rule = GD, hyper=None, size=None):
    import jax
    import jax.numpy as jnp

    B, d = theta0.shape
    n_records = 0 if record_every is None else steps // record_every + 1
    itemsize = np.dtype(dtype_name).itemsize
    sequential = _sequential_lanes(problem, n_records, itemsize, jax.default_backend(), size)
    runner = _jax_runner(problem, chunk, n_records, dtype_name, batch_size, rule.kind, sequential)
    hyper_all = np.broadcast_to(rule.values.astype(dtype_name), (B, rule.values.size)) if hyper is None else \
        np.asarray(hyper, dtype=dtype_name)
    if key_data is None:
        key_data = np.zeros((B, 2), np.uint32)  # unused by full-batch GD
    inp = _Inputs(theta0, eta, hyper_all, key_data)
    out = _Outputs(np.empty((B, d), dtype=dtype_name), np.empty(B, np.int8), np.empty(B, np.int64),
                   np.empty(B, np.int64), np.empty(B, dtype_name), [np.empty(B, dtype_name) for _ in range(2)],
                   [np.empty((n_records, B), dtype_name) for _ in range(3)] if n_records else None, [])
    queue = _Queue(B, on_chunk)

    def work(_):
        with jax.enable_x64(dtype_name == "float64"):  # the x64 flag is thread-local
            args = (jnp.asarray(steps, jnp.int32), jnp.asarray(criteria.as_array(), dtype=dtype_name),
                    jnp.asarray(1 if record_every is None else record_every, jnp.int32))
            _lane_worker(runner, inp, out, queue, chunk, args, rule.is_gd)

    n_workers = min(threads, -(-B // chunk))
    _map_chunks(work, range(n_workers), n_workers)
    loss, gnorm = _final_values(problem, out.theta, dtype_name, threads=threads)
    metrics = None
    if n_records:
        # after its decision step a trajectory is frozen: its later records repeat the values the
        # engine computed at the decision step (whenever its lane was collected)
        times = np.arange(n_records) * record_every
        after = times[:, None] > out.step[None, :]
        lv, lg = out.last
        for r, v in enumerate((lv, lg, (lg * eta).astype(dtype_name) if rule.is_gd else out.sn)):
            out.rec[r][after] = np.broadcast_to(v.astype(dtype_name), out.rec[r].shape)[after]
        metrics = Metrics(times, *out.rec)
    return out.theta, out.raw, out.step, out.period, loss, gnorm, metrics, (out.buffers[0] if out.buffers else None)


def _pad(a: np.ndarray, size: int) -> np.ndarray:
    """Pad the first axis to ``size`` with copies of the last row (one compiled shape)."""
    if a.shape[0] == size:
        return a
    return np.concatenate([a, np.repeat(a[-1:], size - a.shape[0], axis=0)])


def _map_chunks(fn, starts, threads: int) -> None:
    """Run ``fn(start)`` for every start, on ``threads`` threads (JAX and the compiled kernels
    release the GIL); ``fn`` writes its results into disjoint slices, so the order in which the
    calls finish does not matter.  The first error is raised."""
    starts = list(starts)
    if threads <= 1 or len(starts) <= 1:
        for s in starts:
            fn(s)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(threads, len(starts))) as pool:
        for _ in pool.map(fn, starts):
            pass


def _eval_chunk(problem: Problem, B: int) -> int:
    """Points per call when evaluating L and ∇L at final iterates: a power of two (few compiled
    shapes), at most 65536 and at most a ~64 MiB working set, no bigger than B needs."""
    per = 8 * (4 * problem.dim + 4) + int(problem.options.get("bytes_per_trajectory", 0))
    c = max(1, min(65536, (64 * 2**20) // per))
    c = 1 << int(math.floor(math.log2(c)))
    return max(1, min(c, 1 << max(0, math.ceil(math.log2(max(B, 1))))))


def _final_values(problem, theta: np.ndarray, dtype_name: str, threads: int = 1):
    """L and ‖∇L‖ at the final iterates, evaluated in fixed-size chunks (one compiled shape)."""
    import jax
    import jax.numpy as jnp

    B = theta.shape[0]
    chunk = _eval_chunk(problem, B)
    evaluate = _jax_runner(problem, chunk, 0, dtype_name).evaluate
    loss = np.empty(B, dtype_name)
    gnorm = np.empty(B, dtype_name)

    def one(start: int) -> int:
        stop = min(B, start + chunk)
        with jax.enable_x64(dtype_name == "float64"):  # the x64 flag is thread-local
            l, g = evaluate(jnp.asarray(_pad(theta[start:stop], chunk), dtype=dtype_name))
        loss[start:stop] = np.asarray(l)[: stop - start]
        gnorm[start:stop] = np.asarray(g)[: stop - start]
        return stop

    _map_chunks(one, range(0, B, chunk), threads)
    return loss, gnorm


def _run_native(problem, theta0, eta, steps, criteria, chunk, on_chunk, threads):
    """The compiled kernel; each chunk's raw codes become final statuses (and periods of
    non-periodic trajectories 0) in its worker, while the chunk is in cache."""
    from . import _native

    def post(out, a, b):
        status = _final_status(out["status"][a:b], out["loss"][a:b], out["grad_norm"][a:b], eta[a:b],
                               problem.min_value, criteria)
        out["status"][a:b] = status
        period = out["period"][a:b]  # (zero where the kernel found no period; written only where not)
        period[(period != 0) & (status != Status.PERIODIC)] = 0

    out = _native.run(
        problem.native.name, theta0, eta, problem.native.params, steps, criteria.as_array(),
        chunk_size=chunk, threads=threads, post=post,
    )
    if on_chunk is not None:
        on_chunk(theta0.shape[0], theta0.shape[0])
    return out["theta"], out["status"], out["step"], out["period"], out["loss"], out["grad_norm"], None, None


def _lane_bytes(problem: Problem, n_records: int, itemsize: int, size: int | None = None) -> int:
    """Bytes of one lane's working set: the full state (θ and the rule's buffers, ``size``
    values) in its copies, the records, and the gradient's temporaries (the problem's estimate,
    given in float64 bytes, or XLA's memory analysis of a user's model in this dtype)."""
    size = problem.dim if size is None else size
    extra = problem.options.get("bytes_per_trajectory")
    if extra is not None:
        extra = int(extra) * itemsize // 8  # float32 activations take half the bytes
    elif problem.dim > SMALL_DIM:  # a user's model: its gradient's working set, measured in this dtype
        extra = _measured_bytes(problem, "float64" if itemsize == 8 else "float32")
    return itemsize * (4 * size + 12 + 3 * n_records) + int(extra or 0)


#: problems up to this many parameters run in the CPU's large vectorised chunks
SMALL_DIM = 64


def _sequential_lanes(problem: Problem, n_records: int, itemsize: int, platform: str, size: int | None = None) -> bool:
    """Whether the lanes run one after the other (:func:`_sequential_run`): on the CPU, for
    problems whose lane does not fit L2_MIN_CHUNK times in a core's L2 cache (GEMM-sized
    steps: a 784-32-32-2 network on 100 digits costs 0.32 ms per step alone and 0.23 ms per
    lane in a vmapped chunk of 8, docs/performance.md; a finished lane then costs nothing).
    Fixed by the problem, dtype and machine, never by B or the threads, so results do not
    depend on them."""
    if platform != "cpu" or problem.dim <= SMALL_DIM:
        return False
    return l2_cache_bytes() // max(_lane_bytes(problem, n_records, itemsize, size), 1) < L2_MIN_CHUNK


def _auto_chunk(problem: Problem, B: int, n_records: int, itemsize: int, platform: str, size: int | None = None,
                threads: int = 1) -> int:
    """Lanes per worker (trajectories resident in one compiled call; a finished lane takes the
    next waiting trajectory).  On the CPU, small problems get up to 1024 vectorised lanes (above
    that XLA splits every elementwise op across threads and the synchronisation costs more than
    it saves; measured in docs/performance.md); larger ones lanes within a 64 MiB working set
    (accelerators: an eighth of the device's memory, :func:`chunk_budget_bytes`), on the CPU at
    most a core's L2 cache when that still holds L2_MIN_CHUNK lanes, and L2_MIN_CHUNK
    sequential lanes (:func:`_sequential_lanes`) for GEMM-sized problems.  A power of two, and
    at most a thread's share of B so that every thread has work."""
    per = _lane_bytes(problem, n_records, itemsize, size)
    small = platform == "cpu" and problem.dim <= SMALL_DIM
    c = max(1, min(1024 if small else 2**16, chunk_budget_bytes(platform) // max(per, 1)))
    if platform == "cpu" and not small:
        c = min(c, max(L2_MIN_CHUNK, l2_cache_bytes() // per))  # the chunk's working set stays in L2
    share = max(1, -(-B // max(1, threads)))
    c = min(c, share)
    return 1 << int(math.floor(math.log2(c)))


#: the working set of one chunk on the CPU
CPU_CHUNK_BYTES = 64 * 2**20


@functools.lru_cache(maxsize=4)
def chunk_budget_bytes(platform: str) -> int:
    """The working set one compiled chunk may use: 64 MiB on the CPU (measured:
    docs/performance.md); on an accelerator an eighth of the device's memory as JAX reports it
    (several chunks, their inputs and XLA's own buffers must fit beside it), 64 MiB where it
    does not say."""
    if platform == "cpu":
        return CPU_CHUNK_BYTES
    try:
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        limit = int(stats.get("bytes_limit", 0))
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        limit = 0
    return max(CPU_CHUNK_BYTES, limit // 8)


#: chunks of small networks are sized to the core's L2 cache when that holds at least this many
#: trajectories (a 144-parameter tanh network: 145k pixel-steps/s in chunks of 16 against 59k in
#: the 64 MiB chunks of 1024; docs/performance.md); bigger per-trajectory working sets keep the
#: 64 MiB rule, under which GEMM-sized models were measured
L2_MIN_CHUNK = 8


@functools.lru_cache(maxsize=1)
def l2_cache_bytes() -> int:
    """The L2 cache of one core in bytes (Linux sysfs; 1 MiB where it cannot be read)."""
    base = "/sys/devices/system/cpu/cpu0/cache"
    try:
        for entry in sorted(os.listdir(base)):
            path = os.path.join(base, entry)
            if not entry.startswith("index"):
                continue
            with open(os.path.join(path, "level")) as f:
                level = f.read().strip()
            with open(os.path.join(path, "type")) as f:
                kind = f.read().strip()
            if level == "2" and kind in ("Unified", "Data"):
                with open(os.path.join(path, "size")) as f:
                    text = f.read().strip().upper()
                unit = {"K": 2**10, "M": 2**20}.get(text[-1:], 1)
                return int(text.rstrip("KM")) * unit
    except (OSError, ValueError):
        pass
    return 2**20


#: XLA:CPU's option for the vector width of its own (elementwise) code; its default is 256 bits
#: even on AVX-512 CPUs.  512 made float64 depth-8 MLP steps about 1.15x faster in the median of
#: ten runs on the AVX-512 machine (their exact-erf GELU and its exp are elementwise code; matrix
#: products are not affected), with bit-identical results in every comparison made
#: (docs/performance.md)
WIDE_VECTORS_FLAG = "--xla_cpu_prefer_vector_width=512"


def use_wide_cpu_vectors() -> bool:
    """Let XLA:CPU use 512-bit vectors for elementwise code where the CPU has AVX-512.

    XLA reads the option from ``XLA_FLAGS`` when JAX creates its CPU backend, so this must run
    before the first JAX computation of the process (the ``gdstab`` command calls it before it
    imports JAX; a script calls it first thing).  It leaves a width the user set in
    ``XLA_FLAGS`` alone and does nothing on CPUs without AVX-512 or once the backend exists.
    Returns whether the process runs with the 512-bit option."""
    flags = os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_prefer_vector_width" in flags:
        return WIDE_VECTORS_FLAG in flags.split()
    if "avx512f" not in _cpu_flags() or _backend_started():
        return False
    os.environ["XLA_FLAGS"] = f"{flags} {WIDE_VECTORS_FLAG}".strip()
    return True


def _cpu_flags() -> set[str]:
    """The CPU's feature flags (Linux /proc/cpuinfo; empty where it cannot be read)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _backend_started() -> bool:
    """Whether JAX has created its backends already (XLA_FLAGS is no longer read then)."""
    import sys

    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge

        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # pragma: no cover - a JAX without this helper
        return True


_MEASURED: dict = {}


def _measured_bytes(problem: Problem, dtype_name: str, n: int = 8) -> int:
    """Bytes of XLA's temporary buffers per trajectory for the vmapped loss and gradient of
    ``problem`` (compiled once for ``n`` members and read from ``memory_analysis``; 0 where the
    backend does not say).  Cached per problem and dtype."""
    import jax
    import jax.numpy as jnp

    key = (id(problem.loss), problem.name, problem.dim, dtype_name)
    if key not in _MEASURED:
        with jax.enable_x64(dtype_name == "float64"):
            spec = jax.ShapeDtypeStruct((n, problem.dim), jnp.dtype(dtype_name))
            compiled = jax.jit(jax.vmap(jax.value_and_grad(problem.loss))).lower(spec).compile()
        info = compiled.memory_analysis()
        _MEASURED[key] = int(getattr(info, "temp_size_in_bytes", 0) or 0) // n if info is not None else 0
    return _MEASURED[key]


def trajectories(
    problem: Problem,
    theta0,
    eta,
    *,
    steps: int,
    criteria: Criteria | None = None,
    record_every: int | None = None,
    chunk_size: int | str = "auto",
    backend: str = "auto",
    dtype: str = "float64",
    threads: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    batch_size: int | None = None,
    keys=None,
    optimizer: Rule | str | None = None,
    hyper=None,
) -> Trajectories:
    """Run B gradient-descent (or SGD, or any update rule with ``optimizer``) trajectories and
    classify each one.

    Main arguments:
        problem: the :class:`~gdstab.problems.Problem`.
        theta0: (B, d) initial points (or (d,) for one trajectory).
        eta: step size(s): a float, or (B,) floats, all finite and > 0.

    Other arguments (keyword-only):
        steps: T, the maximum number of steps (>= 1).
        criteria: classification tolerances (:class:`Criteria`; default
            ``Criteria.for_problem(problem, dtype)``: the documented defaults, with tol = 1e-5 in
            float32; for networks (problems on data) relative to the problem's scale).
        record_every: record loss, ‖∇L‖ and η‖∇L‖ every k steps (JAX backend); None records
            nothing and costs nothing.
        chunk_size: trajectories per compiled call, or "auto" (sized to the problem's memory
            needs).  Results do not depend on it.
        backend: "auto" (native kernel for closed-form toys in float64 on the CPU without
            recording, JAX otherwise), "jax" or "native".
        dtype: "float64" (default, for analysis) or "float32".
        threads: chunks run in parallel on this many threads (default: all cores on the CPU,
            1 on an accelerator).  Results do not depend on it.
        on_chunk: callback ``on_chunk(done, total)`` after each chunk (progress bars).
        batch_size: None (default) for full-batch GD; an int b for minibatch SGD on problems
            with data (``problem.batch_loss``): update t uses the batch of
            :func:`sgd_batch_indices` and ``steps`` counts updates.  The classification is the
            same, applied to the minibatch loss and gradient (settled: η‖∇L_batch‖ ≤ tol over
            the window, i.e. every recent batch gradient vanished); recorded metrics are the
            minibatch loss and gradient norm of each update; the final ``loss`` and
            ``grad_norm`` are full-batch values.
        keys: with SGD, one PRNG key per trajectory ((B,) typed keys or (B, 2) uint32 key
            data) for its shuffles; the sweep layer derives them
            (:func:`gdstab.random.trajectory_key`).
        optimizer: the update rule: None or "gd" (default), a :class:`gdstab.optimizers.Rule`
            or its ``--optimizer`` text ("momentum:0.9", "adam:0.9,0.999", ...).  The rule moves
            the full state z = (θ, buffers) and the classification above applies to z: settled
            means ‖z_{t+1} − z_t‖ ≤ tol (θ *and* buffers at rest), periodic compares full states,
            diverged watches ‖z‖ and the finiteness of every buffer.  Only GD has the native
            fast path; with SGD the rule sees the minibatch gradient.
        hyper: the rule's hyperparameter values per trajectory, (B, k) floats in the order of
            ``optimizer.hyper`` (default: the rule's own values for every trajectory), e.g. a
            grid over momentum β, or the group multipliers of
            :func:`gdstab.optimizers.group_rule`; traced, so they never recompile.

    Returns a :class:`Trajectories`; diverging trajectories are results, never exceptions.
    SIGINT/SIGTERM stop the run at the next segment boundary of the engine (within about
    ``CALL_SECONDS``) with :class:`gdstab.interrupts.Interrupted` (a ``KeyboardInterrupt``).
    """
    import jax

    caller = "trajectories"
    if not isinstance(problem, Problem):
        raise fail("problem", caller, "a gdstab Problem", problem)
    rule = as_rule(optimizer, caller)
    steps = positive_int(steps, "steps", caller)
    dtype = choice(dtype, "dtype", caller, ("float64", "float32"))
    criteria = Criteria.for_problem(problem, dtype) if criteria is None else criteria
    if not isinstance(criteria, Criteria):
        raise fail("criteria", caller, "a Criteria instance", criteria)
    backend = choice(backend, "backend", caller, ("auto", "jax", "native"))
    if record_every is not None:
        record_every = positive_int(record_every, "record_every", caller)
    th, et = check_batch(problem, theta0, eta, caller)
    B = th.shape[0]
    hyper = None if hyper is None else _checked_hyper(hyper, rule, B, caller)
    key_data = None
    if batch_size is not None:
        key_data = _sgd_inputs(problem, batch_size, keys, B, caller)
        batch_size = int(batch_size)
        if backend == "native":
            raise InvalidParameterError("The 'backend' parameter of trajectories cannot be 'native' with SGD (batch_size): use 'jax' or 'auto'.")
        backend = "jax"
    elif keys is not None:
        raise InvalidParameterError("The 'keys' parameter of trajectories goes with 'batch_size' (SGD); full-batch GD uses no keys.")
    if chunk_size != "auto":
        chunk_size = positive_int(chunk_size, "chunk_size", caller)

    use_native = _use_native(problem, backend, dtype, record_every, rule)
    platform = jax.default_backend()
    if threads is None:
        threads = (os.cpu_count() or 1) if platform == "cpu" else 1
    else:
        threads = positive_int(threads, "threads", caller)
    with interrupts.polling(strict=True):  # a Ctrl-C stops at the next segment boundary (Interrupted)
        if use_native:
            chunk = 65536 if chunk_size == "auto" else chunk_size
            out = _run_native(problem, th, et, steps, criteria, chunk, on_chunk, threads)
            used = "native"
        else:
            itemsize = 8 if dtype == "float64" else 4
            n_records = 0 if record_every is None else steps // record_every + 1
            with jax.enable_x64(dtype == "float64"):
                size = state_rule(rule, problem.dim, dtype).size
                chunk = (_auto_chunk(problem, B, n_records, itemsize, platform, size, threads) if chunk_size == "auto"
                         else chunk_size)
                out = _run_jax(
                    problem, th.astype(dtype), et.astype(dtype), steps, criteria, chunk, record_every, dtype, on_chunk,
                    threads, batch_size or 0, key_data, rule, hyper, size,
                )
            used = "jax"
    theta_f, raw, step, period, loss, gnorm, metrics, buffers = out
    if used == "native":  # classified chunk by chunk in the kernel's workers
        status = raw
    else:
        status = _final_status(raw, loss, gnorm, et, problem.min_value, criteria)
        period = np.where(status == Status.PERIODIC, period, 0)
    return Trajectories(status=status, step=step, period=period, theta=theta_f, loss=loss, grad_norm=gnorm,
                        eta=et if et.dtype == np.dtype(dtype) else et.astype(dtype), steps=steps, criteria=criteria,
                        backend=used, metrics=metrics, optimizer=rule, buffers=buffers)


def _checked_hyper(hyper, rule: Rule, B: int, caller: str) -> np.ndarray:
    """Per-trajectory hyperparameter values (B, k) of ``rule`` (one row broadcast), finite and
    inside the built-in rules' ranges."""
    hyper = np.asarray(hyper, dtype=np.float64)
    k = rule.values.size
    if hyper.ndim == 1 and hyper.size == k:
        hyper = np.broadcast_to(hyper, (B, k))
    if hyper.shape != (B, k) or not np.all(np.isfinite(hyper)) or k == 0:
        raise fail("hyper", caller, f"({B}, {k}) finite hyperparameter values of {rule.spec()} per trajectory",
                   f"shape {hyper.shape}")
    if rule.name != "optax":
        for j, (name, _) in enumerate(rule.hyper):  # the built-in rules' ranges
            for v in np.unique(hyper[:, j]):
                Rule(rule.name, ((name, float(v)),))
    return hyper


def _use_native(problem: Problem, backend: str, dtype: str, record_every, rule: Rule = GD) -> bool:
    """Whether the compiled toy kernel runs: always with backend "native" (an error says why it
    cannot), with "auto" where it can on the CPU."""
    import jax

    from . import _native

    native_ok = (
        problem.native is not None
        and dtype == "float64"
        and record_every is None
        and rule.is_gd
        and _native.available(problem.native.name)
    )
    if backend == "native" and not native_ok:
        why = (
            "this problem has no compiled kernel" if problem.native is None
            else f"the compiled kernels run plain GD only, not {rule.spec()}" if not rule.is_gd
            else "it needs float64 and no recording" if (dtype != "float64" or record_every is not None)
            else _native.unavailable_reason()
        )
        raise InvalidParameterError(f"The 'backend' parameter of trajectories cannot be 'native' here: {why}.")
    return backend == "native" or (backend == "auto" and native_ok and jax.default_backend() == "cpu")


def _sgd_inputs(problem: Problem, batch_size, keys, B: int, caller: str) -> np.ndarray:
    """Validated SGD settings: returns the (B, 2) uint32 key data of the trajectories."""
    import jax

    if problem.batch_loss is None or not problem.n_samples:
        raise InvalidParameterError(
            f"The 'batch_size' parameter of {caller} needs a problem defined on data (with batch_loss); "
            f"problem {problem.name!r} has none. Use full-batch GD (batch_size=None)."
        )
    batch_size = positive_int(batch_size, "batch_size", caller)
    if batch_size > problem.n_samples:
        raise fail("batch_size", caller, f"an int <= the number of samples ({problem.n_samples})", batch_size)
    if keys is None:
        raise InvalidParameterError(
            f"The 'keys' parameter of {caller} is needed with SGD: one PRNG key per trajectory ({B}), "
            f"e.g. from gdstab.random.trajectory_key."
        )
    try:
        if hasattr(keys, "dtype") and jax.dtypes.issubdtype(keys.dtype, jax.dtypes.prng_key):
            kd = np.asarray(jax.random.key_data(keys))
        else:
            kd = np.asarray(keys)
    except (TypeError, ValueError):
        raise fail("keys", caller, f"({B},) PRNG keys or ({B}, 2) uint32 key data", keys) from None
    if kd.ndim != 2 or kd.shape[0] != B or not np.issubdtype(kd.dtype, np.integer):
        raise fail("keys", caller, f"({B},) PRNG keys or ({B}, 2) uint32 key data", f"shape {kd.shape}")
    return kd.astype(np.uint32)


_RAW_TO_STATUS = np.array([0, Status.CONVERGED, Status.DIVERGED, Status.PERIODIC, Status.BOUNDED], np.int8)


def _final_status(raw: np.ndarray, loss: np.ndarray, gnorm: np.ndarray, eta: np.ndarray, min_value: float | None,
                  criteria: Criteria) -> np.ndarray:
    """Raw engine codes to :class:`Status`; a settled trajectory is converged at a global minimum
    (L − L* ≤ f_tol, or L* unknown) and stationary otherwise.  Where it is not at a global
    minimum (or L* is unknown) it must also be at a critical point: settled at a step size below
    ``ETA_CRITICAL`` only says that η is small, so ‖∇L‖ must satisfy the settling test at
    ``ETA_CRITICAL`` as well; otherwise it is ``bounded`` (undecided)."""
    if raw.size and (raw.min() < 1 or raw.max() > 4):  # pragma: no cover - would be an engine bug
        raise RuntimeError("engine returned an undecided trajectory")
    status = _RAW_TO_STATUS[raw]
    settled = raw == _RAW_SETTLED
    at_min = np.zeros(raw.shape, bool)
    if min_value is not None:
        with np.errstate(invalid="ignore"):
            at_min = np.asarray(loss, dtype=np.float64) - min_value <= criteria.f_tol
        status[settled & ~at_min] = Status.STATIONARY
    with np.errstate(invalid="ignore"):  # (at eta >= ETA_CRITICAL the settling test itself is the test)
        critical = (np.asarray(eta, np.float64) >= ETA_CRITICAL) | (np.asarray(gnorm, np.float64) * ETA_CRITICAL
                                                                    <= criteria.tol)
    status[settled & ~at_min & ~critical] = Status.BOUNDED
    return status
