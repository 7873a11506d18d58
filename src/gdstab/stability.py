"""The theory: which minima are stable at a step size, critical step sizes over the set of
minima M, the size of the weakly stable set M_WS, and the non-singularity of the GD map.

Two notions of stability of a minimum θ ∈ M at step size η (Hessian H = H_L(θ) ⪰ 0):

* **linearly stable**: the spectral radius of DG(θ) = I − ηH is ≤ 1, i.e. λ_max(H) ≤ 2/η.
  This is necessary for GD to converge to θ from a set of positive measure (Ahn, Zhang & Sra
  2022; the stable-manifold argument of the paper).
* **weakly stable** (the paper's Definition 16): the smallest *non-zero* eigenvalue satisfies
  λ_min⁺(H) ≤ 2/η.  Every linearly stable minimum is weakly stable, not conversely: when H has
  several non-zero eigenvalues a weakly stable minimum can still have λ_max > 2/η, an expanding
  direction of G.  The two coincide when H has one non-zero eigenvalue (e.g. ½(1 − xy)²).

Critical step sizes over M: the sharp η* = 2 / inf_M λ_max (beyond it no minimum is linearly
stable) and the paper's η_E = 2 / inf_M λ_min⁺ (beyond it M_WS is empty); η* ≤ η_E.
Eigenvalues are those of the loss as normalised by the problem (see its docstring).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._records import Record
from ._validation import InvalidParameterError, choice, fail, finite_float, positive_int
from .spectrum import DEFAULT_RANK_TOL, hessian, smallest_nonzero_eigenvalue
from .stats import relative_spread, wilson_interval

__all__ = [
    "MinimumStability",
    "minimum_stability",
    "CriticalStepSizes",
    "critical_step_sizes",
    "ArcLength",
    "weakly_stable_arc_length",
    "weakly_stable_fraction",
    "NonSingularity",
    "singular_set_fraction",
    "minimise_sharpness_on_minima",
    "walk_along_minima",
    "stability_summary",
    "companion_matrix",
    "spectral_radius",
    "rule_stability",
    "frozen_preconditioner_stability",
    "EstimatedCriticalStepSizes",
    "estimate_critical_step_sizes",
]


def _eigenvalues(problem, theta) -> np.ndarray:
    """Hessian eigenvalues at θ, ascending: the problem's closed form if it has one, else dense."""
    m = problem.minima
    if m is not None and m.hessian_eigenvalues is not None:
        import jax
        import jax.numpy as jnp

        with jax.enable_x64(True):
            return np.sort(np.asarray(m.hessian_eigenvalues(jnp.asarray(theta, dtype=jnp.float64)), dtype=np.float64))
    return np.linalg.eigvalsh(hessian(problem, theta))


