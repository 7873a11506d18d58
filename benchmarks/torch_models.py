"""Benchmark: a PyTorch model through gdstab (issue #18) against what a PyTorch user would write.

The 784→32→32→2 MLP (tanh, MSE on one-hot targets) on 1 000 MNIST digits 0/1, ``N`` members,
``STEPS`` full-batch GD steps, in float64 and float32, in one run:

* gdstab: ``Problem.from_torch`` (converted once by torch2jax), then ``gdstab.trajectories``
  (the JAX engine: vmapped, compiled, every trajectory classified);
* a per-model PyTorch loop: ``torch.optim.SGD`` on one model at a time (what most code does);
* ``torch.func``: ``vmap`` of ``grad`` of ``functional_call`` over the stacked parameters of all
  members (PyTorch's own ensembling), a plain Python loop over the steps.

One warm-up call each, then ``REPEATS`` rounds in which the three methods run one after the
other (so that a round's ratios see the same machine load); prints the best member-steps/s of
each, the ratios of the best times, and the median and range of the per-round ratios gdstab /
loop (the shared machine's load moves single calls by ±10-20 %).

    python benchmarks/torch_models.py
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import describe  # noqa: E402

N, STEPS, ETA, REPEATS, SAMPLES = 100, 50, 0.05, 5, 1000


def _model(torch):
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(nn.Linear(784, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 2))


def _rounds(fns):
    """Per method, the times of REPEATS calls interleaved round by round (after one warm-up)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(REPEATS):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
    return [np.array(ts) for ts in times]


def main() -> None:
    import jax
    import torch
    from torch.func import functional_call, grad, vmap

    import gdstab
    from gdstab import Problem
    from gdstab.problems import mnist

    d = mnist((0, 1), n=SAMPLES // 2)
    X, Y = d.X, d.Y
    print(describe())
    print(f"torch {torch.__version__} ({torch.get_num_threads()} threads), jax {jax.__version__}")
    print(f"MLP 784-32-32-2 tanh, MSE, {len(X)} MNIST 0/1 digits, {N} members x {STEPS} full-batch GD steps\n")
    with jax.enable_x64(True):
        p = Problem.from_torch(_model(torch), (X, Y), "mse")
        theta0 = np.asarray(p.init(jax.random.key(0), N))
    crit = gdstab.Criteria(tol=1e-300, max_period=1, check_every=STEPS)
    print(f"{'dtype':8s} {'gdstab':>12s} {'torch loop':>12s} {'torch.func':>12s} {'vs loop':>8s} {'vs func':>8s}")
    for dtype, tdt in (("float64", torch.float64), ("float32", torch.float32)):
        def run_gdstab():
            with jax.enable_x64(dtype == "float64"):
                gdstab.trajectories(p, theta0, ETA, steps=STEPS, criteria=crit, dtype=dtype, backend="jax")

        Xt, Yt = torch.tensor(X, dtype=tdt), torch.tensor(Y, dtype=tdt)
        model = _model(torch).to(tdt)
        th0 = torch.tensor(theta0, dtype=tdt)

        def run_loop():
            for i in range(N):
                torch.nn.utils.vector_to_parameters(th0[i], model.parameters())
                opt = torch.optim.SGD(model.parameters(), lr=ETA)
                for _ in range(STEPS):
                    opt.zero_grad()
                    torch.nn.functional.mse_loss(model(Xt), Yt).backward()
                    opt.step()

        names = [n for n, _ in model.named_parameters()]
        sizes = [q.numel() for q in model.parameters()]
        shapes = [q.shape for q in model.parameters()]

        def loss(params):
            return torch.nn.functional.mse_loss(functional_call(model, params, (Xt,)), Yt)

        g = vmap(grad(loss))

        def run_func():
            parts = torch.split(th0, sizes, dim=1)
            params = {n: a.reshape((N,) + tuple(s)) for n, a, s in zip(names, parts, shapes)}
            with torch.no_grad():
                for _ in range(STEPS):
                    gr = g(params)
                    params = {n: params[n] - ETA * gr[n] for n in names}

        tg, tl, tf = _rounds((run_gdstab, run_loop, run_func))
        t_g, t_l, t_f = tg.min(), tl.min(), tf.min()
        rate = N * STEPS
        per_round = tl / tg
        print(f"{dtype:8s} {rate / t_g:12.4g} {rate / t_l:12.4g} {rate / t_f:12.4g} {t_l / t_g:8.2f} {t_f / t_g:8.2f}"
              f"   per round vs loop: median {np.median(per_round):.2f} (range {per_round.min():.2f}-{per_round.max():.2f})",
              flush=True)
    print("\n(member-steps/s, best of the rounds; 'vs loop', 'vs func': gdstab's speed-up over the per-model loop and over "
          "torch.func from the best times; per round: the ratio of the loop's time to gdstab's within each round)")


if __name__ == "__main__":
    main()
