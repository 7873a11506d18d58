"""Benchmark: the compiled toy kernel against an earlier version of itself, in one process (#21).

Builds ``src/gdstab/_native/toykernels.c`` as it was at a git revision (default: 3dc0425, the
kernel when issue #21 was filed) with the flags of ``setup.py``, loads it beside the shipped
library, and runs both on the same workload in interleaved rounds (the shared VM's load moves
single runs by 20-40 %, so only same-round ratios are compared).  Workload: the toy benchmark's
(``benchmarks/toy_engine.py``) hyperbola ½(1 − xy)², N points in [−2, 2]² × E step sizes in
[0.01, 1], T = 1000, gdstab's default Criteria, all cores.

Prints per round the executed point-steps/s of each (Σ decision step + 1 over trajectories,
divided by wall time) and their ratio, then the best and median, and checks that every output
(iterate, status, decision step, period, loss, gradient norm) is bitwise identical.

    python benchmarks/toy_kernel_ab.py                    # N = 2·10^5 points x 32 step sizes
    python benchmarks/toy_kernel_ab.py --against HEAD~3 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SRC = "src/gdstab/_native/toykernels.c"
FLAGS = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=gnu11", "-shared", "-fPIC"]


def build(source: str, out: Path) -> Path:
    """Compile kernel source text to a shared library with setup.py's flags."""
    c = out.with_suffix(".c")
    c.write_text(source)
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise SystemExit("toy_kernel_ab: needs a C compiler (gcc or cc) on PATH")
    subprocess.run([cc, *FLAGS, f"-I{sysconfig.get_paths()['include']}", str(c), "-o", str(out)], check=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", default="3dc0425", help="git revision of the earlier kernel (default 3dc0425)")
    ap.add_argument("--points", type=int, default=200_000, help="N initial points (default 2e5)")
    ap.add_argument("--etas", type=int, default=32, help="step sizes in [0.01, 1] (default 32)")
    ap.add_argument("--steps", type=int, default=1000, help="T (default 1000)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    ap.add_argument("--threads", type=int, default=None, help="worker threads (default: all cores)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    for name in ("points", "etas", "steps", "rounds"):
        if getattr(args, name) < 1:
            ap.error(f"--{name}: expected an integer >= 1, got {getattr(args, name)}")

    import jax

    jax.config.update("jax_enable_x64", True)
    from gdstab import Criteria, _native, problems

    if not _native.available():
        raise SystemExit(f"toy_kernel_ab: the shipped kernels are not available: {_native.unavailable_reason()}")
    shown = subprocess.run(["git", "show", f"{args.against}:{SRC}"], cwd=ROOT, capture_output=True, text=True)
    if shown.returncode != 0:
        ap.error(f"--against: expected a git revision that has {SRC}, got {args.against!r} "
                 f"({shown.stderr.strip().splitlines()[-1] if shown.stderr.strip() else 'git failed'})")
    old_src = shown.stdout
    tmp = Path(tempfile.mkdtemp(prefix="gdstab-kernel-ab-"))
    libs = {"previous": _native.open_library(build(old_src, tmp / "previous.so")), "current": _native._load()}
    p = problems.get("hyperbola")
    etas = np.linspace(0.01, 1.0, args.etas)
    pts = np.asarray(p.init(jax.random.key(args.seed), args.points))
    theta0 = np.tile(pts, (etas.size, 1))
    eta = np.repeat(etas, args.points)
    opts = Criteria().as_array()
    print(f"machine: {describe()}")
    print(f"workload: {theta0.shape[0]:,} trajectories ({args.points:,} points x {etas.size} step sizes), "
          f"T = {args.steps}; previous = {args.against}, current = the installed library")

    def once(name):
        _native._lib = libs[name]
        t0 = time.perf_counter()
        out = _native.run("hyperbola", theta0, eta, (), args.steps, opts, threads=args.threads)
        return out, time.perf_counter() - t0

    shipped = _native._lib
    try:
        once("previous"), once("current")  # warm caches and the thread pool
        rows, outs = [], {}
        for r in range(args.rounds):
            row = {}
            for name in ("previous", "current") if r % 2 == 0 else ("current", "previous"):
                outs.pop(name, None)  # its memory is reused (fresh pages would be timed as page faults)
                out, wall = once(name)
                outs[name] = out
                row[name] = float((out["step"] + 1).sum()) / wall
            row["ratio"] = row["current"] / row["previous"]
            rows.append(row)
            print(f"  round {r + 1}: previous {row['previous']:.3e}/s  current {row['current']:.3e}/s  "
                  f"ratio {row['ratio']:.2f}x", flush=True)
    finally:
        _native._lib = shipped
    same = all(np.array_equal(outs["previous"][k], outs["current"][k], equal_nan=True) for k in outs["current"])
    best = {k: max(r[k] for r in rows) for k in ("previous", "current")}
    med = {k: float(np.median([r[k] for r in rows])) for k in ("previous", "current", "ratio")}
    print(f"best: previous {best['previous']:.3e}/s, current {best['current']:.3e}/s, "
          f"ratio {best['current'] / best['previous']:.2f}x; median ratio {med['ratio']:.2f}x "
          f"(rounds {min(r['ratio'] for r in rows):.2f}-{max(r['ratio'] for r in rows):.2f}x)")
    print(f"outputs bitwise identical: {same}; mean decision step {outs['current']['step'].mean():.1f}")
    if args.json:
        args.json.write_text(json.dumps({"machine": describe(), "against": args.against, "rounds": rows,
                                         "best": best, "median": med, "identical": same}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
