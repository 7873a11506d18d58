"""The compiled toy kernels: every instruction-set variant gives the same bits (issue #21, item 4).

The shipped library holds each kernel compiled for x86-64-v4 (AVX-512, eight-lane vectors),
x86-64-v3 (AVX2, four-lane vectors) and the baseline, exported under their own names beside
the dispatching entry point.  Every variant this CPU can run is called on the same
trajectories (all four outcomes, several step sizes, default and non-default criteria) and
compared output by output, bit for bit, with the baseline variant and with the entry point;
the JAX engine is the independent definition (tests/test_dynamics.py compares it with the
entry point).  Variants the CPU cannot run are skipped, saying which."""

import numpy as np
import pytest

from gdstab import Criteria, _native, problems
from gdstab.dynamics import _cpu_flags
from gdstab.random import init_points

NEEDS = {"v4": ("avx512f", "avx512vl", "avx512bw", "avx512dq"), "v3": ("avx2", "fma", "bmi2"), "base": ()}

pytestmark = pytest.mark.skipif(not _native.available(), reason="needs the compiled kernels")


def _library(variant):
    try:
        return _native.open_library(_native._load()._name, variant)
    except AttributeError:
        pytest.skip(f"the library has no {variant} variant (not built for x86-64 with GCC)")


def _run(lib, monkeypatch, name, theta0, eta, steps, criteria, params=()):
    """gdstab's own native runner with ``lib`` in place of the shipped library."""
    monkeypatch.setattr(_native, "_lib", lib)
    return _native.run(name, theta0, eta, params, steps, criteria.as_array(), threads=1)


CASES = [
    ("hyperbola", (), [0.3, 0.9, 1.05, 1.3], 2000, Criteria()),
    ("hyperbola", (), [0.5, 1.1], 777, Criteria(tol=1e-7, window=5, max_period=6, check_every=16, period_checks=2)),
    ("rosenbrock", (1.0, 100.0), [1e-3, 4e-3, 5.2e-3], 1500, Criteria(check_every=8, max_period=1)),
    ("quad_quartic", (), [0.5, 1.9, 2.0, 2.3], 1001, Criteria(check_every=8, max_period=2)),
]


@pytest.mark.parametrize("variant", _native.VARIANTS)
@pytest.mark.parametrize("case", range(len(CASES)))
def test_every_instruction_set_variant_gives_the_same_bits(monkeypatch, variant, case):
    missing = [f for f in NEEDS[variant] if f not in _cpu_flags()]
    if missing:
        pytest.skip(f"this CPU lacks {', '.join(missing)}: the {variant} variant cannot run here")
    name, params, etas, steps, crit = CASES[case]
    p = problems.get(name)
    n = 1200
    pts = init_points(p, case, np.arange(n))
    eta = np.repeat(np.array(etas), -(-n // len(etas)))[:n]
    lib = _library(variant)
    outs = {}
    for key, which in (("variant", lib), ("base", _library("base")), ("entry", _native._load())):
        with monkeypatch.context() as m:
            outs[key] = _run(which, m, name, pts, eta, steps, crit, params)
    for k in outs["variant"]:
        assert np.array_equal(outs["variant"][k], outs["base"][k], equal_nan=True), (variant, k)
        assert np.array_equal(outs["entry"][k], outs["base"][k], equal_nan=True), ("entry", k)
    assert len(set(outs["base"]["status"].tolist())) >= 2  # more than one path is compared


def test_the_entry_points_use_the_best_variant_the_cpu_has():
    flags = _cpu_flags()
    if not flags:
        pytest.skip("no /proc/cpuinfo")
    v = _native.variant()
    assert v in _native.VARIANTS
    try:
        _native.open_library(_native._load()._name, "v4")
    except AttributeError:
        assert v == "base"  # a library built without the x86-64 variants
        return
    expect = "v4" if all(f in flags for f in NEEDS["v4"]) else "v3" if all(f in flags for f in NEEDS["v3"]) else "base"
    assert v == expect


def test_the_kernels_write_a_period_only_where_they_found_one():
    """``_native.run`` hands the kernels zeroed (untouched) period memory and they write only the
    lanes with a detected period, so a batch without cycles never touches those pages.  Called
    directly with the period buffer filled with a sentinel: every entry is either the sentinel
    (never written) or the period gdstab's runner reports, and the sentinels are exactly the
    runner's zeros."""
    import ctypes

    name, params, etas, steps, crit = CASES[0]  # ½(1 − xy)²: settled, diverged, periodic and bounded lanes
    p = problems.get(name)
    n = 1000
    theta0 = np.ascontiguousarray(init_points(p, 0, np.arange(n)), dtype=np.float64)
    eta = np.ascontiguousarray(np.repeat(np.array(etas), n // len(etas)), dtype=np.float64)
    ref = _native.run(name, theta0, eta, params, steps, crit.as_array(), threads=1)
    sentinel = -7
    out = {"theta": np.empty_like(theta0), "status": np.empty(n, np.int8), "step": np.empty(n, np.int64),
           "period": np.full(n, sentinel, np.int64), "loss": np.empty(n), "grad_norm": np.empty(n)}
    prm = np.zeros(4)
    flag = ctypes.c_int(0)
    getattr(_native._load(), f"gdstab_run_{name}")(
        n, _native._ptr(theta0), _native._ptr(eta), _native._ptr(prm), steps,
        _native._ptr(np.ascontiguousarray(crit.as_array(), dtype=np.float64)),
        *(_native._ptr(out[k]) for k in ("theta", "status", "step", "period", "loss", "grad_norm")), ctypes.byref(flag))
    written = out["period"] != sentinel
    assert np.array_equal(written, ref["period"] != 0)
    assert np.array_equal(out["period"][written], ref["period"][written])
    assert (ref["status"] == 3).sum() >= 10 and (~written).sum() >= 10  # both kinds of lane occur
    for k in ("theta", "status", "step", "loss", "grad_norm"):
        assert np.array_equal(out[k], ref[k], equal_nan=True), k
