"""``gdstab stability`` and ``gdstab linear``: the theory of a problem (critical step sizes over
the minima, the weakly stable set, stability of a point) and of deep linear networks."""

from __future__ import annotations

import numpy as np

from .. import random as gdstab_random
from .. import stability
from .._validation import InvalidParameterError, positive_int
from ..experiments.linear_dynamics import compute_linear_trapping, trapping_rows
from ..experiments.paper_linear import analyse_linear_network
from ..problems.data import load_npz_arrays
from ..problems.linear import gaussian_data
from ..optimizers import parse_rule
from ..specs import parse_eta
from ._common import add_problem_args, build_problem, emit, fmt_eta, point


def cmd_stability(args) -> int:
    caller = "gdstab stability"
    problem = build_problem(args)
    etas = parse_eta(args.eta, name="--eta", caller=caller)
    seed = positive_int(args.seed, "--seed", caller, minimum=0)
    pt = None if args.point is None else point(args.point, problem.dim, "--point", caller)
    rule = None if args.optimizer is None else parse_rule(args.optimizer, name="--optimizer", caller=caller)
    out = stability.stability_summary(problem, etas, key=gdstab_random.key(seed), point=pt, rule=rule)
    lines = [f"problem   {problem.name}: {problem.normalisation}"]
    c = out["critical"]
    if c is None:
        lines.append(f"critical  {out['critical_note']}")
    elif c.get("estimate"):
        lines += [f"critical  ESTIMATE (no description of M): {c['global_minima']} of {c['starts']} descents ended "
                  f"at a global minimum (lambda_max there from {c['lambda_max_range'][0]:.6g} to "
                  f"{c['lambda_max_range'][1]:.6g})",
                  f"          eta* >= 2 / {c['inf_lambda_max']:.10g} = {c['eta_star']:.10g} (flattest at "
                  f"{np.round(c['argmin_lambda_max'], 8).tolist()})",
                  f"          eta_E >= 2 / {c['inf_lambda_min_pos']:.10g} = {c['eta_E']:.10g}",
                  f"          note: {c['note']}"]
    else:
        lines += [f"critical  eta* = 2 / inf_M lambda_max = {c['eta_star']:.10g} (inf {c['inf_lambda_max']:.10g} at "
                  f"{np.round(c['argmin_lambda_max'], 8).tolist()})",
                  f"          eta_E = 2 / inf_M lambda_min+ = {c['eta_E']:.10g} (inf {c['inf_lambda_min_pos']:.10g} at "
                  f"{np.round(c['argmin_lambda_min_pos'], 8).tolist()})"]
        if c.get("note"):
            lines.append(f"          note: {c['note']}")
    if rule is not None:
        r = out["rule"]
        lines.append(f"rule      {rule.spec()}: a minimum is linearly stable iff 0 < eta lambda < c = {r['threshold_c']:.10g} "
                     f"for every non-zero eigenvalue lambda of {'P^-1 H' if rule.adaptive else 'H'}")
        if "eta_star" in r:
            lines.append(f"          eta*({rule.name}) = c / inf_M lambda_max = {r['eta_star']:.10g}")
        if "note" in r:
            lines.append(f"          note: {r['note']}")
    for row in out["per_eta"]:
        line = f"eta {fmt_eta(row['eta']):<8} 2/eta = {row['threshold_2_over_eta']:<10.6g}"
        if "mws_length" in row:
            line += (f"  M_WS length {row['mws_length']['total']:.10g} (per branch "
                     f"{', '.join(f'{v:.10g}' for v in row['mws_length']['per_branch'])})")
        if "mws_fraction" in row:
            mf = row["mws_fraction"]
            line += f"  M_WS fraction {mf['fraction']:.3f} [{mf['low']:.3f},{mf['high']:.3f}]"
        lines.append(line)
        if "point" in row:
            p = row["point"]
            lines.append(f"    at the point: eigenvalues {np.round(p['eigenvalues'], 10).tolist()}, spectral radius of "
                         f"I - eta H {p['spectral_radius']:.6g}; linearly stable: {p['linearly_stable']}, weakly "
                         f"stable: {p['weakly_stable']}")
            if "rule" in p:
                q = p["rule"]
                lines.append(f"    under {rule.spec()}: spectral radius of the companion matrices {q['spectral_radius']:.6g}; "
                             f"linearly stable: {q['linearly_stable']} (needs lambda < c / eta = {q['lambda_threshold']:.6g})")
    return emit(out, args.json, lines)


