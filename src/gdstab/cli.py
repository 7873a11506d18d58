"""The ``gdstab`` command: a thin layer over the Python API.

Every flag maps onto an argument of the API (:func:`gdstab.trajectories`, :class:`Criteria`,
:func:`gdstab.problems.get`, :meth:`Problem.from_expression`).  Errors in the input are
reported as one line on stderr with exit status 2; nothing is computed before the whole input
has been validated.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Sequence

import numpy as np

from ._validation import InvalidParameterError
from .cli_common import add_criteria_args, add_problem_args, build_problem, criteria_from_args, fmt_eta
from .cli_dynamics import register
from . import random as gdstab_random

_EPILOG_TRAJ = """\
examples:
  gdstab trajectories --problem hyperbola --eta 0.5,1.05 --inits 2000 --steps 1000 --seed 0
  gdstab trajectories --loss "0.5*(1-x*y)**2" --min-value 0 --eta 0.1:1.0:10 --box -2,2,-2,2 --json
  gdstab trajectories --problem quadratic --option spectrum=1,3 --eta 0.6,0.7 --box -1,1

statuses (see gdstab.dynamics for the exact definition):
  converged   settled (eta*|grad L| <= tol for --window steps) at a global minimum
  stationary  settled where L - L* > f_tol (a critical point that is not a global minimum)
  periodic    returns within tol to the same point every p <= --max-period steps
  diverged    non-finite, or |theta| > --max-norm
  bounded     none of these after --steps steps (e.g. chaos, or slow convergence)
fractions are over the initial points, with Wilson 95% intervals in brackets.
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse's convention)
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _fmt_frac(cell: dict) -> str:
    return f"{cell['fraction']:.3f} [{cell['low']:.3f},{cell['high']:.3f}]"


def cmd_trajectories(args) -> int:

    from .dynamics import trajectories
    from .outcomes import Status
    from .problems import parse_box
    from .specs import parse_eta
    from ._validation import positive_int

    problem = build_problem(args)
    etas = parse_eta(args.eta, name="--eta", caller="gdstab trajectories")
    n = positive_int(args.inits, "--inits", "gdstab trajectories")
    steps = positive_int(args.steps, "--steps", "gdstab trajectories")
    seed = positive_int(args.seed, "--seed", "gdstab trajectories", minimum=0)
    box = problem.box if args.box is None else parse_box(args.box, problem.dim, caller="gdstab trajectories", name="--box")
    criteria = criteria_from_args(args)
    if n * etas.size > 200_000_000:
        raise InvalidParameterError(
            f"The '--inits' parameter of gdstab trajectories times the number of step sizes must be <= 2e8. "
            f"Got {n} x {etas.size} instead."
        )
    from .random import init_points

    points = init_points(problem, seed, np.arange(n), box)  # the sweep layer's keys
    theta0 = np.tile(points, (etas.size, 1))
    eta = np.repeat(etas, n)
    t0 = time.perf_counter()
    res = trajectories(problem, theta0, eta, steps=steps, criteria=criteria, backend=args.backend)
    wall = time.perf_counter() - t0
    rows = res.summary()
    if args.json:
        out = {
            "problem": problem.name,
            "normalisation": problem.normalisation,
            "options": dict(problem.options),
            "box": None if box is None else [list(b) for b in box],
            "inits": n,
            "steps": steps,
            "seed": seed,
            "criteria": criteria.to_dict(),
            "backend": res.backend,
            "wall_time_s": wall,
            "results": rows,
        }
        json.dump(out, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"problem   {problem.name}: {problem.normalisation}")
    where = (f"uniform in {', '.join(f'[{lo:g}, {hi:g}]' for lo, hi in box)}" if box is not None
             else "from the problem's own initialiser")
    print(f"inits     {n} {where}, seed {seed}")
    print(f"steps     T = {steps}; tol {criteria.tol:g}, window {criteria.window}, max period {criteria.max_period}")
    print(f"backend   {res.backend}, {wall:.2f} s for {len(res)} trajectories")
    labels = [s.label for s in Status]
    print()
    print(f"{'eta':>10}  " + "  ".join(f"{lab:<21}" for lab in labels))
    for row in rows:
        print(f"{fmt_eta(row['eta']):>10}  " + "  ".join(f"{_fmt_frac(row[lab]):<21}" for lab in labels))
    return 0


