"""``gdstab flow``, ``gdstab spectrum`` and ``gdstab boundary``: the field's instruments on any problem
(gradient flow and GD's distance to it; top eigenvalues, trace and spectral density of the
Hessian; the dimension of a stored map's boundary)."""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from .._validation import fail, finite_float, positive_int
from ._common import (add_criteria_args, add_init_args, add_optimizer_arg, add_problem_args, add_quiet_arg, build_problem,
                      criteria_from_args, emit, fmt_eta, initial_points, optimizer_from_args, out_dir, progress,
                      single_eta, write_outputs)

_FLOW_HELP = """\
Solve the gradient flow theta'(t) = -grad L(theta) from each initial point with diffrax (adaptive
steps with error control; an implicit, stiff-aware solver when lambda_max(H) * t_max > 1e4 at the
start and d <= 256). With --eta, also run GD at that step size and record its distance to the
flow, |theta_GD(k) - theta_GF(k eta)|, and the first step where it exceeds
--departure * (1 + |theta_GF|): where GD left the flow."""

_FLOW_EPILOG = """\
examples:
  gdstab flow --problem hyperbola --init 1.5,0.2 --t-max 10
  gdstab flow --problem zhu --init 4,0.1 --t-max 50 --eta 0.1 --out flow/
  gdstab flow --problem hyperbola --inits 8 --t-max 5 --eta 0.5 --every 5 --json

statuses: ok (reached t_max), max_steps (the solver's step budget ran out: raise --max-steps,
or the flow is stiff: --solver kvaerno5), failed (the flow blew up: a non-finite state).
"""

#: initial points listed one per line in the text output (all are in --json and --out)
SHOWN = 10


def cmd_flow(args) -> int:
    from .. import flow

    caller = "gdstab flow"
    problem = build_problem(args)
    th0 = initial_points(args, problem, caller)
    t_max = _positive_float(args.t_max, "--t-max", caller)
    out = out_dir(args)
    kw = {"solver": args.solver, "rtol": args.rtol, "atol": args.atol, "max_steps": args.max_steps}
    res = flow.gradient_flow(problem, th0, t_max, times=positive_int(args.times, "--times", caller, minimum=2), **kw)
    dist = None
    if args.eta is not None:
        eta = single_eta(args.eta, caller)
        steps = positive_int(args.steps, "--steps", caller) if args.steps else max(1, int(round(t_max / eta)))
        dist = flow.distance_to_flow(problem, th0, eta, steps, every=positive_int(args.every, "--every", caller),
                                     rtol=_positive_float(args.departure, "--departure", caller),
                                     solver=args.solver, ode_rtol=args.rtol, ode_atol=args.atol, max_steps=args.max_steps)
    summary = _flow_summary(problem, th0, res, dist)
    fds, dds = res.to_xarray(), None if dist is None else dist.to_xarray()
    summary["files"] = write_outputs(out, "flow", lambda plots: plots.gradient_flow(fds, dds), fds, summary)
    if out is not None and dds is not None:
        from ..results import save_dataset

        save_dataset(dds, out / "distance.zarr")
        summary["files"].append(str(out / "distance.zarr"))
    return emit(summary, args.json, _flow_lines(problem, res, dist, summary))


def _positive_float(text: Any, name: str, caller: str) -> float:
    try:
        v = float(text)
    except (TypeError, ValueError):
        raise fail(name, caller, "a finite float > 0", text) from None
    return finite_float(v, name, caller, low=0.0)


def _flow_summary(problem, th0, res, dist) -> dict[str, Any]:
    rows = []
    for i in range(th0.shape[0]):
        row = {"theta0": th0[i].tolist(), "status": str(res.status[i]), "accepted_steps": int(res.accepted_steps[i]),
               "rejected_steps": int(res.rejected_steps[i]), "loss_start": float(res.loss[i, 0]),
               "loss_end": None if np.isnan(res.loss[i, -1]) else float(res.loss[i, -1]),
               "theta_end": None if np.isnan(res.theta[i, -1]).any() else res.theta[i, -1].tolist()}
        if dist is not None:
            d = dist.distance[i, -1]
            row["gd"] = {"distance_end": None if np.isnan(d) else (float(d) if np.isfinite(d) else "inf"),
                         "departure_step": None if dist.departure[i] < 0 else int(dist.departure[i]),
                         "gd_diverged": bool(np.isinf(dist.distance[i]).any())}
        rows.append(row)
    out = {"problem": problem.name, "normalisation": problem.normalisation, "t_max": float(res.t[-1]),
           "solver": res.solver, "stiffness": None if np.isnan(res.stiffness) else res.stiffness,
           "rtol": res.rtol, "atol": res.atol, "trajectories": rows}
    if dist is not None:
        out["gd"] = {"eta": dist.eta, "steps": int(dist.step[-1]), "every": int(dist.step[1] - dist.step[0]),
                     "departure_rtol": dist.rtol,
                     "definition": "departure: first recorded step k with |theta_GD(k) - theta_GF(k eta)| > "
                                   "rtol (1 + |theta_GF(k eta)|)"}
    return out


