"""One cell of a sweep: the trajectories of a block of step sizes x a block of initialisations at
one option point, computed from the typed :class:`~gdstab.sweep.config.SweepConfig` alone (a pure
function of its arguments, so it runs the same on any worker and any executor).

Workers receive the config object (it pickles) and never re-parse text; what a worker derives
from it (the problem, the layout, a block's initial points) is cached per process.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import numpy as np

from ..dynamics import trajectories
from ..problems import parse_box
from ..random import init_points, trajectory_keys
from .config import SweepConfig
from .store import Layout

__all__ = ["compute_cell", "cell_inputs"]


@functools.lru_cache(maxsize=8)
def _layout(cfg: SweepConfig) -> Layout:
    return Layout.for_config(cfg)


@functools.lru_cache(maxsize=4)
def _block_points(cfg: SweepConfig, o: int, b: int) -> np.ndarray:
    """The initial points of block b at option point o (shared by all step sizes)."""
    problem = cfg.problem_at(o)
    layout = _layout(cfg)
    sl = layout.init_slice(b)
    box = None if cfg.box is None else parse_box(list(cfg.box), problem.dim, caller="the sweep config", name="grid.box")
    idx = np.arange(sl.start, sl.start + layout.cell_inits)  # the last block is padded: one compiled shape
    pts = init_points(problem, cfg.seed, idx, box, cfg.problem_options(o))[: sl.stop - sl.start]
    pts.setflags(write=False)
    return pts


def _sgd_inputs(cfg: SweepConfig, layout: Layout, o: int, b: int, etas: np.ndarray) -> dict[str, Any]:
    if not cfg.batch_size:
        return {}
    sl = layout.init_slice(b)
    idx = np.arange(sl.start, sl.stop)
    keys = np.concatenate([trajectory_keys(cfg.seed, cfg.problem_options(o), idx, eta) for eta in etas])
    return {"batch_size": cfg.batch_size, "keys": keys}


def cell_inputs(cfg: SweepConfig, cell: tuple[int, int, int]) -> tuple[Any, np.ndarray, Any, dict[str, Any]]:
    """What the engine gets for one cell: (problem, θ₀ (B, d), η (a float or (B,)), the other
    keyword arguments of :func:`gdstab.trajectories` but steps, record_every, threads and
    chunk_size).  The step sizes of the cell run as one batch: trajectory (j, i) = (etas[j],
    points[i])."""
    layout = _layout(cfg)
    o, e, b = cell
    problem = cfg.problem_at(o)
    points = _block_points(cfg, o, b)
    etas = np.asarray(cfg.eta[layout.eta_slice(e)], dtype=np.float64)
    k, n = len(etas), points.shape[0]
    kw = {"criteria": cfg.criteria, "backend": cfg.backend, "dtype": cfg.dtype, "optimizer": cfg.rule_at(o),
          **_sgd_inputs(cfg, layout, o, b, etas)}
    return (problem, np.tile(points, (k, 1)) if k > 1 else points, np.repeat(etas, n) if k > 1 else float(etas[0]),
            kw)


def compute_cell(cfg: SweepConfig, cell: tuple[int, int, int], threads: int | None = None,
                 chunk_size: int | str = "auto") -> dict[str, Any]:
    """Compute one cell (option point o, step-size block e, init block b) of the sweep ``cfg``;
    returns the arrays to store and a little bookkeeping.

    Pure function of its arguments: runs the same on any worker."""
    t0 = time.perf_counter()
    layout = _layout(cfg)
    o, e, b = cell
    problem, theta0, eta, kw = cell_inputs(cfg, cell)
    points = _block_points(cfg, o, b)
    k, n = layout.eta_slice(e).stop - layout.eta_slice(e).start, points.shape[0]
    res = trajectories(problem, theta0, eta, steps=cfg.steps, record_every=cfg.record_every or None, threads=threads,
                       chunk_size=chunk_size, **kw)
    out: dict[str, Any] = {
        "status": res.status.astype(np.int8).reshape(k, n),
        "decision_step": res.step.astype(np.int32).reshape(k, n),
        "period": res.period.astype(np.int16).reshape(k, n),
        "final_loss": res.loss.astype(np.float64).reshape(k, n),
        "final_grad_norm": res.grad_norm.astype(np.float64).reshape(k, n),
    }
    if layout.store_theta:
        def padded(a: np.ndarray) -> np.ndarray:  # smaller option points are padded with NaN
            if problem.dim == layout.dim:
                return np.asarray(a, dtype=np.float64)
            full = np.full(a.shape[:-1] + (layout.dim,), np.nan)
            full[..., : problem.dim] = a
            return full

        out["final_theta"] = padded(res.theta.reshape(k, n, problem.dim))
        if e == 0:  # shared by the step sizes of the block: stored once
            out["init_theta"] = padded(points)
    if layout.n_records:
        m = res.metrics
        for name, values in (("loss_t", m.loss), ("grad_norm_t", m.grad_norm), ("step_norm_t", m.step_norm)):
            out[name] = values.T.astype(np.float64).reshape(k, n, layout.n_records)
    lead = (1,) * len(layout.option_shape)  # option dims are singleton in every variable region: add them
    return {"cell": tuple(cell), "arrays": {name: v.reshape(lead + v.shape) for name, v in out.items()},
            "info": {"trajectories": int(k * n), "backend": res.backend, "seconds": time.perf_counter() - t0}}


def cell_is_small(cfg: SweepConfig, threads: int) -> bool:
    """Whether the cells of ``cfg`` are too small to fill ``threads`` with engine chunks (a few
    network trajectories each): such cells are better run side by side, one thread each."""
    layout = _layout(cfg)
    return layout.cell_inits * layout.cell_etas < 64 * threads or cfg.problem_at(0).dim > 64
