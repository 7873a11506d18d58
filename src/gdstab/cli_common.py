"""What the ``gdstab`` subcommands share: the problem flags (a built-in problem or a loss
expression) and the classification flags (:class:`gdstab.Criteria`), and how they become a
:class:`~gdstab.problems.Problem` and a ``Criteria``."""

from __future__ import annotations

import argparse
from typing import Any

from ._validation import InvalidParameterError

__all__ = ["add_problem_args", "build_problem", "add_criteria_args", "criteria_from_args", "fmt_eta"]


def add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (one of --problem or --loss)")
    x = g.add_mutually_exclusive_group(required=True)
    x.add_argument("--problem", metavar="NAME", help="a built-in problem (list them with 'gdstab problems')")
    x.add_argument(
        "--loss",
        metavar="EXPR",
        help="a loss expression such as '0.5*(1-x*y)**2': numbers, variables, + - * / ** ^, "
        "parentheses, exp log sin cos tanh sigmoid sqrt abs cosh sinh softplus log1p expm1 erf and min(a,b) "
        "max(a,b) (parsed, never evaluated as Python)",
    )
    g.add_argument(
        "--option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        help="an option of --problem, e.g. --option spectrum=1,3 for quadratic (repeatable)",
    )
    g.add_argument("--vars", metavar="NAMES", help="with --loss: the coordinate order, e.g. x,y (default: natural sort)")
    g.add_argument("--min-value", type=float, metavar="V", help="with --loss: the global minimum value L*, if known")


def build_problem(args) -> Any:
    from . import problems
    from .specs import parse_option

    if args.problem is not None:
        if args.vars is not None or args.min_value is not None:
            raise InvalidParameterError("The '--vars' and '--min-value' flags go with --loss, not with --problem.")
        types = problems.OPTION_TYPES.get(args.problem)
        if types is None:
            problems.get(args.problem)  # raises the standard message
        opts = dict(parse_option(o, types, problem=args.problem) for o in args.option)
        return problems.get(args.problem, **opts)
    if args.option:
        raise InvalidParameterError("The '--option' flag goes with --problem, not with --loss.")
    variables = None if args.vars is None else [v.strip() for v in args.vars.split(",")]
    return problems.Problem.from_expression(args.loss, variables, min_value=args.min_value)


def add_criteria_args(p: argparse.ArgumentParser) -> None:
    from .dynamics import Criteria

    d = Criteria()
    g = p.add_argument_group("classification (gdstab.Criteria)")
    g.add_argument("--tol", type=float, default=d.tol, help=f"displacement tolerance eta*|grad L| (default {d.tol:g})")
    g.add_argument("--window", type=int, default=d.window, help=f"consecutive settled steps (default {d.window})")
    g.add_argument("--f-tol", type=float, default=d.f_tol, help=f"L - L* below which a settled point is a minimum (default {d.f_tol:g})")
    g.add_argument("--max-norm", type=float, default=d.max_norm, help=f"|theta| beyond which a trajectory diverged (default {d.max_norm:g})")
    g.add_argument("--max-period", type=int, default=d.max_period, help=f"largest period detected; 1 disables (default {d.max_period})")
    g.add_argument("--check-every", type=int, default=d.check_every, help=f"segment length of the period detector (default {d.check_every})")
    g.add_argument("--period-checks", type=int, default=d.period_checks, help=f"segments that must agree on a period (default {d.period_checks})")


def criteria_from_args(args):
    from .dynamics import Criteria

    return Criteria(
        tol=args.tol,
        window=args.window,
        f_tol=args.f_tol,
        max_norm=args.max_norm,
        max_period=args.max_period,
        check_every=args.check_every,
        period_checks=args.period_checks,
    )


def fmt_eta(eta: float) -> str:
    """A step size as given: the shortest text that reads back as the same float64 (so that
    1 + 1e-8 and 1 print differently), positional where that is short."""
    import numpy as np

    x = float(eta)
    if x != 0 and (abs(x) < 1e-4 or abs(x) >= 1e7):
        return np.format_float_scientific(x, unique=True, trim="-")
    return np.format_float_positional(x, unique=True, trim="-")

