"""Basin maps: where gradient descent goes from every point of a 2-D slice of parameter space.

:func:`basin_map` runs one trajectory per pixel of a plane through parameter space (any
problem, networks included), all pixels in one engine call, and returns per pixel the status,
the decision step, the period, the final loss and, optionally, which minimum was reached.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from ._validation import fail, finite_float, positive_int
from .outcomes import status_codes
from .problems.base import Problem

__all__ = ["BASIN_CODES", "basin_map"]

BASIN_CODES = status_codes(include_not_computed=False)  # the engine's status codes (gdstab.outcomes)


def _plane(problem: Problem, center, directions, caller: str) -> tuple[np.ndarray, np.ndarray]:
    d = problem.dim
    if center is None:
        c = np.zeros(d)
    else:
        c = np.asarray(center, dtype=np.float64).reshape(-1) if np.ndim(center) else None
        if c is None or c.shape != (d,) or not np.all(np.isfinite(c)):
            raise fail("center", caller, f"{d} finite floats (a point of parameter space)", center)
    if directions is None:
        if d < 2:
            raise fail("directions", caller, "two direction vectors (the problem has fewer than 2 coordinates)", None)
        D = np.eye(d)[:2]
    else:
        try:
            D = np.asarray(directions, dtype=np.float64)
        except (TypeError, ValueError):
            raise fail("directions", caller, f"an array (2, {d}) of two finite direction vectors", directions) from None
        if D.shape != (2, d) or not np.all(np.isfinite(D)):
            raise fail("directions", caller, f"an array (2, {d}) of two finite direction vectors", f"shape {D.shape}")
    n1, n2 = np.linalg.norm(D, axis=1)
    if n1 == 0 or n2 == 0:
        raise fail("directions", caller, "two non-zero direction vectors",
                   f"a zero vector (norms {n1:g}, {n2:g})")
    cos = abs(float(D[0] @ D[1])) / (n1 * n2)
    if 1.0 - cos <= 1e-10:
        raise fail("directions", caller, "two linearly independent (non-parallel) direction vectors",
                   f"parallel vectors (|cos angle| = {cos:.12g})")
    return c, D


def _axes(extent, resolution, caller: str):
    """The validated extent and the pixel coordinates a (n_a,) and b (n_b,)."""
    try:
        ext = [float(v) for v in extent]
    except (TypeError, ValueError):
        raise fail("extent", caller, "(a_min, a_max, b_min, b_max) finite floats with min < max", extent) from None
    if len(ext) != 4 or not all(math.isfinite(v) for v in ext) or ext[0] >= ext[1] or ext[2] >= ext[3]:
        raise fail("extent", caller, "(a_min, a_max, b_min, b_max) finite floats with min < max", extent)
    if isinstance(resolution, (int, np.integer)) and not isinstance(resolution, bool):
        na = nb = positive_int(resolution, "resolution", caller, minimum=2)
    else:
        try:
            na, nb = (positive_int(r, "resolution", caller, minimum=2) for r in resolution)
        except (TypeError, ValueError):
            raise fail("resolution", caller, "an int >= 2 or a pair (n_a, n_b) (one pixel is not a map)", resolution) from None
    return ext, np.linspace(ext[0], ext[1], na), np.linspace(ext[2], ext[3], nb)


def basin_map(
    problem: Problem,
    eta: float,
    *,
    extent: Sequence[float] = (-2.0, 2.0, -2.0, 2.0),
    resolution: int | Sequence[int] = 256,
    center=None,
    directions=None,
    steps: int = 2000,
    criteria=None,
    classify: str | Callable | None = None,
    backend: str = "auto",
    threads: int | None = None,
    optimizer=None,
    on_chunk=None,
):
    """Basin map of GD (or of the update rule ``optimizer``; buffers start at zero at every
    pixel) at one step size on the plane θ(a, b) = center + a·u + b·v.

    Main arguments:
        problem: any :class:`Problem`.
        eta: the step size.

    Other arguments (keyword-only):
        extent: (a_min, a_max, b_min, b_max) of the plane's coordinates.
        resolution: pixels per side, or (n_a, n_b).
        center: the plane's origin (default 0); directions: (2, d) array [u, v] (default the
            first two coordinate axes).  Zero or parallel directions are refused.
        steps, criteria, backend, threads, optimizer, on_chunk (progress): passed to :func:`gdstab.trajectories` (all pixels in
            one vectorised call; the compiled kernel for the built-in toys).
        classify: which minimum a converged pixel reached: ``None`` (one class), ``"sign"``
            (the sign pattern of the final point's coordinates, e.g. the branches of xy = 1), or
            a function (N, d) final points -> (N,) ints.

    Returns an ``xarray.Dataset`` with dims (b, a): ``status`` (codes in ``BASIN_CODES``),
    ``decision_step`` (time to decide), ``period``, ``minimum_class`` (−1 where not converged),
    ``final_loss``; coords a, b; attrs with the plane and the settings."""
    import xarray as xr

    from .dynamics import trajectories

    caller = "basin_map"
    eta = finite_float(eta, "eta", caller, low=0.0)
    ext, a, b = _axes(extent, resolution, caller)
    c, D = _plane(problem, center, directions, caller)
    A, Bm = (g.reshape(-1, 1) for g in np.meshgrid(a, b))  # (nb * na, 1), b slowest
    theta0 = c[None, :] + A * D[0][None, :] + Bm * D[1][None, :]
    res = trajectories(problem, theta0, eta, steps=steps, backend=backend, threads=threads, optimizer=optimizer,
                       on_chunk=on_chunk,
                       **({} if criteria is None else {"criteria": criteria}))
    status = np.asarray(res.status, dtype=np.int8)
    conv = status == BASIN_CODES["converged"]
    cls = np.full(status.shape, -1, dtype=np.int32)
    if classify is not None and conv.any():
        if classify == "sign":
            signs = (res.theta[conv] > 0).astype(np.int64)
            cls[conv] = (signs * (2 ** np.arange(problem.dim))[None, :]).sum(axis=1)
        elif callable(classify):
            labels = np.asarray(classify(res.theta[conv])).reshape(-1)
            if labels.shape != (int(conv.sum()),):
                raise fail("classify", caller, "a function returning one int per converged point", labels.shape)
            cls[conv] = labels.astype(np.int32)
        else:
            raise fail("classify", caller, "None, 'sign' or a function (N, d) -> (N,) ints", classify)
    elif conv.any():
        cls[conv] = 0
    shape = (b.size, a.size)
    return xr.Dataset(
        {
            "status": (("b", "a"), status.reshape(shape), {"codes": str(BASIN_CODES)}),
            "decision_step": (("b", "a"), np.asarray(res.step).reshape(shape)),
            "period": (("b", "a"), np.asarray(res.period).reshape(shape)),
            "minimum_class": (("b", "a"), cls.reshape(shape)),
            "final_loss": (("b", "a"), np.asarray(res.loss).reshape(shape)),
        },
        coords={"a": a, "b": b},
        attrs={
            "problem": problem.name,
            "normalisation": problem.normalisation,
            "eta": eta,
            "optimizer": res.optimizer.spec(),
            "steps": int(steps),
            "center": c.tolist(),
            "direction_u": D[0].tolist(),
            "direction_v": D[1].tolist(),
            "backend": res.backend,
            "classify": classify if isinstance(classify, str) else ("none" if classify is None else "custom"),
            "status_codes": str(BASIN_CODES),
        },
    )


def zoom_series(problem: Problem, eta: float, *, extent: Sequence[float] = (-2.0, 2.0, -2.0, 2.0),
                levels: int = 3, factor: float = 4.0, center: Sequence[float] | None = None,
                resolution: int = 256, **basin_kwargs) -> list:
    """Basin maps of nested windows, each re-rendered at full resolution, so that a user can see
    whether the boundary's structure persists across scales (a fractal boundary keeps
    structure; a smooth one turns into a straight line).

    Level 0 is ``extent``; level k + 1 is ``factor`` times smaller in both directions, centred
    on the boundary pixel of level k closest to ``center`` (default: the middle of
    ``extent``), so the zoom follows the boundary.  ``basin_kwargs`` go to :func:`basin_map`
    (plane, steps, criteria, classify, optimizer, ...).  Returns the ``levels`` Datasets, each
    with ``attrs["zoom_level"]`` and ``attrs["extent"]``."""
    caller = "zoom_series"
    ext, _, _ = _axes(extent, resolution, caller)
    levels = positive_int(levels, "levels", caller)
    factor = finite_float(factor, "factor", caller, low=1.0)
    if factor <= 1.0:
        raise fail("factor", caller, "a finite float > 1", factor)
    target = np.array([(ext[0] + ext[1]) / 2, (ext[2] + ext[3]) / 2]) if center is None else \
        np.asarray(center, dtype=np.float64).reshape(-1)
    if target.shape != (2,) or not np.all(np.isfinite(target)):
        raise fail("center", caller, "two finite plane coordinates (a, b)", center)
    maps = []
    half = np.array([(ext[1] - ext[0]) / 2, (ext[3] - ext[2]) / 2])
    window = np.asarray(ext, dtype=np.float64)
    for k in range(levels):
        ds = basin_map(problem, eta, extent=tuple(window), resolution=resolution, **basin_kwargs)
        ds.attrs.update(zoom_level=k, extent=[float(x) for x in window], zoom_factor=factor)
        maps.append(ds)
        c = _nearest_boundary_pixel(ds, target)
        half = half / factor
        window = np.array([c[0] - half[0], c[0] + half[0], c[1] - half[1], c[1] + half[1]])
    return maps


def _nearest_boundary_pixel(ds, target: np.ndarray) -> np.ndarray:
    """(a, b) of the pixel where the class changes (status or minimum) nearest to ``target``;
    ``target`` itself when the map has a single class."""
    from .boundary import boundary_mask, map_labels

    m = boundary_mask(map_labels(ds))
    if not m.any():
        return target
    A, Bm = np.meshgrid(ds.a.values, ds.b.values)
    d2 = (A - target[0]) ** 2 + (Bm - target[1]) ** 2
    i = np.argmin(np.where(m, d2, np.inf))
    return np.array([A.flat[i], Bm.flat[i]])
