"""The field's headline results in ``gdstab reproduce``: the catapult mechanism.

``catapult`` (Lewkowycz et al. 2020, "The large learning rate phase of deep learning: the
catapult mechanism").  The two-layer linear "uv" model f(x) = vᵀ(u x)/√m of width m
(u, v ∈ Rᵐ, entries N(0, 1) at initialisation) on one sample (x, y) = (1, 0) with
L = ½ (f − y)².  Its curvature — the neural tangent kernel λ = ‖∇_θ f‖² = (‖u‖² + ‖v‖²)/m, the
sharpness at a minimum — and its residual obey, exactly (r = f − y = f):

    r_{t+1} = r_t (1 − η λ_t + η² r_t² / m),        λ_{t+1} = λ_t + η r_t² (η λ_t − 4) / m,

so as m → ∞: for η < 2/λ₀ the loss falls monotonically (lazy phase); for 2/λ₀ < η < 4/λ₀ it
grows until r² ~ m, then λ falls (η λ < 4) until it is below 2/η and the loss converges
(catapult phase); for η > 4/λ₀ λ grows and GD diverges.  The check: the two thresholds found by
the engine — bisection over η on "the loss never rises" and on "converged" (gdstab.trajectories,
no closed form used) — against 2/λ₀ and 4/λ₀ from the closed form at the same initialisation,
at several widths (the finite-width error is measured, not assumed).

Also a real network: a tanh MLP on MNIST digits at η = c/λ₀ (λ₀ its sharpness at initialisation,
by Lanczos) for c below 2 (lazy) and above 2 (catapult: the loss spikes, the sharpness drops
below 2/η, then the loss falls).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .target import Target, dataset_compute, plot_draw

__all__ = ["CATAPULT", "uv_problem", "uv_curvature", "uv_thresholds", "compute_catapult", "key_numbers_catapult",
           "MONOTONE_RTOL"]


@dataclass(frozen=True)
class _Catapult:
    widths: tuple[int, ...]
    steps: int          # T of every engine run in the threshold search
    figure_width: int
    figure_c: tuple[float, ...]   # η = c/λ₀ of the uv runs drawn
    mlp_samples: int    # per digit
    mlp_c: tuple[float, ...]
    run_steps: int      # steps of every drawn run (uv and MLP)


CATAPULT = {"small": _Catapult((100, 1000, 10_000), 10_000, 1000, (1.5, 3.0, 4.2), 20, (1.5, 3.0, 6.0), 80),
            # Lewkowycz et al. use widths up to 10^4 for the uv model
            "paper": _Catapult((100, 1000, 10_000, 100_000), 50_000, 1000, (1.5, 3.0, 4.2), 500, (1.5, 3.0, 6.0), 200)}
#: "the loss never rises": L_{t+1} <= L_t (1 + MONOTONE_RTOL) at every step (rounding allowance)
MONOTONE_RTOL = 1e-12
#: the multisection: points per round and the relative bracket width at which it stops
_POINTS, _RTOL = 15, 1e-4
#: the coarse grid that brackets both thresholds (absolute η, no closed form used)
_COARSE = np.geomspace(0.05, 20.0, 41)


def uv_problem(m: int, y: float = 0.0):
    """The uv model of width ``m`` on the sample (1, y) as a :class:`gdstab.Problem`
    (θ = (u, v), L = ½ (vᵀu/√m − y)², initial entries N(0, 1))."""
    import jax
    import jax.numpy as jnp

    from ..problems import Problem

    def loss(p, batch):
        return 0.5 * (jnp.dot(p["u"], p["v"]) / jnp.sqrt(float(m)) - y) ** 2

    def init(key):
        ku, kv = jax.random.split(key)
        return {"u": jax.random.normal(ku, (m,)), "v": jax.random.normal(kv, (m,))}

    return Problem.from_jax(loss, {"u": jnp.zeros(m), "v": jnp.zeros(m)}, None, init_fn=init, min_value=0.0,
                            name=f"uv (width {m})", normalisation="1/2 (v^T u / sqrt(m) - y)^2, x = 1")


def uv_curvature(theta: np.ndarray, m: int) -> np.ndarray:
    """The closed-form curvature λ = (‖u‖² + ‖v‖²)/m of θ = (u, v) (last axis)."""
    theta = np.asarray(theta, dtype=np.float64)
    return np.sum(theta * theta, axis=-1) / m


def _predicates(p, th0: np.ndarray, etas: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(monotone loss, converged, undecided) per η: one engine run of all of them."""
    import gdstab

    r = gdstab.trajectories(p, np.repeat(th0[None], etas.size, 0), etas, steps=steps, record_every=1)
    L = r.metrics.loss
    with np.errstate(invalid="ignore", over="ignore"):
        mono = np.all(np.isfinite(L), axis=0) & np.all(L[1:] <= L[:-1] * (1 + MONOTONE_RTOL), axis=0)
    return mono, r.status == 1, r.status == 4


