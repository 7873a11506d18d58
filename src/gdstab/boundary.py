"""How rough is a boundary between classes of a 2-D map (a basin map, a hyperparameter map)?

Two estimates of the boundary's dimension D from a classified raster, each with a bootstrap
95 % interval:

* **box counting**: a boundary pixel is the left (upper) one of two horizontal (vertical)
  neighbours whose classes differ; N(s) is
  the number of s x s boxes holding a boundary pixel, and N(s) ∝ s^(−D).  The box sizes are
  every s in [2, 1/8 of the shorter side] that divides both sides, so the aligned grid tiles the
  map exactly (a size that does not adds partial boxes at the map's edge: a curve of length L
  then counts about L/s + 1 boxes, which biased a straight boundary crossing a 64² map to
  0.93); only where fewer than MIN_SCALES sizes divide is the √2 ladder from 2 pixels used, and
  the result says so (``exact_tiling`` false).  Sides such as 72, 144, 288 or powers of two
  have many divisors.  N(s) is the fewest boxes over the aligned grid and random offsets of it
  (the best cover found).
* **uncertainty exponent** (final-state sensitivity, Grebogi, McDonald, Ott & Yorke 1983): the
  fraction f(ε) of pixels whose class differs from the pixel ε away scales as ε^α, and
  D = 2 − α.  On a stored raster ε is a whole number of pixels (1, 2, 4, ... up to 1/16 of the
  side), along the two axes; finer ε needs the map recomputed (a zoom).

The interval of each comes from refitting on random contiguous sub-ranges of the scales (at
least MIN_SCALES = 4 of them, or all when there are fewer) with a random grid offset or axis per
scale: it measures how much the
answer depends on the range of scales chosen, which is the dominant error of these fits.  A smooth
curve gives D = 1, a filled region's noise D → 2; with a single class there is no boundary and
the dimension is undefined (NaN, status says so).

What the intervals do not include is the raster's own bias: on 1024² rasters (box sizes 2 to
128, all dividing 1024) a circle measured 1.0005 [0.976, 1.018] by box counting and 0.987 by the
uncertainty exponent (whose interval then excludes 1), the Koch snowflake (1.262) 1.274
[1.231, 1.327]; with the √2 ladder of earlier versions the circle measured 0.982-0.993 and the
snowflake 1.22-1.28 depending on how finely it was drawn.  Differences
below about 0.03 between two maps are not evidence of different geometry.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._records import Record
from ._validation import fail, positive_int

__all__ = ["BoundaryResult", "boundary_dimension", "boundary_mask", "map_labels", "MIN_SIDE"]

#: the smallest map side (pixels) with enough scales for a fit
MIN_SIDE = 32
#: the fewest scales a fit uses
MIN_SCALES = 4


@dataclass(frozen=True, repr=False)
class BoundaryResult(Record):
    """Boundary dimension estimates from :func:`boundary_dimension`.

    Attributes:
        status: "ok", "single class" (no boundary: everything NaN) or "too few boundary
            pixels" (the boundary covers fewer than MIN_SCALES box sizes: NaN).
        dimension, interval: the box-counting dimension and its bootstrap 95 % interval.
        box_sizes, box_counts: (n,) box sides (pixels) and N(s) (the fewest over the grid offsets).
        alpha, alpha_interval: the uncertainty exponent and its interval.
        dimension_from_alpha, dimension_from_alpha_interval: 2 − α and its interval.
        eps, uncertain_fraction: (m,) ε (pixels) and f(ε).
        boundary_pixels, shape, classes: the boundary's size, the map's (rows, columns), the
            number of distinct classes.
        exact_tiling: whether every box size divides both sides of the map (else the √2
            ladder was used and small maps are biased low by partial edge boxes).
    """

    status: str
    dimension: float
    interval: tuple
    box_sizes: np.ndarray
    box_counts: np.ndarray
    alpha: float
    alpha_interval: tuple
    dimension_from_alpha: float
    dimension_from_alpha_interval: tuple
    eps: np.ndarray
    uncertain_fraction: np.ndarray
    boundary_pixels: int
    shape: tuple
    classes: int
    exact_tiling: bool = True

    def summary(self) -> dict:
        """JSON-ready numbers (no arrays but the scales and their values)."""
        f = (lambda x: None if not np.isfinite(x) else float(x))
        return {"status": self.status, "dimension": f(self.dimension), "interval": [f(x) for x in self.interval],
                "alpha": f(self.alpha), "alpha_interval": [f(x) for x in self.alpha_interval],
                "dimension_from_alpha": f(self.dimension_from_alpha),
                "dimension_from_alpha_interval": [f(x) for x in self.dimension_from_alpha_interval],
                "box_sizes": self.box_sizes.tolist(), "box_counts": self.box_counts.tolist(),
                "eps": self.eps.tolist(), "uncertain_fraction": self.uncertain_fraction.tolist(),
                "boundary_pixels": self.boundary_pixels, "shape": list(self.shape), "classes": self.classes,
                "exact_tiling": bool(self.exact_tiling)}


def map_labels(ds) -> np.ndarray:
    """The classes of a stored map (a :func:`gdstab.basins.basin_map` Dataset or any Dataset
    with ``status`` and optionally ``minimum_class``): the minimum's class where a pixel
    converged, otherwise a distinct label per status (diverged, periodic, ...)."""
    status = np.asarray(ds["status"].values).astype(np.int64)
    if "minimum_class" in ds:
        cls = np.asarray(ds["minimum_class"].values).astype(np.int64)
        return np.where(cls >= 0, cls, 1_000_000 + status)
    return status


def _check_labels(labels, caller: str) -> np.ndarray:
    L = np.asarray(labels)
    if L.ndim != 2:
        raise fail("labels", caller, "a 2-D array of class labels (rows, columns)", f"an array of shape {L.shape}")
    if min(L.shape) < MIN_SIDE:
        raise fail("labels", caller, f"a map at least {MIN_SIDE} pixels on each side", f"shape {L.shape}")
    if L.dtype.kind == "f":
        if not np.all(np.isfinite(L)):
            raise fail("labels", caller, "finite class labels (every pixel classified)",
                       f"{int((~np.isfinite(L)).sum())} non-finite pixels")
        if np.any(L != np.round(L)):
            raise fail("labels", caller, "integer class labels", "fractional values")
        L = L.astype(np.int64)
    elif L.dtype.kind not in "iub":
        raise fail("labels", caller, "an integer array of class labels", f"dtype {L.dtype}")
    return L


def boundary_mask(L: np.ndarray) -> np.ndarray:
    """One pixel per class change: the left (upper) pixel of each pair of horizontal (vertical)
    neighbours whose classes differ.  (Marking both pixels of a pair draws the curve two pixels
    thick and biases small boxes: a circle measured 1.045 instead of 0.987 at 1024².)"""
    m = np.zeros(L.shape, dtype=bool)
    m[:, :-1] |= L[:, 1:] != L[:, :-1]
    m[:-1, :] |= L[1:, :] != L[:-1, :]
    return m


def _scales(low: float, high: float, ratio: float) -> np.ndarray:
    n = int(np.floor(np.log(high / low) / np.log(ratio))) + 1
    return np.unique(np.round(low * ratio ** np.arange(max(n, 0))).astype(int))


def _box_sizes(shape: tuple) -> tuple[np.ndarray, bool]:
    """Box sides in [2, min(shape)/8] dividing both sides (exact tiling), or the √2 ladder where
    fewer than MIN_SCALES do; and which."""
    g = int(np.gcd(int(shape[0]), int(shape[1])))
    top = min(shape) / 8
    divs = np.array([s for s in range(2, int(top) + 1) if g % s == 0], dtype=int)
    if divs.size >= MIN_SCALES:
        return divs, True
    return _scales(2.0, top, np.sqrt(2.0)), False


def _box_counts(mask: np.ndarray, sizes: np.ndarray, offsets: int, rng) -> np.ndarray:
    """(n_sizes, offsets) box counts, the first offset (0, 0)."""
    ys, xs = np.nonzero(mask)
    out = np.zeros((sizes.size, offsets))
    for i, s in enumerate(sizes):
        for j in range(offsets):
            oy, ox = (0, 0) if j == 0 else rng.integers(0, s, size=2)
            idx = ((ys + oy) // s) * (mask.shape[1] // s + 2) + (xs + ox) // s
            out[i, j] = np.unique(idx).size
    return out


def _uncertain(L: np.ndarray, eps: np.ndarray) -> np.ndarray:
    """(n_eps, 2) fraction of pixel pairs ε apart along x and along y whose classes differ."""
    out = np.zeros((eps.size, 2))
    for i, e in enumerate(eps):
        out[i] = [np.mean(L[:, e:] != L[:, :-e]), np.mean(L[e:, :] != L[:-e, :])]
    return out


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def _bootstrap(logx: np.ndarray, table: np.ndarray, n_boot: int, rng, sign: float, reduce) -> tuple[float, float]:
    """95 % percentile interval of sign x the slope of log(reduce(row)) against logx, over random
    contiguous windows of >= min(MIN_SCALES, n) scales and, per scale, a resample (with
    replacement) of the row's columns (grid offsets, or axes); resamples with a zero are left
    out (NaN when that is most of them)."""
    n, k = logx.size, table.shape[1]
    w_min = min(MIN_SCALES, n)
    slopes = np.empty(n_boot)
    for b in range(n_boot):
        w = rng.integers(w_min, n + 1)
        s0 = rng.integers(0, n - w + 1)
        rows = table[s0:s0 + w]
        picked = reduce(rows[np.arange(w)[:, None], rng.integers(0, k, size=(w, k))], axis=1)
        # a resample of only zeros at some scale (e.g. the one axis along which an axis-aligned
        # boundary never changes class) has no logarithm: it is left out
        slopes[b] = sign * _slope(logx[s0:s0 + w], np.log(picked)) if np.all(picked > 0) else np.nan
    ok = slopes[np.isfinite(slopes)]
    if ok.size < n_boot // 2:  # most resamples unusable: no interval
        return float("nan"), float("nan")
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return float(lo), float(hi)


def boundary_dimension(labels, *, offsets: int = 8, bootstrap: int = 400, seed: int = 0) -> BoundaryResult:
    """The box-counting dimension and the uncertainty exponent of the boundary between the
    classes of a 2-D map (see the module docstring), with bootstrap 95 % intervals.

    Main arguments:
        labels: (rows, columns) integer class labels, at least 32 x 32 (for a Dataset from
            :func:`gdstab.basins.basin_map`, pass :func:`map_labels` of it).

    Other arguments (keyword-only):
        offsets: random box-grid offsets per box size (besides the aligned grid).
        bootstrap: resamples of the intervals.
        seed: integer seed of the offsets and resamples.
    """
    caller = "boundary_dimension"
    L = _check_labels(labels, caller)
    offsets = positive_int(offsets, "offsets", caller)
    bootstrap = positive_int(bootstrap, "bootstrap", caller, minimum=20)
    seed = positive_int(seed, "seed", caller, minimum=0)
    rng = np.random.default_rng(seed)
    classes = int(np.unique(L).size)
    mask = boundary_mask(L)
    sizes, tiling = _box_sizes(L.shape)
    eps = _scales(1.0, min(L.shape) / 16, 2.0)
    nan2 = (np.nan, np.nan)
    empty = dict(dimension=np.nan, interval=nan2, alpha=np.nan, alpha_interval=nan2, dimension_from_alpha=np.nan,
                 dimension_from_alpha_interval=nan2, boundary_pixels=int(mask.sum()), shape=tuple(L.shape),
                 classes=classes, exact_tiling=tiling)
    if classes < 2:
        return BoundaryResult(status="single class", box_sizes=sizes, box_counts=np.full(sizes.size, np.nan),
                              eps=eps, uncertain_fraction=np.zeros(eps.size), **empty)
    counts = _box_counts(mask, sizes, offsets + 1, rng)
    frac = _uncertain(L, eps)
    if np.count_nonzero(counts[:, 0] > 1) < MIN_SCALES or np.any(frac.mean(axis=1) <= 0):
        return BoundaryResult(status="too few boundary pixels", box_sizes=sizes, box_counts=counts.mean(axis=1),
                              eps=eps, uncertain_fraction=frac.mean(axis=1), **empty)
    logs, loge = np.log(sizes.astype(float)), np.log(eps.astype(float))
    D = -_slope(logs, np.log(counts.min(axis=1)))  # the fewest boxes over the offsets: the best cover
    alpha = _slope(loge, np.log(frac.mean(axis=1)))
    lo, hi = _bootstrap(logs, counts, bootstrap, rng, -1.0, np.min)
    alo, ahi = _bootstrap(loge, frac, bootstrap, rng, 1.0, np.mean)
    return BoundaryResult(status="ok", dimension=D, interval=(lo, hi), box_sizes=sizes, box_counts=counts.min(axis=1),
                          alpha=alpha, alpha_interval=(alo, ahi), dimension_from_alpha=2.0 - alpha,
                          dimension_from_alpha_interval=(2.0 - ahi, 2.0 - alo), eps=eps,
                          uncertain_fraction=frac.mean(axis=1), boundary_pixels=int(mask.sum()), shape=tuple(L.shape),
                          classes=classes, exact_tiling=tiling)
