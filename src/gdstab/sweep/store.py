"""Crash-safe results folder of a sweep.

Layout of ``DIR``::

    gdstab-folder.json  ownership marker (written last at creation): kind, config, config
                        digest, the store's root attributes, SHA-256 of every metadata document
    .gdstab.lock        advisory lock held by the one process writing the folder
    data.zarr/          xarray-compatible Zarr store, one chunk per cell and variable
    cells/              one JSON completion marker per finished cell (with a CRC-32 of its data)
    config.toml         the configuration as run
    runs.jsonl          one line per invocation: start, end, wall time, executor, host (volatile
                        provenance, kept out of the Dataset so that an interrupted-and-resumed
                        sweep and an uninterrupted one give identical Datasets)

Creation is one atomic step: the skeleton (metadata, coordinates, config, marker) is built in a
temporary sibling folder and renamed into place (in place, marker last, where the folder
already exists and is empty), so a kill leaves no folder, a complete empty one, or leftovers
without a marker that the next run recognises and clears.  Metadata documents and coordinate
arrays are derived from the config: on every open their checksums are verified and a damaged
one is rebuilt, never touching a completed cell.  A cell is written in two steps: its data
chunks, then its marker (written to a temporary file, fsynced and renamed, so a marker is
either whole or absent).  On resume every marker is checked against the stored data (CRC-32
of the bytes); exactly the cells whose marker is unreadable or whose data is missing or does
not match are computed again.  The single writer is the driver process, whatever the executor.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np

from . import folders
from .config import SweepConfig
from .folders import FolderBusyError, ForeignFolderError, StoreError

__all__ = ["Layout", "ResultsFolder", "StoreMismatchError", "StoreError", "FolderBusyError", "ForeignFolderError",
           "STATUS_FILL", "coordinates"]

STATUS_FILL = 0  # status of a trajectory whose cell is not computed yet

#: the top-level entries a sweep folder holds besides the marker and the lock, in the order
#: --overwrite deletes them (completion markers first, so a kill halfway leaves no cell marked)
ENTRIES = ("cells", "data.zarr", "config.toml", "runs.jsonl")


class StoreMismatchError(StoreError):
    """The results folder holds a sweep with another configuration."""


class CellDataError(Exception):
    """A cell's stored data is missing or has the wrong size (the cell is computed again)."""


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
        dims = [cfg.problem_at(o).dim for o in range(len(cfg.option_points()))]
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

    @classmethod
    def from_dataset(cls, ds) -> "Layout":
        """The layout of a stored sweep, from its Dataset (dims and attributes)."""
        status = ds["status"]
        option_names = tuple(d for d in status.dims if d not in ("eta", "init"))
        return cls(option_names, tuple(int(ds.sizes[d]) for d in option_names), int(ds.sizes["eta"]),
                   int(ds.sizes["init"]), int(ds.attrs["cell_inits"]), int(ds.sizes.get("coord", 0)),
                   int(ds.sizes.get("record", 0)), "final_theta" in ds, int(ds.attrs.get("cell_etas", 1)))

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


def variable_attrs(name: str) -> dict[str, Any]:
    """CF-style attributes of a stored variable: ``long_name``, ``units`` ("1": a dimensionless
    number) and, for ``status``, ``flag_values``/``flag_meanings``.  Written into new folders'
    metadata; a folder of an older gdstab keeps its documents (their checksums are its own)."""
    from ..outcomes import status_variable_attrs

    if name == "status":
        return status_variable_attrs()
    return dict(_VARIABLE_ATTRS.get(name, {}))