def _curve_lambdas(problem, param, b: int, grid: np.ndarray, rank_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """λ_max and λ_min⁺ at the points param(s, b) for every s of ``grid`` (one vmapped call)."""
    import jax
    import jax.numpy as jnp

    m = problem.minima
    with jax.enable_x64(True):
        pts = jax.vmap(lambda s: param(s, b))(jnp.asarray(grid, dtype=jnp.float64))
        if m.hessian_eigenvalues is not None:
            ev = np.sort(np.asarray(jax.vmap(m.hessian_eigenvalues)(pts), dtype=np.float64), axis=1)
        else:
            H = np.asarray(jax.vmap(jax.hessian(problem.loss))(pts), dtype=np.float64)
            ev = np.linalg.eigvalsh(0.5 * (H + np.transpose(H, (0, 2, 1))))
    lmax = ev[:, -1]
    scale = np.abs(ev).max(axis=1, keepdims=True)
    nz = np.where(np.abs(ev) > rank_tol * scale, np.abs(ev), np.inf)
    lmin = np.take_along_axis(ev, np.argmin(nz, axis=1)[:, None], axis=1)[:, 0]
    lmin = np.where(np.isinf(nz.min(axis=1)), np.inf, lmin)
    return lmax, lmin


@dataclass(frozen=True, repr=False)
class MinimumStability(Record):
    """Stability verdicts of one minimum at one step size (see the module docstring)."""

    eta: float
    eigenvalues: np.ndarray  # ascending
    lambda_max: float
    lambda_min_pos: float
    n_zero: int
    spectral_radius: float  # of I - eta H
    threshold: float  # 2 / eta
    linearly_stable: bool
    weakly_stable: bool

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["eigenvalues"] = [float(v) for v in self.eigenvalues]
        return d


def minimum_stability(
    problem,
    theta,
    eta: float,
    *,
    rank_tol: float = DEFAULT_RANK_TOL,
    g_tol: float = 1e-6,
    f_tol: float = 1e-8,
) -> MinimumStability:
    """Linear and weak stability of the minimum ``theta`` at step size ``eta``.

    ``theta`` must be a minimum: ‖∇L‖ <= g_tol, L − L* <= f_tol where L* is known, and no
    eigenvalue below −rank_tol · max|λ| (otherwise a clear error says which test failed).
    The Hessian is the dense autodiff Hessian (the closed forms are used in tests only)."""
    import jax
    import jax.numpy as jnp

    caller = "minimum_stability"
    eta = finite_float(eta, "eta", caller, low=0.0)
    th = np.asarray(theta, dtype=np.float64).reshape(-1)
    if th.shape != (problem.dim,) or not np.all(np.isfinite(th)):
        raise fail("theta", caller, f"{problem.dim} finite floats", theta)
    with jax.enable_x64(True):
        loss, g = jax.value_and_grad(problem.loss)(jnp.asarray(th))
    gn = float(jnp.linalg.norm(g))
    if not gn <= g_tol:
        raise InvalidParameterError(
            f"The 'theta' parameter of {caller} must be a minimum of {problem.name}: |grad L| = {gn:.3g} > g_tol = {g_tol:g}."
        )
    if problem.min_value is not None and not float(loss) - problem.min_value <= f_tol:
        raise InvalidParameterError(
            f"The 'theta' parameter of {caller} must be a global minimum of {problem.name}: "
            f"L - L* = {float(loss) - problem.min_value:.3g} > f_tol = {f_tol:g}."
        )
    ev = np.linalg.eigvalsh(hessian(problem, th))
    scale = max(float(np.abs(ev).max()), np.finfo(float).tiny)
    if ev[0] < -rank_tol * scale:
        raise InvalidParameterError(
            f"The 'theta' parameter of {caller} must be a minimum of {problem.name}: the Hessian has the "
            f"negative eigenvalue {ev[0]:.3g}."
        )
    nz = smallest_nonzero_eigenvalue(ev, rank_tol=rank_tol)
    rho = float(np.max(np.abs(1.0 - eta * ev)))
    thr = 2.0 / eta
    return MinimumStability(
        eta=eta,
        eigenvalues=ev,
        lambda_max=float(ev[-1]),
        lambda_min_pos=nz.value,
        n_zero=nz.n_zero,
        spectral_radius=rho,
        threshold=thr,
        linearly_stable=bool(ev[-1] <= thr),
        weakly_stable=bool(nz.value <= thr) if np.isfinite(nz.value) else True,
    )


# ------------------------------------------------------------------------ critical step sizes


@dataclass(frozen=True, repr=False)
class CriticalStepSizes(Record):
    """η* = 2 / inf_M λ_max and η_E = 2 / inf_M λ_min⁺, with the minimisers found.

    ``curvature_scale`` is the largest eigenvalue modulus met at the points of M searched
    that lie in the problem's initialisation box (all points searched, for a problem without a
    box): the curvature the problem works at.  An infimum at or below ``rank_tol`` ·
    ``curvature_scale`` is reported as 0 (the Hessian vanishes there, or its non-zero
    eigenvalues tend to 0 along M), so that its step size is ∞, and ``note`` says so.
    ``refine_spread`` (method "sampled"): the relative spread of the local refinements started
    from the best few samples, for λ_max and λ_min⁺ (NaN where there was none to compare): when
    the refinements end apart, the smallest is only an upper bound of the infimum, and ``note``
    says so."""

    eta_star: float
    eta_E: float
    inf_lambda_max: float
    inf_lambda_min_pos: float
    argmin_lambda_max: np.ndarray
    argmin_lambda_min_pos: np.ndarray
    method: str
    evaluations: int
    curvature_scale: float = math.nan
    note: str = ""
    refine_spread: tuple[float, float] = (math.nan, math.nan)

    def to_dict(self) -> dict[str, Any]:
        d = dict(self.__dict__)
        d["refine_spread"] = [None if not math.isfinite(v) else float(v) for v in self.refine_spread]
        d["argmin_lambda_max"] = [float(v) for v in self.argmin_lambda_max]
        d["argmin_lambda_min_pos"] = [float(v) for v in self.argmin_lambda_min_pos]
        return d


def critical_step_sizes(problem, *, key, n_samples: int = 2000, rank_tol: float = DEFAULT_RANK_TOL) -> CriticalStepSizes:
    """Infima of λ_max and λ_min⁺ over M from M's description.

    With a parametrised one-dimensional M (``minima.curve``): a grid over each branch's
    parameter, then bounded scalar minimisation around the best grid point (method "curve").
    Otherwise: ``n_samples`` points from ``minima.sample`` (explicit ``key``), then local
    refinement on M from the best samples: Nelder–Mead on the projected point ``minima.project(θ)``
    in up to 3 dimensions, projected gradient descent (:func:`minimise_sharpness_on_minima`)
    above (method "sampled").
    Eigenvalues come from the closed form where the problem has one, else the dense Hessian."""
    m = problem.minima
    if m is None or (m.sample is None and m.curve is None):
        raise InvalidParameterError(
            f"critical_step_sizes needs a description of the minima of {problem.name!r} (a sampler or a curve); "
            "this problem has none."
        )
    n_samples = positive_int(n_samples, "n_samples", "critical_step_sizes")
    ev = _SpectrumOnM(problem, rank_tol)
    spread = (math.nan, math.nan)
    if m.curve is not None:
        best, method = _infima_on_curve(problem, ev), "curve"
    else:
        (best, spread), method = _infima_sampled(problem, ev, key, n_samples), "sampled"
    lmax, lmin = best[0][0], best[1][0]
    # the relative rank cut of each Hessian cannot see a Hessian that vanishes as a whole:
    # against the curvature met on M, eigenvalues below rank_tol times it are zero
    floor = rank_tol * ev.scale
    notes = [f"the local refinements of inf {name} from the best samples end {100 * v:.2g} % apart: the value is "
             f"an upper bound of the infimum (eta{'*' if i == 0 else '_E'} a lower bound)"
             for i, (name, v) in enumerate(zip(("lambda_max", "lambda_min+"), spread)) if v > REFINE_AGREE]
    if lmax <= floor:
        lmax = 0.0
        notes.append("inf lambda_max is 0 (the Hessian vanishes on M)")
    if lmin <= floor:
        notes.append(f"inf lambda_min+ is 0: the non-zero eigenvalues tend to 0 along M (found {lmin:.3g} <= "
                     f"rank_tol x largest curvature on M = {floor:.3g})" if np.isfinite(lmin) and lmin > 0
                     else "inf lambda_min+ is 0")
        lmin = 0.0
    return CriticalStepSizes(
        eta_star=2.0 / lmax if lmax > 0 else math.inf,
        eta_E=2.0 / lmin if lmin > 0 else math.inf,
        inf_lambda_max=lmax,
        inf_lambda_min_pos=lmin,
        argmin_lambda_max=best[0][1],
        argmin_lambda_min_pos=best[1][1],
        method=method,
        evaluations=ev.evals,
        curvature_scale=ev.scale,
        note="; ".join(notes),
        refine_spread=spread,
    )


class _SpectrumOnM:
    """λ_max and λ_min⁺ at points of M, counting evaluations and keeping the largest |eigenvalue|
    met inside the problem's box (the curvature scale that decides what counts as zero)."""

    def __init__(self, problem, rank_tol: float):
        self.problem, self.rank_tol = problem, rank_tol
        self.evals, self.scale = 0, 0.0
        self.box = None if problem.box is None else np.asarray(problem.box, dtype=np.float64)

    def inside(self, points) -> np.ndarray:
        pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
        if self.box is None:
            return np.ones(pts.shape[0], bool)
        return np.all((pts >= self.box[:, 0]) & (pts <= self.box[:, 1]), axis=1)

    def __call__(self, theta) -> tuple[float, float]:
        self.evals += 1
        ev = _eigenvalues(self.problem, theta)
        if ev.size and self.inside(theta)[0]:
            self.scale = max(self.scale, float(np.abs(ev).max()))
        nz = smallest_nonzero_eigenvalue(ev, rank_tol=self.rank_tol).value
        return float(ev[-1]), float(nz) if np.isfinite(nz) else np.inf


def _infima_on_curve(problem, lam: _SpectrumOnM) -> dict:
    """A grid over each branch's parameter, then bounded scalar minimisation around the best grid
    point; returns {0: (inf λ_max, argmin), 1: (inf λ_min⁺, argmin)}."""
    import jax
    from scipy.optimize import minimize_scalar

    best = {0: (np.inf, None), 1: (np.inf, None)}
    nb, param, (lo, hi) = problem.minima.curve
    lo, hi = max(lo, -20.0), min(hi, 20.0)
    grid = np.linspace(lo, hi, 4001)
    for b in range(nb):
        vals = np.stack(_curve_lambdas(problem, param, b, grid, lam.rank_tol), axis=1)
        lam.evals += grid.size
        with jax.enable_x64(True):
            on_box = lam.inside(np.asarray(jax.vmap(lambda t: param(t, b))(grid)))
        if on_box.any():
            lam.scale = max(lam.scale, float(np.nanmax(np.abs(vals[on_box, 0]))))
        for which in (0, 1):
            i = int(np.argmin(vals[:, which]))
            a, c = grid[max(i - 1, 0)], grid[min(i + 1, grid.size - 1)]
            with jax.enable_x64(True):
                r = minimize_scalar(lambda s: lam(np.asarray(param(s, b)))[which], bounds=(a, c),
                                    method="bounded", options={"xatol": 1e-12})
                cand = (float(r.fun), np.asarray(param(r.x, b)))
                if vals[i, which] < cand[0]:
                    cand = (float(vals[i, which]), np.asarray(param(grid[i], b)))
            if cand[0] < best[which][0]:
                best[which] = cand
    return best


def _infima_sampled(problem, lam: _SpectrumOnM, key, n_samples: int) -> tuple[dict, tuple[float, float]]:
    """``n_samples`` minima from the sampler, then local refinement on M from the best few:
    Nelder–Mead on the projected point up to 3 dimensions (from the best 3), projected gradient
    descent above (from the best 4).  Returns the infima found and, per eigenvalue, the relative
    spread of the refinements (NaN when there was none to compare)."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    m = problem.minima
    best = {0: (np.inf, None), 1: (np.inf, None)}
    spread = [math.nan, math.nan]
    with jax.enable_x64(True):
        pts = np.asarray(m.sample(key, n_samples), dtype=np.float64)
    vals = np.array([lam(p) for p in pts])
    for which in (0, 1):
        i = int(np.argmin(vals[:, which]))
        best[which] = (float(vals[i, which]), pts[i])
        if m.project is None or problem.dim == 0:
            continue
        if problem.dim > 3:  # projected gradient descent from the best few samples
            order = np.argsort(vals[:, which])[:4]
            v, th, per_start, ne = minimise_sharpness_on_minima(
                problem, pts[order], which=("max", "min_pos")[which], rank_tol=lam.rank_tol
            )
            lam.evals += ne
            if v < best[which][0]:
                best[which] = (float(v), np.asarray(th))
            spread[which] = relative_spread(per_start)
            continue

        proj = jax.jit(m.project)

        def f(x, which=which):
            with jax.enable_x64(True):
                q = np.asarray(proj(jnp.asarray(x, dtype=jnp.float64)), dtype=np.float64)
            return lam(q)[which]

        ends = []
        for j in np.argsort(vals[:, which])[:3]:
            r = minimize(f, pts[j], method="Nelder-Mead", options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000})
            ends.append(float(r.fun))
            if r.fun < best[which][0]:
                with jax.enable_x64(True):
                    best[which] = (float(r.fun), np.asarray(m.project(jnp.asarray(r.x)), dtype=np.float64))
        spread[which] = relative_spread(ends)
    return best, (spread[0], spread[1])


#: local refinements within this relative spread agree
REFINE_AGREE = 1e-6


def _soft_max(ev: np.ndarray, t: float) -> tuple[float, np.ndarray]:
    """t·log Σ exp(λ_i / t) (a smooth upper bound of max λ_i, within t·log k) and its weights."""
    z = np.exp((ev - ev.max()) / t)
    s = z.sum()
    return float(ev.max() + t * np.log(s)), z / s


def _minimise_lambda_max(problem, starts, *, iters: int, rtol: float):
    """inf over M of λ_max by continuation on a smoothed maximum.

    λ_max is not differentiable where the top eigenvalue is multiple, and at the infimum it
    usually is (the optimiser pushes several eigenvalues to the same top): plain gradient steps
    on λ_max stall there, at values that depend on the start.  Instead minimise the smooth
    f_t = t·log Σ exp(λ_i/t) ≥ λ_max (error ≤ t·log k) for t = 0.1·λ, 0.01·λ, … down to
    rtol·λ, each stage by projected gradient descent with Armijo backtracking: the gradient
    Σ w_i ∇(v_iᵀ K v_i) (exact for the spectral function f_t, multiplicities included) is
    projected onto the tangent space ker DF when the defining equations are known, the step
    is followed by the projection onto M.  K is ``minima.curvature`` (a small matrix with the
    Hessian's non-zero spectrum) when the problem has one, else the dense Hessian.  Up to
    :data:`POLISH_MAX_DIM` parameters, when the starts end more than :data:`POLISH_WHEN` apart
    (or there is only one), each start's result is then polished (:func:`_polish`)."""
    import jax
    import jax.numpy as jnp

    m = problem.minima
    with jax.enable_x64(True):
        if m.curvature is not None:
            K = jax.jit(m.curvature)
            grad_quad = jax.jit(jax.grad(lambda th, W: jnp.sum(m.curvature(th) * W)))
        else:
            K = jax.jit(jax.hessian(problem.loss))
            g = jax.grad(problem.loss)
            hvp = lambda th, v: jax.jvp(g, (th,), (v,))[1]  # noqa: E731
            # ∇_θ Σ_i w_i v_iᵀ H(θ) v_i for the eigenvectors with non-negligible weight
            grad_quad_v = jax.jit(jax.grad(lambda th, V, w: jnp.sum(w * jax.vmap(lambda v: v @ hvp(th, v))(V))))

            def grad_quad(th, W):  # W given as (V, w)
                return grad_quad_v(th, *W)
        proj = jax.jit(m.project)
        jac_F = jax.jit(jax.jacfwd(m.equations)) if m.equations is not None else None

        def spectrum(th):
            k = np.asarray(K(jnp.asarray(th)))
            return np.linalg.eigh(0.5 * (k + k.T))

        evals = 0
        results = []
        for th0 in starts:
            th = np.asarray(proj(jnp.asarray(th0, dtype=jnp.float64)))
            ev, V = spectrum(th)
            evals += 1
            lam_top = float(ev[-1])
            best = (lam_top, th)
            t = 0.1 * lam_top
            alpha = 1.0 / max(lam_top, 1e-12) ** 2
            while True:
                f, w = _soft_max(ev, t)
                for _ in range(iters):
                    keep = w > 1e-12
                    if m.curvature is not None:
                        W = (V[:, keep] * w[keep]) @ V[:, keep].T
                    else:
                        W = (jnp.asarray(V[:, keep].T), jnp.asarray(w[keep]))
                    gr = np.asarray(grad_quad(jnp.asarray(th), W))
                    if jac_F is not None:  # tangent component: g − Jᵀ (J Jᵀ)⁺ J g
                        J = np.asarray(jac_F(jnp.asarray(th)))
                        gr = gr - J.T @ np.linalg.lstsq(J @ J.T, J @ gr, rcond=None)[0]
                    gn2 = float(gr @ gr)
                    if gn2 == 0 or not np.isfinite(gn2):
                        break
                    for _ in range(50):  # Armijo backtracking
                        cand = np.asarray(proj(jnp.asarray(th - alpha * gr)))
                        ev2, V2 = spectrum(cand)
                        evals += 1
                        f2, w2 = _soft_max(ev2, t)
                        if np.isfinite(f2) and f2 <= f - 1e-4 * alpha * gn2:
                            break
                        alpha *= 0.5
                    else:
                        break
                    gain = f - f2
                    th, ev, V, f, w = cand, ev2, V2, f2, w2
                    if ev[-1] < best[0]:
                        best = (float(ev[-1]), th)
                    alpha *= 2.0
                    if gain <= 1e-3 * t:  # this stage has converged to its resolution
                        break
                if t <= rtol * best[0]:
                    break
                t *= 0.1
            results.append(best)
        if problem.dim <= POLISH_MAX_DIM:
            results, n = _polish_if_apart(results, lambda q: float(spectrum(q)[0][-1]),
                                          lambda x: np.asarray(proj(jnp.asarray(x, dtype=jnp.float64))))
            evals += n
    bestall = min(results, key=lambda r: r[0])
    return bestall[0], bestall[1], [r[0] for r in results], evals


#: problems up to this dimension get the derivative-free polish of inf_M λ_max, when the
#: continuation's starts end more than POLISH_WHEN apart (relative) or there is one start
POLISH_MAX_DIM = 64
POLISH_WHEN = 1e-9


def _polish_if_apart(results: list, lam_max, project) -> tuple[list, int]:
    """The continuation stalls at start-dependent values (ill-conditioned problems): polish every
    start's result when the starts end more than POLISH_WHEN apart, or when a single start gives
    no such evidence; returns the results and the evaluations used."""
    if relative_spread([r[0] for r in results]) <= POLISH_WHEN:
        return results, 0
    out, evals = [], 0
    for r in results:
        polished, n = _polish(lam_max, project, r)
        out.append(polished)
        evals += n
    return out, evals


def _polish(lam_max, project, best: tuple[float, np.ndarray]) -> tuple[tuple[float, np.ndarray], int]:
    """Nelder–Mead on x ↦ λ_max(project(x)) from the continuation's result, restarted once from
    its own end.  On ill-conditioned problems (data with cond(XXᵀ) ~ 10³) projected gradient
    steps zig-zag and stop short of the infimum, at values that differ from start to start;
    the simplex needs no gradient, so the non-smooth maximum at the infimum does not stall it.
    Returns the better of the two (the polish never makes the result worse), as (value, point
    on M), and the evaluations it used."""
    from scipy.optimize import minimize

    def fun(x):
        return lam_max(project(x))

    x = np.asarray(best[1], dtype=np.float64)
    n = 0
    for _ in range(2):
        r = minimize(fun, x, method="Nelder-Mead",
                     options={"maxfev": 400 * x.size, "maxiter": 400 * x.size, "xatol": 1e-9, "fatol": 1e-13 * abs(best[0]),
                              "adaptive": True})
        n += int(r.nfev)
        x = r.x
        if np.isfinite(r.fun) and r.fun < best[0]:
            best = (float(r.fun), project(r.x))
    return best, n


def minimise_sharpness_on_minima(problem, starts, *, which: str = "max", iters: int = 200, rtol: float = 1e-12,
                                 rank_tol: float = DEFAULT_RANK_TOL):
    """Local minimisation over M of λ_max (``which="max"``) or λ_min⁺ (``"min_pos"``) from each
    start.  λ_max: continuation on a smoothed maximum by projected gradient descent, then a
    Nelder–Mead polish up to 64 parameters (:func:`_minimise_lambda_max`).  λ_min⁺: projected
    gradient descent: θ ← project(θ − α ∇λ(θ)) with
    ∇λ = ∇_θ (vᵀ H(θ) v) for the eigenvector v of that eigenvalue (exact where it is simple),
    α halved until λ decreases and doubled after a success; stops when a step gains less than
    ``rtol`` relative.  Returns (best value, best point, values per start, evaluations).
    Needs ``minima.project``."""
    import jax
    import jax.numpy as jnp

    m = problem.minima
    if m is None or m.project is None:
        raise InvalidParameterError(f"minimise_sharpness_on_minima needs a projection onto the minima of {problem.name!r}.")
    choice(which, "which", "minimise_sharpness_on_minima", ("max", "min_pos"))
    if which == "max":
        return _minimise_lambda_max(problem, starts, iters=iters, rtol=rtol)
    with jax.enable_x64(True):
        grad = jax.grad(problem.loss)
        H = jax.jit(jax.hessian(problem.loss))
        curv = jax.jit(jax.grad(lambda th, v: jnp.dot(jax.jvp(grad, (th,), (v,))[1], v)))
        proj = jax.jit(m.project)

        def top(th):
            h = np.asarray(H(th))
            ev, V = np.linalg.eigh(0.5 * (h + h.T))
            if which == "max":
                return float(ev[-1]), V[:, -1]
            scale = max(float(np.abs(ev).max()), np.finfo(float).tiny)
            idx = np.flatnonzero(np.abs(ev) > rank_tol * scale)
            if idx.size == 0:
                return float("inf"), V[:, -1]
            i = idx[np.argmin(np.abs(ev[idx]))]
            return float(ev[i]), V[:, i]

        evals = 0
        results = []
        for th0 in starts:
            th = np.asarray(proj(jnp.asarray(th0, dtype=jnp.float64)))
            lam, v = top(th)
            evals += 1
            alpha = 0.1 / max(lam, 1e-12)
            for _ in range(iters):
                g = np.asarray(curv(jnp.asarray(th), jnp.asarray(v)))
                gn = np.linalg.norm(g)
                if gn == 0 or not np.isfinite(gn):
                    break
                improved = False
                for _ in range(40):
                    cand = np.asarray(proj(jnp.asarray(th - alpha * g)))
                    l2, v2 = top(cand)
                    evals += 1
                    if np.isfinite(l2) and l2 < lam:
                        improved = True
                        break
                    alpha *= 0.5
                if not improved:
                    break
                done = lam - l2 <= rtol * lam
                th, lam, v = cand, l2, v2
                alpha *= 2.0
                if done:
                    break
            results.append((lam, th))
    best = min(results, key=lambda r: r[0])
    return best[0], best[1], [r[0] for r in results], evals


def walk_along_minima(problem, path, ts, *, rank_tol: float = DEFAULT_RANK_TOL) -> list[dict[str, float]]:
    """λ_max and λ_min⁺ of the dense Hessian at θ(t) = ``path(t)`` for every t of ``ts``, with
    ‖θ(t)‖ and the residual L(θ(t)) − L* (to confirm the path stays on M)."""
    import jax
    import jax.numpy as jnp

    rows = []
    with jax.enable_x64(True):
        for t in ts:
            th = np.asarray(path(float(t)), dtype=np.float64)
            ev = np.linalg.eigvalsh(hessian(problem, th))
            nz = smallest_nonzero_eigenvalue(ev, rank_tol=rank_tol)
            loss = float(problem.loss(jnp.asarray(th)))
            rows.append({
                "t": float(t),
                "norm_theta": float(np.linalg.norm(th)),
                "loss_minus_min": loss - (problem.min_value or 0.0),
                "lambda_max": float(ev[-1]),
                "lambda_min_pos": nz.value,
                "n_zero": nz.n_zero,
            })
    return rows


# ---------------------------------------------------------------------------------- M_WS size


@dataclass(frozen=True, repr=False)
class ArcLength(Record):
    """Length of M_WS = {θ ∈ M : λ_min⁺(θ) ≤ 2/η} for a one-dimensional M."""

    eta: float
    total: float
    per_branch: tuple[float, ...]
    intervals: tuple[tuple[int, float, float], ...]  # (branch, s_start, s_end) of M_WS


def weakly_stable_arc_length(problem, eta: float, *, rank_tol: float = DEFAULT_RANK_TOL, quad_tol: float = 1e-11) -> ArcLength:
    """Exact arc length of M_WS for a parametrised one-dimensional M (``minima.curve``).

    On each branch the set {s : λ_min⁺(θ(s)) ≤ 2/η} is located on a grid, its end points are
    refined by Brent's method, and ∫ ‖θ'(s)‖ ds is computed over each interval by adaptive
    quadrature (``quad_tol`` absolute/relative)."""
    import jax
    import jax.numpy as jnp
    from scipy.integrate import quad
    from scipy.optimize import brentq

    eta = finite_float(eta, "eta", "weakly_stable_arc_length", low=0.0)
    m = problem.minima
    if m is None or m.curve is None:
        raise InvalidParameterError(
            f"weakly_stable_arc_length needs a one-dimensional parametrised set of minima; {problem.name!r} has none "
            "(use weakly_stable_fraction instead)."
        )
    nb, param, (lo, hi) = m.curve
    lo, hi = max(lo, -30.0), min(hi, 30.0)
    thr = 2.0 / eta
    with jax.enable_x64(True):
        speed = jax.jit(lambda s, b: jnp.linalg.norm(jax.jacfwd(lambda t: param(t, b))(s)), static_argnums=1)

        def g(s, b):
            v = smallest_nonzero_eigenvalue(_eigenvalues(problem, np.asarray(param(s, b))), rank_tol=rank_tol).value
            return (v if np.isfinite(v) else 0.0) - thr

        per, intervals = [], []
        grid = np.linspace(lo, hi, 4001)
        for b in range(nb):
            lmin = _curve_lambdas(problem, param, b, grid, rank_tol)[1]
            vals = np.where(np.isfinite(lmin), lmin, 0.0) - thr
            inside = vals <= 0
            total_b = 0.0
            i = 0
            while i < grid.size:
                if not inside[i]:
                    i += 1
                    continue
                j = i
                while j + 1 < grid.size and inside[j + 1]:
                    j += 1
                a = grid[i] if i == 0 else brentq(lambda s: g(s, b), grid[i - 1], grid[i], xtol=1e-14)
                c = grid[j] if j == grid.size - 1 else brentq(lambda s: g(s, b), grid[j], grid[j + 1], xtol=1e-14)
                length, _ = quad(lambda s: float(speed(s, b)), a, c, epsabs=quad_tol, epsrel=quad_tol, limit=200)
                total_b += length
                intervals.append((b, float(a), float(c)))
                i = j + 1
            per.append(total_b)
    return ArcLength(eta, float(sum(per)), tuple(per), tuple(intervals))


def weakly_stable_fraction(problem, eta: float, *, key, n_samples: int = 10_000, rank_tol: float = DEFAULT_RANK_TOL):
    """Fraction of minima drawn by ``minima.sample`` that are weakly stable at ``eta``, with its
    Wilson 95% interval ``(p, low, high)`` (a measure relative to the sampler's distribution)."""
    import jax

    eta = finite_float(eta, "eta", "weakly_stable_fraction", low=0.0)
    n_samples = positive_int(n_samples, "n_samples", "weakly_stable_fraction")
    m = problem.minima
    if m is None or m.sample is None:
        raise InvalidParameterError(f"weakly_stable_fraction needs a sampler of the minima of {problem.name!r}.")
    with jax.enable_x64(True):
        pts = np.asarray(m.sample(key, n_samples), dtype=np.float64)
    k = sum(
        1 for p in pts if smallest_nonzero_eigenvalue(_eigenvalues(problem, p), rank_tol=rank_tol).value <= 2.0 / eta
    )
    return wilson_interval(k, n_samples)


# ---------------------------------------------------------------------------- non-singularity


@dataclass(frozen=True, repr=False)
class NonSingularity(Record):
    """P(|det(I − ηH(θ))| < ε) for random θ, and the log-log slope of that fraction in ε
    (slope ≈ 1: the singular set {det = 0} has measure zero and simple zeros)."""

    eta: float
    eps: np.ndarray
    counts: np.ndarray
    n: int
    fraction: np.ndarray
    slope: float
    slope_stderr: float
    min_abs_det: float


def singular_set_fraction(problem, eta: float, eps, *, key, n: int = 100_000, box=None, batch: int = 4096) -> NonSingularity:
    """Draw ``n`` points uniformly in ``box`` (default: the problem's), compute det(I − ηH(θ))
    (dense Hessians, vmapped; sign and log-modulus by slogdet) and count |det| < ε for every ε.
    The slope is a least-squares fit of log(fraction) against log(ε) over the ε with a
    non-zero count; its standard error comes from the fit's residuals."""
    import jax
    import jax.numpy as jnp

    caller = "singular_set_fraction"
    eta = finite_float(eta, "eta", caller, low=0.0)
    n = positive_int(n, "n", caller)
    eps = np.asarray(eps, dtype=np.float64).reshape(-1)
    if eps.size == 0 or not np.all(np.isfinite(eps)) or np.any(eps <= 0):
        raise fail("eps", caller, "a non-empty list of finite floats > 0", eps.tolist())
    from .problems.base import parse_box

    box = problem.box if box is None else parse_box(box, problem.dim, caller=caller)
    with jax.enable_x64(True):
        pts = np.asarray(problem.init(key, n, box), dtype=np.float64)
        H = jax.jit(jax.vmap(jax.hessian(problem.loss)))
        logabs = np.empty(n)
        for s in range(0, n, batch):
            chunk = pts[s : s + batch]
            pad = batch - chunk.shape[0]
            if pad:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
            Hs = np.asarray(H(jnp.asarray(chunk)))[: min(batch, n - s)]
            M = np.eye(problem.dim)[None] - eta * 0.5 * (Hs + np.transpose(Hs, (0, 2, 1)))
            logabs[s : s + Hs.shape[0]] = np.linalg.slogdet(M)[1]
    counts = np.array([(logabs < math.log(e)).sum() for e in eps])
    frac = counts / n
    ok = counts > 0
    slope = stderr = float("nan")
    if ok.sum() >= 2:
        x, y = np.log(eps[ok]), np.log(frac[ok])
        A = np.vstack([x, np.ones_like(x)]).T
        coef, res, *_ = np.linalg.lstsq(A, y, rcond=None)
        slope = float(coef[0])
        if ok.sum() > 2:
            sigma2 = float(np.sum((y - A @ coef) ** 2) / (ok.sum() - 2))
            stderr = float(math.sqrt(sigma2 / np.sum((x - x.mean()) ** 2)))
    return NonSingularity(eta, eps, counts, n, frac, slope, stderr, float(np.exp(logabs.min())))


# ------------------------------------------------------------- update rules (companion matrices)


def companion_matrix(rule, eta: float, lam: float) -> np.ndarray:
    """The linear map of ``rule`` (a :class:`gdstab.optimizers.Rule`) on (θ, buffer) along an
    eigenvector of H with eigenvalue ``lam`` (for the adaptive rules: of P⁻¹H, P frozen) at
    step size ``eta``:

    ==========  =========================================================
    gd          [1 − ηλ]
    momentum    [[1 − ηλ, −ηβ], [λ, β]]
    nesterov    [[1 − ηλ(1 + β), −ηβ²], [λ, β]]
    rmsprop     [1 − ημ]  (μ an eigenvalue of P⁻¹H)
    adam        [[1 − η(1 − β₁)μ, −ηβ₁], [(1 − β₁)μ, β₁]]  (on (θ, P⁻¹m))
    ==========  =========================================================

    Its spectral radius is < 1 iff 0 < ηλ < c(rule) (Jury's conditions on z² − Tz + D:
    |D| < 1, 1 − T + D > 0, 1 + T + D > 0)."""
    if rule.name == "optax":
        raise fail("rule", "companion_matrix", "a built-in rule (gd, momentum, nesterov, rmsprop, adam)", rule.spec())
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


def spectral_radius(rule, eta: float, lam: float) -> float:
    """The spectral radius of :func:`companion_matrix`: the per-step contraction (< 1) or
    expansion (> 1) of the state along that eigenvector near the minimum."""
    return float(np.max(np.abs(np.linalg.eigvals(companion_matrix(rule, eta, lam)))))


def rule_stability(rule, eta: float, eigenvalues, *, rank_tol: float = 1e-9) -> dict[str, Any]:
    """Linear stability of a minimum under ``rule`` at step size ``eta``, from the non-zero
    ``eigenvalues`` of H (of P⁻¹H for the adaptive rules): the spectral radius over them, the
    threshold c / η on the largest, and the verdict (0 < ηλ < c for all)."""
    eta = finite_float(eta, "eta", "rule_stability", low=0.0)
    ev = np.asarray(eigenvalues, dtype=np.float64).reshape(-1)
    if ev.size == 0 or not np.all(np.isfinite(ev)):
        raise fail("eigenvalues", "rule_stability", "a non-empty array of finite floats", eigenvalues)
    scale = max(float(np.abs(ev).max()), np.finfo(float).tiny)
    nz = ev[np.abs(ev) > rank_tol * scale]
    c = rule.threshold
    rho = max((spectral_radius(rule, eta, x) for x in nz), default=math.nan)
    return {"rule": rule.to_dict(), "threshold_c": c, "lambda_threshold": c / eta,
            "spectral_radius": rho, "linearly_stable": bool(nz.size and np.all((nz > 0) & (eta * nz < c)))}


def frozen_preconditioner_stability(rule, eta: float, hessian, preconditioner) -> dict[str, Any]:
    """Linear stability of a minimum with Hessian ``hessian`` (d, d) under an adaptive rule
    (rmsprop, adam) whose diagonal preconditioner is frozen at ``preconditioner`` P (d,) (its
    buffers have converged): the rule is linear in (θ, P⁻¹m) and decouples along the
    eigenvectors of P⁻¹H, so the verdict is :func:`rule_stability` on the eigenvalues of P⁻¹H
    (computed as those of the symmetric P^{-1/2} H P^{-1/2}).  The result adds
    ``lambda_max_preconditioned`` = λ_max(P⁻¹H)."""
    caller = "frozen_preconditioner_stability"
    if not rule.adaptive:
        raise fail("rule", caller, "an adaptive rule (rmsprop or adam)", rule.spec())
    H = np.asarray(hessian, dtype=np.float64)
    P = np.asarray(preconditioner, dtype=np.float64).reshape(-1)
    if H.ndim != 2 or H.shape[0] != H.shape[1] or not np.all(np.isfinite(H)):
        raise fail("hessian", caller, "a finite square matrix", hessian)
    if P.shape != (H.shape[0],) or not np.all(np.isfinite(P)) or not np.all(P > 0):
        raise fail("preconditioner", caller, f"{H.shape[0]} finite floats > 0 (the diagonal of P)", preconditioner)
    s = 1.0 / np.sqrt(P)
    mu = np.linalg.eigvalsh(0.5 * (s[:, None] * (H + H.T) * s[None, :]))
    out = rule_stability(rule, eta, mu)
    out["lambda_max_preconditioned"] = float(mu[-1])
    return out


# ------------------------------------------------------------------------ one summary


def stability_summary(problem, etas, *, key, point=None, n_samples: int = 2000, rule=None) -> dict[str, Any]:
    """What ``gdstab stability`` reports, as plain data: the critical step sizes over M (from
    M's description; without one, estimated from minima found numerically by
    :func:`estimate_critical_step_sizes`, marked ``"estimate": true``), and per step size the threshold 2/η, the
    size of M_WS (the exact arc length when M is a union of curves, else the fraction of
    ``n_samples`` minima drawn by the problem's sampler, with its Wilson interval) and, with
    ``point``, the stability verdicts at that minimum (:func:`minimum_stability`).  With ``rule``
    (a :class:`gdstab.optimizers.Rule`), also the rule's critical step size c(rule) / inf_M λ_max and,
    at ``point``, the spectral radius of the rule's companion matrices (not for the adaptive rules,
    whose threshold is on P⁻¹H and needs the preconditioner at the minimum)."""
    caller = "stability_summary"
    etas = np.atleast_1d(np.asarray(etas, dtype=np.float64))
    if etas.ndim != 1 or etas.size == 0 or not np.all(np.isfinite(etas)) or not np.all(etas > 0):
        raise fail("etas", caller, "positive finite step sizes", etas)
    m = problem.minima
    out: dict[str, Any] = {"problem": problem.name, "normalisation": problem.normalisation}
    if m is not None and (m.sample is not None or m.curve is not None):
        out["critical"] = critical_step_sizes(problem, key=key).to_dict()
    elif problem.dim <= ESTIMATE_MAX_DIM:  # no description of M: estimated from minima found numerically
        try:
            out["critical"] = estimate_critical_step_sizes(problem, key=key).to_dict()
        except InvalidParameterError as exc:
            out["critical"] = None
            out["critical_note"] = f"no description of the set of minima M, and no estimate: {exc}"
    else:
        out["critical"] = None
        out["critical_note"] = (f"no description of the set of minima M, and d = {problem.dim} > {ESTIMATE_MAX_DIM} is "
                                f"too large to search for minima with dense Hessians (gdstab critical-lr estimates "
                                f"the critical step size of a model from its runs)")
    rows = []
    for eta in map(float, etas):
        row: dict[str, Any] = {"eta": eta, "threshold_2_over_eta": 2.0 / eta}
        if m is not None and m.curve is not None:
            a = weakly_stable_arc_length(problem, eta)
            row["mws_length"] = {"total": a.total, "per_branch": list(a.per_branch)}
        elif m is not None and m.sample is not None:
            f, lo, hi = weakly_stable_fraction(problem, eta, key=key, n_samples=n_samples)
            row["mws_fraction"] = {"fraction": f, "low": lo, "high": hi, "of": "minima drawn by the problem's sampler"}
        if point is not None:
            row["point"] = minimum_stability(problem, point, eta).to_dict()
        rows.append(row)
    out["per_eta"] = rows
    if rule is not None:
        _add_rule(out, rule)
    return out


def _add_rule(out: dict[str, Any], rule) -> None:
    """The rule's critical step size and point verdicts, added to a :func:`stability_summary`."""
    c = rule.threshold
    out["rule"] = {**rule.to_dict(), "threshold_c": c, "adaptive": rule.adaptive}
    crit = out.get("critical")
    if rule.adaptive:
        out["rule"]["note"] = ("adaptive rule: its threshold c / eta is on the eigenvalues of P^-1 H, which need the "
                               "preconditioner P at the minimum; not computed here")
    elif crit is not None:
        lmax = crit["inf_lambda_max"]
        out["rule"]["eta_star"] = c / lmax if lmax > 0 else math.inf
    for row in out["per_eta"]:
        if "point" in row and not rule.adaptive:
            row["point"]["rule"] = rule_stability(rule, row["eta"], row["point"]["eigenvalues"])


# ------------------------------------------------------------------ minima found numerically


@dataclass(frozen=True, repr=False)
class EstimatedCriticalStepSizes(Record):
    """Critical step sizes estimated from minima found numerically (no description of M).

    ``eta_star`` = 2 / ``inf_lambda_max`` over the minima found (refined locally), and ``eta_E``
    = 2 / ``inf_lambda_min_pos`` likewise.  The true infima over M are at most the values
    found, so both are **lower bounds** of the true critical step sizes, equal to them when the
    flattest minimum was reached.  Evidence: ``starts`` descents, ``minima`` of them ended at a
    minimum (gradient and negative curvature below tolerance), ``global_minima`` at the lowest
    loss (L* where known, else the lowest found), the range of λ_max over those, and ``note``."""

    eta_star: float
    eta_E: float
    inf_lambda_max: float
    inf_lambda_min_pos: float
    argmin_lambda_max: np.ndarray
    argmin_lambda_min_pos: np.ndarray
    starts: int
    minima: int
    global_minima: int
    lambda_max_range: tuple[float, float]
    min_value_found: float
    refined: bool
    note: str
    method: str = "estimated from minima found numerically"

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["argmin_lambda_max"] = np.asarray(self.argmin_lambda_max).tolist()
        d["argmin_lambda_min_pos"] = np.asarray(self.argmin_lambda_min_pos).tolist()
        d["lambda_max_range"] = list(self.lambda_max_range)
        d["estimate"] = True
        return d


#: the largest dimension for which minima are searched with dense Hessians
ESTIMATE_MAX_DIM = 64
#: a descent that ends farther out than this ran off to infinity (no minimum there)
MAX_NORM_FOUND = 1e6


def _descend(problem, iters: int = 200):
    """A jitted, vmapped saddle-free Newton descent θ ← θ − V diag(1/max(|λ|, μ)) Vᵀ ∇L: it
    reaches minima (degenerate ones included: flat directions take no step) and leaves saddles
    and maxima along their negative curvature."""
    import jax
    import jax.numpy as jnp

    g = jax.grad(problem.loss)
    h = jax.hessian(problem.loss)

    def one(th):
        def step(t, _):
            ev, V = jnp.linalg.eigh(h(t))
            gt, lt = g(t), problem.loss(t)
            scale = jnp.maximum(jnp.max(jnp.abs(ev)), 1e-300)
            inv = 1.0 / jnp.maximum(jnp.abs(ev), 1e-6 * scale)
            new = t - V @ (inv * (V.T @ gt))
            ok = jnp.all(jnp.isfinite(new)) & (problem.loss(new) <= lt + 1e-14 * (1 + jnp.abs(lt)))
            # where the Newton step does not decrease L: a small gradient step instead
            return jnp.where(ok, new, t - 1e-3 * gt / (1.0 + jnp.linalg.norm(gt))), None

        th, _ = jax.lax.scan(step, th, None, length=iters)
        return th

    return jax.jit(jax.vmap(one))


def estimate_critical_step_sizes(problem, *, key, starts: int = 256, box=None, f_tol: float = 1e-8,
                                 g_tol: float = 1e-7, rank_tol: float = DEFAULT_RANK_TOL,
                                 refine: bool = True) -> EstimatedCriticalStepSizes:
    """η* and η_E of a problem whose set of minima M is not described (e.g. a loss expression),
    from minima found numerically: ``starts`` points uniform in ``box`` (default the problem's)
    descend to critical points by saddle-free Newton; those with ‖∇L‖ <= g_tol·(1 + |θ|) and no
    eigenvalue below −rank_tol·max|λ| are minima; those within ``f_tol`` of L* (or, with L*
    unknown, of the lowest loss found) are the global minima found.  λ_max and λ_min⁺ at each;
    with ``refine`` (d <= 8), the three flattest are refined by Nelder–Mead on
    x ↦ λ(descend(x)), a local minimisation over M.  Returns :class:`EstimatedCriticalStepSizes`:
    lower bounds of the true η*, η_E (the infimum over M is at most the value found)."""
    import jax
    import jax.numpy as jnp

    from .problems import parse_box

    caller = "estimate_critical_step_sizes"
    starts = positive_int(starts, "starts", caller, minimum=2)
    f_tol = finite_float(f_tol, "f_tol", caller, low=0.0)
    g_tol = finite_float(g_tol, "g_tol", caller, low=0.0)
    box = problem.box if box is None else parse_box(box, problem.dim, caller=caller, name="box")
    with jax.enable_x64(True):
        if box is not None:
            lo, hi = np.asarray(box, dtype=np.float64).T
            x0 = lo + (hi - lo) * np.asarray(jax.random.uniform(key, (starts, problem.dim), dtype=jnp.float64))
        else:  # a problem without a box has a sampler (Problem's contract)
            x0 = np.asarray(problem.sampler(key, starts), dtype=np.float64)
        descend = _descend(problem)
        pts = np.asarray(descend(jnp.asarray(x0)))
        loss = np.asarray(jax.vmap(problem.loss)(jnp.asarray(pts)))
        grads = np.asarray(jax.vmap(jax.grad(problem.loss))(jnp.asarray(pts)))
    spectra = [_eigenvalues(problem, p) if np.all(np.isfinite(p)) else None for p in pts]
    with np.errstate(over="ignore", invalid="ignore"):  # descents that ran off to ±1e308
        norms = np.linalg.norm(pts, axis=1)
    is_min = np.array([  # a critical point with no negative curvature, not run off to infinity
        ev is not None and np.isfinite(loss[i]) and norms[i] <= MAX_NORM_FOUND
        and np.linalg.norm(grads[i]) <= g_tol * (1 + norms[i])
        and ev[0] >= -rank_tol * max(float(np.abs(ev).max()), np.finfo(float).tiny)
        for i, ev in enumerate(spectra)])
    if not is_min.any():
        raise InvalidParameterError(
            f"{caller} found no minimum of {problem.name!r} from {starts} starts in the box {box} (every descent "
            f"ended away from a critical point with non-negative curvature); try another box or more starts.")
    floor = problem.min_value if problem.min_value is not None else float(loss[is_min].min())
    glob = is_min & (loss - floor <= f_tol)
    lam = {i: (float(spectra[i][-1]), smallest_nonzero_eigenvalue(spectra[i], rank_tol=rank_tol).value)
           for i in np.flatnonzero(glob)}
    if not lam:
        raise InvalidParameterError(
            f"{caller} found minima of {problem.name!r} but none within f_tol = {f_tol:g} of L* = {floor:g}: the "
            f"global minima were not reached from {starts} starts; try another box, more starts or check min_value.")
    best_max = min(lam, key=lambda i: lam[i][0])
    best_min = min(lam, key=lambda i: lam[i][1])
    vmax, amax = lam[best_max][0], pts[best_max]
    vmin, amin = lam[best_min][1], pts[best_min]
    refined = bool(refine and problem.dim <= 8)
    if refined:
        vmax, amax = _refine_over_minima(problem, descend, [pts[i] for i in sorted(lam, key=lambda i: lam[i][0])[:3]],
                                         0, rank_tol, floor, f_tol, (vmax, amax))
        if np.isfinite(vmin):
            vmin, amin = _refine_over_minima(problem, descend,
                                             [pts[i] for i in sorted(lam, key=lambda i: lam[i][1])[:3]],
                                             1, rank_tol, floor, f_tol, (vmin, amin))
    scale = max(abs(v[0]) for v in lam.values())
    notes = ["an estimate: the minima found bound the infimum over M from above, so eta* and eta_E are lower "
             "bounds (equal when the flattest minimum was reached)"]
    if vmax <= rank_tol * scale:
        vmax = 0.0
        notes.append("inf lambda_max is 0 (a minimum with a vanishing Hessian)")
    if not np.isfinite(vmin) or vmin <= rank_tol * scale:
        notes.append("inf lambda_min+ is 0" if np.isfinite(vmin) else "no non-zero eigenvalue at the minima found")
        vmin = 0.0 if np.isfinite(vmin) else np.inf
    lmax_all = [v[0] for v in lam.values()]
    return EstimatedCriticalStepSizes(
        eta_star=2.0 / vmax if vmax > 0 else math.inf,
        eta_E=2.0 / vmin if 0 < vmin < math.inf else math.inf,
        inf_lambda_max=float(vmax), inf_lambda_min_pos=float(vmin),
        argmin_lambda_max=np.asarray(amax), argmin_lambda_min_pos=np.asarray(amin),
        starts=starts, minima=int(is_min.sum()), global_minima=len(lam),
        lambda_max_range=(float(min(lmax_all)), float(max(lmax_all))), min_value_found=float(loss[is_min].min()),
        refined=refined, note="; ".join(notes),
    )


def _refine_over_minima(problem, descend, points, which: int, rank_tol, floor, f_tol, best):
    """Nelder–Mead on x ↦ λ(descend(x)) (λ_max for which = 0, λ_min⁺ for 1), where descend maps
    a point to the minimum it flows to; points that do not reach a global minimum count +inf."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    def value(x):
        with jax.enable_x64(True):
            q = np.asarray(descend(jnp.asarray(x, dtype=jnp.float64)[None]))[0]
            L = float(problem.loss(jnp.asarray(q)))
        if not np.all(np.isfinite(q)) or not L - floor <= f_tol:
            return np.inf, q
        ev = _eigenvalues(problem, q)
        v = float(ev[-1]) if which == 0 else smallest_nonzero_eigenvalue(ev, rank_tol=rank_tol).value
        return v, q

    for p in points:
        with np.errstate(all="ignore"):  # +inf where a trial point flows elsewhere
            r = minimize(lambda x: value(x)[0], p, method="Nelder-Mead",
                         options={"maxfev": 200 * problem.dim, "xatol": 1e-10, "fatol": 1e-12, "adaptive": True})
        v, q = value(r.x)
        if v < best[0]:
            best = (v, q)
    return best
