"""What every result object of gdstab shares: a short readable ``repr`` (arrays summarised, no
parameter dumps, floats at 6 significant digits) and exports to xarray and pandas.

A result dataclass inherits :class:`Record`; it overrides :meth:`Record.to_xarray` where it has
natural dimensions (trajectories, evaluated step sizes); the default puts array fields on
dimensions named after the field and scalars into ``attrs``.  ``to_dataframe()`` is
``to_xarray().to_dataframe()`` unless a class says otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import numpy as np

__all__ = ["Record", "short", "eta_value", "evidence_dataset"]

#: sequences longer than this are summarised in a repr
_SHOW = 6


def eta_value(eta) -> float:
    """A step size at the precision it was given: a float32 0.3 is 0.3, not 0.30000001192092896."""
    return float(np.format_float_positional(np.asarray(eta)[()], unique=True, trim="-"))


def short(v: Any) -> str:
    """A value as a repr shows it: arrays and long sequences summarised, floats to 6 digits."""
    if isinstance(v, np.ndarray):
        if v.size <= _SHOW and v.ndim <= 1:
            return "[" + ", ".join(short(x) for x in v.tolist()) + "]"
        return f"<array {v.dtype} {'x'.join(map(str, v.shape))}>"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.6g}" if math.isfinite(float(v)) else str(float(v))
    if isinstance(v, (list, tuple)):
        if len(v) > _SHOW:
            return f"<{len(v)} {type(v).__name__ if isinstance(v, tuple) else 'items'}>"
        inner = ", ".join(short(x) for x in v)
        return f"({inner})" if isinstance(v, tuple) else f"[{inner}]"
    if isinstance(v, dict):
        return f"<dict of {len(v)}>" if len(v) > _SHOW else "{" + ", ".join(f"{k}: {short(x)}" for k, x in v.items()) + "}"
    if isinstance(v, str) and len(v) > 60:
        return repr(v[:57] + "...")
    return repr(v) if not hasattr(v, "spec") else v.spec()


class Record:
    """Mixin for result dataclasses: readable ``repr``, ``to_xarray()``, ``to_dataframe()``."""

    def __repr__(self) -> str:
        parts = [f"{f.name}={short(getattr(self, f.name))}" for f in dataclasses.fields(self)]
        return f"{type(self).__name__}({', '.join(parts)})"

    def to_xarray(self):
        """The result as an ``xarray.Dataset``: array fields as variables (dimensions named
        after the field), scalars and short texts in ``attrs`` (dicts and lists as JSON)."""
        import xarray as xr

        data, attrs = {}, {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and v.ndim:
                data[f.name] = ([f"{f.name}_dim{i}" for i in range(v.ndim)], v)
            elif isinstance(v, (bool, int, float, str, np.generic)):
                attrs[f.name] = v.item() if isinstance(v, np.generic) else v
            elif v is not None:
                attrs[f.name] = json.dumps(v, default=_json)
        return xr.Dataset(data, attrs=attrs)

    def to_dataframe(self):
        """The result as a ``pandas.DataFrame`` (``to_xarray().to_dataframe()``)."""
        return self.to_xarray().to_dataframe()


def evidence_dataset(evidence: list[dict[str, Any]], attrs: dict[str, Any]):
    """The per-step-size evidence of a bisection (one dict per evaluated η) as a Dataset over
    ``eta`` (numeric entries; None becomes NaN), with ``attrs`` (dicts and lists as JSON)."""
    import xarray as xr

    etas = np.array([e["eta"] for e in evidence], dtype=float)
    keys = [k for k in (evidence[0] if evidence else {}) if k != "eta"]
    data = {}
    for k in keys:
        vals = [e.get(k) for e in evidence]
        if all(v is None or isinstance(v, (int, float, np.number)) for v in vals):
            data[k] = (("eta",), np.array([np.nan if v is None else v for v in vals], dtype=float))
    clean = {k: (json.dumps(v, default=_json) if isinstance(v, (dict, list, tuple)) else v) for k, v in attrs.items()
             if v is not None}
    return xr.Dataset(data, coords={"eta": etas}, attrs=clean)


def _json(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)
