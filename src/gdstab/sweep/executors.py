"""Where the cells of a sweep run, behind one small interface.

An :class:`Executor` is started once per sweep (``start``), turns a list of cells into an iterable
of :func:`~gdstab.sweep.cells.compute_cell` results (``results``, in any order: the driver alone
writes the folder, keyed by cell, so a cell computed twice is stored once), and is closed at the
end (``close``, also after an interrupt or an error).  While it waits for results it calls
:func:`gdstab.interrupts.check` so that Ctrl-C stops the sweep within about a second.

Two executors exist: :class:`LocalExecutor` (this process, vectorised, threads) and
:class:`DaskExecutor` (a Dask cluster: a running scheduler, or a local cluster of processes).
A third is one new subclass and one entry in :data:`EXECUTORS`.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterable

from .. import interrupts
from .._validation import InvalidParameterError, choice, positive_int
from .cells import cell_is_small, compute_cell
from .config import SweepConfig

__all__ = ["Executor", "LocalExecutor", "DaskExecutor", "EXECUTORS", "make_executor", "DASK_QUIET_SECONDS"]

#: with no result for this long, the Dask driver checks the cluster and says if it has no workers
DASK_QUIET_SECONDS = 60.0


class Executor:
    """The interface: ``start(say)``, ``results(cfg, cells, chunk_size)``, ``close(quiet)``."""

    name = "executor"

    def start(self, say: Callable[[str], None]) -> None:
        """Acquire what the executor needs (a cluster connection, ...)."""

    def results(self, cfg: SweepConfig, cells: list, chunk_size) -> Iterable[dict]:
        raise NotImplementedError

    def close(self, quiet: bool = False) -> None:
        """Release what ``start`` acquired (quietly after an interrupt)."""


class LocalExecutor(Executor):
    """Cells in order, in this process.  Large cells use all threads inside the engine; cells too
    small to fill the threads with chunks run side by side, one thread each, and are yielded in
    order (results never depend on how they were scheduled)."""

    name = "local"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def results(self, cfg: SweepConfig, cells: list, chunk_size) -> Iterable[dict]:
        threads = self.threads or os.cpu_count() or 1
        if threads <= 1 or len(cells) <= 1 or not cell_is_small(cfg, threads):
            for cell in cells:
                yield compute_cell(cfg, cell, threads, chunk_size)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures = []
            it = iter(cells)
            for cell in it:  # keep at most `threads` cells in flight, yield in order
                futures.append(pool.submit(compute_cell, cfg, cell, 1, chunk_size))
                if len(futures) >= threads:
                    break
            for cell in it:
                done = futures.pop(0).result()
                futures.append(pool.submit(compute_cell, cfg, cell, 1, chunk_size))
                yield done
            for f in futures:
                yield f.result()


_NO_DASK = ("The 'dask' executor needs Dask's distributed scheduler, an optional dependency that is not installed. "
            "Install it with: pip install 'gdstab[dask]' (or pip install 'dask[distributed]'), or run the sweep with "
            "the local executor.")


class DaskExecutor(Executor):
    """Cells as Dask tasks on a running scheduler (``scheduler="tcp://host:port"``) or on a local
    cluster of ``local_workers`` processes; results come back to the driver.

    A task lost with its worker is recomputed by the scheduler (retries=3).  The driver also
    guards against results that never arrive (a worker that died while its result was being
    fetched): a cell whose result cannot be fetched is submitted again under a new key, up to 5
    attempts.  With no result for :data:`DASK_QUIET_SECONDS`, it says if the cluster has no
    workers (the sweep continues by itself once one joins)."""

    name = "dask"

    def __init__(self, scheduler: str | None = None, local_workers: int | None = None):
        self.scheduler, self.local_workers = scheduler, local_workers
        self.client = self.cluster = None
        self.say: Callable[[str], None] = lambda text: None

    def start(self, say: Callable[[str], None]) -> None:
        import logging

        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise InvalidParameterError(_NO_DASK) from None

        self.say = say
        if self.local_workers:
            self.cluster = LocalCluster(n_workers=self.local_workers, threads_per_worker=1, processes=True,
                                        dashboard_address=None, silence_logs=logging.ERROR)  # errors, not chatter
            self.client = Client(self.cluster)
            return
        try:
            self.client = Client(self.scheduler, timeout="10s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise InvalidParameterError(
                f"Cannot connect to the Dask scheduler at {self.scheduler!r} ({type(exc).__name__}: {exc}). "
                f"Start one with 'dask scheduler' (and workers with 'dask worker {self.scheduler}'), "
                f"or use --dask-local N for a local cluster."
            ) from None

    def results(self, cfg: SweepConfig, cells: list, chunk_size) -> Iterable[dict]:
        from distributed import wait

        client = self.client
        max_in_flight = 2 * (sum(client.nthreads().values()) or 1)
        pending = list(cells)
        digest = cfg.digest()[:12]
        attempts: dict = {}

        def submit(cell):
            n = attempts.get(cell, 0)
            attempts[cell] = n + 1
            return client.submit(compute_cell, cfg, tuple(cell), 1, chunk_size,
                                 key=f"gdstab-cell-{digest}-{'-'.join(map(str, cell))}-a{n}", retries=3, pure=False)

        owner = {}
        for _ in range(min(max_in_flight, len(pending))):
            cell = pending.pop(0)
            owner[submit(cell)] = cell
        last_news = time.monotonic()
        try:
            while owner:
                interrupts.check()  # wait in short slices so that an interrupt is honoured within about a second
                try:
                    finished = wait(list(owner), timeout=0.5, return_when="FIRST_COMPLETED").done
                except TimeoutError:
                    if time.monotonic() - last_news > DASK_QUIET_SECONDS:
                        last_news = time.monotonic()
                        if not client.nthreads():
                            self.say(f"the Dask cluster at {client.scheduler.address} has no workers; waiting for "
                                     f"one to join ({len(owner)} cells queued; Ctrl-C stops, keeping every finished "
                                     f"cell)")
                    continue
                last_news = time.monotonic()
                for fut in finished:
                    cell = owner.pop(fut)
                    try:
                        result = fut.result(timeout=300)
                    except Exception as exc:  # lost or failed: again (a cell is a pure function of its inputs)
                        if attempts.get(cell, 0) >= 5:
                            raise RuntimeError(
                                f"cell {cell} failed {attempts[cell]} times on the Dask cluster: {exc!r}") from exc
                        owner[submit(cell)] = cell
                        continue
                    finally:
                        fut.release()
                    yield result
                    if pending:
                        nxt = pending.pop(0)
                        owner[submit(nxt)] = nxt
        finally:
            for fut in owner:  # interrupted or failed: drop what is still queued
                fut.cancel()

    def close(self, quiet: bool = False) -> None:
        """Close the client (and a local cluster).  After an interrupt, Dask's own warnings about
        the cancelled tasks and the workers it stops are silenced: the one line that matters is
        gdstab's."""
        import logging

        loggers = [logging.getLogger(n) for n in ("distributed", "distributed.nanny", "distributed.worker",
                                                  "distributed.worker.state_machine", "distributed.core")]
        levels = [lg.level for lg in loggers]
        if quiet:
            for lg in loggers:
                lg.setLevel(logging.CRITICAL)
        try:
            if self.client is not None:
                self.client.close()
            if self.cluster is not None:
                self.cluster.close()
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)
            self.client = self.cluster = None


