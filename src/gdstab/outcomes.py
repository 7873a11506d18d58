"""The vocabulary of what happens to a trajectory, in one place: the :class:`Status` enum, the
codes stored in results (derived from the enum, never written out twice), and fraction tables
with Wilson 95 % intervals.

Adding an outcome class: a member of :class:`Status` here, its verdict in the engine
(:mod:`gdstab.dynamics`, and the compiled kernels if the fast path must know it), and its colour
in :mod:`gdstab.plots`; every table, store and summary picks it up from this module.
"""

from __future__ import annotations

import enum
from typing import Iterable, Mapping, Sequence

import numpy as np

from .stats import wilson_interval

__all__ = ["Status", "NOT_COMPUTED", "STATUS_CODES", "status_codes", "fraction_table", "fraction_rows"]


class Status(enum.IntEnum):
    """What happened to a trajectory (stored as int8 in results; 0 is "not computed yet")."""

    CONVERGED = 1
    DIVERGED = 2
    PERIODIC = 3
    BOUNDED = 4
    STATIONARY = 5

    @property
    def label(self) -> str:
        return self.name.lower()


#: the stored code of a trajectory whose cell is not computed yet
NOT_COMPUTED = 0


def status_codes(include_not_computed: bool = True) -> dict[str, int]:
    """Label -> stored code, in code order (derived from :class:`Status`)."""
    codes = {s.label: int(s) for s in Status}
    return {"not_computed": NOT_COMPUTED, **codes} if include_not_computed else codes


#: label -> stored code, "not_computed" (0) first
STATUS_CODES = status_codes()


def _labels(statuses: Iterable[Status | str] | None) -> list[str]:
    if statuses is None:
        return [s.label for s in Status]
    return [s.label if isinstance(s, Status) else Status[str(s).upper()].label for s in statuses]


def _counts(status, labels):
    st = np.asarray(status)
    n = (st != NOT_COMPUTED).sum(axis=-1)
    return n, {lab: (st == int(Status[lab.upper()])).sum(axis=-1) for lab in labels}


def fraction_table(status, dims: Sequence[str], coords: Mapping | None = None,
                   statuses: Iterable[Status | str] | None = None):
    """Fractions of each status over the last axis of ``status`` (the trajectories), with
    Wilson 95 % intervals, as an ``xarray.Dataset`` over ``dims`` (the other axes): variables
    ``trajectories`` (computed ones; code 0 = not computed is left out) and, per status,
    ``<label>_count``, ``<label>_fraction``, ``<label>_low``, ``<label>_high``.  Where no
    trajectory was computed the fraction is NaN and the interval [0, 1]."""
    import xarray as xr

    labels = _labels(statuses)
    n, counts = _counts(status, labels)
    dims = tuple(dims)
    data = {"trajectories": (dims, n)}
    for lab in labels:
        k = counts[lab]
        w = np.array([wilson_interval(int(a), int(b)) for a, b in zip(k.ravel(), n.ravel())]).reshape(k.shape + (3,))
        data[f"{lab}_count"] = (dims, k)
        data[f"{lab}_fraction"] = (dims, w[..., 0])
        data[f"{lab}_low"] = (dims, w[..., 1])
        data[f"{lab}_high"] = (dims, w[..., 2])
    return xr.Dataset(data, coords=dict(coords or {}))


def fraction_rows(status, statuses: Iterable[Status | str] | None = None) -> dict:
    """For one group of trajectories (a 1-D ``status``): ``{"n": computed, label: {"count",
    "fraction", "low", "high"}}`` -- the row format of the command line's JSON output."""
    labels = _labels(statuses)
    n, counts = _counts(np.asarray(status).reshape(-1), labels)
    row: dict = {"n": int(n)}
    for lab in labels:
        f, lo, hi = wilson_interval(int(counts[lab]), int(n))
        row[lab] = {"count": int(counts[lab]), "fraction": f, "low": lo, "high": hi}
    return row