def _flow_lines(problem, res, dist, summary) -> list[str]:
    stiff = "" if np.isnan(res.stiffness) else f", lambda_max*t_max = {res.stiffness:.3g} at the start"
    lines = [f"problem   {problem.name}: {problem.normalisation}",
             f"flow      to t = {res.t[-1]:g}, solver {res.solver}{stiff}, tolerances rtol {res.rtol:g} atol {res.atol:g}"]
    if dist is not None:
        lines.append(f"gd        eta = {fmt_eta(dist.eta)}, {dist.step[-1]} steps, distance recorded every "
                     f"{dist.step[1] - dist.step[0]}; left the flow = distance > {dist.rtol:g} (1 + |theta_GF|)")
    lines.append("")
    for i, row in enumerate(summary["trajectories"][:SHOWN]):
        start = np.round(row["theta0"], 4).tolist() if len(row["theta0"]) <= 4 else f"point {i}"
        end = "-" if row["loss_end"] is None else f"{row['loss_end']:.6g}"
        text = (f"  {str(start):<24} {row['status']:<9} {row['accepted_steps']:>6} steps  "
                f"L {row['loss_start']:.6g} -> {end}")
        if dist is not None:
            g = row["gd"]
            left = "stays on it" if g["departure_step"] is None else f"leaves at step {g['departure_step']}"
            text += f"  | GD {left}" + (" (diverges)" if g["gd_diverged"] else f", final distance {g['distance_end']:.3g}"
                                        if isinstance(g["distance_end"], float) else "")
        lines.append(text)
    if len(summary["trajectories"]) > SHOWN:
        lines.append(f"  ... {len(summary['trajectories']) - SHOWN} more in --json / --out")
    bad = [r for r in summary["trajectories"] if r["status"] != "ok"]
    if bad:
        lines.append(f"warning   {len(bad)} flow(s) did not reach t_max (max_steps: raise --max-steps or use "
                     "--solver kvaerno5; failed: the flow blew up)")
    return lines


_SPECTRUM_HELP = """\
The Hessian of the loss at one point (--init, or the problem's random initialisation with --seed):
its top --top eigenvalues (dense for d <= 256, else restarted Lanczos on Hessian-vector products, in
memory bounded by about 2 --top + 1 vectors; with --eta, every eigenvalue above 2/eta), and with
--density its trace (Hutch++, with a standard error) and eigenvalue density by stochastic Lanczos
quadrature (--probes random probes of --lanczos-steps steps each; every product is a
Hessian-vector product, no dense Hessian). With --eta the number of eigenvalues above 2/eta is
estimated too."""

_SPECTRUM_EPILOG = """\
examples:
  gdstab spectrum --problem hyperbola --init 1.5,0.7 --top 2
  gdstab spectrum --problem mlp --option depth=2 --option width=32 --density --eta 0.5 --out spec/
  gdstab spectrum --model examples/torch_mlp.py:build --data digits --density --json
"""