def _linear_lines(out: dict, source: str) -> list[str]:
    sp = out["spectrum_at_sampled_minimum"]
    lmax, spread, per_start = out["inf_lambda_max"], out["restart_spread"], out["restarts"]
    digits = 12 if out["restarts_agree"] else 4
    lines = [f"network   dims {tuple(out['dims'])}, {source}; {out['normalisation']}",
             f"minimum   r = {out['rank']}, {'filling' if out['filling'] else 'non-filling'}, singular values "
             f"{np.round(out['singular_values'], 6).tolist()} ({'distinct' if out['distinct_singular_values'] else 'NOT distinct'}), "
             f"L* = {out['min_value']:.10g}",
             f"M         dim M = d_theta - r(d_0 + d_h - r) = {out['d_theta']} - {out['d_theta'] - out['dim_M']} = {out['dim_M']}",
             f"spectrum  at a sampled minimum: {sp['zero']} zero (expected {out['dim_M']}), {sp['positive']} positive "
             f"(expected {sp['expected_positive']}), {sp['negative']} negative; rank tolerance {sp['rank_tolerance']:.3g}",
             f"critical  inf_M lambda_max = {lmax:.{digits}g} -> eta* = {2 / lmax:.{digits}g} (minimiser balanced: "
             f"{out['minimiser_balanced']}; {out['starts']} starts, {out['evaluations']} Hessians"
             + ("" if spread is None else f", restarts spread {spread:.1e}") + ")"]
    if not out["restarts_agree"]:
        lines.append(f"warning   the {len(per_start)} starts end {100 * spread:.2g} % apart ({min(per_start):.6g} ... "
                     f"{max(per_start):.6g}): the minimisation did not reach the infimum from every start, so inf_M "
                     f"lambda_max is at most {min(per_start):.6g} and eta* at least {2 / min(per_start):.6g} (not "
                     f"exact); more --restarts may lower it")
    for kind, rows in out["walks"].items():
        if isinstance(rows, dict):
            lines.append(f"walk      {kind}: {rows['skipped']}")
            continue
        cells = "; ".join(f"t={r['t']:g}: |theta|={r['norm_theta']:.3g} max={r['lambda_max']:.4g} "
                          f"min+={r['lambda_min_pos']:.4g}" for r in rows)
        lines.append(f"walk      {kind}: {cells}")
    if "trapping" in out:
        tr = out["trapping"]
        lines.append(f"dynamics  {tr['inits']} initialisations uniform in [-1, 1]^{out['d_theta']}, T = {tr['steps']}; "
                     f"eta* = {tr['eta_star']:.6g}")
        for r in tr["per_eta"]:
            mark = "  <= eta*" if r["eta"] <= tr["eta_star"] else "  >  eta*"
            lines.append(f"          eta {fmt_eta(r['eta']):<10} converged {r['converged']:.3f} [{r['low']:.3f},"
                         f"{r['high']:.3f}]  diverged {r['diverged']:.3f}{mark}")
    return lines


def cmd_linear(args) -> int:
    caller = "gdstab linear"
    try:
        dims = [int(v) for v in args.dims.split(",")]
    except ValueError:
        raise InvalidParameterError(f"The '--dims' parameter of {caller} must be comma-separated ints such as 2,3,2. "
                                    f"Got {args.dims!r} instead.") from None
    seed = positive_int(args.seed, "--seed", caller, minimum=0)
    if args.data is not None:
        X, Y = load_npz_arrays(args.data, ("X", "Y"), name="--data", caller=caller,
                               expected="a .npz file with numeric arrays 'X' (d_0 x n) and 'Y' (d_h x n)")
        source = f"data from {args.data}"
    else:
        n = positive_int(args.samples, "--samples", caller)
        X, Y = gaussian_data(dims, n, seed)
        source = f"Gaussian X, Y with {n} samples, seed {seed}"
    restarts = positive_int(args.restarts, "--restarts", caller, minimum=0)
    out = analyse_linear_network(dims, X, Y, normalisation=args.normalisation, seed=seed, restarts=restarts)
    out = {"dims": out.pop("dims"), "data": source, **out}
    if args.trapping is not None:
        etas = parse_eta(args.trapping, name="--trapping", caller=caller)
        tr = compute_linear_trapping(dims, X, Y, etas, inits=positive_int(args.inits, "--inits", caller),
                                     steps=positive_int(args.steps, "--steps", caller), seed=seed,
                                     normalisation=args.normalisation)
        out["trapping"] = trapping_rows(tr)
        if args.plot:
            from .. import plots

            plots.save(plots.linear_trapping(tr), args.plot)
    return emit(out, args.json, _linear_lines(out, source))


def register(sub) -> None:
    import argparse

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
    p.add_argument("--optimizer", metavar="RULE", help="also the theory for an update rule: gd | momentum:BETA | "
                   "nesterov:BETA | rmsprop:RHO[,EPS] | adam:B1,B2[,EPS] (its threshold c, eta* = c / inf_M lambda_max, "
                   "and the spectral radius of its companion matrices at --point)")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_stability)

    p = sub.add_parser(
        "linear",
        help="deep linear networks: the minimum, the manifold of minima, its spectrum, eta* and the lambda_min+ walk",
        description="For the deep linear network with widths --dims (d_0,...,d_h) on data X, Y: the rank r, "
        "filling or not, the singular values, dim M, the Hessian spectrum counts at a sampled minimum, "
        "inf over M of lambda_max (continuation on a smoothed maximum of the eigenvalues, projected onto M, "
        "from a balanced and several gauge-transformed starts) with eta* = 2 / inf, and lambda_max, lambda_min+ "
        "along paths to infinity on M.",
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
