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
    "PROBES",
    "probe_vectors",
    "TraceResult",
    "trace_estimate",
    "DensityResult",
    "spectral_density",
    "TopResult",
    "top_eigenvalues",
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


# ------------------------------------------- Lanczos, restarted, with its basis on the device

_KS_FNS: dict = {}


def _ks_fns():
    """Jitted pieces of the Lanczos iterations; a basis V ((m + 1) x d) stays a JAX array on the
    default device and is updated in place (donated); only coefficients reach the host."""
    import jax
    import jax.numpy as jnp

    if not _KS_FNS:
        def extend(V, w, j, floor):
            # two passes of classical Gram-Schmidt against every row; rows after j are zero
            h = V @ w
            w = w - h @ V
            h2 = V @ w
            w = w - h2 @ V
            b = jnp.linalg.norm(w)
            return V.at[j + 1].set(jnp.where(b > floor, w / jnp.where(b > floor, b, 1.0), 0.0)), h + h2, b

        def restart(V, Y):  # keep the Ritz vectors V[:m]ᵀ Y and the residual direction V[m]
            W = jnp.zeros_like(V).at[: Y.shape[1]].set(Y.T @ V[:-1])
            return W.at[Y.shape[1]].set(V[-1])

        _KS_FNS.update(extend=jax.jit(extend, donate_argnums=0), restart=jax.jit(restart, donate_argnums=0),
                       ritz=jax.jit(lambda V, Y: Y.T @ V[:-1]),
                       residuals=jax.jit(lambda AU, U, t: jnp.linalg.norm(AU - t[:, None] * U, axis=1)))
    return _KS_FNS


def _device_matvec(matvec: Callable, dim: int, caller: str) -> Callable:
    """``matvec`` on JAX arrays: float64 vectors of length d on the device (a NumPy result is
    moved there).  The shape is checked here, finiteness by the callers (through a norm or a
    dot product, one scalar on the host)."""
    import jax.numpy as jnp

    def mv(v):
        out = jnp.asarray(matvec(v), dtype=jnp.float64).reshape(-1)
        if out.shape != (dim,):
            raise _matvec_error(caller, dim, f"shape {out.shape}")
        return out

    return mv


def _matvec_error(caller: str, dim: int, got: str) -> InvalidParameterError:
    return InvalidParameterError(f"The 'matvec' parameter of {caller} must return {dim} finite values. Got {got} instead.")