def _print_summary(rows, option_dims) -> None:
    from .outcomes import STATUS_CODES

    labels = [k for k in STATUS_CODES if k != "not_computed"]
    head = "".join(f"{d:>10}  " for d in option_dims)
    print(f"{head}{'eta':>10}  {'n':>8}  " + "  ".join(f"{lab:<21}" for lab in labels))
    for row in rows:
        lead = "".join(f"{str(row[d]):>10}  " for d in option_dims)
        cells = "  ".join(f"{_fmt_frac(row[lab]) if row['n'] else '-':<21}" for lab in labels)
        print(f"{lead}{fmt_eta(row['eta']):>10}  {row['n']:>8}  {cells}")


def _add_folder_args(p: argparse.ArgumentParser, what: str) -> None:
    """--overwrite and --wait, for the commands that write a results folder."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"delete {what} in DIR first and start fresh: only a folder gdstab wrote (its marker "
                   "gdstab-folder.json), an empty one or the leftovers of an interrupted creation, and only gdstab's "
                   "own files; '.', the home directory, / and folders holding other files are refused")
    p.add_argument("--wait", action="store_true",
                   help="if another gdstab process is writing DIR, wait for it (default: say who holds it and exit)")


def cmd_sweep(args) -> int:
    from . import sweep

    ds = sweep.run(
        args.config,
        args.out,
        executor=args.executor,
        scheduler=args.scheduler,
        dask_local=args.dask_local,
        resume=args.resume,
        overwrite=args.overwrite,
        wait=args.wait,
        quiet=args.quiet or args.json,
    )
    return _show(args.out, ds, args.json, verified="cells verified against their checksums when the sweep opened")


def _show(out, ds, as_json: bool, verified: str | None = None) -> int:
    from . import sweep

    folder = sweep.ResultsFolder(out)
    runs = folder.runs()
    total = sweep.Layout.from_dataset(ds).n_cells
    check = json.loads(ds.attrs.pop("verification", "null"))
    if check is not None:
        done = check["cells_verified"]
        checksums = (f"verified: {check['cells_verified']} of {total} cells match their CRC-32"
                     + (f", {check['cells_failed']} failed (shown as not computed)" if check["cells_failed"] else "")
                     + "; metadata documents match their checksums")
    else:
        done = len(list(folder.cells_dir.glob("*.json"))) if folder.cells_dir.exists() else 0
        checksums = verified or "not verified (gdstab show --verify checks every cell against its CRC-32)"
    rows = sweep.summary(ds)
    option_dims = [d for d in ds["status"].dims if d not in ("eta", "init")]
    wall = sum(r.get("wall_time_s", 0.0) for r in runs)
    if as_json:
        json.dump({"folder": str(out), "cells_done": done, "cells_total": total, "wall_time_s": wall,
                   "checksums": check if check is not None else (verified or "not verified"),
                   "config": json.loads(ds.attrs["gdstab_config"]), "results": rows}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"folder    {out}: {done} of {total} cells done, {wall:.1f} s of compute over {len(runs)} run(s)")
    print(f"checksums {checksums}")
    cfg = json.loads(ds.attrs["gdstab_config"])
    print(f"problem   {cfg['problem']}, seed {cfg['run']['seed']}, T = {cfg['run']['steps']}")
    print()
    _print_summary(rows, option_dims)
    return 0


def cmd_show(args) -> int:
    from . import sweep

    return _show(args.dir, sweep.open_results(args.dir, verify=args.verify), args.json)


def cmd_stability(args) -> int:

    from . import stability
    from .specs import parse_eta

    from ._validation import positive_int

    problem = build_problem(args)
    etas = parse_eta(args.eta, name="--eta", caller="gdstab stability")
    args.seed = positive_int(args.seed, "--seed", "gdstab stability", minimum=0)
    out: dict = {"problem": problem.name, "normalisation": problem.normalisation}
    m = problem.minima
    if m is not None and (m.sample is not None or m.curve is not None):
        crit = stability.critical_step_sizes(problem, key=gdstab_random.key(args.seed))
        out["critical"] = crit.to_dict()
    else:
        out["critical"] = None
        out["critical_note"] = "no description of the set of minima M: critical step sizes need one (built-in problems have it)"
    rows = []
    for eta in etas:
        row: dict = {"eta": float(eta), "threshold_2_over_eta": 2.0 / float(eta)}
        if m is not None and m.curve is not None:
            a = stability.weakly_stable_arc_length(problem, float(eta))
            row["mws_length"] = {"total": a.total, "per_branch": list(a.per_branch)}
        elif m is not None and m.sample is not None:
            f, lo, hi = stability.weakly_stable_fraction(problem, float(eta), key=gdstab_random.key(args.seed), n_samples=2000)
            row["mws_fraction"] = {"fraction": f, "low": lo, "high": hi, "of": "minima drawn by the problem's sampler"}
        if args.point is not None:
            try:
                pt = [float(v) for v in args.point.split(",")]
            except ValueError:
                raise InvalidParameterError(f"The '--point' parameter of gdstab stability must be {problem.dim} comma-separated floats. Got {args.point!r} instead.") from None
            if len(pt) != problem.dim:
                raise InvalidParameterError(f"The '--point' parameter of gdstab stability must be {problem.dim} comma-separated floats. Got {args.point!r} instead.")
            row["point"] = stability.minimum_stability(problem, pt, float(eta)).to_dict()
        rows.append(row)
    out["per_eta"] = rows
    if args.json:
        json.dump(out, sys.stdout, indent=2, default=float)
        sys.stdout.write("\n")
        return 0
    print(f"problem   {problem.name}: {problem.normalisation}")
    c = out["critical"]
    if c is None:
        print(f"critical  {out['critical_note']}")
    else:
        print(f"critical  eta* = 2 / inf_M lambda_max = {c['eta_star']:.10g} (inf {c['inf_lambda_max']:.10g} at {np.round(c['argmin_lambda_max'], 8).tolist()})")
        print(f"          eta_E = 2 / inf_M lambda_min+ = {c['eta_E']:.10g} (inf {c['inf_lambda_min_pos']:.10g} at {np.round(c['argmin_lambda_min_pos'], 8).tolist()})")
        if c.get("note"):
            print(f"          note: {c['note']}")
    for row in rows:
        line = f"eta {fmt_eta(row['eta']):<8} 2/eta = {row['threshold_2_over_eta']:<10.6g}"
        if "mws_length" in row:
            line += f"  M_WS length {row['mws_length']['total']:.10g} (per branch {', '.join(f'{v:.10g}' for v in row['mws_length']['per_branch'])})"
        if "mws_fraction" in row:
            mf = row["mws_fraction"]
            line += f"  M_WS fraction {mf['fraction']:.3f} [{mf['low']:.3f},{mf['high']:.3f}]"
        print(line)
        if "point" in row:
            pnt = row["point"]
            print(f"    at the point: eigenvalues {np.round(pnt['eigenvalues'], 10).tolist()}, spectral radius of I - eta H "
                  f"{pnt['spectral_radius']:.6g}; linearly stable: {pnt['linearly_stable']}, weakly stable: {pnt['weakly_stable']}")
    return 0


#: relative spread of the restarts' values below which `gdstab linear` calls them in agreement
RESTARTS_AGREE = 1e-6


def _load_xy(path: str) -> tuple[np.ndarray, np.ndarray]:
    """Arrays X and Y of a .npz file for ``--data``, numeric and finite, or one clear error."""
    import zipfile

    from ._validation import check_memory

    expected = "a .npz file with numeric arrays 'X' (d_0 x n) and 'Y' (d_h x n)"
    try:
        if zipfile.is_zipfile(path):  # sizes from the archive and the arrays' headers, before reading
            with zipfile.ZipFile(path) as z:
                need = sum(info.file_size for info in z.infolist())
                for info in z.infolist():
                    if info.filename.endswith(".npy"):
                        with z.open(info) as fh:
                            version = np.lib.format.read_magic(fh)
                            read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                    else np.lib.format.read_array_header_2_0)
                            shape, _, dtype = read(fh)
                        need = max(need, int(np.prod(shape, dtype=np.float64)) * np.dtype(dtype).itemsize)
            check_memory(float(need), "--data", "gdstab linear", "arrays", path)
        with np.load(path, allow_pickle=False) as f:
            X, Y = np.asarray(f["X"]), np.asarray(f["Y"])
    except InvalidParameterError:
        raise
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, TypeError, MemoryError) as exc:
        raise InvalidParameterError(
            f"The '--data' parameter of gdstab linear must be {expected}. Got {path!r} ({type(exc).__name__}: "
            f"{str(exc)[:160]}) instead.") from None
    for name, a in (("X", X), ("Y", Y)):
        if a.dtype.kind not in "iuf" or not np.all(np.isfinite(a)):
            raise InvalidParameterError(
                f"The '--data' parameter of gdstab linear must be {expected}. Got an array {name!r} of dtype "
                f"{a.dtype} {'with non-finite values ' if a.dtype.kind in 'iuf' else ''}in {path!r} instead.")
    return X.astype(np.float64), Y.astype(np.float64)


def cmd_linear(args) -> int:
    import jax

    from . import stability
    from .problems.linear import WALKS, balanced_point, gaussian_data, is_balanced, linear_network, path_to_infinity
    from .spectrum import hessian, smallest_nonzero_eigenvalue
    from ._validation import positive_int

    try:
        dims = [int(v) for v in args.dims.split(",")]
    except ValueError:
        raise InvalidParameterError(f"The '--dims' parameter of gdstab linear must be comma-separated ints such as 2,3,2. Got {args.dims!r} instead.") from None
    if args.data is not None:
        X, Y = _load_xy(args.data)
        source = f"data from {args.data}"
    else:
        n = positive_int(args.samples, "--samples", "gdstab linear")
        seed = positive_int(args.seed, "--seed", "gdstab linear", minimum=0)
        X, Y = gaussian_data(dims, n, seed)
        source = f"Gaussian X, Y with {n} samples, seed {seed}"
    p = linear_network(dims, X, Y, normalisation=args.normalisation)
    t = p.options["target"]
    restarts = positive_int(args.restarts, "--restarts", "gdstab linear", minimum=0)
    key = gdstab_random.key(positive_int(args.seed, "--seed", "gdstab linear", minimum=0))
    pt = np.asarray(p.minima.sample(key, 1))[0]
    ev = np.linalg.eigvalsh(hessian(p, pt))
    nz = smallest_nonzero_eigenvalue(ev)
    starts = [balanced_point(dims, t.W_star, t.rank)] + (list(np.asarray(p.minima.sample(jax.random.fold_in(key, 1), restarts))) if restarts else [])
    lmax, argmin, per_start, evals = stability.minimise_sharpness_on_minima(p, starts)
    out = {
        "dims": dims, "data": source, "normalisation": p.normalisation, "rank": t.rank, "filling": t.filling,
        "singular_values": t.singular_values.tolist(), "distinct_singular_values": t.distinct,
        "min_value": t.min_value, "d_theta": t.d_theta, "dim_M": t.dim_M,
        "spectrum_at_sampled_minimum": {"zero": nz.n_zero, "positive": int((ev > nz.threshold).sum()),
                                        "negative": int((ev < -nz.threshold).sum()), "expected_zero": t.dim_M,
                                        "expected_positive": t.d_theta - t.dim_M, "rank_tolerance": nz.threshold},
        "inf_lambda_max": lmax, "eta_star": 2.0 / lmax, "minimiser_balanced": is_balanced(dims, argmin, 1e-6),
        "restarts": per_start, "evaluations": evals,
        # the restarts' spread is the evidence: when they disagree, the minimisation did not
        # reach the infimum from every start, and the smallest value is only an upper bound
        "restart_spread": (max(per_start) - min(per_start)) / min(per_start) if len(per_start) > 1 else None,
    }
    walks = {}
    if len(dims) >= 3:
        for kind in WALKS:
            try:
                path = path_to_infinity(dims, t.W_star, t.rank, kind)
            except InvalidParameterError as exc:
                walks[kind] = {"skipped": str(exc)}
                continue
            ts = [0, 1, 2, 3, 4] if kind == "scaling" else [0, 2, 4, 8, 16]
            walks[kind] = stability.walk_along_minima(p, path, ts)
    out["walks"] = walks
    if args.trapping is not None:
        from .experiments.linear_dynamics import compute_linear_trapping
        from .specs import parse_eta

        etas = parse_eta(args.trapping, name="--trapping", caller="gdstab linear")
        tr = compute_linear_trapping(dims, X, Y, etas, inits=positive_int(args.inits, "--inits", "gdstab linear"),
                                     steps=positive_int(args.steps, "--steps", "gdstab linear"),
                                     seed=args.seed, normalisation=args.normalisation)
        out["trapping"] = {
            "eta_star": tr.attrs["eta_star"], "inits": tr.attrs["inits"], "steps": tr.attrs["steps"],
            "per_eta": [{"eta": float(e), "converged": float(f), "low": float(lo), "high": float(hi), "diverged": float(dv)}
                        for e, f, lo, hi, dv in zip(tr.eta.values, tr.trapping_fraction.values, tr.trapping_low.values,
                                                    tr.trapping_high.values, tr.diverged_fraction.values)],
        }
        if args.plot:
            from . import plots

            plots.save(plots.linear_trapping(tr), args.plot)
    if args.json:
        json.dump(out, sys.stdout, indent=2, default=float)
        sys.stdout.write("\n")
        return 0
    sp = out["spectrum_at_sampled_minimum"]
    print(f"network   dims {tuple(dims)}, {source}; {p.normalisation}")
    print(f"minimum   r = {t.rank}, {'filling' if t.filling else 'non-filling'}, singular values {np.round(t.singular_values, 6).tolist()} "
          f"({'distinct' if t.distinct else 'NOT distinct'}), L* = {t.min_value:.10g}")
    print(f"M         dim M = d_theta - r(d_0 + d_h - r) = {t.d_theta} - {t.d_theta - t.dim_M} = {t.dim_M}")
    print(f"spectrum  at a sampled minimum: {sp['zero']} zero (expected {t.dim_M}), {sp['positive']} positive "
          f"(expected {sp['expected_positive']}), {sp['negative']} negative; rank tolerance {sp['rank_tolerance']:.3g}")
    spread = out["restart_spread"]
    agree = spread is None or spread <= RESTARTS_AGREE
    digits = 12 if agree else 4
    print(f"critical  inf_M lambda_max = {lmax:.{digits}g} -> eta* = {2 / lmax:.{digits}g} (minimiser balanced: "
          f"{out['minimiser_balanced']}; {len(starts)} starts, {evals} Hessians"
          + ("" if spread is None else f", restarts spread {spread:.1e}") + ")")
    if not agree:
        print(f"warning   the {len(per_start)} starts end {100 * spread:.2g} % apart ({min(per_start):.6g} ... "
              f"{max(per_start):.6g}): the minimisation did not reach the infimum from every start, so inf_M "
              f"lambda_max is at most {min(per_start):.6g} and eta* at least {2 / min(per_start):.6g} (not exact); "
              f"more --restarts may lower it")
    for kind, rows in walks.items():
        if isinstance(rows, dict):
            print(f"walk      {kind}: {rows['skipped']}")
            continue
        cells = "; ".join(f"t={r['t']:g}: |theta|={r['norm_theta']:.3g} max={r['lambda_max']:.4g} min+={r['lambda_min_pos']:.4g}" for r in rows)
        print(f"walk      {kind}: {cells}")
    if "trapping" in out:
        tr = out["trapping"]
        print(f"dynamics  {tr['inits']} initialisations uniform in [-1, 1]^{t.d_theta}, T = {tr['steps']}; eta* = {tr['eta_star']:.6g}")
        for r in tr["per_eta"]:
            mark = "  <= eta*" if r["eta"] <= tr["eta_star"] else "  >  eta*"
            print(f"          eta {fmt_eta(r['eta']):<10} converged {r['converged']:.3f} [{r['low']:.3f},{r['high']:.3f}]  diverged {r['diverged']:.3f}{mark}")
    return 0


def cmd_reproduce(args) -> int:
    from .reproduce import reproduce

    t0 = time.perf_counter()
    summary = reproduce(args.targets or ["all"], args.out, scale=args.scale, quiet=args.quiet,
                        overwrite=args.overwrite, wait=args.wait)
    if not args.quiet:
        print(f"wrote figures under {args.out}/figures, data under {args.out}/data, {args.out}/summary.json and "
              f"{args.out}/report.html in {time.perf_counter() - t0:.1f} s")
        for k, v in summary["key_numbers"].items():
            if isinstance(v.get("value"), (int, float)):
                paper = f" (paper: {v['paper']})" if "paper" in v else ""
                print(f"  {k:<44} {v['value']:.10g}{paper}")
    return 0


def cmd_report(args) -> int:
    from .report import write_report

    path = write_report(args.out)
    if not args.quiet:
        print(f"wrote {path}")
    return 0


def cmd_problems(args) -> int:
    from . import problems

    info = {}
    for name, opts in problems.available().items():
        p = problems.get(name)
        info[name] = {
            "normalisation": p.normalisation,
            "dim": p.dim,
            "min_value": p.min_value,
            "minima": p.minima.description if p.minima else None,
            "options": opts,
            "compiled_kernel": p.native is not None,
        }
    if args.json:
        json.dump(info, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    for name, i in info.items():
        opts = ", ".join(f"{k} ({v})" for k, v in i["options"].items()) or "none"
        print(f"{name:<15} d={i['dim']}  {i['normalisation']}")
        print(f"{'':<15} minima: {i['minima']}; options: {opts}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(
        prog="gdstab",
        description="Gradient descent with a fixed step size as a dynamical system: "
        "G(theta) = theta - eta * grad L(theta).",
    )
    parser.add_argument("--version", action="version", version=f"gdstab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    p = sub.add_parser(
        "trajectories",
        help="run many GD trajectories and print, per step size, the fraction of each outcome",
        description="Sample --inits initial points uniformly in --box (the same points for every "
        "step size), run gradient descent for at most --steps steps at each step size of --eta, "
        "classify every trajectory and print the fractions with Wilson 95%% intervals.",
        epilog=_EPILOG_TRAJ,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_args(p)
    g = p.add_argument_group("run")
    g.add_argument("--eta", required=True, metavar="SPEC", help="step sizes: 0.5 | 0.1,0.5,0.9 | start:stop:num (inclusive)")
    g.add_argument("--box", metavar="SPEC", help="initialisation box: xmin,xmax,ymin,ymax,... or lo,hi for every coordinate (default: the problem's)")
    g.add_argument("--inits", type=int, default=1000, help="number of initial points (default 1000)")
    g.add_argument("--steps", type=int, default=1000, help="maximum number of GD steps T (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="integer seed of the initial points (default 0; printed with the results)")
    g.add_argument("--backend", choices=("auto", "jax", "native"), default="auto", help="engine backend (default auto)")
    g.add_argument("--json", action="store_true", help="print the results as JSON")
    add_criteria_args(p)
    p.set_defaults(func=cmd_trajectories)

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
    p.add_argument("--out", required=True, help="results folder (created if missing)")
    p.add_argument("--executor", choices=("local", "dask"), default="local", help="where cells run (default local)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="with --executor dask: a running scheduler, tcp://host:port")
    p.add_argument("--dask-local", type=int, metavar="N", help="with --executor dask: start a local cluster of N worker processes")
    p.add_argument("--resume", action="store_true", help="only continue an existing sweep (error if DIR holds none)")
    _add_folder_args(p, "the sweep")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
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

    p = sub.add_parser(
        "stability",
        help="critical step sizes, the size of the weakly stable minima and stability of a point",
        description="Print the critical step sizes of the problem (eta* = 2 / inf over the minima of "
        "lambda_max, eta_E = 2 / inf of the smallest non-zero eigenvalue), and per step size the size of "
        "M_WS (exact arc length for a one-dimensional set of minima, else a sampled fraction); with "
        "--point, the Hessian spectrum and stability verdicts at that minimum.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  gdstab stability --problem hyperbola --eta 0.1,0.5,1.0 --point 1,1\n"
        "  gdstab stability --problem quadratic --option spectrum=1,3 --eta 0.5 --json\n",
    )
    add_problem_args(p)
    p.add_argument("--eta", required=True, metavar="SPEC", help="step sizes: 0.5 | 0.1,0.5 | start:stop:num")
    p.add_argument("--point", metavar="X,Y,...", help="a minimum at which to report the spectrum and verdicts")
    p.add_argument("--seed", type=int, default=0, help="seed of the samplers of minima (default 0)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_stability)

    p = sub.add_parser(
        "linear",
        help="deep linear networks: the minimum, the manifold of minima, its spectrum, eta* and the lambda_min+ walk",
        description="For the deep linear network with widths --dims (d_0,...,d_h) on data X, Y: the rank r, "
        "filling or not, the singular values, dim M, the Hessian spectrum counts at a sampled minimum, "
        "inf over M of lambda_max (continuation on a smoothed maximum of the eigenvalues, projected onto M, "
        "from a balanced and several gauge-transformed starts) with eta* = 2 / inf, and lambda_max, lambda_min+ along paths to infinity on M.",
    )
    p.add_argument("--dims", required=True, metavar="D0,...,DH", help="layer widths, e.g. 2,3,2")
    p.add_argument("--data", metavar="FILE.npz", help="arrays X (d_0 x n) and Y (d_h x n); default: Gaussian data")
    p.add_argument("--samples", type=int, default=20, help="number of Gaussian samples without --data (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and the samplers (default 0)")
    p.add_argument("--normalisation", choices=("sum", "half_sum", "mean", "half_mean"), default="sum",
                   help="L = c ||Y - W X||^2 with c = 1, 1/2, 1/n, 1/(2n) (default sum, the paper's)")
    p.add_argument("--restarts", type=int, default=4, help="gauge-transformed starts besides the balanced one (default 4)")
    p.add_argument("--trapping", metavar="ETA_SPEC", help="also run GD from random initialisations at these step sizes "
                   "and print the fraction that converges (the dynamics check around eta*)")
    p.add_argument("--inits", type=int, default=1000, help="with --trapping: initialisations (default 1000)")
    p.add_argument("--steps", type=int, default=5000, help="with --trapping: GD steps T (default 5000)")
    p.add_argument("--plot", metavar="STEM", help="with --trapping: save the figure as STEM.png/.pdf/.svg")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_linear)

    p = sub.add_parser(
        "reproduce",
        help="reproduce the paper's figures into a results folder (with an HTML report)",
        description="Run the named experiments (default: all) and write DIR/figures (PNG, PDF, SVG), DIR/data "
        "(Zarr stores and CSV tables behind every figure), DIR/summary.json (key numbers with their definitions "
        "and the paper's values) and DIR/report.html. Targets: fig1, fig2 (the toy 1/2(1-xy)^2), fig3-fig6 "
        "(ensembles of MLPs on MNIST digits 0/1), linear (deep-linear-network table and dynamics check), "
        "nonsingular (measure of the singular set of the GD map), and beyond the paper: orbit (orbit diagram and "
        "Lyapunov exponents of 1/2(1-xy)^2), eos (edge of stability on 1/4(x^2y^2-1)^2), basin (basin map and "
        "critical step size). Rerunning resumes: finished targets are "
        "not recomputed. The small scale (default) takes about 4 minutes on a 2-core CPU.",
    )
    from .experiments import registry  # the targets' names come from the registry

    p.add_argument("targets", nargs="*", metavar="TARGET", help="all (default), " + ", ".join(registry.names()))
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--scale", choices=("small", "paper"), default="small", help="small (default, a laptop CPU) or paper sizes")
    _add_folder_args(p, "the results")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_reproduce)

    p = sub.add_parser(
        "report",
        help="rebuild DIR/report.html from a results folder (no recomputation)",
        description="Rebuild the self-contained HTML report of a results folder written by 'gdstab reproduce' "
        "from its summary.json and stored data; missing figures are redrawn from the data. A missing or corrupt "
        "store is named, with the command that recomputes it.",
    )
    p.add_argument("out", metavar="DIR", help="results folder")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    p.set_defaults(func=cmd_report)

    register(sub)  # orbit, lyapunov, basin, sharpness, critical-lr

    p = sub.add_parser("problems", help="list the built-in problems, their normalisation and options")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_problems)
    return parser


#: flags whose values may start with '-' (negative numbers), e.g. --box -2,2,-1,1
_NUMERIC_FLAGS = ("--box", "--eta", "--point", "--min-value", "--init", "--extent", "--center", "--u", "--v", "--eta-range")


def _join_negative_values(argv: Sequence[str]) -> list[str]:
    """argparse reads '--box -2,2' as two flags; join such values as '--box=-2,2'."""
    out: list[str] = []
    i = 0
    argv = list(argv)
    while i < len(argv):
        tok = argv[i]
        if tok in _NUMERIC_FLAGS and i + 1 < len(argv):
            nxt = argv[i + 1]
            if len(nxt) > 1 and nxt[0] == "-" and (nxt[1].isdigit() or nxt[1] == "."):
                out.append(f"{tok}={nxt}")
                i += 2
                continue
        out.append(tok)
        i += 1
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.  Exit status: 0 done, 2 bad input (one line naming the parameter),
    1 an operating-system error (one line naming the path and the cause), 130 interrupted
    (SIGINT/SIGTERM; one line saying what was kept and how to continue)."""
    import jax

    from . import interrupts

    jax.config.update("jax_enable_x64", True)  # the command line is an analysis entry point
    parser = build_parser()
    args = parser.parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    try:
        interrupts.check()
        status = int(args.func(args) or 0)
        interrupts.check()  # a request that arrived while the command finished
        return status
    except InvalidParameterError as exc:
        sys.stderr.write(f"gdstab {args.command}: error: {exc}\n")
        return 2
    except BrokenPipeError:  # e.g. piped into head
        return 0
    except KeyboardInterrupt as exc:  # gdstab.interrupts.Interrupted
        return interrupts.report(exc, f"gdstab {args.command}")
    except OSError as exc:
        from .sweep.folders import describe_os_error

        sys.stderr.write(f"gdstab {args.command}: error: {describe_os_error(exc)}\n")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
