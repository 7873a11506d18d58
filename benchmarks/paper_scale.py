"""Benchmark: the paper-scale network sweeps of Figures 3-4 (issue #21, item 5), per depth.

For each depth of ``gdstab reproduce fig3/fig4 --scale paper`` (1 000 MNIST digits, 100
initialisations per step size, T = 10⁴ GD steps / 4 500 SGD updates, float32) one cell (one
step size, its 100 initialisations) runs 8 and 24 steps, twice each, after a compiling run
(:mod:`gdstab.sweep.projection`: the fastest of each); the step cost times T times every cell of that depth is the
projected time if every trajectory runs to T (those that converge or diverge stop earlier;
compilation and storage are left out).  Prints the device, the per-depth step cost, the per-depth projection and the
total, and writes them as JSON with ``--json FILE``.  With ``--from-default DIR`` (the output of
``gdstab reproduce fig3 fig4`` at the default scale) each depth's projection is also scaled by
the fraction of the candidate trajectory-steps that the adaptive grid and the per-trajectory
early exit executed at the default scale: an extrapolation from another sample size, grid and
T, stated as such.  ``--run-default DIR`` first runs (or resumes) those default-scale sweeps
with the paper's depths (1, 2, 4, 8, 16: ``gdstab reproduce`` leaves depth 8 out) into DIR, so
that every depth's fraction is measured; without depth 8 in the store, depth 8 takes the
larger fraction of depths 4 and 16.  On a GPU (``pip install -e '.[cuda]'``)
the same command measures the device.

    python benchmarks/paper_scale.py                 # both figures
    python benchmarks/paper_scale.py --figure gd     # Figure 3 only
    python benchmarks/paper_scale.py --run-default /tmp/fig34-default   # with measured fractions
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figure", choices=("gd", "sgd", "both"), default="both")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--from-default", metavar="DIR",
                    help="a `gdstab reproduce fig3 fig4` output at the default scale: scale each depth's "
                         "projection by the fraction of its candidate trajectory-steps that the adaptive grid and "
                         "the early exits executed there")
    ap.add_argument("--run-default", metavar="DIR",
                    help="run (or resume) the default-scale Figure 3/4 sweeps with the paper's depths into DIR "
                         "first, then use their executed fractions as --from-default does")
    ap.add_argument("--no-wide-vectors", action="store_true",
                    help="leave XLA:CPU at its 256-bit default (the gdstab command asks for 512 on AVX-512 CPUs)")
    args = ap.parse_args()
    from gdstab.dynamics import use_wide_cpu_vectors

    wide = False if args.no_wide_vectors else use_wide_cpu_vectors()  # as `gdstab reproduce` runs
    if args.run_default:
        _run_default(Path(args.run_default), ("gd", "sgd") if args.figure == "both" else (args.figure,))
        args.from_default = args.run_default

    import jax

    from gdstab import sweep
    from gdstab.experiments.paper_nets import NET_RUNS, net_sweep_config
    from gdstab.progress import duration
    from gdstab.sweep.projection import pair_spread, project

    print("machine:", describe(), "device:", jax.devices()[0], f"XLA:CPU 512-bit vectors: {'yes' if wide else 'no'}")
    out = {"machine": describe(), "device": str(jax.devices()[0]), "wide_vectors": wide, "figures": {}}
    total = total_adaptive = 0.0
    for which in (("gd", "sgd") if args.figure == "both" else (args.figure,)):
        run = NET_RUNS["paper"][which]
        p = project(sweep.load_config(net_sweep_config(run)))
        name = "Figure 3 (GD)" if which == "gd" else "Figure 4 (SGD)"
        print(f"{name}: T = {run.steps}, {len(run.etas)} step sizes x {run.inits} inits per depth, {run.dtype}")
        ratios = _executed_fractions(Path(args.from_default), which) if args.from_default else {}
        adaptive = 0.0
        for r in p.per_option:
            d = r["option"].get("depth")
            line = (f"  depth {d:>2}: {r['seconds_per_trajectory_step'] * 1e3:7.3f} ms per trajectory-step "
                    f"(calibration pairs {pair_spread(r):.2f}x apart), "
                    f"every trajectory to T: {duration(r['seconds'])}")
            if ratios:
                f = ratios.get(d, max(ratios.get(4, 0.0), ratios.get(16, 0.0)))  # depth 8: the larger neighbour
                r["executed_fraction"] = f
                adaptive += f * r["seconds"]
                line += f"; x {f:.3f} executed at the default scale = {duration(f * r['seconds'])}"
            print(line)
        print(f"  total: {duration(p.seconds)} every trajectory to T (calibration {p.calibration_seconds:.0f} s)"
              + (f"; with the default scale's executed fractions {duration(adaptive)}" if ratios else ""))
        total += p.seconds
        total_adaptive += adaptive
        out["figures"][which] = {"projected_seconds": p.seconds, "per_depth": p.per_option,
                                 "calibration_seconds": p.calibration_seconds,
                                 **({"projected_adaptive_seconds": adaptive} if ratios else {})}
    print(f"projected total (every trajectory to T): {duration(total)}")
    out["projected_total_seconds"] = total
    if args.from_default:
        print(f"projected total with the default scale's executed fractions: {duration(total_adaptive)}")
        out["projected_adaptive_total_seconds"] = total_adaptive
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


def _run_default(out: Path, figures) -> None:
    """The default-scale sweeps of Figures 3-4 (adaptive grids, 100/200 digits, T = 2 000/1 000)
    with the paper's depths, into ``out/data/nets_<which>`` (resumable)."""
    import dataclasses

    from gdstab import sweep
    from gdstab.experiments.paper_nets import NET_RUNS, net_sweep_config

    for which in figures:
        run = dataclasses.replace(NET_RUNS["small"][which], depths=NET_RUNS["paper"][which].depths)
        print(f"default-scale {which} sweep with depths {run.depths} -> {out / 'data' / f'nets_{which}'}", flush=True)
        sweep.run(sweep.load_config(net_sweep_config(run)), out / "data" / f"nets_{which}", quiet=False)


def _executed_fractions(out: Path, which: str) -> dict:
    """Per depth: trajectory-steps executed (decision step + 1 of every computed trajectory) over
    those of every candidate step size and initialisation run to T, in a default-scale store."""
    from gdstab import sweep

    ds = sweep.open_results(out / "data" / f"nets_{which}")
    T = int(json.loads(ds.attrs["gdstab_config"])["run"]["steps"])
    status, step = ds.status.values, ds.decision_step.values
    return {int(d): float((step[o][status[o] != 0] + 1).sum() / (status[o].size * (T + 1)))
            for o, d in enumerate(ds.depth.values)}


if __name__ == "__main__":
    main()
