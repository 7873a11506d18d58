"""Interrupts (Ctrl-C = SIGINT, and SIGTERM) as a clean stop at the next safe point.

Python's default SIGINT handler raises ``KeyboardInterrupt`` wherever the main thread happens
to be: inside a garbage-collection callback (where it is printed and swallowed, so the run
goes on), inside a compiled XLA call (where it waits until the call ends), or halfway through
writing a file.  gdstab replaces it, while it runs, by a handler that only *records* the
request when a *polling* section is active (the trajectory engine, a sweep, ``gdstab
reproduce``): those sections check the request at safe points -- between the engine's bounded
segments of steps (JAX and the compiled kernels), between cells of a sweep -- and raise
:class:`Interrupted` there, after what is complete has been stored.  Outside a polling section
the handler raises :class:`Interrupted` at once, as Python would.  A second signal while a
request is pending raises at once (the user insists; completed cells are safe either way).  A
request that no safe point takes up within ``WATCHDOG_SECONDS`` ends the process with the one
line and status 130, unless a *strict* section (one that stores results and promises to check)
is running; that one stops at its next safe point.

:class:`Interrupted` derives from ``KeyboardInterrupt``, so code that catches that keeps
working; the command line prints its message as one line and exits with status 130.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import threading
from collections.abc import Iterator


__all__ = ["Interrupted", "requested", "check", "polling", "handled", "install", "clear", "report", "NATIVE_FLAG",
           "EXIT_STATUS"]

#: exit status of an interrupted command (128 + SIGINT, the shell's convention)
EXIT_STATUS = 130

#: read by the compiled kernels at every segment boundary (non-zero: stop)
NATIVE_FLAG = ctypes.c_int(0)

#: a request not taken up by a safe point within this many seconds, outside a strict section,
#: ends the process (for code that does not poll, e.g. a long pure-Python loop)
WATCHDOG_SECONDS = 1.0

_event = threading.Event()
_consumed = threading.Event()
_lock = threading.Lock()
_polling = 0
_strict = 0
_signum = signal.SIGINT
_installed: dict[int, object] = {}


class Interrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM at a safe point.  ``str(exc)`` is a one-line
    description (for sweeps: how many cells are stored and how to continue)."""

    def __init__(self, message: str = "interrupted", signum: int | None = None):
        super().__init__(message)
        self.message = message
        self.signum = int(signum if signum is not None else _signum)

    def __str__(self) -> str:
        return self.message


def requested() -> bool:
    """Whether a stop was requested (and not yet cleared)."""
    return _event.is_set()


def check(message: str = "interrupted") -> None:
    """Raise :class:`Interrupted` if a stop was requested."""
    if _event.is_set():
        _consumed.set()
        raise Interrupted(message)


def clear() -> None:
    """Forget a pending request (after it was handled)."""
    _event.clear()
    _consumed.clear()
    NATIVE_FLAG.value = 0


@contextlib.contextmanager
def polling(strict: bool = False) -> Iterator[None]:
    """A section that checks :func:`requested` at its safe points: signals inside it are
    recorded instead of raised asynchronously.  ``strict``: the section (a sweep, the main
    job, the trajectory engine) promises to check regularly, so the watchdog leaves it alone."""
    global _polling, _strict
    with _lock:
        _polling += 1
        _strict += int(strict)
    try:
        yield
    finally:
        with _lock:
            _polling -= 1
            _strict -= int(strict)


def _handler(signum, frame) -> None:
    global _signum
    again = _event.is_set()
    _signum = signum
    _event.set()
    NATIVE_FLAG.value = 1
    if again or _polling == 0:
        _consumed.set()
        raise Interrupted("interrupted", signum)
    timer = threading.Timer(WATCHDOG_SECONDS, _watchdog)
    timer.daemon = True
    timer.start()


def _watchdog() -> None:
    """No safe point took the request up in time.  Inside a strict section (which stores
    results and checks at its safe points) nothing is done: it will stop at the next one.
    Elsewhere -- start-up, or a command that does not poll and writes nothing until it ends --
    the process ends now with the one line and status 130.  (Raising into the main thread
    instead could land in a garbage-collection callback, where Python prints and swallows it.)"""
    if _event.is_set() and not _consumed.is_set() and _strict == 0:
        import os

        report(Interrupted("interrupted", _signum))
        os._exit(EXIT_STATUS)


def install() -> bool:
    """Install the handler for SIGINT and SIGTERM (main thread only; returns whether it did).
    The previous handlers are kept for :func:`uninstall`."""
    if threading.current_thread() is not threading.main_thread():
        return False
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.signal(sig, _handler)
        if previous is not _handler:
            _installed[sig] = previous
    return True


def uninstall() -> None:
    """Restore the handlers that :func:`install` replaced."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig, previous in list(_installed.items()):
        signal.signal(sig, previous)  # type: ignore[arg-type]
        del _installed[sig]


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Inside: a polling section with gdstab's handler installed, when the process still has
    Python's default handlers (a notebook or an application with its own handler keeps it;
    then only the polling applies).  Library entry points that store results use this."""
    ours = False
    if threading.current_thread() is threading.main_thread():
        ours = signal.getsignal(signal.SIGINT) is signal.default_int_handler and \
            signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)
    if ours:
        clear()
        install()
    try:
        with polling(strict=True):
            yield
    finally:
        if ours:
            uninstall()
            clear()


def report(exc: BaseException, command: str = "gdstab") -> int:
    """Print an interrupt as one line on stderr; returns the exit status (130)."""
    import sys

    text = str(exc) if isinstance(exc, Interrupted) else "interrupted"
    try:
        sys.stderr.write(f"{command}: {text or 'interrupted'}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # stderr closed
        pass
    return EXIT_STATUS
