"""Crash-safe results folder of a sweep.

Layout of ``DIR``::

    data.zarr/    xarray-compatible Zarr store, one chunk per cell and variable
    cells/        one JSON completion marker per finished cell (with a CRC-32 of its data)
    config.toml   the configuration as run
    runs.jsonl    one line per invocation: start, end, wall time, executor, host (volatile
                  provenance, kept out of the Dataset so that an interrupted-and-resumed sweep
                  and an uninterrupted one give identical Datasets)

A cell is written in two steps: its data chunks, then its marker (written to a temporary file,
fsynced and renamed, so a marker is either whole or absent).  On resume every marker is checked
against the stored data (CRC-32 of the bytes); a missing, unreadable or mismatching cell is
computed again.  The single writer is the driver process, whatever the executor.
"""

from __future__ import annotations

import json
import os
import socket
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from .._validation import InvalidParameterError
from .config import SweepConfig

__all__ = ["Layout", "ResultsFolder", "StoreMismatchError", "StoreError", "STATUS_FILL"]

STATUS_FILL = 0  # status of a trajectory whose cell is not computed yet


class StoreMismatchError(InvalidParameterError):
    """The results folder holds a sweep with another configuration."""


class StoreError(InvalidParameterError):
    """The results folder is missing pieces or cannot be read."""


