"""Figures from result Datasets.  Functions take ``ax=None`` (or ``axes=None``), return the
figure, import matplotlib lazily, and never compute dynamics."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import re

import numpy as np

__all__ = ["fig1", "fig2", "linear_trapping", "net_convergence", "net_heatmaps", "nonsingular", "orbit_diagram",
           "basin_map", "sharpness_trace", "critical_evidence", "save"]


#: the house style of every figure: sized for a two-column paper (``PAGE_WIDTH`` inches across
#: the page, ``COLUMN_WIDTH`` for one column), fonts at the size they print at, fonts embedded
#: in the PDF (TrueType) and drawn as paths in the SVG; applied by :func:`styled` to every
#: figure function and by :func:`save`
COLUMN_WIDTH = 3.4
PAGE_WIDTH = 7.0
STYLE = {
    "font.size": 8, "axes.titlesize": 8.5, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
    "legend.fontsize": 7, "figure.titlesize": 9, "lines.linewidth": 1.2, "lines.markersize": 3,
    "axes.linewidth": 0.6, "xtick.major.width": 0.6, "ytick.major.width": 0.6, "legend.frameon": False,
    "savefig.dpi": 200, "pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "path",
}


def styled(fn):
    """Draw ``fn``'s figure in :data:`STYLE` (the user's own rcParams are left as they were)."""
    import functools

    @functools.wraps(fn)
    def draw(*args, **kwargs):
        import matplotlib

        _plt()
        with matplotlib.rc_context(STYLE):
            return fn(*args, **kwargs)

    return draw


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "pdf", "svg", "module://matplotlib_inline.backend_inline"):
        try:
            matplotlib.use("Agg")
        except Exception:  # pragma: no cover - backend already fixed by the user
            pass
    import matplotlib.pyplot as plt

    return plt


@styled
def fig1(ds, axes=None):
    """Figure 1: GD paths on ½(1 − xy)² for each panel of ``ds`` (from
    :func:`gdstab.experiments.compute_fig1`), the minima xy = 1 in grey and M_WS in red."""
    n = ds.sizes["panel"]
    fig, axes = _panels(axes, 1, n, (PAGE_WIDTH, 3.7))
    for i, ax in enumerate(axes):
        eta = float(ds.eta[i])
        x0, x1, y0, y1 = (float(v) for v in ds.region.values[i])
        xs = np.linspace(max(x0, 1e-3), x1, 800)
        ys = 1 / xs
        ax.plot(xs, ys, color="0.6", lw=1.2, label="minima xy = 1")
        ws = xs**2 + ys**2 <= 2 / eta
        if ws.any():
            ax.plot(np.where(ws, xs, np.nan), np.where(ws, ys, np.nan), color="red", lw=3,
                    label=r"$M_{WS}$: $x^2+y^2 \leq 2/\eta$")
        cycles = 0
        for j, path in enumerate(ds.path.values[i]):
            if np.all(np.isnan(path)):
                continue
            fin = path[np.isfinite(path).all(axis=1)]
            p = _final_cycle(fin)
            ax.plot(fin[:, 0], fin[:, 1], "-", color="C0", lw=0.6, alpha=0.8 if p < 2 else 0.35,
                    label="GD path" if j == 0 else None)
            ax.plot(fin[0, 0], fin[0, 1], "o", color="C0", ms=2.5, label="start" if j == 0 else None)
            if p >= 2:  # the orbit ends on a cycle: its points, with arrows for one step each
                pts = fin[-p:]
                ax.plot(pts[:, 0], pts[:, 1], "D", color="C1", ms=5, zorder=5,
                        label=f"period-{p} cycle (arrows: one step)" if not cycles else None)
                for k in range(p):
                    a0, a1 = pts[k], pts[(k + 1) % p]
                    ax.annotate("", xy=a1, xytext=a0, arrowprops={"arrowstyle": "->", "color": "C1", "lw": 1.2,
                                                                  "shrinkA": 4, "shrinkB": 4})
                cycles += 1
            else:
                ax.plot(fin[-1, 0], fin[-1, 1], "x", color="k", ms=4, label="end" if j == 0 else None)
        ax.set_xlim(x0, x1)
        ax.set_ylim(y0, y1)
        ax.set_xlabel("x")
        ax.set_ylabel("y")
        empty = "" if ws.any() else r", $M_{WS}=\emptyset$"
        label = "abcdefgh"[i]
        ax.set_title(f"({label}) $\\eta = {eta:g}${empty}")
        ax.legend(loc="best", fontsize=7)  # where it covers the fewest marks
    fig.suptitle(r"GD on $L(x,y) = \frac{1}{2}(1-xy)^2$" + f", {ds.attrs.get('steps', '?')} steps (paths leaving "
                 "the panel are clipped)", fontsize=10)
    fig.tight_layout()
    return fig


def _final_cycle(path: np.ndarray, max_period: int = 8, rtol: float = 1e-3) -> int:
    """The period p >= 2 of the cycle a drawn path ends on (its last 4p points repeat every p
    steps to ``rtol`` (1 + |θ|)), or 0 (for drawing only: the classification is the engine's)."""
    for p in range(1, max_period + 1):
        tail = path[-4 * p:]
        if len(tail) < 4 * p:
            return 0
        scale = 1 + np.abs(tail).max()
        if np.max(np.abs(tail[p:] - tail[:-p])) <= rtol * scale:
            return p if p >= 2 else 0
    return 0


def formula(text: str) -> str:
    """The loss of a problem's normalisation string (``L(x, y) = 1/4 (x^2 y^2 - 1)^2``, with any
    remark after a colon or in a closing parenthesis left out) as matplotlib mathtext, ``1/4 (``
    as a fraction and ``theta`` as θ; text that is not such a formula (a network's description)
    is returned as it is."""
    import re

    head = re.sub(r"\s*\([^()]*[A-Za-z]{3,}[^()]*\)\s*$", "", (text or "").split(":")[0])
    head = re.sub(r"\btheta\b", r"\\theta", head)
    if not head or not re.fullmatch(r"[A-Za-z0-9\s()=^+\-*/.,\\]+", head) or re.search(
            r"(?<!\\)\b[A-Za-z]{3,}", head):
        return text
    t = re.sub(r"(?<![\^\w])(\d+)/(\d+)\s*\(", r"\\frac{\1}{\2}(", head).replace("*", r"\,")
    t = re.sub(r"(?<![\^\w])(\d+)/(\d+)\s+", r"\\frac{\1}{\2}", t)
    return f"${t}$"


def _axes(ax, figsize):
    if ax is None:
        return _plt().subplots(figsize=figsize)
    return ax.figure, ax


def _panels(axes, nrows: int, ncols: int, figsize, **kw):
    """(figure, 1-D array of axes): new panels, or the figure of the ``axes`` given."""
    if axes is None:
        fig, axes = _plt().subplots(nrows, ncols, figsize=figsize, **kw)
    else:
        fig = np.atleast_1d(axes)[0].figure
    return fig, np.atleast_1d(axes)


def _trapping_bars(ax, ds, label: str, **kw) -> None:
    """The trapping fraction of ``ds`` against η with its Wilson 95% interval as error bars."""
    f = ds.trapping_fraction.values
    yerr = np.vstack([f - ds.trapping_low.values, ds.trapping_high.values - f])
    ax.errorbar(ds.eta.values, f, yerr=yerr, fmt="o-", ms=3, capsize=2, label=label, **kw)


def _box_text(box) -> str:
    """[-2, 2, -2, 2] as "$[-2, 2]^2$" (a cube), else "[-2, 2] x [0, 1]"."""
    b = [float(v) for v in box]
    pairs = [(b[i], b[i + 1]) for i in range(0, len(b), 2)]
    if len(set(pairs)) == 1:
        lo, hi = pairs[0]
        return rf"$[{lo:g}, {hi:g}]^{{{len(pairs)}}}$"
    return r" $\times$ ".join(f"[{lo:g}, {hi:g}]" for lo, hi in pairs)


@styled
def fig2(ds, ax=None):
    """Figure 2: normalised length of M_WS and the trapping fraction (with Wilson 95% bars)
    against η, from :func:`gdstab.experiments.compute_fig2`."""
    fig, ax = _axes(ax, (PAGE_WIDTH, 3.9))
    ax.plot(ds.eta.values, ds.ws_length_normalised.values, "-", color="red",
            label=r"length of $M_{WS}$ / length at $\eta=0.1$ (exact)")
    _trapping_bars(ax, ds, f"trapping fraction ({ds.attrs['inits']} inits uniform in {_box_text(ds.attrs['box'])}, "
                           f"95% Wilson)", color="C0")
    ax.axvline(1.0, color="0.5", ls=":", lw=1, label=r"$\eta_E = \eta^* = 1$ ($M_{WS}$ empty above)")
    ax.set_xlabel(r"step size $\eta$")
    ax.set_ylabel("trapping fraction; normalised length")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(r"$\frac{1}{2}(1-xy)^2$: size of $M_{WS}$ and of the trapping region")
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return fig


@styled
def linear_trapping(ds, ax=None):
    """Trapping fraction against η for a deep linear network, with η* marked (from
    :func:`gdstab.experiments.linear_dynamics.compute_linear_trapping`)."""
    fig, ax = _axes(ax, (PAGE_WIDTH, 3.8))
    _trapping_bars(ax, ds, "converged (95% Wilson)")
    ax.plot(ds.eta.values, ds.diverged_fraction.values, "s--", ms=3, color="C3", label="diverged")
    for var, style, colour, label in (("periodic_fraction", "^:", "C1", "periodic"),
                                      ("bounded_fraction", "v:", "C8", "undecided at T (still moving)"),
                                      ("stationary_fraction", "d-.", "C7", "settled, not a minimum")):
        if var in ds and np.any(ds[var].values > 0):  # every outcome is on the figure
            ax.plot(ds.eta.values, ds[var].values, style, ms=3, color=colour, label=label)
    ax.axvline(ds.attrs["eta_star"], color="k", ls=":", label=rf"$\eta^* = {ds.attrs['eta_star']:.4g}$")
    ax.set_xlabel(r"step size $\eta$")
    ax.set_ylabel("fraction of initialisations")
    ax.set_ylim(-0.02, 1.05)
    ax.set_title(f"deep linear network {tuple(ds.attrs['dims'])}: {ds.attrs['inits']} inits, T = {ds.attrs['steps']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def net_convergence(table, title: str, caption: str = "", ax=None):
    """Figures 3–4: percentage of trajectories that converge against η, one curve per depth
    (solid, Wilson 95% bars), from :func:`gdstab.experiments.paper_nets.convergence_table`; in
    the same colour the percentage that diverged (dashed), the percentage still undecided at
    the step budget (dotted: ``bounded``, still moving at T -- neither converged nor failed) and
    the percentage that settled where L − L* > f_tol (dash-dotted: ``stationary``, e.g. a
    collapsed deep network on a plateau).
    The legend explains every line style and the dotted vertical line at η = 1.  Step sizes
    without computed trajectories (an adaptive grid's unused candidates) are left out; a new
    figure has a lower panel with each point's number of trajectories.  ``caption`` is
    not drawn into the figure (a footer at 6 pt is unreadable at page size and repeats what the
    report prints under the figure)."""
    from matplotlib.lines import Line2D

    axn = None
    if ax is None:
        fig, (ax, axn) = _plt().subplots(2, 1, figsize=(PAGE_WIDTH, 4.6), sharex=True,
                                        gridspec_kw={"height_ratios": [4, 1.1]})
    else:
        fig = ax.figure
    handles = []
    for i, d in enumerate(table.depth.values):
        row = table.sel(depth=d)
        row = row.isel(eta=np.flatnonzero(row.trajectories.values > 0))
        f = 100 * row.converged_fraction.values
        yerr = 100 * np.vstack([row.converged_fraction.values - row.converged_low.values,
                                row.converged_high.values - row.converged_fraction.values])
        ax.errorbar(row.eta.values, f, yerr=yerr, fmt="o-", ms=3, capsize=2, color=f"C{i}")
        if axn is not None:  # (depths nudged apart along η by a few per cent, so equal counts stay visible)
            nudge = 10 ** (0.012 * (i - (table.sizes["depth"] - 1) / 2))
            axn.plot(row.eta.values * nudge, row.trajectories.values, "o", ms=2.5, color=f"C{i}")
        ax.plot(row.eta.values, 100 * row.diverged_fraction.values, "--", lw=1, color=f"C{i}", alpha=0.7)
        for var, style in (("bounded_fraction", ":"), ("stationary_fraction", "-.")):
            if var in row and np.nanmax(row[var].values) > 0:
                ax.plot(row.eta.values, 100 * row[var].values, style, lw=1.2, color=f"C{i}", alpha=0.9)
        handles.append(Line2D([], [], color=f"C{i}", marker="o", ms=3, label=f"{int(d)} hidden"))
    handles += [Line2D([], [], color="0.3", ls="-", label="converged"),
                Line2D([], [], color="0.3", ls="--", label="diverged"),
                Line2D([], [], color="0.3", ls=":", label="undecided at T (still moving)"),
                Line2D([], [], color="0.3", ls="-.", label="settled, not a minimum"),
                Line2D([], [], color="0.5", ls=":", lw=0.8, label=r"$\eta = 1$")]
    ax.axvline(1.0, color="0.5", ls=":", lw=0.8)
    ax.set_xscale("log")
    ax.set_ylabel("% of trajectories")
    ax.set_ylim(-2, 105)
    ax.set_title(title, loc="left")
    ax.legend(handles=handles, fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    (axn if axn is not None else ax).set_xlabel(r"step size $\eta$")
    if axn is not None:
        axn.set_ylabel("trajectories")
        axn.set_ylim(0, 1.15 * max(1, float(table.trajectories.max())))
        axn.axvline(1.0, color="0.5", ls=":", lw=0.8)
    fig.tight_layout()
    return fig


#: colour limits of heatmaps: these quantiles of the finite positive values (one outlier row or
#: the step-0 column must not flatten the rest); values beyond are drawn in the end colours
HEATMAP_QUANTILES = (0.01, 0.99)


def robust_log_limits(values: np.ndarray, quantiles=HEATMAP_QUANTILES, rows=None) -> tuple[float, float]:
    """Colour limits for a logarithmic heatmap: the given quantiles of the finite positive
    values, at least a factor 10 apart.  With ``rows`` (a boolean mask over the first axis), only
    those rows set the limits (e.g. the step sizes where no trajectory diverged: survivors of a
    diverging step size, with losses of 10¹⁸, are then drawn in the top colour instead of
    flattening every other row)."""
    v = np.asarray(values, dtype=float)
    if rows is not None and np.any(rows):
        v = v[np.asarray(rows)]
    v = v[np.isfinite(v) & (v > 0)]
    if not v.size:
        return 1e-12, 1.0
    lo, hi = np.exp(np.quantile(np.log(v), quantiles))
    return float(lo), float(max(hi, lo * 10))


@styled
def net_heatmaps(hm, title: str, caption: str = "", axes=None):
    """Figures 5–6: heatmaps (η × step, logarithmic colour) of the mean loss and the mean
    η‖∇L‖ over the trajectories still finite, from
    :func:`gdstab.experiments.paper_nets.heatmap_data`: black where every trajectory had
    diverged, hatched where some had; colour limits are the 1st–99th percentiles over the step
    sizes where no trajectory diverged (:func:`robust_log_limits`), values beyond them in the
    end colours (arrows on the bar).  The
    rows are the step sizes of the grid, which is not evenly spaced.  ``caption`` is not drawn
    into the figure (the report prints it under the figure)."""
    plt = _plt()
    from matplotlib.colors import LogNorm
    from matplotlib.patches import Patch

    fig, axes = _panels(axes, 1, 2, (PAGE_WIDTH, 3.5))
    etas = hm.eta.values
    steps = hm.step.values
    rows = np.arange(len(etas))
    for ax, var, label in zip(axes, ("loss", "step_norm"), ("(a) mean loss", r"(b) mean $\eta\,\|\nabla L\|$")):
        a = np.ma.masked_invalid(hm[var].values)
        some = hm[f"{var}_diverged_fraction"].values
        vmin, vmax = robust_log_limits(a.filled(np.nan), rows=~np.any(some > 0, axis=1))
        cmap = plt.get_cmap("viridis").with_extremes(bad="black")
        im = ax.pcolormesh(steps, rows, np.ma.masked_less_equal(a, 0), shading="nearest",
                           norm=LogNorm(vmin=vmin, vmax=vmax), cmap=cmap)
        partly = (some > 0) & (some < 1)
        if partly.any():
            ax.contourf(steps, rows, partly.astype(float), levels=[0.5, 1.5], colors="none", hatches=["////"])
        ax.set_yticks(rows)
        ax.set_yticklabels([f"{e:g}" for e in etas], fontsize=7)
        ax.set_xlabel("step")
        ax.set_ylabel(r"step size $\eta$ (grid rows, not to scale)")
        ax.set_title(label)
        fig.colorbar(im, ax=ax, extend="both")
    handles = [Patch(facecolor="black", label="all trajectories diverged"),
               Patch(facecolor="white", edgecolor="0.3", hatch="////", label="some trajectories diverged")]
    fig.legend(handles=handles, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{title}: means over the trajectories not yet diverged")
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return fig


@styled
def nonsingular(ds, ax=None):
    """Non-singularity check: fraction of random points with |det(I − ηH)| < ε against ε
    (log-log), one line per case with its fitted slope, and the slope-1 reference."""
    fig, ax = _axes(ax, (PAGE_WIDTH, 3.8))
    labels = ds.attrs["case_labels"].split(" | ")
    eps = ds.eps.values
    for i in range(ds.sizes["case"]):
        f = ds.fraction.values[i]
        ok = f > 0
        text = re.sub(r"\[(-?[\d.]+),\s*(-?[\d.]+)\]\^(\d+)", r"$[\1, \2]^{\3}$", labels[i])
        ax.loglog(eps[ok], f[ok], "o-", color=f"C{i}",
                  label=rf"{text}, $\eta = {float(ds.eta[i]):g}$: slope {float(ds.slope[i]):.3f} "
                        rf"$\pm$ {float(ds.slope_stderr[i]):.3f}")
        if ok.any():
            j = int(np.flatnonzero(ok)[0])
            ax.loglog(eps, f[j] * eps / eps[j], ":", color=f"C{i}", lw=1)
    ax.set_xlabel(r"$\varepsilon$")
    ax.set_ylabel(r"fraction with $|\det(I-\eta H(\theta))| < \varepsilon$")
    ax.set_title(f"non-singularity of G: {ds.attrs['points']} random points per case (dotted: slope 1)", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def orbit_diagram(ds, lyap=None, axes=None):
    """Orbit (bifurcation) diagram from :func:`gdstab.orbits.orbit_diagram`: the recorded
    values of the observable against η (one dot per recorded iterate), the bifurcation points
    as dotted lines; with ``lyap`` (a (η,) array of largest Lyapunov exponents) a second panel."""
    from .orbits import bifurcation_points

    n = 2 if lyap is not None else 1
    fig, axes = _panels(axes, n, 1, (PAGE_WIDTH, 3.6 + 1.8 * (n - 1)), sharex=True,
                        gridspec_kw={"height_ratios": [3, 1.3][:n]})
    ax = axes[0]
    eta = ds.eta.values
    vals = ds.value.values  # (eta, init, record)
    E = np.repeat(eta, vals.shape[1] * vals.shape[2])
    V = vals.reshape(-1)
    ok = np.isfinite(V)
    ax.plot(E[ok], V[ok], ",", color="k", alpha=0.35, rasterized=True)
    for i, b in enumerate(bifurcation_points(ds)[:8]):
        ax.axvline(b["eta"], color="C3", lw=0.6, ls=":",
                   label="bifurcation (dominant period changes)" if i == 0 else None)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower left")
    lost = np.all(~np.isfinite(vals), axis=2)  # (eta, init): trajectories that diverged there
    note = (f"; runs missing at a step size diverged there ({int(lost.sum())} of {lost.size})" if lost.any() else "")
    rule = ds.attrs.get("optimizer", "gd")
    ax.set_ylabel(ds.attrs.get("observable", "value"))
    ax.set_title(f"orbit diagram of {'GD' if rule == 'gd' else rule} on {formula(ds.attrs.get('normalisation', ''))}\n"
                 f"{vals.shape[2]} iterates after {ds.attrs.get('transient')} steps, {vals.shape[1]} "
                 f"initialisation{'s' if vals.shape[1] != 1 else ''}{note}", fontsize=8)
    if lyap is not None:
        ax2 = axes[1]
        ax2.plot(eta, lyap, ".", color="C0", ms=2)  # one value per sampled step size: no lines across gaps
        ax2.axhline(0, color="0.5", lw=0.6)
        ax2.set_ylabel("largest Lyapunov\nexponent")
        ax2.set_xlabel(r"step size $\eta$")
    else:
        ax.set_xlabel(r"step size $\eta$")
    fig.tight_layout()
    return fig


@styled
def basin_map(ds, axes=None):
    """Basin map from :func:`gdstab.basins.basin_map`: outcome per pixel (converged by minimum
    class, periodic, bounded, diverged) and the step at which it was decided."""
    from matplotlib.colors import ListedColormap

    from .basins import BASIN_CODES

    fig, axes = _panels(axes, 1, 2, (PAGE_WIDTH, 4.0))
    a, b = ds.a.values, ds.b.values
    ext = (a[0], a[-1], b[0], b[-1])
    status = ds.status.values
    cls = ds.minimum_class.values
    classes = sorted(int(c) for c in np.unique(cls[cls >= 0]))
    # one colour per minimum class, then periodic, bounded, stationary, diverged
    label = np.full(status.shape, -1, dtype=int)
    names, colours = [], []
    palette = ["#4c72b0", "#55a868", "#8172b3", "#64b5cd", "#937860", "#da8bc3"]
    for i, c in enumerate(classes):
        label[(status == BASIN_CODES["converged"]) & (cls == c)] = len(names)
        names.append(f"converged to {_class_name(ds, c)}" if len(classes) > 1 else "converged")
        colours.append(palette[i % len(palette)])
    for key, col in (("periodic", "#dd8452"), ("bounded", "#ccb974"), ("stationary", "#8c8c8c"), ("diverged", "#c44e52")):
        m = status == BASIN_CODES[key]
        if m.any():
            label[m] = len(names)
            names.append(key)
            colours.append(col)
    ax = axes[0]
    if names:
        ax.imshow(np.ma.masked_less(label, 0), origin="lower", extent=ext, aspect="auto",
                  cmap=ListedColormap(colours), vmin=-0.5, vmax=len(names) - 0.5, interpolation="nearest")
    from matplotlib.patches import Patch

    ax.legend(handles=[Patch(color=c, label=n) for c, n in zip(colours, names)], fontsize=7, loc="upper center",
              bbox_to_anchor=(0.5, -0.18), ncol=2, borderaxespad=0)  # below the map, never over a basin
    rule = ds.attrs.get("optimizer", "gd")
    ax.set_title(f"outcome of {'GD' if rule == 'gd' else rule} at $\\eta = {ds.attrs.get('eta'):g}$", fontsize=9)
    ax2 = axes[1]
    im = ax2.imshow(np.log10(1 + ds.decision_step.values.astype(float)), origin="lower", extent=ext,
                    aspect="auto", cmap="viridis", interpolation="nearest")
    fig.colorbar(im, ax=ax2, label=r"$\log_{10}(1 + $decision step$)$")
    ax2.set_title("time to decide", fontsize=9)
    xl, yl = _plane_labels(ds)
    for x in axes:
        x.set_xlabel(xl)
        x.set_ylabel(yl)
    fig.suptitle(formula(ds.attrs.get("normalisation", "")), fontsize=9)
    fig.tight_layout()
    return fig


def _plane_labels(ds) -> tuple[str, str]:
    """Axis labels of a basin map: the coordinates themselves when the plane is spanned by two
    coordinate axes through the origin, else the plane's parameters a, b."""
    u, v = np.asarray(ds.attrs.get("direction_u", [])), np.asarray(ds.attrs.get("direction_v", []))
    c = np.asarray(ds.attrs.get("center", []))
    unit = [np.flatnonzero(w) for w in (u, v)]
    if u.size and c.size and not np.any(c) and all(len(i) == 1 for i in unit) and u[unit[0][0]] == 1 and \
            v[unit[1][0]] == 1:
        names = ["x", "y"] if u.size == 2 else [rf"$\theta_{{{unit[0][0] + 1}}}$", rf"$\theta_{{{unit[1][0] + 1}}}$"]
        return (names[unit[0][0]], names[unit[1][0]]) if u.size == 2 else (names[0], names[1])
    return r"$a$ (along $u$)", r"$b$ (along $v$)"


def _class_name(ds, c: int) -> str:
    """A minimum class in words: the sign pattern of the final point for classify="sign"."""
    if ds.attrs.get("classify") != "sign":
        return f"minimum class {c}"
    d = len(ds.attrs.get("direction_u", [])) or 2
    names = ["x", "y"] if d == 2 else [f"θ{i + 1}" for i in range(d)]
    return ", ".join(f"{n} {'>' if (c >> i) & 1 else '<'} 0" for i, n in enumerate(names))


@styled
def sharpness_trace(ds, axes=None):
    """Loss and sharpness against the step from :func:`gdstab.sharpness.track_sharpness`, with
    the stability threshold 2/η (edge of stability)."""
    fig, axes = _panels(axes, 2, 1, (PAGE_WIDTH, 5.0), sharex=True)
    step = ds.step.values
    axes[0].semilogy(step, np.maximum(ds.loss.values, 1e-300), color="C0")
    axes[0].set_ylabel("loss")
    name = ds.attrs.get("optimizer", "gd")
    axes[0].set_title(f"{'GD' if name == 'gd' else name} on {formula(ds.attrs.get('normalisation', ds.attrs.get('problem', '')))} "
                      f"at $\\eta = {ds.attrs['eta']:g}$", fontsize=9)
    axes[1].plot(step, ds.sharpness.values, color="C1", label=r"sharpness $\lambda_{max}(H)$")
    rule = ds.attrs.get("optimizer", "gd")
    if "preconditioned_sharpness" in ds:
        axes[1].plot(step, ds.preconditioned_sharpness.values, color="C4",
                     label=r"preconditioned sharpness $\lambda_{max}(P^{-1}H)$")
        axes[1].set_yscale("log")
    c = ds.attrs["threshold"] * ds.attrs["eta"]
    what = r"$2/\eta$" if rule == "gd" else rf"$c/\eta$ ({rule}: c = {c:.3g})"
    axes[1].axhline(ds.attrs["threshold"], color="k", ls="--", lw=1, label=what)
    if "gradient_flow_sharpness" in ds.attrs:
        axes[1].axhline(ds.attrs["gradient_flow_sharpness"], color="C2", ls=":", lw=1,
                        label=f"sharpness of the minimum gradient flow reaches ({ds.attrs['gradient_flow_sharpness']:.3g})")
    axes[1].set_ylabel("sharpness")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    return fig


@styled
def gradient_flow(flow_ds, distance_ds=None, axes=None):
    """The loss along the gradient flow against t (one line per initial point; with
    ``distance_ds`` from :func:`gdstab.flow.distance_to_flow`, GD's loss at t = kη dashed), and
    in a second panel GD's distance to the flow against the step, its departures marked."""
    n = 1 if distance_ds is None else 2
    fig, axes = _panels(axes, 1, n, (PAGE_WIDTH if n == 2 else COLUMN_WIDTH, 2.8))
    t = flow_ds.t.values
    for i in range(flow_ds.sizes["trajectory"]):
        c = f"C{i % 10}"
        axes[0].semilogy(t, np.maximum(flow_ds.loss.values[i], 1e-300), color=c, lw=1.2,
                         label="gradient flow" if i == 0 else None)
        if distance_ds is not None:
            with np.errstate(invalid="ignore"):
                gl = np.where(np.isfinite(distance_ds.gd_loss.values[i]), distance_ds.gd_loss.values[i], np.nan)
            axes[0].semilogy(distance_ds.t.values, np.maximum(gl, 1e-300), color=c, ls="--", lw=1,
                             label=rf"GD, $\eta = {distance_ds.attrs['eta']:g}$" if i == 0 else None)
    fl = flow_ds.loss.values[np.isfinite(flow_ds.loss.values) & (flow_ds.loss.values > 0)]
    if fl.size:  # a diverging GD run must not squash the flow's curves
        axes[0].set_ylim(max(fl.min() / 10, 1e-300), fl.max() * 1e3)
    axes[0].set_xlabel("t (flow time; GD step k at t = kη)")
    axes[0].set_ylabel("loss")
    axes[0].set_title(f"gradient flow ({flow_ds.attrs['solver']})", loc="left", fontsize=8)
    axes[0].legend(fontsize=7)
    if distance_ds is not None:
        ax = axes[1]
        step = distance_ds.step.values
        for i in range(distance_ds.sizes["trajectory"]):
            d = distance_ds.distance.values[i]
            ax.semilogy(step, np.where(np.isfinite(d) & (d > 0), d, np.nan), color=f"C{i % 10}", lw=1.2)
            k = int(distance_ds.departure.values[i])
            if k >= 0:
                ax.axvline(k, color=f"C{i % 10}", ls=":", lw=0.8)
        ax.set_xlabel("GD step k")
        ax.set_ylabel(r"$\|\theta_{GD}(k) - \theta_{GF}(k\eta)\|$")
        ax.set_title(f"distance to the flow (dotted: left it, tolerance {distance_ds.attrs['rtol']:g})",
                     loc="left", fontsize=8)
    fig.tight_layout()
    return fig


@styled
def spectral_density(ds, top=None, eta=None, ax=None):
    """The Hessian's eigenvalue density (stochastic Lanczos quadrature, from
    :meth:`gdstab.spectrum.DensityResult.to_xarray`) on a log axis, with the ``top`` eigenvalues
    as ticks and the stability threshold 2/η when ``eta`` is given."""
    fig, ax = _axes(ax, (COLUMN_WIDTH * 1.5, 2.6))
    g, f = ds.eigenvalue.values, ds.density.values
    floor = max(f.max() * 1e-8, 1e-300)
    ax.semilogy(g, np.maximum(f, floor), color="C0", lw=1.2)
    ax.set_ylim(floor, f.max() * 3)
    if top is not None:
        for i, lam in enumerate(np.atleast_1d(top)):
            ax.axvline(lam, color="C3", lw=0.6, ymax=0.08, label="top eigenvalues (Lanczos)" if i == 0 else None)
    if eta is not None:
        ax.axvline(2.0 / eta, color="k", ls="--", lw=1, label=rf"$2/\eta$ ($\eta = {eta:g}$)")
    ax.set_xlabel(r"eigenvalue $\lambda$ of $H$")
    ax.set_ylabel("density (integrates to 1)")
    ax.set_title(f"SLQ: {ds.attrs['probes']} probes x {ds.attrs['lanczos_steps']} Lanczos steps, "
                 f"$\\sigma = {ds.attrs['sigma']:.3g}$", loc="left", fontsize=8)
    if top is not None or eta is not None:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


@styled
def boundary_scaling(result, axes=None):
    """The two fits of :func:`gdstab.boundary.boundary_dimension` on log-log axes: box counts
    N(s) against the box side s (slope −D), and the uncertain fraction f(ε) against ε
    (slope α, D = 2 − α), each with its fitted line."""
    fig, axes = _panels(axes, 1, 2, (PAGE_WIDTH, 2.8))
    s, n = np.asarray(result.box_sizes, float), np.asarray(result.box_counts, float)
    e, f = np.asarray(result.eps, float), np.asarray(result.uncertain_fraction, float)
    axes[0].loglog(s, n, "o", color="C0", ms=4)
    axes[1].loglog(e, f, "o", color="C1", ms=4)
    if result.status == "ok":
        c0 = np.mean(np.log(n) + result.dimension * np.log(s))
        axes[0].loglog(s, np.exp(c0 - result.dimension * np.log(s)), color="C0", lw=1,
                       label=f"D = {result.dimension:.3f} [{result.interval[0]:.3f}, {result.interval[1]:.3f}]")
        c1 = np.mean(np.log(f) - result.alpha * np.log(e))
        axes[1].loglog(e, np.exp(c1 + result.alpha * np.log(e)), color="C1", lw=1,
                       label=rf"$\alpha$ = {result.alpha:.3f}: D = 2 − α = {result.dimension_from_alpha:.3f} "
                       f"[{result.dimension_from_alpha_interval[0]:.3f}, {result.dimension_from_alpha_interval[1]:.3f}]")
        for ax in axes:
            ax.legend(fontsize=7)
    from matplotlib.ticker import NullFormatter

    for ax in axes:  # labelled minor ticks of a short log axis overlap
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0].set_xlabel("box side s (pixels)")
    axes[0].set_ylabel("boxes holding the boundary N(s)")
    axes[0].set_title("box counting", loc="left", fontsize=8)
    axes[1].set_xlabel(r"$\varepsilon$ (pixels)")
    axes[1].set_ylabel(r"uncertain fraction f($\varepsilon$)")
    axes[1].set_title(f"final-state sensitivity ({result.status})", loc="left", fontsize=8)
    fig.tight_layout()
    return fig


def _is_log_axis(v: np.ndarray) -> bool:
    return bool(v.size > 2 and np.all(v > 0) and np.allclose(np.diff(np.log(v)), np.log(v[1] / v[0]), rtol=1e-6))


@styled
def hyperparameter_map(ds, axes=None):
    """A map from :func:`gdstab.hypermaps.hyperparameter_map`: the outcome of the training run
    at every pixel (converged, periodic, bounded, stationary, diverged) and its final loss
    (log scale); log-spaced axes are drawn on log axes."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    from .basins import BASIN_CODES

    fig, axes = _panels(axes, 1, 2, (PAGE_WIDTH, 3.6))
    x, y, status = ds.x.values, ds.y.values, ds.status.values
    label = np.full(status.shape, -1)
    names, colours = [], []
    for key, col in (("converged", "#4c72b0"), ("periodic", "#dd8452"), ("bounded", "#ccb974"),
                     ("stationary", "#8c8c8c"), ("diverged", "#c44e52")):
        m = status == BASIN_CODES[key]
        if m.any():
            label[m] = len(names)
            names.append(key)
            colours.append(col)
    axes[0].pcolormesh(x, y, np.ma.masked_less(label, 0), cmap=ListedColormap(colours), vmin=-0.5,
                       vmax=len(names) - 0.5, shading="nearest")
    axes[0].legend(handles=[Patch(color=c, label=n) for c, n in zip(colours, names)], fontsize=7, loc="upper center",
                   bbox_to_anchor=(0.5, -0.2), ncol=3, borderaxespad=0)
    rule = ds.attrs.get("optimizer", "gd")
    eta = ds.attrs.get("eta")
    axes[0].set_title(f"outcome of {'GD' if rule == 'gd' else rule}"
                      + ("" if eta == "axis" else f" at $\\eta = {float(eta):g}$"), loc="left", fontsize=8)
    fl = ds.final_loss.values
    with np.errstate(divide="ignore", invalid="ignore"):
        shown = np.where(np.isfinite(fl) & (fl > 0) & (status != BASIN_CODES["diverged"]), np.log10(fl), np.nan)
    im = axes[1].pcolormesh(x, y, shown, cmap="viridis", shading="nearest")
    fig.colorbar(im, ax=axes[1], label=r"$\log_{10}$ final loss (blank: diverged)")
    axes[1].set_title("final loss", loc="left", fontsize=8)
    for ax in axes:
        ax.set_xlabel(ds.attrs["x_name"])
        ax.set_ylabel(ds.attrs["y_name"])
        if _is_log_axis(x):
            ax.set_xscale("log")
        if _is_log_axis(y):
            ax.set_yscale("log")
    fig.tight_layout()
    return fig


@styled
def momentum_trapping(ds, axes=None):
    """Trapping fraction against η for heavy ball and Nesterov at several β (Wilson 95 % bars),
    with the theory's critical step size η*(rule, β) dotted in the same colour (from
    :func:`gdstab.experiments.optimizer_dynamics.compute_momentum`)."""
    fig, axes = _panels(axes, 1, 2, (PAGE_WIDTH, 3.2), sharey=True)
    names = {"momentum": "heavy ball", "nesterov": "Nesterov"}
    rules = [r.strip() for r in ds.attrs["rule_labels"].split(",")]
    eta = ds.eta.values
    for i, (ax, rule) in enumerate(zip(axes, rules)):
        for j, beta in enumerate(ds.beta.values):
            f = ds.trapping_fraction.values[i, j]
            yerr = np.vstack([f - ds.trapping_low.values[i, j], ds.trapping_high.values[i, j] - f])
            ax.errorbar(eta, f, yerr=yerr, fmt="o-", ms=3, lw=1, capsize=2, color=f"C{j}",
                        label=rf"$\beta = {beta:g}$")
            es = float(ds.eta_star.values[i, j])
            ax.axvline(es, color=f"C{j}", ls=":", lw=1.2, label=rf"$\eta^* = {es:.3g}$")
        ax.set_title(f"{names.get(rule, rule)} on $\\frac{{1}}{{2}}(1-xy)^2$")
        ax.set_xlabel(r"step size $\eta$")
        ax.set_ylim(-0.02, 1.05)
        ax.legend(fontsize=7, ncol=2, loc="upper right")
    axes[0].set_ylabel("fraction of initialisations that converge")
    fig.tight_layout()
    return fig


@styled
def adaptive_eos(ds, axes=None):
    """Adam at the adaptive edge of stability: loss (top) and η λ_max(P⁻¹H) / c (bottom, the
    threshold at 1) against the step, one colour per step size (from
    :func:`gdstab.experiments.optimizer_dynamics.compute_adaptive_eos`)."""
    fig, axes = _panels(axes, 2, 1, (PAGE_WIDTH, 5.0), sharex=True)
    step = ds.step.values
    for i, eta in enumerate(ds.eta.values):
        axes[0].semilogy(step, np.maximum(ds.loss.values[i], 1e-300), color=f"C{i}", label=rf"$\eta = {eta:g}$")
        axes[1].plot(step, ds.ratio.values[i], color=f"C{i}", label=rf"$\eta = {eta:g}$")
    c = ds.attrs["threshold_c"]
    axes[1].axhline(1.0, color="k", ls="--", lw=1, label=rf"adaptive edge of stability $\lambda = {c:g}/\eta$")
    axes[0].set_ylabel("loss (MSE)")
    axes[0].legend(fontsize=8)
    axes[0].set_title("full-batch Adam on an MNIST MLP", fontsize=10)
    axes[1].set_ylabel(rf"$\eta\,\lambda_{{max}}(P^{{-1}}H)\,/\,{c:g}$")
    axes[1].set_xlabel("step")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


@styled
def edge_of_stability_runs(ds, axes=None):
    """Full-batch GD at several step sizes (from
    :func:`gdstab.experiments.field_eos.compute_eos`): loss, sharpness with 2/η dashed, and the
    relative distance to the gradient flow, one colour per η; a circle where the sharpness first
    reaches 2/η."""
    from .sharpness import eos_onset

    fig, axes = _panels(axes, 3, 1, (PAGE_WIDTH, 7.0), sharex=True)
    step = ds.step.values
    tol = ds.attrs.get("flow_rtol", 1e-2)
    for i, eta in enumerate(ds.eta.values):
        col = f"C{i}"
        k = eos_onset(ds.ratio.values[i])
        axes[0].semilogy(step, np.maximum(ds.loss.values[i], 1e-300), color=col, lw=1, label=rf"$\eta = {eta:g}$")
        axes[1].plot(step, ds.sharpness.values[i], color=col, lw=1)
        axes[1].axhline(2.0 / eta, color=col, ls="--", lw=0.8)
        with np.errstate(divide="ignore", invalid="ignore"):
            axes[2].semilogy(step, ds.flow_distance.values[i], color=col, lw=1)
        if k >= 0:
            axes[0].plot(step[k], ds.loss.values[i, k], "o", color=col, ms=4, mfc="none")
            axes[1].plot(step[k], ds.sharpness.values[i, k], "o", color=col, ms=4, mfc="none")
            if np.isfinite(ds.flow_distance.values[i, k]):
                axes[2].plot(step[k], ds.flow_distance.values[i, k], "o", color=col, ms=4, mfc="none")
    axes[2].axhline(tol, color="k", ls=":", lw=0.8, label=f"departure tolerance {tol:g}")
    axes[0].set_ylabel("loss (MSE)")
    axes[0].legend(fontsize=8, ncol=len(ds.eta.values))
    axes[0].set_title("full-batch GD on an MNIST MLP: sharpness reaches $2/\\eta$ (dashed) and hovers there", fontsize=9)
    axes[1].set_ylabel(r"sharpness $\lambda_{max}(H)$")
    axes[2].set_ylabel(r"$\|\theta_{GD} - \theta_{GF}\| / (1 + \|\theta_{GF}\|)$", fontsize=8)
    axes[2].set_xlabel("step")
    axes[2].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    return fig


@styled
def catapult(ds, axes=None):
    """The catapult mechanism (from :func:`gdstab.experiments.field_catapult.compute_catapult`):
    loss and curvature of the uv model at η = c/λ₀ (top) and loss and sharpness of an MLP on
    digits (bottom), 2/η dashed in each run's colour."""
    fig, axes = _panels(axes, 2, 2, (PAGE_WIDTH, 5.6))
    step = ds.step.values
    for row, (c_dim, lam0, loss, curv, what) in enumerate((
            ("uv_c", ds.attrs["uv_lambda0"], ds.uv_loss.values, ds.uv_curvature.values,
             r"curvature $(\|u\|^2 + \|v\|^2)/m$"),
            ("mlp_c", ds.attrs["mlp_lambda0"], ds.mlp_loss.values, ds.mlp_sharpness.values, r"sharpness $\lambda_{max}(H)$"))):
        for i, c in enumerate(ds[c_dim].values):
            col = f"C{i}"
            axes[row][0].semilogy(step, np.maximum(loss[i], 1e-300), color=col, lw=1,
                                  label=rf"$\eta = {c:g}/\lambda_0$")
            axes[row][1].plot(step, curv[i], color=col, lw=1)
            axes[row][1].axhline(2.0 * lam0 / c, color=col, ls="--", lw=0.8)
        fin = np.all(np.isfinite(loss), axis=1)
        if fin.any():  # a diverging run leaves the panel at the top; underflow is cut at 20 decades
            peak, low = float(np.max(loss[fin])), float(np.min(np.maximum(loss[fin], 1e-300)))
            axes[row][0].set_ylim(max(low, peak * 1e-20) / 1.5, peak * (10 if peak > 1e3 * low else 1.5))
        axes[row][0].set_ylabel("loss")
        axes[row][1].set_ylabel(what)
        axes[row][0].legend(fontsize=7)
        top = np.nanmax(curv[np.isfinite(curv)]) if np.isfinite(curv).any() else 1.0
        axes[row][1].set_ylim(0, min(top, 3 * lam0) * 1.1)
    axes[0][0].set_title(f"uv model, m = {ds.attrs['figure_width']}", fontsize=9)
    axes[0][1].set_title(r"curvature; $2/\eta$ dashed", fontsize=9)
    axes[1][0].set_title("tanh MLP on MNIST digits", fontsize=9)
    axes[1][1].set_title(r"sharpness; $2/\eta$ dashed", fontsize=9)
    for ax in axes[1]:
        ax.set_xlabel("step")
    fig.tight_layout()
    return fig


def _trainability_rgb(status: np.ndarray, loss: np.ndarray, step: np.ndarray) -> np.ndarray:
    """RGB of a trainability map: trained pixels blue (darker = lower final loss, log scale),
    diverged ones red (darker = diverged sooner)."""
    from matplotlib import colormaps

    div = status == 2
    rgb = np.ones(status.shape + (3,))
    with np.errstate(divide="ignore", invalid="ignore"):
        ll = np.log10(np.where(~div & np.isfinite(loss) & (loss > 0), loss, np.nan))
    if np.isfinite(ll).any():
        lo, hi = np.nanmin(ll), np.nanmax(ll)
        t = np.where(np.isfinite(ll), (ll - lo) / max(hi - lo, 1e-12), 0.5)
        rgb[~div] = colormaps["Blues"](0.35 + 0.6 * (1 - t[~div]))[:, :3]
    if div.any():
        st = np.log10(np.maximum(step, 1).astype(float))
        lo, hi = st[div].min(), st[div].max()
        t = (st - lo) / max(hi - lo, 1e-12)
        rgb[div] = colormaps["Reds"](0.35 + 0.6 * (1 - t[div]))[:, :3]
    return rgb


@styled
def trainability_zooms(ds, axes=None):
    """The trainability maps of :func:`gdstab.experiments.field_fractal.compute_fractal`: per model
    (rows) the survey and the zooms, each with its box-counting dimension and interval."""
    from matplotlib.patches import Rectangle

    models = [m for m in ("network", "linear") if f"{m}_status" in ds]
    n = ds.sizes["level"]
    fig, axes = _panels(axes, len(models), n, (PAGE_WIDTH, 2.0 * len(models) + 0.6), squeeze=False)
    for r, model in enumerate(models):
        for lv in range(n):
            ax = axes[r][lv]
            w = ds[f"{model}_window"].values[lv]
            if not np.isfinite(w[0]):
                ax.axis("off")
                continue
            rgb = _trainability_rgb(ds[f"{model}_status"].values[lv], ds[f"{model}_final_loss"].values[lv],
                                    ds[f"{model}_decision_step"].values[lv])
            ax.imshow(rgb, origin="lower", extent=(w[0], w[1], w[2], w[3]), aspect="auto", interpolation="nearest")
            if lv + 1 < n and np.isfinite(ds[f"{model}_window"].values[lv + 1][0]):
                v = ds[f"{model}_window"].values[lv + 1]
                ax.add_patch(Rectangle((v[0], v[2]), v[1] - v[0], v[3] - v[2], fill=False, ec="k", lw=0.8))
            d, lo, hi = (float(ds[f"{model}_{k}"].values[lv]) for k in ("dimension", "low", "high"))
            name = "survey" if lv == 0 else f"zoom {lv}"
            ax.set_title(f"{model}, {name}\nD = {d:.2f} [{lo:.2f}, {hi:.2f}]", fontsize=7)
            ax.tick_params(labelsize=6)
            ax.xaxis.get_offset_text().set_fontsize(6)
            ax.yaxis.get_offset_text().set_fontsize(6)
            if r == len(models) - 1:
                ax.set_xlabel(r"$\log_{10}\eta_0$", fontsize=7)
            if lv == 0:
                ax.set_ylabel(r"$\log_{10}\eta_1$", fontsize=7)
    fig.tight_layout()
    return fig


@styled
def critical_evidence(result, ax=None):
    """The evidence of :func:`gdstab.critical.critical_step_size` (converging fraction) or of
    :func:`gdstab.critical.trainable_step_size` (fraction that did not diverge), with Wilson 95%
    intervals, against η; the interval of the estimate shaded."""
    fig, ax = _axes(ax, (PAGE_WIDTH, 3.8))
    ev = result.evidence
    eta = np.array([e["eta"] for e in ev])
    f = np.array([e["fraction"] for e in ev])
    yerr = np.vstack([f - np.array([e["low"] for e in ev]), np.array([e["high"] for e in ev]) - f])
    what = "fraction that did not diverge" if hasattr(result, "criterion") else "converged fraction"
    ax.errorbar(eta, f, yerr=yerr, fmt="o", ms=3, capsize=2, label=what)
    lo, hi = result.interval
    name = "largest step size that trains" if hasattr(result, "criterion") else "critical step size"
    ax.axvspan(lo, hi, color="C3", alpha=0.2, label=f"{name} in [{lo:.4g}, {hi:.4g}]")
    ax.axvline(result.eta, color="C3", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel(r"step size $\eta$")
    ax.set_ylabel("fraction of initialisations")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def save(fig, path_stem: str | Path, formats: Iterable[str] = ("png", "pdf", "svg")) -> list[Path]:
    """Save ``fig`` as ``path_stem.<fmt>`` for every format (PNG at 200 dpi, PDF with TrueType
    fonts embedded, SVG with text as paths); returns the paths."""
    stem = Path(path_stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    import matplotlib

    with matplotlib.rc_context(STYLE):  # fonts embedded (PDF) or as paths (SVG)
        for fmt in formats:
            p = stem.with_suffix("." + fmt)
            fig.savefig(p)
            out.append(p)
    return out
