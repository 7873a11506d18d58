"""Linear algebra on a Hessian: dense Hessians, Hessian-vector products, Lanczos and power
iteration with explicit keys and convergence reports, the smallest non-zero eigenvalue with an
explicit rank tolerance, det(I − ηH) by slogdet, and the Jacobian of the GD map.

Iterative routines take a matrix-vector product ``matvec(v) -> H v`` (like SciPy's
``LinearOperator``), never a matrix, and return a result object that says whether they
converged: a stop at ``max_iter`` is reported, never silent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ._records import Record
from ._validation import InvalidParameterError, choice, fail, finite_float, positive_int

__all__ = [
    "hessian",
    "hvp",
    "gd_jacobian",
    "LanczosResult",
    "lanczos",
    "PowerResult",
    "power_iteration",
    "NonzeroResult",
    "smallest_nonzero_eigenvalue",
    "slogdet_gd",
    "DEFAULT_RANK_TOL",
]

#: relative tolerance below which an eigenvalue counts as zero: |λ| <= rank_tol · max|λ|
DEFAULT_RANK_TOL = 1e-9


def _loss_of(problem_or_loss) -> Callable:
    return getattr(problem_or_loss, "loss", problem_or_loss)


def hessian(problem_or_loss, theta) -> np.ndarray:
    """Dense Hessian (d, d) of the loss at ``theta`` by forward-over-reverse autodiff,
    symmetrised; float64 (for small d: memory d², cost d HVPs)."""
    import jax
    import jax.numpy as jnp

    loss = _loss_of(problem_or_loss)
    with jax.enable_x64(True):
        th = jnp.asarray(theta, dtype=jnp.float64)
        H = np.asarray(_hessian_fn(loss)(th), dtype=np.float64)
    if not np.all(np.isfinite(H)):
        raise InvalidParameterError(
            "The Hessian at the given 'theta' is not finite (the loss overflows or is not twice "
            "differentiable there); choose another point."
        )
    return 0.5 * (H + H.T)


def hvp(problem_or_loss, theta) -> Callable:
    """``v -> H(θ) v``, exact, by forward-over-reverse differentiation.

    ∇L is linearised at θ once (``jax.linearize``: one primal pass whose intermediate values are
    kept); every product then only propagates the tangent, which costs about one gradient
    (measured in docs/performance.md).  Both steps are compiled once per loss, with θ and the
    kept values as arguments, so a new θ does not recompile."""
    loss = _loss_of(problem_or_loss)
    linearise, apply = _hvp_fns(loss)
    lin = linearise(theta)
    return lambda v: apply(lin, v)


_HVP_CACHE: dict = {}
_HESS_CACHE: dict = {}


def _hessian_fn(loss):
    """A jitted dense Hessian per loss function (compiled once per shape)."""
    import jax

    fn = _HESS_CACHE.get(loss)
    if fn is None:
        if len(_HESS_CACHE) > 64:
            _HESS_CACHE.clear()
        fn = _HESS_CACHE[loss] = jax.jit(jax.jacfwd(jax.grad(loss)))
    return fn


def _hvp_fns(loss):
    import jax

    fns = _HVP_CACHE.get(loss)
    if fns is None:
        grad = jax.grad(loss)
        linearise = jax.jit(lambda th: jax.linearize(grad, th)[1])  # a jax.tree_util.Partial
        apply = jax.jit(lambda lin, v: lin(v))
        if len(_HVP_CACHE) > 64:
            _HVP_CACHE.clear()
        fns = _HVP_CACHE[loss] = (linearise, apply)
    return fns


def gd_jacobian(problem_or_loss, theta, eta: float) -> np.ndarray:
    """Jacobian of G(θ) = θ − η ∇L(θ) at θ (differentiating G itself), i.e. I − η H(θ)."""
    import jax
    import jax.numpy as jnp

    eta = finite_float(eta, "eta", "gd_jacobian", low=0.0)
    loss = _loss_of(problem_or_loss)
    with jax.enable_x64(True):
        th = jnp.asarray(theta, dtype=jnp.float64)
        J = jax.jacfwd(lambda t: t - eta * jax.grad(loss)(t))(th)
        return np.asarray(J, dtype=np.float64)


def slogdet_gd(H, eta: float) -> tuple[float, float]:
    """``(sign, log|det(I − ηH)|)`` by LU (numpy.linalg.slogdet): no overflow for large d."""
    eta = finite_float(eta, "eta", "slogdet_gd", low=0.0)
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or not np.all(np.isfinite(H)):
        raise fail("H", "slogdet_gd", "a finite square matrix", f"array of shape {H.shape}")
    sign, logdet = np.linalg.slogdet(np.eye(H.shape[0]) - eta * H)
    return float(sign), float(logdet)


# ----------------------------------------------------------------------------------- Lanczos


@dataclass(frozen=True, repr=False)
class LanczosResult(Record):
    """Eigenpairs from :func:`lanczos`.

    Attributes:
        eigenvalues: (k,) Ritz values (descending for "largest", ascending for "smallest").
        eigenvectors: (d, k) unit Ritz vectors.
        residuals: (k,) ‖H v − λ v‖ of each returned pair (computed with k extra matvecs).
        converged: True if every returned pair has residual <= tol · max(|λ_1|, tiny).
        iterations: Lanczos steps taken (Krylov dimension).
        matvecs: total matrix-vector products, the extra residual checks included.
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    converged: bool
    iterations: int
    matvecs: int