def cmd_spectrum(args) -> int:
    import jax

    from .. import random as gdstab_random
    from .. import spectrum

    caller = "gdstab spectrum"
    problem = build_problem(args)
    th = initial_points(args, problem, caller)[0]
    top = min(5, problem.dim) if args.top is None else positive_int(args.top, "--top", caller)
    if top > problem.dim:
        raise fail("--top", caller, f"an int <= d = {problem.dim}", args.top)
    eta = None if args.eta is None else single_eta(args.eta, caller)
    out = out_dir(args)
    key = gdstab_random.key(positive_int(args.seed, "--seed", caller, minimum=0))
    summary: dict[str, Any] = {"problem": problem.name, "normalisation": problem.normalisation, "dim": problem.dim,
                               "theta": th.tolist() if problem.dim <= 16 else f"initialisation, seed {args.seed}"}
    if problem.dim <= 256:
        lam = np.linalg.eigvalsh(spectrum.hessian(problem, th))[::-1][:top]
        summary["top"] = {"eigenvalues": lam.tolist(), "method": "dense"}
    else:
        lz = spectrum.top_eigenvalues(spectrum.hvp(problem, th), problem.dim, top, key=jax.random.fold_in(key, 0),
                                      tol=1e-8, above=None if eta is None else 2.0 / eta)
        lam = lz.eigenvalues
        summary["top"] = {"eigenvalues": lam.tolist(), "method": "lanczos", "converged": lz.converged,
                          "residuals": lz.residuals.tolist(), "matvecs": lz.matvecs,
                          "all_above_2_over_eta_found": lz.complete}
    ds = None
    if args.density:
        mv = spectrum.hvp(problem, th)
        probes = positive_int(args.probes, "--probes", caller)
        tr = spectrum.trace_estimate(mv, problem.dim, key=jax.random.fold_in(key, 1), probes=max(3, 3 * probes))
        dens = spectrum.spectral_density(mv, problem.dim, key=jax.random.fold_in(key, 2), probes=probes,
                                         lanczos_steps=positive_int(args.lanczos_steps, "--lanczos-steps", caller))
        ds = dens.to_xarray()
        summary["trace"] = {"estimate": tr.estimate, "stderr": tr.stderr, "method": tr.method, "matvecs": tr.matvecs}
        summary["density"] = {"probes": dens.probes, "lanczos_steps": dens.lanczos_steps, "sigma": dens.sigma,
                              "matvecs": dens.matvecs, "range": [float(np.nanmin(dens.nodes)), float(np.nanmax(dens.nodes))],
                              "moments": dens.moments.tolist(), "moments_stderr": dens.moments_stderr.tolist()}
        if eta is not None:
            f, se = dens.fraction_above(2.0 / eta)
            summary["density"]["above_2_over_eta"] = {"fraction": f, "stderr": se, "count": f * problem.dim,
                                                      "count_stderr": se * problem.dim}
    if eta is not None:
        summary["eta"] = eta
        summary["top_above_2_over_eta"] = int(np.sum(np.asarray(lam) > 2.0 / eta))
    summary["files"] = write_outputs(out, "spectrum", lambda plots: plots.spectral_density(ds, top=lam, eta=eta), ds,
                                     summary) if ds is not None else []
    return emit(summary, args.json, _spectrum_lines(problem, summary, eta))


def _spectrum_lines(problem, s: dict, eta) -> list[str]:
    t = s["top"]
    lam = ", ".join(f"{x:.6g}" for x in t["eigenvalues"])
    lines = [f"problem   {problem.name}: {problem.normalisation} (d = {problem.dim})",
             f"top       {lam}  ({t['method']}" + ("" if t["method"] == "dense" else
                                                 f", {t['matvecs']} products, converged {t['converged']}") + ")"]
    if eta is not None:
        done = t.get("all_above_2_over_eta_found")
        lines.append(f"2/eta     {2 / eta:.6g}: {s['top_above_2_over_eta']} of the top {len(t['eigenvalues'])} above it"
                     + ("" if done is None else " (all found)" if done else " (more may lie above: raise --top)"))
    if "trace" in s:
        tr, d = s["trace"], s["density"]
        lines += [f"trace     {tr['estimate']:.6g} +- {tr['stderr']:.2g} (Hutch++, {tr['matvecs']} products; "
                  "+- one standard error)",
                  f"density   SLQ, {d['probes']} probes x {d['lanczos_steps']} steps ({d['matvecs']} products), "
                  f"sigma {d['sigma']:.3g}, support [{d['range'][0]:.4g}, {d['range'][1]:.4g}]",
                  f"          mean eigenvalue {d['moments'][1]:.6g} +- {d['moments_stderr'][1]:.2g}, "
                  f"mean square {d['moments'][2]:.6g} +- {d['moments_stderr'][2]:.2g}"]
        if "above_2_over_eta" in d:
            a = d["above_2_over_eta"]
            lines.append(f"          eigenvalues above 2/eta: {a['count']:.3g} +- {a['count_stderr']:.2g} of {problem.dim}")
    return lines


