"""Progress of long work, on stderr, for every command that may take more than a few seconds.

On a terminal: one line rewritten in place (``gdstab orbit: 3 of 12 chunks (25%), 41 s, about 2
min left``) once the work has taken ``delay`` seconds, ended with a newline when the work ends or
is interrupted, so the next message starts on its own line.  Elsewhere (a log file, CI, a pipe):
the same text as plain lines, the first after ``delay`` seconds, then one every ``every``
seconds, and a last line with the total time; nothing when the work ends before ``delay``.  Work
of unknown size shows the elapsed time (a heartbeat).  A thread refreshes the line, so a single
long compiled call still shows that it is running.

Usage::

    with Progress("gdstab basin", total=n, unit="trajectories", quiet=args.quiet) as bar:
        basin_map(..., on_chunk=bar.set)    # set(done, total) after each chunk
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

__all__ = ["Progress", "say", "duration", "DELAY", "EVERY"]

#: seconds before anything is shown (work that ends sooner prints nothing)
DELAY = 2.0
#: seconds between two plain lines when stderr is not a terminal
EVERY = 30.0
#: seconds between two refreshes of the line on a terminal
REFRESH = 0.5


#: the progress lines shown on a terminal now (a message first clears them: see :func:`say`)
_ACTIVE: list["Progress"] = []


def say(text: str, stream: TextIO | None = None) -> None:
    """Write ``text`` as a line of its own on stderr: a progress line being updated in place is
    cleared first (and redrawn at its next refresh), so the two never run into each other."""
    stream = sys.stderr if stream is None else stream
    for bar in list(_ACTIVE):
        if bar.stream is stream and bar.shown:
            with bar._lock:
                stream.write("\r\x1b[K")
    stream.write(text + "\n")
    stream.flush()


def duration(s: float) -> str:
    """Seconds as text: "41 s", "2.5 min", "3.1 h"."""
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


class Progress:
    """Progress of one piece of work (see the module's docstring).

    Arguments:
        what: what is running, as the line starts (``"gdstab orbit"``).
        total: units of work, or None when unknown (the line shows the elapsed time only).
        unit: the name of a unit (``"trajectories"``, ``"chunks"``).
        quiet: show nothing.
        initial: units already done (a resumed run).
        stream: where to write (default ``sys.stderr``); a terminal when ``stream.isatty()``.
        delay, every: override :data:`DELAY` and :data:`EVERY`.
    """

    def __init__(self, what: str, total: int | None = None, unit: str = "", *, quiet: bool = False,
                 initial: int = 0, stream: TextIO | None = None, delay: float | None = None,
                 every: float | None = None):
        self.what, self.total, self.unit = what, total, unit
        self.done = self._start_done = int(initial)
        self.note = ""  # appended to the line, e.g. a rate
        self.quiet = quiet
        self.stream = sys.stderr if stream is None else stream
        self.delay = DELAY if delay is None else float(delay)
        self.every = EVERY if every is None else float(every)
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self.t0 = time.monotonic()
        self.shown = False
        self._last_line = -float("inf")
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None
        if not quiet:
            self._thread = threading.Thread(target=self._tick, name="gdstab-progress", daemon=True)
            self._thread.start()
            if self.tty:
                _ACTIVE.append(self)

    # ----------------------------------------------------------------------- updates
    def update(self, n: int = 1) -> None:
        """``n`` more units done."""
        with self._lock:
            self.done += int(n)

    def set(self, done: int, total: int | None = None) -> None:
        """``done`` units of ``total`` done (the ``on_chunk(done, total)`` callbacks' form)."""
        with self._lock:
            self.done = int(done)
            if total is not None:
                self.total = int(total)

    # ----------------------------------------------------------------------- display
    def text(self) -> str:
        """The current line (without the terminal's control characters)."""
        elapsed = time.monotonic() - self.t0
        if self.total is None:
            return f"{self.what}: running, {duration(elapsed)}"
        total = max(self.total, 1)
        frac = min(1.0, self.done / total)
        line = f"{self.what}: {self.done} of {self.total} {self.unit} ({100 * frac:.0f}%), {duration(elapsed)}".replace(
            "  ", " ")
        new = self.done - self._start_done
        if 0 < new < total - self._start_done:
            left = elapsed * (total - self.done) / new
            line += f", about {duration(left)} left"
        return line + (f", {self.note}" if self.note else "")

    def _write(self, final: bool = False) -> None:
        text = self.text()
        if self.tty:
            self.stream.write("\r" + text + "\x1b[K" + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
        self.shown = True

    def _tick(self) -> None:
        while not self._stop.wait(min(REFRESH, max(self.delay, 0.01))):
            now = time.monotonic()
            if now - self.t0 < self.delay:
                continue
            with self._lock:
                if self._stop.is_set():
                    return
                if self.tty and _ACTIVE and _ACTIVE[-1] is not self:
                    continue  # an inner piece of work (a sweep inside a reproduce target) draws the line
                if self.tty or now - self._last_line >= self.every:
                    self._last_line = now
                    self._write()

    def close(self) -> None:
        """Stop; when anything was shown, end with the final state on its own line."""
        if self._thread is None:
            return
        self._stop.set()
        with self._lock:
            if self.shown or time.monotonic() - self.t0 >= self.delay:  # at least the last line of long work
                if not self.tty and self.total is None:
                    self.stream.write(f"{self.what}: finished in {duration(time.monotonic() - self.t0)}\n")
                    self.stream.flush()
                else:
                    self._write(final=True)
        self._thread.join()
        self._thread = None
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
