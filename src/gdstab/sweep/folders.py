"""Results folders that gdstab owns: ownership marker, advisory lock, atomic writes, safe
deletion.

Every folder gdstab writes results into (a sweep's, or the main job's ``gdstab reproduce``
folder) carries the ownership marker ``gdstab-folder.json``, written last when the folder is
created (so its presence means "complete skeleton, written by gdstab").  It records the kind
of folder, the config digest and the checksums of the metadata documents.

* ``--overwrite`` deletes only a folder that carries the marker (or an empty one, or the
  leftovers of a creation that was interrupted before the marker was written), and inside it
  only the entries gdstab writes; it refuses ``.`` (and any folder that contains the current
  directory), the home directory and the filesystem root, and any folder holding entries
  gdstab did not write, naming them.
* A process that writes into a folder holds an advisory lock (``flock``) on
  ``.gdstab.lock`` inside it; a second process names the holder and exits, or waits.
* Documents are written to a temporary file in the same folder, fsynced and renamed into
  place (:func:`atomic_write`), so a reader sees the old document or the new one, never a
  mixture.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from .._validation import InvalidParameterError

__all__ = [
    "MARKER",
    "LOCK",
    "StoreError",
    "FolderBusyError",
    "ForeignFolderError",
    "FolderLock",
    "atomic_write",
    "sha256",
    "read_marker",
    "write_marker",
    "entries",
    "foreign_entries",
    "refuse_dangerous_overwrite",
    "remove_entries",
    "describe_os_error",
]

MARKER = "gdstab-folder.json"
LOCK = ".gdstab.lock"
FORMAT = 2


class StoreError(InvalidParameterError):
    """The results folder is missing pieces, cannot be read, or cannot be used."""


class FolderBusyError(StoreError):
    """Another gdstab process holds the folder's lock."""


class ForeignFolderError(StoreError):
    """The folder holds entries that gdstab did not write."""


class MarkerDamagedError(StoreError):
    """The ownership marker exists but cannot be read."""


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory handles
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - platforms without directory fsync
        pass
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes | str, *, sync: bool = True) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, fsynced and
    renamed into place (the folder fsynced too).  A failure (disk full, read-only) removes the
    temporary file and leaves the old document as it was."""
    path = Path(path)
    raw = data.encode() if isinstance(data, str) else data
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns() % 10**9}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(raw)
            if sync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            tmp.unlink()
        except OSError:
            pass
        raise
    if sync:
        fsync_dir(path.parent)


def is_temporary(name: str) -> bool:
    """Names of gdstab's temporary files (removed or replaced when a write completes)."""
    return name.startswith(".") and name.endswith(".tmp")


# ------------------------------------------------------------------------------------ marker


def read_marker(folder: Path) -> dict[str, Any] | None:
    """The folder's ownership marker, None where it has none; raises
    :class:`MarkerDamagedError` when it exists but is not a valid marker."""
    path = Path(folder) / MARKER
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise MarkerDamagedError(f"{str(path)!r} is a folder, not gdstab's marker file") from None
    try:
        doc = json.loads(text)
        if not isinstance(doc, dict) or doc.get("owner") != "gdstab" or "kind" not in doc:
            raise ValueError("not a gdstab marker")
        body = {k: v for k, v in doc.items() if k != "checksum"}
        if doc.get("checksum") != sha256(_canonical(body)):
            raise ValueError("checksum mismatch")
    except (ValueError, UnicodeDecodeError) as exc:
        raise MarkerDamagedError(f"the marker {str(path)!r} is damaged ({exc})") from None
    return doc


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def write_marker(folder: Path, kind: str, **fields: Any) -> dict[str, Any]:
    """Write the ownership marker (atomically; with its own checksum).  Returns it."""
    from .. import __version__

    doc = {"owner": "gdstab", "kind": kind, "format": FORMAT, "gdstab_version": __version__,
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **fields}
    doc["checksum"] = sha256(_canonical(doc))
    atomic_write(Path(folder) / MARKER, json.dumps(doc, indent=1))
    return doc


