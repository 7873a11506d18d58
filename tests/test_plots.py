"""What the figures show (issue #16 item 7): an undecided trajectory is not drawn as failed."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402

from gdstab.experiments.paper_nets import convergence_table  # noqa: E402
from gdstab.plots import net_convergence  # noqa: E402


def test_convergence_figure_shows_undecided_and_stationary_runs_as_their_own_lines():
    import xarray as xr

    # depth 1: at the first eta every run is still moving at T (bounded = 4), then converged;
    # depth 2: settled away from a minimum (stationary = 5) at the first, diverged (2) at the second
    status = np.array([[[4, 4, 4, 4], [1, 1, 1, 1]], [[5, 5, 5, 5], [2, 2, 2, 2]]], dtype=np.int8)
    ds = xr.Dataset({"status": (("depth", "eta", "init"), status)}, coords={"depth": [1, 2], "eta": [0.1, 0.5]})
    table = convergence_table(ds)
    total = sum(table[f"{k}_fraction"] for k in ("converged", "diverged", "bounded", "stationary"))
    np.testing.assert_allclose(total.values, 1.0)  # every trajectory is one of the plotted outcomes
    fig = net_convergence(table, "test")
    ax = fig.axes[0]
    styles = {(line.get_linestyle(), tuple(np.round(line.get_ydata(), 6))) for line in ax.get_lines()}
    assert (":", (100.0, 0.0)) in styles  # depth 1: undecided, dotted
    assert ("-.", (100.0, 0.0)) in styles  # depth 2: stationary, dash-dotted
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"converged", "diverged", "undecided at T (still moving)", "settled, not a minimum"} <= set(labels)
