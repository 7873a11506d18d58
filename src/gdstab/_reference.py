"""Independent, slow implementations of the engine's classification, for tests and benchmarks.

* :func:`python_trajectory` — one trajectory in plain Python floats, written from the
  definition in :mod:`gdstab.dynamics` with the full history of iterates (no anchor state
  machine), so that it checks the engines rather than repeating them.
* :func:`numpy_engine` — the straightforward NumPy-vectorised loop over all trajectories, one
  array operation per step, removing decided trajectories as it goes.

Both take ``loss_grad(theta) -> (loss, grad)`` callables in their own array conventions.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from .outcomes import DRIFT, PERSISTENCE, Criteria, rounding2

__all__ = ["python_trajectory", "numpy_engine", "TOY_GRADS_PY", "TOY_GRADS_NP"]

SETTLED, DIVERGED, PERIODIC, BOUNDED = 1, 2, 3, 4


def python_trajectory(
    grad: Callable[[list[float]], list[float]],
    theta0: Sequence[float],
    eta: float,
    steps: int,
    criteria: Criteria,
) -> tuple[int, int, int, list[float]]:
    """Returns ``(raw_status, decision_step, period, theta)`` for one trajectory."""
    c = criteria
    theta = [float(v) for v in theta0]
    history: list[list[float]] = []
    small_run = 0
    returns: list[int] = []  # return time of each completed segment (0 = none)
    spans: list[float] = []  # largest squared step over each segment's probe steps 1..max_period
    dists: list[float] = []  # squared distance of each segment's first return (0 = none)
    floors: list[float] = []  # below which a return distance may grow (drift and rounding floors)
    steps2: list[float] = []
    persist2 = (1.0 - PERSISTENCE) ** 2
    rnd2 = rounding2(float(np.finfo(np.float64).eps))
    for t in range(steps + 1):
        history.append(theta)
        g = grad(theta)
        n2 = sum(v * v for v in theta)
        d2 = (eta * eta) * sum(v * v for v in g)
        steps2.append(d2)
        if not (n2 <= c.max_norm**2 and d2 < math.inf):
            return DIVERGED, t, 0, theta
        small_run = small_run + 1 if d2 <= c.tol**2 else 0
        if small_run >= c.window:
            return SETTLED, t, 0, theta
        k = t % c.check_every
        if k == c.max_period and c.max_period >= 1:
            a = t - k
            anchor = history[a]

            def dist(j):
                return sum((u - v) ** 2 for u, v in zip(history[a + j], anchor))

            if c.max_period >= 1 and dist(1) <= c.tol**2:
                r = 0
            else:
                r = next((j for j in range(2, c.max_period + 1) if dist(j) <= c.tol**2), 0)
            returns.append(r)
            spans.append(max(steps2[a + 1 : t + 1]))
            dists.append(dist(r) if r > 0 else 0.0)
            floors.append(max((DRIFT * c.tol) ** 2, rnd2 * (1.0 + n2)))
            last = returns[-c.period_checks :]
            span, dd, fl = spans[-c.period_checks :], dists[-c.period_checks :], floors[-c.period_checks :]
            # the same return time in the last period_checks segments, and the cycle persists:
            # its largest step does not shrink from one of them to the next, and it closes: its
            # return distance does not grow (unless below the floors)
            persists = all(span[i + 1] >= span[i] * persist2 and (dd[i + 1] <= dd[i] or dd[i + 1] <= fl[i + 1])
                           for i in range(len(span) - 1))
            if r > 0 and len(last) == c.period_checks and all(x == r for x in last) and persists:
                return PERIODIC, t, r, theta
        if t == steps:
            return BOUNDED, t, 0, theta
        theta = [v - eta * gv for v, gv in zip(theta, g)]
    raise AssertionError("unreachable")


def numpy_engine(
    grad: Callable[[np.ndarray], np.ndarray],
    theta0: np.ndarray,
    eta: np.ndarray,
    steps: int,
    criteria: Criteria,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """All trajectories as NumPy arrays (B, d); ``grad`` maps (n, d) -> (n, d).

    Returns ``(raw_status, decision_step, period, theta)``.  Decided trajectories are dropped
    from the working set at segment boundaries (the usual compaction of a vectorised loop)."""
    c = criteria
    B, d = theta0.shape
    status = np.zeros(B, np.int8)
    dstep = np.zeros(B, np.int64)
    period = np.zeros(B, np.int64)
    out = np.array(theta0, dtype=np.float64)
    idx = np.arange(B)
    th = out.copy()
    et = np.asarray(eta, np.float64).copy()
    s1 = np.zeros(B, np.int64)
    anc = th.copy()
    pseg = np.zeros(B, np.int64)
    pprev = np.zeros(B, np.int64)
    pcnt = np.zeros(B, np.int64)
    dmx = np.zeros(B)
    dprev = np.zeros(B)
    pret = np.zeros(B)
    prprev = np.zeros(B)
    persist2 = (1.0 - PERSISTENCE) ** 2
    drift2, rnd2 = (DRIFT * c.tol) ** 2, rounding2(float(np.finfo(np.float64).eps))
    tol2, maxn2 = c.tol**2, c.max_norm**2
    for t in range(steps + 1):
        k = t % c.check_every
        if k == 0:
            keep = status[idx] == 0
            if not keep.all():
                idx, th, et, s1, pseg, pprev, pcnt, dmx, dprev, pret, prprev = (
                    a[keep] for a in (idx, th, et, s1, pseg, pprev, pcnt, dmx, dprev, pret, prprev))
            if idx.size == 0:
                break
            anc = th.copy()
        act = status[idx] == 0
        g = grad(th)
        n2 = np.sum(th * th, axis=1)
        d2 = (et * et) * np.sum(g * g, axis=1)
        with np.errstate(invalid="ignore"):
            ok = (n2 <= maxn2) & (d2 < np.inf)
            small = d2 <= tol2
        s1 = np.where(small, s1 + 1, 0)
        ns = np.where(~ok, DIVERGED, np.where(s1 >= c.window, SETTLED, 0))
        if 1 <= k <= c.max_period:
            diff = th - anc
            dd = np.sum(diff * diff, axis=1)
            ret = dd <= tol2
            if k == 1:
                pseg = np.where(ret, -1, 0)
                dmx = d2.copy()
                pret = np.zeros_like(dd)
            else:
                first = ret & (pseg == 0)
                pseg = np.where(first, k, pseg)
                dmx = np.maximum(dmx, d2)
                pret = np.where(first, dd, pret)
            if k == c.max_period:
                found = pseg > 0
                closes = (pret <= prprev) | (pret <= np.maximum(drift2, rnd2 * (1 + n2)))
                same = found & (pseg == pprev) & (dmx >= dprev * persist2) & closes
                pcnt = np.where(same, pcnt + 1, np.where(found, 1, 0))
                pprev = pseg.copy()
                dprev = dmx.copy()
                prprev = pret.copy()
                isper = found & (pcnt >= c.period_checks)
                ns = np.where((ns == 0) & isper, PERIODIC, ns)
                period[idx[act & isper & (ns == PERIODIC)]] = pseg[act & isper & (ns == PERIODIC)]
        if t == steps:
            ns = np.where(ns == 0, BOUNDED, ns)
        newly = act & (ns != 0)
        status[idx[newly]] = ns[newly]
        dstep[idx[newly]] = t
        out[idx[newly]] = th[newly]
        go = act & (ns == 0)
        th = np.where(go[:, None], th - et[:, None] * g, th)
    return status, dstep, period, out


def _hyp_py(th):
    x, y = th
    r = 1.0 - x * y
    return [-y * r, -x * r]


def _hyp_np(th):
    x, y = th[:, 0], th[:, 1]
    r = 1.0 - x * y
    return np.stack([-y * r, -x * r], axis=1)


#: plain-Python and NumPy gradients of the toys (independent of JAX), for tests and benchmarks
TOY_GRADS_PY: dict[str, Callable] = {
    "hyperbola": _hyp_py,
    "quartic": lambda th: [th[0] ** 3],
    "quad_quartic": lambda th: [th[0] + th[0] ** 3],
    "saddle_quartic": lambda th: [-2 * th[0] * (th[1] ** 2 - th[0] ** 2), 2 * th[1] * (th[1] ** 2 - th[0] ** 2)],
    "zhu": lambda th: [
        th[0] * th[1] ** 2 * (th[0] ** 2 * th[1] ** 2 - 1),
        th[0] ** 2 * th[1] * (th[0] ** 2 * th[1] ** 2 - 1),
    ],
}
TOY_GRADS_NP: dict[str, Callable] = {"hyperbola": _hyp_np}
