"""What the figures show (issue #16 item 7): an undecided trajectory is not drawn as failed."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

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
    assert any(r"\eta = 1" in t for t in labels)  # the dotted vertical line is explained


def test_convergence_figure_has_no_footer_and_its_legend_covers_no_data():
    """#17: no 6-pt footer repeating the caption; the legend sits outside the axes."""
    import xarray as xr

    status = np.ones((2, 3, 4), dtype=np.int8)
    ds = xr.Dataset({"status": (("depth", "eta", "init"), status)}, coords={"depth": [1, 2], "eta": [0.1, 0.5, 1.5]})
    fig = net_convergence(convergence_table(ds), "test", caption="a long caption " * 20)
    assert not fig.texts  # nothing drawn on the figure outside the axes
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    assert legend.x0 >= ax.get_window_extent().x1  # right of the axes, over no data


def _nets_store(loss):
    """A tiny stand-in for the network sweep: (depth, eta, init, record) with statuses."""
    import xarray as xr

    E, n, R = loss.shape
    status = np.ones((1, E, n), np.int8)
    step = np.full((1, E, n), R * 10, np.int32)
    return xr.Dataset({"loss_t": (("depth", "eta", "init", "record"), loss[None]),
                       "step_norm_t": (("depth", "eta", "init", "record"), loss[None] * 1e-3),
                       "status": (("depth", "eta", "init"), status), "decision_step": (("depth", "eta", "init"), step)},
                      coords={"depth": [16], "eta": np.arange(1, E + 1) * 0.1, "record": np.arange(R) * 10})


def test_heatmaps_average_the_survivors_and_count_frozen_diverged_runs_as_diverged():
    """Fig. 5-6 (#17): a cell is the mean over the trajectories not yet diverged, black only
    when all have diverged; a trajectory classified diverged is frozen at finite values (a loss
    of 1e18 at |theta| = max_norm) and counts as diverged from its decision step on."""
    from gdstab.experiments.paper_nets import heatmap_data

    loss = np.full((3, 4, 5), 0.5)
    loss[1, 0, 2:] = np.nan  # one run of eta = 0.2 became non-finite at record 2
    loss[2, :, 3:] = 1e18  # every run of eta = 0.3 frozen at a huge finite loss ...
    ds = _nets_store(loss)
    ds["status"][0, 2, :] = 2  # ... because they were classified diverged at step 30
    ds["decision_step"][0, 2, :] = 30
    hm = heatmap_data(ds)
    np.testing.assert_allclose(hm.loss.values[1], 0.5)  # the three survivors, not a mask
    np.testing.assert_allclose(hm.loss_diverged_fraction.values[1], [0, 0, 0.25, 0.25, 0.25])
    assert np.all(np.isnan(hm.loss.values[2, 3:])) and np.all(hm.loss_diverged_fraction.values[2, 3:] == 1)


def test_heatmap_colour_limits_are_not_set_by_one_outlier_row():
    from gdstab.plots import net_heatmaps, robust_log_limits

    rng = np.random.default_rng(0)
    v = 10 ** rng.uniform(-3, 0, (8, 200))
    v[7] = 1e17  # one row of survivors of a diverging step size
    lo, hi = robust_log_limits(v, rows=np.arange(8) < 7)
    assert 1e-3 <= lo < hi <= 1.0
    lo_all, hi_all = robust_log_limits(v)
    assert hi_all == pytest.approx(1e17)  # what a plain min/max (or quantile over all rows) would give
    import xarray as xr

    hm = xr.Dataset({"loss": (("eta", "step"), v), "step_norm": (("eta", "step"), v),
                     "loss_diverged_fraction": (("eta", "step"), np.where(np.arange(8)[:, None] == 7, 0.5, 0.0) + 0 * v),
                     "step_norm_diverged_fraction": (("eta", "step"), np.zeros_like(v))},
                    coords={"eta": np.arange(1, 9) * 0.1, "step": np.arange(200)})
    fig = net_heatmaps(hm, "test")
    norm = fig.axes[0].collections[0].norm
    assert norm.vmax <= 1.0  # the outlier row is drawn in the top colour, not setting the scale
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["all trajectories diverged", "some trajectories diverged"]