_BOUNDARY_HELP = """\
The dimension of the boundary between the classes of a stored 2-D map (a basin map written by
'gdstab basin --out DIR', or any Zarr Dataset with a 2-D 'status' and optionally
'minimum_class'): the box-counting dimension, and 2 - alpha from the uncertainty exponent alpha
(the fraction of pixels whose class differs from the pixel eps away scales as eps^alpha), each
with a bootstrap 95% interval over the range of scales and the box-grid offsets. Classes: the
minimum reached where a pixel converged, otherwise its status (diverged, periodic, ...). On
rasters expect a bias of about 0.02 (circles measure 0.98-0.99): differences below ~0.03 between
maps are not evidence of different geometry."""


def _find_map(path: str, caller: str):
    from pathlib import Path

    from ..results import open_store

    p = Path(path)
    if p.is_dir() and p.suffix != ".zarr":
        stores = sorted(q for q in p.glob("*.zarr") if q.name in ("basin.zarr", "hypermap.zarr")) or sorted(p.glob("*.zarr"))
        if not stores:
            raise fail("DIR_OR_MAP", caller, "a .zarr map or a folder holding one (basin.zarr)", path)
        p = stores[0]
    if not p.exists():
        raise fail("DIR_OR_MAP", caller, "an existing .zarr map or a folder holding one", path)
    try:
        ds = open_store(p)
    except Exception as e:  # noqa: BLE001 - any unreadable store gets the same one-line error
        raise fail("DIR_OR_MAP", caller, "a readable Zarr store", f"{path} ({type(e).__name__})") from None
    if "status" not in ds or ds["status"].ndim != 2:
        raise fail("DIR_OR_MAP", caller, "a map with a 2-D 'status' variable", f"{p} with {sorted(ds.data_vars)}")
    return p, ds


def cmd_boundary(args) -> int:
    from .. import boundary

    caller = "gdstab boundary"
    path, ds = _find_map(args.map, caller)
    res = boundary.boundary_dimension(boundary.map_labels(ds), offsets=args.offsets, bootstrap=args.bootstrap,
                                      seed=args.seed)
    summary = {"map": str(path), "problem": ds.attrs.get("problem"), "eta": ds.attrs.get("eta"), **res.summary(),
               "definition": "box-counting dimension (fewest boxes over grid offsets) and 2 - alpha (uncertainty "
                             "exponent); 95% bootstrap intervals over scale ranges and offsets"}
    summary["files"] = write_outputs(out_dir(args), "boundary", lambda plots: plots.boundary_scaling(res), None, summary)
    lines = [f"map       {path} ({res.shape[0]} x {res.shape[1]} pixels, {res.classes} classes, "
             f"{res.boundary_pixels} boundary pixels)"]
    if res.status != "ok":
        lines.append(f"dimension undefined: {res.status}")
    else:
        lines += [f"box counting          D = {res.dimension:.4f}  95% [{res.interval[0]:.4f}, {res.interval[1]:.4f}]  "
                  f"(boxes of {res.box_sizes[0]}-{res.box_sizes[-1]} pixels)",
                  f"uncertainty exponent  alpha = {res.alpha:.4f}  95% [{res.alpha_interval[0]:.4f}, "
                  f"{res.alpha_interval[1]:.4f}]  ->  D = 2 - alpha = {res.dimension_from_alpha:.4f}",
                  "(a smooth boundary has D = 1, one that fills the plane D = 2; raster bias about 0.02)"]
    return emit(summary, args.json, lines)


_HYPERMAP_HELP = """\
Train once per pixel of a grid over two hyperparameters and map the outcome (converged,
periodic, bounded, diverged) and the final loss. Axes: eta (the step size), init_scale (the
initial point scaled; every pixel starts from the same point, drawn with --seed), lr:GROUP (a
multiplier of eta for one parameter group: the layers layer0, layer1, ... of an MLP or linear
network, the modules of a PyTorch model, the leaves of a JAX pytree), or a hyperparameter of
--optimizer (beta of momentum, b1 of adam, ...). Each axis is NAME:START:STOP:NUM, with :log
for log spacing. All pixels run through the compiled engine at once."""

