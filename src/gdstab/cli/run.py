"""``gdstab trajectories`` and ``gdstab problems``: run many trajectories and print the fractions
of each outcome; list the built-in problems."""

from __future__ import annotations

import argparse
import time

import numpy as np

from .. import problems
from .._validation import InvalidParameterError, positive_int
from ..dynamics import trajectories
from ..orbits import BOUNDED_REGIMES, diagnose_bounded
from ..outcomes import Status, relative_note
from ..random import init_points
from ..specs import parse_eta
from ._common import (add_criteria_args, add_optimizer_arg, add_quiet_arg, add_problem_args, build_problem, criteria_from_args, emit,
                      fmt_eta, fmt_frac, optimizer_from_args, progress)

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
  bounded     none of these after --steps steps (e.g. chaos, or slow convergence; --diagnose
              continues them and says which)
fractions are over the initial points, with Wilson 95% intervals in brackets.
with --optimizer (momentum, nesterov, rmsprop, adam) the same tests apply to the full state
(theta and the rule's buffers): converged needs the buffers at rest too.
"""

#: the most trajectories one ``gdstab trajectories`` call runs (initial points x step sizes)
MAX_TRAJECTORIES = 200_000_000
#: with --diagnose: bounded trajectories diagnosed per step size, and the steps they continue
DIAGNOSED, DIAGNOSE_STEPS = 64, 2000


def cmd_trajectories(args) -> int:
    caller = "gdstab trajectories"
    problem = build_problem(args)
    etas = parse_eta(args.eta, name="--eta", caller=caller)
    n = positive_int(args.inits, "--inits", caller)
    steps = positive_int(args.steps, "--steps", caller)
    seed = positive_int(args.seed, "--seed", caller, minimum=0)
    box = problem.box if args.box is None else problems.parse_box(args.box, problem.dim, caller=caller, name="--box")
    criteria = criteria_from_args(args, problem)
    if n * etas.size > MAX_TRAJECTORIES:
        raise InvalidParameterError(
            f"The '--inits' parameter of {caller} times the number of step sizes must be <= 2e8. "
            f"Got {n} x {etas.size} instead."
        )
    points = init_points(problem, seed, np.arange(n), box)  # the sweep layer's keys
    t0 = time.perf_counter()
    rule = optimizer_from_args(args, caller)
    if args.diagnose and not rule.is_gd:
        raise InvalidParameterError(f"The '--diagnose' flag of {caller} continues plain GD from the final points, so it "
                                    f"goes with --optimizer gd only (continuing {rule.spec()} would need its buffers). "
                                    f"Got --optimizer {args.optimizer} instead.")
    with progress(args, caller, n * etas.size, "trajectories") as bar:
        res = trajectories(problem, np.tile(points, (etas.size, 1)), np.repeat(etas, n), steps=steps,
                           criteria=criteria, backend=args.backend, optimizer=rule, on_chunk=bar.set)
    wall = time.perf_counter() - t0
    rows = res.summary()
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "options": dict(problem.options),
               "box": None if box is None else [list(b) for b in box], "inits": n, "steps": steps, "seed": seed,
               "optimizer": rule.to_dict(), "criteria": criteria.to_dict(), "backend": res.backend, "wall_time_s": wall, "results": rows}
    where = (f"uniform in {', '.join(f'[{lo:g}, {hi:g}]' for lo, hi in box)}" if box is not None
             else "from the problem's own initialiser")
    labels = [s.label for s in Status]
    lines = [f"problem   {problem.name}: {problem.normalisation}",
             f"inits     {n} {where}, seed {seed}",
             *([] if rule.is_gd else [f"optimizer {rule.spec()} (classified on the full state: theta and buffers)"]),
             f"steps     T = {steps}; tol {criteria.tol:g}, window {criteria.window}, max period {criteria.max_period}",
             *([f"          {note}"] if (note := relative_note(problem, criteria)) else []),
             f"backend   {res.backend}, {wall:.2f} s for {len(res)} trajectories", "",
             f"{'eta':>10}  " + "  ".join(f"{lab:<21}" for lab in labels)]
    lines += [f"{fmt_eta(row['eta']):>10}  " + "  ".join(f"{fmt_frac(row[lab]):<21}" for lab in labels) for row in rows]
    if args.diagnose:
        lines += ["", f"bounded trajectories (up to {DIAGNOSED} per step size) continued {DIAGNOSE_STEPS} steps "
                  f"(gdstab.orbits.diagnose_bounded):"]
        status = res.status.reshape(etas.size, n)
        theta = res.theta.reshape(etas.size, n, problem.dim)
        for row, st, th, eta in zip(rows, status, theta, etas):
            pick = np.flatnonzero(st == Status.BOUNDED)[:DIAGNOSED]
            regimes = [d["regime"] for d in diagnose_bounded(problem, th[pick], float(eta), steps=DIAGNOSE_STEPS)] \
                if pick.size else []
            row["bounded_regimes"] = {"diagnosed": int(pick.size), **{r: regimes.count(r) for r in BOUNDED_REGIMES}}
            lines.append(f"{fmt_eta(eta):>10}  " + (", ".join(f"{r} {regimes.count(r)}" for r in BOUNDED_REGIMES
                                                            if regimes.count(r)) or "none bounded"))
    return emit(summary, args.json, lines)


def cmd_problems(args) -> int:
    from ..problems.catalog import CATALOG  # static: listing builds nothing (no JAX, no data)

    info = {name: {**CATALOG[name], "options": opts} for name, opts in problems.available().items()}
    lines = []
    for name, i in info.items():
        opts = ", ".join(f"{k} ({v})" for k, v in i["options"].items()) or "none"
        lines += [f"{name:<15} d={i['dim']}  {i['normalisation']}", f"{'':<15} minima: {i['minima']}; options: {opts}"]
    return emit(info, args.json, lines)


def register(sub) -> None:
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
    add_optimizer_arg(p)
    add_quiet_arg(p)
    g = p.add_argument_group("run")
    g.add_argument("--eta", required=True, metavar="SPEC", help="step sizes: 0.5 | 0.1,0.5,0.9 | start:stop:num (inclusive)")
    g.add_argument("--box", metavar="SPEC", help="initialisation box: xmin,xmax,ymin,ymax,... or lo,hi for every coordinate (default: the problem's)")
    g.add_argument("--inits", type=int, default=1000, help="number of initial points (default 1000)")
    g.add_argument("--steps", type=int, default=1000, help="maximum number of GD steps T (default 1000)")
    g.add_argument("--seed", type=int, default=0, help="integer seed of the initial points (default 0; printed with the results)")
    g.add_argument("--backend", choices=("auto", "jax", "native"), default="auto", help="engine backend (default auto)")
    g.add_argument("--diagnose", action="store_true",
                   help="say what the bounded (undecided) trajectories were doing: up to 64 per step size continue "
                   "2000 steps and are labelled slow, edge_of_stability, chaotic, oscillating or diverging")
    g.add_argument("--json", action="store_true", help="print the results as JSON")
    add_criteria_args(p)
    p.set_defaults(func=cmd_trajectories)


def register_problems(sub) -> None:
    p = sub.add_parser("problems", help="list the built-in problems, their normalisation and options",
                       description="List the built-in problems (--problem NAME) with their normalisation, "
                       "dimension d and known minima at the default options, and the options each takes "
                       "(--option KEY=VALUE).")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(func=cmd_problems, needs_jax=False)