def test_basin_orbit_and_sharpness_figures_name_things_for_a_reader():
    """#17: no internal problem names or class codes; the basin legend sits beside the map;
    bifurcation lines are in the legend; the plane's axes are the coordinates."""
    from gdstab import basins, orbits, problems, sharpness
    from gdstab.plots import basin_map, orbit_diagram, sharpness_trace

    p = problems.get("hyperbola")
    ds = basins.basin_map(p, 0.9, resolution=24, steps=500, classify="sign")
    fig = basin_map(ds)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "converged to x > 0, y > 0" in labels and "converged to x < 0, y < 0" in labels
    assert not any("class" in t for t in labels)
    box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    assert box.y1 <= ax.get_window_extent(fig.canvas.get_renderer()).y0 + 1  # below the map, not over it
    assert ax.get_xlabel() == "x" and ax.get_ylabel() == "y"
    od = orbits.orbit_diagram(p, np.linspace(1.2, 1.26, 13), np.array([[1.2, 0.9]]), transient=3000, record=128,
                              max_period=16)
    fig = orbit_diagram(od)
    assert "hyperbola" not in fig.axes[0].get_title() and r"\frac{1}{2}(1 - x\,y)^2" in fig.axes[0].get_title()
    assert any("bifurcation" in t.get_text() for t in fig.axes[0].get_legend().get_texts())
    tr = sharpness.track_sharpness(problems.get("zhu"), [4.0, 0.1], 0.1, steps=100, every=10)
    assert "zhu" not in sharpness_trace(tr).axes[0].get_title()


def test_fig1_draws_a_final_cycle_as_points_with_arrows():
    """#17: a path that ends on a 2-cycle shows its two points and the steps between them, and
    the start/end markers are explained in the legend (not only in the title)."""
    import xarray as xr

    from gdstab.plots import _final_cycle, fig1

    t = np.arange(300)
    cyc = np.stack([1.0 + 0.1 * (-1.0) ** t + 0.3 * 0.97**t, 1.0 + 0.1 * (-1.0) ** t], 1)  # -> a 2-cycle
    conv = np.stack([1.0 + 0.5 * 0.9**t, 1.0 / (1.0 + 0.5 * 0.9**t)], 1)  # -> a point
    assert _final_cycle(cyc) == 2 and _final_cycle(conv) == 0
    ds = xr.Dataset({"path": (("panel", "start", "step", "coord"), np.stack([np.stack([conv, cyc])])),
                     "region": (("panel", "bound"), np.array([[0.5, 1.5, 0.5, 1.5]]))},
                    coords={"panel": [0], "eta": ("panel", [1.1])}, attrs={"steps": 299})
    fig = fig1(ds)
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert {"start", "end", "period-2 cycle (arrows: one step)"} <= set(labels)
    assert sum(1 for c in ax.get_children() if type(c).__name__ == "Annotation") == 2  # one arrow per step


def test_formula_turns_the_problems_ascii_losses_into_mathtext_that_renders():
    """#17: titles show the loss in symbols, never 'GD on zhu' or '1/4 (x^2 y^2 - 1)^2'."""
    import matplotlib.pyplot as plt

    from gdstab.plots import formula
    from gdstab.problems.catalog import CATALOG

    assert formula("L(x, y) = 1/4 (x^2 y^2 - 1)^2") == r"$L(x, y) = \frac{1}{4}(x^2 y^2 - 1)^2$"
    assert formula("L(theta) = 1/2 theta^T A theta (Hessian = A)") == r"$L(\theta) = \frac{1}{2}\theta^T A \theta$"
    assert formula("L(x) = x^2/2 + x^4/4") == "$L(x) = x^2/2 + x^4/4$"  # an exponent is not a fraction
    words = "mean squared error over all n*C outputs"
    assert formula(words) == words
    entries = CATALOG.values() if isinstance(CATALOG, dict) else CATALOG
    for e in entries:
        text = e.get("normalisation") if isinstance(e, dict) else getattr(e, "normalisation", None)
        if text:
            fig = plt.figure()
            fig.suptitle(formula(text))
            fig.canvas.draw()  # mathtext that does not parse raises here
            plt.close(fig)


def test_house_style_sizes_figures_for_a_paper_embeds_fonts_and_leaves_the_users_settings(tmp_path):
    """#17: every figure is PAGE_WIDTH inches wide with fonts at print size; the PDF embeds its
    TrueType fonts, the SVG draws text as paths; the user's rcParams are untouched."""
    import matplotlib
    import xarray as xr

    from gdstab import plots

    before = dict(matplotlib.rcParams)
    status = np.ones((1, 2, 4), dtype=np.int8)
    ds = xr.Dataset({"status": (("depth", "eta", "init"), status)}, coords={"depth": [1], "eta": [0.1, 0.5]})
    fig = net_convergence(convergence_table(ds), "test")
    assert fig.get_size_inches()[0] == pytest.approx(plots.PAGE_WIDTH)
    assert fig.axes[0].xaxis.label.get_fontsize() == plots.STYLE["axes.labelsize"]
    png, pdf, svg = plots.save(fig, tmp_path / "f")
    assert b"/FontFile2" in pdf.read_bytes()  # TrueType embedded (fonttype 42), not a Type 3 font
    assert "<text" not in svg.read_text()  # text as paths: renders without the font installed
    assert dict(matplotlib.rcParams) == before