def _multisect(holds, grid: np.ndarray) -> tuple[float, float, bool]:
    """The bracket [lo, hi] of the last η of ``grid`` where ``holds`` (an array predicate) is
    true before the first where it is false, refined with _POINTS points per round to a relative
    width _RTOL; and whether the predicate was monotone in η at every round (true, then false)."""
    ok = holds(grid)
    if not ok[0] or ok.all():
        return float("nan"), float("nan"), False  # the grid does not bracket the threshold
    consistent = bool(np.all(np.diff(ok.astype(int)) <= 0))
    i = int(np.argmin(ok))  # first false
    lo, hi = float(grid[i - 1]), float(grid[i])
    while hi / lo - 1 > _RTOL:
        pts = np.linspace(lo, hi, _POINTS + 2)[1:-1]
        ok = holds(pts)
        consistent &= bool(np.all(np.diff(ok.astype(int)) <= 0))
        k = int(np.argmin(ok)) if not ok.all() else pts.size
        lo, hi = (lo if k == 0 else float(pts[k - 1])), (hi if k == pts.size else float(pts[k]))
    return lo, hi, consistent


def uv_thresholds(m: int, steps: int, seed: int = 0) -> dict[str, Any]:
    """The lazy / catapult / divergence thresholds of the uv model of width ``m`` at the
    initialisation of ``seed``, found by the engine, next to 2/λ₀ and 4/λ₀ of the closed form."""
    import jax

    from .. import random as gdstab_random

    p = uv_problem(m)
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(gdstab_random.key(seed), 1), dtype=np.float64)[0]
    lam0 = float(uv_curvature(th0, m))
    undecided: list[float] = []

    def pred(which):
        def holds(etas):
            mono, conv, und = _predicates(p, th0, np.asarray(etas, dtype=np.float64), steps)
            undecided.extend(np.asarray(etas)[und].tolist())
            return mono if which == "mono" else conv
        return holds

    out: dict[str, Any] = {"width": m, "lambda0": lam0, "f0": float(th0[:m] @ th0[m:] / np.sqrt(m)), "steps": steps}
    for name, which, c in (("lazy", "mono", 2.0), ("divergence", "conv", 4.0)):
        lo, hi, consistent = _multisect(pred(which), _COARSE)
        eta = 0.5 * (lo + hi)
        out[name] = {"eta": eta, "bracket": [lo, hi], "closed_form": c / lam0, "relative_error": eta * lam0 / c - 1,
                     "predicate_monotone_in_eta": consistent}
    out["undecided_runs"] = len(undecided)  # runs that neither converged nor diverged within T
    return out


def _uv_runs(c: _Catapult):
    """GD on the uv model of width ``figure_width`` at η = c/λ₀: loss and curvature per step."""
    import jax

    from .. import random as gdstab_random
    from .. import sharpness

    m = c.figure_width
    p = uv_problem(m)
    th0 = np.asarray(p.init(gdstab_random.key(0), 1), dtype=np.float64)[0]
    lam0 = float(uv_curvature(th0, m))
    loss, curv = [], []
    with jax.enable_x64(True):
        for k in c.figure_c:
            ds = sharpness.track_sharpness(p, th0, k / lam0, steps=c.run_steps, every=1, key=gdstab_random.key(1),
                                           tol=1e-6, keep_iterates=True)
            loss.append(ds.loss.values)
            curv.append(uv_curvature(ds.theta.values, m))
    return lam0, np.stack(loss), np.stack(curv)


def _mlp_runs(c: _Catapult):
    """Full-batch GD on a tanh MLP on digits at η = c/λ₀ (λ₀ its sharpness at initialisation)."""
    import jax

    from .. import problems, sharpness
    from .. import random as gdstab_random

    p = problems.get("mlp", depth=2, width=32, activation="tanh", samples=c.mlp_samples, digits=list(range(10)))
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(gdstab_random.key(0), 1), dtype=np.float64)[0]
        lam0 = float(sharpness.sharpness_at(p, th0, key=gdstab_random.key(1), tol=1e-8)[0])
        runs = [sharpness.track_sharpness(p, th0, k / lam0, steps=c.run_steps, every=1, key=gdstab_random.key(1),
                                          tol=1e-3, max_iter=50) for k in c.mlp_c]
    return p, lam0, np.stack([r.loss.values for r in runs]), np.stack([r.sharpness.values for r in runs])