_VARIABLE_ATTRS: dict[str, dict[str, Any]] = {
    "decision_step": {"long_name": "step at which the outcome was decided", "units": "1"},
    "period": {"long_name": "period of the cycle reached (0: not periodic)", "units": "1"},
    "final_loss": {"long_name": "loss at the last step", "units": "1"},
    "final_grad_norm": {"long_name": "norm of the gradient at the last step", "units": "1"},
    "final_theta": {"long_name": "parameters at the last step", "units": "1"},
    "init_theta": {"long_name": "initial parameters", "units": "1"},
    "loss_t": {"long_name": "loss at the recorded steps", "units": "1"},
    "grad_norm_t": {"long_name": "norm of the gradient at the recorded steps", "units": "1"},
    "step_norm_t": {"long_name": "eta times the norm of the gradient at the recorded steps", "units": "1"},
    "eta": {"long_name": "step size eta", "units": "1"},
    "init": {"long_name": "index of the initialisation (its key is derived from the seed and this index)"},
    "coord": {"long_name": "index of the parameter"},
    "record": {"long_name": "step of the record", "units": "1"},
}


def coordinates(cfg: SweepConfig, layout: Layout) -> dict[str, Any]:
    """The coordinate arrays of a sweep's Dataset: name -> (dim, values[, attrs])."""
    coords: dict[str, Any] = {
        "eta": ("eta", np.asarray(cfg.eta, dtype=np.float64), variable_attrs("eta")),
        "init": ("init", np.arange(cfg.inits, dtype=np.int64), variable_attrs("init")),
    }
    if layout.store_theta:
        coords["coord"] = ("coord", np.arange(layout.dim, dtype=np.int64), variable_attrs("coord"))
    if layout.n_records:
        coords["record"] = ("record", np.arange(layout.n_records, dtype=np.int64) * cfg.record_every,
                            variable_attrs("record"))
    for name, values in cfg.options.items():
        if all(isinstance(v, (int, float)) for v in values):
            coords[name] = (name, np.asarray(values))
        else:  # list-valued options: index coordinate, values in attrs
            coords[name] = (name, np.arange(len(values)), {"values": json.dumps(list(values))})
    return coords


def skeleton(cfg: SweepConfig, layout: Layout, attrs: Mapping[str, Any]) -> dict[str, bytes]:
    """Every document of an empty sweep folder except the marker, by path relative to the
    folder: the Zarr metadata of the group and of every variable and coordinate, the
    coordinates' chunks, and config.toml.  All of it is derived from the config (and the root
    attributes, fixed at creation), which is how damaged documents are rebuilt.

    The Zarr v3 metadata documents are written directly, in the form zarr-python and xarray
    write them (dimension names, a base64 ``_FillValue`` attribute on float arrays, fill 0 on
    integer arrays): through zarr's API the empty store costs ~40 ms, through xarray ~0.2 s.
    Variables have no codec, so that a chunk is its raw bytes; zarr and xarray read the result
    (tested)."""
    sizes = {"eta": layout.n_eta, "init": layout.n_init, "coord": layout.dim, "record": layout.n_records}
    chunk_of = {"eta": layout.cell_etas, "init": layout.cell_inits, "coord": layout.dim,
                "record": max(1, layout.n_records)}
    odims = layout.option_names
    arrays, chunks_raw = {}, {}
    for name, (dims, dtype) in layout.variables().items():
        shape = layout.option_shape + tuple(sizes[d] for d in dims)
        chunks = (1,) * len(odims) + tuple(max(1, chunk_of[d]) for d in dims)
        arrays[name] = _array_doc(odims + dims, shape, chunks, np.dtype(dtype), variable_attrs(name))
    for name, spec in coordinates(cfg, layout).items():
        dim, values = spec[0], np.asarray(spec[1])
        arrays[name] = _array_doc((dim,), values.shape, values.shape, values.dtype, spec[2] if len(spec) > 2 else None)
        if values.size:  # one chunk: the coordinate's raw bytes
            chunks_raw[f"data.zarr/{name}/c/0"] = np.ascontiguousarray(
                values, dtype=values.dtype.newbyteorder("<")).tobytes()
    # the group document carries every array's document too (consolidated metadata, as
    # xarray writes it), so that a plain xarray.open_zarr(path) opens the store without warnings
    docs = {"data.zarr/zarr.json": _json_bytes({
        "attributes": _jsonable(dict(attrs)), "zarr_format": 3,
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": arrays},
        "node_type": "group"})}
    docs.update({f"data.zarr/{name}/zarr.json": _json_bytes(doc) for name, doc in arrays.items()})
    docs.update(chunks_raw)
    docs["config.toml"] = cfg.to_toml().encode()
    return docs


