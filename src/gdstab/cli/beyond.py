"""``gdstab orbit | lyapunov | basin | sharpness | critical-lr``: what GD does beyond the
convergence regime (a thin layer over :mod:`gdstab.orbits`, :mod:`gdstab.basins`,
:mod:`gdstab.sharpness` and :mod:`gdstab.critical`).

Every command validates its whole input before computing, prints a readable summary (or JSON
with ``--json``), and with ``--out DIR`` writes the figure (PNG, PDF, SVG), the data (Zarr) and
``summary.json`` into DIR.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from .. import basins, critical, orbits, sharpness
from .. import random as gdstab_random
from .._validation import InvalidParameterError, fail, positive_int
from ..outcomes import fraction_rows
from ..specs import parse_eta
from ._common import (add_criteria_args, add_init_args, add_optimizer_arg, add_quiet_arg, add_problem_args, build_problem,
                      criteria_from_args, emit, fmt_eta, initial_points, optimizer_from_args, out_dir, point,
                      progress, single_eta, write_outputs)


# ------------------------------------------------------------------------------- commands


def cmd_orbit(args) -> int:

    caller = "gdstab orbit"
    problem = build_problem(args)
    etas = parse_eta(args.eta, name="--eta", caller=caller)
    inits = initial_points(args, problem, caller)
    out = out_dir(args)
    t0 = time.perf_counter()
    rule = optimizer_from_args(args, caller)
    with progress(args, caller, etas.size * inits.shape[0], "orbits") as bar:
        ds = orbits.orbit_diagram(problem, etas, inits, transient=args.transient, record=args.record,
                                  observe=args.observe if not args.observe.lstrip("-").isdigit() else int(args.observe),
                                  max_period=args.max_period, rtol=args.rtol, optimizer=rule, on_chunk=bar.set)
    lyap = None
    if args.lyapunov:
        with progress(args, f"{caller}: Lyapunov exponents"):
            r = orbits.lyapunov(problem, np.tile(inits[:1], (etas.size, 1)), etas, steps=args.lyapunov_steps,
                                transient=args.transient, optimizer=rule)
        lyap = r.exponents[:, 0]
    wall = time.perf_counter() - t0
    bif = orbits.bifurcation_points(ds)
    rows = []
    for i, e in enumerate(etas):
        row = {"eta": float(e), "period": int(ds.dominant_period.values[i]),
               "periods": [int(p) for p in ds.period.values[i]]}
        if lyap is not None:
            row["lyapunov"] = None if not np.isfinite(lyap[i]) else float(lyap[i])
        rows.append(row)
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "optimizer": rule.to_dict(),
               "observable": ds.attrs["observable"], "transient": args.transient, "record": args.record, "max_period": args.max_period, "rtol": args.rtol,
               "inits": inits.tolist(), "period_codes": "p >= 1 period p, 0 aperiodic, -1 diverged",
               "bifurcations": bif, "per_eta": rows, "wall_time_s": wall}
    summary["files"] = write_outputs(out, "orbit", lambda plots: plots.orbit_diagram(ds, lyap), ds, summary)
    lines = [f"problem   {problem.name}: {problem.normalisation}", *_rule_line(rule),
             f"orbits    {inits.shape[0]} initialisation{'s' if inits.shape[0] != 1 else ''} x {etas.size} step "
             f"size{'s' if etas.size != 1 else ''}, transient {args.transient}, "
             f"{args.record} recorded iterates ({wall:.1f} s)",
             "", "period (dominant over initialisations; 0 = aperiodic, -1 = all diverged) by step-size range:"]
    start = 0
    dom = ds.dominant_period.values
    for i in range(1, etas.size + 1):
        if i == etas.size or dom[i] != dom[start]:
            lines.append(f"  eta {etas[start]:.6g} .. {etas[i - 1]:.6g}: period {int(dom[start])}")
            start = i
    lines.append("")
    lines.append("bifurcation points (midpoint of the bracketing grid values, +- half the spacing; step sizes "
                 "whose transient had not died out widen the bracket):")
    lines += [f"  eta = {b['eta']:.6g} +- {b['resolution']:.2g} [{b['eta_low']:.8g}, {b['eta_high']:.8g}]: period "
              f"{b['period_before']} -> {b['period_after']}" + ("" if b["reliable"] else f"  (warning: {b['note']})")
              for b in bif] or ["  none"]
    unsettled = int((~ds.settled.values).any(axis=1).sum())
    if unsettled:
        lines.append(f"warning   at {unsettled} of {etas.size} step sizes some trajectory had not settled on its "
                     f"attractor after the transient of {ds.attrs['transient']} steps (their periods are transient; "
                     f"a longer --transient resolves them)")
    return emit(summary, args.json, lines)


def cmd_lyapunov(args) -> int:

    caller = "gdstab lyapunov"
    problem = build_problem(args)
    etas = parse_eta(args.eta, name="--eta", caller=caller)
    inits = initial_points(args, problem, caller)
    th = np.repeat(inits, etas.size, axis=0)
    et = np.tile(etas, inits.shape[0])
    rule = optimizer_from_args(args, caller)
    with progress(args, caller):  # one compiled call: the elapsed time
        r = orbits.lyapunov(problem, th, et, steps=args.steps, transient=args.transient,
                            n_exponents="all" if args.all else 1, blocks=args.blocks, optimizer=rule)
    rows = []
    for i in range(th.shape[0]):
        rows.append({"eta": float(et[i]), "theta0": th[i].tolist(),
                     "exponents": [None if not np.isfinite(v) else float(v) for v in r.exponents[i]],
                     "stderr": [None if not np.isfinite(v) else float(v) for v in r.stderr[i]],
                     "converged": bool(r.converged[i]), "diverged": bool(r.diverged[i])})
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "optimizer": rule.to_dict(),
               "steps": args.steps, "transient": args.transient, "blocks": args.blocks, "results": rows}
    lines = [f"problem   {problem.name}: {problem.normalisation}", *_rule_line(rule, " (exponents of its map on (theta, buffers))"),
             f"method    Jacobian-vector products of G, {'QR every step' if args.all else 'renormalised vector'}; "
             f"{args.steps} steps after {args.transient}; error = batch-means standard error over {args.blocks} blocks", ""]
    for row in rows:
        if row["diverged"]:
            lines.append(f"  eta {fmt_eta(row['eta']):<10} from {np.round(row['theta0'], 4).tolist()}: diverged")
            continue
        ex = ", ".join(f"{v:+.6f} +- {s:.1e}" for v, s in zip(row["exponents"], row["stderr"]))
        lines.append(f"  eta {fmt_eta(row['eta']):<10} from {np.round(row['theta0'], 4).tolist()}: {ex}"
                     f"{'' if row['converged'] else '  (not converged: raise --steps)'}")
    return emit(summary, args.json, lines)


def cmd_basin(args) -> int:

    caller = "gdstab basin"
    problem = build_problem(args)
    eta = single_eta(args.eta, caller)
    extent = point(args.extent, 4, "--extent", caller)
    res = [positive_int(int(v), "--resolution", caller) for v in str(args.resolution).split(",")] \
        if all(t.strip().isdigit() for t in str(args.resolution).split(",")) else None
    if res is None or len(res) not in (1, 2):
        raise fail("--resolution", caller, "N or NA,NB (pixels per side)", args.resolution)
    center = None if args.center is None else point(args.center, problem.dim, "--center", caller)
    dirs = None
    if args.u is not None or args.v is not None:
        if args.u is None or args.v is None:
            raise InvalidParameterError("The '--u' and '--v' flags of gdstab basin go together (the plane's two directions).")
        dirs = np.stack([point(args.u, problem.dim, "--u", caller), point(args.v, problem.dim, "--v", caller)])
    out = out_dir(args)
    t0 = time.perf_counter()
    with progress(args, caller, int(np.prod(res)) if len(res) == 2 else res[0] ** 2, "pixels") as bar:
        ds = basins.basin_map(problem, eta, extent=extent, resolution=res[0] if len(res) == 1 else tuple(res),
                              center=center, directions=dirs, steps=args.steps, criteria=criteria_from_args(args, problem),
                              classify=None if args.classify == "none" else args.classify,
                              optimizer=optimizer_from_args(args, caller), on_chunk=bar.set)
    wall = time.perf_counter() - t0
    n = ds.status.size
    fr = fraction_rows(ds.status.values)
    fr.pop("n")
    classes = {int(c): int((ds.minimum_class.values == c).sum()) for c in np.unique(ds.minimum_class.values) if c >= 0}
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "optimizer": ds.attrs["optimizer"],
               "eta": eta, "steps": args.steps, "pixels": n, "extent": extent.tolist(), "center": ds.attrs["center"], "u": ds.attrs["direction_u"],
               "v": ds.attrs["direction_v"], "fractions": fr, "minimum_classes": classes, "wall_time_s": wall,
               "pixels_per_second": n / wall if wall > 0 else None}
    summary["files"] = write_outputs(out, "basin", lambda plots: plots.basin_map(ds), ds, summary)
    lines = [f"problem   {problem.name}: {problem.normalisation}", *_rule_line(optimizer_from_args(args, caller)),
             f"plane     center {np.round(ds.attrs['center'], 4).tolist()}, u {np.round(ds.attrs['direction_u'], 4).tolist()}, "
             f"v {np.round(ds.attrs['direction_v'], 4).tolist()}, extent {extent.tolist()}",
             f"pixels    {ds.sizes['a']} x {ds.sizes['b']} at eta = {fmt_eta(eta)}, T = {args.steps} ({wall:.2f} s, "
             f"{n / max(wall, 1e-9):.3g} pixels/s)", ""]
    lines += [f"  {k:<11} {v['fraction']:.4f} [{v['low']:.4f}, {v['high']:.4f}]" for k, v in fr.items()]
    if len(classes) > 1:
        lines.append(f"  converged by minimum class: {classes}")
    return emit(summary, args.json, lines)


def cmd_sharpness(args) -> int:


    caller = "gdstab sharpness"
    problem = build_problem(args)
    eta = single_eta(args.eta, caller)
    th0 = initial_points(args, problem, caller)[0]
    out = out_dir(args)
    rule = optimizer_from_args(args, caller)
    with progress(args, caller, args.steps // max(args.every, 1) + 1, "records") as bar:
        ds = sharpness.track_sharpness(problem, th0, eta, steps=args.steps, every=args.every,
                                       key=gdstab_random.key(positive_int(args.seed, "--seed", caller, minimum=0)),
                                       optimizer=rule, on_record=bar.set)
    thr = ds.attrs["threshold"]
    on = ds.attrs["threshold_on"]
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "optimizer": rule.to_dict(),
               "eta": eta, "threshold": thr, "threshold_on": on,
               "theta0": np.asarray(th0).tolist(), "steps": args.steps, "every": args.every,
               **_sharpness_outcome(ds, eta), "theta_last": ds.theta_last.values.tolist(),
               "wall_train_s": ds.attrs["wall_train_s"], "wall_sharpness_s": ds.attrs["wall_sharpness_s"],
               "method": ds.attrs["method"]}
    summary["files"] = write_outputs(out, "sharpness", lambda plots: plots.sharpness_trace(ds), ds, summary)
    m = summary["measured"]
    lines = [f"problem   {problem.name}: {problem.normalisation}",
             f"run       {'GD' if rule.is_gd else rule.spec()} from {np.round(summary['theta0'], 4).tolist()} at "
             f"eta = {fmt_eta(eta)}, {args.steps} steps, "
             f"sharpness every {args.every} ({summary['method']})"]
    if summary["status"] == "diverged":
        a, b = summary["diverged_between"]
        lines.append(f"status    DIVERGED between steps {a} and {b} (non-finite iterate); only the "
                     f"{m['records']} record(s) before it were measured")
    else:
        lines.append(f"status    {summary['status']} (all {m['records']} records measured)")
    what = "lambda_max(P^-1 H)" if on == "preconditioned_sharpness" else "lambda_max(H)"
    lines += [f"threshold {thr:.6g} = c/eta on {what} (c = {rule.threshold:g})",
              f"sharpness at step 0 {m['first_sharpness']:.6g}, max {m['max_sharpness']:.6g} (step {m['max_step']}), "
              f"last measured {m['last_sharpness']:.6g} (step {m['last_step']})"
              + ("" if on == "sharpness" else f"  [preconditioned: last {summary['last_preconditioned']:.6g}]"),
              f"          first {what} above the threshold at step " + (str(summary["first_step_above_threshold"])
                                                       if summary["first_step_above_threshold"] is not None
                                                       else "- (not in the records measured)"),
              f"loss      last measured {m['last_loss']:.6g} (step {m['last_step']})"
              + ("" if summary["status"] == "diverged" else f"; final {summary['final_loss']:.6g}")]
    pl = summary["plateau"]
    if summary["status"] == "diverged":
        return emit(summary, args.json, lines)
    lines.append(f"plateau   {what} over steps {pl['window'][0]}..{pl['window'][1]}: median {pl['value']:.6g}, "
                 f"relative spread {pl['relative_spread']:.2g}")
    if not pl["settled"]:
        lines.append(f"warning   {what} was still moving at the end of the run (spread above "
                     f"{sharpness.PLATEAU_SETTLED:g}): no plateau yet; raise --steps")
    return emit(summary, args.json, lines)


def _rule_line(rule, extra: str = "") -> list[str]:
    """The "optimizer" line of a command's text output (none for plain GD)."""
    if rule.is_gd:
        return []
    return [f"optimizer {rule.spec()}: threshold c = {rule.threshold:g} on "
            f"{'eta lambda_max(P^-1 H)' if rule.adaptive else 'eta lambda_max(H)'}{extra}"]


