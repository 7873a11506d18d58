"""Update rules (optimizers) as dynamical systems on their full state, built on optax.

An update rule maps the full state of the dynamical system — the iterate θ and the rule's
buffers (momentum, second moments) — to the next one, given the gradient g = ∇L(θ) (of the
minibatch loss with SGD: minibatching is orthogonal to the rule):

==========  ==============================================  ===================================
rule        update (the optax / PyTorch forms)              optax
==========  ==============================================  ===================================
gd          θ ← θ − η g                                     (the engine's own fast path)
momentum    v ← βv + g,  θ ← θ − η v                        ``optax.sgd(η, momentum=β)``
nesterov    v ← βv + g,  θ ← θ − η (g + βv)                 ``optax.sgd(η, momentum=β, nesterov=True)``
rmsprop     s ← ρs + (1 − ρ)g²,  θ ← θ − η g / (√s + ε)     ``optax.rmsprop(η, ρ, ε, eps_in_sqrt=False)``
adam        m ← β₁m + (1 − β₁)g, s ← β₂s + (1 − β₂)g²,      ``optax.adam(η, β₁, β₂, ε)``
            θ ← θ − η m̂ / (√ŝ + ε) (bias-corrected)
==========  ==============================================  ===================================

Buffers start at zero (PyTorch's and optax's convention).  Any optax ``GradientTransformation``
factory taking ``learning_rate`` is accepted too (:meth:`Rule.from_optax`).

The hyperparameters, η included, are traced arrays: the transformation is built inside the
compiled step from them, so a new η, β or ε never recompiles (one compiled loop per problem and
*kind* of rule).  :func:`state_rule` gives every loop of gdstab (the trajectory engine,
``iterate``, orbit diagrams, Lyapunov exponents, sharpness tracking) the same step on the full
state z = (θ, buffers): θ and the floating-point leaves of the optax state, in the order of its
pytree; integer leaves (Adam's step count) ride along as ``aux``.

Linear theory (:mod:`gdstab.stability`): near a minimum every rule is linear on (θ − θ*,
buffers); along an eigenvector of H (of P⁻¹H for the adaptive rules with the preconditioner
P = diag(√s + ε) frozen at the minimum) it is a 1×1 or 2×2 companion matrix, stable iff
0 < ηλ < c(rule) (:func:`threshold`): 2 for gd and rmsprop, 2 + 2β for heavy ball,
(2 + 2β)/(1 + 2β) for Nesterov, (2 + 2β₁)/(1 − β₁) for Adam (38 at β₁ = 0.9, the adaptive edge of
stability of Cohen et al. 2022).  The critical step size over the set of minima M is
η*(rule) = c / inf_M λ_max for the rules with a constant c (½(1 − xy)²: η* = 1 + β under heavy
ball).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, NamedTuple

import numpy as np

from ._validation import fail

__all__ = ["RULES", "Rule", "RuleKind", "as_rule", "parse_rule", "threshold", "StateRule", "state_rule", "GD", "group_rule"]

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
    """An update rule with its hyperparameters (validated): ``name`` in :data:`RULES` (or
    ``"optax"`` for a user's transformation, :meth:`from_optax`), ``hyper`` its hyperparameters
    as ((name, float), ...) in the order of :data:`RULES`, omitted ones at their defaults.

    Hashable; :attr:`kind` (name and factory, without the values) is what compiled loops are
    cached on, the values travel as traced arrays (:attr:`values`)."""

    name: str
    hyper: tuple[tuple[str, float], ...] = ()
    factory: Any = None

    def __post_init__(self):
        caller = "Rule"
        if isinstance(self.hyper, dict):
            object.__setattr__(self, "hyper", tuple(self.hyper.items()))
        if self.name == "optax":
            _check_factory(self.factory, dict(self.hyper))
            object.__setattr__(self, "hyper", tuple((k, float(v)) for k, v in self.hyper))
            return
        if self.factory is not None:
            raise fail("factory", caller, "None for the built-in rules (use Rule.from_optax)", self.factory)
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

    @classmethod
    def from_optax(cls, factory, **hyper: float) -> "Rule":
        """Any optax ``GradientTransformation`` factory taking ``learning_rate`` (the step size η
        is injected), with its other float hyperparameters by keyword (traced: changing them
        does not recompile), e.g. ``Rule.from_optax(optax.lion, b1=0.9, b2=0.99)``."""
        return cls("optax", tuple(hyper.items()), factory)

    def __getitem__(self, key: str) -> float:
        return dict(self.hyper)[key]

    @property
    def kind(self) -> "RuleKind":
        """What a compiled loop depends on: the rule and its hyperparameter names, not values."""
        return RuleKind(self.name, tuple(k for k, _ in self.hyper), self.factory, self)

    @property
    def values(self) -> np.ndarray:
        """The hyperparameter values, float64, in the order of ``hyper``."""
        return np.array([v for _, v in self.hyper], dtype=np.float64)

    @property
    def is_gd(self) -> bool:
        return self.name == "gd"

    @property
    def adaptive(self) -> bool:
        """Whether the threshold is on the eigenvalues of P⁻¹H (a preconditioner), not of H."""
        return self.name in ("rmsprop", "adam")

    @property
    def threshold(self) -> float:
        """c(rule): see :func:`threshold` (NaN for a user's optax transformation)."""
        return threshold(self)

    def spec(self) -> str:
        """The ``--optimizer`` text of this rule (round-trips through :func:`parse_rule`)."""
        if self.name == "optax":
            return f"optax:{getattr(self.factory, '__name__', 'factory')}"
        vals = ",".join(repr(v) for _, v in self.hyper)  # the shortest text that reads back exactly
        return self.name + (f":{vals}" if vals else "")

    def to_dict(self) -> dict[str, Any]:
        out = {"name": self.name, **dict(self.hyper)}
        if self.name == "optax":
            out["factory"] = getattr(self.factory, "__qualname__", repr(self.factory))
        return out


@dataclass(frozen=True)
class RuleKind:
    """A kind of update rule: its name, hyperparameter names and factory, compared and hashed
    without the values, so that compiled loops cached on it serve every value.  ``example`` (not
    compared) is a rule of this kind, from which a loop reads the layout of the state; the
    values themselves always travel as traced arrays."""

    name: str
    names: tuple[str, ...]
    factory: Any
    example: Rule = field(compare=False, repr=False)


GD = Rule("gd")


def as_rule(optimizer: Any, caller: str, name: str = "optimizer") -> Rule:
    """The update rule from None (GD), a :class:`Rule` or its ``--optimizer`` text."""
    if optimizer is None:
        return GD
    if isinstance(optimizer, Rule):
        return optimizer
    if isinstance(optimizer, str):
        return parse_rule(optimizer, name=name, caller=caller)
    raise fail(name, caller, "None, a gdstab.optimizers.Rule or a spec such as 'momentum:0.9'", optimizer)


_GROUP_FACTORIES: dict = {}


def group_rule(group_index, names) -> Rule:
    """GD with one learning-rate multiplier per parameter group: θ_i ← θ_i − η·m_g(i)·g_i, with
    ``group_index`` (d,) the group of each coordinate and ``names`` the groups' names; the
    multipliers are the rule's hyperparameters ("lr_<name>", default 1: plain GD), traced, so a
    map over them compiles once.  Groups come from :func:`gdstab.problems.parameter_groups`.
    Built as an optax transformation (stateless); its threshold c is NaN (the stability of a
    minimum then depends on η·m ⊙ H, not on ηλ)."""
    import numpy as np

    idx = np.asarray(group_index, dtype=np.int32).reshape(-1)
    names = tuple(str(n) for n in names)
    if idx.size == 0 or idx.min() < 0 or idx.max() >= len(names):
        raise fail("group_index", "group_rule", f"ints in [0, {len(names)}) (one per coordinate)", idx)
    key = (idx.tobytes(), names)
    factory = _GROUP_FACTORIES.get(key)
    if factory is None:
        def factory(learning_rate, **multipliers):
            import jax.numpy as jnp
            import optax

            m = jnp.stack([jnp.asarray(multipliers[f"lr_{n}"]) for n in names])[jnp.asarray(idx)]

            def update(updates, state, params=None):
                return -learning_rate * m * updates, state

            return optax.GradientTransformation(lambda params: optax.EmptyState(), update)

        factory.__name__ = factory.__qualname__ = "groups(" + ",".join(names) + ")"
        _GROUP_FACTORIES[key] = factory
    return Rule.from_optax(factory, **{f"lr_{n}": 1.0 for n in names})


def _check_factory(factory, hyper: dict) -> None:
    caller = "Rule.from_optax"
    if not callable(factory):
        raise fail("factory", caller, "an optax GradientTransformation factory (a callable)", factory)
    for k, v in hyper.items():
        if not isinstance(k, str) or k == "learning_rate" or not _real(v):
            raise fail(str(k), caller, "a finite float hyperparameter other than learning_rate (η is injected)", v)
    try:
        tx = factory(learning_rate=0.1, **hyper)
    except Exception as exc:  # the user's factory refused the arguments
        raise fail("factory", caller, f"a callable accepting learning_rate= and {sorted(hyper)} ({exc})", factory) from None
    if not (hasattr(tx, "init") and hasattr(tx, "update")):
        raise fail("factory", caller, "a callable returning an optax GradientTransformation", factory)


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


def threshold(rule: Rule) -> float:
    """c(rule): a minimum is linearly stable under ``rule`` iff 0 < ηλ < c for every non-zero
    eigenvalue λ of H (of P⁻¹H for the adaptive rules); NaN for a user's optax transformation."""
    if rule.name == "optax":
        return math.nan
    if rule.name in ("gd", "rmsprop"):
        return 2.0
    if rule.name == "momentum":
        return 2.0 + 2.0 * rule["beta"]
    if rule.name == "nesterov":
        b = rule["beta"]
        return (2.0 + 2.0 * b) / (1.0 + 2.0 * b)
    b1 = rule["b1"]
    return (2.0 + 2.0 * b1) / (1.0 - b1)




# ---------------------------------------------------------------------------------------------
# the one step of every loop, on the full state


class StateRule(NamedTuple):
    """A rule's step on its full state z = (θ, buffer, ...): a tuple of arrays with θ (dim,)
    first and then the floating-point leaves of the optax state in the order of its pytree
    (``size`` numbers in all); the integer leaves (Adam's step count) are ``aux``.  For GD,
    z = (θ,) and aux = ().

    ``init(theta, eta, hyper) -> (z, aux)``; ``step(z, aux, g, eta, hyper) -> (z', aux')`` with
    g the gradient at θ = z[0]; ``state(z, aux)`` is the optax state; ``ravel(z)`` the flat
    vector (size,) and ``unravel(v)`` its inverse (for Jacobians and period detection on the
    full state).  ``eta`` is a scalar and ``hyper`` the (k,) hyperparameter values
    (:attr:`Rule.values`), both traced.  Pure: jit and vmap as you like.  The state is a tuple,
    not one concatenated vector, so that a step copies nothing it does not change."""

    rule: Rule
    dim: int
    size: int
    init: Callable
    step: Callable
    state: Callable
    shapes: tuple

    def ravel(self, z):
        import jax.numpy as jnp

        lead = z[0].shape[:-1]
        return jnp.concatenate([x.reshape(lead + (-1,)) for x in z], axis=-1)

    def unravel(self, v):
        out, off = [], 0
        lead = v.shape[:-1]
        for shape in self.shapes:
            n = int(np.prod(shape, dtype=np.int64))
            out.append(v[..., off:off + n].reshape(lead + shape))
            off += n
        return tuple(out)

    def preconditioner(self, z, aux, hyper):
        """The diagonal preconditioner P of an adaptive rule at the full state z with the
        hyperparameter values ``hyper`` (traced, like the step's): the divisor of its last step,
        √s + ε for rmsprop and √ŝ + ε for Adam (ŝ = s / (1 − β₂^t), t the updates made so far;
        at t = 0, P = ε); None for the other rules.  Frozen at a minimum, the rule is stable iff
        η λ_max(P⁻¹H) < c(rule) (:func:`threshold`)."""
        import jax.numpy as jnp
        from optax import tree_utils

        if not self.rule.adaptive:
            return None
        h = {k: hyper[i] for i, (k, _) in enumerate(self.rule.hyper)}
        state = self.state(z, aux)
        nu = tree_utils.tree_get(state, "nu")
        if self.rule.name == "rmsprop":
            return jnp.sqrt(nu) + h["eps"]
        count = tree_utils.tree_get(state, "count")
        return jnp.sqrt(nu / (1.0 - h["b2"] ** count)) + h["eps"]


def _transformation(rule: Rule, eta, hyper):
    """The optax transformation of ``rule`` with traced η and hyperparameters."""
    import optax

    if rule.name in ("momentum", "nesterov"):
        return optax.sgd(eta, momentum=hyper[0], nesterov=rule.name == "nesterov")
    if rule.name == "rmsprop":  # the PyTorch form: eps outside the square root, s starts at 0
        return optax.rmsprop(eta, decay=hyper[0], eps=hyper[1], eps_in_sqrt=False)
    if rule.name == "adam":
        return optax.adam(eta, b1=hyper[0], b2=hyper[1], eps=hyper[2])
    return rule.factory(learning_rate=eta, **{k: hyper[i] for i, (k, _) in enumerate(rule.hyper)})


def state_rule(rule: Rule, dim: int, dtype) -> StateRule:
    """The :class:`StateRule` of ``rule`` for θ of shape (dim,) and ``dtype``.  The layout of
    the state is read from the optax state's pytree once (it must not depend on the values of
    the hyperparameters, true of every optax transformation with float hyperparameters)."""
    import jax
    import jax.numpy as jnp

    if rule.is_gd:
        def gd_init(theta, eta, hyper):
            return (theta,), ()

        def gd_step(z, aux, g, eta, hyper):
            return (z[0] - eta * g,), ()

        return StateRule(rule, dim, dim, gd_init, gd_step, lambda z, aux: (), ((dim,),))

    import optax

    probe = _transformation(rule, 0.1, jnp.asarray(rule.values, dtype))
    leaves, treedef = jax.tree_util.tree_flatten(jax.eval_shape(probe.init, jax.ShapeDtypeStruct((dim,), dtype)))
    floats = tuple(i for i, x in enumerate(leaves) if jnp.issubdtype(x.dtype, jnp.inexact))
    shapes = ((dim,),) + tuple(tuple(leaves[i].shape) for i in floats)

    def split(theta, state):
        lv = jax.tree_util.tree_leaves(state)
        return (theta,) + tuple(lv[i].astype(theta.dtype) for i in floats), tuple(
            x for i, x in enumerate(lv) if i not in floats)

    def unflatten(z, aux):
        buffers, others = iter(z[1:]), iter(aux)
        out = [next(buffers).astype(x.dtype) if i in floats else next(others) for i, x in enumerate(leaves)]
        return jax.tree_util.tree_unflatten(treedef, out)

    def init(theta, eta, hyper):
        return split(theta, _transformation(rule, eta, hyper).init(theta))

    def step(z, aux, g, eta, hyper):
        theta = z[0]
        updates, state = _transformation(rule, eta, hyper).update(g, unflatten(z, aux), theta)
        return split(optax.apply_updates(theta, updates), state)

    size = sum(int(np.prod(sh, dtype=np.int64)) for sh in shapes)
    return StateRule(rule, dim, size, init, step, unflatten, shapes)
