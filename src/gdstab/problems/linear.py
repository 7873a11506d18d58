"""Deep linear networks L(W_h, …, W_1) = c · ‖Y − W_h ⋯ W_1 X‖²_F (the paper's main setting).

Parameters θ = (vec W_1, …, vec W_h) with W_i ∈ R^{d_i × d_{i−1}} (row-major vec), data
X ∈ R^{d_0 × n}, Y ∈ R^{d_h × n}.  Normalisations (the constant c): ``"sum"`` (c = 1, the
paper's), ``"half_sum"`` (c = ½), ``"mean"`` (c = 1/n), ``"half_mean"`` (c = 1/(2n)).  Every
threshold (2/η, critical step sizes) follows the chosen normalisation.

The minimum over the image of μ_d (matrices of rank ≤ r = min d_i): with Σ = X Xᵀ (full rank
required) and W₀* = Y Xᵀ Σ⁻¹, ‖Y − W X‖² = ‖Y − W₀* X‖² + ‖(W − W₀*) Σ^{1/2}‖², so
W* = [W₀* Σ^{1/2}]_r Σ^{−1/2} (Eckart–Young after whitening); in the filling case
(r = min(d_0, d_h)) W* = W₀*.  M = μ_d⁻¹(W*) has dimension d_θ − r(d_0 + d_h − r).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .._validation import InvalidParameterError, check_memory, choice, fail, positive_int
from .base import Minima, Problem, gauss_newton_projector
from .products import split_flat

__all__ = ["linear_network", "LinearTarget", "NORMALISATIONS", "balanced_point", "gauge", "path_to_infinity",
           "is_balanced", "WALKS"]

NORMALISATIONS = ("sum", "half_sum", "mean", "half_mean")


@dataclass(frozen=True)
class LinearTarget:
    """The global minimum of the loss on the image of μ_d and what the theory needs of it."""

    W_star: np.ndarray
    W0_star: np.ndarray
    rank: int  # r = min(d_i)
    filling: bool
    singular_values: np.ndarray  # of W0* Σ^{1/2} (the matrix truncated to rank r)
    distinct: bool  # the paper's condition: positive, pairwise distinct singular values
    min_value: float
    dim_M: int
    d_theta: int


def _weights(dims, theta) -> list:
    """Split θ (NumPy or JAX) into W_1, …, W_h with W_i of shape (d_i, d_{i−1}), row-major."""
    return split_flat(theta, [(dims[k + 1], dims[k]) for k in range(len(dims) - 1)])


def _scale(normalisation: str, n: int) -> float:
    return {"sum": 1.0, "half_sum": 0.5, "mean": 1.0 / n, "half_mean": 0.5 / n}[normalisation]


def linear_network(
    dims: Sequence[int],
    X,
    Y,
    *,
    normalisation: str = "sum",
    box: float = 1.0,
    name: str | None = None,
) -> Problem:
    """The deep linear network with layer widths ``dims`` = (d_0, …, d_h) on data X (d_0 × n),
    Y (d_h × n).  See the module docstring for the normalisations and the minimum.

    ``box``: initial points are uniform in [−box, box]^{d_θ}.  The problem's ``options`` hold
    the :class:`LinearTarget` under ``"target"``."""
    import jax.numpy as jnp

    caller = "linear_network"
    dims = _check_dims(dims, caller)
    normalisation = choice(normalisation, "normalisation", caller, NORMALISATIONS)
    X, Y, Sigma = _check_data(dims, X, Y, caller)
    n = X.shape[1]
    c = _scale(normalisation, n)
    target = _target(dims, X, Y, c)
    shapes = [(dims[i + 1], dims[i]) for i in range(len(dims) - 1)]
    sizes = [a * b for a, b in shapes]
    d_theta = sum(sizes)
    Xj_np, Yj_np = X, Y

    def product(theta):
        Ws = _weights(dims, theta)
        P = Ws[0]
        for W in Ws[1:]:
            P = W @ P
        return P

    def loss(theta):
        Xj = jnp.asarray(Xj_np, dtype=theta.dtype)
        Yj = jnp.asarray(Yj_np, dtype=theta.dtype)
        R = Yj - product(theta) @ Xj
        return c * jnp.sum(R * R)

    Wstar = target.W_star

    def equations(theta):
        return (product(theta) - jnp.asarray(Wstar, dtype=theta.dtype)).reshape(-1)


    curvature = _curvature_on_M(dims, product, Sigma, c) if target.filling else None
    minima = Minima(
        description=f"mu_d^-1(W*), a smooth manifold of dimension {target.dim_M}",
        dim=target.dim_M,
        sample=lambda key, n_: _sample_minima(key, n_, dims, Wstar, target.rank),
        project=gauss_newton_projector(equations, iters=100),
        residual=lambda theta: jnp.linalg.norm(equations(theta)),
        equations=equations,
        curvature=curvature,
    )
    return Problem(
        name=name or f"linear{'-'.join(map(str, dims))}",
        loss=loss,
        dim=d_theta,
        box=tuple((-float(box), float(box)) for _ in range(d_theta)),
        min_value=target.min_value,
        minima=minima,
        normalisation=f"L = {c:g} * ||Y - W_h...W_1 X||_F^2 ({normalisation}, n = {n})",
        options={"dims": list(dims), "normalisation": normalisation, "target": target, "shapes": shapes},
        variables=tuple(f"W{i + 1}[{a},{b}]" for i, (r_, c_) in enumerate(shapes) for a in range(r_) for b in range(c_)),
    )


def _check_data(dims, X, Y, caller: str):
    """X (d_0 × n) and Y (d_h × n) as finite float64 matrices with X Xᵀ of full rank; returns
    X, Y and Σ = X Xᵀ."""
    X = np.asarray(X, dtype=np.float64)
    Y = np.asarray(Y, dtype=np.float64)
    if X.ndim != 2 or X.shape[0] != dims[0]:
        raise fail("X", caller, f"a matrix with d_0 = {dims[0]} rows (one column per sample)", f"shape {X.shape}")
    if Y.ndim != 2 or Y.shape[0] != dims[-1] or Y.shape[1] != X.shape[1]:
        raise fail("Y", caller, f"a matrix of shape ({dims[-1]}, {X.shape[1]}) (d_h rows, one column per sample of X)",
                   f"shape {Y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise InvalidParameterError(f"The 'X' and 'Y' parameters of {caller} must be finite. Got non-finite values instead.")
    n = X.shape[1]
    Sigma = X @ X.T
    cond = np.linalg.cond(Sigma) if n >= dims[0] else np.inf
    if not np.isfinite(cond) or cond > 1e12:
        raise InvalidParameterError(
            f"The 'X' parameter of {caller} must have X Xᵀ of full rank {dims[0]} (condition number "
            f"{cond:.3g}); use at least d_0 = {dims[0]} linearly independent samples, or remove redundant input features."
        )
    return X, Y, Sigma


def _curvature_on_M(dims, product, Sigma: np.ndarray, c: float):
    """The closed-form curvature of a filling network on M: there the gradient of l vanishes
    (W* = W0* is l's unconstrained minimiser), so H = Dμᵀ D²l Dμ with D²l = 2c (I ⊗ Σ) on
    row-major vec W, and its non-zero eigenvalues are those of the d_h·d_0 square matrix
    S Dμ Dμᵀ S, S = (D²l)^{1/2}."""
    import jax
    import jax.numpy as jnp

    ev_s, U_s = np.linalg.eigh(Sigma)
    S_np = np.kron(np.eye(dims[-1]), (U_s * np.sqrt(2.0 * c * ev_s)) @ U_s.T)
    jac_mu = jax.jacfwd(lambda th: product(th).reshape(-1))

    def curvature(theta):
        S = jnp.asarray(S_np, dtype=theta.dtype)
        J = S @ jac_mu(theta)
        return J @ J.T

    return curvature


def _target(dims, X, Y, c) -> LinearTarget:
    d0, dh = dims[0], dims[-1]
    r = min(dims)
    Sigma = X @ X.T
    W0 = Y @ X.T @ np.linalg.inv(Sigma)
    ev, U = np.linalg.eigh(Sigma)
    S_half = (U * np.sqrt(ev)) @ U.T
    S_mhalf = (U / np.sqrt(ev)) @ U.T
    Z = W0 @ S_half
    Uz, sz, Vzt = np.linalg.svd(Z)
    filling = r == min(d0, dh)
    if filling:
        W = W0
    else:
        W = (Uz[:, :r] * sz[:r]) @ Vzt[:r] @ S_mhalf
    pos = sz[: min(d0, dh)]
    distinct = bool(np.all(pos > 1e-12 * max(pos.max(), 1e-300)) and np.all(np.diff(pos) < -1e-12 * pos.max()))
    R = Y - W @ X
    d_theta = sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))
    return LinearTarget(
        W_star=W,
        W0_star=W0,
        rank=r,
        filling=filling,
        singular_values=sz,
        distinct=distinct,
        min_value=float(c * np.sum(R * R)),
        dim_M=d_theta - r * (d0 + dh - r),
        d_theta=d_theta,
    )


def balanced_point(dims, W_star, rank, rotations=None) -> np.ndarray:
    """A balanced factorisation of W* (W_{i+1}ᵀ W_{i+1} = W_i W_iᵀ): with W* = U S Vᵀ (rank r),
    W_1 = P_1 S^{1/h} Vᵀ, W_i = P_i S^{1/h} P_{i−1}ᵀ, W_h = U S^{1/h} P_{h−1}ᵀ, for matrices
    P_i (d_i × r) with orthonormal columns (``rotations``; default the first r unit vectors)."""
    h = len(dims) - 1
    U, s, Vt = np.linalg.svd(W_star)
    U, s, Vt = U[:, :rank], s[:rank], Vt[:rank]
    root = np.diag(s ** (1.0 / h))
    P = [None] * (h + 1)
    P[0] = Vt.T
    P[h] = U
    for i in range(1, h):
        P[i] = rotations[i - 1] if rotations is not None else np.eye(dims[i])[:, :rank]
    Ws = [P[i + 1] @ root @ P[i].T for i in range(h)]
    return np.concatenate([W.reshape(-1) for W in Ws])


def gauge(dims, theta, mats) -> np.ndarray:
    """W_i → A_i W_i A_{i−1}⁻¹ with A_0 = I, A_h = I and ``mats`` = (A_1, …, A_{h−1}): the
    product, hence the loss, is unchanged."""
    Ws = _weights(dims, np.asarray(theta))
    A = [np.eye(dims[0])] + [np.asarray(m) for m in mats] + [np.eye(dims[-1])]
    out = [A[k + 1] @ Ws[k] @ np.linalg.inv(A[k]) for k in range(len(Ws))]
    return np.concatenate([W.reshape(-1) for W in out])


def _sample_minima(key, n, dims, W_star, rank):
    """Points of M: balanced factorisations with random orthonormal P_i, then random gauge
    transforms A_i = exp(G_i) with G_i Gaussian of scale 0.3 (so ‖A_i‖ stays moderate)."""
    import jax
    import jax.numpy as jnp
    from scipy.linalg import expm

    seed = np.asarray(jax.random.randint(key, (2,), 0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    h = len(dims) - 1
    out = []
    for _ in range(n):
        rots = [np.linalg.qr(rng.normal(size=(dims[i], dims[i])))[0][:, :rank] for i in range(1, h)]
        th = balanced_point(dims, W_star, rank, rots)
        mats = [expm(0.3 * rng.normal(size=(dims[i], dims[i]))) for i in range(1, h)]
        out.append(gauge(dims, th, mats))
    return jnp.asarray(np.array(out))


#: the families of paths to infinity along M offered by :func:`path_to_infinity`
WALKS = ("scaling", "shear", "kernel")


def path_to_infinity(dims, W_star, rank, kind: str):
    """A path t ↦ θ(t) ∈ M with ‖θ(t)‖ → ∞ as t → ∞, starting (t = 0) at the balanced point.

    * ``"scaling"``: gauge A_1 = e^t I (W_1 grows, W_2 shrinks): unbalanced, any architecture
      with a hidden layer.
    * ``"shear"``: gauge A_1 = I + t E_{12} (a non-normal change of basis inside the first hidden
      layer): needs a hidden width d_1 ≥ 2.
    * ``"kernel"``: W_1 → W_1 + t u vᵀ with W_2 u = 0 (u orthogonal to the r directions used by
      the factorisation): needs d_1 > r.
    Returns a function of t giving θ(t)."""
    h = len(dims) - 1
    if h < 2:
        raise InvalidParameterError("A path to infinity along M needs at least one hidden layer (len(dims) >= 3).")
    if kind not in WALKS:
        raise fail("kind", "path_to_infinity", "one of " + ", ".join(WALKS), kind)
    base = balanced_point(dims, W_star, rank)
    d1 = dims[1]
    others = [np.eye(dims[i]) for i in range(2, h)]
    if kind == "scaling":
        return lambda t: gauge(dims, base, [math.exp(t) * np.eye(d1)] + others)
    if kind == "shear":
        if d1 < 2:
            raise InvalidParameterError(f"The 'shear' path needs a hidden width d_1 >= 2. Got dims {tuple(dims)} instead.")
        E = np.zeros((d1, d1))
        E[0, 1] = 1.0
        return lambda t: gauge(dims, base, [np.eye(d1) + t * E] + others)
    if d1 <= rank:
        raise InvalidParameterError(f"The 'kernel' path needs d_1 > r = {rank}. Got dims {tuple(dims)} instead.")
    u = np.zeros(d1)
    u[rank] = 1.0  # the balanced point uses the first r unit vectors of the hidden layer
    v = np.zeros(dims[0])
    v[0] = 1.0
    n1 = dims[1] * dims[0]

    def theta(t):
        th = base.copy()
        th[:n1] += t * np.outer(u, v).reshape(-1)
        return th

    return theta


def is_balanced(dims, theta, tol: float = 1e-8) -> bool:
    """Whether W_{i+1}ᵀ W_{i+1} = W_i W_iᵀ for every hidden layer (relative tolerance)."""
    Ws = _weights(dims, np.asarray(theta))
    for k in range(len(Ws) - 1):
        a, b = Ws[k + 1].T @ Ws[k + 1], Ws[k] @ Ws[k].T
        if np.linalg.norm(a - b) > tol * max(1.0, np.linalg.norm(a)):
            return False
    return True


def _check_dims(dims, caller: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(v) for v in dims)
    except (TypeError, ValueError):
        raise fail("dims", caller, "a sequence of at least two ints >= 1", dims) from None
    if len(dims) < 2 or any(v < 1 for v in dims):
        raise fail("dims", caller, "a sequence of at least two ints >= 1", dims)
    d_theta = sum(a * b for a, b in zip(dims[:-1], dims[1:]))
    check_memory(8.0 * d_theta * d_theta, "dims", caller, f"a dense Hessian of {d_theta} parameters", dims)
    return dims


def gaussian_data(dims: Sequence[int], samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian data X (d_0 × n), Y (d_h × n) from ``numpy.random.default_rng(seed)`` (X drawn
    first): the default data of ``gdstab linear`` and of the registered problem ``"linear"``."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(int(dims[0]), samples))
    Y = rng.normal(size=(int(dims[-1]), samples))
    return X, Y


def linear_problem(dims: Sequence[int] = (2, 3, 2), samples: int = 20, data_seed: int = 0,
                   normalisation: str = "sum") -> Problem:
    """The registered problem ``"linear"``: a deep linear network with layer widths ``dims`` on
    :func:`gaussian_data` (``samples`` samples from ``data_seed``), for sweeps and the CLI."""
    caller = "problem 'linear'"
    samples = positive_int(samples, "samples", caller)
    data_seed = positive_int(data_seed, "data_seed", caller, minimum=0)
    dims = _check_dims(dims, caller)
    X, Y = gaussian_data(dims, samples, data_seed)
    return linear_network(dims, X, Y, normalisation=normalisation,
                          name=f"linear {'-'.join(map(str, dims))} ({samples} Gaussian samples, seed {data_seed})")

