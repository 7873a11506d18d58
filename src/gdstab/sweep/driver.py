"""The sweep driver behind :func:`gdstab.sweep.run`: the folder prepared and locked, cells handed to an
executor (:mod:`gdstab.sweep.executors`) and stored as they come back, progress, the returned Dataset."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from .. import interrupts, progress
from ..outcomes import STATUS_CODES, fraction_rows
from .._validation import check_memory, positive_int
from . import projection
from .config import SweepConfig, load_config
from .executors import Executor, make_executor
from .store import Layout, ResultsFolder, StoreError, coordinates, variable_attrs

__all__ = ["run", "open_results", "summary", "folder_summary", "STATUS_CODES"]



class _Writer:
    """Stores cells on a background thread (one cell in flight), so that writing cell k
    overlaps computing cell k + 1.  Cells are written in the order they are put; an error in
    the writer is raised in the driver at the next put or at close."""

    def __init__(self, folder: ResultsFolder, layout: Layout):
        import queue
        import threading

        self.folder, self.layout = folder, layout
        self.q: "queue.Queue" = queue.Queue(maxsize=1)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name="gdstab-sweep-writer", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            item = self.q.get()
            if item is None:
                return
            if self.error is None:
                try:
                    self.folder.write_cell(self.layout, *item)
                except BaseException as exc:  # reported to the driver
                    self.error = exc

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, cell, arrays, info) -> None:
        self._raise()
        self.q.put((cell, arrays, info))

    def close(self) -> None:
        self.q.put(None)
        self.thread.join()
        self._raise()

    def abandon(self) -> None:
        if self.thread.is_alive():
            self.q.put(None)
            self.thread.join()


def _progress_bar(total: int, done: int, quiet: bool):
    from ..progress import Progress

    return None if quiet else Progress("gdstab sweep", total, "cells", initial=done)


# ------------------------------------------------------------------------------------ run


def _provenance(cfg: SweepConfig, layout: Layout) -> dict[str, Any]:
    import jax

    from .. import __version__

    dev = jax.devices()[0]
    return {
        "title": "gdstab sweep",
        "gdstab_version": __version__,
        "jax_version": jax.__version__,
        "numpy_version": np.__version__,
        "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
        "seed": cfg.seed,
        "gdstab_config": cfg.canonical_json(),
        "config_toml": cfg.to_toml(),
        "config_digest": cfg.digest(),
        "status_codes": json.dumps(STATUS_CODES),
        "criteria": json.dumps(cfg.criteria.to_dict()),
        "cell_inits": layout.cell_inits,
        "cell_etas": layout.cell_etas,
    }


def run(
    config: SweepConfig | str | Path | Mapping[str, Any],
    out: str | Path,
    *,
    executor: str | Executor = "local",
    scheduler: str | None = None,
    dask_local: int | None = None,
    resume: bool = False,
    overwrite: bool = False,
    wait: bool = False,
    threads: int | None = None,
    chunk_size: int | str = "auto",
    quiet: bool = False,
    max_cells: int | None = None,
    on_cell: Callable[[tuple, int, int], None] | None = None,
    project: bool | None = None,
):
    """Run (or continue) a sweep and return its results as an ``xarray.Dataset``.

    Main arguments:
        config: a :class:`SweepConfig`, a TOML path or text, or a mapping.
        out: the results folder (created if missing).

    Other arguments (keyword-only; none of them changes any result):
        executor: "local" (in-process, vectorised), "dask", or an :class:`~gdstab.sweep.executors.Executor`
            instance (:mod:`gdstab.sweep.executors`; ``scheduler``, ``dask_local`` and ``threads``
            are then its own business).
        scheduler: with "dask", the address of a running scheduler (``tcp://host:port``).
        dask_local: with "dask", start a LocalCluster of this many worker processes instead.
        resume: require an existing folder to continue (an existing folder with the same config
            is continued anyway; this flag makes a missing one an error).
        overwrite: delete the sweep in ``out`` first and start fresh.  Only a folder gdstab
            owns (its marker), an empty one, or leftovers of an interrupted creation are
            cleared, and only the entries gdstab wrote; ``.``, the home directory, the root and
            folders with other files are refused (:mod:`gdstab.sweep.folders`).
        wait: when another process is writing ``out``, wait for it instead of raising
            :class:`~gdstab.sweep.folders.FolderBusyError`.
        threads: threads per cell for the local executor (default: all cores).
        chunk_size: trajectories per compiled engine call inside a cell ("auto" or an int).
        quiet: no progress and no notes (progress: :class:`gdstab.progress.Progress`, a line
            updated in place on a terminal, else a plain line every 30 s).
        max_cells: stop after computing this many cells (the rest is left for a later call).
        on_cell: callback ``on_cell(cell, done, total)`` after each computed cell (handed to
            the writer; the folder holds it once its marker exists).
        project: print the projected time of the remaining cells before starting, from a
            short calibration (:mod:`gdstab.sweep.projection`); None (default): only for sweeps
            of more than ``PROJECT_ABOVE`` parameter-steps; never when ``quiet``.

    SIGINT/SIGTERM (Ctrl-C) stop the sweep at the next segment boundary of the engine: the
    cells completed so far are stored, and :class:`gdstab.interrupts.Interrupted` is raised
    with the message "interrupted after N of M cells; rerun the same command to continue".
    """
    caller = "gdstab.sweep.run"
    cfg = config if isinstance(config, SweepConfig) else load_config(config)
    if isinstance(executor, Executor):
        runner = executor
    else:
        runner = make_executor(executor, scheduler=scheduler, dask_local=dask_local, threads=threads, caller=caller)
    if max_cells is not None:
        max_cells = positive_int(max_cells, "max_cells", caller, minimum=0)
    if chunk_size != "auto":
        chunk_size = positive_int(chunk_size, "chunk_size", caller)
    say = (lambda text: None) if quiet else (lambda text: progress.say(f"gdstab sweep: {text}"))
    with interrupts.handled():
        folder = ResultsFolder(out)
        layout = Layout.for_config(cfg)
        _check_size(cfg, layout, folder)
        attrs = _provenance(cfg, layout)
        interrupts.check("interrupted before the sweep started; nothing was written")
        lock = folder.prepare(cfg, layout, attrs, overwrite=overwrite, resume=resume, wait=wait, say=say)
        try:
            for note in folder.notes:
                say(note)
            if cfg.adaptive is not None:
                return _run_adaptive(cfg, folder, layout, runner, chunk_size, quiet, max_cells, on_cell, say, project,
                                     threads)
            return _run_locked(cfg, folder, layout, runner, chunk_size, quiet, max_cells, on_cell, say, project,
                               threads)
        finally:
            if lock is not None:
                lock.release()


def _check_size(cfg: SweepConfig, layout: Layout, folder: ResultsFolder) -> None:
    """Refuse, before anything is written, a sweep whose results (returned as one Dataset, in
    memory) cannot fit in memory, or that a new folder's disk cannot hold."""
    import shutil

    need = layout.total_bytes() + 16 * cfg.inits  # the variables and the init coordinate (twice)
    check_memory(need, "grid.inits", "the sweep config", f"results ({layout.n_cells} cells, returned as one Dataset)",
                 cfg.inits)
    if not folder.path.exists():
        where = folder.path.resolve()
        while not where.exists() and where != where.parent:
            where = where.parent
        try:
            free = shutil.disk_usage(where).free
        except OSError:
            return
        if need > free:
            raise StoreError(
                f"The sweep needs about {need / 2**30:.3g} GiB for its results and {str(where)!r} has "
                f"{free / 2**30:.3g} GiB free. Free some space or choose a smaller grid.")


def _run_adaptive(cfg: SweepConfig, folder: ResultsFolder, layout: Layout, runner: Executor, chunk_size, quiet,
                  max_cells, on_cell, say, project=None, threads=None):
    """An adaptive sweep (:mod:`gdstab.sweep.adaptive`): its rounds replayed from the stored
    cells and continued, each round's cells computed by :func:`_run_locked`."""
    from . import adaptive

    if folder.read_only:  # nothing can be computed: the stored rounds as they are
        return open_results(folder.path)
    done = folder.completed_cells(layout, verify=True)
    ds = open_results(folder.path) if done else None
    stored = np.zeros(layout.option_shape + (layout.n_eta, layout.n_init), np.int8) if ds is None else \
        ds["status"].values
    left = [max_cells]
    cells_all = [c for c in layout.cells() if c not in done]
    if _projected(cfg, layout, cells_all, quiet, project):
        p = projection.project(cfg, cells_all, threads=threads, chunk_size=chunk_size)
        say(p.text("projected time of every candidate cell (the most an adaptive grid can compute; it computes "
                   "only the cells its rounds choose)"))
    project = False

    def compute(cells):
        nonlocal ds
        cut = False
        if left[0] is not None:
            if left[0] <= 0:
                raise _Budget()
            cut = len(cells) > left[0]
            cells = cells[: left[0]]
            left[0] -= len(cells)
        ds = _run_locked(cfg, folder, layout, runner, chunk_size, quiet, None, on_cell, say, project, threads,
                         cells=cells)
        if cut:  # a round left unfinished: no later round may be decided from it
            raise _Budget()
        return ds["status"].values

    try:
        report = adaptive.run_rounds(cfg, layout, compute, stored, set(done), say)
    except _Budget:
        return ds if ds is not None else open_results(folder.path)
    if ds is None:
        ds = open_results(folder.path)
    ds.attrs["adaptive"] = adaptive.report_json(report)
    if not folder.read_only:
        _log_adaptive(folder, report, say)
    return ds


def _projected(cfg: SweepConfig, layout: Layout, cells: list, quiet: bool, project) -> bool:
    """Whether to print the projected time of ``cells`` first: asked for, or (``project`` None)
    more than PROJECT_ABOVE parameter-steps; never when quiet or when nothing is left."""
    if quiet or not cells:
        return False
    return bool(project) or (project is None and projection.work(cfg, layout, cells) > projection.PROJECT_ABOVE)


class _Budget(Exception):
    """max_cells reached inside an adaptive round (the rest is left for a later call)."""


def _log_adaptive(folder: ResultsFolder, report: dict, say) -> None:
    try:
        folder.log_run({"adaptive": {k: report[k] for k in ("stopped", "rounds", "trajectories")}})
    except OSError as exc:
        say(f"could not record the adaptive rounds in runs.jsonl ({exc.strerror}); the results are not affected")


def _run_locked(cfg: SweepConfig, folder: ResultsFolder, layout: Layout, runner: Executor, chunk_size, quiet,
                max_cells, on_cell, say, project=None, threads=None, cells=None):
    """The body of :func:`run` once the folder is ready and locked (``cells``: only these)."""
    done = folder.completed_cells(layout, verify=True)
    todo = [c for c in (layout.cells() if cells is None else cells) if c not in done]
    if folder.read_only:
        return open_results(folder.path)
    if not todo:  # complete: one line in runs.jsonl all the same (one per invocation)
        _log(folder, layout, time.time(), 0, 0, done, "none", None, say)
        return open_results(folder.path)
    # a sweep computed whole by this call returns the arrays it stored (the bytes written are
    # these arrays' bytes) instead of reading them back; a resumed one reads the store
    keep = not done and max_cells is None and cells is None and layout.total_bytes() <= _KEEP_IN_MEMORY
    memory: dict[str, np.ndarray] | None = {} if keep else None
    if max_cells is not None:
        todo = todo[:max_cells]
    if _projected(cfg, layout, todo, quiet, project):
        say(projection.project(cfg, todo, threads=threads, chunk_size=chunk_size).text())
    started = time.time()
    # (an adaptive round: its own cells)
    bar = _progress_bar(layout.n_cells, len(done), quiet) if cells is None else _progress_bar(len(todo), 0, quiet)
    n_traj = 0
    computed = 0
    interrupted: interrupts.Interrupted | None = None
    writer = None
    try:
        runner.start(say)
        results = runner.results(cfg, todo, chunk_size)
        writer = _Writer(folder, layout)
        try:
            for res in results:
                cell = res["cell"]
                if cell in done:  # a recomputed duplicate: already stored once
                    continue
                writer.put(cell, res["arrays"], res["info"])  # stored while the next cell computes
                if memory is not None:
                    folder.place(layout, cell, res["arrays"], memory)
                done.add(cell)
                computed += 1
                n_traj += res["info"]["trajectories"]
                if bar is not None:
                    bar.update(1)
                    el = time.time() - started
                    bar.note = f"{n_traj / el:.3g} trajectories/s" if el > 0 else ""
                if on_cell is not None:
                    on_cell(cell, len(done), layout.n_cells)
                interrupts.check()
        except interrupts.Interrupted as exc:
            interrupted = exc
        writer.close()  # every cell put so far is stored (or its error raised)
    finally:
        if writer is not None:
            writer.abandon()
        if bar is not None:
            bar.close()
        runner.close(quiet=interrupted is not None)
        _log(folder, layout, started, computed, n_traj, done, runner.name, interrupted, say)
    if interrupted is not None:
        raise interrupts.Interrupted(
            f"interrupted after {len(done)} of {layout.n_cells} cells; rerun the same command to continue",
            interrupted.signum)
    if memory is not None and computed == layout.n_cells:
        return _in_memory(cfg, layout, memory)
    return open_results(folder.path)


def _log(folder: ResultsFolder, layout: Layout, started: float, computed: int, n_traj: int, done, executor: str,
         interrupted, say) -> None:
    """One line in runs.jsonl for this invocation (provenance only: a failure to write it is
    reported and never hides the run's real outcome)."""
    try:
        folder.log_run({
            "started": started, "finished": time.time(), "wall_time_s": time.time() - started,
            "cells_computed": computed, "trajectories": n_traj, "cells_done": len(done),
            "cells_total": layout.n_cells, "executor": executor,
            **({"interrupted": True} if interrupted is not None else {}),
        })
    except OSError as exc:
        say(f"could not record the run in runs.jsonl ({exc.strerror}); the results are not affected")


_KEEP_IN_MEMORY = 2 * 2**30  # larger sweeps are read back from the folder at the end


def _in_memory(cfg: SweepConfig, layout: Layout, arrays: Mapping[str, np.ndarray]):
    """The Dataset of a sweep computed whole by this call, from the arrays it stored: the same
    Dataset as :func:`open_results` reads from the folder (tested), without reading it back."""
    import xarray as xr

    data_vars = {name: (layout.option_names + dims, arrays[name], variable_attrs(name))
                 for name, (dims, _) in layout.variables().items()}
    attrs = json.loads(json.dumps(_provenance(cfg, layout)))  # as stored (JSON attributes)
    return xr.Dataset(data_vars, coords=coordinates(cfg, layout), attrs=attrs)


def open_results(out: str | Path, *, load: bool = True, verify: bool = False):
    """The Dataset of a results folder (``load=False`` keeps it lazy).

    Only cells with a completion marker count as computed: the data of a cell without one (a
    run killed between its data and its marker) reads as not computed.  With ``verify``, every
    cell's data is also checked against its marker's CRC-32 and every metadata document against
    the folder's checksums; what fails is reported in ``ds.attrs["verification"]`` (JSON) and
    failing cells read as not computed.  Nothing in the folder is changed."""
    import xarray as xr

    folder = ResultsFolder(out)
    if not folder.path.exists():
        raise StoreError(f"The results folder {str(folder.path)!r} does not exist.")
    if not folder.path.is_dir():
        raise StoreError(f"The results folder {str(folder.path)!r} is a file, not a folder.")
    if not folder.exists():
        raise StoreError(
            f"The results folder {str(folder.path)!r} has no readable store {str(folder.zarr_path)!r}: "
            f"it is missing or incomplete. Run the sweep again (gdstab sweep CONFIG --out {folder.path}) "
            f"or point to another folder."
        )
    folder.read_only = True  # reading never removes a marker
    bad_docs = folder.verify_metadata() if verify else []
    if bad_docs:
        raise StoreError(
            f"The results folder {str(folder.path)!r} has {len(bad_docs)} damaged metadata document(s) "
            f"({', '.join(bad_docs[:3])}). Run the sweep command again (gdstab sweep CONFIG --out {folder.path}): "
            f"it rebuilds them from the config without touching a completed cell."
        )
    try:
        if not load:
            import importlib.util

            chunks = "auto" if importlib.util.find_spec("dask") else None  # lazy: dask arrays where Dask is installed
            return xr.open_zarr(str(folder.zarr_path), consolidated=False, mask_and_scale=True, chunks=chunks)
        ds = xr.open_zarr(str(folder.zarr_path), consolidated=False, mask_and_scale=True, chunks=None)
        # raw chunks are read directly; the values are those xarray decodes (floats are masked
        # with NaN, which is NaN already; integers carry no mask; no scale/offset)
        data = {}
        for name, var in ds.data_vars.items():
            values = folder.read_raw(name) if "scale_factor" not in var.encoding else None
            data[name] = values if values is not None and values.dtype == var.dtype else var.values
        ds = ds.copy(data=data).load()
    except Exception as exc:
        raise StoreError(
            f"The store {str(folder.zarr_path)!r} cannot be read ({type(exc).__name__}: {exc}). "
            f"Run the sweep command again: it rebuilds damaged metadata from the config."
        ) from None
    return _mask_unfinished(folder, ds, verify)


def _mask_unfinished(folder: ResultsFolder, ds, verify: bool):
    """Cells without a valid completion marker read as not computed (fill values)."""
    layout = Layout.from_dataset(ds)
    done = folder.completed_cells(layout, verify=verify, invalidate=False)
    missing = [c for c in layout.cells() if c not in done]
    marked = len(list(folder.cells_dir.glob("*.json"))) if folder.cells_dir.exists() else 0
    if verify:
        ds.attrs["verification"] = json.dumps({"cells_verified": len(done), "cells_failed": marked - len(done),
                                               "cells_total": layout.n_cells, "metadata": "verified"})
    if missing:
        _fill_missing(ds, layout, missing)
    cfg = json.loads(ds.attrs.get("gdstab_config", "{}"))
    if "adaptive" in cfg:  # the rounds, replayed from the stored data
        from types import SimpleNamespace

        from . import adaptive
        from .config import parse_adaptive

        # (what the rounds read of the config: its step sizes and [adaptive]; no problem is built)
        config = SimpleNamespace(eta=tuple(cfg["grid"]["eta"]), adaptive=parse_adaptive(cfg["adaptive"]))
        ds.attrs["adaptive"] = adaptive.report_json(adaptive.replay(config, layout, ds["status"].values, done))
    return ds


def _fill_missing(ds, layout: Layout, missing) -> None:
    for name, (dims, _) in layout.variables().items():
        if name not in ds:
            continue
        values = ds[name].values
        fill = np.nan if values.dtype.kind == "f" else 0
        for cell in missing:
            if name == "init_theta" and cell[1] != 0:
                continue
            values[layout.region(dims, cell)] = fill


def summary(ds) -> list[dict[str, Any]]:
    """Per option point and step size: trajectories computed and, per status, the fraction
    with its Wilson 95% interval (cells not computed yet are left out; so are the step sizes an
    adaptive sweep never chose)."""
    status = ds["status"]
    option_dims = [d for d in status.dims if d not in ("eta", "init")]
    adaptive = "adaptive" in json.loads(ds.attrs.get("gdstab_config", "{}"))  # unchosen candidates: left out
    rows = []
    stacked = status.stack(point=option_dims) if option_dims else status.expand_dims(point=[0])
    for p in range(stacked.sizes["point"]):
        sub = stacked.isel(point=p)
        opts = {d: sub.coords[d].item() for d in option_dims}
        for e in range(sub.sizes["eta"]):
            row = fraction_rows(sub.isel(eta=e).values)
            if row["n"] or not adaptive:
                rows.append({**opts, "eta": float(sub.coords["eta"][e]), **row})
    return rows


def folder_summary(out: str | Path, ds, *, verified: str | None = None) -> dict[str, Any]:
    """What ``gdstab show`` prints about a results folder and its Dataset ``ds`` (from
    :func:`open_results` or :func:`run`): cells done of all, compute time over the runs, what was
    checked (``verified`` describes a check made elsewhere when ``ds`` carries none), the config,
    the option dimensions and the :func:`summary` rows."""
    folder = ResultsFolder(out)
    total = Layout.from_dataset(ds).n_cells
    check = json.loads(ds.attrs.get("verification", "null"))
    if check is not None:
        done = check["cells_verified"]
        checksums: Any = check
        text = (f"verified: {check['cells_verified']} of {total} cells match their CRC-32"
                + (f", {check['cells_failed']} failed (shown as not computed)" if check["cells_failed"] else "")
                + "; metadata documents match their checksums")
    else:
        done = len(list(folder.cells_dir.glob("*.json"))) if folder.cells_dir.exists() else 0
        checksums = verified or "not verified"
        text = verified or "not verified (gdstab show --verify checks every cell against its CRC-32)"
    runs = folder.runs()
    return {"folder": str(out), "cells_done": done, "cells_total": total,
            "wall_time_s": sum(r.get("wall_time_s", 0.0) for r in runs), "runs": len(runs),
            "checksums": checksums, "checksums_text": text, "config": json.loads(ds.attrs["gdstab_config"]),
            "option_dims": [d for d in ds["status"].dims if d not in ("eta", "init")], "results": summary(ds)}
