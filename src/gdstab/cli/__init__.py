"""The ``gdstab`` command: a thin layer over the Python API.

One module per command group, over a shared :mod:`gdstab.cli._common` (problem, criteria,
initial-point and folder flags; output as text or JSON, written once):

========================  =========================================================
``run``                   ``trajectories``, ``problems``
``sweep``                 ``sweep``, ``show``
``theory``                ``stability``, ``linear``
``reproduce``             ``reproduce``, ``report``
``beyond``                ``orbit``, ``lyapunov``, ``basin``, ``sharpness``, ``critical-lr``
========================  =========================================================

A command parses its flags, calls one library function and prints.  Errors in the input are
reported as one line on stderr with exit status 2; nothing is computed before the whole input
has been validated.
"""

from __future__ import annotations

import sys
from typing import Sequence

from .. import __version__, interrupts
from .._validation import InvalidParameterError
from ..sweep.folders import describe_os_error
from . import beyond, instruments, reproduce, run, sweep, theory
from ._common import Parser

__all__ = ["main", "build_parser"]


def build_parser() -> Parser:
    """The ``gdstab`` parser with every subcommand (each group registers its own)."""
    parser = Parser(prog="gdstab", description="Gradient descent with a fixed step size as a dynamical system: "
                    "G(theta) = theta - eta * grad L(theta).")
    parser.add_argument("--version", action="version", version=f"gdstab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    run.register(sub)          # trajectories
    sweep.register(sub)        # sweep, show
    theory.register(sub)       # stability, linear
    reproduce.register(sub)    # reproduce, report
    beyond.register(sub)       # orbit, lyapunov, basin, sharpness, critical-lr
    instruments.register(sub)  # spectrum, hypermap, boundary, flow
    run.register_problems(sub)  # problems
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
    args = build_parser().parse_args(_join_negative_values(sys.argv[1:] if argv is None else argv))
    if getattr(args, "needs_jax", True):
        from ..dynamics import use_wide_cpu_vectors

        use_wide_cpu_vectors()  # AVX-512 for XLA's elementwise code: read when JAX's backend starts
        import jax  # after parsing: --help, --version and listings need no JAX

        jax.config.update("jax_enable_x64", True)  # the command line is an analysis entry point
    import warnings

    shown = warnings.showwarning

    def one_line(message, category, filename, lineno, file=None, line=None):  # gdstab's own: one line each
        if str(getattr(category, "__module__", "")).startswith("gdstab") or "gdstab" in str(filename):
            from ..progress import say

            say(f"gdstab {args.command}: warning: {message}")
        else:
            shown(message, category, filename, lineno, file, line)

    try:
        warnings.showwarning = one_line
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
        sys.stderr.write(f"gdstab {args.command}: error: {describe_os_error(exc)}\n")
        return 1
    finally:
        warnings.showwarning = shown
