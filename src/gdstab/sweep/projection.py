"""The projected time of a sweep, from a short measured calibration, printed before a large
sweep starts so that no one starts a 90-hour run by accident (issue #21).

Per option point (e.g. per network depth) the first cell still to compute is run for a few steps
with its real step sizes and initial points: once to compile (discarded), then ``CAL_REPEATS``
times for ``CAL_STEPS[0]`` and for ``CAL_STEPS[1]`` steps, alternating.  The difference of the
fastest long and the fastest short run over the difference of their steps is the cost of one
step of that cell with compilation and fixed costs cancelled (on a shared machine other work only
ever adds time, so the fastest run of each is the least disturbed; each pair's own estimate is
kept as the spread; where the difference is not positive — a run too fast for the timer — the
longer run's time per step, which includes them); times T and the cells of that option point,
it is the projection.  It
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

__all__ = ["Projection", "project", "work", "pair_spread", "PROJECT_ABOVE", "CAL_STEPS", "CAL_REPEATS"]

#: sweeps of more than this many parameter-steps (trajectories × T × parameters) are projected
#: before they start (the paper-scale network sweeps: ~6·10¹²; the default scale's: ~2·10¹⁰)
PROJECT_ABOVE = 1e12
#: the calibration's step counts (after a compiling run of the first)
CAL_STEPS = (8, 24)
#: runs of each step count (alternating); the fastest of each is used
CAL_REPEATS = 2


@dataclasses.dataclass(frozen=True, repr=False)
class Projection(Record):
    """The projected time of a sweep's remaining cells.

    Attributes:
        seconds: the projection (every trajectory run to T, compilation and storage left out),
            in seconds.
        per_option: one dict per option point: ``option`` (its values), ``cells``,
            ``trajectories``, ``seconds_per_step`` (of the calibrated cell, from the fastest
            runs), ``seconds_per_step_pairs`` (each short/long pair's own estimate: the spread),
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
                f"machine, whose repeated runs differed by up to {self.spread():.2f}x; trajectories that converge "
                f"or diverge earlier stop, so the run is usually shorter)")

    def spread(self) -> float:
        """The largest :func:`pair_spread` over the option points (1.0: every calibration agreed;
        large: the machine was busy and the projection is uncertain)."""
        return max((pair_spread(r) for r in self.per_option), default=1.0)


def pair_spread(row: dict) -> float:
    """The ratio between the largest and smallest step-cost estimate of one option point's
    calibration pairs (``row``: one of :attr:`Projection.per_option`; 1.0 where it has none)."""
    pairs = row.get("seconds_per_step_pairs") or []
    return max(pairs) / min(pairs) if pairs and min(pairs) > 0 else 1.0


def _name(option: dict) -> str:
    return ", ".join(f"{k} = {v}" for k, v in option.items()) or "the sweep"


def _n_traj(layout: Layout, cell) -> int:
    _, e, b = cell
    es, bs = layout.eta_slice(e), layout.init_slice(b)
    return (es.stop - es.start) * (bs.stop - bs.start)


def _per_step(short: float, long: float, s1: int, s2: int) -> float:
    """One step's cost from a short and a long run (below the timer's resolution -- a fast toy --
    the long run's time per step, fixed costs included: an overestimate)."""
    return (long - short) / (s2 - s1) if s2 > s1 and long > short else long / max(s2, 1)


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
        problem, theta0, eta, kw = cell_inputs(cfg, group[0])
        short: list[float] = []
        long: list[float] = []
        for s, acc in ((s1, None),) + ((s1, short), (s2, long)) * CAL_REPEATS:  # T is traced: one compile
            t0 = time.perf_counter()
            trajectories(problem, theta0, eta, steps=s, threads=threads, chunk_size=chunk_size, **kw)
            if acc is not None:
                acc.append(time.perf_counter() - t0)
        per_step = _per_step(min(short), min(long), s1, s2)
        pairs = [_per_step(a, b, s1, s2) for a, b in zip(short, long)]
        per_traj_step = per_step / max(_n_traj(layout, group[0]), 1)
        n = sum(_n_traj(layout, c) for c in group)
        rows.append({"option": options[o] if o < len(options) else {}, "cells": len(group), "trajectories": n,
                     "seconds_per_step": per_step, "seconds_per_step_pairs": pairs,
                     "seconds_per_trajectory_step": per_traj_step, "seconds": per_traj_step * n * cfg.steps})
    return Projection(seconds=float(sum(r["seconds"] for r in rows)), per_option=rows,
                      calibration_seconds=time.perf_counter() - t_cal, steps=int(cfg.steps))
