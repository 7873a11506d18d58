"""Beyond the paper, in ``gdstab reproduce``: what GD does when it cannot converge.

``orbit``: the orbit diagram of GD on ½(1 − xy)² for η ∈ [1, 1.6] with the largest Lyapunov
exponent, the first period doubling after η = 1 (closed form √5 − 1) and the Lyapunov exponent
in the chaotic band.  ``eos``: sharpness along GD on ¼(x²y² − 1)² from (4, 0.1) at η = 0.1 (Zhu
et al. 2022): self-stabilisation just below 2/η, against the gradient-flow minimum (closed form
from the conserved x² − y²).  ``basin``: the basin map of ½(1 − xy)² at η = 0.9 with the two
branches of minima told apart, and the critical step size of the same loss estimated from the
dynamics alone (the theory's value: 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from .target import Target, dataset_compute

__all__ = ["ORBIT", "EOS", "BASIN", "compute_orbit", "compute_eos", "compute_basin",
           "key_numbers_orbit", "key_numbers_eos", "key_numbers_basin"]


@dataclass(frozen=True)
class _Orbit:
    n_eta: int
    transient: int
    record: int
    lyapunov_steps: int


@dataclass(frozen=True)
class _Basin:
    resolution: int
    steps: int
    critical_inits: int
    critical_steps: int


ORBIT = {"small": _Orbit(600, 20_000, 256, 10_000), "paper": _Orbit(3000, 50_000, 512, 50_000)}
EOS = {"small": 3000, "paper": 3000}
BASIN = {"small": _Basin(512, 2000, 64, 50_000), "paper": _Basin(2048, 5000, 256, 100_000)}
ORBIT_INITS = ((1.2, 0.9), (-1.3, -0.8))


def compute_orbit(scale: str):
    from .. import orbits, problems

    c = ORBIT[scale]
    p = problems.get("hyperbola")
    etas = np.linspace(1.0, 1.6, c.n_eta)
    inits = np.array(ORBIT_INITS)
    ds = orbits.orbit_diagram(p, etas, inits, transient=c.transient, record=c.record)
    ly = orbits.lyapunov(p, np.tile(inits[:1], (etas.size, 1)), etas, steps=c.lyapunov_steps, transient=1000)
    ds["lyapunov"] = (("eta",), ly.exponents[:, 0])
    ds["lyapunov_stderr"] = (("eta",), ly.stderr[:, 0])
    ds.attrs["lyapunov_steps"] = c.lyapunov_steps
    return ds


def key_numbers_orbit(ds) -> dict[str, Any]:
    from ..orbits import bifurcation_points

    first = next((b for b in bifurcation_points(ds) if b["eta"] > 1.0 + 1e-9), None)
    i15 = int(np.argmin(np.abs(ds.eta.values - 1.5)))
    return {
        "first_period_doubling": {
            "value": None if first is None else first["eta"], "label": "first period doubling above η = 1",
            "closed_form": math.sqrt(5) - 1,
            "definition": "first step size after eta = 1 where the dominant period of GD on 1/2 (1 - xy)^2 changes "
                          f"(2 -> 4), midpoint of the bracketing grid values (resolution +-{first['resolution']:.2g} "
                          f"on {ds.sizes['eta']} points of [1, 1.6]); closed form sqrt(5) - 1, where a multiplier of "
                          "the 2-cycle reaches -1" if first else "no period change found",
        },
        "lyapunov_eta_1_5": {
            "value": float(ds.lyapunov.values[i15]), "stderr": float(ds.lyapunov_stderr.values[i15]),
            "label": f"largest Lyapunov exponent at η = {float(ds.eta.values[i15]):.4g}",
            "definition": f"largest Lyapunov exponent of the GD map on 1/2 (1 - xy)^2 at eta = "
                          f"{float(ds.eta.values[i15]):.4g} from {list(ORBIT_INITS[0])} ({ds.attrs['lyapunov_steps']} "
                          "steps after 1000; error: batch means); > 0 means chaos",
        },
    }


def compute_eos(scale: str):
    from .. import problems, sharpness

    p = problems.get("zhu")
    ds = sharpness.track_sharpness(p, [4.0, 0.1], 0.1, steps=EOS[scale], every=10)
    x0, y0 = 4.0, 0.1
    c = x0 * x0 - y0 * y0
    ds.attrs["gradient_flow_sharpness"] = 2 * math.sqrt(c * c + 4)
    return ds


def key_numbers_eos(ds) -> dict[str, Any]:
    from ..sharpness import sharpness_plateau

    s = ds.sharpness.values
    return {
        "eos_final_sharpness": {
            "value": float(s[np.isfinite(s)][-1]), "threshold_2_over_eta": float(ds.attrs["threshold"]),
            "label": "sharpness λ_max where GD ends (η = 0.1)",
            "max_along_run": float(np.nanmax(s)),
            "plateau": sharpness_plateau(ds.step.values, s),  # (gdstab.sharpness)
            "gradient_flow_sharpness": float(ds.attrs["gradient_flow_sharpness"]),
            "definition": "sharpness (largest Hessian eigenvalue) of the minimum GD reaches on 1/4 (x^2 y^2 - 1)^2 from "
                          "(4, 0.1) at eta = 0.1 (Zhu et al. 2022): just below 2/eta = 20 after exceeding it "
                          "(self-stabilisation); gradient flow from the same point reaches 2 sqrt((x0^2 - y0^2)^2 + 4); "
                          "plateau: the median over the last 10% of the records with its relative spread, settled "
                          "when the spread is <= 1e-3 (else the run was still moving at its end)",
        },
    }


def compute_basin(scale: str):
    from .. import basins, critical, problems

    c = BASIN[scale]
    p = problems.get("hyperbola")
    ds = basins.basin_map(p, 0.9, extent=(-2, 2, -2, 2), resolution=c.resolution, steps=c.steps, classify="sign")
    r = critical.critical_step_size(p, eta_low=0.1, eta_high=3.0, inits=c.critical_inits, steps=c.critical_steps,
                                     rtol=1e-3)
    ds.attrs.update({
        "critical_eta": r.eta, "critical_low": r.interval[0], "critical_high": r.interval[1],
        "critical_fraction_low": r.fraction_interval[0], "critical_fraction_high": r.fraction_interval[1],
        "critical_min_sharpness": r.min_sharpness, "critical_inits": c.critical_inits,
        "critical_steps": c.critical_steps,
    })
    return ds


def key_numbers_basin(ds) -> dict[str, Any]:
    from ..basins import BASIN_CODES

    st = ds.status.values
    a = ds.attrs
    return {
        "basin_converged_fraction_eta_0_9": {
            "value": float((st == BASIN_CODES["converged"]).mean()), "label": "fraction of [−2, 2]² that converges at η = 0.9",
            "definition": f"fraction of a {ds.sizes['a']} x {ds.sizes['b']} pixel grid of [-2, 2]^2 from which GD on "
                          f"1/2 (1 - xy)^2 converges at eta = 0.9 (T = {a['steps']})",
        },
        "critical_step_size_hyperbola": {
            "value": float(a["critical_eta"]), "interval": [float(a["critical_low"]), float(a["critical_high"])],
            "closed_form": 1.0, "label": "critical step size η_c (estimate and interval)",
            "definition": f"gdstab.critical.critical_step_size on 1/2 (1 - xy)^2 ({a['critical_inits']} inits uniform "
                          f"in [-2, 2]^2, T = {a['critical_steps']}, bisection to 1e-3): combined estimate and interval; "
                          "the theory's sharp critical step size is 2 / inf_M lambda_max = 1",
        },
    }


# ------------------------------------------------------------------ gdstab reproduce targets


def _draw_orbit(ds, scale: str):
    from .. import plots

    return plots.orbit_diagram(ds, ds.lyapunov.values)


def _draw_eos(ds, scale: str):
    from .. import plots

    return plots.sharpness_trace(ds)


def _draw_basin(ds, scale: str):
    from .. import plots

    return plots.basin_map(ds)


TARGETS = (
    Target("orbit", "orbit.zarr", "orbit_diagram", dataset_compute(compute_orbit, key_numbers_orbit, "orbit.zarr"),
           _draw_orbit,
           lambda scale: "Beyond the paper. Orbit diagram of GD on 1/2 (1 - xy)^2: x on the attractor (iterates after "
                         "a transient, two initialisations) against eta, bifurcation points dotted; below, the largest "
                         "Lyapunov exponent (Jacobian-vector products of G). The 2-cycle born at eta = 1 doubles at "
                         "sqrt(5) - 1, then the cascade leads to chaos (positive exponent) with periodic windows.", title="Beyond the paper: period doubling and chaos above η = 1"),
    Target("eos_toy", "eos.zarr", "edge_of_stability", dataset_compute(compute_eos, key_numbers_eos, "eos.zarr"), _draw_eos,
           lambda scale: "Beyond the paper. Edge of stability on 1/4 (x^2 y^2 - 1)^2 (Zhu et al. 2022): GD from "
                         "(4, 0.1) at eta = 0.1; the sharpness (largest Hessian eigenvalue) rises above 2/eta = 20, "
                         "the loss spikes, and GD settles at a minimum just below 2/eta, flatter than the "
                         "gradient-flow minimum from the same point.", title="Beyond the paper: the edge of stability"),
    Target("basin", "basin.zarr", "basin_map", dataset_compute(compute_basin, key_numbers_basin, "basin.zarr"), _draw_basin,
           lambda scale: "Beyond the paper. Basin map of GD on 1/2 (1 - xy)^2 at eta = 0.9: outcome per starting point "
                         "(converged to the branch x, y > 0 or x, y < 0 of xy = 1, or diverged) and the step at which "
                         "it was decided.", title="Beyond the paper: basins of attraction at η = 0.9"),
)