def _krylov_schur(mv, v0, k: int, m: int, tol: float, budget: int, largest: bool, caller: str):
    """The k largest (or smallest) eigenpairs of a symmetric operator by the Krylov-Schur method
    (Stewart 2002; for symmetric operators the thick-restart Lanczos of Wu & Simon 2000): up to m
    Lanczos vectors with full reorthogonalisation; when they are used up, a restart keeps the
    k + (m − k) // 2 wanted Ritz vectors and the residual direction.  After every step the Ritz
    estimates |β s_n,i| of the wanted pairs are checked against tol · max|θ|; it stops there, when
    the Krylov space is exhausted, or after ``budget`` steps.
    Returns (θ (<= k,), U (<= k, d) on the device, steps)."""
    import jax.numpy as jnp

    f = _ks_fns()
    V = jnp.zeros((m + 1, v0.shape[0]), dtype=jnp.float64).at[0].set(v0 / jnp.linalg.norm(v0))
    T = np.zeros((m + 1, m))
    keep = k + (m - k) // 2  # Ritz vectors kept at a restart
    start, steps, size = 0, 0, 0.0
    while True:
        for j in range(start, m):
            V, h, b = f["extend"](V, mv(V[j]), j, 1e-14 * size)
            h, b, steps = np.asarray(h), float(b), steps + 1
            if not np.isfinite(b):
                raise _matvec_error(caller, v0.shape[0], "non-finite values")
            T[: j + 1, j], T[j + 1, j] = h[: j + 1], b
            size = max(size, abs(h[j]), b)
            Tn = np.triu(T[: j + 1, : j + 1])
            theta, S = np.linalg.eigh(Tn + np.triu(Tn, 1).T)
            if largest:
                theta, S = theta[::-1], S[:, ::-1]
            scale = max(np.abs(theta).max(), np.finfo(float).tiny)
            ok = j + 1 >= k and bool(np.all(np.abs(b * S[j, :k]) <= tol * scale))
            if ok or b <= 1e-14 * scale or steps >= budget or (j == m - 1 and keep >= m):
                Y = np.zeros((m, min(k, j + 1)))
                Y[: j + 1] = S[:, : Y.shape[1]]
                return theta[: Y.shape[1]], f["ritz"](V, jnp.asarray(Y)), steps
        V = f["restart"](V, jnp.asarray(S[:, :keep]))
        # the kept vectors' coupling to the residual direction, β s_m,i, comes back as the
        # upper-triangle entries of column `keep` at the next step (only triu(T) is used)
        T[:] = 0.0
        T[:keep, :keep] = np.diag(theta[:keep])
        start = keep


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
    """The ``k`` largest or smallest eigenpairs of a symmetric operator by restarted Lanczos with
    full reorthogonalisation (two passes of classical Gram-Schmidt; the Krylov-Schur restart of
    :func:`_krylov_schur` when ncv = max(2k + 1, 20) vectors are used up, so memory is bounded
    by ncv vectors of length d), started from a random vector drawn with the explicit JAX ``key``.
    The basis stays a JAX array on the default device (a GPU's memory when there is one);
    ``matvec`` receives JAX arrays and may return JAX or NumPy arrays.

    Stops when the Ritz residual estimates |β s_{n,i}| of the k wanted pairs are all below
    ``tol`` · max|θ| (relative to the spectral scale), after ``max_iter`` steps (default 300)
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
    max_iter = 300 if max_iter is None else positive_int(max_iter, "max_iter", caller)
    v = _start_vector(v0, key, dim, caller)
    ritz, vecs, res, steps = _restarted_lanczos(matvec, dim, k, v, tol, max_iter, which == "largest", caller)
    scale = max(np.abs(ritz).max(), np.finfo(float).tiny)
    ok = bool(len(ritz) == k and np.all(res <= max(tol, 1e-12) * scale * 10))
    return LanczosResult(ritz, vecs, res, ok, steps, steps + len(ritz))


def _restarted_lanczos(matvec, dim: int, k: int, v0: np.ndarray, tol: float, max_iter: int, largest: bool,
                       caller: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """:func:`_krylov_schur` with ncv = min(d, max(2k + 1, 20)) on ``matvec``, in float64 on the
    device: (Ritz values, unit Ritz vectors (d, <= k) copied to the host once, their exact
    residuals ‖Au − θu‖, Lanczos steps)."""
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):
        mv = _device_matvec(matvec, dim, caller)
        ritz, U, steps = _krylov_schur(mv, jnp.asarray(v0), k, min(dim, max(2 * k + 1, 20)), tol, max_iter, largest,
                                       caller)
        U = U / jnp.linalg.norm(U, axis=1, keepdims=True)
        res = np.asarray(_ks_fns()["residuals"](jnp.stack([mv(u) for u in U]), U, jnp.asarray(ritz)))
        if not np.all(np.isfinite(res)):
            raise _matvec_error(caller, dim, "non-finite values")
        return ritz, np.asarray(U).T.copy(), res, steps


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


# ------------------------------------------------------------ stochastic trace and density

#: probe distributions of the stochastic estimators: Rademacher (±1 entries), standard normal,
#: or the columns of a random orthogonal matrix scaled by √d (k <= d probes; with k = d the
#: estimates are exact: the probes span the space)
PROBES = ("rademacher", "gaussian", "orthogonal")


def probe_vectors(key, dim: int, n: int, distribution: str = "rademacher") -> np.ndarray:
    """``n`` probe vectors (n, d) with E[v vᵀ] = I, drawn with the explicit ``key``.

    Rademacher and Gaussian probe i depends only on ``fold_in(key, i)``, so a probe is the same
    whatever the number drawn with it; orthogonal probes are drawn jointly (QR of a Gaussian
    d x n matrix)."""
    import jax

    with jax.enable_x64(True):
        if distribution == "orthogonal":
            G = np.asarray(jax.random.normal(key, (dim, n), dtype="float64"))
            Q, R = np.linalg.qr(G)
            return (Q * np.sign(np.diag(R))).T * np.sqrt(dim)
        draw = jax.random.rademacher if distribution == "rademacher" else jax.random.normal
        return np.stack([np.asarray(draw(jax.random.fold_in(key, i), (dim,), dtype="float64")) for i in range(n)])


def _checked_matvec(matvec: Callable, dim: int, caller: str) -> Callable:
    def mv(v: np.ndarray) -> np.ndarray:
        out = np.asarray(matvec(v), dtype=np.float64).reshape(-1)
        if out.shape != (dim,) or not np.all(np.isfinite(out)):
            raise _matvec_error(caller, dim, "non-finite values" if out.shape == (dim,) else f"shape {out.shape}")
        return out

    return mv


def _stochastic_args(dim, probes, distribution, key, caller: str) -> tuple[int, int, str]:
    dim = positive_int(dim, "dim", caller)
    probes = positive_int(probes, "probes", caller)
    distribution = choice(distribution, "distribution", caller, PROBES)
    if distribution == "orthogonal" and probes > dim:
        raise fail("probes", caller, f"an int <= dim ({dim}) with orthogonal probes", probes)
    if key is None:
        raise fail("key", caller, "a JAX PRNG key", key)
    return dim, probes, distribution


@dataclass(frozen=True, repr=False)
class TraceResult(Record):
    """A stochastic trace estimate from :func:`trace_estimate`.

    Attributes:
        estimate: the estimate of tr(H).
        stderr: its standard error (from the spread of the per-probe samples; for Hutch++ of
            the residual part, the sketched part being exact given the sketch).
        samples: (k,) the per-probe samples whose mean (plus the sketched trace) is the estimate.
        method: "hutchinson" or "hutch++"; distribution: of the probes.
        matvecs: products used.
    """

    estimate: float
    stderr: float
    samples: np.ndarray
    method: str
    distribution: str
    matvecs: int

    @property
    def interval(self) -> tuple[float, float]:
        """estimate ± 1.96 standard errors (normal approximation)."""
        return self.estimate - 1.96 * self.stderr, self.estimate + 1.96 * self.stderr


def trace_estimate(matvec: Callable, dim: int, *, key, probes: int = 99, method: str = "hutch++",
                   distribution: str = "rademacher") -> TraceResult:
    """tr(H) from ``probes`` matrix-vector products: Hutchinson's estimator mean(vᵀHv), or
    Hutch++ (Meyer, Musco, Musco & Woodruff 2021): a third of the products sketch the top of the
    spectrum, Q = orth(H S), whose trace tr(QᵀHQ) is computed exactly (another third), and
    Hutchinson's estimator on the deflated (I − QQᵀ)H(I − QQᵀ) takes the last third.  Both are
    unbiased; Hutch++ has a far smaller error when a few eigenvalues dominate."""
    caller = "trace_estimate"
    method = choice(method, "method", caller, ("hutchinson", "hutch++"))
    dim, probes, distribution = _stochastic_args(dim, probes, distribution, key, caller)
    if method == "hutch++" and probes < 3:
        raise fail("probes", caller, "an int >= 3 with hutch++ (a third each: sketch, its trace, residual)", probes)
    import jax
    import jax.numpy as jnp

    with jax.enable_x64(True):  # probes and products stay on the device; only v·Hv reach the host
        mv = _device_matvec(matvec, dim, caller)
        if method == "hutchinson":
            s = np.array([float(v @ mv(v)) for v in jnp.asarray(probe_vectors(key, dim, probes, distribution))])
            exact = 0.0
        else:
            k = probes // 3
            S = jnp.asarray(probe_vectors(jax.random.fold_in(key, 0), dim, k, "rademacher"))
            Q, _ = jnp.linalg.qr(jnp.stack([mv(v) for v in S], axis=1))
            exact = float(sum(float(q @ mv(q)) for q in Q.T))
            G = jnp.asarray(probe_vectors(jax.random.fold_in(key, 1), dim, probes - 2 * k, distribution))
            G = G - (G @ Q) @ Q.T  # (I − QQᵀ) g
            s = np.array([float(g @ mv(g)) for g in G])
    if not (np.all(np.isfinite(s)) and np.isfinite(exact)):
        raise _matvec_error(caller, dim, "non-finite values")
    return TraceResult(exact + float(s.mean()), _stderr(s), s, method, distribution, probes)


def _stderr(s: np.ndarray) -> float:
    return float(s.std(ddof=1) / np.sqrt(len(s))) if len(s) > 1 else float("nan")


@dataclass(frozen=True, repr=False)
class DensityResult(Record):
    """A spectral density from :func:`spectral_density` (stochastic Lanczos quadrature).

    For each probe v, m Lanczos steps from v/‖v‖ give a quadrature rule: nodes θ_j (the Ritz
    values) and weights τ_j (the squared first components of the Ritz vectors), with
    Σ τ_j f(θ_j) = vᵀf(H)v/‖v‖² exactly for polynomials f of degree < 2m.  The density is the
    average over probes of Σ τ_j N(t; θ_j, σ²): it integrates to 1 (multiply by d for an
    eigenvalue count) and its moments estimate tr(Hᵖ)/d.

    Attributes:
        grid, density: (n,) where the density is evaluated, and its values.
        nodes, weights: (probes, m) the quadrature rules (NaN-padded where a probe's Krylov
            space was exhausted before m steps, weight 0).
        moments, moments_stderr: (5,) estimates of tr(Hᵖ)/d for p = 0..4 from the quadrature
            (not the broadened density) and their standard errors over probes.
        sigma: the Gaussian broadening; lanczos_steps, probes, matvecs, distribution.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    moments: np.ndarray
    moments_stderr: np.ndarray
    sigma: float
    lanczos_steps: int
    probes: int
    matvecs: int
    distribution: str

    def fraction_above(self, x: float) -> tuple[float, float]:
        """The estimated fraction of eigenvalues above ``x`` and its standard error over probes.
        A count is not a polynomial of H: the estimate is exact only where the Ritz values are
        eigenvalues (the extreme, well-separated ones converge first; steps = d makes it exact),
        and smeared over the unresolved bulk otherwise."""
        w = np.where(np.nan_to_num(self.nodes, nan=-np.inf) > x, self.weights, 0.0).sum(axis=1)
        return float(w.mean()), _stderr(w)

    def to_xarray(self):
        import xarray as xr

        return xr.Dataset(
            {"density": ("eigenvalue", self.density), "nodes": (("probe", "node"), self.nodes),
             "weights": (("probe", "node"), self.weights), "moments": ("power", self.moments),
             "moments_stderr": ("power", self.moments_stderr)},
            coords={"eigenvalue": self.grid, "power": np.arange(len(self.moments))},
            attrs={"sigma": self.sigma, "lanczos_steps": self.lanczos_steps, "probes": self.probes,
                   "matvecs": self.matvecs, "distribution": self.distribution,
                   "definition": "stochastic Lanczos quadrature; density integrates to 1 (x d = eigenvalue count)"})