def compute_catapult(scale: str = "small", config: _Catapult | None = None):
    """The uv thresholds at every width, the uv runs and the MLP runs of the figure."""
    import xarray as xr

    c = config or CATAPULT[scale]
    rows = [uv_thresholds(m, c.steps) for m in c.widths]
    lam_uv, uv_loss, uv_curv = _uv_runs(c)
    p, lam_mlp, mlp_loss, mlp_sharp = _mlp_runs(c)
    step = np.arange(c.run_steps + 1)

    def per_width(get):
        return ("width",), np.array([get(r) for r in rows])

    th = {"lambda0": per_width(lambda r: r["lambda0"]), "undecided_runs": per_width(lambda r: r["undecided_runs"]),
          "monotone_in_eta": per_width(lambda r: r["lazy"]["predicate_monotone_in_eta"]
                                       and r["divergence"]["predicate_monotone_in_eta"])}
    for name in ("lazy", "divergence"):
        th[f"{name}_eta"] = per_width(lambda r: r[name]["eta"])
        th[f"{name}_closed_form"] = per_width(lambda r: r[name]["closed_form"])
        th[f"{name}_low"] = per_width(lambda r: r[name]["bracket"][0])
        th[f"{name}_high"] = per_width(lambda r: r[name]["bracket"][1])
    return xr.Dataset(
        {**th, "uv_loss": (("uv_c", "step"), uv_loss), "uv_curvature": (("uv_c", "step"), uv_curv),
         "mlp_loss": (("mlp_c", "step"), mlp_loss), "mlp_sharpness": (("mlp_c", "step"), mlp_sharp)},
        coords={"width": np.asarray(c.widths), "uv_c": np.asarray(c.figure_c), "mlp_c": np.asarray(c.mlp_c),
                "step": step},
        attrs={"title": "The catapult mechanism", "steps": c.steps, "figure_width": c.figure_width,
               "uv_lambda0": lam_uv, "mlp_lambda0": lam_mlp, "mlp_samples": 10 * c.mlp_samples,
               "mlp_model": f"MLP 784 -> 32 -> 32 -> 10, tanh, MSE, {10 * c.mlp_samples} MNIST digits of all ten classes",
               "monotone_rtol": MONOTONE_RTOL, "bisection_rtol": _RTOL, "scale": scale},
    )


def _threshold_rows(ds) -> dict[str, Any]:
    rows = {}
    for i, m in enumerate(ds.width.values):
        row = {"lambda0": float(ds.lambda0.values[i]), "undecided_runs": int(ds.undecided_runs.values[i]),
               "predicates_monotone_in_eta": bool(ds.monotone_in_eta.values[i])}
        for name, c in (("lazy", 2), ("divergence", 4)):
            eta, cf = float(ds[f"{name}_eta"].values[i]), float(ds[f"{name}_closed_form"].values[i])
            row[name] = {"engine": eta, "bracket": [float(ds[f"{name}_low"].values[i]), float(ds[f"{name}_high"].values[i])],
                         f"closed_form_{c}_over_lambda0": cf, "relative_error": eta / cf - 1}
        rows[f"m={int(m)}"] = row
    return rows


def _run_rows(loss: np.ndarray, curv: np.ndarray, cs: np.ndarray, lam0: float) -> dict[str, Any]:
    rows = {}
    for i, k in enumerate(cs):
        L, s = loss[i], curv[i]
        ok = np.isfinite(L)
        last = int(np.flatnonzero(ok)[-1])
        below = np.flatnonzero(np.isfinite(s) & (s * (k / lam0) / 2 < 1))
        rows[f"c={k:g}"] = {"eta": float(k / lam0), "diverged": bool(not ok.all()),
                            "loss_peak_over_initial": float(np.max(L[ok]) / L[0]),
                            "loss_rose": bool(np.any(L[1:last + 1] > L[0])),
                            "final_loss": float(L[last]),
                            "curvature_eta_over_2_at_end": float(s[last] * k / lam0 / 2),
                            "first_step_below_2_over_eta": int(below[0]) if below.size else None}
    return rows


def _phases_hold(rows: dict[str, Any], upper: float | None) -> bool:
    """c < 2: the loss never rose; 2 < c (< upper): it rose, GD converged and the curvature ended
    below 2/η (a catapult); c > upper: diverged."""
    ok = True
    for name, r in rows.items():
        c = float(name[2:])
        if c < 2:
            ok &= not r["loss_rose"] and not r["diverged"]
        elif upper is None or c < upper:
            ok &= r["loss_rose"] and not r["diverged"] and r["curvature_eta_over_2_at_end"] < 1
        else:
            ok &= r["diverged"]
    return bool(ok)


