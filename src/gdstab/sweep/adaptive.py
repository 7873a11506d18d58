"""Adaptive step-size grids for fraction-vs-η questions (the ``[adaptive]`` table of a sweep
config).

The config's step sizes are the candidates and its ``inits`` the most initialisations any step
size may get; the initialisations come in blocks of ``run.cell_inits`` (one stored cell each,
one step size per cell).  Initialisation i is the same point at every step size (common random
numbers), whichever step sizes get it.  The sweep runs in rounds:

* round 0: the first block at ``coarse`` step sizes spread evenly over the sorted candidates
  (the smallest and the largest included);
* every later round, from the trajectories of the earlier rounds only, at each option point:
  the next block at every computed step size whose 95 % Wilson half-width of the fraction of
  ``status`` exceeds ``halfwidth`` (while blocks remain), and the first block at the candidate
  halfway (in grid order) between two neighbouring computed step sizes whose fractions differ
  by more than ``change`` (while a candidate lies between them: the transition is then located
  to the grid's spacing);
* it stops when a round has nothing to add, or before a round that would exceed
  ``max_trajectories``.

Each round depends only on the data of the earlier rounds, so a rerun replays the same rounds
from the stored cells and continues where an interrupted run stopped: resumable, with results
identical to an uninterrupted run.  The chosen cells are the computed cells of the store
(step sizes never chosen read as not computed); the rounds, the points whose half-width stayed
above the target (every block used) and why the sweep stopped are in ``ds.attrs["adaptive"]``
(JSON) and in the folder's runs.jsonl.
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from ..outcomes import Status
from ..stats import wilson_interval
from .config import SweepConfig
from .store import Layout

__all__ = ["first_round", "next_round", "point_table", "run_rounds", "replay", "report_json"]


def _sorted_etas(cfg: SweepConfig) -> np.ndarray:
    """Grid indices of the step sizes in increasing η (ties in grid order)."""
    return np.argsort(np.asarray(cfg.eta, dtype=np.float64), kind="stable")


def first_round(cfg: SweepConfig, layout: Layout) -> list[tuple[int, int, int]]:
    """Round 0: block 0 at ``coarse`` step sizes spread over the sorted grid, ends included."""
    order = _sorted_etas(cfg)
    n = len(order)
    pos = np.unique(np.round(np.linspace(0, n - 1, min(n, cfg.adaptive.coarse))).astype(int))
    return [(o, int(order[p]), 0) for o in range(layout.n_options) for p in pos]


def _blocks(known: set, o: int, n_eta: int, n_blocks: int) -> np.ndarray:
    """Per step size, how many leading blocks are in ``known`` (blocks are added in order)."""
    out = np.zeros(n_eta, int)
    for e in range(n_eta):
        while out[e] < n_blocks and (o, e, int(out[e])) in known:
            out[e] += 1
    return out


def point_table(cfg: SweepConfig, layout: Layout, status: np.ndarray, known: set, o: int) -> list[dict[str, Any]]:
    """The computed step sizes of option point ``o`` in increasing η: grid index, η, blocks,
    trajectories n, count and fraction of the adaptive status with its Wilson interval and
    half-width.  ``status`` is (options..., eta, init) as stored; only ``known`` cells count."""
    code = int(Status[cfg.adaptive.status.upper()])
    flat = status.reshape((-1,) + status.shape[-2:])[o]
    blocks = _blocks(known, o, layout.n_eta, layout.n_blocks)
    rows = []
    for e in _sorted_etas(cfg):
        if blocks[e] == 0:
            continue
        n = min(layout.n_init, int(blocks[e]) * layout.cell_inits)
        k = int((flat[e, :n] == code).sum())
        f, lo, hi = wilson_interval(k, n)
        rows.append({"eta_index": int(e), "eta": float(cfg.eta[e]), "blocks": int(blocks[e]), "n": n, "count": k,
                     "fraction": f, "low": lo, "high": hi, "halfwidth": (hi - lo) / 2})
    return rows


def next_round(cfg: SweepConfig, layout: Layout, status: np.ndarray, known: set) -> list[tuple[int, int, int]]:
    """The cells of the next round from the data of the ``known`` cells (see the module
    docstring); empty when the sweep is done."""
    spec = cfg.adaptive
    order = _sorted_etas(cfg)
    where = np.empty(len(order), int)
    where[order] = np.arange(len(order))  # grid index -> position in the sorted grid
    cells: list[tuple[int, int, int]] = []
    for o in range(layout.n_options):
        rows = point_table(cfg, layout, status, known, o)
        for r in rows:
            if r["halfwidth"] > spec.halfwidth and r["blocks"] < layout.n_blocks:
                cells.append((o, r["eta_index"], r["blocks"]))
        for a, b in zip(rows, rows[1:]):
            pa, pb = where[a["eta_index"]], where[b["eta_index"]]
            if pb - pa > 1 and abs(a["fraction"] - b["fraction"]) > spec.change:
                cells.append((o, int(order[(pa + pb) // 2]), 0))
    return sorted(set(cells) - known)


def _stop_report(cfg: SweepConfig, layout: Layout, status: np.ndarray, known: set, rounds: list,
                 reason: str) -> dict[str, Any]:
    """What ``ds.attrs["adaptive"]`` says: the settings, the rounds, the points per option point,
    those still wider than the target and why the sweep stopped."""
    points, wide = [], []
    for o in range(layout.n_options):
        rows = point_table(cfg, layout, status, known, o)
        points.append(rows)
        wide += [{"option_point": o, "eta": r["eta"], "n": r["n"], "halfwidth": r["halfwidth"]}
                 for r in rows if r["halfwidth"] > cfg.adaptive.halfwidth]
    return {"settings": cfg.adaptive.to_dict(), "block": layout.cell_inits, "stopped": reason,
            "rounds": [len(r) for r in rounds], "trajectories": _trajectories(layout, known),
            "wider_than_target": wide, "points": points}


def _trajectories(layout: Layout, cells) -> int:
    return sum(layout.init_slice(b).stop - layout.init_slice(b).start for _, _, b in cells)


def run_rounds(cfg: SweepConfig, layout: Layout, compute: Callable[[list], np.ndarray], stored: np.ndarray,
               done: set, say: Callable[[str], None]) -> dict[str, Any]:
    """Replay and continue the rounds: ``compute(cells)`` computes and stores the cells not yet
    ``done`` and returns the status array (options..., eta, init) of the store; ``stored`` is
    that array before this call.  Returns the report (:func:`_stop_report`)."""
    status = stored
    known: set = set()
    rounds: list = []
    cells = first_round(cfg, layout)
    budget = cfg.adaptive.max_trajectories
    reason = "done: every computed point within the target half-width or out of blocks, every change located"
    while cells:
        if budget and _trajectories(layout, known | set(cells)) > budget:
            reason = f"budget: the next round would exceed max_trajectories = {budget}"
            break
        todo = [c for c in cells if c not in done]
        if todo:
            say(f"adaptive round {len(rounds)}: {len(todo)} cells ({_trajectories(layout, todo)} trajectories)")
            status = compute(todo)
            done |= set(todo)
        known |= set(cells)
        rounds.append(cells)
        cells = next_round(cfg, layout, status, known)
    return _stop_report(cfg, layout, status, known, rounds, reason)


def report_json(report: dict[str, Any]) -> str:
    """The report as the JSON of ``ds.attrs["adaptive"]``."""
    return json.dumps(report, allow_nan=False, default=float)


class _Incomplete(Exception):
    pass


def replay(cfg: SweepConfig, layout: Layout, status: np.ndarray, done: set) -> dict[str, Any]:
    """The report of a stored adaptive sweep, from its data alone (what :func:`gdstab.sweep.open_results`
    attaches); ``{"stopped": "incomplete ..."}`` when a round's cells are not all stored."""
    def compute(cells):
        raise _Incomplete

    try:
        return run_rounds(cfg, layout, compute, status, set(done), lambda text: None)
    except _Incomplete:
        return {"settings": cfg.adaptive.to_dict(), "stopped": "incomplete: rerun the sweep command to continue"}