def _sharpness_outcome(ds, eta: float) -> dict[str, Any]:
    """The status of a sharpness run first, then only values that were measured: a diverged
    run has no final loss or sharpness, only the records before it diverged.  The threshold
    (c/η of the rule) is crossed by the sharpness, or by the preconditioned sharpness for the
    adaptive rules (``threshold_on``)."""
    s = ds.sharpness.values
    watched = ds[ds.attrs["threshold_on"]].values
    fin = np.isfinite(s)
    steps = ds.step.values[fin]
    out: dict[str, Any] = {"status": ds.attrs["status"]}
    if "diverged_between" in ds.attrs:
        out["diverged_between"] = [int(v) for v in ds.attrs["diverged_between"]]
    if not fin.any():  # pragma: no cover - the start is always measured (finite theta0 is validated)
        out["measured"] = {"records": 0}
        return out
    k = int(np.argmax(s[fin]))
    out["measured"] = {"records": int(fin.sum()), "first_sharpness": float(s[fin][0]),
                       "max_sharpness": float(s[fin][k]), "max_step": int(steps[k]),
                       "last_sharpness": float(s[fin][-1]), "last_loss": float(ds.loss.values[fin][-1]),
                       "last_step": int(steps[-1])}
    with np.errstate(invalid="ignore"):
        above = watched[fin] > ds.attrs["threshold"]
    out["first_step_above_threshold"] = int(steps[np.argmax(above)]) if above.any() else None
    if "preconditioned_sharpness" in ds:
        ps = ds.preconditioned_sharpness.values[fin]
        out["last_preconditioned"] = float(ps[-1]) if np.isfinite(ps[-1]) else None
        out["max_preconditioned"] = float(np.nanmax(ps)) if np.isfinite(ps).any() else None
    ok = out["status"] != "diverged"
    out["plateau"] = sharpness.sharpness_plateau(ds.step.values, watched)  # of the quantity under the threshold
    out["final_loss"] = float(ds.loss.values[fin][-1]) if ok else None
    out["final_sharpness"] = float(s[fin][-1]) if ok else None
    out["max_sharpness"] = float(s[fin][k])
    return out