def _quadrature(mv, v, m: int, caller: str) -> tuple[np.ndarray, np.ndarray, int]:
    """Nodes and weights of m Lanczos steps from v (full reorthogonalisation, the basis on the
    device); fewer where the Krylov space is exhausted.  Returns (nodes, weights, matvecs)."""
    import jax.numpy as jnp

    extend = _ks_fns()["extend"]
    V = jnp.zeros((m + 1, v.shape[0]), dtype=jnp.float64).at[0].set(v / jnp.linalg.norm(v))
    alpha, beta = [], []
    for j in range(m):
        V, h, b = extend(V, mv(V[j]), j, 0.0)
        a, b = float(h[j]), float(b)
        if not np.isfinite(b):
            raise _matvec_error(caller, v.shape[0], "non-finite values")
        alpha.append(a)
        scale = max(max(abs(x) for x in alpha), np.finfo(float).tiny)
        if j == m - 1 or b <= 1e-12 * scale:
            break
        beta.append(b)
    T = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
    theta, S = np.linalg.eigh(T)
    return theta, S[0] ** 2, len(alpha)


def spectral_density(matvec: Callable, dim: int, *, key, probes: int = 10, lanczos_steps: int = 80,
                     grid: int | np.ndarray = 1000, sigma: float | None = None,
                     distribution: str = "rademacher") -> DensityResult:
    """The eigenvalue density of a symmetric operator by stochastic Lanczos quadrature (as
    PyHessian does), from ``probes`` random probes of ``lanczos_steps`` Lanczos steps each
    (probes x steps matrix-vector products; memory steps x d).

    Other arguments (keyword-only):
        key: explicit JAX PRNG key of the probes.
        grid: an int n (n points over the nodes' range widened by 5σ, default 1000) or the
            points themselves.
        sigma: the Gaussian broadening (default: 1 % of the nodes' range).
        distribution: "rademacher" (default), "gaussian" or "orthogonal" (see
            :func:`probe_vectors`; with probes = d orthogonal probes the moments are exact).
    """
    caller = "spectral_density"
    dim, probes, distribution = _stochastic_args(dim, probes, distribution, key, caller)
    m = min(positive_int(lanczos_steps, "lanczos_steps", caller), dim)
    if sigma is not None:
        sigma = finite_float(sigma, "sigma", caller, low=0.0)
    import jax

    nodes = np.full((probes, m), np.nan)
    weights = np.zeros((probes, m))
    n_mv = 0
    with jax.enable_x64(True):
        mv = _device_matvec(matvec, dim, caller)
        for i, v in enumerate(probe_vectors(key, dim, probes, distribution)):
            th, w, used = _quadrature(mv, jax.numpy.asarray(v), m, caller)
            nodes[i, : th.size], weights[i, : th.size] = th, w
            n_mv += used
    fin = np.isfinite(nodes)
    lo, hi = float(nodes[fin].min()), float(nodes[fin].max())
    if sigma is None:
        sigma = max(0.01 * (hi - lo), 1e-12 * max(abs(lo), abs(hi), 1e-300))
    grid = _density_grid(grid, lo, hi, sigma, caller)
    z = (grid[None, None, :] - np.nan_to_num(nodes)[:, :, None]) / sigma
    dens = (weights[:, :, None] * np.exp(-0.5 * z * z)).sum(axis=(0, 1)) / (probes * sigma * np.sqrt(2 * np.pi))
    pw = np.stack([(weights * np.nan_to_num(nodes) ** p).sum(axis=1) for p in range(5)], axis=1)
    return DensityResult(grid, dens, nodes, weights, pw.mean(axis=0),
                         np.array([_stderr(pw[:, p]) for p in range(5)]), float(sigma), m, probes, n_mv, distribution)


