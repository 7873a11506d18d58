"""The field's headline results in ``gdstab reproduce``: the fractal boundary of trainability.

``fractal`` (Sohl-Dickstein 2024, "The boundary of neural network trainability is fractal"): a
network with one hidden tanh layer of width n = 16 in the mean-field parameterisation,
f(x) = (1/n) w₁ᵀ tanh(W₀ x / √d), every weight N(0, 1) at initialisation, trained by full-batch
GD on the MSE (mean of (f − y)²) of Gaussian data (x ~ N(0, I_d), y ~ N(0, 1)) with as many
samples as parameters, with one learning rate per layer: η₀ for W₀, η₁ for w₁.  Every pixel of a
grid over (η₀, η₁) (log-spaced) trains from the same initial point for T = 1000 steps in float64
(gdstab.hypermaps.hyperparameter_map) and is classified: diverged, or not (trained).  A survey
map over two decades of each η locates the boundary; it is then zoomed into three times — each
window centred on the boundary pixel nearest the previous window's centre, 8 times narrower (in
log η) — and its box-counting dimension is estimated on every map with a bootstrap interval
(gdstab.boundary).  At the survey's scale most of the boundary is one smooth-looking curve, so
its interval may include 1; the claim is about the zooms.

The control: the same pipeline on a one-layer linear model (f(x) = wᵀx/√d + b with η₀ for w
and η₁ for b, the same kind of data), whose boundary — where the spectral radius of
I − diag(η) H reaches 1 — is a smooth curve: its dimension must come out 1 within its interval.

Departure at the default scale, stated in the caption: input dimension d = 4 (80 parameters, 80
samples) and 64 × 64 pixels per level so the target runs in about a minute on two cores; the
paper's input dimension is the width (d = 16, 272 parameters), used at ``--scale paper`` with
256 × 256 pixels per level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..basins import BASIN_CODES
from .target import Target, dataset_compute, plot_draw

__all__ = ["FRACTAL", "fractal_problem", "linear_problem", "zoom_windows", "compute_fractal", "key_numbers_fractal"]


@dataclass(frozen=True)
class _Fractal:
    width: int
    d_in: int
    side: int
    levels: int
    zoom: float
    steps: int
    window: tuple[float, float, float, float]  # log10 η₀ low, high, log10 η₁ low, high of level 0
    linear_window: tuple[float, float, float, float]


FRACTAL = {"small": _Fractal(16, 4, 72, 3, 8.0, 1000, (1.5, 3.5, 1.5, 3.5), (-1.0, 1.0, -1.0, 1.0)),
           "paper": _Fractal(16, 16, 288, 4, 8.0, 1000, (1.5, 3.5, 1.5, 3.5), (-1.0, 1.0, -1.0, 1.0))}
DIVERGED = BASIN_CODES["diverged"]


def _data(n_samples: int, d: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n_samples, d)), rng.normal(size=(n_samples,))


def fractal_problem(width: int = 16, d_in: int = 16):
    """The mean-field tanh network of Sohl-Dickstein (2024) on Gaussian data with as many
    samples as parameters; parameter groups "w0" and "w1" (one learning rate each)."""
    import jax
    import jax.numpy as jnp

    from ..problems import Problem

    n, d = width, d_in
    X, Y = _data(n * d + n, d)

    def loss(p, data):
        x, y = data
        return jnp.mean((jnp.tanh(x @ p["w0"] / np.sqrt(d)) @ p["w1"] / n - y) ** 2)

    def init(key):
        k0, k1 = jax.random.split(key)
        return {"w0": jax.random.normal(k0, (d, n)), "w1": jax.random.normal(k1, (n,))}

    return Problem.from_jax(loss, {"w0": jnp.zeros((d, n)), "w1": jnp.zeros(n)}, (X, Y), init_fn=init,
                            name=f"tanh network, width {n}, mean field", normalisation="mean of (f - y)^2")


def linear_problem(d_in: int = 16):
    """The control: f(x) = wᵀx/√d + b on Gaussian data (2d samples), groups "w0" (w) and "w1" (b)."""
    import jax
    import jax.numpy as jnp

    from ..problems import Problem

    d = d_in
    X, Y = _data(2 * d, d, seed=1)

    def loss(p, data):
        x, y = data
        return jnp.mean((x @ p["w0"] / np.sqrt(d) + p["w1"][0] - y) ** 2)

    def init(key):
        return {"w0": jax.random.normal(key, (d,)), "w1": jnp.zeros(1)}

    return Problem.from_jax(loss, {"w0": jnp.zeros(d), "w1": jnp.zeros(1)}, (X, Y), init_fn=init,
                            name="linear model (weights w0, bias w1)", normalisation="mean of (f - y)^2")


def _next_window(window, diverged: np.ndarray, zoom: float):
    """The window of the next level: centred on the boundary pixel nearest the centre of this
    one, ``zoom`` times narrower; None where this level has no boundary."""
    from ..boundary import boundary_mask

    mask = boundary_mask(diverged.astype(np.int8))
    if not mask.any():
        return None
    ys, xs = np.nonzero(mask)
    side_y, side_x = diverged.shape
    k = int(np.argmin((ys - (side_y - 1) / 2) ** 2 + (xs - (side_x - 1) / 2) ** 2))
    x0, x1, y0, y1 = window
    cx = x0 + (x1 - x0) * (xs[k] + 0.5) / side_x
    cy = y0 + (y1 - y0) * (ys[k] + 0.5) / side_y
    hx, hy = (x1 - x0) / (2 * zoom), (y1 - y0) / (2 * zoom)
    return (cx - hx, cx + hx, cy - hy, cy + hy)


def zoom_windows(problem, window, c: _Fractal, theta0: np.ndarray, on_level=None):
    """The survey map of ``window`` and ``c.levels`` zooms: a list of (window, hyperparameter_map
    Dataset), level 0 the survey."""
    from ..hypermaps import hyperparameter_map
    from ..outcomes import Criteria

    out = []
    for level in range(c.levels + 1):
        x = 10.0 ** np.linspace(window[0], window[1], c.side)
        y = 10.0 ** np.linspace(window[2], window[3], c.side)
        ds = hyperparameter_map(problem, ("lr:w0", x), ("lr:w1", y), eta=1.0, theta0=theta0, steps=c.steps,
                                criteria=Criteria())  # absolute: a pixel settles only at 1e-8, so slow divergence is followed
        out.append((window, ds))
        if on_level is not None:
            on_level(level + 1, c.levels + 1)
        nxt = _next_window(window, ds.status.values == DIVERGED, c.zoom)
        if nxt is None:
            break
        window = nxt
    return out


def _dimensions(maps) -> list[dict]:
    from ..boundary import boundary_dimension

    return [boundary_dimension((ds.status.values == DIVERGED).astype(np.int8)).summary() for _, ds in maps]


def compute_fractal(scale: str = "small", config: _Fractal | None = None, on_level=None):
    """The survey and zoom maps of the network and of the linear control, with the boundary
    dimension of each."""
    import jax
    import xarray as xr

    from .. import random as gdstab_random

    c = config or FRACTAL[scale]
    out = {}
    for model, p, window in (("network", fractal_problem(c.width, c.d_in), c.window),
                             ("linear", linear_problem(c.d_in), c.linear_window)):
        with jax.enable_x64(True):
            th0 = np.asarray(p.init(gdstab_random.key(0), 1), dtype=np.float64)[0]
        maps = zoom_windows(p, window, c, th0, on_level=on_level)
        out[model] = (maps, _dimensions(maps), p)
    n = c.levels + 1
    levels = np.arange(n)
    data = {}
    for model, (maps, dims, p) in out.items():
        pad = lambda a, fill: np.concatenate([a, np.full((n - len(a),) + a.shape[1:], fill)])  # noqa: E731
        data[f"{model}_status"] = (("level", "y", "x"), pad(np.stack([ds.status.values for _, ds in maps]), 0))
        data[f"{model}_decision_step"] = (("level", "y", "x"),
                                          pad(np.stack([ds.decision_step.values for _, ds in maps]), -1))
        data[f"{model}_final_loss"] = (("level", "y", "x"), pad(np.stack([ds.final_loss.values for _, ds in maps]), np.nan))
        data[f"{model}_window"] = (("level", "corner"), pad(np.array([w for w, _ in maps], dtype=float), np.nan))
        data[f"{model}_dimension"] = (("level",), pad(np.array([_f(d["dimension"]) for d in dims]), np.nan))
        data[f"{model}_low"] = (("level",), pad(np.array([_f(d["interval"][0]) for d in dims]), np.nan))
        data[f"{model}_high"] = (("level",), pad(np.array([_f(d["interval"][1]) for d in dims]), np.nan))
        data[f"{model}_boundary_pixels"] = (("level",), pad(np.array([d["boundary_pixels"] for d in dims]), 0))
    return xr.Dataset(data, coords={"level": levels, "corner": ["log10_eta0_low", "log10_eta0_high", "log10_eta1_low",
                                                                    "log10_eta1_high"]},
                      attrs={"title": "The fractal boundary of trainability", "width": c.width, "d_in": c.d_in,
                             "parameters": out["network"][2].dim, "samples": out["network"][2].n_samples,
                             "side": c.side, "levels": c.levels, "zoom": c.zoom, "steps": c.steps, "scale": scale,
                             "status_codes": str(BASIN_CODES)})


def _f(x) -> float:
    return float("nan") if x is None else float(x)


def key_numbers_fractal(ds) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for model in ("network", "linear"):
        r = {}
        for lv in ds.level.values:
            if not np.isfinite(ds[f"{model}_window"].values[lv, 0]):
                continue
            d, lo, hi = (float(ds[f"{model}_{k}"].values[lv]) for k in ("dimension", "low", "high"))
            r["survey" if lv == 0 else f"zoom {lv}"] = {
                "window_log10": [float(v) for v in ds[f"{model}_window"].values[lv]],
                "dimension": d, "interval": [lo, hi], "excludes_1": bool(lo > 1 or hi < 1),
                "boundary_pixels": int(ds[f"{model}_boundary_pixels"].values[lv]),
                "diverged_fraction": float(np.mean(ds[f"{model}_status"].values[lv] == DIVERGED))}
        rows[model] = r
    zooms = [v for k, v in rows["network"].items() if k != "survey"]
    fractal = len(zooms) >= 3 and all(v["interval"][0] > 1 for v in zooms)
    smooth = all(v["interval"][0] <= 1 <= v["interval"][1] for v in rows["linear"].values())
    a = ds.attrs
    return {"fractal_boundary_dimension": {
        "value": rows, "reproduced": bool(fractal and smooth),
        "check": "Sohl-Dickstein 2024: every zoom interval above 1 (paper: 1.17-1.98); the smooth control's holds 1",
        "zoom_intervals_exclude_1": bool(fractal),
        "linear_control_contains_1": bool(smooth), "paper_range": [1.17, 1.98],
        "label": "box-counting dimension of the trainability boundary per zoom level (95% interval)",
        "definition": f"one-hidden-layer tanh network, width {a['width']}, mean-field parameterisation, input dimension "
                      f"{a['d_in']}, {a['parameters']} parameters and as many Gaussian samples, MSE; full-batch GD "
                      f"with learning rates eta0 (input layer) and eta1 (output layer), T = {a['steps']} steps in "
                      f"float64 from one initialisation; {a['side']} x {a['side']} pixels log-spaced per map; "
                      f"boundary between diverged and not diverged. survey: the first map; zoom k: centred on the "
                      f"boundary pixel nearest the previous centre, {a['zoom']:g}x narrower in log10 eta. Dimension: "
                      "gdstab.boundary box counting (box sizes dividing the side) with its bootstrap 95% interval. "
                      "linear: the same pipeline on f = w^T x / sqrt(d) + b (eta0 for w, eta1 for b), whose "
                      "boundary is smooth (dimension 1). Sohl-Dickstein 2024 reports 1.17-1.98 across settings",
    }}


# ------------------------------------------------------------------ gdstab reproduce target


def _caption(scale: str) -> str:
    c = FRACTAL[scale]
    n_par = c.width * c.d_in + c.width
    return (f"The fractal boundary of trainability (Sohl-Dickstein 2024). A tanh network with one hidden layer of "
            f"width {c.width} in the mean-field parameterisation, input dimension {c.d_in} ({n_par} parameters; the "
            f"paper's input dimension is the width{', used here' if c.d_in == c.width else ', used at --scale paper'}), "
            f"on {n_par} Gaussian samples, trained by full-batch GD for {c.steps} steps in float64 with learning rate "
            f"eta0 for the input layer and eta1 for the output layer, every pixel from the same initialisation. Top: "
            f"a survey map and {c.levels} zooms ({c.side} x {c.side} pixels each, each {c.zoom:g}x narrower, centred on "
            f"the boundary; the box shows the next window). Blue: trained (shade: final loss, log scale); red: "
            f"diverged (shade: how fast). Titles: the boundary's box-counting dimension with its bootstrap 95% "
            f"interval. Bottom: the same pipeline on a linear model (weights and bias as the two groups), whose "
            f"boundary is smooth: its dimension must be 1.")


TARGETS = (
    Target("fractal", "fractal.zarr", "fractal", dataset_compute(compute_fractal, key_numbers_fractal, "fractal.zarr"),
           plot_draw("trainability_zooms"), _caption,
           title="The fractal boundary of trainability (Sohl-Dickstein 2024)"),
)