@dataclass(frozen=True)
class Layout:
    """Shape of a sweep: grid sizes, cell size, per-trajectory sizes."""

    option_names: tuple[str, ...]
    option_shape: tuple[int, ...]
    n_eta: int
    n_init: int
    cell_inits: int
    dim: int  # largest parameter dimension over the option points (smaller ones padded with NaN)
    n_records: int
    store_theta: bool

    @classmethod
    def for_config(cls, cfg: SweepConfig) -> "Layout":
        dims = [cfg.problem.build(p).dim for p in cfg.option_points()]
        d = max(dims)
        n_records = cfg.steps // cfg.record_every + 1 if cfg.record_every else 0
        if cfg.cell_inits:
            c = min(cfg.cell_inits, cfg.inits)
        else:  # ~4 MiB of stored data per cell, at most 65536 trajectories
            per = 1 + 4 + 2 + 16 + (16 * d if cfg.store_theta else 0) + 24 * n_records
            c = max(1, min(65536, cfg.inits, (4 * 2**20) // per))
        return cls(cfg.option_names(), cfg.option_shape(), len(cfg.eta), cfg.inits, c, d, n_records, cfg.store_theta)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_init // self.cell_inits)

    @property
    def n_options(self) -> int:
        return int(np.prod(self.option_shape)) if self.option_shape else 1

    @property
    def n_cells(self) -> int:
        return self.n_options * self.n_eta * self.n_blocks

    def cells(self) -> Iterator[tuple[int, int, int]]:
        """All cells (option point, η index, init block), in the order they are computed: the
        step sizes of one block of initialisations follow each other (they share its points)."""
        for o in range(self.n_options):
            for b in range(self.n_blocks):
                for e in range(self.n_eta):
                    yield (o, e, b)

    def flat(self, cell: tuple[int, int, int]) -> int:
        o, e, b = cell
        return (o * self.n_eta + e) * self.n_blocks + b

    def option_index(self, o: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(o, self.option_shape)) if self.option_shape else ()

    def init_slice(self, b: int) -> slice:
        return slice(b * self.cell_inits, min(self.n_init, (b + 1) * self.cell_inits))

    def cell_variables(self, cell) -> dict[str, tuple[tuple[str, ...], str]]:
        """The variables a cell writes: ``init_theta`` (shared by the step sizes of a block) is
        written by the cell of the first step size only."""
        v = self.variables()
        if cell[1] != 0:
            v.pop("init_theta", None)
        return v

    # variables: name -> (dims after the option dims, dtype)
    def variables(self) -> dict[str, tuple[tuple[str, ...], str]]:
        v = {
            "status": (("eta", "init"), "int8"),
            "decision_step": (("eta", "init"), "int32"),
            "period": (("eta", "init"), "int16"),
            "final_loss": (("eta", "init"), "float64"),
            "final_grad_norm": (("eta", "init"), "float64"),
        }
        if self.store_theta:
            v["final_theta"] = (("eta", "init", "coord"), "float64")
            v["init_theta"] = (("init", "coord"), "float64")
        if self.n_records:
            for m in ("loss_t", "grad_norm_t", "step_norm_t"):
                v[m] = (("eta", "init", "record"), "float64")
        return v

    def region(self, var_dims: tuple[str, ...], cell: tuple[int, int, int]) -> tuple:
        o, e, b = cell
        idx: list[Any] = [slice(i, i + 1) for i in self.option_index(o)]
        for d in var_dims:
            if d == "eta":
                idx.append(slice(e, e + 1))
            elif d == "init":
                idx.append(self.init_slice(b))
            else:
                idx.append(slice(None))
        return tuple(idx)


def _crc(arrays: Mapping[str, np.ndarray], names) -> int:
    c = 0
    for n in names:
        c = zlib.crc32(np.ascontiguousarray(arrays[n]).tobytes(), c)
    return c & 0xFFFFFFFF


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass


class ResultsFolder:
    """A sweep's results folder (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.zarr_path = self.path / "data.zarr"
        self.cells_dir = self.path / "cells"
        self._group = None

    # ------------------------------------------------------------------ creation / checking
    def exists(self) -> bool:
        return (self.zarr_path / "zarr.json").exists()

    def stored_config(self) -> dict[str, Any]:
        import zarr

        try:
            attrs = dict(zarr.open_group(str(self.zarr_path), mode="r").attrs)
            return json.loads(attrs["gdstab_config"])
        except Exception as exc:
            raise StoreError(
                f"The results folder {str(self.path)!r} has a store {str(self.zarr_path)!r} that cannot be read "
                f"({type(exc).__name__}: {exc}). Delete the folder (or pass --overwrite) to start fresh."
            ) from None

    def check_config(self, cfg: SweepConfig) -> None:
        """Refuse a folder made for another configuration, naming the differences."""
        stored = self.stored_config()
        mine = json.loads(cfg.canonical_json())
        if stored == mine:
            return
        diffs = sorted(_diff(stored, mine))
        raise StoreMismatchError(
            f"The results folder {str(self.path)!r} holds a sweep with a different configuration "
            f"(differs in: {', '.join(diffs[:8])}{' ...' if len(diffs) > 8 else ''}). "
            f"To start fresh, use a new --out folder, delete this one, or pass --overwrite."
        )

    def create(self, cfg: SweepConfig, layout: Layout, attrs: Mapping[str, Any], coords: Mapping[str, Any]) -> None:
        """Write the store's metadata (no data) with one chunk per cell."""
        import dask.array as da
        import xarray as xr

        self.path.mkdir(parents=True, exist_ok=True)
        self.cells_dir.mkdir(exist_ok=True)
        sizes = {"eta": layout.n_eta, "init": layout.n_init, "coord": layout.dim, "record": layout.n_records}
        chunk_of = {"eta": 1, "init": layout.cell_inits, "coord": layout.dim, "record": max(1, layout.n_records)}
        odims = layout.option_names
        data_vars = {}
        encoding = {}
        for name, (dims, dtype) in layout.variables().items():
            full = odims + dims
            shape = layout.option_shape + tuple(sizes[d] for d in dims)
            chunks = (1,) * len(odims) + tuple(chunk_of[d] for d in dims)
            fill = STATUS_FILL if name == "status" else (-1 if dtype.startswith("int") else np.nan)
            data_vars[name] = (full, da.full(shape, fill, dtype=dtype, chunks=chunks))
            encoding[name] = {"chunks": chunks}
            if dtype.startswith("int"):
                encoding[name]["_FillValue"] = None
            else:  # float results hardly compress; skipping the codec halves the write time
                encoding[name]["compressors"] = None
        ds = xr.Dataset(data_vars, coords=coords, attrs=dict(attrs))
        ds.to_zarr(str(self.zarr_path), mode="w-", compute=False, encoding=encoding, consolidated=False)
        _atomic_write(self.path / "config.toml", cfg.to_toml())

    # ------------------------------------------------------------------ cells
    def _open(self):
        import zarr

        if self._group is None:
            self._group = zarr.open_group(str(self.zarr_path), mode="r+")
        return self._group

    def marker_path(self, layout: Layout, cell) -> Path:
        return self.cells_dir / f"{layout.flat(cell)}.json"

    def write_cell(self, layout: Layout, cell, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
        """Data first, then the marker with the CRC-32 of exactly the bytes written."""
        g = self._open()
        variables = layout.cell_variables(cell)
        stored = {}
        for name, (dims, dtype) in variables.items():
            a = np.ascontiguousarray(arrays[name], dtype=dtype)
            g[name][layout.region(dims, cell)] = a
            stored[name] = a
        marker = {"cell": list(cell), "crc32": _crc(stored, sorted(variables)), **info}
        _atomic_write(self.marker_path(layout, cell), json.dumps(marker))

    def read_cell(self, layout: Layout, cell) -> dict[str, np.ndarray]:
        g = self._open()
        return {
            name: np.asarray(g[name][layout.region(dims, cell)])
            for name, (dims, _) in layout.cell_variables(cell).items()
        }

    def completed_cells(self, layout: Layout, verify: bool = True) -> set[tuple[int, int, int]]:
        """Cells with a valid marker (and, with ``verify``, data matching its CRC); invalid
        markers are removed so that those cells are computed again."""
        done = set()
        if not self.cells_dir.exists():
            return done
        valid = {layout.flat(c): c for c in layout.cells()}
        for path in self.cells_dir.glob("*.json"):
            try:
                flat = int(path.stem)
                m = json.loads(path.read_text())
                cell = tuple(int(x) for x in m["cell"])
                if valid.get(flat) != cell:
                    raise ValueError("marker for an unknown cell")
                names = sorted(layout.cell_variables(cell))
                if verify and _crc(self.read_cell(layout, cell), names) != int(m["crc32"]):
                    raise ValueError("data does not match the marker's checksum")
            except Exception:
                path.unlink(missing_ok=True)  # partial or corrupt: compute the cell again
                continue
            done.add(cell)
        return done

    # ------------------------------------------------------------------ provenance
    def log_run(self, record: Mapping[str, Any]) -> None:
        rec = dict(record)
        rec.setdefault("host", socket.gethostname())
        with open(self.path / "runs.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def runs(self) -> list[dict[str, Any]]:
        p = self.path / "runs.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut by a crash
        return out


def _diff(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for k in set(a) | set(b):
            key = f"{prefix}.{k}" if prefix else k
            if k not in a or k not in b:
                out.add(key)
            else:
                out |= _diff(a[k], b[k], key)
        return out
    return set() if a == b else {prefix or "(root)"}


def now() -> float:
    return time.time()