def lanczos(
    matvec: Callable,
    dim: int,
    k: int = 1,
    *,
    key,
    which: str = "largest",
    tol: float = 1e-10,
    max_iter: int | None = None,
    v0=None,
) -> LanczosResult:
    """The ``k`` largest or smallest eigenpairs of a symmetric operator by Lanczos with full
    reorthogonalisation (two passes of classical Gram-Schmidt), started from a random vector
    drawn with the explicit JAX ``key``.

    Stops when the Ritz residual estimates |β_m s_{m,i}| of the k wanted pairs are all below
    ``tol`` · max|θ| (relative to the spectral scale), or at ``max_iter`` (default min(dim, 300))
    or when the Krylov space is exhausted.  The returned residuals are then recomputed exactly.

    ``v0``: a start vector (warm start, e.g. the previous eigenvector when tracking sharpness
    along a trajectory) instead of the random one; ``key`` may then be None.
    """
    caller = "lanczos"
    dim = positive_int(dim, "dim", caller)
    k = positive_int(k, "k", caller)
    if k > dim:
        raise fail("k", caller, f"an int <= dim ({dim})", k)
    which = choice(which, "which", caller, ("largest", "smallest"))
    tol = finite_float(tol, "tol", caller, low=0.0)
    max_iter = min(dim, 300) if max_iter is None else positive_int(max_iter, "max_iter", caller)
    max_iter = min(max_iter, dim)

    def mv(v: np.ndarray) -> np.ndarray:
        out = np.asarray(matvec(v), dtype=np.float64).reshape(-1)
        if out.shape != (dim,) or not np.all(np.isfinite(out)):
            raise InvalidParameterError(
                f"The 'matvec' parameter of lanczos must return {dim} finite values. Got "
                f"{'non-finite values' if out.shape == (dim,) else 'shape ' + str(out.shape)} instead."
            )
        return out

    v = _start_vector(v0, key, dim, caller)
    v /= np.linalg.norm(v)
    V = np.zeros((max_iter + 1, dim))
    V[0] = v
    alpha, beta = [], []
    n_mv = 0
    m = 0
    ritz = vecs = None
    converged = False
    for j in range(max_iter):
        w = mv(V[j])
        n_mv += 1
        a = float(V[j] @ w)
        w = w - a * V[j] - (beta[-1] * V[j - 1] if j > 0 else 0.0)
        for _ in range(2):  # full reorthogonalisation
            w -= V[: j + 1].T @ (V[: j + 1] @ w)
        b = float(np.linalg.norm(w))
        alpha.append(a)
        m = j + 1
        T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        theta, S = np.linalg.eigh(T)
        order = np.argsort(theta)[::-1] if which == "largest" else np.argsort(theta)
        sel = order[: min(k, m)]
        scale = max(np.abs(theta).max(), np.finfo(float).tiny)
        est = np.abs(b * S[-1, sel])
        exhausted = b <= 1e-14 * scale
        if m >= k and (np.all(est <= tol * scale) or exhausted):
            converged = True
        if converged or j == max_iter - 1:
            ritz, vecs = theta[sel], V[:m].T @ S[:, sel]
            break
        beta.append(b)
        V[j + 1] = w / b
    res = _exact_residuals(mv, ritz, vecs)  # of the returned pairs (normalises vecs)
    n_mv += len(ritz)
    scale = max(np.abs(ritz).max(), np.finfo(float).tiny)
    ok = bool(len(ritz) == k and np.all(res <= max(tol, 1e-12) * scale * 10))
    return LanczosResult(ritz, vecs, res, ok, m, n_mv)