def key_numbers_catapult(ds) -> dict[str, Any]:
    th = _threshold_rows(ds)
    big = th[f"m={int(ds.width.values[-1])}"]
    ok = abs(big["lazy"]["relative_error"]) <= 0.01 and abs(big["divergence"]["relative_error"]) <= 0.01
    a = ds.attrs
    return {
        "catapult_uv_thresholds": {
            "value": th, "reproduced": bool(ok),
            "check": "Lewkowycz et al. 2020: 2/lambda0 and 4/lambda0 within 1% at the largest width",
            "label": "uv model: the engine's η thresholds against 2/λ₀ and 4/λ₀",
            "definition": "uv model f = v^T u x / sqrt(m) on (x, y) = (1, 0), L = 1/2 (f - y)^2, u, v ~ N(0, 1), one "
                          "initialisation per width; lambda0 = (|u|^2 + |v|^2) / m (closed form). lazy: the largest eta "
                          f"at which the loss never rises in T = {a['steps']} steps (L_t+1 <= L_t (1 + "
                          f"{a['monotone_rtol']:g})); divergence: the largest eta at which GD converges (gdstab "
                          f"classification); both by multisection of engine runs over eta to a relative bracket "
                          f"{a['bisection_rtol']:g} (errors below that are the bracket's resolution). reproduced: both "
                          "within 1% at the largest width; undecided_runs: runs neither converged nor diverged in T",
        },
        "catapult_uv_runs": {
            "value": (uv := _run_rows(ds.uv_loss.values, ds.uv_curvature.values, ds.uv_c.values, a["uv_lambda0"])),
            "reproduced": _phases_hold(uv, 4.0), "check": "lazy below 2/lambda0, catapult between, divergence above 4/lambda0",
            "label": f"uv model (m = {a['figure_width']}) at η = c/λ₀", "lambda0": float(a["uv_lambda0"]),
            "definition": "loss peak over the initial loss, and the curvature lambda = (|u|^2 + |v|^2)/m times eta/2 at "
                          "the last finite step (< 1: below 2/eta); c < 2 lazy, 2 < c < 4 catapult, c > 4 diverges",
        },
        "catapult_mlp": {
            "value": (mlp := _run_rows(ds.mlp_loss.values, ds.mlp_sharpness.values, ds.mlp_c.values, a["mlp_lambda0"])),
            "reproduced": _phases_hold(mlp, None), "check": "above c = 2: the loss spikes, the sharpness ends below 2/eta",
            "label": "tanh MLP on digits at η = c/λ₀: loss spike and sharpness drop",
            "lambda0": float(a["mlp_lambda0"]),
            "definition": f"full-batch GD on {a['mlp_model']} (LeCun normal init) at eta = c / lambda0, lambda0 the "
                          "sharpness lambda_max(H) at initialisation (Lanczos); sharpness every step. A catapult: the "
                          "loss rises above its initial value, then the sharpness falls below 2/eta and the loss falls",
        },
    }


# ------------------------------------------------------------------ gdstab reproduce target


def _caption(scale: str) -> str:
    c = CATAPULT[scale]
    return (f"The catapult mechanism (Lewkowycz et al. 2020). Top: the uv model f = v^T u x / sqrt(m), width "
            f"m = {c.figure_width}, one sample (1, 0), at eta = c / lambda0 with lambda0 = (|u|^2 + |v|^2)/m its "
            f"curvature at initialisation: c = {c.figure_c[0]:g} is lazy (the loss falls monotonically), c = "
            f"{c.figure_c[1]:g} catapults (the loss grows until the curvature, right, has fallen below 2/eta, dashed, "
            f"then converges), c = {c.figure_c[2]:g} > 4 diverges. The thresholds 2/lambda0 and 4/lambda0 found by "
            f"bisection of engine runs at widths {', '.join(str(m) for m in c.widths)} are in the key numbers. Bottom: "
            f"a 784-32-32-10 tanh MLP on {10 * c.mlp_samples} MNIST digits at eta = c / lambda0 (lambda0 its "
            f"sharpness at initialisation): above c = 2 the loss spikes while the sharpness drops below 2/eta.")


TARGETS = (
    Target("catapult", "catapult.zarr", "catapult", dataset_compute(compute_catapult, key_numbers_catapult, "catapult.zarr"),
           plot_draw("catapult"), _caption,
           title="The catapult mechanism (Lewkowycz et al. 2020)"),
)
