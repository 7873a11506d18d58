"""PyTorch models as gdstab problems: :meth:`gdstab.Problem.from_torch` (optional extra
``gdstab[torch]``: ``torch==2.13.0``, the CPU build, and ``torch2jax``).

The ``nn.Module`` is converted once into a pure JAX function of its parameters by torch2jax
(which traces the module's own ``forward`` with JAX values standing in for tensors), so every
gdstab tool runs on it vmapped and compiled like gdstab's own MLPs.  θ is the concatenation of
``module.named_parameters()`` in that order, each flattened in PyTorch's row-major order;
buffers (e.g. running statistics) are constants.  The module is used in evaluation mode
(``module.eval()`` on a copy: dropout is the identity, batch norm uses its running statistics),
so the loss is a deterministic function of θ, as the dynamics of GD require.

Exactness.  torch2jax maps ``torch.nn.functional.gelu`` to ``jax.nn.gelu``, whose default is the
tanh approximation while PyTorch's default is the exact erf form (a relative difference of about
1e-5 in a loss); :func:`register_exact_overrides` replaces it, and ``softplus`` (with its
``beta`` and ``threshold``) and ``silu`` which torch2jax does not provide, by PyTorch's
definitions.  The tests compare every supported layer and three whole models with torch's
autograd in float64.

Initialisation.  Ensemble members are initialised as the model would be: every submodule's own
``reset_parameters()`` under ``torch.manual_seed(s)`` (in a forked RNG: the user's global torch
RNG is untouched), with ``s`` derived from gdstab's per-initialisation key, so member ``i`` of a
sweep is the same whatever the chunking.  Parameters that no submodule resets (an
``nn.Parameter`` created by hand) keep the module's values, with a warning; pass ``init_fn``
to draw them.
"""

from __future__ import annotations

import warnings
from typing import Callable

import numpy as np

from .._validation import InvalidParameterError, fail
from .objectives import model_data
from .products import dense

__all__ = ["from_torch", "register_exact_overrides", "torch_loss"]

_INSTALL = ("Problem.from_torch needs PyTorch and torch2jax, the optional extra gdstab[torch]: "
            "pip install -e '.[torch]' (it installs torch==2.13.0, the CPU build; other versions pull several GB).")
_REGISTERED = False


def _require():
    try:
        import torch
        import torch2jax
    except ImportError as exc:
        raise InvalidParameterError(f"{_INSTALL} ({exc})") from None
    register_exact_overrides()
    return torch, torch2jax