def _start_vector(v0, key, dim: int, caller: str) -> np.ndarray:
    """``v0`` (a warm start) or a random normal vector drawn with ``key``."""
    if v0 is not None:
        v = np.array(v0, dtype=np.float64).reshape(-1)
        if v.shape != (dim,) or not np.all(np.isfinite(v)) or not np.any(v):
            raise fail("v0", caller, f"a non-zero finite vector of length {dim}", f"shape {v.shape}")
        return v
    if key is None:
        raise fail("key", caller, "a JAX PRNG key (or give a start vector v0)", key)
    import jax

    with jax.enable_x64(True):
        return np.array(jax.random.normal(key, (dim,), dtype="float64"))


def _exact_residuals(mv, ritz: np.ndarray, vecs: np.ndarray) -> np.ndarray:
    """‖A u − θ u‖ for each Ritz pair, with the Ritz vectors normalised in place."""
    res = np.empty(len(ritz))
    for i in range(len(ritz)):
        u = vecs[:, i] / np.linalg.norm(vecs[:, i])
        vecs[:, i] = u
        res[i] = np.linalg.norm(mv(u) - ritz[i] * u)
    return res


# ------------------------------------------------------------------------------ power method


@dataclass(frozen=True, repr=False)
class PowerResult(Record):
    """Dominant eigenpair (largest |λ|) from :func:`power_iteration`."""

    eigenvalue: float
    eigenvector: np.ndarray
    residual: float
    converged: bool
    iterations: int


def power_iteration(matvec: Callable, dim: int, *, key, tol: float = 1e-10, max_iter: int = 10_000) -> PowerResult:
    """Power iteration for the eigenvalue of largest modulus, from a random start drawn with
    ``key``; converged when ‖H v − λ v‖ <= tol · |λ|.  (Slow when |λ₂/λ₁| is close to one;
    :func:`lanczos` is the better tool, this is its independent cross-check.)"""
    import jax

    caller = "power_iteration"
    dim = positive_int(dim, "dim", caller)
    tol = finite_float(tol, "tol", caller, low=0.0)
    max_iter = positive_int(max_iter, "max_iter", caller)
    with jax.enable_x64(True):
        v = np.array(jax.random.normal(key, (dim,), dtype="float64"))
    v /= np.linalg.norm(v)
    lam, res = 0.0, np.inf
    for it in range(1, max_iter + 1):
        w = np.asarray(matvec(v), dtype=np.float64).reshape(-1)
        lam = float(v @ w)
        res = float(np.linalg.norm(w - lam * v))
        if res <= tol * max(abs(lam), np.finfo(float).tiny):
            return PowerResult(lam, v, res, True, it)
        nrm = np.linalg.norm(w)
        if nrm == 0 or not np.isfinite(nrm):
            break
        v = w / nrm
    return PowerResult(lam, v, res, False, max_iter)


# --------------------------------------------------------------------- smallest non-zero one


@dataclass(frozen=True, repr=False)
class NonzeroResult(Record):
    """Smallest eigenvalue above the rank threshold, with what the decision rested on."""

    value: float  # smallest |λ| > threshold (nan if all are zero)
    n_zero: int  # eigenvalues with |λ| <= threshold
    threshold: float  # rank_tol · max|λ|
    gap: float  # value / largest eigenvalue below the threshold (inf if none): how clear the cut is


def smallest_nonzero_eigenvalue(H_or_eigenvalues, *, rank_tol: float = DEFAULT_RANK_TOL) -> NonzeroResult:
    """λ_min⁺: the smallest eigenvalue whose modulus exceeds ``rank_tol`` · max|λ|.

    Pass a symmetric matrix (its eigenvalues are computed with eigvalsh) or the eigenvalues
    themselves.  The default rank tolerance 1e-9 sits far above float64 rounding of a
    well-scaled Hessian (~d·1e-16 relative) and far below the curvatures the theory compares
    with 2/η; ``gap`` reports how far apart the two sides of the cut are."""
    rank_tol = finite_float(rank_tol, "rank_tol", "smallest_nonzero_eigenvalue", low=0.0)
    a = np.asarray(H_or_eigenvalues, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise InvalidParameterError("The Hessian given to smallest_nonzero_eigenvalue is not finite.")
    ev = np.linalg.eigvalsh(0.5 * (a + a.T)) if a.ndim == 2 else np.sort(a.reshape(-1))
    scale = float(np.abs(ev).max()) if ev.size else 0.0
    thr = rank_tol * scale
    zero = np.abs(ev) <= thr
    nz = np.abs(ev[~zero])
    value = float(ev[~zero][np.argmin(nz)]) if nz.size else float("nan")
    below = np.abs(ev[zero])
    gap = float(abs(value) / below.max()) if (below.size and below.max() > 0 and nz.size) else float("inf")
    return NonzeroResult(value, int(zero.sum()), thr, gap)
