"""The deep-linear-network table and the non-singularity check of ``gdstab reproduce``.

``linear``: for a list of architectures with known answers (scalar networks, whitened data with
the closed form inf_M λ_max = 2 s N σ₁(W*)^{2 − 2/N}, sum-of-squares loss without ½) and a
bottleneck, the rank r, filling or not, dim M, the Hessian spectrum counts at a sampled
minimum, inf_M λ_max by optimisation over M (balanced start + random minima), whether the
minimiser is balanced, and η* = 2 / inf_M λ_max; plus the dynamics check (trapping fraction
against η with η* marked) for one small network.

``nonsingular``: P(|det(I − ηH(θ))| < ε) for random θ against ε (log-log slope ≈ 1 means a
measure-zero singular set with simple zeros: Theorems 15 and 20), for a deep linear network and
a tanh MLP.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from .. import random as gdstab_random
from .._validation import InvalidParameterError, positive_int
from ..stats import relative_spread
from .target import Target

__all__ = ["LINEAR_CASES", "RESTARTS_AGREE", "analyse_linear_network", "compute_linear_table", "compute_linear_check", "compute_nonsingular", "NONSINGULAR"]


def _whitened(d0: int, n: int, s: float, rng) -> np.ndarray:
    Q, _ = np.linalg.qr(rng.normal(size=(n, d0)))
    return np.sqrt(s) * Q.T  # X Xᵀ = s I


#: (label, dims, data kind): "ones" = X = Y = 1 (scalar networks), "whitened" = X Xᵀ = 1.7 I,
#: "gaussian" = Gaussian X, Y (no closed form)
LINEAR_CASES = (
    ("scalar depth 2", (1, 1, 1), "ones"),
    ("scalar depth 3", (1, 1, 1, 1), "ones"),
    ("whitened 2-3-2", (2, 3, 2), "whitened"),
    ("whitened 3-3-3", (3, 3, 3), "whitened"),
    ("whitened 2-2-2-2", (2, 2, 2, 2), "whitened"),
    ("bottleneck 3-1-3", (3, 1, 3), "gaussian"),
)


def _case_data(dims, kind: str, seed: int):
    rng = np.random.default_rng(seed + sum(dims))
    if kind == "ones":
        return np.ones((1, 1)), np.ones((1, 1)), None
    n = 9
    if kind == "whitened":
        s = 1.7
        return _whitened(dims[0], n, s, rng), rng.normal(size=(dims[-1], n)), s
    return rng.normal(size=(dims[0], n)), rng.normal(size=(dims[-1], n)), None


#: relative spread of the restarts' values below which they count as in agreement
RESTARTS_AGREE = 1e-6


def analyse_linear_network(dims, X, Y, *, normalisation: str = "sum", seed: int = 0, restarts: int = 4,
                           walks: bool = True) -> dict[str, Any]:
    """The deep linear network ``linear_network(dims, X, Y)`` analysed, as plain data: its
    minimum (rank, filling, singular values, L*, dim M), the Hessian spectrum counts at a minimum
    drawn with ``seed`` (against the expected dim M zeros), inf over M of λ_max by minimisation
    from the balanced point and ``restarts`` gauge-transformed minima (their spread is the
    evidence: when they disagree the smallest value is only an upper bound), η* = 2 / inf, and
    with ``walks`` (depth >= 2 hidden layers) λ_max and λ_min⁺ along paths to infinity on M."""
    import jax

    from ..problems.linear import WALKS, balanced_point, is_balanced, linear_network, path_to_infinity
    from ..spectrum import hessian, smallest_nonzero_eigenvalue
    from ..stability import minimise_sharpness_on_minima, walk_along_minima

    dims = [int(v) for v in dims]
    p = linear_network(dims, X, Y, normalisation=normalisation)
    t = p.options["target"]
    restarts = positive_int(restarts, "restarts", "analyse_linear_network", minimum=0)
    key = gdstab_random.key(seed)
    pt = np.asarray(p.minima.sample(key, 1))[0]
    ev = np.linalg.eigvalsh(hessian(p, pt))
    nz = smallest_nonzero_eigenvalue(ev)
    starts = [balanced_point(dims, t.W_star, t.rank)]
    if restarts:
        starts += list(np.asarray(p.minima.sample(jax.random.fold_in(key, 1), restarts)))
    lmax, argmin, per_start, evals = minimise_sharpness_on_minima(p, starts)
    out: dict[str, Any] = {
        "dims": dims, "normalisation": p.normalisation, "rank": int(t.rank), "filling": bool(t.filling),
        "singular_values": t.singular_values.tolist(), "distinct_singular_values": bool(t.distinct),
        "min_value": float(t.min_value), "d_theta": int(t.d_theta), "dim_M": int(t.dim_M),
        "spectrum_at_sampled_minimum": {"zero": int(nz.n_zero), "positive": int((ev > nz.threshold).sum()),
                                        "negative": int((ev < -nz.threshold).sum()), "expected_zero": int(t.dim_M),
                                        "expected_positive": int(t.d_theta - t.dim_M),
                                        "rank_tolerance": float(nz.threshold)},
        "inf_lambda_max": float(lmax), "eta_star": 2.0 / float(lmax),
        "minimiser_balanced": bool(is_balanced(dims, argmin, 1e-6)), "starts": len(starts),
        "restarts": [float(v) for v in per_start], "evaluations": int(evals),
    }
    spread = relative_spread(per_start)
    out["restart_spread"] = None if math.isnan(spread) else spread
    out["restarts_agree"] = out["restart_spread"] is None or out["restart_spread"] <= RESTARTS_AGREE
    out["walks"] = {}
    if walks and len(dims) >= 3:
        for kind in WALKS:
            try:
                path = path_to_infinity(dims, t.W_star, t.rank, kind)
            except InvalidParameterError as exc:
                out["walks"][kind] = {"skipped": str(exc)}
                continue
            ts = [0, 1, 2, 3, 4] if kind == "scaling" else [0, 2, 4, 8, 16]
            out["walks"][kind] = walk_along_minima(p, path, ts)
    return out


def compute_linear_table(*, seed: int = 0, restarts: int = 4) -> list[dict[str, Any]]:
    """One row per case of :data:`LINEAR_CASES` (sum-of-squares loss, no ½), with the closed
    form of inf_M λ_max where there is one."""
    rows = []
    for label, dims, kind in LINEAR_CASES:
        X, Y, s = _case_data(dims, kind, seed)
        a = analyse_linear_network(dims, X, Y, normalisation="sum", seed=seed, restarts=restarts, walks=False)
        lmax = a["inf_lambda_max"]
        N = len(dims) - 1
        if kind == "ones":
            closed = 2.0 * N  # |w_i| = 1 for every layer: λ = 2 Σ_i Π_{j≠i} w_j² = 2N
        elif kind == "whitened":  # filling: W* is the least-squares solution Y Xᵀ (X Xᵀ)⁻¹
            sigma1 = float(np.linalg.svd(Y @ X.T @ np.linalg.inv(X @ X.T), compute_uv=False)[0])
            closed = 2 * s * N * sigma1 ** (2 - 2 / N)
        else:
            closed = None
        sp = a["spectrum_at_sampled_minimum"]
        rows.append({
            "case": label, "dims": list(dims), "data": kind, "rank": a["rank"], "filling": a["filling"],
            "distinct_singular_values": a["distinct_singular_values"], "d_theta": a["d_theta"], "dim_M": a["dim_M"],
            "zero_eigenvalues": sp["zero"], "positive_eigenvalues": sp["positive"],
            "negative_eigenvalues": sp["negative"], "inf_lambda_max": lmax, "closed_form": closed,
            "relative_error": None if closed is None else abs(lmax - closed) / closed,
            "eta_star": a["eta_star"], "minimiser_balanced": a["minimiser_balanced"],
        })
    return rows


#: the dynamics check of the linear target: (dims, etas as fractions of η*, inits, steps) per scale
LINEAR_CHECK = {
    "small": ((2, 3, 2), (0.5, 0.7, 0.8, 0.9, 0.95, 1.0, 1.05, 1.1, 1.3), 400, 3000),
    "paper": ((2, 3, 2), tuple(np.round(np.linspace(0.5, 1.5, 21), 10)), 4000, 20000),
}


def compute_linear_check(scale: str = "small", *, seed: int = 0):
    """Trapping fraction against η around η* for the whitened 2-3-2 network of the table."""
    from .linear_dynamics import compute_linear_trapping
    from ..problems.linear import balanced_point, linear_network
    from ..stability import minimise_sharpness_on_minima

    dims, fractions, inits, steps = LINEAR_CHECK[scale]
    X, Y, _ = _case_data(dims, "whitened", seed)
    p = linear_network(dims, X, Y)
    t = p.options["target"]
    lmax, _, _, _ = minimise_sharpness_on_minima(p, [balanced_point(dims, t.W_star, t.rank)])
    etas = np.round(np.asarray(fractions) * 2.0 / lmax, 12)
    return compute_linear_trapping(dims, X, Y, etas, inits=inits, steps=steps, seed=seed)


#: points per case and the ε grid of the non-singularity check
NONSINGULAR = {"small": (40_000, (1e-1, 1e-2, 1e-3, 1e-4)), "paper": (400_000, (1e-2, 1e-3, 1e-4, 1e-5))}


def _tanh_problem(seed: int):
    from ..problems.mlp import mlp

    rng = np.random.default_rng(seed)
    X = rng.normal(size=(6, 2))
    Y = rng.normal(size=(6, 1))
    return mlp((X, Y), depth=1, width=3, activation="tanh", loss="mse", min_value=None)


def compute_nonsingular(scale: str = "small", *, seed: int = 4):
    """Fractions of random points with |det(I − ηH)| < ε for two losses: an xarray Dataset
    (case, eps) with counts, fractions, the fitted slope and its standard error."""
    import xarray as xr

    from ..problems.linear import linear_network
    from ..stability import singular_set_fraction

    n, eps = NONSINGULAR[scale]
    rng = np.random.default_rng(seed)
    lin = linear_network((2, 2, 2, 2), rng.normal(size=(2, 5)), rng.normal(size=(2, 5)), box=1.0)
    tanh = _tanh_problem(seed)
    cases = [
        ("deep linear 2-2-2-2, sum of squares, box [-1,1]^12", lin, 0.1, None),
        ("tanh MLP 2-3-1 with biases, mean squared error, box [-2,2]^13", tanh, 2.0, [(-2.0, 2.0)] * tanh.dim),
    ]
    counts, fracs, slopes, errs, labels, etas = [], [], [], [], [], []
    for i, (label, prob, eta, box) in enumerate(cases):
        r = singular_set_fraction(prob, eta, eps, key=gdstab_random.key(seed + i), n=n, box=box)
        counts.append(r.counts)
        fracs.append(r.fraction)
        slopes.append(r.slope)
        errs.append(r.slope_stderr)
        labels.append(label)
        etas.append(eta)
    return xr.Dataset(
        {
            "count": (("case", "eps"), np.asarray(counts)),
            "fraction": (("case", "eps"), np.asarray(fracs)),
            "slope": ("case", np.asarray(slopes)),
            "slope_stderr": ("case", np.asarray(errs)),
            "eta": ("case", np.asarray(etas)),
        },
        coords={"case": np.arange(len(cases)), "eps": np.asarray(eps)},
        attrs={"case_labels": " | ".join(labels), "points": n, "seed": seed,
               "definition": "fraction of points uniform in the box with |det(I - eta H(theta))| < eps"},
    )


# ------------------------------------------------------------------ gdstab reproduce targets


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv
    import json

    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})


def _reproduce_linear(out: Path, scale: str, quiet: bool, keys: dict) -> None:
    from ..results import save_dataset

    data = Path(out) / "data"
    rows = compute_linear_table()
    _write_csv(data / "linear_table.csv", rows)
    chk = compute_linear_check(scale)
    save_dataset(chk, data / "linear_check.zarr")
    for r in rows:
        entry = {"value": r["inf_lambda_max"], "label": f"inf_M λ_max, linear network {'-'.join(map(str, r['dims']))}",
                 "definition": f"inf over M of lambda_max for the linear network {tuple(r['dims'])} "
                               f"({r['data']} data, L = ||Y - W X||^2, no 1/2), by optimisation over M; "
                               f"eta* = 2 / value = {r['eta_star']:.10g}; dim M = {r['dim_M']}, rank {r['rank']}"}
        if r["closed_form"] is not None:
            entry["closed_form"] = r["closed_form"]
        keys[f"linear_inf_lambda_max_{'x'.join(map(str, r['dims']))}"] = entry
    beyond = chk.trapping_fraction.values[chk.eta.values > chk.attrs["eta_star"] * (1 + 1e-9)]
    keys["linear_trapping_above_eta_star"] = {
        "value": float(beyond.max()) if beyond.size else float("nan"), "label": "largest trapping fraction above η*",
        "definition": f"largest trapping fraction at eta > eta* = {chk.attrs['eta_star']:.6g} for the whitened "
                      f"2-3-2 network ({chk.attrs['inits']} inits uniform in [-1, 1]^12, T = {chk.attrs['steps']}); "
                      f"the theory says 0 (up to a measure-zero set)",
    }


def _reproduce_nonsingular(out: Path, scale: str, quiet: bool, keys: dict) -> None:
    from ..results import save_dataset

    data = Path(out) / "data"
    ns = compute_nonsingular(scale)
    save_dataset(ns, data / "nonsingular.zarr")
    ns.to_dataframe().to_csv(data / "nonsingular.csv")
    labels = ns.attrs["case_labels"].split(" | ")
    for i, lab in enumerate(labels):
        keys[f"nonsingular_slope_{'linear' if i == 0 else 'tanh_mlp'}"] = {
            "value": float(ns.slope.values[i]), "stderr": float(ns.slope_stderr.values[i]),
            "label": "slope of P(|det(I − ηH)| < ε) in ε, " + ("deep linear networks" if i == 0 else "tanh MLPs"),
            "definition": f"log-log slope of P(|det(I - eta H)| < eps) in eps for {lab}, eta = "
                          f"{float(ns.eta.values[i]):g}, {ns.attrs['points']} points; 1 = measure-zero "
                          f"singular set with simple zeros (Theorems 15, 20)",
        }


def _draw_linear(ds, scale: str):
    from .. import plots

    return plots.linear_trapping(ds)


def _draw_nonsingular(ds, scale: str):
    from .. import plots

    return plots.nonsingular(ds)


TARGETS = (
    Target("linear", "linear_check.zarr", "linear_trapping", _reproduce_linear, _draw_linear,
           lambda scale: "Deep linear network 2-3-2 with whitened data: fraction of initialisations (uniform in "
                         "[-1, 1]^12) from which GD converges, against eta, with the sharp critical step size eta* = "
                         "2 / inf_M lambda_max marked; beyond eta* no minimum is linearly stable.", title="Deep linear networks: η* = 2 / inf_M λ_max"),
    Target("nonsingular", "nonsingular.zarr", "nonsingular", _reproduce_nonsingular, _draw_nonsingular,
           lambda scale: "Non-singularity of the GD map: fraction of random points with |det(I - eta H)| < eps "
                         "against eps (log-log). Slope 1 means a measure-zero singular set crossed linearly "
                         "(Theorems 15, 20).", title="The GD map is non-singular"),
)