#: per criterion: default initialisations, steps, fraction and rtol of `gdstab critical-lr`
CRITICAL_DEFAULTS = {"converges": (64, 20_000, 0.0, 1e-3), "trains": (8, 500, 0.5, 1e-2)}


def _criterion(args, problem) -> str:
    """auto: "trains" for problems defined on data (networks: the threshold deep-learning users
    mean, reachable in a few hundred steps), "converges" otherwise."""
    if args.criterion != "auto":
        return args.criterion
    return "trains" if problem.n_samples else "converges"


def cmd_critical(args) -> int:
    caller = "gdstab critical-lr"
    problem = build_problem(args)
    lo, hi = point(args.eta_range, 2, "--eta-range", caller)
    out = out_dir(args)
    criterion = _criterion(args, problem)
    rule = optimizer_from_args(args, caller)
    inits, steps, fraction, rtol = (d if v is None else v for v, d in
                                    zip((args.inits, args.steps, args.fraction, args.rtol), CRITICAL_DEFAULTS[criterion]))
    counted = "did not diverge" if criterion == "trains" else "converged"
    on_eval = None
    if not args.quiet:  # one line per evaluated step size, on a terminal or in a log
        def on_eval(eta, k, n):
            from ..progress import say

            say(f"  eta {eta:.6g}: {k}/{n} {counted}")
    t0 = time.perf_counter()
    estimate = critical.trainable_step_size if criterion == "trains" else critical.critical_step_size
    r = estimate(problem, eta_low=lo, eta_high=hi, inits=inits, steps=steps, seed=args.seed, box=args.box,
                 fraction=fraction, rtol=rtol, criteria=criteria_from_args(args, problem if criterion == "converges" else None), progress=on_eval, optimizer=rule)
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "criterion_used": criterion,
               **r.to_dict(), "wall_time_s": time.perf_counter() - t0}
    summary["files"] = write_outputs(out, "critical", lambda plots: plots.critical_evidence(r), None, summary)
    a, b = r.interval
    lines = [f"problem   {problem.name}: {problem.normalisation}", *_rule_line(rule)]
    if criterion == "trains":
        lines += [f"largest step size that trains  {r.eta:.6g}  in [{a:.6g}, {b:.6g}]",
                  f"  more than {fraction:g} of {inits} runs did not diverge within {steps} steps at {a:.6g}, not at "
                  f"{b:.6g} (criterion 'trains'; --criterion converges asks for convergence to a minimum)",
                  *(f"warning   {w}" for w in r.warnings),
                  "", f"{'eta':>12}  {'not diverged':>12}  {'fraction [Wilson 95%]':<26}  converged  undecided"]
        lines += [f"{e['eta']:>12.6g}  {e['not_diverged']:>5}/{e['n']:<6}  {e['fraction']:.3f} [{e['low']:.3f}, "
                  f"{e['high']:.3f}]{'':<8}  {e['converged']:>9}  {e['undecided']:>9}" for e in r.evidence]
        return emit(summary, args.json, lines)
    lines += [f"critical step size  {r.eta:.6g}  in [{a:.6g}, {b:.6g}]",
              f"  (a) fraction: convergence seen at {r.fraction_interval[0]:.6g} (more than {fraction:g} of "
              f"{inits}), not at {r.fraction_interval[1]:.6g}",
              f"  (b) sharpness: flattest minimum reached has lambda_max = {r.min_sharpness:.8g} "
              f"(at eta = {r.argmin_eta:.6g}), stable up to c/lambda = {r.eta_sharpness:.6g} "
              f"(c = {rule.threshold:g} for {rule.spec()})",
              f"  converged: eta*|grad L| <= {r.settings['criteria']['tol']:.3g} for {r.settings['criteria']['window']} "
              f"steps, L - L* <= {r.settings['criteria']['f_tol']:.3g} ({r.settings['tolerances']})",
              *(f"warning   {w}" for w in r.warnings),
              "", f"{'eta':>12}  {'converged':>10}  {'fraction [Wilson 95%]':<26}  min/max sharpness of minima reached"]
    for e in r.evidence:
        sh = "-" if e["min_sharpness"] is None else f"{e['min_sharpness']:.6g} / {e['max_sharpness']:.6g}"
        lines.append(f"{e['eta']:>12.6g}  {e['converged']:>4}/{e['n']:<5}  "
                     f"{e['fraction']:.3f} [{e['low']:.3f}, {e['high']:.3f}]{'':<8}  {sh}  (c/eta = {e['threshold_over_eta']:.6g})")
    return emit(summary, args.json, lines)


