"""Benchmark: per-step cost of the JAX engine against its chunk size, on the CPU.

Runs ½(1 − xy)² at η = 1.4 from points in [0.8, 1.2]² (chaotic: no trajectory is decided
before T, so every chunk does exactly T + 1 steps) for several chunk sizes on one thread, and
the default (auto) chunking on all cores.  This is the measurement behind the CPU chunk size
chosen by ``gdstab.dynamics._auto_chunk``.
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402


def main() -> int:
    import jax

    jax.config.update("jax_enable_x64", True)
    from gdstab import problems, trajectories

    p = problems.get("hyperbola")
    T = 1000
    rng = np.random.default_rng(0)
    print(describe())
    for cs in (256, 512, 1024, 2048, 4096, 16384):
        th = rng.uniform(0.8, 1.2, (cs, 2))
        trajectories(p, th, 1.4, steps=T, backend="jax", chunk_size=cs, threads=1)
        t0 = time.perf_counter()
        r = trajectories(p, th, 1.4, steps=T, backend="jax", chunk_size=cs, threads=1)
        dt = time.perf_counter() - t0
        assert (r.step == T).all()
        print(f"chunk {cs:>6}, 1 thread: {dt / (T + 1) * 1e6:8.1f} us per step, {cs * (T + 1) / dt:10.3e} point-steps/s")
    th = rng.uniform(0.8, 1.2, (16384, 2))
    trajectories(p, th, 1.4, steps=T, backend="jax")
    t0 = time.perf_counter()
    trajectories(p, th, 1.4, steps=T, backend="jax")
    dt = time.perf_counter() - t0
    print(f"auto chunking, all cores: {16384 * (T + 1) / dt:10.3e} point-steps/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