def _density_grid(grid, lo: float, hi: float, sigma: float, caller: str) -> np.ndarray:
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        return np.linspace(lo - 5 * sigma, hi + 5 * sigma, positive_int(grid, "grid", caller, minimum=2))
    g = np.asarray(grid, dtype=np.float64).reshape(-1)
    if g.size < 2 or not np.all(np.isfinite(g)) or np.any(np.diff(g) <= 0):
        raise fail("grid", caller, "an int >= 2 or increasing finite points", grid)
    return g


# ------------------------------------------------------------ the top of a large spectrum


@dataclass(frozen=True, repr=False)
class TopResult(Record):
    """The largest eigenvalues from :func:`top_eigenvalues`.

    Attributes:
        eigenvalues: (k,) descending.  eigenvectors: (d, k) unit vectors.
        residuals: (k,) ‖Hu − λu‖, recomputed exactly.
        converged: every residual <= max(tol, 1e-12) · 10 · max|λ|.
        complete: with ``above``: whether every eigenvalue above it was found (the smallest
            returned is below it, or k reached d); None without ``above``.
        matvecs: products used (the residual checks included); method: "eigsh" (ARPACK's
            implicitly restarted Lanczos: memory ncv x d, not iterations x d).
    """

    eigenvalues: np.ndarray
    eigenvectors: np.ndarray
    residuals: np.ndarray
    converged: bool
    complete: bool | None
    matvecs: int
    method: str


