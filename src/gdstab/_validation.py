"""One format for every message about bad input (house style: name the parameter, say what
was expected, show what was given).  Exceptions are raised eagerly, before any tracing."""

from __future__ import annotations

import math
import numbers
from typing import Any, Iterable

import numpy as np

__all__ = ["InvalidParameterError", "fail", "finite_float", "positive_int", "choice", "check_batch", "check_memory"]


class InvalidParameterError(ValueError):
    """Raised for invalid user input; the message names the parameter, the expectation and
    the value that was given."""


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 200 else text[:197] + "..."


def fail(name: str, caller: str, expected: str, got: Any) -> "InvalidParameterError":
    """Build the standard error: "The 'eta' parameter of trajectories must be ... Got ... instead."."""
    return InvalidParameterError(
        f"The {name!r} parameter of {caller} must be {expected}. Got {_show(got)} instead."
    )


def finite_float(
    value: Any,
    name: str,
    caller: str,
    *,
    low: float | None = None,
    low_inclusive: bool = False,
    high: float | None = None,
) -> float:
    """A finite real number, optionally with a lower (exclusive by default) and upper bound."""
    expected = "a finite float"
    if low is not None:
        expected += f" {'>=' if low_inclusive else '>'} {low:g}"
    if high is not None:
        expected += f" <= {high:g}"
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, np.floating, np.integer)):
        raise fail(name, caller, expected, value)
    v = float(value)
    if not math.isfinite(v):
        raise fail(name, caller, expected, value)
    if low is not None and (v < low or (v == low and not low_inclusive)):
        raise fail(name, caller, expected, value)
    if high is not None and v > high:
        raise fail(name, caller, expected, value)
    return v


def positive_int(value: Any, name: str, caller: str, *, minimum: int = 1) -> int:
    """An integer >= minimum (booleans and floats are refused)."""
    expected = f"an int >= {minimum}"
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        raise fail(name, caller, expected, value)
    v = int(value)
    if v < minimum:
        raise fail(name, caller, expected, value)
    return v


def choice(value: Any, name: str, caller: str, options: Iterable[str]) -> str:
    """One of a fixed set of strings."""
    opts = list(options)
    if not isinstance(value, str) or value not in opts:
        raise fail(name, caller, "one of " + ", ".join(repr(o) for o in opts), value)
    return value


def _all_finite(a: np.ndarray) -> bool:
    """Whether every entry is finite: one pass without a temporary (a non-finite entry makes the
    sum non-finite; a finite sum proves them all finite; an overflowing one is checked entry by
    entry)."""
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(np.sum(a)):
            return True
    return bool(np.all(np.isfinite(a)))


def check_batch(problem, theta0, eta, caller: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 initial points (B, d) of ``problem`` and step sizes (B,) (a scalar η
    is broadcast): the one check of a batch of trajectories, at the public entry points."""
    try:
        th = np.asarray(theta0, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("theta0", caller, f"an array of shape (B, {problem.dim}) of finite floats", theta0) from None
    if th.ndim == 1 and th.shape[0] == problem.dim:
        th = th[None, :]
    if th.ndim != 2 or th.shape[1] != problem.dim or th.shape[0] == 0 or not _all_finite(th):
        raise fail("theta0", caller, f"an array of shape (B, {problem.dim}) of finite floats with B >= 1", np.shape(th))
    B = th.shape[0]
    try:
        et = np.asarray(eta, dtype=np.float64)
    except (TypeError, ValueError):
        raise fail("eta", caller, "a finite float > 0 or an array of them", eta) from None
    if et.ndim == 0:
        et = np.full(B, float(et))
    if et.shape != (B,):
        raise fail("eta", caller, f"a finite float > 0 or an array of shape ({B},)", np.shape(et))
    if not (_all_finite(et) and et.min() > 0):
        bad = et[~(np.isfinite(et) & (et > 0))][0]
        raise fail("eta", caller, "a finite float > 0 (every entry)", float(bad))
    return th, et


def physical_memory() -> int:
    """Bytes of physical memory (0 where the platform does not say)."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return 0


def check_memory(nbytes: float, name: str, caller: str, what: str, value) -> None:
    """Refuse, before allocating, an input that needs more than half of the physical memory
    (``nbytes`` for ``what``), naming the parameter, the memory it would need and what there is."""
    have = physical_memory()
    if have and nbytes > have / 2:
        raise InvalidParameterError(
            f"The {name!r} parameter of {caller} asks for {what} of {nbytes / 2**30:.3g} GiB, more than half of "
            f"this machine's {have / 2**30:.3g} GiB of memory. Got {_show(value)} instead; choose a smaller value.")

