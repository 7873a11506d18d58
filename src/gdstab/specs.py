"""Parsers for the small text formats users type: step-size grids, boxes, problem options.

Each parser raises :class:`~gdstab._validation.InvalidParameterError` with the standard
message (parameter, expectation, value)."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from ._validation import InvalidParameterError, fail
from .problems.base import parse_box

__all__ = ["parse_eta", "parse_box", "parse_option", "MAX_GRID"]

#: the largest number of step sizes a grid spec may expand to
MAX_GRID = 1_000_000

_FLOAT = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"


def parse_eta(spec: Any, *, name: str = "eta", caller: str = "gdstab") -> np.ndarray:
    """Step sizes from ``"0.5"``, ``"0.1,0.5,0.9"`` or ``"start:stop:num"`` (``num`` values
    from start to stop inclusive, like numpy.linspace), or from a number / sequence of numbers.

    Every value must be a finite float > 0.  Returns a float64 array (order kept)."""
    expected = "a finite float > 0, a comma-separated list of them, or 'start:stop:num' with num >= 1"
    if isinstance(spec, str):
        text = spec.strip()
        if ":" in text:
            parts = [p.strip() for p in text.split(":")]
            if len(parts) != 3 or not re.fullmatch(_FLOAT, parts[0]) or not re.fullmatch(_FLOAT, parts[1]):
                raise fail(name, caller, expected, spec)
            if not re.fullmatch(r"\d+", parts[2]):
                raise fail(name, caller, expected, spec)
            start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
            if num < 1 or num > MAX_GRID:
                raise fail(name, caller, f"'start:stop:num' with 1 <= num <= {MAX_GRID}", spec)
            if not (math.isfinite(start) and math.isfinite(stop)):
                raise fail(name, caller, expected, spec)
            values = np.linspace(start, stop, num) if num > 1 else np.array([start])
            if num == 1 and start != stop:
                raise fail(name, caller, "'start:stop:1' with start == stop (one value)", spec)
        else:
            parts = [p.strip() for p in text.split(",")]
            if not parts or not all(re.fullmatch(_FLOAT, p) for p in parts):
                raise fail(name, caller, expected, spec)
            if len(parts) > MAX_GRID:
                raise fail(name, caller, f"at most {MAX_GRID} values", f"{len(parts)} values")
            values = np.array([float(p) for p in parts])
    else:
        try:
            values = np.atleast_1d(np.asarray(spec, dtype=np.float64)).reshape(-1)
        except (TypeError, ValueError):
            raise fail(name, caller, expected, spec) from None
        if values.size == 0 or values.size > MAX_GRID:
            raise fail(name, caller, expected, spec)
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise fail(name, caller, "step sizes that are all finite floats > 0", spec)
    return values.astype(np.float64)


_KIND_TEXT = {
    "float": "a finite float",
    "int": "an int",
    "floats": "a comma-separated list of finite floats",
    "matrix": "a matrix: rows separated by ';', entries by ',' (e.g. 2,1;1,2)",
    "ints": "a comma-separated list of ints",
    "string": "a word of letters, digits and '_' (e.g. gelu)",
}


def parse_option(text: str, types: dict[str, str], *, problem: str) -> tuple[str, Any]:
    """One ``key=value`` problem option, typed by ``types`` (``float``, ``int``, ``floats``,
    ``ints``, ``matrix``, ``string``: a bare word such as ``gelu``)."""
    if not isinstance(text, str) or "=" not in text:
        raise fail("option", f"problem {problem!r}", "of the form key=value", text)
    key, _, value = text.partition("=")
    key, value = key.strip(), value.strip()
    if key not in types:
        raise InvalidParameterError(
            f"The 'option' parameter of problem {problem!r} must name one of {sorted(types) or 'no options'}. Got {key!r} instead."
        )
    kind = types[key]
    try:
        if kind == "float":
            v: Any = float(value)
            if not math.isfinite(v):
                raise ValueError
        elif kind == "int":
            if not re.fullmatch(r"[+-]?\d+", value):
                raise ValueError
            v = int(value)
        elif kind == "floats":
            v = [float(p) for p in value.split(",")]
            if not v or not all(math.isfinite(x) for x in v):
                raise ValueError
        elif kind == "matrix":  # rows separated by ';', entries by ','
            v = [[float(p) for p in row.split(",")] for row in value.split(";")]
            if not v or len({len(r) for r in v}) != 1 or not all(math.isfinite(x) for r in v for x in r):
                raise ValueError
        elif kind == "ints":
            if not re.fullmatch(r"\s*[+-]?\d+(\s*,\s*[+-]?\d+)*\s*", value):
                raise ValueError
            v = [int(p) for p in value.split(",")]
        elif kind == "string":
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
                raise ValueError
            v = value
        else:  # pragma: no cover - registry bug
            raise AssertionError(kind)
    except ValueError:
        raise fail(key, f"problem {problem!r}", _KIND_TEXT[kind], value) from None
    return key, v


def check_option(value: Any, kind: str, key: str, caller: str) -> Any:
    """A problem option read from a config (TOML values), checked against its declared
    ``kind`` (as :func:`parse_option` for text); returned unchanged when it fits."""
    def number(v, integer=False):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            return False
        return isinstance(v, int) if integer else True

    ok = {
        "float": lambda v: number(v),
        "int": lambda v: number(v, integer=True),
        "floats": lambda v: isinstance(v, list) and bool(v) and all(number(x) for x in v),
        "ints": lambda v: isinstance(v, list) and bool(v) and all(number(x, integer=True) for x in v),
        "matrix": lambda v: isinstance(v, list) and bool(v) and all(isinstance(r, list) and r and all(number(x) for x in r)
                                                                     for r in v) and len({len(r) for r in v}) == 1,
        "string": lambda v: isinstance(v, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", v) is not None,
    }[kind]
    if not ok(value):
        raise fail(key, caller, _KIND_VALUE[kind], value)
    return value


_KIND_VALUE = {
    "float": "a finite float",
    "int": "an int",
    "floats": "a non-empty list of finite floats",
    "ints": "a non-empty list of ints",
    "matrix": "a matrix: a list of equal-length lists of finite floats",
    "string": "a word of letters, digits and '_' (e.g. gelu)",
}

