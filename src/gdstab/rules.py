"""Update rules as linear dynamical systems near a minimum: the theory behind "which step sizes
can each optimizer converge at".

Near a minimum θ* with Hessian H, every rule below is linear on the full state (θ − θ*, buffers)
and decouples along the eigenvectors of H (of P⁻¹H for the adaptive rules with their
preconditioner P frozen at the minimum).  On an eigenvalue λ the state evolves by a 1×1 or 2×2
*companion matrix*; the minimum is linearly stable (the rule converges to it from a set of
positive measure) iff its spectral radius is < 1 for every non-zero λ, i.e. iff 0 < ηλ < c with a
constant c per rule (Jury's conditions on the characteristic polynomial z² − Tz + D: |D| < 1,
1 − T + D > 0, 1 + T + D > 0):

==========  ==============================================  ===========================  ======================
rule        update (the optax / PyTorch forms)              matrix on (θ, v)             c
==========  ==============================================  ===========================  ======================
gd          θ ← θ − η g                                     [1 − ηλ]                     2
momentum    v ← βv + g,  θ ← θ − η v                        [[1 − ηλ, −ηβ], [λ, β]]      2 + 2β
nesterov    v ← βv + g,  θ ← θ − η (g + βv)                 [[1 − ηλ(1+β), −ηβ²], [λ, β]]  (2 + 2β) / (1 + 2β)
rmsprop     s ← ρs + (1 − ρ)g²,  θ ← θ − η g / (√s + ε)     [1 − ημ]  (μ of P⁻¹H)         2
adam        m ← β₁m + (1 − β₁)g,  θ ← θ − η P⁻¹ m           [[1 − η(1−β₁)μ, −ηβ₁], [(1−β₁)μ, β₁]]  (2 + 2β₁) / (1 − β₁)
==========  ==============================================  ===========================  ======================

For the adaptive rules P = diag(√s + ε) is frozen (its buffers have converged at the minimum,
bias correction spent) and μ is an eigenvalue of P⁻¹H: Adam at β₁ = 0.9 is stable iff
η λ_max(P⁻¹H) < 38, the adaptive edge of stability (Cohen et al. 2022).  The critical step size
of a rule over the set of minima M is η*(rule) = c / inf_M λ_max (so ½(1 − xy)², inf_M λ_max = 2,
has η* = 1 + β under heavy ball); for the adaptive rules it needs P on M and is not given here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import fail, finite_float

__all__ = ["RULES", "Rule", "parse_rule", "companion_matrix", "threshold", "spectral_radius", "rule_stability"]

#: the rules and their hyperparameters (name, default) in the order of the ``--optimizer`` spec
RULES = {
    "gd": (),
    "momentum": (("beta", 0.9),),
    "nesterov": (("beta", 0.9),),
    "rmsprop": (("rho", 0.99), ("eps", 1e-8)),
    "adam": (("b1", 0.9), ("b2", 0.999), ("eps", 1e-8)),
}


def _real(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


#: the admissible range of each hyperparameter, as a test and as text
_HYPER_OK = {"beta": lambda v: _real(v) and 0 <= v < 1, "b1": lambda v: _real(v) and 0 <= v < 1,
             "b2": lambda v: _real(v) and 0 <= v < 1, "rho": lambda v: _real(v) and 0 < v < 1,
             "eps": lambda v: _real(v) and v > 0}
_HYPER_RANGE = {"beta": "a float in [0, 1)", "b1": "a float in [0, 1)", "b2": "a float in [0, 1)",
                "rho": "a float in (0, 1)", "eps": "a float > 0"}


@dataclass(frozen=True)
class Rule:
    """An update rule with its hyperparameters (validated): ``name`` in :data:`RULES`, ``hyper``
    a dict of floats."""

    name: str
    hyper: tuple[tuple[str, float], ...] = ()

    def __post_init__(self):
        caller = "Rule"
        if self.name not in RULES:
            raise fail("name", caller, f"one of {', '.join(RULES)}", self.name)
        known = dict(RULES[self.name])
        given = dict(self.hyper)
        for k in given:
            if k not in known:
                raise fail(k, caller, f"a hyperparameter of {self.name}: {', '.join(known) or 'none'}", k)
        full = {k: given.get(k, d) for k, d in known.items()}
        for k, v in full.items():
            if not _HYPER_OK[k](v):
                raise fail(k, f"the {self.name} rule", _HYPER_RANGE[k], v)
        object.__setattr__(self, "hyper", tuple((k, float(v)) for k, v in full.items()))

    def __getitem__(self, key: str) -> float:
        return dict(self.hyper)[key]

    @property
    def adaptive(self) -> bool:
        """Whether the threshold is on the eigenvalues of P⁻¹H (a preconditioner), not of H."""
        return self.name in ("rmsprop", "adam")

    def spec(self) -> str:
        """The ``--optimizer`` text of this rule (round-trips through :func:`parse_rule`)."""
        vals = ",".join(repr(v) for _, v in self.hyper)  # the shortest text that reads back exactly
        return self.name + (f":{vals}" if vals else "")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **dict(self.hyper)}


def parse_rule(text: Any, *, name: str = "--optimizer", caller: str = "gdstab") -> Rule:
    """``gd | momentum:BETA | nesterov:BETA | rmsprop:RHO[,EPS] | adam:B1,B2[,EPS]`` (omitted
    values take the defaults of :data:`RULES`)."""
    expected = "gd, momentum:BETA, nesterov:BETA, rmsprop:RHO[,EPS] or adam:B1,B2[,EPS] (e.g. momentum:0.9)"
    if not isinstance(text, str) or not text.strip() or len(text) > 200:
        raise fail(name, caller, expected, text)
    head, sep, rest = text.strip().partition(":")
    head = head.strip().lower()
    if head not in RULES:
        raise fail(name, caller, expected, text)
    keys = [k for k, _ in RULES[head]]
    parts = [p.strip() for p in rest.split(",")] if sep else []
    if len(parts) > len(keys) or (sep and not rest.strip()):
        raise fail(name, caller, expected, text)
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise fail(name, caller, expected, text) from None
    for k, v in zip(keys, values):
        if not _HYPER_OK[k](v):
            form = head + ":" + ",".join(x.upper() for x in keys)
            raise fail(name, caller, f"{form} with {k.upper()} {_HYPER_RANGE[k]}", text)
    return Rule(head, tuple(zip(keys, values)))


def companion_matrix(rule: Rule, eta: float, lam: float) -> np.ndarray:
    """The linear map of ``rule`` on (θ, buffer) along an eigenvector of H with eigenvalue
    ``lam`` (for the adaptive rules: of P⁻¹H) at step size ``eta`` (see the module table)."""
    e, x = float(eta), float(lam)
    if rule.name in ("gd", "rmsprop"):
        return np.array([[1.0 - e * x]])
    if rule.name == "momentum":
        b = rule["beta"]
        return np.array([[1.0 - e * x, -e * b], [x, b]])
    if rule.name == "nesterov":
        b = rule["beta"]
        return np.array([[1.0 - e * x * (1.0 + b), -e * b * b], [x, b]])
    b1 = rule["b1"]  # adam, in the coordinates of P⁻¹H with m̃ = P⁻¹m
    return np.array([[1.0 - e * (1.0 - b1) * x, -e * b1], [(1.0 - b1) * x, b1]])


def threshold(rule: Rule) -> float:
    """c(rule): a minimum is linearly stable under ``rule`` iff 0 < ηλ < c for every non-zero
    eigenvalue λ of H (of P⁻¹H for the adaptive rules)."""
    if rule.name in ("gd", "rmsprop"):
        return 2.0
    if rule.name == "momentum":
        return 2.0 + 2.0 * rule["beta"]
    if rule.name == "nesterov":
        b = rule["beta"]
        return (2.0 + 2.0 * b) / (1.0 + 2.0 * b)
    b1 = rule["b1"]
    return (2.0 + 2.0 * b1) / (1.0 - b1)


def spectral_radius(rule: Rule, eta: float, lam: float) -> float:
    """The spectral radius of :func:`companion_matrix`: the per-step contraction (< 1) or
    expansion (> 1) of the state along that eigenvector near the minimum."""
    return float(np.max(np.abs(np.linalg.eigvals(companion_matrix(rule, eta, lam)))))


def rule_stability(rule: Rule, eta: float, eigenvalues, *, rank_tol: float = 1e-9) -> dict[str, Any]:
    """Linear stability of a minimum under ``rule`` at step size ``eta``, from the non-zero
    ``eigenvalues`` of H (of P⁻¹H for the adaptive rules): the spectral radius over them, the
    threshold c / η on the largest, and the verdict (0 < ηλ < c for all)."""
    eta = finite_float(eta, "eta", "rule_stability", low=0.0)
    ev = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if ev.size == 0 or not np.all(np.isfinite(ev)):
        raise fail("eigenvalues", "rule_stability", "a non-empty array of finite floats", eigenvalues)
    scale = max(float(np.abs(ev).max()), np.finfo(float).tiny)
    nz = ev[np.abs(ev) > rank_tol * scale]
    c = threshold(rule)
    rho = max((spectral_radius(rule, eta, x) for x in nz), default=math.nan)
    return {"rule": rule.to_dict(), "threshold_c": c, "lambda_threshold": c / eta,
            "spectral_radius": rho, "linearly_stable": bool(nz.size and np.all((nz > 0) & (eta * nz < c)))}
