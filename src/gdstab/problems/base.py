"""The :class:`Problem` container: what is minimised, and what is known about its minima."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._validation import InvalidParameterError, fail

__all__ = ["Problem", "Minima", "NativeKernel", "parse_box", "gauss_newton_projector"]


@dataclass(frozen=True, eq=False)
class Minima:
    """What is known in closed form about the set M of global minima of a problem.

    Attributes:
        description: human-readable description of M, e.g. ``"{(x, y) : x*y = 1}"``.
        dim: dimension of M as a manifold (None where M is not a manifold or unknown).
        sample: ``sample(key, n) -> (n, d)`` points of M (explicit PRNG key), or None.
        project: ``project(theta) -> theta'`` a point of M near ``theta`` (one point, JAX).
        hessian_eigenvalues: ``f(theta) -> (d,)`` closed-form eigenvalues of the Hessian at a
            point of M, ascending; used to cross-check autodiff and by the stability theory.
        residual: ``f(theta) -> scalar >= 0``, zero exactly on M (a defining equation).
        curve: for a one-dimensional M, ``(n_branches, param, s_range)`` with
            ``param(s, branch) -> theta`` a smooth parametrisation of each branch over
            ``s_range`` (used for exact arc lengths), or None.
        equations: ``F(theta) -> (m,)`` defining equations, M = {F = 0}, the kernel of DF
            being the tangent space of M, or None.
        curvature: ``K(theta) -> (k, k)`` a small symmetric matrix (JAX, differentiable) whose
            non-zero eigenvalues are exactly those of the Hessian at points of M, or None
            (e.g. (D²l)^{1/2} Dμ Dμᵀ (D²l)^{1/2} for a filling deep linear network).
    """

    description: str
    dim: int | None = None
    sample: Callable | None = None
    project: Callable | None = None
    hessian_eigenvalues: Callable | None = None
    residual: Callable | None = None
    curve: tuple | None = None
    equations: Callable | None = None
    curvature: Callable | None = None


@dataclass(frozen=True)
class NativeKernel:
    """A compiled fast path: the name of a kernel in ``gdstab._native`` and its parameters."""

    name: str
    params: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class Problem:
    """A loss to minimise by gradient descent on a flat parameter vector θ ∈ R^d.

    Main attributes:
        name: short identifier (used in results and provenance).
        loss: pure JAX function ``loss(theta) -> scalar`` on a ``(dim,)`` vector (full batch).
        dim: d, the number of parameters.

    Other attributes:
        box: default initialisation region, one ``(low, high)`` pair per coordinate;
            :meth:`init` samples uniformly in it.
        min_value: the global minimum value L* where known (None otherwise); the engine uses it
            to tell a minimum (L − L* ≤ f_tol) from another stationary point.
        minima: closed-form description of the set of minima M (:class:`Minima`), or None.
        normalisation: how the loss is normalised (sum vs mean, with or without ½); thresholds
            such as 2/η depend on it.
        options: the options the problem was built with (for provenance).
        native: a compiled kernel for the same loss (float64 CPU fast path), or None.
        variables: names of the coordinates.
        sampler: ``sampler(key, n) -> (n, dim)`` initial points drawn from a distribution other
            than the uniform box (e.g. LeCun-normal weights of a network); used by :meth:`init`
            when no box is given.  Problems with a sampler may have ``box=None``.
        n_samples: the number of data samples for problems defined on a data set (else None).
        batch_loss: ``batch_loss(theta, idx) -> scalar``: the same loss on the samples with
            indices ``idx`` (an int array), for SGD; None for problems without data.

    A problem is identified by the object itself (``eq=False``): compiled runners are cached
    per problem object, so build a problem once and reuse it.
    """

    name: str
    loss: Callable
    dim: int
    box: tuple[tuple[float, float], ...] | None
    min_value: float | None = None
    minima: Minima | None = None
    normalisation: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)
    native: NativeKernel | None = None
    variables: tuple[str, ...] = ()
    sampler: Callable | None = None
    n_samples: int | None = None
    batch_loss: Callable | None = None

    def __post_init__(self):
        if self.box is None:
            if self.sampler is None:
                raise InvalidParameterError(
                    "The 'box' parameter of Problem may be None only for a problem with a sampler. Got None instead."
                )
        elif len(self.box) != self.dim:
            raise InvalidParameterError(
                f"The 'box' parameter of Problem must have one (low, high) pair per coordinate "
                f"({self.dim}). Got {len(self.box)} pairs instead."
            )

    # -- sampling --------------------------------------------------------------------------
    def init(self, key, n: int, box: Sequence[tuple[float, float]] | None = None, *, dtype=None):
        """``n`` initial points, uniform in ``box`` (default: the problem's box), as a JAX array
        ``(n, dim)``.  Pure (jit/vmap-able with a static box); float64 when JAX's x64 mode is on
        (gdstab's entry points turn it on), else float32 unless ``dtype`` says otherwise.
        Problems with a :attr:`sampler` use it when ``box`` is None.
        The sweep layer derives one key per initialisation (:mod:`gdstab.random`)."""
        import jax
        import jax.numpy as jnp

        if box is None and self.sampler is not None:
            out = self.sampler(key, n)
            return out if dtype is None else out.astype(dtype)
        box = self.box if box is None else tuple(box)
        if len(box) != self.dim:
            raise fail("box", "Problem.init", f"{self.dim} (low, high) pairs", box)
        lo = jnp.asarray([b[0] for b in box], dtype=dtype)
        hi = jnp.asarray([b[1] for b in box], dtype=dtype)
        u = jax.random.uniform(key, (n, self.dim), dtype=lo.dtype)
        return lo + (hi - lo) * u

    #: initialisations drawn (from a fixed key) to measure :meth:`scale`
    SCALE_DRAWS = 16

    def scale(self) -> tuple[float, float]:
        """The problem's own scale: (RMS ‖θ₀‖, mean L(θ₀) − L*) over :attr:`SCALE_DRAWS` draws of its
        default initialisation (box or sampler) from a fixed key, in float64 when x64 is on; the
        second is nan where L* is unknown.  Measured once per problem (cached on the instance).
        Networks' default tolerances are relative to it (:meth:`gdstab.Criteria.for_problem`)."""
        cached = self.__dict__.get("_scale")
        if cached is not None:
            return cached
        import jax

        drawn = self.init(jax.random.PRNGKey(0), self.SCALE_DRAWS)
        theta = np.asarray(drawn, dtype=np.float64)
        s_theta = float(np.sqrt(np.mean(np.sum(theta * theta, axis=1))))
        s_loss = float("nan")
        if self.min_value is not None:
            values = np.asarray(jax.jit(jax.vmap(self.loss))(drawn), dtype=np.float64)
            s_loss = float(np.mean(values - self.min_value))
        object.__setattr__(self, "_scale", (s_theta, s_loss))
        return s_theta, s_loss

    # -- derivatives -----------------------------------------------------------------------
    def grad(self, theta):
        """∇L(θ) by reverse-mode autodiff (one point)."""
        import jax

        return jax.grad(self.loss)(theta)

    def gd_map(self, theta, eta):
        """The gradient-descent map G(θ) = θ − η ∇L(θ) (one point; pure)."""
        return theta - eta * self.grad(theta)

    # -- user JAX models ------------------------------------------------------------------
    @classmethod
    def from_jax(
        cls,
        loss_fn: Callable,
        params_template: Any,
        data: Any = None,
        *,
        init_fn: Callable | None = None,
        min_value: float | None = None,
        name: str = "jax_model",
        normalisation: str = "as defined by the user's loss_fn",
    ) -> "Problem":
        """A problem from any pure JAX model: ``loss_fn(params, batch) -> scalar`` on a pytree.

        Main arguments:
            loss_fn: pure function of (params pytree, batch); the batch is ``data`` for the
                full-batch loss and the rows ``idx`` of every array leaf of ``data`` for SGD.
            params_template: a pytree of arrays with the shapes (and order) of the parameters;
                θ is its flattening by ``jax.flatten_util.ravel_pytree``.
            data: a pytree of arrays whose leading axis indexes samples (None: no data; then
                ``loss_fn`` gets ``None`` as its batch and SGD is unavailable).

        Other arguments:
            init_fn: ``init_fn(key) -> params`` for one initialisation; default: LeCun normal
                for every leaf with at least two axes (N(0, 1/shape[0]) entries, fan-in = first
                axis) and zeros for vectors and scalars.
            min_value: L* if known.  name, normalisation: for provenance.
        """
        import jax
        import jax.numpy as jnp
        from jax.flatten_util import ravel_pytree

        flat, unravel, leaves, n_samples = _checked_jax_model(loss_fn, params_template, data)
        dim = int(flat.shape[0])

        def loss(theta):
            return loss_fn(unravel(theta), data)

        batch_loss = None
        if data is not None:
            def batch_loss(theta, idx):
                return loss_fn(unravel(theta), jax.tree_util.tree_map(lambda a: jnp.asarray(a)[idx], data))

        if init_fn is None:
            def init_one(key):
                keys = jax.random.split(key, len(leaves))
                tree = jax.tree_util.tree_structure(params_template)
                new = []
                for k, leaf in zip(keys, leaves):
                    shape = np.shape(leaf)
                    if len(shape) >= 2:
                        new.append(jax.random.normal(k, shape) / np.sqrt(shape[0]))
                    else:
                        new.append(jnp.zeros(shape))
                return jax.tree_util.tree_unflatten(tree, new)
        else:
            init_one = init_fn

        def sampler(key, n):
            return jax.vmap(lambda k: ravel_pytree(init_one(k))[0])(jax.random.split(key, n))

        return cls(
            name=name,
            loss=loss,
            dim=dim,
            box=None,
            min_value=min_value,
            normalisation=normalisation,
            options={"from_jax": True, "groups": _leaf_groups(params_template)},
            sampler=sampler,
            n_samples=n_samples,
            batch_loss=batch_loss,
        )

    @classmethod
    def from_torch(cls, module: Any, data: Any, loss: Any = "mse", *, init_fn: Callable | None = None,
                   min_value: float | None = None, name: str | None = None) -> "Problem":
        """A problem from a PyTorch ``nn.Module`` (optional extra ``gdstab[torch]``).

        Main arguments:
            module: the model; used in evaluation mode, in float64; θ is its
                ``named_parameters()`` flattened in that order (buffers are constants).
            data: ``(X, Y)`` arrays or tensors with the samples on the first axis.
            loss: ``"mse"`` (mean over all output entries, as ``F.mse_loss``),
                ``"cross_entropy"`` (integer labels, mean over samples, as ``F.cross_entropy``)
                or a PyTorch loss callable ``loss(output, target)``.

        Other arguments:
            init_fn: ``init_fn(key) -> {name: array}``; default: the module's own
                ``reset_parameters()`` under a seed derived from each initialisation's key.
            min_value: L* if known.  name: for provenance (default ``torch:<class name>``).

        The module becomes a pure JAX function of θ through torch2jax (with PyTorch's exact
        GELU, SiLU and Softplus, :mod:`gdstab.problems.torch_model`); an operation it cannot
        convert is refused at construction, naming the operation and the submodule."""
        from .torch_model import from_torch

        return from_torch(cls, module, data, loss, init_fn=init_fn, min_value=min_value, name=name)

    @classmethod
    def from_flax(cls, model: Any, data: Any, loss: Any = "mse", *, variables: Any = None,
                  min_value: float | None = None, name: str | None = None) -> "Problem":
        """A problem from a Flax model (optional extra ``gdstab[flax]``): a ``flax.linen.Module``
        (``variables`` from ``model.init``; default: ``model.init(key(0), X[:1])``; θ is the
        ``params`` collection, the others constants) or, for NNX, a constructor
        ``make(rngs) -> nnx.Module`` (θ is its ``nnx.Param`` state).  ``data`` = (X, Y); ``loss``
        ``"mse"`` | ``"cross_entropy"`` (as PyTorch's, :mod:`gdstab.problems.objectives`) | a JAX
        function (output, targets) -> scalar.  Members are initialised by the model's own
        initialisers from their gdstab keys (:mod:`gdstab.problems.jax_models`)."""
        from .jax_models import from_flax

        return from_flax(cls, model, variables, data, loss, min_value=min_value, name=name)

    @classmethod
    def from_equinox(cls, make: Callable, data: Any, loss: Any = "mse", *, min_value: float | None = None,
                     name: str | None = None) -> "Problem":
        """A problem from an Equinox model (optional extra ``gdstab[equinox]``): ``make(key) ->
        equinox.Module`` (the constructor, so that each member is drawn by Equinox's own
        initialisers); θ is its floating-point arrays; the model is applied to each sample
        (``jax.vmap``).  ``data`` and ``loss`` as in :meth:`from_flax`."""
        from .jax_models import from_equinox

        return from_equinox(cls, make, data, loss, min_value=min_value, name=name)

    # -- user expressions ------------------------------------------------------------------
    @classmethod
    def from_expression(
        cls,
        expr: str,
        variables: Sequence[str] | None = None,
        *,
        min_value: float | None = None,
        box: Sequence[tuple[float, float]] | None = None,
        name: str | None = None,
    ) -> "Problem":
        """A problem from a user-typed loss expression, e.g. ``"0.5*(1-x*y)**2"``.

        The text is parsed by the restricted grammar of :mod:`gdstab.problems.expression`
        (never evaluated as Python).  ``variables`` fixes the coordinate order (default: natural
        sort of the names), ``min_value`` states L* if known, ``box`` the initialisation
        region (default ``[-2, 2]`` per coordinate).  The normalisation is the expression's.
        """
        from .expression import parse_expression

        parsed = parse_expression(expr, variables)
        d = len(parsed.variables)
        if box is None:
            box = tuple((-2.0, 2.0) for _ in range(d))
        box = parse_box(box, d, caller="Problem.from_expression")
        if min_value is not None:
            from .._validation import finite_float

            min_value = finite_float(min_value, "min_value", "Problem.from_expression")
        return cls(
            name=name or "expression",
            loss=parsed.to_jax(),
            dim=d,
            box=box,
            min_value=min_value,
            normalisation=f"as typed: L({', '.join(parsed.variables)}) = {expr}",
            options={"expression": expr, "variables": list(parsed.variables)},
            variables=parsed.variables,
        )


def parse_box(box: Any, dim: int, *, caller: str, name: str = "box") -> tuple[tuple[float, float], ...]:
    """Normalise a box: a string ``"lo,hi"`` or ``"x0lo,x0hi,x1lo,x1hi,..."``, a flat sequence
    of 2 or 2·dim numbers, or a sequence of (low, high) pairs; each low < high, all finite."""
    expected = f"2 or {2 * dim} finite numbers (low,high per coordinate) with low < high"
    raw = box
    if isinstance(box, str):
        parts = [p.strip() for p in box.split(",")]
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise fail(name, caller, expected, raw) from None
    else:
        try:
            flat = np.asarray(box, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise fail(name, caller, expected, raw) from None
        values = [float(v) for v in flat]
    if len(values) == 2:
        values = values * dim
    if len(values) != 2 * dim or not all(np.isfinite(values)):
        raise fail(name, caller, expected, raw)
    pairs = tuple((values[2 * i], values[2 * i + 1]) for i in range(dim))
    if any(lo >= hi for lo, hi in pairs):
        raise fail(name, caller, expected, raw)
    return pairs


def gauss_newton_projector(equations: Callable, iters: int = 60) -> Callable:
    """``project(theta)``: Gauss–Newton iterations θ ← θ − J⁺ F(θ) on the defining equations
    F(θ) = 0 of M, until ‖F‖ reaches rounding level (at most ``iters`` iterations); lands on a
    point of M near θ (not always the nearest one)."""
    import jax
    import jax.numpy as jnp

    jac = jax.jacfwd(equations)

    def project(theta):
        th0 = jnp.asarray(theta)

        def resid(th):
            f = jnp.atleast_1d(equations(th))
            return f, jnp.sqrt(jnp.sum(f * f))

        def body(c):
            th, _, _, i = c
            f, r = resid(th)
            j = jnp.atleast_2d(jac(th))
            # minimum-norm step J⁺F = Jᵀ (J Jᵀ)⁺ F through the small m × m Gram matrix (m
            # equations ≪ d unknowns: an eigh of J Jᵀ instead of an SVD of J)
            lam, U = jnp.linalg.eigh(j @ j.T)
            cut = jnp.finfo(th0.dtype).eps * j.shape[1] * jnp.max(jnp.abs(lam))
            inv = jnp.where(lam > cut, 1.0 / jnp.where(lam > cut, lam, 1.0), 0.0)
            new = th - j.T @ (U @ (inv * (U.T @ f)))
            _, r_new = resid(new)
            return new, r, r_new, i + 1

        def cond(c):
            _, r_old, r, i = c
            eps = 64 * jnp.finfo(th0.dtype).eps * (1.0 + jnp.sqrt(jnp.sum(th0 * th0)))
            return (i < iters) & (r > eps)  # stop once converged to rounding level

        _, r0 = resid(th0)
        th, _, _, _ = jax.lax.while_loop(cond, body, (th0, jnp.inf, r0, 0))
        return th

    return project


def _leaf_groups(params_template) -> list:
    """[(name, size), ...] of a parameter pytree's leaves in θ's order (ravel_pytree's), named by
    their paths: the parameter groups of per-group learning rates."""
    import jax

    flat = jax.tree_util.tree_flatten_with_path(params_template)[0]
    return [(jax.tree_util.keystr(path, simple=True, separator=".") or f"leaf{i}", int(np.size(leaf)))
            for i, (path, leaf) in enumerate(flat)]


def _checked_jax_model(loss_fn, params_template, data):
    """The checks of :meth:`Problem.from_jax`: a callable loss, a template of arrays, data sharing
    the sample axis, a scalar loss at the template, and a loss that jit and grad can trace.
    Returns (θ of the template, unravel, its leaves, the number of samples or None)."""
    import jax
    from jax.flatten_util import ravel_pytree

    if not callable(loss_fn):
        raise fail("loss_fn", "Problem.from_jax", "a callable loss_fn(params, batch) -> scalar", loss_fn)
    leaves = jax.tree_util.tree_leaves(params_template)
    if not leaves:
        raise fail("params_template", "Problem.from_jax", "a pytree with at least one array", params_template)
    bad = [type(leaf).__name__ for leaf in leaves if not hasattr(leaf, "shape") and not isinstance(leaf, (int, float))]
    if bad:
        raise fail("params_template", "Problem.from_jax", "a pytree whose leaves are all arrays (an Equinox module "
                   "also holds functions: use Problem.from_equinox, or eqx.partition(model, eqx.is_inexact_array))",
                   f"leaves of types {sorted(set(bad))[:4]}")
    flat, unravel = ravel_pytree(params_template)
    n_samples = None
    if data is not None:
        sizes = {int(np.shape(a)[0]) if np.ndim(a) else -1 for a in jax.tree_util.tree_leaves(data)}
        if len(sizes) != 1 or -1 in sizes:
            raise fail("data", "Problem.from_jax", "a pytree of arrays sharing their first (sample) axis",
                       [np.shape(a) for a in jax.tree_util.tree_leaves(data)])
        n_samples = sizes.pop()
    try:
        value = loss_fn(params_template, data)
        ok = np.ndim(value) == 0
    except Exception as exc:  # noqa: BLE001 - report what the user's function raised
        raise InvalidParameterError(
            f"The 'loss_fn' parameter of Problem.from_jax must accept (params_template, data) and "
            f"return a scalar. Calling it raised {type(exc).__name__}: {exc}"
        ) from None
    if not ok:
        raise fail("loss_fn", "Problem.from_jax", "a function returning a scalar", f"an output of shape {np.shape(value)}")
    try:  # every tool traces it (jit, grad, vmap): a NumPy or PyTorch function fails only there
        jax.eval_shape(jax.grad(lambda p: loss_fn(p, data)), params_template)
    except Exception as exc:  # noqa: BLE001 - report what tracing the user's function raised
        hint = (" A PyTorch model or loss: use Problem.from_torch." if "Tracer" in type(exc).__name__
                or "torch" in str(exc).lower() else "")
        raise InvalidParameterError(
            f"The 'loss_fn' parameter of Problem.from_jax must be a JAX function that jax.jit and jax.grad can "
            f"trace. Tracing it raised {type(exc).__name__}: {str(exc).splitlines()[0][:200]}.{hint}") from None
    return flat, unravel, leaves, n_samples