_HYPERMAP_EPILOG = """\
examples:
  gdstab hypermap --problem hyperbola --x eta:0.1:1.5:64 --y init_scale:0.5:2:64
  gdstab hypermap --problem hyperbola --optimizer momentum --x eta:0.05:2:64 --y beta:0:0.95:64
  gdstab hypermap --problem mlp --option width=8 --eta 1 --x lr:layer0:0.1:10:32:log \\
      --y lr:layer1:0.1:10:32:log --steps 300 --dtype float32 --out hypermap/
then: gdstab boundary hypermap/   (the dimension of the trainability boundary)
"""


def _axis_spec(text: str, name: str, caller: str):
    parts = str(text).split(":")
    log = parts[-1] in ("log", "lin")
    spacing = parts.pop() if log else "lin"
    try:
        start, stop, num = float(parts[-3]), float(parts[-2]), int(parts[-1])
        axis = ":".join(parts[:-3])
    except (ValueError, IndexError):
        raise fail(name, caller, "NAME:START:STOP:NUM[:log] (e.g. eta:0.1:2:64 or lr:layer0:0.1:10:32:log)", text) from None
    if not axis or num < 2 or not (np.isfinite(start) and np.isfinite(stop)) or start >= stop or \
            (spacing == "log" and start <= 0):
        raise fail(name, caller, "NAME:START:STOP:NUM[:log] with START < STOP, NUM >= 2 (START > 0 for log)", text)
    values = np.geomspace(start, stop, num) if spacing == "log" else np.linspace(start, stop, num)
    return axis, values


def cmd_hypermap(args) -> int:
    from .. import hypermaps

    caller = "gdstab hypermap"
    problem = build_problem(args)
    x = _axis_spec(args.x, "--x", caller)
    y = _axis_spec(args.y, "--y", caller)
    if x[1].size * y[1].size > 4_000_000:
        raise fail("--x", caller, "at most 4e6 pixels in all (--x NUM times --y NUM)", f"{x[1].size} x {y[1].size}")
    eta = None if args.eta is None else single_eta(args.eta, caller)
    theta0 = initial_points(args, problem, caller)[0] if args.init else None
    out = out_dir(args)
    with progress(args, caller, x[1].size * y[1].size, "pixels") as bar:
        ds = hypermaps.hyperparameter_map(problem, x, y, eta=eta, optimizer=optimizer_from_args(args, caller),
                                          steps=positive_int(args.steps, "--steps", caller),
                                          seed=positive_int(args.seed, "--seed", caller, minimum=0), theta0=theta0,
                                          criteria=criteria_from_args(args, problem, args.dtype), dtype=args.dtype,
                                          on_chunk=lambda done, total: bar.set(done))
    from ..outcomes import fraction_rows

    fr = fraction_rows(ds.status.values)
    fr.pop("n")
    summary = {"problem": problem.name, "normalisation": problem.normalisation, "x": {"name": x[0], "values": x[1].tolist()},
               "y": {"name": y[0], "values": y[1].tolist()}, "eta": eta, "optimizer": ds.attrs["optimizer"],
               "steps": ds.attrs["steps"], "seed": ds.attrs["seed"], "dtype": args.dtype, "fractions": fr}
    summary["files"] = write_outputs(out, "hypermap", lambda plots: plots.hyperparameter_map(ds), ds, summary)
    lines = [f"problem   {problem.name}: {problem.normalisation}",
             f"map       {x[0]} ({x[1].size} values, {x[1][0]:g}..{x[1][-1]:g}) x {y[0]} ({y[1].size} values, "
             f"{y[1][0]:g}..{y[1][-1]:g}), {ds.attrs['optimizer']}, {ds.attrs['steps']} steps, {args.dtype}"]
    lines += [f"  {k:<11} {v['fraction']:.4f} [{v['low']:.4f}, {v['high']:.4f}] of the pixels" for k, v in fr.items()]
    return emit(summary, args.json, lines)