class ResultsFolder:
    """A sweep's results folder (see the module docstring)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.zarr_path = self.path / "data.zarr"
        self.cells_dir = self.path / "cells"
        self._group = None
        self._raw: dict[str, Any] | None = None
        self.read_only = False
        self.notes: list[str] = []  # what opening the folder repaired or cleared (one line each)

    # ------------------------------------------------------------------ what is there
    def exists(self) -> bool:
        """Whether the folder holds a sweep (created by this version, or an older one)."""
        return (self.path / folders.MARKER).exists() or (self.zarr_path / "zarr.json").exists()

    def marker(self) -> dict[str, Any] | None:
        doc = folders.read_marker(self.path)
        if doc is not None and doc.get("kind") != "sweep":
            raise ForeignFolderError(
                f"The folder {str(self.path)!r} is a gdstab {doc.get('kind')} folder, not a sweep's. "
                f"Choose another folder for the sweep.")
        return doc

    def stored_config(self) -> dict[str, Any]:
        """The config the folder was made for (from the marker, else from the store)."""
        try:
            m = self.marker()
        except folders.MarkerDamagedError:
            m = None
        if m is not None:
            return m["config"]
        legacy = self._legacy_config()
        if legacy is None:
            raise StoreError(
                f"The results folder {str(self.path)!r} has no readable description of its sweep (its marker "
                f"{folders.MARKER!r} and its store's metadata are missing or damaged). Run the sweep command "
                f"that made it (gdstab sweep CONFIG --out {str(self.path)!r}): it repairs the folder."
            )
        return legacy

    def _legacy_root(self) -> dict[str, Any] | None:
        """The root attributes of a store written without a marker (older gdstab), if readable."""
        try:
            doc = json.loads((self.zarr_path / "zarr.json").read_bytes())
            attrs = doc["attributes"]
            json.loads(attrs["gdstab_config"])
            return attrs
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _legacy_config(self) -> dict[str, Any] | None:
        root = self._legacy_root()
        return None if root is None else json.loads(root["gdstab_config"])

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

    # ------------------------------------------------------------------ opening for a run
    def prepare(self, cfg: SweepConfig, layout: Layout, attrs: Mapping[str, Any], *, overwrite: bool = False,
                resume: bool = False, wait: bool = False, say=None) -> "folders.FolderLock | None":
        """Make the folder ready for a run of ``cfg`` and return its lock (held; None when the
        folder is read-only and complete, so nothing will be written).

        Creates the folder atomically, or opens an existing one: takes the lock (or names its
        holder / waits), clears the leftovers of an interrupted creation, adopts a folder of an
        older gdstab, verifies the metadata and rebuilds damaged documents, and with
        ``overwrite`` empties a folder gdstab owns.  Every repair is noted in ``self.notes``."""
        say = say or (lambda text: None)
        if overwrite:
            folders.refuse_dangerous_overwrite(self.path)
        if self.path.exists() and not self.path.is_dir():
            raise StoreError(f"The --out path {str(self.path)!r} is a file, not a folder. Choose a folder for the results.")
        self._clear_stale_creations()
        if not self.path.exists():
            if resume:
                raise StoreError(f"The 'resume' flag was given but {str(self.path)!r} holds no sweep to continue. "
                                 f"Run without --resume to start it.")
            lock = self._create_by_rename(cfg, layout, attrs)
            if lock is not None:
                return lock
        foreign = self._foreign_entries()
        if foreign:  # refused before anything (even the lock file) is written into the folder
            folders.refuse_foreign(self.path, foreign, "overwrite" if overwrite else "write a sweep into")
        lock = folders.FolderLock(self.path)
        try:
            lock.acquire(wait=wait, on_wait=say)
        except OSError as exc:
            if not folders.is_read_only_error(exc):
                raise
            return self._open_read_only(cfg, layout, exc)
        try:
            self._open_locked(cfg, layout, attrs, overwrite=overwrite, resume=resume)
        except BaseException:
            lock.release()
            raise
        return lock

    def _foreign_entries(self) -> list[str]:
        """Top-level entries gdstab did not write (a sweep of an older gdstab is recognised by
        its store; see :func:`folders.foreign_entries`)."""
        owned = (self.path / folders.MARKER).exists() or self._legacy_root() is not None
        return folders.foreign_entries(self.path, ENTRIES, owned)

    def _clear_stale_creations(self) -> None:
        """Temporary skeletons of creations killed before their rename (their lock is free)."""
        parent = self.path.parent
        if not parent.is_dir():
            return
        for tmp in parent.glob(f".{self.path.name}.gdstab-new-*"):
            lock = folders.FolderLock(tmp)
            try:
                if not lock.try_acquire():
                    continue
            except OSError:
                continue
            try:
                shutil.rmtree(tmp, ignore_errors=True)
            finally:
                lock.release()

    def _create_by_rename(self, cfg, layout, attrs) -> "folders.FolderLock | None":
        """Build the skeleton under a temporary name beside the folder, lock it, rename it into
        place.  Returns the held lock, or None when another process created the folder first."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.gdstab-new-{os.getpid()}-{time.monotonic_ns() % 10**9}")
        tmp.mkdir()
        lock = folders.FolderLock(tmp)
        try:
            lock.acquire()
            # the documents are derived data (rebuilt if a power failure damages them); the
            # marker, written last, is fsynced
            self._write_skeleton(tmp, cfg, layout, attrs, sync=False)
            try:
                os.rename(tmp, self.path)
            except OSError as exc:
                if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.EISDIR):
                    lock.release()
                    shutil.rmtree(tmp, ignore_errors=True)
                    return None  # a concurrent start won: open its folder instead
                raise
            folders.fsync_dir(self.path.parent)
        except BaseException:
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        lock.folder = self.path
        return lock

    def _write_skeleton(self, where: Path, cfg, layout, attrs, *, sync: bool = True) -> None:
        """The documents of :func:`skeleton` and the empty ``cells/``, then the complete marker.
        In place (``sync``), a marker in state "creating" comes first, so that what a kill
        leaves is recognised as gdstab's and cleared by the next run."""
        docs = skeleton(cfg, layout, attrs)
        if sync:
            _write_marker(where, cfg, attrs)
        for rel, data in docs.items():
            path = where / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            folders.atomic_write(path, data, sync=sync)
        (where / "cells").mkdir(exist_ok=True)
        if not sync:
            folders.fsync_dir(where)
        _write_marker(where, cfg, attrs, docs)
        self._raw = None

    def _open_locked(self, cfg, layout, attrs, *, overwrite: bool, resume: bool) -> None:
        try:
            marker, damaged = self.marker(), False
        except folders.MarkerDamagedError:
            marker, damaged = None, True
        mine, foreign = folders.entries(self.path, ENTRIES)
        if marker is not None and marker.get("state") == "creating":
            marker = None  # a creation in place killed before it completed: its leftovers are cleared below
        if overwrite:
            folders.refuse_foreign(self.path, foreign, "overwrite")
            folders.remove_entries(self.path, [n for n in ENTRIES if n in mine]
                                   + [n for n in mine if folders.is_temporary(n)] + [folders.MARKER])
            self.notes.append(f"--overwrite: removed the previous sweep's files from {str(self.path)!r}")
            marker, damaged = None, False
            mine = folders.entries(self.path, ENTRIES)[0]
        if damaged:
            marker = self._rebuild_marker(cfg, layout, attrs)
        if marker is not None:
            self.check_config(cfg)
            self.repair_metadata(cfg, layout, marker)
            return
        legacy = self._legacy_root()
        if self._marked_cells():
            if legacy is None:
                raise StoreError(
                    f"The results folder {str(self.path)!r} has completion markers but neither gdstab's marker "
                    f"{folders.MARKER!r} nor readable store metadata, so gdstab cannot tell which sweep they belong "
                    f"to. Nothing was deleted; run the command that made the folder, or choose a new folder.")
            self.check_config(cfg)  # a sweep of an older gdstab: adopt it
            self._adopt(cfg, layout, legacy)
            return
        if resume:
            raise StoreError(f"The 'resume' flag was given but {str(self.path)!r} holds no sweep to continue. "
                             f"Run without --resume to start it.")
        folders.refuse_foreign(self.path, self._foreign_entries(), "write a sweep into")
        leftovers = [n for n in mine if n != folders.LOCK]
        if leftovers:  # a creation (or an overwrite) interrupted before its marker: nothing completed
            folders.remove_entries(self.path, [n for n in ENTRIES if n in leftovers]
                                   + [n for n in leftovers if n not in ENTRIES])
            self.notes.append(f"cleared the leftovers of an interrupted creation in {str(self.path)!r}")
        self._write_skeleton(self.path, cfg, layout, attrs)

    def _marked_cells(self) -> bool:
        return self.cells_dir.is_dir() and any(self.cells_dir.glob("*.json"))

    def _rebuild_marker(self, cfg, layout, attrs) -> dict[str, Any]:
        """A damaged marker: rebuilt from the store's own description of its sweep (which must
        be this config); the root attributes are the store's, or new ones if it has none."""
        root = self._legacy_root()
        config = json.loads(root["gdstab_config"]) if root is not None else None
        if config is None and (self.path / "config.toml").exists():
            try:
                from .config import load_config

                config = json.loads(load_config(self.path / "config.toml").canonical_json())
            except Exception:
                config = None
        if config is None:
            if not self._marked_cells():
                return None  # nothing completed: treated as leftovers of a creation
            raise StoreError(
                f"The marker {folders.MARKER!r} and the store's metadata of {str(self.path)!r} are both damaged, "
                f"so gdstab cannot tell which config its completed cells belong to. Nothing was deleted.")
        if config != json.loads(cfg.canonical_json()):
            self.check_config(cfg)  # raises, naming the differences
        use = root if root is not None else dict(attrs)
        self.notes.append(f"rebuilt the damaged marker {folders.MARKER!r} from the store's metadata")
        return _write_marker(self.path, cfg, use, skeleton(cfg, layout, use))

    def _adopt(self, cfg, layout, root_attrs) -> None:
        """A folder written by an older gdstab (no marker): write its marker, then verify."""
        marker = _write_marker(self.path, cfg, root_attrs, skeleton(cfg, layout, root_attrs))
        self.notes.append(f"adopted a sweep folder of an older gdstab: wrote its marker {folders.MARKER!r}")
        self.repair_metadata(cfg, layout, marker)

    def verify_metadata(self, marker: dict[str, Any] | None = None) -> list[str]:
        """Metadata documents (relative paths) whose bytes do not match the marker's checksum."""
        marker = marker if marker is not None else self.marker()
        if marker is None:
            return []
        bad = []
        for rel, digest in marker.get("manifest", {}).items():
            try:
                ok = folders.sha256((self.path / rel).read_bytes()) == digest
            except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
                ok = False
            if not ok:
                bad.append(rel)
        return bad

    def repair_metadata(self, cfg: SweepConfig, layout: Layout, marker: dict[str, Any]) -> list[str]:
        """Rebuild every damaged or missing metadata document from the config (never touching
        a data chunk or a completion marker).  Returns the documents rebuilt."""
        bad = self.verify_metadata(marker)
        if not bad:
            return []
        docs = skeleton(cfg, layout, marker["attributes"])
        manifest = dict(marker["manifest"])
        for rel in bad:
            path = self.path / rel
            if path.is_dir():  # something else took the document's name
                shutil.rmtree(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            folders.atomic_write(path, docs[rel])
            manifest[rel] = folders.sha256(docs[rel])
        if manifest != marker["manifest"]:  # a document's form changed between gdstab versions
            folders.rewrite_marker(self.path, {**marker, "manifest": manifest})
        self._group = self._raw = None
        self.notes.append(f"rebuilt {len(bad)} damaged metadata document(s) from the config "
                          f"({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}); no completed cell was touched")
        return bad

    def _open_read_only(self, cfg, layout, exc: OSError) -> None:
        """A folder that cannot be written: usable only if it holds the complete, intact sweep."""
        self.read_only = True
        why = folders.describe_os_error(exc, "cannot write to the results folder")
        try:
            marker = self.marker()
        except folders.MarkerDamagedError:
            marker = None
        if marker is None and self._legacy_root() is None:
            raise StoreError(f"{why}; it holds no readable sweep.") from None
        self.check_config(cfg)
        bad = self.verify_metadata(marker) if marker is not None else []
        done = self.completed_cells(layout, invalidate=False)
        if bad or len(done) < layout.n_cells:
            raise StoreError(
                f"{why}; {len(done)} of {layout.n_cells} cells are complete and intact"
                + (f", {len(bad)} metadata document(s) need repair" if bad else "")
                + ". Nothing was changed; make the folder writable and run the same command to continue.") from None
        self.notes.append(f"the folder is read-only ({exc.strerror}); it holds the complete sweep, shown as stored")
        return None

    # ------------------------------------------------------------------ cells
    def _open(self):
        import zarr

        if self._group is None:
            self._group = zarr.open_group(str(self.zarr_path), mode="r+" if not self.read_only else "r")
        return self._group

    def marker_path(self, layout: Layout, cell) -> Path:
        return self.cells_dir / f"{layout.flat(cell)}.json"

    def _raw_arrays(self) -> dict[str, Any]:
        """Per variable: (chunk shape, fill value, chunk-key encoder, shape, dtype) when its
        chunks are stored as raw little-endian bytes (no codec: stores gdstab writes), else
        absent (then zarr reads and writes them).  Read from the metadata documents."""
        if self._raw is None:
            raw = {}
            for doc_path in self.zarr_path.glob("*/zarr.json"):
                try:
                    entry = _raw_entry(json.loads(doc_path.read_bytes()))
                except (ValueError, KeyError, TypeError):
                    entry = None
                if entry is not None:
                    raw[doc_path.parent.name] = entry
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
        # not fsynced: the cell's marker is, and a chunk lost with a power failure fails its CRC
        folders.atomic_write(path, memoryview(np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))).cast("B"),
                             sync=False)

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
                                 f"Run the sweep again (it recomputes damaged cells).")
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
        folders.atomic_write(self.marker_path(layout, cell), json.dumps(marker))

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
        """A cell's stored arrays; raises :class:`CellDataError` when a chunk is missing or has
        the wrong size (raw chunks), other OS errors as they are."""
        out = {}
        raw_all = self._raw_arrays()
        for name, (dims, _) in layout.cell_variables(cell).items():
            region = layout.region(dims, cell)
            raw = raw_all.get(name)
            if raw is None:
                out[name] = np.asarray(self._open()[name][region])
                continue
            shape, _, encode, _, dtype = raw
            coords = tuple((r.start or 0) // c for r, c in zip(region, shape))
            path = self.zarr_path / name / encode(coords)
            try:
                data = np.fromfile(path, dtype=dtype.newbyteorder("<"))
            except FileNotFoundError:
                raise CellDataError(f"missing chunk {path}") from None
            if data.size != int(np.prod(shape)):
                raise CellDataError(f"chunk {path} has {data.size} values, expected {shape}")
            out[name] = data.reshape(shape)[tuple(slice(None) if r.stop is None else slice(0, r.stop - (r.start or 0))
                                                  for r in region)]
        return out

    def completed_cells(self, layout: Layout, verify: bool = True, invalidate: bool = True) -> set[tuple[int, int, int]]:
        """Cells with a valid marker (and, with ``verify``, data matching its CRC).  With
        ``invalidate``, exactly the markers that fail -- unreadable, for a cell outside the
        layout, or whose own data is missing or does not match -- are removed so that those
        cells are computed again.  Operating-system errors (permissions, I/O) propagate: they
        say nothing about the data, so no marker is removed for them."""
        done = set()
        if not self.cells_dir.exists():
            return done
        valid = {layout.flat(c): c for c in layout.cells()}
        for path in self.cells_dir.glob("*.json"):
            try:
                cell, crc = _parse_marker(path, valid)
                if verify:
                    names = sorted(layout.cell_variables(cell))
                    if _crc(self.read_cell(layout, cell), names) != crc:
                        raise ValueError("data does not match the marker's checksum")
            except (ValueError, CellDataError):
                if invalidate and not self.read_only:
                    path.unlink(missing_ok=True)  # partial or corrupt: compute the cell again
                continue
            done.add(cell)
        return done

    # ------------------------------------------------------------------ provenance
    def log_run(self, record: Mapping[str, Any]) -> None:
        """Append one line to runs.jsonl in one write (a line cut by a crash before it is
        ended first, so it never swallows this one)."""
        rec = dict(record)
        rec.setdefault("host", socket.gethostname())
        path = self.path / "runs.jsonl"
        line = json.dumps(rec) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:
                with open(path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        line = "\n" + line
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)

    def runs(self) -> list[dict[str, Any]]:
        p = self.path / "runs.jsonl"
        if not p.exists():
            return []
        out = []
        for line in p.read_bytes().decode(errors="replace").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash
            if isinstance(rec, dict):
                out.append(rec)
        return out


def _write_marker(where: Path, cfg: SweepConfig, attrs: Mapping[str, Any],
                  docs: Mapping[str, bytes] | None = None) -> dict[str, Any]:
    """A sweep folder's marker: in state "creating" without ``docs``, else "complete" with the
    SHA-256 of every document of :func:`skeleton`."""
    fields = dict(config=json.loads(cfg.canonical_json()), config_digest=cfg.digest(),
                  attributes=_jsonable(dict(attrs)))
    if docs is None:
        return folders.write_marker(where, "sweep", state="creating", **fields)
    return folders.write_marker(where, "sweep", state="complete", **fields,
                                manifest={rel: folders.sha256(data) for rel, data in docs.items()})


def _parse_marker(path: Path, valid: Mapping[int, tuple]) -> tuple[tuple, int]:
    """(cell, CRC-32) of a completion marker; ValueError when it is not a valid marker of one
    of the layout's cells."""
    try:
        m = json.loads(path.read_bytes())
        cell = tuple(int(x) for x in m["cell"])
        crc = int(m["crc32"])
        flat = int(path.stem)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ValueError(f"unreadable marker ({exc})") from None
    if valid.get(flat) != cell:
        raise ValueError("marker for an unknown cell")
    return cell, crc


def _raw_entry(doc: Mapping[str, Any]) -> tuple | None:
    """(chunk shape, fill value, chunk-key encoder, shape, dtype) of a Zarr v3 array document
    whose chunks are raw little-endian bytes under the default "/" key encoding, else None."""
    codecs = doc.get("codecs", ())
    if doc.get("node_type") != "array" or len(codecs) != 1 or codecs[0].get("name") != "bytes":
        return None
    if codecs[0].get("configuration", {}).get("endian", "little") != "little":
        return None
    enc = doc.get("chunk_key_encoding", {})
    if enc.get("name") != "default" or enc.get("configuration", {}).get("separator", "/") != "/":
        return None
    dtype = np.dtype(doc["data_type"])
    fill = doc.get("fill_value")
    fill = np.nan if fill == "NaN" else fill
    return (tuple(int(c) for c in doc["chunk_grid"]["configuration"]["chunk_shape"]), fill, _chunk_key,
            tuple(int(n) for n in doc["shape"]), dtype)


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items()}


def _json_bytes(doc: dict) -> bytes:
    return json.dumps(doc, indent=2).encode()


def _chunk_key(coords) -> str:
    """Zarr v3's default chunk-key encoding with the "/" separator."""
    return "/".join(["c", *(str(int(c)) for c in coords)])


def _array_doc(dims: tuple[str, ...], shape, chunks, dtype: np.dtype, attrs=None) -> dict:
    """The zarr.json of a Zarr v3 array as zarr-python writes it for xarray: floats filled with
    NaN (and the ``_FillValue`` attribute xarray reads back as the mask value), integers with 0
    and no mask; raw little-endian bytes (no compression)."""
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
    return {
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
    }


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
