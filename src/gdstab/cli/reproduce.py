"""``gdstab reproduce`` and ``gdstab report``: the main job (the registered targets into a results
folder) and the HTML report rebuilt from a folder."""

from __future__ import annotations

import time

from ..experiments import registry
from ..report import write_report
from ..reproduce import reproduce
from ._common import add_folder_args


def cmd_reproduce(args) -> int:
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
    path = write_report(args.out)
    if not args.quiet:
        print(f"wrote {path}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="reproduce the paper's figures into a results folder (with an HTML report)",
        description="Run the named experiments (default: all) and write DIR/figures (PNG, PDF, SVG), DIR/data "
        "(Zarr stores and CSV tables behind every figure), DIR/summary.json (key numbers with their definitions "
        "and the paper's values) and DIR/report.html. Targets: fig1, fig2 (the toy 1/2(1-xy)^2), fig3-fig6 "
        "(ensembles of MLPs on MNIST digits 0/1), linear (deep-linear-network table and dynamics check), "
        "nonsingular (measure of the singular set of the GD map), and beyond the paper: orbit (orbit diagram and "
        "Lyapunov exponents of 1/2(1-xy)^2), eos_toy (edge of stability on 1/4(x^2y^2-1)^2), basin (basin map and "
        "critical step size), momentum (trapping fraction of heavy ball and Nesterov against eta, with eta* = "
        "c(rule) / inf_M lambda_max), adaptive_eos (Adam's preconditioned sharpness at 38/eta on an MNIST MLP), "
        "and the field's headline results: eos (edge of stability of GD on MNIST digits, Cohen et al. 2021), "
        "catapult (the uv model's thresholds 2/lambda0 and 4/lambda0 and a catapult on an MLP, Lewkowycz et al. "
        "2020), fractal (the fractal boundary of trainability over per-layer learning rates, Sohl-Dickstein 2024). "
        "Rerunning resumes: finished targets are "
        "not recomputed. The small scale (default) takes about 5 minutes on a 2-core CPU; at --scale paper each "
        "network sweep first prints its projected time (measured on this machine with every trajectory run to T, "
        "the most it can take: the paper's Figure 3 sweep about 32 hours on two cores; the trajectory exits and the "
        "adaptive step-size grid ran about a fifth of that at the small scale, docs/performance.md).",
    )
    p.add_argument("targets", nargs="*", metavar="TARGET", help="all (default), " + ", ".join(registry.names()))
    p.add_argument("--out", required=True, help="results folder")
    p.add_argument("--scale", choices=("small", "paper"), default="small", help="small (default, a laptop CPU) or paper sizes")
    add_folder_args(p, "the results")
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