# ------------------------------------------------------------------------------- parsers


def register(sub) -> None:
    """Add the subcommands to the ``gdstab`` parser."""
    for add in (_register_orbit, _register_lyapunov, _register_basin, _register_sharpness, _register_critical):
        add(sub)


def _register_orbit(sub) -> None:
    p = sub.add_parser(
        "orbit",
        help="orbit (bifurcation) diagram: attractor points and detected period per step size",
        description="For every step size of --eta, run GD from each initial point for --transient steps, record "
        "--record iterates and detect their period (p >= 1, 0 aperiodic, -1 diverged). Prints the period by "
        "step-size range and the bifurcation points (where the dominant period changes, located to the grid's "
        "resolution); --out DIR draws the diagram (with --lyapunov, the largest Lyapunov exponent below it).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  gdstab orbit --problem hyperbola --eta 1.0:1.6:600 --init 1.2,0.9 --out orbit/\n"
        "  gdstab orbit --loss '0.25*(x^2*y^2-1)^2' --eta 0.5:2:300 --inits 4 --observe loss --json\n",
    )
    add_problem_args(p)
    add_optimizer_arg(p)
    add_quiet_arg(p)
    p.add_argument("--eta", required=True, metavar="SPEC", help="step sizes: start:stop:num | 0.1,0.5 | 0.5")
    add_init_args(p, inits_default=4)
    p.add_argument("--transient", type=int, default=20_000, help="steps discarded before recording (default 20000)")
    p.add_argument("--record", type=int, default=256, help="iterates recorded per trajectory (default 256)")
    p.add_argument("--observe", default="0", help="what the diagram shows: a coordinate index or name, or 'loss' (default 0)")
    p.add_argument("--max-period", type=int, default=64, help="largest period detected (default 64)")
    p.add_argument("--rtol", type=float, default=1e-6, help="period detection tolerance, relative to 1 + |theta| (default 1e-6)")
    p.add_argument("--lyapunov", action="store_true", help="also the largest Lyapunov exponent (first initial point)")
    p.add_argument("--lyapunov-steps", type=int, default=10_000, help="steps of the Lyapunov average (default 10000)")
    p.add_argument("--out", metavar="DIR", help="write orbit.png/.pdf/.svg, orbit.zarr and orbit.json into DIR")
    p.set_defaults(func=cmd_orbit)


