"""Closed-form toy losses.  Every docstring states the normalisation, because critical step
sizes such as 2/λ depend on it.  Each toy knows its minimum value, its set of minima M and the
Hessian spectrum on M in closed form (tests compare these with autodiff)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .._validation import InvalidParameterError, check_memory, fail, finite_float, positive_int
from .base import Minima, NativeKernel, Problem, gauss_newton_projector

__all__ = ["hyperbola", "saddle_quartic", "quadratic", "quartic", "quad_quartic", "zhu", "rosenbrock"]


def _square_box(d: int, half: float = 2.0) -> tuple[tuple[float, float], ...]:
    return tuple((-half, half) for _ in range(d))


# ---------------------------------------------------------------------------------------------


def hyperbola() -> Problem:
    """L(x, y) = ½ (1 − x y)², the paper's two-neuron linear network with data {1 ↦ 1}.

    Normalisation: ½ times the squared error of one sample.  L* = 0 on M = {x y = 1} (two
    branches).  On M the Hessian has eigenvalues {0, x² + y²}; inf over M of x² + y² is 2, so
    the critical step size is 2/2 = 1.
    """
    import jax
    import jax.numpy as jnp

    def loss(theta):
        x, y = theta[0], theta[1]
        return 0.5 * (1.0 - x * y) ** 2

    def sample(key, n):
        k1, k2 = jax.random.split(key)
        s = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0, dtype=jnp.float64)
        b = jnp.where(jax.random.bernoulli(k2, 0.5, (n,)), 1.0, -1.0)
        return jnp.stack([b * jnp.exp(s), b * jnp.exp(-s)], axis=1)

    def eig(theta):
        return jnp.array([0.0, theta[0] ** 2 + theta[1] ** 2])

    minima = Minima(
        description="{(x, y) : x*y = 1} (two branches, x > 0 and x < 0)",
        dim=1,
        sample=sample,
        project=gauss_newton_projector(lambda th: th[0] * th[1] - 1.0),
        hessian_eigenvalues=eig,
        residual=lambda th: jnp.abs(th[0] * th[1] - 1.0),
        # branch 0: (e^s, e^-s), branch 1: (-e^s, -e^-s)
        curve=(2, lambda s, b: (1.0 - 2.0 * b) * jnp.stack([jnp.exp(s), jnp.exp(-s)]), (-np.inf, np.inf)),
    )
    return Problem(
        name="hyperbola",
        loss=loss,
        dim=2,
        box=_square_box(2),
        min_value=0.0,
        minima=minima,
        normalisation="L(x, y) = 1/2 (1 - x*y)^2: one sample, with a factor 1/2",
        native=NativeKernel("hyperbola"),
        variables=("x", "y"),
    )


def saddle_quartic() -> Problem:
    """L(x, y) = ½ (y² − x²)².

    Normalisation: ½ times a squared residual.  L* = 0 on M = {y = ±x}, two lines crossing at
    the origin (not a manifold there; the Hessian vanishes at 0, the paper's counterexample).
    On M the Hessian has eigenvalues {0, 4 (x² + y²)}.
    """
    import jax
    import jax.numpy as jnp

    def loss(theta):
        x, y = theta[0], theta[1]
        return 0.5 * (y * y - x * x) ** 2

    def sample(key, n):
        k1, k2 = jax.random.split(key)
        t = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0, dtype=jnp.float64)
        s = jnp.where(jax.random.bernoulli(k2, 0.5, (n,)), 1.0, -1.0)
        return jnp.stack([t, s * t], axis=1)

    def eig(theta):
        return jnp.array([0.0, 4.0 * (theta[0] ** 2 + theta[1] ** 2)])

    minima = Minima(
        description="{(x, y) : y = x or y = -x}",
        dim=1,
        sample=sample,
        project=gauss_newton_projector(lambda th: th[1] ** 2 - th[0] ** 2),
        hessian_eigenvalues=eig,
        residual=lambda th: jnp.abs(th[1] ** 2 - th[0] ** 2),
        # branch 0: y = x, branch 1: y = -x (each a full line through the origin)
        curve=(2, lambda s, b: jnp.stack([s, (1.0 - 2.0 * b) * s]), (-np.inf, np.inf)),
    )
    return Problem(
        name="saddle_quartic",
        loss=loss,
        dim=2,
        box=_square_box(2),
        min_value=0.0,
        minima=minima,
        normalisation="L(x, y) = 1/2 (y^2 - x^2)^2",
        native=NativeKernel("saddle_quartic"),
        variables=("x", "y"),
    )


def quadratic(
    spectrum: Sequence[float] | None = None,
    *,
    matrix: Sequence[Sequence[float]] | None = None,
    a: float | None = None,
    dim: int | None = None,
) -> Problem:
    """L(θ) = ½ θᵀ A θ for a symmetric positive semi-definite A.

    Give exactly one of: ``a`` (A = a·I, so L = (a/2)‖θ‖², with ``dim`` coordinates, default 1),
    ``spectrum`` (A = diag(spectrum)) or ``matrix`` (A itself).  With no argument, A = 1 in one
    dimension.  Normalisation: with the factor ½, so the Hessian is exactly A and GD converges
    iff η < 2/λ_max(A) (for initial points with a component along the top eigenvector).
    L* = 0 on M = ker A (the origin when A is positive definite).
    """
    import jax.numpy as jnp

    caller = "quadratic"
    A = _quadratic_matrix(spectrum, matrix, a, dim, caller)
    if dim is not None and A.shape[0] != dim:
        raise fail("dim", caller, f"equal to the size of A ({A.shape[0]})", dim)
    evals, evecs = np.linalg.eigh(A)
    scale = max(1.0, float(np.abs(evals).max()))
    if evals.min() < -1e-12 * scale:
        raise fail("matrix", caller, "positive semi-definite (a quadratic with a negative eigenvalue has no minimum)", A.tolist())
    d = A.shape[0]
    kernel = evecs[:, np.abs(evals) <= 1e-12 * scale]
    # constants stay NumPy float64 and are cast to θ's dtype when traced, so that building the
    # problem outside an x64 context does not round them to float32
    ev = np.clip(evals, 0.0, None)

    def loss(theta):
        Aj = jnp.asarray(A, dtype=theta.dtype)
        return 0.5 * theta @ (Aj @ theta)

    def sample(key, n):
        import jax

        if kernel.shape[1] == 0:
            return jnp.zeros((n, d))
        c = jax.random.normal(key, (n, kernel.shape[1]), dtype=jnp.float64)
        return c @ jnp.asarray(kernel).T

    minima = Minima(
        description="ker A" + (" = {0}" if kernel.shape[1] == 0 else f" (dimension {kernel.shape[1]})"),
        dim=int(kernel.shape[1]),
        sample=sample,
        project=lambda theta: jnp.asarray(kernel, theta.dtype) @ (jnp.asarray(kernel, theta.dtype).T @ theta),
        hessian_eigenvalues=lambda theta: jnp.asarray(ev, theta.dtype),
        residual=lambda theta: jnp.linalg.norm(jnp.asarray(A, theta.dtype) @ theta),
    )
    return Problem(name="quadratic", loss=loss, dim=d, box=_square_box(d), min_value=0.0, minima=minima,
                   normalisation="L(theta) = 1/2 theta^T A theta (Hessian = A)", options={"matrix": A.tolist()},
                   variables=tuple(f"x{i}" for i in range(d)) if d > 1 else ("x",))


def _quadratic_matrix(spectrum, matrix, a, dim, caller: str) -> np.ndarray:
    """A from exactly one of ``matrix`` (symmetric), ``spectrum`` (diagonal) or ``a`` (a·I)."""
    given = [n for n, v in (("spectrum", spectrum), ("matrix", matrix), ("a", a)) if v is not None]
    if len(given) > 1:
        raise InvalidParameterError(
            f"The parameters of quadratic are exclusive: give one of 'a', 'spectrum' or 'matrix'. Got {given} instead."
        )
    if matrix is not None:
        try:
            A = np.asarray(matrix, dtype=np.float64)
        except (TypeError, ValueError):
            raise fail("matrix", caller, "a square symmetric matrix of finite floats", matrix) from None
        if A.ndim != 2 or A.shape[0] != A.shape[1] or A.shape[0] == 0 or not np.all(np.isfinite(A)):
            raise fail("matrix", caller, "a square symmetric matrix of finite floats", matrix)
        if not np.allclose(A, A.T, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(A).max())):
            raise fail("matrix", caller, "a symmetric matrix", matrix)
        A = 0.5 * (A + A.T)
    elif spectrum is not None:
        try:
            s = np.asarray(spectrum, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise fail("spectrum", caller, "a non-empty sequence of finite floats >= 0", spectrum) from None
        if s.size == 0 or not np.all(np.isfinite(s)) or np.any(s < 0):
            raise fail("spectrum", caller, "a non-empty sequence of finite floats >= 0", spectrum)
        A = np.diag(s)
    else:
        av = 1.0 if a is None else finite_float(a, "a", caller, low=0.0, low_inclusive=True)
        n = 1 if dim is None else positive_int(dim, "dim", caller)
        check_memory(8.0 * n * n * 3, "dim", caller, "a dense Hessian and its eigenvectors", dim)
        A = av * np.eye(n)
    return A


def quartic() -> Problem:
    """L(x) = x⁴/4.

    Normalisation: the factor ¼ makes L'(x) = x³.  L* = 0 at M = {0}, where the Hessian 3x²
    vanishes.  GD x ← x(1 − η x²) diverges iff |x₀| > √(2/η); at |x₀| = √(2/η) it is a 2-cycle.
    """
    def loss(theta):
        return 0.25 * theta[0] ** 4

    return _one_dimensional("quartic", loss, "L(x) = x^4 / 4", hessian_at_min=0.0)


def quad_quartic() -> Problem:
    """L(x) = x²/2 + x⁴/4.

    Normalisation: L'(x) = x + x³, L''(0) = 1.  L* = 0 at M = {0}.  For η < 2 GD converges iff
    |x₀| < √((2 − η)/η); on the boundary it is a 2-cycle.
    """
    def loss(theta):
        x = theta[0]
        return 0.5 * x**2 + 0.25 * x**4

    return _one_dimensional("quad_quartic", loss, "L(x) = x^2/2 + x^4/4", hessian_at_min=1.0)


def _one_dimensional(name: str, loss, normalisation: str, hessian_at_min: float) -> Problem:
    """A loss of one variable with its unique minimum L* = 0 at M = {0}."""
    import jax.numpy as jnp

    minima = Minima(
        description="{0}",
        dim=0,
        sample=lambda key, n: jnp.zeros((n, 1)),
        project=lambda theta: jnp.zeros_like(theta),
        hessian_eigenvalues=lambda theta: jnp.array([hessian_at_min]),
        residual=lambda theta: jnp.abs(theta[0]),
    )
    return Problem(
        name=name,
        loss=loss,
        dim=1,
        box=((-2.0, 2.0),),
        min_value=0.0,
        minima=minima,
        normalisation=normalisation,
        native=NativeKernel(name),
        variables=("x",),
    )


def zhu() -> Problem:
    """L(x, y) = ¼ (x² y² − 1)² (Zhu et al. 2022, a minimal model of edge of stability).

    Normalisation: factor ¼.  L* = 0 on M = {x² y² = 1} (the four branches x y = ±1); on M the
    Hessian has eigenvalues {0, 2 (x² + y²)}, so the flattest minima (|x| = |y| = 1) have
    sharpness 4.  Every point of the axes is a critical point with L = ¼.
    """
    import jax
    import jax.numpy as jnp

    def loss(theta):
        x, y = theta[0], theta[1]
        return 0.25 * (x * x * (y * y) - 1.0) ** 2

    def sample(key, n):
        k1, k2, k3 = jax.random.split(key, 3)
        s = jax.random.uniform(k1, (n,), minval=-2.0, maxval=2.0, dtype=jnp.float64)
        b1 = jnp.where(jax.random.bernoulli(k2, 0.5, (n,)), 1.0, -1.0)
        b2 = jnp.where(jax.random.bernoulli(k3, 0.5, (n,)), 1.0, -1.0)
        return jnp.stack([b1 * jnp.exp(s), b2 * jnp.exp(-s)], axis=1)

    minima = Minima(
        description="{(x, y) : x^2 y^2 = 1} (four branches)",
        dim=1,
        sample=sample,
        project=gauss_newton_projector(lambda th: th[0] ** 2 * th[1] ** 2 - 1.0),
        hessian_eigenvalues=lambda th: jnp.array([0.0, 2.0 * (th[0] ** 2 + th[1] ** 2)]),
        residual=lambda th: jnp.abs(th[0] ** 2 * th[1] ** 2 - 1.0),
        # four branches (±e^s, ±e^-s)
        curve=(
            4,
            lambda s, b: jnp.stack([(1.0 - 2.0 * (b % 2)) * jnp.exp(s), (1.0 - 2.0 * (b // 2)) * jnp.exp(-s)]),
            (-np.inf, np.inf),
        ),
    )
    return Problem(
        name="zhu",
        loss=loss,
        dim=2,
        box=_square_box(2),
        min_value=0.0,
        minima=minima,
        normalisation="L(x, y) = 1/4 (x^2 y^2 - 1)^2",
        native=NativeKernel("zhu"),
        variables=("x", "y"),
    )


def rosenbrock(a: float = 1.0, b: float = 100.0) -> Problem:
    """L(x, y) = (a − x)² + b (y − x²)², the classic Rosenbrock function (no factor ½).

    L* = 0 at M = {(a, a²)}.  The Hessian there is [[2 + 8 b a², −4 a b], [−4 a b, 2 b]].
    """
    import jax.numpy as jnp

    a = finite_float(a, "a", "rosenbrock")
    b = finite_float(b, "b", "rosenbrock", low=0.0)
    H = np.array([[2.0 + 8.0 * b * a * a, -4.0 * a * b], [-4.0 * a * b, 2.0 * b]])
    ev = np.linalg.eigvalsh(H)
    point = np.array([a, a * a])

    def loss(theta):
        x, y = theta[0], theta[1]
        return (a - x) ** 2 + b * (y - x * x) ** 2

    minima = Minima(
        description=f"{{({a:g}, {a * a:g})}}",
        dim=0,
        sample=lambda key, n: jnp.tile(jnp.asarray(point, jnp.float64), (n, 1)),
        project=lambda theta: jnp.asarray(point, theta.dtype),
        hessian_eigenvalues=lambda theta: jnp.asarray(ev, theta.dtype),
        residual=lambda theta: jnp.linalg.norm(theta - jnp.asarray(point, theta.dtype)),
    )
    return Problem(
        name="rosenbrock",
        loss=loss,
        dim=2,
        box=((-2.0, 2.0), (-1.0, 3.0)),
        min_value=0.0,
        minima=minima,
        normalisation="L(x, y) = (a - x)^2 + b (y - x^2)^2 (no factor 1/2)",
        options={"a": a, "b": b},
        native=NativeKernel("rosenbrock", (a, b)),
        variables=("x", "y"),
    )
