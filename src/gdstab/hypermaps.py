"""Hyperparameter maps: trainability over two hyperparameters at once, one training run per pixel.

The axes are the step size η (``"eta"``), the scale of the initialisation (``"init_scale"``:
θ₀ = scale·θ_init, the same θ_init at every pixel), a per-group learning-rate multiplier
(``"lr:GROUP"``: the group's step size is η·m, groups from
:func:`gdstab.problems.parameter_groups`: the layers of an MLP, the modules of a PyTorch model),
or a hyperparameter of the optimizer (``"beta"`` of momentum, ``"b1"`` of Adam, ...).  Every
pixel is one trajectory of the engine (vmapped, compiled once: η and the hyperparameters are
traced), classified like any trajectory.  The map is a Dataset over (y, x) with the status, the
decision step and the final loss; :func:`gdstab.boundary.boundary_dimension` measures its
boundary (Sohl-Dickstein 2024: the boundary of trainability over two layers' learning rates is
fractal).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._validation import InvalidParameterError, fail, positive_int
from .basins import BASIN_CODES
from .optimizers import as_rule, group_rule
from .problems.base import Problem
from .problems.groups import parameter_groups

__all__ = ["hyperparameter_map", "AXES"]

#: the kinds of axis besides the optimizer's own hyperparameter names
AXES = ("eta", "init_scale", "lr:GROUP")


def _axis(spec: Any, which: str, caller: str) -> tuple[str, np.ndarray]:
    try:
        name, values = spec
        values = np.asarray(values, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise fail(which, caller, "a pair (name, values) with at least 2 increasing finite values", spec) from None
    if not isinstance(name, str) or values.size < 2 or not np.all(np.isfinite(values)) or np.any(np.diff(values) <= 0):
        raise fail(which, caller, "a pair (name, values) with at least 2 increasing finite values (one pixel or a "
                   "zero-width range is not a map)", spec)
    return name, values


def _groups(problem: Problem, caller: str) -> tuple[np.ndarray, list[str]]:
    g = parameter_groups(problem)
    idx = np.zeros(problem.dim, dtype=np.int32)
    for i, ix in enumerate(g.values()):
        idx[ix] = i
    return idx, list(g)


def _pixel_inputs(problem, axes, eta, rule, base, caller):
    """Per pixel (y slowest): η (B,), θ₀ (B, d), the rule and its hyperparameters (B, k) or None."""
    (xn, xv), (yn, yv) = axes
    X, Y = (g.reshape(-1) for g in np.meshgrid(xv, yv))
    cols = {xn: X, yn: Y}
    B = X.size
    et = cols.get("eta", None)
    if et is not None and eta is not None:
        raise fail("eta", caller, "None when an axis is 'eta' (the axis gives the step sizes)", eta)
    if et is None:
        if eta is None:
            raise fail("eta", caller, "a step size (> 0) when neither axis is 'eta'", eta)
        et = np.full(B, float(eta))
    if np.any(et <= 0):
        raise fail("x" if xn == "eta" else "y", caller, "step sizes > 0", "values <= 0")
    scale = cols.get("init_scale", np.ones(B))
    theta0 = scale[:, None] * base[None, :]
    lr = [n for n in cols if n.startswith("lr:")]
    hyper = None
    if lr:
        if not rule.is_gd:
            raise fail("optimizer", caller, "GD (None) with per-group learning-rate axes", rule.spec())
        idx, names = _groups(problem, caller)
        rule = group_rule(idx, names)
        hyper = np.ones((B, len(names)))
        for n in lr:
            if n[3:] not in names:
                raise fail("x" if n == xn else "y", caller, f"a group of {problem.name}: {', '.join(names)}", n[3:])
            if np.any(cols[n] <= 0):
                raise fail("x" if n == xn else "y", caller, "learning-rate multipliers > 0", n)
            hyper[:, names.index(n[3:])] = cols[n]
    own = [n for n in cols if n not in ("eta", "init_scale") and not n.startswith("lr:")]
    if own:
        names = [k for k, _ in rule.hyper]
        hyper = np.broadcast_to(rule.values, (B, len(names))).copy()
        for n in own:
            if n not in names:
                raise fail("x" if n == xn else "y", caller, f"eta, init_scale, lr:GROUP or a hyperparameter of "
                           f"{rule.spec()} ({', '.join(names) or 'none'})", n)
            hyper[:, names.index(n)] = cols[n]
    return et, theta0, rule, hyper


def hyperparameter_map(
    problem: Problem,
    x: tuple[str, Sequence[float]],
    y: tuple[str, Sequence[float]],
    *,
    eta: float | None = None,
    optimizer=None,
    steps: int = 1000,
    seed: int = 0,
    theta0=None,
    criteria=None,
    dtype: str = "float64",
    backend: str = "auto",
    threads: int | None = None,
    on_chunk=None,
):
    """Train once per pixel of a grid over two hyperparameters and classify every run.

    Main arguments:
        problem: any :class:`~gdstab.problems.Problem`.
        x, y: the axes, ``(name, values)``: "eta", "init_scale", "lr:GROUP" (a multiplier of η
            for one parameter group) or a hyperparameter of ``optimizer``; values increasing.

    Other arguments (keyword-only):
        eta: the step size when neither axis is "eta" (with "lr:" axes, each group's step size
            is η times its multiplier); None when an axis is "eta".
        optimizer: the update rule (default GD; "lr:" axes need GD).
        steps, criteria, dtype, backend, threads, on_chunk: of :func:`gdstab.trajectories`.
        seed: the seed of the one initial point every pixel starts from (common random
            numbers: pixels differ only in their hyperparameters); or give ``theta0``.

    Returns an ``xarray.Dataset`` over (y, x): ``status`` (codes in ``BASIN_CODES``),
    ``decision_step``, ``final_loss``; coords x and y with their names in attrs.
    """
    import xarray as xr

    from .dynamics import trajectories
    from .random import init_points

    caller = "hyperparameter_map"
    if not isinstance(problem, Problem):
        raise fail("problem", caller, "a gdstab Problem", problem)
    axes = (_axis(x, "x", caller), _axis(y, "y", caller))
    if axes[0][0] == axes[1][0]:
        raise fail("y", caller, "an axis other than x's", axes[1][0])
    steps = positive_int(steps, "steps", caller)
    seed = positive_int(seed, "seed", caller, minimum=0)
    rule = as_rule(optimizer, caller)
    base = init_points(problem, seed, np.arange(1))[0] if theta0 is None else np.asarray(theta0, np.float64).reshape(-1)
    if base.shape != (problem.dim,) or not np.all(np.isfinite(base)):
        raise fail("theta0", caller, f"a finite point of dimension {problem.dim}", f"shape {base.shape}")
    et, th0, rule, hyper = _pixel_inputs(problem, axes, eta, rule, base, caller)
    try:
        res = trajectories(problem, th0, et, steps=steps, optimizer=rule, hyper=hyper, dtype=dtype, backend=backend,
                           threads=threads, on_chunk=on_chunk, **({} if criteria is None else {"criteria": criteria}))
    except InvalidParameterError as e:  # a hyperparameter value outside its rule's range
        raise fail("x", caller, "values inside the rule's hyperparameter ranges", str(e)) from None
    shape = (axes[1][1].size, axes[0][1].size)
    (xn, xv), (yn, yv) = axes
    return xr.Dataset(
        {"status": (("y", "x"), np.asarray(res.status, dtype=np.int8).reshape(shape), {"codes": str(BASIN_CODES)}),
         "decision_step": (("y", "x"), np.asarray(res.step).reshape(shape)),
         "final_loss": (("y", "x"), np.asarray(res.loss, dtype=np.float64).reshape(shape))},
        coords={"x": ("x", xv, {"long_name": xn}), "y": ("y", yv, {"long_name": yn})},
        attrs={"problem": problem.name, "normalisation": problem.normalisation, "x_name": xn, "y_name": yn,
               "eta": float(eta) if eta is not None else "axis", "optimizer": res.optimizer.spec(), "steps": steps,
               "seed": seed, "dtype": dtype, "status_codes": str(BASIN_CODES)},
    )
