"""``gdstab sweep`` and ``gdstab show``: run (or resume) a sweep from a TOML config into a results
folder, and print a results folder's summary."""

from __future__ import annotations

import argparse

from .. import sweep
from ..outcomes import STATUS_CODES
from ._common import add_folder_args, emit, fmt_eta, fmt_frac


def _table(rows, option_dims) -> list[str]:
    labels = [k for k in STATUS_CODES if k != "not_computed"]
    head = "".join(f"{d:>10}  " for d in option_dims)
    lines = [f"{head}{'eta':>10}  {'n':>8}  " + "  ".join(f"{lab:<21}" for lab in labels)]
    for row in rows:
        lead = "".join(f"{str(row[d]):>10}  " for d in option_dims)
        cells = "  ".join(f"{fmt_frac(row[lab]) if row['n'] else '-':<21}" for lab in labels)
        lines.append(f"{lead}{fmt_eta(row['eta']):>10}  {row['n']:>8}  {cells}")
    return lines


def _describe(table: dict) -> str:
    """A config table as text: its name (or expression) and its other settings as key = value."""
    head = table.get("name") or table.get("expression") or (f"model {table['model']}" if "model" in table else "?")
    parts = []
    for k, v in table.items():
        if k == "model_sha256":
            parts.append(f"file SHA-256 {str(v)[:12]}...")
        elif k not in ("name", "expression", "model"):  # a sub-table (problem options) is listed flat
            parts += [f"{a} = {b}" for a, b in v.items()] if isinstance(v, dict) else [f"{k} = {v}"]
    return head + (f" ({', '.join(parts)})" if parts else "")


def _show(out, ds, as_json: bool, verified: str | None = None) -> int:
    s = sweep.folder_summary(out, ds, verified=verified)
    text, option_dims = s.pop("checksums_text"), s.pop("option_dims")
    cfg = s["config"]
    lines = [f"folder    {out}: {s['cells_done']} of {s['cells_total']} cells done, {s['wall_time_s']:.1f} s of compute "
             f"over {s['runs']} run(s)",
             f"checksums {text}",
             f"problem   {_describe(cfg['problem'])}, seed {cfg['run']['seed']}, T = {cfg['run']['steps']}",
             f"optimizer {_describe(cfg.get('optimizer', {'name': 'gd'}))}",
             *_adaptive_lines(ds, s), "",
             *_table(s["results"], option_dims)]
    return emit(s, as_json, lines)


def _adaptive_lines(ds, s: dict) -> list[str]:
    """An adaptive sweep's rounds, its trajectories of the candidates', why it stopped and the
    points still wider than the target (also put in ``s`` for --json)."""
    import json

    if "adaptive" not in ds.attrs:
        return []
    rep = json.loads(ds.attrs["adaptive"])
    s["adaptive"] = {k: rep[k] for k in ("settings", "stopped", "rounds", "trajectories", "wider_than_target")
                     if k in rep}
    if "rounds" not in rep:
        return [f"adaptive  {rep['stopped']}"]
    st = rep["settings"]
    lines = [f"adaptive  {len(rep['rounds'])} rounds, {rep['trajectories']} trajectories of "
             f"{ds['status'].size} candidates; target 95% half-width {st['halfwidth']:g} of the {st['status']} fraction; {rep['stopped']}"]
    for w in rep["wider_than_target"]:
        lines.append(f"          wider than the target (no blocks left): eta {fmt_eta(w['eta'])}, n = {w['n']}, "
                     f"half-width {w['halfwidth']:.3f}")
    return lines


def _estimate(args) -> int:
    """--estimate: the projected time of the whole sweep, from a short calibration; nothing is
    written."""
    from ..sweep.projection import project

    cfg = sweep.load_config(args.config)
    p = project(cfg)
    s = {"projected_seconds": p.seconds, "steps": p.steps, "calibration_seconds": p.calibration_seconds,
         "per_option": p.per_option, "bound": "every trajectory runs all T steps"}
    text = p.text()
    if cfg.adaptive is not None:
        s["bound"] += "; every candidate cell of the adaptive grid (its rounds compute only some of them)"
        text += (" -- for every candidate cell of the adaptive grid: its rounds compute only the cells they "
                 "choose, so this is the most it can take")
    return emit(s, args.json, [text])


def cmd_sweep(args) -> int:
    if args.estimate:
        return _estimate(args)
    if not args.out:
        from .._validation import InvalidParameterError

        raise InvalidParameterError("gdstab sweep needs --out DIR, the results folder (only --estimate runs without one).")
    executor = args.executor or ("dask" if (args.scheduler or args.dask_local) else "local")
    ds = sweep.run(args.config, args.out, executor=executor, scheduler=args.scheduler, dask_local=args.dask_local,
                   resume=args.resume, overwrite=args.overwrite, wait=args.wait, quiet=args.quiet or args.json)
    return _show(args.out, ds, args.json, verified="cells verified against their checksums when the sweep opened")


def cmd_show(args) -> int:
    return _show(args.dir, sweep.open_results(args.dir, verify=args.verify), args.json)


def register(sub) -> None:
    p = sub.add_parser(
        "sweep",
        help="run (or resume) a sweep described by a TOML config into a results folder",
        description="Run the grid of step sizes x initialisations x problem options described by CONFIG "
        "(see gdstab.sweep.config for the schema), storing results cell by cell in DIR/data.zarr. "
        "Rerunning the same command continues an interrupted sweep where it stopped, with "
        "identical results; a folder made for another config is refused.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  gdstab sweep sweep.toml --out results/\n"
        "  gdstab sweep sweep.toml --out results/ --executor dask --dask-local 4\n"
        "  gdstab sweep sweep.toml --out results/ --executor dask --scheduler tcp://10.0.0.5:8786\n",
    )
    p.add_argument("config", help="the sweep's TOML config file")
    p.add_argument("--out", help="results folder (created if missing; required unless --estimate)")
    p.add_argument("--executor", choices=sweep.EXECUTORS, help="where cells run (default local; dask when --scheduler "
                   "or --dask-local is given)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="run on a Dask cluster: a running scheduler, tcp://host:port "
                   "(implies --executor dask)")
    p.add_argument("--dask-local", type=int, metavar="N", help="run on a local Dask cluster of N worker processes "
                   "(implies --executor dask)")
    p.add_argument("--resume", action="store_true", help="only continue an existing sweep (error if DIR holds none)")
    add_folder_args(p, "the sweep")
    p.add_argument("--quiet", action="store_true", help="no progress bar (and no projected time)")
    p.add_argument("--estimate", action="store_true",
                   help="only print the projected time of the whole sweep (a few steps of one cell per option "
                        "point, measured on this machine, scaled to every trajectory running all T steps) and exit; "
                        "nothing is written. Sweeps of more than 1e12 parameter-steps print it before starting anyway")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser(
        "show",
        help="print the summary of a results folder: per step size, fractions with Wilson intervals",
        description="Print the summary of a sweep's results folder without computing anything: per option point "
        "and step size, the number of trajectories computed and the fraction of each status with its Wilson 95 "
        "percent interval. Cells without a completion marker count as not computed. With --verify, every cell's "
        "data is checked against the CRC-32 in its marker and every metadata document against the folder's "
        "checksums; cells that fail count as not computed and are reported. The folder is never changed.",
    )
    p.add_argument("dir", help="a results folder written by gdstab sweep")
    p.add_argument("--verify", action="store_true", help="check every cell and metadata checksum (reads all data)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_show)
