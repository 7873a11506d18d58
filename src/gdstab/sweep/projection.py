"""The projected time of a sweep, from a short measured calibration, printed before a large
sweep starts so that no one starts a 90-hour run by accident (issue #21).

Per option point (e.g. per network depth) the first cell still to compute is run three times
for a few steps with its real step sizes and initial points: once to compile (discarded), then
for ``CAL_STEPS[0]`` and ``CAL_STEPS[1]`` steps.  The difference of the last two times over the
difference of their steps is the cost of one step of that cell with compilation and fixed costs
cancelled (where it is not positive — a run too fast for the timer — the longer run's time per
step, which includes them); times T and the cells of that option point, it is the projection.  It
assumes every trajectory runs to T (trajectories that diverge or converge earlier stop: the run
is usually shorter) and leaves out compilation, recorded metrics and storage (which make it
longer: the default-scale SGD sweep of Figure 4 took 66 s against a projection of 58 s); and the
machine may be busier or quieter during the run.  An estimate, not a bound.
"""

from __future__ import annotations

import dataclasses
import time
from collections import defaultdict
from typing import Any, Iterable

from .._records import Record
from .config import SweepConfig
from .store import Layout

__all__ = ["Projection", "project", "work", "PROJECT_ABOVE", "CAL_STEPS"]

#: sweeps of more than this many parameter-steps (trajectories × T × parameters) are projected
#: before they start (the paper-scale network sweeps: ~6·10¹²; the default scale's: ~2·10¹⁰)
PROJECT_ABOVE = 1e12
#: the calibration's step counts (after a compiling run of the first)
CAL_STEPS = (8, 24)


@dataclasses.dataclass(frozen=True, repr=False)
class Projection(Record):
    """The projected time of a sweep's remaining cells.

    Attributes:
        seconds: the projection (every trajectory run to T, compilation and storage left out),
            in seconds.
        per_option: one dict per option point: ``option`` (its values), ``cells``,
            ``trajectories``, ``seconds_per_step`` (of the calibrated cell),
            ``seconds_per_trajectory_step`` (that over the cell's trajectories), ``seconds``.
        calibration_seconds: the time the calibration took.
        steps: T.
    """

    seconds: float
    per_option: list
    calibration_seconds: float
    steps: int

    def text(self, label: str = "projected time") -> str:
        from ..progress import duration

        parts = ", ".join(f"{_name(r['option'])} {duration(r['seconds'])}" for r in self.per_option)
        return (f"{label}: about {duration(self.seconds)} if every trajectory runs all T = "
                f"{self.steps} steps ({parts}; measured in a {self.calibration_seconds:.0f} s calibration on this "
                f"machine; trajectories that converge or diverge earlier stop, so the run is usually shorter)")


def _name(option: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in option.items()) or "the sweep"


def _n_traj(layout: Layout, cell) -> int:
    _, e, b = cell
    es, bs = layout.eta_slice(e), layout.init_slice(b)
    return (es.stop - es.start) * (bs.stop - bs.start)


def work(cfg: SweepConfig, layout: Layout, cells: Iterable) -> float:
    """Parameter-steps of ``cells``: trajectories × T × the parameters at their option point."""
    return float(sum(_n_traj(layout, c) * cfg.steps * cfg.problem_at(c[0]).dim for c in cells))


def project(cfg: SweepConfig, cells: Iterable | None = None, *, threads: int | None = None,
            chunk_size: Any = "auto") -> Projection:
    """Calibrate and project the time of ``cells`` of the sweep ``cfg`` (default: all)."""
    from ..dynamics import trajectories
    from .cells import cell_inputs

    layout = Layout.for_config(cfg)
    cells = list(layout.cells() if cells is None else cells)
    by_option: dict[int, list] = defaultdict(list)
    for c in cells:
        by_option[c[0]].append(c)
    t_cal = time.perf_counter()
    rows = []
    options = cfg.option_points()
    s1, s2 = (min(s, cfg.steps) for s in CAL_STEPS)
    for o, group in sorted(by_option.items()):
        times = []
        problem, theta0, eta, kw = cell_inputs(cfg, group[0])
        for s in (s1, s1, s2):  # T is traced: only the first call compiles
            t0 = time.perf_counter()
            trajectories(problem, theta0, eta, steps=s, threads=threads, chunk_size=chunk_size, **kw)
            times.append(time.perf_counter() - t0)
        # below the timer's resolution (a fast toy) the whole short run per step: an overestimate
        per_step = (times[2] - times[1]) / (s2 - s1) if s2 > s1 and times[2] > times[1] else times[2] / max(s2, 1)
        per_traj_step = per_step / max(_n_traj(layout, group[0]), 1)
        n = sum(_n_traj(layout, c) for c in group)
        rows.append({"option": options[o] if o < len(options) else {}, "cells": len(group), "trajectories": n,
                     "seconds_per_step": per_step, "seconds_per_trajectory_step": per_traj_step,
                     "seconds": per_traj_step * n * cfg.steps})
    return Projection(seconds=float(sum(r["seconds"] for r in rows)), per_option=rows,
                      calibration_seconds=time.perf_counter() - t_cal, steps=int(cfg.steps))