def top_eigenvalues(matvec: Callable, dim: int, k: int = 10, *, key, tol: float = 1e-10, above: float | None = None,
                    max_k: int = 256, method: str = "krylov-schur", max_iter: int | None = None) -> TopResult:
    """The ``k`` largest eigenvalues of a symmetric operator from products ``matvec(v)``, with
    memory bounded by a restart length ncv = max(2k + 1, 20) vectors of length d (160 MB at
    d = 10⁶, k = 10).

    ``method``: "krylov-schur" (default): the restarted Lanczos of :func:`lanczos`, whose basis
    stays a JAX array on the default device (a GPU's memory when there is one): ``matvec``
    receives JAX arrays, and only the small projected matrix reaches the host; "eigsh": ARPACK's
    implicitly restarted Lanczos (``scipy.sparse.linalg.eigsh``), whose vectors live in host
    memory.  Measured against each other in docs/performance.md.  The start vector is drawn with
    ``key``.  ``max_iter``: products allowed per solve (default 50 · ncv); a solve stopped there
    is reported through ``converged``, never silently.

    ``above``: find *all* eigenvalues above this value (e.g. 2/η, the central-flows practice):
    k is doubled until the smallest one found is below it, up to ``max_k``; ``complete`` says
    whether that happened."""
    import jax

    caller = "top_eigenvalues"
    dim = positive_int(dim, "dim", caller)
    k = positive_int(k, "k", caller)
    if k >= dim:
        raise fail("k", caller, f"an int < dim ({dim}) (use the dense Hessian for the whole spectrum)", k)
    tol = finite_float(tol, "tol", caller, low=0.0)
    if above is not None:
        above = finite_float(above, "above", caller)
    max_k = min(positive_int(max_k, "max_k", caller), dim - 1)
    method = choice(method, "method", caller, ("krylov-schur", "eigsh"))
    if max_iter is not None:
        max_iter = positive_int(max_iter, "max_iter", caller)
    v0 = _start_vector(None, key, dim, caller)
    used = 0
    with jax.enable_x64(True):
        while True:
            ncv = min(dim, max(2 * k + 1, 20))
            vals, vecs, res, n = (_top_ks if method == "krylov-schur" else _top_eigsh)(
                matvec, dim, k, v0, tol, 50 * ncv if max_iter is None else max_iter, ncv, caller)
            used += n
            if above is None or len(vals) < k or vals[-1] < above or k >= max_k:
                break
            k = min(2 * k, max_k)
    scale = max(np.abs(vals).max(initial=0.0), np.finfo(float).tiny)
    complete = None if above is None else bool(len(vals) == k and (vals[-1] < above or k >= dim - 1))
    ok = bool(len(vals) == k and np.all(res <= max(tol, 1e-12) * 10 * scale))
    return TopResult(vals, vecs, res, ok, complete, used, method)