#: the executors by name (the ``executor`` argument of :func:`gdstab.sweep.run` and ``--executor``)
EXECUTORS = {"local": LocalExecutor, "dask": DaskExecutor}


def make_executor(name: str, *, scheduler: str | None = None, dask_local: int | None = None,
                  threads: int | None = None, caller: str = "gdstab.sweep.run") -> Executor:
    """The executor ``name`` with its settings validated (the message names the parameter).  An
    executor registered in :data:`EXECUTORS` under another name is built without arguments."""
    name = choice(name, "executor", caller, tuple(EXECUTORS))
    if threads is not None:
        threads = positive_int(threads, "threads", caller)
    if name != "dask":
        if scheduler or dask_local:
            raise InvalidParameterError(f"The 'scheduler' and 'dask_local' parameters of {caller} go with "
                                        f"executor='dask'.")
        return LocalExecutor(threads) if name == "local" else EXECUTORS[name]()
    if bool(scheduler) == bool(dask_local):
        raise InvalidParameterError(
            f"The 'executor' parameter of {caller} is 'dask': give exactly one of 'scheduler' "
            f"(tcp://host:port) or 'dask_local' (number of local worker processes).")
    if dask_local is not None:
        dask_local = positive_int(dask_local, "dask_local", caller)
    if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
        raise InvalidParameterError(
            f"The 'scheduler' parameter of {caller} must be a Dask scheduler address such as tcp://host:8786. "
            f"Got {scheduler!r} instead.")
    import importlib.util

    if importlib.util.find_spec("distributed") is None:  # refused before any folder is created
        raise InvalidParameterError(_NO_DASK)
    return DaskExecutor(scheduler, dask_local)
