"""Flax (Linen and NNX) and Equinox models as gdstab problems: thin adapters over
:meth:`gdstab.Problem.from_jax` (optional extras ``gdstab[flax]``, ``gdstab[equinox]``).

Both initialise every ensemble member with the framework's own initialisers, from the member's
gdstab key, which is what the generic ``from_jax`` default cannot do (it draws N(0, 1/shape[0])
per matrix, taking the first axis as fan-in: right for Flax's (in, out) kernels, wrong for
Equinox's (out, in) weights):

* Linen: ``model.init(key, X[:1])["params"]``; the other collections (e.g. ``batch_stats``) are
  constants taken from ``variables``.
* NNX: ``make(nnx.Rngs(key))`` builds the module (pass the constructor, not an instance), its
  ``nnx.Param`` state is θ, everything else constant.
* Equinox: ``make(key)`` builds the module (pass the constructor, not an instance); θ is its
  floating-point arrays (``eqx.partition(model, eqx.is_inexact_array)``), the rest static.
  Equinox modules act on one sample: the batch is ``jax.vmap``-ed over samples.

θ is the flattening of the parameter pytree by ``jax.flatten_util.ravel_pytree``.
"""

from __future__ import annotations

from typing import Any, Callable


from .._validation import InvalidParameterError, fail
from .objectives import model_data, named_loss

__all__ = ["from_flax", "from_equinox"]


def _loss(loss, caller: str) -> tuple[Callable, str]:
    if isinstance(loss, str):
        named = named_loss(loss)
        if named is None:
            raise fail("loss", caller, "'mse', 'cross_entropy' or a JAX function loss(output, targets)", loss)
        return named
    if callable(loss):
        return loss, f"the user's loss {getattr(loss, '__name__', type(loss).__name__)}"
    raise fail("loss", caller, "'mse', 'cross_entropy' or a JAX function loss(output, targets)", loss)


def _import(name: str, caller: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError as exc:
        extra = "flax" if name.startswith("flax") else "equinox"
        raise InvalidParameterError(f"{caller} needs {extra}, the optional extra gdstab[{extra}]: "
                                    f"pip install -e '.[{extra}]' ({exc})") from None


def from_flax(problem_cls, model: Any, variables: Any, data, loss: str | Callable = "mse", *,
              min_value: float | None = None, name: str | None = None):
    """See :meth:`gdstab.Problem.from_flax`."""
    import jax
    import jax.numpy as jnp

    caller = "Problem.from_flax"
    nn = _import("flax.linen", caller)
    loss_out, words = _loss(loss, caller)
    X, Y = model_data(data, loss, caller)
    if isinstance(model, nn.Module):  # Linen
        if variables is None:
            with jax.enable_x64(True):
                variables = model.init(jax.random.key(0), jnp.asarray(X[:1]))
        if not isinstance(variables, dict) or "params" not in variables:
            raise fail("variables", caller, "the variables of model.init(key, x) (a dict with 'params') or None",
                       type(variables))
        rest = {k: v for k, v in variables.items() if k != "params"}

        def loss_fn(params, batch):
            x, y = batch
            return loss_out(model.apply({"params": params, **rest}, x), y)

        def init_fn(key):
            return model.init(key, jnp.asarray(X[:1], dtype=jnp.result_type(float)))["params"]

        template = variables["params"]
        kind = f"flax.linen {type(model).__name__}"
    else:  # NNX: a constructor rngs -> module
        nnx = _import("flax.nnx", caller)
        if isinstance(model, nnx.Module) or not callable(model):
            raise fail("model", caller, "a flax.linen Module, or for NNX a constructor make(rngs) -> nnx.Module "
                       "(so that each member is built by its own initialisers)", type(model).__name__)
        graphdef, template, rest = nnx.split(model(nnx.Rngs(0)), nnx.Param, ...)

        def loss_fn(params, batch):
            x, y = batch
            return loss_out(nnx.merge(graphdef, params, rest)(x), y)

        def init_fn(key):
            return nnx.split(model(nnx.Rngs(params=key)), nnx.Param, ...)[1]

        kind = f"flax.nnx {getattr(model, '__name__', type(model).__name__)}"
    with jax.enable_x64(True):
        p = problem_cls.from_jax(loss_fn, template, (X, Y), init_fn=init_fn, min_value=min_value,
                                 name=name or kind, normalisation=f"{words}; {X.shape[0]} samples")
    import dataclasses

    return dataclasses.replace(p, options={"from_flax": kind, "initialisation": "the model's own initialisers",
                                           "groups": p.options["groups"]})


def from_equinox(problem_cls, make: Callable, data, loss: str | Callable = "mse", *,
                 min_value: float | None = None, name: str | None = None):
    """See :meth:`gdstab.Problem.from_equinox`."""
    import dataclasses

    import jax

    caller = "Problem.from_equinox"
    eqx = _import("equinox", caller)
    if isinstance(make, eqx.Module) or not callable(make):
        raise fail("make", caller, "a constructor make(key) -> equinox.Module (so that each member is built by its "
                   "own initialisers; for a module you built, pass lambda key: Model(..., key=key))",
                   type(make).__name__)
    loss_out, words = _loss(loss, caller)
    X, Y = model_data(data, loss, caller)
    with jax.enable_x64(True):
        params, static = eqx.partition(make(jax.random.key(0)), eqx.is_inexact_array)

    def loss_fn(p, batch):
        x, y = batch
        return loss_out(jax.vmap(eqx.combine(p, static))(x), y)

    def init_fn(key):
        return eqx.partition(make(key), eqx.is_inexact_array)[0]

    with jax.enable_x64(True):
        p = problem_cls.from_jax(loss_fn, params, (X, Y), init_fn=init_fn, min_value=min_value,
                                 name=name or f"equinox {getattr(make, '__name__', 'model')}",
                                 normalisation=f"{words}; {X.shape[0]} samples")
    return dataclasses.replace(p, options={"from_equinox": getattr(make, "__name__", "model"),
                                           "initialisation": "the model's own initialisers",
                                           "groups": p.options["groups"]})