def _register_lyapunov(sub) -> None:
    p = sub.add_parser(
        "lyapunov",
        help="Lyapunov exponents of the GD map along trajectories, with error bars",
        description="Largest Lyapunov exponent (or all of them with --all, by QR re-orthonormalisation) of "
        "G(theta) = theta - eta grad L(theta) from Jacobian-vector products, after a transient that also aligns "
        "the tangent frame; the error is the batch-means standard error over --blocks blocks.",
        epilog="example:\n  gdstab lyapunov --problem hyperbola --eta 1.2,1.5 --init 1.2,0.9 --all\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_args(p)
    add_optimizer_arg(p)
    add_quiet_arg(p)
    p.add_argument("--eta", required=True, metavar="SPEC", help="step sizes")
    add_init_args(p, inits_default=1)
    p.add_argument("--steps", type=int, default=20_000, help="steps averaged (a multiple of --blocks; default 20000)")
    p.add_argument("--transient", type=int, default=1000, help="steps discarded first (default 1000)")
    p.add_argument("--blocks", type=int, default=20, help="blocks of the batch-means error (default 20)")
    p.add_argument("--all", action="store_true", help="the full spectrum (d exponents) instead of the largest")
    p.set_defaults(func=cmd_lyapunov)


def _register_basin(sub) -> None:
    p = sub.add_parser(
        "basin",
        help="basin map on a 2-D slice of parameter space at one step size",
        description="Run GD from every pixel of the plane center + a u + b v (default: the first two coordinates) "
        "and label it by outcome (converged, by minimum class with --classify sign; periodic; bounded; "
        "stationary; diverged) and time to decide. Prints the fractions; --out DIR draws the map.",
        epilog="example:\n  gdstab basin --problem hyperbola --eta 0.9 --resolution 512 --extent=-2,2,-2,2 --classify sign --out basin/\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_args(p)
    add_optimizer_arg(p)
    add_quiet_arg(p)
    p.add_argument("--eta", required=True, help="the step size")
    p.add_argument("--extent", default="-2,2,-2,2", help="a_min,a_max,b_min,b_max (default -2,2,-2,2)")
    p.add_argument("--resolution", default="256", help="pixels per side N, or NA,NB (default 256)")
    p.add_argument("--center", metavar="X,Y,...", help="the plane's origin (default 0)")
    p.add_argument("--u", metavar="X,Y,...", help="first direction (default the first coordinate axis)")
    p.add_argument("--v", metavar="X,Y,...", help="second direction (default the second coordinate axis)")
    p.add_argument("--steps", type=int, default=2000, help="maximum GD steps per pixel (default 2000)")
    p.add_argument("--classify", choices=("none", "sign"), default="none",
                   help="minimum classes of converged pixels: none, or the sign pattern of the final point")
    p.add_argument("--out", metavar="DIR", help="write basin.png/.pdf/.svg, basin.zarr and basin.json into DIR")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_criteria_args(p)
    p.set_defaults(func=cmd_basin)


def _register_sharpness(sub) -> None:
    p = sub.add_parser(
        "sharpness",
        help="track the sharpness lambda_max along a GD run next to 2/eta (edge of stability)",
        description="Run GD from one point and record every --every steps the loss and the sharpness (largest "
        "Hessian eigenvalue: dense for d <= 256, else Lanczos on Hessian-vector products warm-started from the "
        "previous eigenvector) next to the stability threshold 2/eta. With --optimizer the run uses that update rule "
        "and the threshold is c(rule)/eta; for rmsprop and adam the preconditioned sharpness lambda_max(P^-1 H) is "
        "recorded too and the threshold applies to it (38/eta for Adam at beta1 = 0.9).",
        epilog="example:\n  gdstab sharpness --problem zhu --init 4,0.1 --eta 0.1 --steps 3000 --out eos/\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_args(p)
    add_optimizer_arg(p)
    add_quiet_arg(p)
    p.add_argument("--eta", required=True, help="the step size")
    add_init_args(p, inits_default=1)
    p.add_argument("--steps", type=int, default=2000, help="GD steps (default 2000)")
    p.add_argument("--every", type=int, default=10, help="record every k steps (default 10)")
    p.add_argument("--out", metavar="DIR", help="write sharpness.png/.pdf/.svg, sharpness.zarr and sharpness.json into DIR")
    p.set_defaults(func=cmd_sharpness)


def _register_critical(sub) -> None:
    p = sub.add_parser(
        "critical-lr",
        help="estimate, with error bars, the step size beyond which GD stops converging (or training) for a model",
        description="(a) Bisection over eta on the Monte Carlo fraction of --inits random initialisations that "
        "converge (the same points at every eta; Wilson 95%% intervals reported), between a step size where "
        "more than --fraction of them converge and one where none does; (b) the sharpness of the minima "
        "reached: the flattest stays stable up to 2/lambda. Prints the combined estimate, its interval and "
        "the evidence. With --criterion trains (the default for networks): bisection on the fraction of runs "
        "that do not diverge, the largest step size at which training stays bounded.",
        epilog="examples:\n  gdstab critical-lr --problem hyperbola --eta-range 0.1,3 --steps 50000\n"
        "  gdstab critical-lr --problem quadratic --option spectrum=1,3 --eta-range 0.01,10 --json\n"
        "  gdstab critical-lr --problem mlp --option samples=100\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_problem_args(p)
    add_optimizer_arg(p)
    p.add_argument("--eta-range", default="0.001,100", metavar="LO,HI", help="the bracket (default 0.001,100)")
    p.add_argument("--criterion", choices=("auto", "converges", "trains"), default="auto",
                   help="converges: the largest eta at which runs converge to a minimum (with the sharpness of the "
                   "minima reached); trains: the largest eta at which runs do not diverge (what deep-learning users "
                   "usually mean); auto (default): trains for problems on data (networks), converges otherwise")
    p.add_argument("--inits", type=int, help="random initialisations per step size (default 64; trains: 8)")
    p.add_argument("--steps", type=int, help="maximum GD steps per trajectory (default 20000; trains: 500)")
    p.add_argument("--seed", type=int, default=0, help="integer seed of the initialisations (default 0)")
    p.add_argument("--box", metavar="SPEC", help="initialisation box (default: the problem's)")
    p.add_argument("--fraction", type=float, help="fraction of the runs that must still converge (default 0: any "
                   "one) or, with trains, not diverge (default 0.5)")
    p.add_argument("--rtol", type=float, help="relative width at which the bisection stops (default 1e-3; trains: 1e-2)")
    p.add_argument("--out", metavar="DIR", help="write critical.png/.pdf/.svg and critical.json into DIR")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    add_criteria_args(p)
    p.set_defaults(func=cmd_critical)
