"""``gdstab reproduce``: run the paper's experiments into a results folder.

Layout of a results folder DIR::

    DIR/figures/<target>.png|pdf|svg    every figure in three formats
    DIR/data/                          Zarr stores (sweeps and datasets) and CSV tables behind them
    DIR/summary.json                   key numbers with definitions (and the paper's values)
    DIR/report.html                    one self-contained page (gdstab.report)

Targets: fig1 … fig6, linear (deep-linear-network table + dynamics check), nonsingular, and
beyond the paper: orbit (orbit diagram and Lyapunov exponents of ½(1 − xy)²), eos (sharpness
along GD on ¼(x²y² − 1)²: edge of stability), basin (basin map and critical step size), momentum
(trapping fraction of heavy ball and Nesterov against η with η*(rule) marked), adaptive_eos (Adam at
the adaptive edge of stability on an MNIST MLP).
Every target is resumable: sweeps continue cell by cell, and a target whose data are complete
is not recomputed (its figure is redrawn from the stored data).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from . import progress
from ._validation import InvalidParameterError
from .experiments import registry
from .figures import STORES, draw
from .results import json_default, open_store

__all__ = ["TARGETS", "reproduce", "draw", "STORES"]

#: the targets, in the order they run (from :mod:`gdstab.experiments.registry`)
TARGETS = registry.names()

def parse_targets(targets: Sequence[str]) -> list[str]:
    names = registry.names()
    want: list[str] = []
    for t in targets or ["all"]:
        if t == "all":
            want += [x for x in names if x not in want]
        elif t in names:
            if t not in want:
                want.append(t)
        else:
            raise InvalidParameterError(
                f"The targets of gdstab reproduce must be among all, {', '.join(names)}. Got {t!r} instead."
            )
    return want


def _store_ok(path: Path) -> bool:
    try:
        open_store(path)
        return True
    except Exception:  # noqa: BLE001 - a missing or damaged store is recomputed
        return False


def _compute(target: str, out: Path, scale: str, quiet: bool, summary: dict) -> None:
    """Compute (or resume) the data of one target and add its key numbers to ``summary``, with
    the report section each belongs to in ``summary["key_number_targets"]`` (an entry's
    ``target`` field, else the target that computed it: fig3's run also yields fig5's numbers)."""
    new: dict[str, Any] = {}
    registry.get(target).compute(out, scale, quiet, new)
    summary.setdefault("key_numbers", {}).update(new)
    owners = summary.setdefault("key_number_targets", {})
    for name, entry in new.items():
        owners[name] = entry.get("target", target) if isinstance(entry, dict) else target


#: the top-level entries of a reproduce folder besides the marker and the lock (the order in
#: which --overwrite deletes them)
ENTRIES = ("summary.json", "report.html", "figures", "data")


def _claim(out: Path, overwrite: bool, wait: bool, say):
    """Take the results folder for this run: refuse a folder holding entries gdstab did not
    write (or a sweep's folder), take its lock, with ``overwrite`` delete only gdstab's own
    entries, and mark it as gdstab's.  Returns the held lock."""
    from .sweep import folders

    if overwrite:
        folders.refuse_dangerous_overwrite(out)
    if out.exists() and not out.is_dir():
        raise folders.StoreError(f"The --out path {str(out)!r} is a file, not a folder. Choose a folder for the results.")
    if out.exists():
        try:
            marker = folders.read_marker(out)
        except folders.MarkerDamagedError:
            marker = {"kind": "reproduce"}  # gdstab's own file, damaged: rewritten below
        if marker is not None and marker.get("kind") != "reproduce":
            raise folders.ForeignFolderError(
                f"The folder {str(out)!r} is a gdstab {marker.get('kind')} folder, not a reproduce folder. "
                f"Choose another --out folder.")
        foreign = folders.foreign_entries(out, ENTRIES, marker is not None or _legacy_summary(out))
        if foreign:
            folders.refuse_foreign(out, foreign, "overwrite" if overwrite else "write results into")
    out.mkdir(parents=True, exist_ok=True)
    lock = folders.FolderLock(out).acquire(wait=wait, on_wait=say)
    try:
        mine, _ = folders.entries(out, ENTRIES)
        if overwrite:
            folders.remove_entries(out, [n for n in ENTRIES if n in mine]
                                   + [n for n in mine if folders.is_temporary(n)] + [folders.MARKER])
        try:
            marker = folders.read_marker(out)
        except folders.MarkerDamagedError:
            marker = None
        if marker is None:
            folders.write_marker(out, "reproduce")
    except BaseException:
        lock.release()
        raise
    return lock


def _legacy_summary(out: Path) -> bool:
    """A reproduce folder of an older gdstab (no marker): its summary.json lists experiments."""
    try:
        return isinstance(json.loads((out / "summary.json").read_bytes()).get("experiments"), dict)
    except (OSError, ValueError, AttributeError):
        return False


def _read_summary(path: Path, scale: str, say) -> dict:
    """The stored summary, or a fresh one where there is none or it is damaged (the targets'
    data are checked on their own, so a lost summary costs at most redrawing)."""
    try:
        summary = json.loads(path.read_bytes())
        if not isinstance(summary, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return {"scale": scale}
    except (OSError, ValueError) as exc:
        say(f"{str(path)!r} was damaged ({exc}); starting a new summary (stored data are reused)")
        return {"scale": scale}
    summary.setdefault("scale", scale)
    return summary


def reproduce(targets: Sequence[str], out: str | Path, *, scale: str = "small", quiet: bool = False,
              overwrite: bool = False, wait: bool = False,
              on_target: Callable[[str], None] | None = None) -> dict:
    """Run the ``targets`` into ``out`` (resuming what is there) and write the report.
    Returns the summary (also written to ``out/summary.json``).

    ``out`` must be a new folder, an empty one, or one gdstab wrote (its marker
    ``gdstab-folder.json``); ``overwrite`` deletes only gdstab's own entries of such a folder
    first (never ``.``, the home directory or /); ``wait`` waits for another process that is
    writing ``out`` instead of raising.  SIGINT/SIGTERM stop at the next safe point of the
    target being computed, keeping what is complete (sweeps keep their finished cells)."""
    from . import interrupts

    want = parse_targets(targets)
    if scale not in ("small", "paper"):
        raise InvalidParameterError(f"The 'scale' parameter of gdstab reproduce must be 'small' or 'paper'. Got {scale!r} instead.")
    out = Path(out)

    say = (lambda text: None) if quiet else (lambda text: progress.say(f"gdstab reproduce: {text}"))
    with interrupts.handled():
        lock = _claim(out, overwrite, wait, say)
        try:
            return _reproduce_locked(want, out, scale, quiet, on_target, say)
        finally:
            lock.release()


def _reproduce_locked(want, out: Path, scale: str, quiet: bool, on_target, say) -> dict:
    import jax

    from . import __version__, interrupts
    from .report import machine_info, write_report
    from .sweep.folders import atomic_write

    (out / "data").mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary = _read_summary(summary_path, scale, say)
    if summary["scale"] != scale:
        raise InvalidParameterError(
            f"The folder {str(out)!r} holds results at scale {summary['scale']!r}, not {scale!r}; use another --out "
            f"(or --overwrite to replace them)."
        )
    experiments_done = summary.setdefault("experiments", {})
    t_all = time.perf_counter()
    for target in want:
        interrupts.check(f"interrupted before target {target}; rerun the same command to continue")
        t0 = time.perf_counter()
        t = registry.get(target)
        store = out / "data" / t.store
        done = experiments_done.get(target, {}).get("complete") and _store_ok(store)
        partner = t.shares
        if partner and experiments_done.get(partner, {}).get("complete") and _store_ok(store):
            done = True  # the shared network sweep is complete
        if not done:
            try:
                with jax.enable_x64(True), progress.Progress(f"gdstab reproduce: {target}", quiet=quiet):
                    _compute(target, out, scale, quiet, summary)
            except interrupts.Interrupted as exc:
                finished = [t for t in want if experiments_done.get(t, {}).get("complete")]
                inner = str(exc).split(";")[0]
                raise interrupts.Interrupted(
                    f"{inner} of target {target} ({len(finished)} of {len(want)} targets complete); "
                    f"rerun the same command to continue", exc.signum) from None
        draw(target, out, scale)
        experiments_done[target] = {
            "scale": scale, "complete": True, "figure": f"figures/{t.figure}",
            "data": f"data/{t.store}",
            "wall_time_s": (experiments_done.get(target, {}).get("wall_time_s", 0.0) if done
                            else time.perf_counter() - t0),
        }
        atomic_write(summary_path, json.dumps(summary, indent=2, default=json_default))
        if on_target is not None:
            on_target(target)
    summary["wall_time_s_last_run"] = time.perf_counter() - t_all
    summary["provenance"] = {"gdstab": __version__, "jax": jax.__version__, "numpy": np.__version__,
                             **machine_info()}
    atomic_write(summary_path, json.dumps(summary, indent=2, default=json_default))
    write_report(out)
    return summary