def register_exact_overrides() -> None:
    """Make torch2jax follow PyTorch's definitions where its own differ or are missing:
    ``gelu`` (exact erf form unless ``approximate="tanh"``), ``silu``, ``softplus`` (``beta``,
    ``threshold``); and ``linear`` through :func:`gdstab.problems.products.dense` (its weight
    gradient in XLA:CPU's fast layout when the input is the data).  Idempotent."""
    global _REGISTERED
    if _REGISTERED:
        return
    import jax
    import jax.numpy as jnp
    import torch
    import torch2jax

    F = torch.nn.functional
    value = torch2jax._v

    @torch2jax.implements(F.gelu)
    def gelu(input, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
        return jax.nn.gelu(value(input), approximate=approximate == "tanh")

    @torch2jax.implements(F.linear)
    def linear(input, weight, bias=None):
        # torch2jax's x @ Wᵀ (+ b); on a (n, d) input through :func:`dense`, so the first layer's
        # weight gradient reads a row-major copy of the data's transpose (same values to rounding)
        x, W = value(input), value(weight)
        y = dense(x, W, transpose_w=True) if x.ndim == 2 else x @ W.T
        return y if bias is None else y + value(bias)

    @torch2jax.implements(F.silu)
    def silu(input, inplace=False):
        x = value(input)
        return x * jax.nn.sigmoid(x)

    @torch2jax.implements(F.softplus)
    def softplus(input, beta=1.0, threshold=20.0):
        x = value(input)
        bx = beta * x
        return jnp.where(bx > threshold, x, jnp.log1p(jnp.exp(jnp.minimum(bx, threshold))) / beta)

    _REGISTERED = True


def torch_loss(loss: str | Callable) -> tuple[Callable, str]:
    """(JAX function (output, targets) -> scalar, its normalisation in words) for ``"mse"``
    (``F.mse_loss``: the mean over every output entry), ``"cross_entropy"`` (``F.cross_entropy``
    with integer class labels: the mean over samples of −log softmax) or a PyTorch callable
    (an ``nn.Module`` loss or a function of (output, target) tensors), converted by torch2jax."""
    from .objectives import named_loss

    if isinstance(loss, str) and named_loss(loss) is not None:
        return named_loss(loss)
    if callable(loss):
        _, torch2jax = _require()
        return torch2jax.t2j(loss), f"the user's PyTorch loss {getattr(loss, '__name__', type(loss).__name__)}"
    raise fail("loss", "Problem.from_torch", "'mse', 'cross_entropy' or a PyTorch loss callable", loss)


def _module_path_tracker(module):
    """Forward hooks that keep the stack of submodule names being run (to name the module of
    an operation torch2jax cannot convert); returns (stack, remove)."""
    stack: list[str] = []
    handles = []
    def enter(name):
        def hook(mod, args):
            stack.append(name or "<root>")  # returns None: the input is unchanged

        return hook

    def leave(mod, args, output):
        if stack:
            stack.pop()  # returns None: the output is unchanged

    for name, sub in module.named_modules():
        handles.append(sub.register_forward_pre_hook(enter(name)))
        handles.append(sub.register_forward_hook(leave))

    def remove():
        for h in handles:
            h.remove()

    return stack, remove


def _trace_check(forward, params, buffers, X, module):
    """Run the converted forward once; an operation torch2jax cannot convert becomes a clear
    error naming it and the submodule it was called from."""
    stack, remove = _module_path_tracker(module)
    try:
        return forward(X, state_dict={**params, **buffers})
    except NotImplementedError as exc:
        what = str(exc).split(" with types")[0].replace("Unhandled function call: ", "").split("(*")[0]
        where = stack[-1] if stack else "<root>"
        raise InvalidParameterError(
            f"Problem.from_torch cannot convert the operation {what[:200]} called in the submodule {where!r} of "
            f"{type(module).__name__}: torch2jax has no JAX version of it. Supported layers: Linear, Conv2d, Flatten, "
            f"ReLU, GELU, Tanh, Sigmoid, SiLU, Softplus, LayerNorm, Dropout (eval), Sequential, and forwards using "
            f"the torch functions behind them; rewrite that step with those, or use Problem.from_jax.") from None
    finally:
        remove()


def _seeded_init(module, names):
    """``init_one(key) -> [parameter arrays in named_parameters order]``: the module's own
    ``reset_parameters`` under a seed derived from ``key`` (a host callback, so it runs under jit
    and vmap)."""
    import copy

    import jax
    import jax.numpy as jnp
    import torch

    work = copy.deepcopy(module)
    resettable = [m for m in work.modules() if callable(getattr(m, "reset_parameters", None))]
    covered = {id(p) for m in resettable for p in m.parameters(recurse=False)}
    uncovered = [n for n, p in work.named_parameters() if id(p) not in covered]
    if uncovered:
        warnings.warn(f"Problem.from_torch: no reset_parameters() of the module draws {uncovered[:5]}"
                      f"{' ...' if len(uncovered) > 5 else ''}; every ensemble member starts them at the module's "
                      f"current values (pass init_fn to draw them)", stacklevel=3)
    params = dict(work.named_parameters())

    def draw(key_data, dtype=np.float64, as_bits=False):
        words = np.asarray(key_data).astype(np.uint64).ravel()
        seed = 0
        for w in words:  # the key's bits, folded into one 63-bit seed
            seed = (seed * 0x100000001B3 + int(w)) % (2**63 - 1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            with torch.no_grad():
                for m in resettable:
                    m.reset_parameters()
                out = [params[n].detach().double().numpy().astype(dtype) for n in names]
        # float64 travels as its bits: JAX may run the callback in a thread where x64 is off and
        # would then turn a float64 result into float32
        return [a.view(np.uint32).reshape(a.shape + (2,)) for a in out] if as_bits else out

    def init_one(key):
        import functools

        kd = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        dtype = jax.dtypes.canonicalize_dtype(np.float64)  # float32 where the caller has not enabled x64
        if dtype == np.float64:
            shapes = [jax.ShapeDtypeStruct(tuple(params[n].shape) + (2,), np.uint32) for n in names]
            bits = jax.pure_callback(functools.partial(draw, as_bits=True), shapes, kd, vmap_method="sequential")
            return [jax.lax.bitcast_convert_type(b, jnp.float64) for b in bits]
        shapes = [jax.ShapeDtypeStruct(tuple(params[n].shape), dtype) for n in names]
        return jax.pure_callback(functools.partial(draw, dtype=dtype), shapes, kd, vmap_method="sequential")

    return init_one


def from_torch(problem_cls, module, data, loss: str | Callable = "mse", *, init_fn: Callable | None = None,
               min_value: float | None = None, name: str | None = None):
    """See :meth:`gdstab.Problem.from_torch` (``problem_cls``: the Problem class, passed in by it)."""
    import copy
    import dataclasses

    import jax
    import jax.numpy as jnp

    torch, torch2jax = _require()
    caller = "Problem.from_torch"
    if not isinstance(module, torch.nn.Module):
        raise fail("module", caller, "a torch.nn.Module", module)
    Xj, Yj = model_data(data, loss, caller)
    model = copy.deepcopy(module).double().eval()
    names = [n for n, _ in model.named_parameters()]
    if not names:
        raise fail("module", caller, "a module with at least one parameter", type(module).__name__)
    template = [jnp.asarray(p.detach().numpy()) for _, p in model.named_parameters()]
    buffers = {n: jnp.asarray(b.detach().numpy()) for n, b in model.named_buffers()}
    forward = torch2jax.t2j(model)
    loss_out, words = torch_loss(loss)
    with jax.enable_x64(True):
        out = _trace_check(forward, dict(zip(names, template)), buffers, jnp.asarray(Xj), model)
    if loss == "mse" and np.shape(out) != Yj.shape:
        raise fail("data", caller, f"targets Y of the model's output shape {tuple(np.shape(out))}", f"shape {Yj.shape}")

    def loss_fn(params, batch):
        dt = params[0].dtype  # the data follow θ's dtype (float32 runs stay float32, without warnings)
        x, y = (jnp.asarray(a, dtype=dt) if jnp.issubdtype(a.dtype, jnp.floating) else jnp.asarray(a)
                for a in batch)
        return loss_out(forward(x, state_dict={**dict(zip(names, params)), **buffers}), y)

    if init_fn is None:
        init_one = _seeded_init(model, names)
    else:
        def init_one(key):  # the user's parameters by name, in θ's order
            drawn = init_fn(key)
            return [jnp.asarray(drawn[n], dtype=jnp.float64) for n in names]

    with jax.enable_x64(True):
        p = problem_cls.from_jax(loss_fn, template, (Xj, Yj), init_fn=init_one, min_value=min_value,
                             name=name or f"torch:{type(module).__name__}",
                             normalisation=f"{words}; {Xj.shape[0]} samples")
    groups = [(n.rsplit(".", 1)[0] if "." in n else n, int(np.size(t))) for n, t in zip(names, template)]
    return dataclasses.replace(p, options={"from_torch": type(module).__name__, "parameters": names, "groups": groups,
                                           "initialisation": "init_fn" if init_fn else "reset_parameters"})
