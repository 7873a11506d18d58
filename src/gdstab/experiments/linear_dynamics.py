"""Dynamics check for deep linear networks (issue #5, item 6): the fraction of random
initialisations from which GD converges to a minimum, against η, with the sharp critical step
size η* = 2 / inf_M λ_max marked.  Beyond η* no minimum is linearly stable, so the fraction
must drop to zero (up to a set of measure zero)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from .. import random as gdstab_random

__all__ = ["compute_linear_trapping", "trapping_rows"]


def compute_linear_trapping(dims: Sequence[int], X, Y, etas: Sequence[float], *, inits: int = 2000,
                            steps: int = 5000, seed: int = 0, box: float = 1.0, normalisation: str = "sum",
                            criteria=None):
    """Trapping fraction per η (Wilson 95% intervals) and η* for ``linear_network(dims, X, Y)``.

    Initial points: uniform in [−box, box]^{d_θ}, the same for every η (keys of the sweep layer)."""
    import xarray as xr

    from ..dynamics import Criteria, trajectories
    from ..outcomes import Status
    from ..problems.linear import balanced_point, linear_network
    from ..stability import minimise_sharpness_on_minima
    from ..outcomes import fraction_table
    from ..random import init_points

    p = linear_network(dims, X, Y, normalisation=normalisation, box=box)
    t = p.options["target"]
    starts = [balanced_point(dims, t.W_star, t.rank)] + list(np.asarray(p.minima.sample(gdstab_random.key(seed), 4)))
    lmax, _, _, _ = minimise_sharpness_on_minima(p, starts)
    eta_star = 2.0 / lmax
    etas = np.asarray(etas, dtype=np.float64)
    th0 = init_points(p, seed, np.arange(inits))
    res = trajectories(p, np.tile(th0, (etas.size, 1)), np.repeat(etas, inits), steps=steps,
                       criteria=criteria or Criteria())
    st = res.status.reshape(etas.size, inits)
    tab = fraction_table(st, ("eta",), statuses=("converged",))
    return xr.Dataset(
        {
            "trapping_fraction": ("eta", tab.converged_fraction.values),
            "trapping_low": ("eta", tab.converged_low.values),
            "trapping_high": ("eta", tab.converged_high.values),
            "diverged_fraction": ("eta", (st == Status.DIVERGED).mean(axis=1)),
            "periodic_fraction": ("eta", (st == Status.PERIODIC).mean(axis=1)),
            "bounded_fraction": ("eta", (st == Status.BOUNDED).mean(axis=1)),
            "stationary_fraction": ("eta", (st == Status.STATIONARY).mean(axis=1)),
        },
        coords={"eta": etas},
        attrs={"dims": list(dims), "eta_star": eta_star, "inf_lambda_max": lmax, "inits": inits, "steps": steps,
               "seed": seed, "box": box, "normalisation": p.normalisation},
    )


def trapping_rows(tr) -> dict:
    """A :func:`compute_linear_trapping` Dataset as plain data: η*, the sizes, and per η the
    converged fraction with its Wilson interval and the diverged fraction."""
    return {
        "eta_star": float(tr.attrs["eta_star"]), "inits": int(tr.attrs["inits"]), "steps": int(tr.attrs["steps"]),
        "per_eta": [{"eta": float(e), "converged": float(f), "low": float(lo), "high": float(hi), "diverged": float(dv)}
                    for e, f, lo, hi, dv in zip(tr.eta.values, tr.trapping_fraction.values, tr.trapping_low.values,
                                                tr.trapping_high.values, tr.diverged_fraction.values)],
    }