def _top_eigsh(matvec, dim, k, v0, tol, max_iter, ncv, caller):
    """ARPACK through SciPy: (eigenvalues descending, eigenvectors (d, k), exact residuals,
    products).  A solve that runs out of iterations returns the pairs ARPACK has."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    mv = _checked_matvec(matvec, dim, caller)
    count = [0]

    def counted(v):
        count[0] += 1
        return mv(np.asarray(v, dtype=np.float64).reshape(-1))

    op = LinearOperator((dim, dim), matvec=counted, dtype=np.float64)
    try:  # ARPACK's maxiter counts restarts (each at most ncv products)
        vals, vecs = eigsh(op, k=k, which="LA", v0=v0, tol=tol, ncv=ncv, maxiter=max(1, max_iter // ncv))
    except ArpackNoConvergence as e:
        vals, vecs = e.eigenvalues, e.eigenvectors
    order = np.argsort(vals)[::-1]
    vals, vecs = vals[order], vecs[:, order]
    res = _exact_residuals(mv, vals, vecs)
    return vals, vecs, res, count[0] + len(vals)


def _top_ks(matvec, dim, k, v0, tol, max_iter, ncv, caller):
    """The Krylov-Schur solver of :func:`lanczos` (ncv is the same), basis on the device:
    (eigenvalues descending, eigenvectors (d, k), exact residuals, products)."""
    vals, vecs, res, steps = _restarted_lanczos(matvec, dim, k, v0, tol, max_iter, True, caller)
    return vals, vecs, res, steps + len(vals)
