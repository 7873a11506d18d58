"""The vocabulary of what happens to a trajectory, in one place: the :class:`Criteria` that
decide it, the :class:`Status` enum, the codes stored in results (derived from the enum, never
written out twice), and fraction tables with Wilson 95 % intervals.

Adding an outcome class: a member of :class:`Status` here, its verdict in the engine
(:mod:`gdstab.dynamics`, and the compiled kernels if the fast path must know it), and its colour
in :mod:`gdstab.plots`; every table, store and summary picks it up from this module.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ._validation import fail, finite_float, positive_int
from .stats import wilson_interval

__all__ = ["status_variable_attrs", "Criteria", "RELATIVE_TOL", "RELATIVE_F_TOL", "relative_note", "PERSISTENCE", "MAX_CHECK_EVERY", "Status", "NOT_COMPUTED", "STATUS_CODES", "status_codes",
           "fraction_table", "fraction_rows"]


#: a p-cycle's largest one-step displacement over a period may shrink by at most this relative
#: amount between consecutive segments (squared below); see :mod:`gdstab.dynamics`
PERSISTENCE = 1e-3
PERSIST2 = (1.0 - PERSISTENCE) ** 2

#: a cycle must close: the distance at which an orbit returns after its period may not grow
#: from one segment to the next unless it is below DRIFT·tol (or the rounding floor
#: ROUNDING·eps·(1 + ‖θ‖)), so that an orbit drifting slowly outwards (near a neutrally stable
#: point, e.g. x²/2 + x⁴/4 at η = 2 exactly) is not called a cycle; see :mod:`gdstab.dynamics`
DRIFT = 1e-3
ROUNDING = 64.0


def rounding2(eps: float) -> float:
    """The squared rounding floor factor 2·(ROUNDING·eps)² of return distances (times 1 + ‖θ‖²)."""
    return 2.0 * (ROUNDING * eps) ** 2


#: a trajectory that settles at a step size below this has only shown that η is small: it counts
#: as stationary (or, with L* unknown, converged) only if η‖∇L‖ would be within tol at this step
#: size too; otherwise it is undecided (bounded).  See :mod:`gdstab.dynamics`
ETA_CRITICAL = 1e-3

#: the largest segment of the period detector (check_every): the engines run whole segments
MAX_CHECK_EVERY = 100_000

#: default tolerances of problems defined on data (networks), relative to the problem's scale
#: (:meth:`Criteria.for_problem`).  A network's displacement η‖∇L‖ decays like a power law, not
#: geometrically (the MNIST MLP of ``gdstab problems``, 100 samples per digit, η = 0.1, RMS ‖θ₀‖
#: = 5.8: 2.4e-4 after 10³ steps, 3.3e-5 after 5·10³, 3.5e-6 after 2·10⁴), so an absolute 1e-8
#: is out of reach in any default budget.  Settled: the step is below 1e-5 of the parameters'
#: scale (a plateau of the relative change, the float32 default of the toys); at a minimum: the
#: loss fell below 1 % of its initial distance to L* (otherwise the settled run is stationary, a
#: plateau) — the order of the tolerances of the paper's network figures (experiments.paper_nets).
RELATIVE_TOL = 1e-5
RELATIVE_F_TOL = 1e-2


def _relative_tolerances(problem: Any) -> dict[str, tuple[float, float]]:
    """The tolerances that a problem defined on data takes relative to its scale, as
    {field: (value, scale)} (empty for closed-form problems; a field whose scale is not finite
    and positive keeps its absolute default)."""
    if not getattr(problem, "n_samples", None):
        return {}
    s_theta, s_loss = problem.scale()
    fields = (("tol", RELATIVE_TOL, s_theta), ("f_tol", RELATIVE_F_TOL, s_loss))
    return {name: (rel * scale, scale) for name, rel, scale in fields if np.isfinite(scale) and scale > 0}


def relative_note(problem: Any, criteria: "Criteria") -> str | None:
    """A one-line account of tolerances taken relative to ``problem``'s scale (None when the
    criteria are not those :meth:`Criteria.for_problem` gives relative to the scale)."""
    what = {"tol": f"{RELATIVE_TOL:g} x RMS |theta_0|", "f_tol": f"{RELATIVE_F_TOL:g} x mean(L(theta_0) - L*)"}
    parts = [f"{name} = {what[name]} ({scale:.4g}) = {value:.3g}"
             for name, (value, scale) in _relative_tolerances(problem).items() if getattr(criteria, name) == value]
    if not parts:
        return None
    return "tolerances relative to the problem's scale (a network): " + "; ".join(parts)


@dataclass(frozen=True)
class Criteria:
    """When a trajectory counts as converged, diverged, periodic or bounded.

    Attributes:
        tol: displacement tolerance: settled when η‖∇L‖ = ‖θ_{t+1} − θ_t‖ ≤ tol (default 1e-8,
            for parameters of order one in float64; :meth:`for_dtype` gives 1e-5 for float32,
            which :func:`trajectories` and sweep configs use when no tolerance is given).  Also the distance
            within which a periodic orbit must return.
        window: number of consecutive steps with displacement ≤ tol (default 8).
        f_tol: a settled trajectory is converged (at a global minimum) if L − L* ≤ f_tol,
            otherwise stationary; ignored where L* is unknown (default 1e-8).
        max_norm: diverged when ‖θ‖ exceeds this (default 1e6, at most 1e30), or when L, θ or
            η∇L is non-finite.  (The compiled toy kernels check θ and η∇L only: for their
            polynomial losses ‖θ‖ ≤ 1e30 keeps L finite, so the verdicts are the same.)
        max_period: largest period detected (default 8; 1 disables period detection).
        check_every: segment length of the period detector (default 32; > max_period, at most
            ``MAX_CHECK_EVERY`` = 100 000: the engines run whole segments).
        period_checks: consecutive segments that must show the same period (default 3).
    """

    tol: float = 1e-8
    window: int = 8
    f_tol: float = 1e-8
    max_norm: float = 1e6
    max_period: int = 8
    check_every: int = 32
    period_checks: int = 3

    def __post_init__(self):
        c = "Criteria"
        object.__setattr__(self, "tol", finite_float(self.tol, "tol", c, low=0.0))
        object.__setattr__(self, "window", positive_int(self.window, "window", c))
        object.__setattr__(self, "f_tol", finite_float(self.f_tol, "f_tol", c, low=0.0, low_inclusive=True))
        object.__setattr__(self, "max_norm", finite_float(self.max_norm, "max_norm", c, low=0.0, high=1e30))
        object.__setattr__(self, "max_period", positive_int(self.max_period, "max_period", c))
        object.__setattr__(self, "check_every", positive_int(self.check_every, "check_every", c, minimum=2))
        object.__setattr__(self, "period_checks", positive_int(self.period_checks, "period_checks", c))
        # a segment of check_every steps is the smallest unit of work of the engines
        for name, limit in (("check_every", MAX_CHECK_EVERY), ("window", 2**31 - 1), ("period_checks", 2**31 - 1)):
            if getattr(self, name) > limit:
                raise fail(name, c, f"an int <= {limit}", getattr(self, name))
        if self.check_every <= self.max_period:
            raise fail("check_every", c, f"an int > max_period ({self.max_period})", self.check_every)

    #: the displacement tolerance that the default criteria use per dtype: 1e-8 sits far above
    #: float64 rounding but below float32's (~6e-8 relative), where a converged iterate keeps
    #: moving by ~1e-8 and would never count as settled
    DEFAULT_TOL = {"float64": 1e-8, "float32": 1e-5}

    @classmethod
    def for_dtype(cls, dtype: str) -> "Criteria":
        """The default criteria for computations in ``dtype`` (only ``tol`` differs)."""
        return cls(tol=cls.DEFAULT_TOL[dtype])

    @classmethod
    def for_problem(cls, problem: Any, dtype: str = "float64") -> "Criteria":
        """The default criteria for ``problem`` in ``dtype``: :meth:`for_dtype` for closed-form
        problems (coordinates of order one in the user's units); for problems defined on data
        (networks: ``problem.n_samples`` set) the tolerances are relative to the problem's own
        scale (:meth:`gdstab.Problem.scale`): ``tol`` = RELATIVE_TOL · RMS ‖θ₀‖ and, where L* is
        known, ``f_tol`` = RELATIVE_F_TOL · mean(L(θ₀) − L*).  See :func:`relative_note`."""
        relative = {name: value for name, (value, _) in _relative_tolerances(problem).items()}
        return cls(**{**cls.for_dtype(dtype).to_dict(), **relative})

    def as_array(self) -> np.ndarray:
        """The options vector shared by both backends."""
        return np.array(
            [self.tol, self.window, self.max_norm, self.max_period, self.check_every, self.period_checks,
             PERSIST2, (DRIFT * self.tol) ** 2, rounding2(float(np.finfo(np.float64).eps))],
            dtype=np.float64,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}



class Status(enum.IntEnum):
    """What happened to a trajectory (stored as int8 in results; 0 is "not computed yet")."""

    CONVERGED = 1
    DIVERGED = 2
    PERIODIC = 3
    BOUNDED = 4
    STATIONARY = 5

    @property
    def label(self) -> str:
        return self.name.lower()


#: the stored code of a trajectory whose cell is not computed yet
NOT_COMPUTED = 0


def status_codes(include_not_computed: bool = True) -> dict[str, int]:
    """Label -> stored code, in code order (derived from :class:`Status`)."""
    codes = {s.label: int(s) for s in Status}
    return {"not_computed": NOT_COMPUTED, **codes} if include_not_computed else codes


#: label -> stored code, "not_computed" (0) first
STATUS_CODES = status_codes()


def status_variable_attrs() -> dict[str, Any]:
    """CF-style attributes of a stored status variable: ``flag_values``, ``flag_meanings``
    (the status names, space-separated, in the order of the values), ``long_name``."""
    codes = status_codes()
    return {"long_name": "what happened to the trajectory", "flag_values": list(codes.values()),
            "flag_meanings": " ".join(codes)}


def _labels(statuses: Iterable[Status | str] | None) -> list[str]:
    if statuses is None:
        return [s.label for s in Status]
    return [s.label if isinstance(s, Status) else Status[str(s).upper()].label for s in statuses]


def _counts(status, labels):
    st = np.asarray(status)
    n = (st != NOT_COMPUTED).sum(axis=-1)
    return n, {lab: (st == int(Status[lab.upper()])).sum(axis=-1) for lab in labels}


def fraction_table(status, dims: Sequence[str], coords: Mapping | None = None,
                   statuses: Iterable[Status | str] | None = None):
    """Fractions of each status over the last axis of ``status`` (the trajectories), with
    Wilson 95 % intervals, as an ``xarray.Dataset`` over ``dims`` (the other axes): variables
    ``trajectories`` (computed ones; code 0 = not computed is left out) and, per status,
    ``<label>_count``, ``<label>_fraction``, ``<label>_low``, ``<label>_high``.  Where no
    trajectory was computed the fraction is NaN and the interval [0, 1]."""
    import xarray as xr

    labels = _labels(statuses)
    n, counts = _counts(status, labels)
    dims = tuple(dims)
    data = {"trajectories": (dims, n)}
    for lab in labels:
        k = counts[lab]
        w = np.array([wilson_interval(int(a), int(b)) for a, b in zip(k.ravel(), n.ravel())]).reshape(k.shape + (3,))
        data[f"{lab}_count"] = (dims, k)
        data[f"{lab}_fraction"] = (dims, w[..., 0])
        data[f"{lab}_low"] = (dims, w[..., 1])
        data[f"{lab}_high"] = (dims, w[..., 2])
    return xr.Dataset(data, coords=dict(coords or {}))


def fraction_rows(status, statuses: Iterable[Status | str] | None = None) -> dict:
    """For one group of trajectories (a 1-D ``status``): ``{"n": computed, label: {"count",
    "fraction", "low", "high"}}`` -- the row format of the command line's JSON output."""
    labels = _labels(statuses)
    n, counts = _counts(np.asarray(status).reshape(-1), labels)
    row: dict = {"n": int(n)}
    for lab in labels:
        f, lo, hi = wilson_interval(int(counts[lab]), int(n))
        row[lab] = {"count": int(counts[lab]), "fraction": f, "low": lo, "high": hi}
    return row
