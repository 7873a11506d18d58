"""Which figure each ``gdstab reproduce`` target draws, from which stored data, and the drawing
itself (no computation): shared by :mod:`gdstab.reproduce` (which computes the data) and
:mod:`gdstab.report` (which redraws missing figures)."""

from __future__ import annotations

from pathlib import Path

from .results import open_store

__all__ = ["STORES", "FIGURE_NAMES", "draw", "net_run"]

#: the data a target's figure is drawn from (relative to DIR/data)
STORES = {
    "fig1": "fig1.zarr",
    "fig2": "fig2.zarr",
    "fig3": "nets_gd",
    "fig4": "nets_sgd",
    "fig5": "nets_gd",
    "fig6": "nets_sgd",
    "linear": "linear_check.zarr",
    "nonsingular": "nonsingular.zarr",
    "orbit": "orbit.zarr",
    "eos": "eos.zarr",
    "basin": "basin.zarr",
}

FIGURE_NAMES = {
    "fig1": "fig1", "fig2": "fig2", "fig3": "fig3", "fig4": "fig4", "fig5": "fig5", "fig6": "fig6",
    "linear": "linear_trapping", "nonsingular": "nonsingular", "orbit": "orbit_diagram", "eos": "edge_of_stability",
    "basin": "basin_map",
}


def net_run(target: str, scale: str):
    """The network run (GD or SGD family) behind a figure target."""
    from .experiments import NET_RUNS

    return NET_RUNS[scale]["gd" if target in ("fig3", "fig5") else "sgd"]


def draw(target: str, out: str | Path, scale: str) -> list[Path]:
    """Redraw the figure of ``target`` from the data stored in ``out/data`` (no computation)."""
    from . import plots

    out = Path(out)
    ds = open_store(out / "data" / STORES[target])
    stem = out / "figures" / FIGURE_NAMES[target]
    if target == "fig1":
        fig = plots.fig1(ds)
    elif target == "fig2":
        fig = plots.fig2(ds)
    elif target in ("fig3", "fig4"):
        from .experiments import convergence_table

        run = net_run(target, scale)
        title = f"{run.family}: converging trajectories ({scale} scale)"
        fig = plots.net_convergence(convergence_table(ds), title, run.caption())
    elif target in ("fig5", "fig6"):
        from .experiments import heatmap_data

        run = net_run(target, scale)
        hm = heatmap_data(ds)
        fig = plots.net_heatmaps(hm, f"{hm.attrs['depth']} hidden layers, {run.family}", run.caption())
    elif target == "linear":
        fig = plots.linear_trapping(ds)
    elif target == "orbit":
        fig = plots.orbit_diagram(ds, ds.lyapunov.values)
    elif target == "eos":
        fig = plots.sharpness_trace(ds)
    elif target == "basin":
        fig = plots.basin_map(ds)
    else:
        fig = plots.nonsingular(ds)
    paths = plots.save(fig, stem)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return paths