def rewrite_marker(folder: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Write ``doc`` (a marker read before, with changed fields) back, checksum renewed."""
    body = {k: v for k, v in doc.items() if k != "checksum"}
    body["checksum"] = sha256(_canonical(body))
    atomic_write(Path(folder) / MARKER, json.dumps(body, indent=1))
    return body


# ----------------------------------------------------------------------------------- entries


def entries(folder: Path, own: Iterable[str]) -> tuple[list[str], list[str]]:
    """Top-level entries of ``folder``: (gdstab's, foreign), each sorted."""
    own = set(own) | {MARKER, LOCK}
    mine, foreign = [], []
    for name in sorted(os.listdir(folder)):
        (mine if name in own or is_temporary(name) else foreign).append(name)
    return mine, foreign


def foreign_entries(folder: Path, own: Iterable[str], owned: bool) -> list[str]:
    """Top-level entries of ``folder`` that gdstab did not write.  In a folder gdstab ``owned``
    (its marker, or an older gdstab's recognisable results), the entries not named in ``own``;
    in any other folder every entry but gdstab's lock and temporary files: a name alone (a
    user's own ``config.toml``) never makes a file gdstab's."""
    mine, foreign = entries(folder, own)
    if owned:
        return foreign
    return sorted(foreign + [n for n in mine if n != LOCK and not is_temporary(n)])


def _describe(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def refuse_dangerous_overwrite(folder: Path, flag: str = "--overwrite") -> None:
    """Refuse to clear the filesystem root, the home directory, or the current directory (or a
    folder containing it), whatever they hold."""
    target = Path(folder).resolve()
    cwd = Path.cwd().resolve()
    home = Path.home().resolve()
    why = None
    if target == Path(target.anchor):
        why = "the filesystem root"
    elif target == home:
        why = "your home directory"
    elif target == cwd:
        why = "the current directory"
    elif target in cwd.parents:
        why = "a folder that contains the current directory"
    if why:
        raise ForeignFolderError(
            f"The {flag} flag would clear {str(folder)!r}, which is {why}; gdstab never deletes it. "
            f"Give a new folder for the results instead, e.g. --out {str(Path(folder) / 'results')!r}."
        )


def refuse_foreign(folder: Path, foreign: list[str], doing: str) -> None:
    if foreign:
        raise ForeignFolderError(
            f"The folder {str(folder)!r} holds entries that gdstab did not write ({_describe(foreign)}), so gdstab "
            f"will not {doing} it. Choose a new folder for the results (a folder that does not exist yet, or an "
            f"empty one)."
        )


def remove_entries(folder: Path, names: Iterable[str]) -> None:
    """Delete the named top-level entries of ``folder`` (files or whole subfolders) in the
    order given; the lock file is never deleted (another process may be waiting on it)."""
    for name in names:
        if name == LOCK:
            continue
        p = Path(folder) / name
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            try:
                p.unlink()
            except FileNotFoundError:
                pass


# -------------------------------------------------------------------------------------- lock


class FolderLock:
    """An advisory, exclusive lock on a results folder (``flock`` on ``.gdstab.lock``), with
    the holder (pid, host, start, command) written into the lock file for whoever waits."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.fd: int | None = None

    @property
    def path(self) -> Path:
        return self.folder / LOCK

    def holder(self) -> str:
        try:
            h = json.loads(self.path.read_text())
            return (f"gdstab (pid {h['pid']} on {h['host']}, since {h['since']}"
                    + (f": {h['command']}" if h.get("command") else "") + ")")
        except (OSError, ValueError, KeyError, TypeError):
            return "another gdstab process"

    def acquire(self, *, wait: bool = False, on_wait: Callable[[str], None] | None = None,
                poll: float = 0.2) -> "FolderLock":
        """Take the lock; if another process holds it, raise :class:`FolderBusyError` naming
        it, or (``wait``) wait for it, polling for interrupts."""
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return self
        from .. import interrupts

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        raise FolderBusyError(
                            f"The results folder {str(self.folder)!r} is in use by {self.holder()}. Wait until it "
                            f"finishes and run the command again (or pass --wait to wait for it)."
                        ) from None
                    if not told and on_wait is not None:
                        on_wait(f"waiting for {self.holder()} to release {str(self.folder)!r}")
                        told = True
                    interrupts.check(f"interrupted while waiting for {str(self.folder)!r}")
                    time.sleep(poll)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S"),
                "command": " ".join(Path(sys.argv[0]).name.split() + sys.argv[1:])[:300] if sys.argv else ""}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:  # the holder note is a courtesy; the lock is what counts
            pass
        return self

    def try_acquire(self) -> bool:
        """Take the lock if it is free (never waits)."""
        try:
            self.acquire()
        except FolderBusyError:
            return False
        return True

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# ---------------------------------------------------------------------------------- messages

_READ_ONLY = {errno.EROFS, errno.EACCES, errno.EPERM}


def is_read_only_error(exc: OSError) -> bool:
    return exc.errno in _READ_ONLY


def describe_os_error(exc: OSError, doing: str = "") -> str:
    """One line for an operating-system error: the path and the cause."""
    cause = exc.strerror or type(exc).__name__
    where = exc.filename if exc.filename is not None else ""
    hint = {
        errno.ENOSPC: "free some space (completed results are kept) and run the same command again",
        errno.EDQUOT: "free some space (completed results are kept) and run the same command again",
        errno.EROFS: "choose a writable folder, or make this one writable",
        errno.EACCES: "check the folder's permissions",
        errno.EPERM: "check the folder's permissions",
        errno.ENAMETOOLONG: "choose a shorter path",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "the path is a folder where a file was expected",
    }.get(exc.errno or -1)
    text = f"{doing + ': ' if doing else ''}{cause}: {str(where)!r}" if where else f"{doing + ': ' if doing else ''}{cause}"
    return text + (f" ({hint})" if hint else "")
