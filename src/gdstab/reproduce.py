"""``gdstab reproduce``: run the paper's experiments into a results folder.

Layout of a results folder DIR::

    DIR/figures/<target>.png|pdf|svg    every figure in three formats
    DIR/data/                          Zarr stores (sweeps and datasets) and CSV tables behind them
    DIR/summary.json                   key numbers with definitions (and the paper's values)
    DIR/report.html                    one self-contained page (gdstab.report)

Targets: fig1 … fig6, linear (deep-linear-network table + dynamics check), nonsingular, and
beyond the paper: orbit (orbit diagram and Lyapunov exponents of ½(1 − xy)²), eos (sharpness
along GD on ¼(x²y² − 1)²: edge of stability), basin (basin map and critical step size).
Every target is resumable: sweeps continue cell by cell, and a target whose data are complete
is not recomputed (its figure is redrawn from the stored data).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ._validation import InvalidParameterError
from .figures import FIGURE_NAMES, STORES, draw, net_run
from .results import open_store, save_dataset

__all__ = ["TARGETS", "reproduce", "draw", "STORES"]

TARGETS = ("fig1", "fig2", "fig3", "fig4", "fig5", "fig6", "linear", "nonsingular", "orbit", "eos", "basin")

def parse_targets(targets: Sequence[str]) -> list[str]:
    want: list[str] = []
    for t in targets or ["all"]:
        if t == "all":
            want += [x for x in TARGETS if x not in want]
        elif t in TARGETS:
            if t not in want:
                want.append(t)
        else:
            raise InvalidParameterError(
                f"The targets of gdstab reproduce must be among all, {', '.join(TARGETS)}. Got {t!r} instead."
            )
    return want


def _store_ok(path: Path) -> bool:
    try:
        open_store(path)
        return True
    except Exception:  # noqa: BLE001 - a missing or damaged store is recomputed
        return False


def _compute(target: str, out: Path, scale: str, quiet: bool, summary: dict) -> None:
    """Compute (or resume) the data of one target and add its key numbers to ``summary``."""
    from . import experiments

    data = out / "data"
    keys = summary.setdefault("key_numbers", {})
    if target == "fig1":
        d1 = experiments.compute_fig1(scale)
        save_dataset(d1, data / "fig1.zarr")
        if "eta_E" not in keys:
            keys.update(experiments.key_numbers_fig12(None))
    elif target == "fig2":
        fig2 = experiments.compute_fig2(out, scale, quiet=quiet)
        save_dataset(fig2, data / "fig2.zarr")
        fig2[["ws_length_total", "ws_length_normalised", "trapping_fraction", "trapping_low", "trapping_high",
              "trapping_count", "trajectories"]].to_dataframe().to_csv(data / "fig2.csv")
        keys.update(experiments.key_numbers_fig12(fig2))
    elif target in ("fig3", "fig4", "fig5", "fig6"):
        which = "gd" if target in ("fig3", "fig5") else "sgd"
        run = net_run(target, scale)
        if not quiet:
            print(f"{target}: {run.describe()}", file=sys.stderr)
        ds = experiments.compute_nets(out, which, scale, quiet=quiet)
        table = experiments.convergence_table(ds)
        table.to_dataframe().to_csv(data / ("fig3.csv" if which == "gd" else "fig4.csv"))
        experiments.heatmap_data(ds).to_dataframe().to_csv(data / ("fig5.csv" if which == "gd" else "fig6.csv"))
        keys.update(experiments.key_numbers_nets({which: table}, scale))
    elif target == "linear":
        from .experiments.paper_linear import compute_linear_check, compute_linear_table

        rows = compute_linear_table()
        _write_csv(data / "linear_table.csv", rows)
        chk = compute_linear_check(scale)
        save_dataset(chk, data / "linear_check.zarr")
        for r in rows:
            entry = {"value": r["inf_lambda_max"],
                     "definition": f"inf over M of lambda_max for the linear network {tuple(r['dims'])} "
                                   f"({r['data']} data, L = ||Y - W X||^2, no 1/2), by optimisation over M; "
                                   f"eta* = 2 / value = {r['eta_star']:.10g}; dim M = {r['dim_M']}, rank {r['rank']}"}
            if r["closed_form"] is not None:
                entry["closed_form"] = r["closed_form"]
            keys[f"linear_inf_lambda_max_{'x'.join(map(str, r['dims']))}"] = entry
        beyond = chk.trapping_fraction.values[chk.eta.values > chk.attrs["eta_star"] * (1 + 1e-9)]
        keys["linear_trapping_above_eta_star"] = {
            "value": float(beyond.max()) if beyond.size else float("nan"),
            "definition": f"largest trapping fraction at eta > eta* = {chk.attrs['eta_star']:.6g} for the whitened "
                          f"2-3-2 network ({chk.attrs['inits']} inits uniform in [-1, 1]^12, T = {chk.attrs['steps']}); "
                          f"the theory says 0 (up to a measure-zero set)",
        }
    elif target in ("orbit", "eos", "basin"):
        from .experiments import beyond

        ds = getattr(beyond, f"compute_{target}")(scale)
        save_dataset(ds, data / STORES[target])
        keys.update(getattr(beyond, f"key_numbers_{target}")(ds))
    elif target == "nonsingular":
        from .experiments.paper_linear import compute_nonsingular

        ns = compute_nonsingular(scale)
        save_dataset(ns, data / "nonsingular.zarr")
        ns.to_dataframe().to_csv(data / "nonsingular.csv")
        labels = ns.attrs["case_labels"].split(" | ")
        for i, lab in enumerate(labels):
            keys[f"nonsingular_slope_{'linear' if i == 0 else 'tanh_mlp'}"] = {
                "value": float(ns.slope.values[i]), "stderr": float(ns.slope_stderr.values[i]),
                "definition": f"log-log slope of P(|det(I - eta H)| < eps) in eps for {lab}, eta = "
                              f"{float(ns.eta.values[i]):g}, {ns.attrs['points']} points; 1 = measure-zero "
                              f"singular set with simple zeros (Theorems 15, 20)",
            }


def _write_csv(path: Path, rows: list[dict]) -> None:
    import csv

    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (json.dumps(v) if isinstance(v, list) else v) for k, v in r.items()})


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
        mine, foreign = folders.entries(out, ENTRIES)
        if marker is None and not _legacy_summary(out):  # a name alone never makes a file gdstab's
            foreign = sorted(foreign + [n for n in mine if n != folders.LOCK and not folders.is_temporary(n)])
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
    say = (lambda text: None) if quiet else (lambda text: print(f"gdstab reproduce: {text}", file=sys.stderr, flush=True))
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
        t0 = time.perf_counter()
        store = out / "data" / STORES[target]
        done = experiments_done.get(target, {}).get("complete") and _store_ok(store)
        partner = {"fig3": "fig5", "fig5": "fig3", "fig4": "fig6", "fig6": "fig4"}.get(target)
        if partner and experiments_done.get(partner, {}).get("complete") and _store_ok(store):
            done = True  # the shared network sweep is complete
        if not done:
            try:
                with jax.enable_x64(True):
                    _compute(target, out, scale, quiet, summary)
            except interrupts.Interrupted as exc:
                finished = [t for t in want if experiments_done.get(t, {}).get("complete")]
                inner = str(exc).split(";")[0]
                raise interrupts.Interrupted(
                    f"{inner} of target {target} ({len(finished)} of {len(want)} targets complete); "
                    f"rerun the same command to continue", exc.signum) from None
        draw(target, out, scale)
        experiments_done[target] = {
            "scale": scale, "complete": True, "figure": f"figures/{FIGURE_NAMES[target]}",
            "data": f"data/{STORES[target]}",
            "wall_time_s": (experiments_done.get(target, {}).get("wall_time_s", 0.0) if done
                            else time.perf_counter() - t0),
        }
        atomic_write(summary_path, json.dumps(summary, indent=2, default=_json_default))
        if on_target is not None:
            on_target(target)
    summary["wall_time_s_last_run"] = time.perf_counter() - t_all
    summary["provenance"] = {"gdstab": __version__, "jax": jax.__version__, "numpy": np.__version__,
                             **machine_info()}
    atomic_write(summary_path, json.dumps(summary, indent=2, default=_json_default))
    write_report(out)
    return summary


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))
