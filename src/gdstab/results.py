"""Result stores on disk: writing a Dataset so that any reader opens it cleanly, and opening
any store gdstab writes (a sweep's results folder or a plain Zarr store).

Every store has consolidated Zarr metadata, so a plain ``xarray.open_zarr(path)`` opens it
without warnings; a plain store is written under a temporary name and renamed into place, so an
interrupted write never leaves a half-written store under the real name.
"""

from __future__ import annotations

import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np

__all__ = ["save_dataset", "open_store", "json_default"]


def save_dataset(ds, path: str | Path) -> Path:
    """Write ``ds`` as a Zarr store at ``path`` (replacing one that is there), with
    consolidated metadata, atomically: written beside it under a temporary name, then renamed."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{time.monotonic_ns() % 10**9}.tmp")
    old = path.with_name(f".{path.name}.{os.getpid()}-{time.monotonic_ns() % 10**9}.old")
    try:
        with warnings.catch_warnings():
            # zarr says consolidated metadata is not part of the v3 specification yet; xarray
            # and zarr-python read it, and it is what keeps their readers from warning
            warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
            ds.to_zarr(str(tmp), mode="w", consolidated=True)
        if path.exists():
            os.rename(path, old)
        os.rename(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    return path


def open_store(path: str | Path):
    """A stored Dataset, loaded: a gdstab sweep folder (through :func:`gdstab.sweep.open_results`)
    or a plain Zarr store."""
    import xarray as xr

    path = Path(path)
    if (path / "cells").exists():
        from .sweep import open_results

        return open_results(path)
    return xr.open_zarr(path, consolidated=None if (path / "zarr.json").exists() else False, chunks=None).load()


def json_default(o):
    """``json.dump``'s ``default`` for results: NumPy scalars and arrays as Python numbers and lists."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")