def register(sub) -> None:
    register_spectrum(sub)
    _register_hypermap(sub)
    p = sub.add_parser("boundary", help="dimension of the boundary of a stored basin (or hyperparameter) map",
                       description=_BOUNDARY_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
                       epilog="example:\n  gdstab basin --problem hyperbola --eta 1.2 --resolution 512 --out b/\n"
                              "  gdstab boundary b/\n")
    p.add_argument("map", metavar="DIR_OR_MAP", help="a .zarr map, or a folder holding basin.zarr")
    p.add_argument("--offsets", type=int, default=8, help="random box-grid offsets per box size (default 8)")
    p.add_argument("--bootstrap", type=int, default=400, help="bootstrap resamples of the intervals (default 400)")
    p.add_argument("--seed", type=int, default=0, help="integer seed of the offsets and resamples (default 0)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", metavar="DIR", help="write boundary.png/.pdf/.svg and boundary.json into DIR")
    p.set_defaults(func=cmd_boundary)
    p = sub.add_parser("flow", help="gradient flow (diffrax) from initial points, and GD's distance to it",
                       description=_FLOW_HELP, epilog=_FLOW_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(p)
    add_init_args(p, inits_default=1)
    p.add_argument("--t-max", required=True, help="final time of the flow")
    p.add_argument("--times", type=int, default=101, help="equally spaced output times in [0, t_max] (default 101)")
    p.add_argument("--solver", default="auto", choices=["auto", "tsit5", "dopri8", "kvaerno5"],
                   help="ODE solver (default auto: tsit5, kvaerno5 when stiff and d <= 256)")
    p.add_argument("--rtol", type=float, default=1e-10, help="relative local error tolerance (default 1e-10)")
    p.add_argument("--atol", type=float, default=1e-12, help="absolute local error tolerance (default 1e-12)")
    p.add_argument("--max-steps", type=int, default=100_000, help="solver step budget per trajectory (default 100000)")
    p.add_argument("--eta", help="also run GD at this step size and measure its distance to the flow")
    p.add_argument("--steps", type=int, help="GD steps with --eta (default: round(t_max / eta))")
    p.add_argument("--every", type=int, default=1, help="record GD's distance every k steps (default 1)")
    p.add_argument("--departure", default="0.01",
                   help="GD has left the flow where the distance exceeds this times 1 + |theta_GF| (default 0.01)")
    p.add_argument("--out", metavar="DIR", help="write flow.png/.pdf/.svg, flow.zarr (and distance.zarr) and flow.json into DIR")
    p.set_defaults(func=cmd_flow)


def register_spectrum(sub) -> None:
    p = sub.add_parser("spectrum", help="top eigenvalues, trace and spectral density (SLQ) of the Hessian at a point",
                       description=_SPECTRUM_HELP, epilog=_SPECTRUM_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(p)
    add_init_args(p, inits_default=1)
    p.add_argument("--top", type=int, help="how many of the largest eigenvalues (default 5, or d if smaller)")
    p.add_argument("--density", action="store_true", help="also estimate the trace and the eigenvalue density")
    p.add_argument("--probes", type=int, default=10, help="random probes of the density (default 10; the trace uses 3x)")
    p.add_argument("--lanczos-steps", type=int, default=80, help="Lanczos steps per probe (default 80)")
    p.add_argument("--eta", help="a step size: count the eigenvalues above 2/eta")
    p.add_argument("--out", metavar="DIR", help="with --density: write spectrum.png/.pdf/.svg, spectrum.zarr and spectrum.json")
    p.set_defaults(func=cmd_spectrum)


def _register_hypermap(sub) -> None:
    p = sub.add_parser("hypermap", help="trainability over two hyperparameters (eta, init scale, per-layer "
                       "learning rates, momentum, ...): one run per pixel",
                       description=_HYPERMAP_HELP, epilog=_HYPERMAP_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_problem_args(p)
    add_optimizer_arg(p)
    add_quiet_arg(p)
    p.add_argument("--x", required=True, help="the horizontal axis, NAME:START:STOP:NUM[:log]")
    p.add_argument("--y", required=True, help="the vertical axis, NAME:START:STOP:NUM[:log]")
    p.add_argument("--eta", help="the step size when no axis is eta (with lr: axes, each group's is eta x multiplier)")
    p.add_argument("--init", metavar="X,Y,...", action="append", default=[],
                   help="the initial point of every pixel (default: one random initialisation, --seed)")
    p.add_argument("--seed", type=int, default=0, help="integer seed of the initial point (default 0)")
    p.add_argument("--steps", type=int, default=1000, help="steps per pixel (default 1000)")
    p.add_argument("--dtype", choices=["float64", "float32"], default="float64", help="(default float64)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--out", metavar="DIR", help="write hypermap.png/.pdf/.svg, hypermap.zarr and hypermap.json into DIR")
    add_criteria_args(p)
    p.set_defaults(func=cmd_hypermap)
