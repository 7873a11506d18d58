"""Benchmark: the JAX engine's lanes against chunk-level early exit (issue #21, item 1).

One batch of network trajectories whose decision steps differ widely: the 12 step sizes x 8
initialisations of the default-scale Figure 3 sweep at one depth (784-32x{depth}-2 GELU MLP,
MSE, 100 MNIST digits, T = 2 000 full-batch GD steps, float32), run three ways in one process:

* ``chunk exit``: what the engine did before persistent lanes -- the batch cut into one chunk
  per thread, each chunk running until all of its trajectories are decided (emulated with the
  vectorised lanes and as many lanes as a thread's share: no trajectory waits, none refills);
* ``vectorised lanes``: 8 vmapped lanes per thread, a finished lane takes the next waiting
  trajectory at the next segment boundary (the small problems' mode);
* ``sequential lanes``: 8 lanes per thread run one after the other, each only until its own
  decision (the networks' mode: ``dynamics._sequential_lanes``).

Prints the wall time of each (best of ``--repeat`` after a compiling run), the ratio to chunk
exit, the trajectory-steps executed (sum of decision steps + 1) and whether the statuses and
decision steps agree (bitwise across lane counts only within a mode: XLA's batched matrix
products round differently for different batch sizes).

    python benchmarks/lanes.py --depth 2
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depth", type=int, default=2, choices=(1, 2, 4, 16))
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    from gdstab import dynamics, sweep
    from gdstab.experiments.paper_nets import NET_RUNS, net_sweep_config
    from gdstab.sweep.cells import cell_inputs

    etas = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2, 1.5, 2.0)  # the exhaustive grid before #21
    run = dataclasses.replace(NET_RUNS["small"]["gd"], etas=etas, inits=8, halfwidth=0.0)
    cfg = sweep.load_config(net_sweep_config(run).replace("cell_inits = 8", "cell_inits = 8\ncell_etas = 12"))
    o = list(run.depths).index(args.depth)
    problem, theta0, eta, kw = cell_inputs(cfg, (o, 0, 0))
    B = theta0.shape[0]
    print("machine:", describe())
    print(f"{problem.name}: {B} trajectories ({len(etas)} step sizes x 8 inits), T = {cfg.steps}, {cfg.dtype}, "
          f"{args.threads} threads")
    share = -(-B // args.threads)
    modes = {"chunk exit": (False, share), "vectorised lanes": (False, 8), "sequential lanes": (True, 8)}
    real = dynamics._sequential_lanes
    results = {}
    try:
        for name, (seq, lanes) in modes.items():
            dynamics._sequential_lanes = lambda *a, _s=seq, **k: _s
            times = []
            for _ in range(args.repeat + 1):
                t0 = time.perf_counter()
                r = dynamics.trajectories(problem, theta0, eta, steps=cfg.steps, chunk_size=lanes,
                                          threads=args.threads, record_every=cfg.record_every, **kw)
                times.append(time.perf_counter() - t0)
            results[name] = (min(times[1:]), r)
    finally:
        dynamics._sequential_lanes = real
    base, ref = results["chunk exit"]
    print(f"{'mode':<18} {'lanes':>5} {'seconds':>8} {'vs chunk exit':>13} {'traj-steps':>10}  agrees")
    for name, (sec, r) in results.items():
        agree = np.mean((r.status == ref.status) & (r.step == ref.step))
        print(f"{name:<18} {modes[name][1]:>5} {sec:8.2f} {base / sec:12.2f}x {int((r.step + 1).sum()):>10}  "
              f"{100 * agree:.0f} %")


if __name__ == "__main__":
    main()
