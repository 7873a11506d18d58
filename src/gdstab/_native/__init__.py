"""Compiled fast path for the closed-form toys (float64, CPU).

The kernels live in ``toykernels.c``, built at install time as the extension module
``gdstab._native._toykernels`` (optional: where no C compiler is available the build is skipped
and gdstab falls back to its JAX engine).  They are called through ctypes, which releases the
GIL, so a thread pool runs independent chunks on all cores.  The classification rules are the
same step-by-step definition as :mod:`gdstab.dynamics`; tests compare the two.
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["available", "unavailable_reason", "run", "open_library", "variant", "KERNELS", "VARIANTS"]

KERNELS = ("hyperbola", "saddle_quartic", "zhu", "rosenbrock", "quartic", "quad_quartic")
_DIMS = {"hyperbola": 2, "saddle_quartic": 2, "zhu": 2, "rosenbrock": 2, "quartic": 1, "quad_quartic": 1}

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_reason: str | None = None
_loaded = False


def _load() -> ctypes.CDLL | None:
    global _lib, _reason, _loaded
    with _lock:
        if _loaded:
            return _lib
        _loaded = True
        spec = importlib.util.find_spec("gdstab._native._toykernels")
        if spec is None or not spec.origin:
            _reason = "the extension gdstab._native._toykernels was not built (no C compiler at install time?)"
            return None
        try:
            lib = open_library(spec.origin)
        except OSError as exc:  # pragma: no cover - depends on the platform
            _reason = f"could not load {spec.origin}: {exc}"
            return None
        _lib = lib
        return lib


#: instruction-set variants compiled into the library (x86-64 with GCC; elsewhere only "base"),
#: each kernel exported as gdstab_run_<name>_<variant>; gdstab_run_<name> calls the CPU's best
VARIANTS = ("v4", "v3", "base")
_LEVELS = {4: "v4", 3: "v3", 0: "base"}


def open_library(path, variant: str | None = None) -> ctypes.CDLL:
    """Load a build of ``toykernels.c`` with the argument types of every kernel declared (the
    shipped library, or a variant built by the tests).  With ``variant`` (one of
    :data:`VARIANTS`), the returned object's ``gdstab_run_<name>`` are that instruction-set
    variant's kernels instead of the dispatching entry points (AttributeError where the library
    has no such variant; the caller must know that the CPU can run it)."""
    lib = ctypes.CDLL(str(path))
    dp = ctypes.POINTER(ctypes.c_double)
    ip = ctypes.POINTER(ctypes.c_int64)
    bp = ctypes.POINTER(ctypes.c_int8)
    for name in KERNELS:
        fn = getattr(lib, f"gdstab_run_{name}" + (f"_{variant}" if variant else ""))
        fn.argtypes = [ctypes.c_int64, dp, dp, dp, ctypes.c_int64, dp, dp, bp, ip, ip, dp, dp, ctypes.POINTER(ctypes.c_int)]
        fn.restype = None
        if variant:
            setattr(lib, f"gdstab_run_{name}", fn)
    return lib


def variant() -> str | None:
    """The instruction-set variant the kernels run on this CPU ("v4": x86-64-v4 / AVX-512, "v3":
    x86-64-v3 / AVX2, "base"), or None when the kernels are unavailable."""
    lib = _load()
    if lib is None:
        return None
    fn = getattr(lib, "gdstab_variant", None)
    return _LEVELS.get(int(fn()), "base") if fn is not None else "base"


def available(name: str | None = None) -> bool:
    """Whether the compiled kernels are loaded (and, with ``name``, whether that one exists)."""
    lib = _load()
    return lib is not None and (name is None or name in KERNELS)


def unavailable_reason() -> str | None:
    """Why the compiled kernels are not available (None when they are)."""
    _load()
    return _reason


_CTYPES = {np.dtype(np.float64): ctypes.c_double, np.dtype(np.int64): ctypes.c_int64, np.dtype(np.int8): ctypes.c_int8}


def _ptr(a: np.ndarray):
    return a.ctypes.data_as(ctypes.POINTER(_CTYPES[a.dtype]))


def run(
    name: str,
    theta0: np.ndarray,
    eta: np.ndarray,
    params: tuple[float, ...],
    steps: int,
    opts: np.ndarray,
    *,
    chunk_size: int = 16384,
    threads: int | None = None,
    post=None,
) -> dict[str, np.ndarray]:
    """Run the kernel ``name`` on all trajectories.  Returns a dict of arrays: ``theta`` (n, d)
    the iterate at the decision step, ``status`` (n,) int8 raw status (1 settled, 2 diverged,
    3 periodic, 4 bounded), ``step`` and ``period`` (n,) int64 (the period 0 where none was
    found: those entries are never written, so their pages stay untouched), ``loss`` and
    ``grad_norm`` (n,) at ``theta``.  Chunking and threads do not change any result.

    The kernels poll :data:`gdstab.interrupts.NATIVE_FLAG` every ``check_every`` steps; after
    an interrupt request this raises :class:`gdstab.interrupts.Interrupted`.  Chunks run on
    worker threads, so the calling thread stays free to receive the signal.  ``post(out, start,
    stop)``, if given, runs in the worker right after each chunk (on its outputs while they are
    in cache)."""
    from .. import interrupts

    lib = _load()
    if lib is None:
        raise RuntimeError(f"native kernels unavailable: {_reason}")
    d = _DIMS[name]
    theta0 = np.ascontiguousarray(theta0, dtype=np.float64).reshape(-1, d)
    eta = np.ascontiguousarray(eta, dtype=np.float64).reshape(-1)
    n = theta0.shape[0]
    prm = np.ascontiguousarray(np.array(list(params) + [0.0] * (4 - len(params)), dtype=np.float64))
    opts = np.ascontiguousarray(opts, dtype=np.float64)
    out = {
        "theta": np.empty_like(theta0),
        "status": np.empty(n, np.int8),
        "step": np.empty(n, np.int64),
        "period": np.zeros(n, np.int64),  # the kernels write only found periods: most pages stay untouched
        "loss": np.empty(n, np.float64),
        "grad_norm": np.empty(n, np.float64),
    }
    fn = getattr(lib, f"gdstab_run_{name}")

    def one(start: int) -> None:
        stop = min(n, start + chunk_size)
        fn(
            stop - start,
            _ptr(theta0[start:]),
            _ptr(eta[start:]),
            _ptr(prm),
            int(steps),
            _ptr(opts),
            *(_ptr(out[k][start:]) for k in ("theta", "status", "step", "period", "loss", "grad_norm")),
            ctypes.byref(interrupts.NATIVE_FLAG),
        )
        if post is not None and not interrupts.NATIVE_FLAG.value:  # (an interrupted chunk is incomplete)
            post(out, start, stop)

    starts = list(range(0, n, chunk_size))
    threads = threads or os.cpu_count() or 1
    interrupts.check()
    if threading.current_thread() is not threading.main_thread() and (threads == 1 or len(starts) == 1):
        for s in starts:
            one(s)
    else:  # the main thread waits (and receives signals) while workers compute
        _pool(max(1, min(threads, len(starts)))).map_chunks(one, starts)
    interrupts.check()
    return out


class _Pool:
    """A persistent set of worker threads (starting threads per call costs milliseconds, which
    shows on sweeps of many small cells).  ``map_chunks`` runs at most ``size`` chunks at once
    and returns when all are done; several callers may share the pool."""

    def __init__(self, size: int):
        self.size = size
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="gdstab-native")

    def map_chunks(self, fn, starts) -> None:
        futures = [self.executor.submit(fn, s) for s in starts]
        for f in futures:
            f.result()


_POOLS: dict[int, _Pool] = {}


def _pool(threads: int) -> _Pool:
    with _lock:
        pool = _POOLS.get(threads)
        if pool is None:
            pool = _POOLS[threads] = _Pool(threads)
        return pool
