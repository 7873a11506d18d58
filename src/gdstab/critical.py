"""The empirical critical step size of a model: beyond which η does GD stop converging?

* :func:`critical_step_size` -- two estimates, with their evidence, of the step size beyond
  which GD stops converging for a model:

  (a) **fraction**: the largest η at which random initialisations still converge.  The
      predicate C(η) = "more than ``fraction`` of ``inits`` random initialisations converge"
      (with ``fraction = 0``: at least one does) is evaluated on the same initial points at
      every η, and η is bisected (geometrically) between a step size where C holds and one
      where it fails until they are within ``rtol``.  The interval [η_lo, η_hi] is the error
      bar: convergence was seen at η_lo and not at η_hi; every evaluated η is reported with its
      count and Wilson 95% interval.  Assumes C switches once on the bracket.
  (b) **sharpness**: the sharpness s of every minimum reached is computed (dense Hessian for
      d <= 256, Lanczos above); a minimum of sharpness s is linearly stable for η <= 2/s, so
      the flattest minimum reached, s_min, stays stable up to η_b = 2/s_min, where the curve
      of reached sharpness crosses 2/η (c/s_min for an update rule with a constant threshold
      c, :func:`gdstab.optimizers.threshold`; not made for the adaptive rules).  Interval:
      [η_lo, η_b] (reached at η_lo, stable up to η_b).  Since s_min >= inf_M λ_max, η_b is at
      most the sharp critical step size η* = 2 / inf_M λ_max of the theory.

  Combined: the estimate is η_b (when it is at least η_lo, else the midpoint of (a)) and the
  interval [η_lo, max(η_hi, η_b)]: convergence was seen at η_lo, and above both η_hi and η_b
  neither the Monte Carlo nor the stability of the minima reached gives evidence of
  convergence.  (a) alone is biased low: near the critical step size convergence takes about
  1 / (1 − |1 − ηλ|) steps and the converging fraction can be small.

(The critical step sizes of the theory, η* and η_E over the set of minima, are
:func:`gdstab.stability.critical_step_sizes`.)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._records import Record, evidence_dataset
from . import random as gdstab_random
from ._validation import InvalidParameterError, fail, finite_float, positive_int
from .dynamics import trajectories
from .optimizers import as_rule
from .outcomes import Criteria, Status, relative_note
from .problems.base import Problem, parse_box
from .random import init_points
from .sharpness import sharpness_at
from .stats import wilson_interval

__all__ = ["CriticalStepSize", "critical_step_size", "TrainableStepSize", "trainable_step_size"]


@dataclass(frozen=True, repr=False)
class CriticalStepSize(Record):
    """Result of :func:`critical_step_size` (see the module docstring for the definitions).

    Attributes:
        eta: the combined estimate; interval: the combined interval.
        eta_fraction: (a), the geometric midpoint of ``fraction_interval``.
        fraction_interval: (η_lo, η_hi): C(η_lo) held, C(η_hi) failed, within ``rtol``.
        eta_sharpness: (b), 2 / min_sharpness.
        sharpness_interval: (min(η_lo, η_b), max(η_lo, η_b)).
        min_sharpness: the flattest minimum reached over all evaluated step sizes, and
        argmin: where (a point of parameter space), reached at ``argmin_eta``.
        evidence: one dict per evaluated η (sorted): n, converged, fraction with Wilson
            interval, the smallest and largest sharpness of the minima reached.
        settings: inits, steps, seed, fraction, rtol, box.
        warnings: what limits the answer, one sentence each (empty when nothing does):
            "bracket" -- the stability estimate 2/min_sharpness lies above ``eta_high``, where
            no initialisation converged: it is not supported by the runs, so the combined
            estimate falls back to (a); "budget" -- the flattest minimum reached contracts
            by less than e^-10 over the ``steps`` budget (η·s_min·steps < 10), so "converged"
            there was decided by the tolerance within the budget (a degenerate or very flat
            minimum, e.g. sublinear convergence where the Hessian vanishes), not by linear
            stability.
    """

    eta: float
    interval: tuple[float, float]
    eta_fraction: float
    fraction_interval: tuple[float, float]
    eta_sharpness: float
    sharpness_interval: tuple[float, float]
    min_sharpness: float
    argmin: np.ndarray
    argmin_eta: float
    evidence: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "eta": self.eta,
            "interval": list(self.interval),
            "eta_fraction": self.eta_fraction,
            "fraction_interval": list(self.fraction_interval),
            "eta_sharpness": self.eta_sharpness,
            "sharpness_interval": list(self.sharpness_interval),
            "min_sharpness": self.min_sharpness,
            "argmin": np.asarray(self.argmin).tolist(),
            "argmin_eta": self.argmin_eta,
            "evidence": self.evidence,
            "settings": self.settings,
            "warnings": list(self.warnings),
        }

    def to_xarray(self):
        """The evidence over the evaluated step sizes (``eta``), the estimates in ``attrs``."""
        d = self.to_dict()
        return evidence_dataset(self.evidence, {k: v for k, v in d.items() if k not in ("evidence", "argmin")})


def critical_step_size(
    problem: Problem,
    *,
    eta_low: float,
    eta_high: float,
    inits: int = 64,
    steps: int = 20_000,
    seed: int = 0,
    box=None,
    fraction: float = 0.0,
    rtol: float = 1e-3,
    criteria=None,
    backend: str = "auto",
    progress=None,
    optimizer=None,
) -> CriticalStepSize:
    """Estimate, with error bars, the step size beyond which GD stops converging for
    ``problem`` (definitions (a) and (b) in the module docstring).

    Main argument:
        problem: any :class:`Problem`.

    Other arguments (keyword-only):
        eta_low, eta_high: the bracket: C must hold at eta_low and fail at eta_high.
        inits: random initialisations per step size (the same points at every η: drawn from
            ``box`` (default the problem's) with the sweep layer's keys for ``seed``).
        steps, criteria, backend: passed to :func:`gdstab.trajectories`; near the critical
            step size convergence is slow (the contraction factor |1 − ηλ| tends to 1), so
            ``steps`` bounds how close to it convergence can be seen.
        fraction: the predicate's threshold in [0, 1).
        rtol: stop when η_hi / η_lo − 1 <= rtol.
        progress: optional callback ``progress(eta, converged, n)`` after each evaluation.
        optimizer: the update rule (None: GD; a :class:`gdstab.optimizers.Rule` or its text).
            For a rule with a constant threshold c (momentum, Nesterov) estimate (b) is
            c / s_min; for the adaptive rules, whose threshold is on P⁻¹H, (b) is not made
            (NaN) and the estimate is (a).
    """
    caller = "critical_step_size"
    rule = as_rule(optimizer, caller)
    lo, hi, inits, steps, seed, fraction, rtol, box = _check_bisection(problem, eta_low, eta_high, inits, steps, seed,
                                                                       fraction, rtol, box, caller)
    eta_high = hi
    criteria = Criteria.for_problem(problem) if criteria is None else criteria
    runs = _Runs(problem, init_points(problem, seed, np.arange(inits), box), steps, seed, fraction, criteria,
                 backend, progress, rule)
    lo, hi = _bisect(runs, lo, hi, rtol, caller, f"{fraction:g} of the initialisations converge",
                     lambda e: f"{runs.evidence[e]['converged']} of {inits} converged", "lower it (or raise 'steps')",
                     "raise it")
    settings = _settings(problem, inits, steps, seed, fraction, rtol, box, rule)
    settings["criteria"] = criteria.to_dict()
    settings["tolerances"] = relative_note(problem, criteria) or "absolute (gdstab.Criteria)"
    return _estimate(runs, lo, hi, eta_high, steps, settings)


def _bisect(holds, lo: float, hi: float, rtol: float, caller: str, what: str, seen, lower: str, raise_: str):
    """Geometric bisection of a predicate that must hold at ``lo`` ("more than ``what``") and
    fail at ``hi``, until hi / lo − 1 <= rtol; a bracket that does not is refused, the message
    saying what was ``seen`` there and how to mend it.  Returns (lo, hi)."""
    for name, eta, want, hint in (("eta_low", lo, True, lower), ("eta_high", hi, False, raise_)):
        if holds(eta) != want:
            raise InvalidParameterError(
                f"The '{name}' parameter of {caller} must be a step size at which {'more than' if want else 'at most'} "
                f"{what}. Got {eta:g}, where {seen(eta)} instead; {hint}.")
    while hi / lo - 1.0 > rtol:
        mid = math.sqrt(lo * hi)
        if holds(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


def _settings(problem, inits, steps, seed, fraction, rtol, box, rule) -> dict[str, Any]:
    return {"inits": inits, "steps": steps, "seed": seed, "fraction": fraction, "rtol": rtol,
            "optimizer": rule.spec(),
            "box": [list(b) for b in (box or problem.box or [])], "problem": problem.name,
            "normalisation": problem.normalisation}


def _check_bisection(problem, eta_low, eta_high, inits, steps, seed, fraction, rtol, box, caller: str):
    """The arguments shared by the bisections of this module, validated (messages name them)."""
    lo = finite_float(eta_low, "eta_low", caller, low=0.0)
    hi = finite_float(eta_high, "eta_high", caller, low=0.0)
    if hi <= lo:
        raise fail("eta_high", caller, f"a float > eta_low = {lo:g}", eta_high)
    fraction = finite_float(fraction, "fraction", caller, low=0.0, low_inclusive=True)
    if fraction >= 1:
        raise fail("fraction", caller, "a float in [0, 1)", fraction)
    return (lo, hi, positive_int(inits, "inits", caller), positive_int(steps, "steps", caller),
            positive_int(seed, "seed", caller, minimum=0), fraction, finite_float(rtol, "rtol", caller, low=0.0),
            None if box is None else parse_box(box, problem.dim, caller=caller, name="box"))


class _Runs:
    """Runs the same initial points at one step size and keeps the evidence: per η the converged
    count with its Wilson interval and the sharpness of the minima reached; the flattest minimum
    over all runs.  Calling it answers the predicate C(η): more than ``fraction`` converged."""

    def __init__(self, problem, points, steps, seed, fraction, criteria, backend, progress, rule):
        self.problem, self.points, self.steps, self.fraction = problem, points, steps, fraction
        self.kw = {"backend": backend, "optimizer": rule, **({} if criteria is None else {"criteria": criteria})}
        # the rule's threshold on the sharpness (NaN for the adaptive rules: theirs is on P⁻¹H)
        self.c = math.nan if rule.adaptive else rule.threshold  # (NaN too for a user's optax rule)
        self.progress = progress
        self.lanczos_key = gdstab_random.key(seed)
        self.evidence: dict[float, dict[str, Any]] = {}
        self.best: dict[str, Any] = {"s": math.inf, "theta": None, "eta": math.nan}

    def __call__(self, eta: float) -> bool:
        n = self.points.shape[0]
        res = trajectories(self.problem, self.points, eta, steps=self.steps, **self.kw)
        conv = np.asarray(res.status) == int(Status.CONVERGED)
        k = int(conv.sum())
        f, a, b = wilson_interval(k, n)
        reached = np.asarray(res.theta)[conv]
        sharp = [sharpness_at(self.problem, th, key=self.lanczos_key)[0] for th in reached]
        for s, th in zip(sharp, reached):
            if s < self.best["s"]:
                self.best.update(s=s, theta=th, eta=eta)
        self.evidence[eta] = {
            "eta": eta, "n": n, "converged": k, "fraction": f, "low": a, "high": b,
            "min_sharpness": min(sharp) if sharp else None, "max_sharpness": max(sharp) if sharp else None,
            "two_over_eta": 2.0 / eta, "threshold_over_eta": self.c / eta,
        }
        if self.progress is not None:
            self.progress(eta, k, n)
        return k > self.fraction * n


def _estimate(runs: _Runs, lo: float, hi: float, eta_high: float, steps: int, settings: dict) -> CriticalStepSize:
    """(a) and (b) combined, with the warnings that say when the budget or the bracket decided."""
    best = runs.best
    c = runs.c
    eta_b = math.nan if math.isnan(c) else (c / best["s"] if best["s"] > 0 else math.inf)
    eta_a = math.sqrt(lo * hi)
    warnings = []
    if best["s"] < math.inf and best["eta"] * best["s"] * steps < 10:
        warnings.append(
            f"budget: the flattest minimum reached (sharpness {best['s']:.3g} at eta = {best['eta']:.6g}) contracts by "
            f"less than e^-10 in {steps} steps, so its 'converged' verdict was decided by the tolerance within the "
            f"step budget (a degenerate or very flat minimum), not by linear stability")
    use_b = lo <= eta_b < math.inf
    if math.isnan(eta_b):
        warnings.append("sharpness: the rule's threshold is on the preconditioned Hessian P^-1 H, so estimate (b) "
                        "is not made; the estimate is the bisection's")
    elif eta_b > eta_high:
        use_b = False
        warnings.append(
            f"bracket: the stability estimate c/s_min = {eta_b:.6g} lies above eta_high = {eta_high:.6g}, where no "
            f"initialisation converged; it is not supported by the runs, so the estimate is the bisection's "
            f"({eta_a:.6g}); widen the bracket or raise 'steps' to test it")
    return CriticalStepSize(
        eta=eta_b if use_b else eta_a,
        interval=(lo, max(hi, eta_b)) if use_b else (lo, hi),
        eta_fraction=eta_a,
        fraction_interval=(lo, hi),
        eta_sharpness=eta_b,
        sharpness_interval=(min(lo, eta_b), max(lo, eta_b)),
        min_sharpness=best["s"],
        argmin=np.asarray(best["theta"]),
        argmin_eta=best["eta"],
        evidence=[runs.evidence[e] for e in sorted(runs.evidence)],
        settings=settings,
        warnings=tuple(warnings),
    )


# ------------------------------------------------------------------ the largest η that trains


@dataclass(frozen=True, repr=False)
class TrainableStepSize(Record):
    """Result of :func:`trainable_step_size`: the largest step size at which training does not
    diverge, the threshold deep-learning users usually mean by "the critical learning rate".

    Attributes: ``eta`` (the geometric midpoint of ``interval``), ``interval`` (η_lo, η_hi):
    more than ``fraction`` of the runs stayed finite and bounded for ``steps`` steps at η_lo,
    not at η_hi, within ``rtol``; ``evidence``: per evaluated η the runs that did not diverge
    (with a Wilson 95 % interval), those that converged and those still undecided; ``settings``;
    ``warnings`` ("budget": runs still undecided at η_lo after ``steps`` steps may diverge
    later, so the answer is "does not diverge within ``steps`` steps"; "converged": no run
    converged at η_lo, these runs only stay bounded: edge-of-stability oscillation or slow
    convergence)."""

    eta: float
    interval: tuple[float, float]
    evidence: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    criterion: str = "trains: more than `fraction` of the runs do not diverge within `steps` steps"

    def to_dict(self) -> dict[str, Any]:
        return {"eta": self.eta, "interval": list(self.interval), "criterion": self.criterion,
                "evidence": self.evidence, "settings": self.settings, "warnings": list(self.warnings)}

    def to_xarray(self):
        """The evidence over the evaluated step sizes (``eta``), the estimate in ``attrs``."""
        d = self.to_dict()
        return evidence_dataset(self.evidence, {k: v for k, v in d.items() if k != "evidence"})


def trainable_step_size(
    problem: Problem,
    *,
    eta_low: float,
    eta_high: float,
    inits: int = 16,
    steps: int = 1000,
    seed: int = 0,
    box=None,
    fraction: float = 0.5,
    rtol: float = 1e-2,
    criteria=None,
    backend: str = "auto",
    progress=None,
    optimizer=None,
) -> TrainableStepSize:
    """The largest η at which training does not diverge: bisection (geometric) of the predicate
    T(η) = "more than ``fraction`` of ``inits`` random initialisations (the same at every η) do
    not diverge within ``steps`` steps" (diverged: non-finite, or ‖θ‖ above ``criteria.max_norm``)
    between ``eta_low`` (T holds) and ``eta_high`` (T fails), until η_hi / η_lo − 1 <= ``rtol``.

    Unlike :func:`critical_step_size` nothing has to converge: a network that keeps
    oscillating at the edge of stability, or converges slowly, counts as training.  For a
    quadratic the answer is 2/λ_max (beyond it every run with a component along the top
    eigenvector diverges).  ``criteria`` default: the absolute :class:`Criteria` (not the
    relative tolerances of networks, which could call a run settled before it diverges)."""
    caller = "trainable_step_size"
    rule = as_rule(optimizer, caller)
    lo, hi, inits, steps, seed, fraction, rtol, box = _check_bisection(problem, eta_low, eta_high, inits, steps, seed,
                                                                       fraction, rtol, box, caller)
    points = init_points(problem, seed, np.arange(inits), box)
    # the absolute defaults even for networks: a run counts as settled (and cannot diverge any
    # more) only at 1e-8, so that one that slows down near an unstable point is still followed
    kw = {"backend": backend, "optimizer": rule, "criteria": Criteria() if criteria is None else criteria}
    evidence: dict[float, dict[str, Any]] = {}

    def trains(eta: float) -> bool:
        st = np.asarray(trajectories(problem, points, eta, steps=steps, **kw).status)
        kept = int((st != int(Status.DIVERGED)).sum())
        f, a, b = wilson_interval(kept, inits)
        evidence[eta] = {"eta": eta, "n": inits, "not_diverged": kept, "fraction": f, "low": a, "high": b,
                         "converged": int((st == int(Status.CONVERGED)).sum()),
                         "undecided": int((st == int(Status.BOUNDED)).sum())}
        if progress is not None:
            progress(eta, kept, inits)
        return kept > fraction * inits

    lo, hi = _bisect(trains, lo, hi, rtol, caller, f"{fraction:g} of the runs do not diverge",
                     lambda e: f"{evidence[e]['not_diverged']} of {inits} did not diverge", "lower it",
                     "raise it (or raise 'steps': divergence can take longer)")
    warnings = []
    if evidence[lo]["undecided"]:
        warnings.append(f"budget: at eta = {lo:.6g}, {evidence[lo]['undecided']} of {inits} runs were still undecided "
                        f"(bounded, neither converged nor periodic) after {steps} steps and may diverge later: the "
                        f"answer is 'does not diverge within {steps} steps'")
    if evidence[lo]["converged"] == 0:
        warnings.append(f"converged: no run converged at eta = {lo:.6g} within {steps} steps; the runs that train "
                        f"there stay bounded without settling (edge-of-stability oscillation or slow convergence)")
    return TrainableStepSize(
        eta=math.sqrt(lo * hi), interval=(lo, hi), evidence=[evidence[e] for e in sorted(evidence)],
        settings=_settings(problem, inits, steps, seed, fraction, rtol, box, rule),
        warnings=tuple(warnings))
