"""Benchmark: the paper-scale network sweeps of Figures 3-4 (issue #21, item 5), per depth.

For each depth of ``gdstab reproduce fig3/fig4 --scale paper`` (1 000 MNIST digits, 100
initialisations per step size, T = 10⁴ GD steps / 4 500 SGD updates, float32) one cell (one
step size, its 100 initialisations) runs 8 and 24 steps after a compiling run
(:mod:`gdstab.sweep.projection`); the step cost times T times every cell of that depth is the
projected time if every trajectory runs to T (those that converge or diverge stop earlier;
compilation and storage are left out).  Prints the device, the per-depth step cost, the per-depth projection and the
total, and writes them as JSON with ``--json FILE``.  On a GPU (``pip install -e '.[cuda]'``)
the same command measures the device.

    python benchmarks/paper_scale.py                 # both figures
    python benchmarks/paper_scale.py --figure gd     # Figure 3 only
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
    args = ap.parse_args()

    import jax

    from gdstab import sweep
    from gdstab.experiments.paper_nets import NET_RUNS, net_sweep_config
    from gdstab.progress import duration
    from gdstab.sweep.projection import project

    print("machine:", describe(), "device:", jax.devices()[0])
    out = {"machine": describe(), "device": str(jax.devices()[0]), "figures": {}}
    total = 0.0
    for which in (("gd", "sgd") if args.figure == "both" else (args.figure,)):
        run = NET_RUNS["paper"][which]
        p = project(sweep.load_config(net_sweep_config(run)))
        name = "Figure 3 (GD)" if which == "gd" else "Figure 4 (SGD)"
        print(f"{name}: T = {run.steps}, {len(run.etas)} step sizes x {run.inits} inits per depth, {run.dtype}")
        for r in p.per_option:
            print(f"  depth {r['option'].get('depth'):>2}: {r['seconds_per_step'] * 1e3:8.1f} ms per step of a "
                  f"{run.inits}-member cell, projected {duration(r['seconds'])}")
        print(f"  total: {duration(p.seconds)} (calibration {p.calibration_seconds:.0f} s)")
        total += p.seconds
        out["figures"][which] = {"projected_seconds": p.seconds, "per_depth": p.per_option,
                                 "calibration_seconds": p.calibration_seconds}
    print(f"projected total (every trajectory to T): {duration(total)}")
    out["projected_total_seconds"] = total
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
