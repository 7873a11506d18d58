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
    cell_etas: int = 1

    CELL_BYTES = 16 * 2**20  # automatic cells hold about this much stored data

    @classmethod
    def for_config(cls, cfg: SweepConfig) -> "Layout":
        dims = [cfg.problem.build(p).dim for p in cfg.option_points()]
        d = max(dims)
        n_records = cfg.steps // cfg.record_every + 1 if cfg.record_every else 0
        per = 1 + 4 + 2 + 16 + (16 * d if cfg.store_theta else 0) + 24 * n_records  # bytes per trajectory
        if cfg.cell_inits:
            c = min(cfg.cell_inits, cfg.inits)
        else:  # at most 65536 initialisations per cell
            c = max(1, min(65536, cfg.inits, cls.CELL_BYTES // per))
        if cfg.cell_etas:
            k = min(cfg.cell_etas, len(cfg.eta))
        elif c == cfg.inits and d <= 64:
            # every initialisation in one block: group step sizes so that small toy cells do not
            # pay the fixed cost of a cell (chunk files, marker, engine call) per step size.
            # Large models keep one step size per cell (their cells run side by side).
            k = max(1, min(len(cfg.eta), cls.CELL_BYTES // (per * c)))
        else:
            k = 1
        return cls(cfg.option_names(), cfg.option_shape(), len(cfg.eta), cfg.inits, c, d, n_records,
                   cfg.store_theta, k)

    @property
    def n_blocks(self) -> int:
        return -(-self.n_init // self.cell_inits)

    @property
    def n_eta_blocks(self) -> int:
        return -(-self.n_eta // self.cell_etas)

    @property
    def n_options(self) -> int:
        return int(np.prod(self.option_shape)) if self.option_shape else 1

    @property
    def n_cells(self) -> int:
        return self.n_options * self.n_eta_blocks * self.n_blocks

    def cells(self) -> Iterator[tuple[int, int, int]]:
        """All cells (option point, step-size block, init block), in the order they are
        computed: the step sizes of one block of initialisations follow each other (they share
        its points)."""
        for o in range(self.n_options):
            for b in range(self.n_blocks):
                for e in range(self.n_eta_blocks):
                    yield (o, e, b)

    def flat(self, cell: tuple[int, int, int]) -> int:
        o, e, b = cell
        return (o * self.n_eta_blocks + e) * self.n_blocks + b

    def option_index(self, o: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(o, self.option_shape)) if self.option_shape else ()

    def init_slice(self, b: int) -> slice:
        return slice(b * self.cell_inits, min(self.n_init, (b + 1) * self.cell_inits))

    def eta_slice(self, e: int) -> slice:
        return slice(e * self.cell_etas, min(self.n_eta, (e + 1) * self.cell_etas))

    def cell_variables(self, cell) -> dict[str, tuple[tuple[str, ...], str]]:
        """The variables a cell writes: ``init_theta`` (shared by the step sizes of a block) is
        written by the cell of the first step sizes only."""
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

    def total_bytes(self) -> int:
        """Bytes of all stored variables of the whole sweep."""
        sizes = {"eta": self.n_eta, "init": self.n_init, "coord": self.dim, "record": self.n_records}
        return sum(int(np.prod(self.option_shape + tuple(sizes[d] for d in dims))) * np.dtype(t).itemsize
                   for dims, t in self.variables().values())

    def region(self, var_dims: tuple[str, ...], cell: tuple[int, int, int]) -> tuple:
        o, e, b = cell
        idx: list[Any] = [slice(i, i + 1) for i in self.option_index(o)]
        for d in var_dims:
            if d == "eta":
                idx.append(self.eta_slice(e))
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
        self._raw: dict[str, Any] | None = None

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
        """Write the store's metadata (no data) with one chunk per cell.

        The Zarr v3 metadata documents are written directly, in the form zarr-python and xarray
        write them (dimension names, a base64 ``_FillValue`` attribute on float arrays, fill 0 on
        integer arrays): through zarr's API the empty store costs ~40 ms, through xarray ~0.2 s.
        Variables have no codec, so that a chunk is its raw bytes (see :meth:`_write_region`);
        zarr and xarray read the result (tested)."""
        self.path.mkdir(parents=True, exist_ok=True)
        self.cells_dir.mkdir(exist_ok=True)
        sizes = {"eta": layout.n_eta, "init": layout.n_init, "coord": layout.dim, "record": layout.n_records}
        chunk_of = {"eta": layout.cell_etas, "init": layout.cell_inits, "coord": layout.dim, "record": max(1, layout.n_records)}
        odims = layout.option_names
        self.zarr_path.mkdir(exist_ok=False)
        _write_json(self.zarr_path / "zarr.json",
                    {"attributes": _jsonable(dict(attrs)), "zarr_format": 3, "node_type": "group"})
        raw = {}
        for name, (dims, dtype) in layout.variables().items():
            shape = layout.option_shape + tuple(sizes[d] for d in dims)
            chunks = (1,) * len(odims) + tuple(max(1, chunk_of[d]) for d in dims)
            raw[name] = _write_array_meta(self.zarr_path / name, odims + dims, shape, chunks, np.dtype(dtype))
        for name, spec in coords.items():
            dim, values = spec[0], np.asarray(spec[1])
            _write_array_meta(self.zarr_path / name, (dim,), values.shape, values.shape, values.dtype,
                              spec[2] if len(spec) > 2 else None)
            if values.size:  # one chunk: the coordinate's raw bytes
                (self.zarr_path / name / "c").mkdir()
                (self.zarr_path / name / "c" / "0").write_bytes(
                    np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<")).tobytes())
        self._raw = raw  # what write_cell needs, without opening the arrays through zarr
        _atomic_write(self.path / "config.toml", cfg.to_toml())

    # ------------------------------------------------------------------ cells
    def _open(self):
        import zarr

        if self._group is None:
            self._group = zarr.open_group(str(self.zarr_path), mode="r+")
        return self._group

    def marker_path(self, layout: Layout, cell) -> Path:
        return self.cells_dir / f"{layout.flat(cell)}.json"

    def _raw_arrays(self) -> dict[str, Any]:
        """Per variable: (chunk shape, fill value, chunk-key encoder) when its chunks are stored
        as raw little-endian bytes (no codec: stores made by :meth:`create`), else absent."""
        if self._raw is None:
            g = self._open()
            raw = {}
            for name in g.array_keys():
                meta = g[name].metadata
                codecs = meta.to_dict().get("codecs", ())
                if len(codecs) == 1 and codecs[0].get("name") == "bytes" and \
                        codecs[0].get("configuration", {}).get("endian", "little") == "little":
                    raw[name] = _raw_entry(g[name])
            self._raw = raw
        return self._raw

    def _write_region(self, name: str, region: tuple, a: np.ndarray) -> None:
        """Write one whole chunk.  Raw chunks go straight to their file (zarr's asynchronous
        pipeline costs ~3 ms per chunk whatever its size, a file write ~0.2 ms); others via zarr."""
        raw = self._raw_arrays().get(name)
        if raw is None:
            self._open()[name][region] = a
            return
        shape, fill, encode = raw[:3]
        coords = tuple((r.start or 0) // c for r, c in zip(region, shape))
        if a.shape != shape:  # an edge chunk: zarr stores it whole, padded with the fill value
            full = np.full(shape, fill, dtype=a.dtype)
            full[tuple(slice(0, k) for k in a.shape)] = a
            a = full
        path = self.zarr_path / name / encode(coords)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(memoryview(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))).cast("B"))
        os.replace(tmp, path)

    def read_raw(self, name: str) -> np.ndarray | None:
        """The whole variable ``name`` read straight from its raw chunk files (None when its
        chunks are not raw).  Equal to zarr's read (tested); several times faster, because
        zarr's pipeline costs milliseconds per chunk."""
        raw = self._raw_arrays().get(name)
        if raw is None:
            return None
        shape, fill, encode, full_shape, dtype = raw
        dtype = dtype.newbyteorder("<")
        out = np.full(full_shape, fill, dtype=dtype)
        for coords in np.ndindex(*[-(-n // c) for n, c in zip(full_shape, shape)]):
            path = self.zarr_path / name / encode(coords)
            try:
                data = np.fromfile(path, dtype=dtype)
            except FileNotFoundError:
                continue
            if data.size != int(np.prod(shape)):
                raise StoreError(f"The chunk {str(path)!r} of the store has {data.size} values, expected {shape}. "
                                 f"Run the sweep again (it recomputes damaged cells) or pass --overwrite.")
            region = tuple(slice(i * c, min(n, (i + 1) * c)) for i, c, n in zip(coords, shape, full_shape))
            out[region] = data.reshape(shape)[tuple(slice(0, r.stop - r.start) for r in region)]
        return out

    def write_cell(self, layout: Layout, cell, arrays: Mapping[str, np.ndarray], info: Mapping[str, Any]) -> None:
        """Data first, then the marker with the CRC-32 of exactly the bytes written."""
        variables = layout.cell_variables(cell)
        stored = {}
        for name, (dims, dtype) in variables.items():
            a = np.ascontiguousarray(arrays[name], dtype=dtype)
            self._write_region(name, layout.region(dims, cell), a)
            stored[name] = a
        marker = {"cell": list(cell), "crc32": _crc(stored, sorted(variables)), **info}
        _atomic_write(self.marker_path(layout, cell), json.dumps(marker))

    def place(self, layout: Layout, cell, arrays: Mapping[str, np.ndarray], full: dict[str, np.ndarray]) -> None:
        """Copy a cell's arrays into whole-variable arrays ``full`` (allocated, uninitialised, at
        the first call in the stored dtypes): the in-memory twin of the store, valid once every
        cell has been placed."""
        raw = self._raw_arrays()
        for name, (dims, dtype) in layout.cell_variables(cell).items():
            if name not in full:
                shape = raw[name][3] if name in raw else tuple(self._open()[name].shape)
                full[name] = np.empty(shape, dtype=dtype)
            full[name][layout.region(dims, cell)] = arrays[name]

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


def _raw_entry(arr) -> tuple:
    """(chunk shape, fill value, chunk-key encoder, shape, dtype) of a raw-bytes array."""
    meta = arr.metadata
    return (tuple(meta.chunk_grid.chunk_shape), meta.fill_value, meta.encode_chunk_key, tuple(meta.shape),
            np.dtype(arr.dtype))


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=2))


def _chunk_key(coords) -> str:
    """Zarr v3's default chunk-key encoding with the "/" separator."""
    return "/".join(["c", *(str(int(c)) for c in coords)])


def _write_array_meta(path: Path, dims: tuple[str, ...], shape, chunks, dtype: np.dtype, attrs=None) -> tuple:
    """The zarr.json of a Zarr v3 array as zarr-python writes it for xarray: floats filled with
    NaN (and the ``_FillValue`` attribute xarray reads back as the mask value), integers with 0
    and no mask; raw little-endian bytes (no compression).  Returns the array's raw entry."""
    import base64

    attributes = dict(attrs or {})
    if dtype.kind == "f":
        fill: Any = "NaN"
        attributes["_FillValue"] = base64.standard_b64encode(np.array(np.nan, dtype=dtype).tobytes()).decode()
    else:
        fill = 0
    codec: dict[str, Any] = {"name": "bytes"}
    if dtype.itemsize > 1:
        codec["configuration"] = {"endian": "little"}
    path.mkdir()
    _write_json(path / "zarr.json", {
        "shape": [int(n) for n in shape],
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [int(c) for c in chunks]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [codec],
        "attributes": attributes,
        "dimension_names": list(dims),
        "zarr_format": 3,
        "node_type": "array",
        "storage_transformers": [],
    })
    return (tuple(int(c) for c in chunks), np.nan if dtype.kind == "f" else 0, _chunk_key,
            tuple(int(n) for n in shape), dtype)


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
