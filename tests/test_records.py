"""Result objects in Python (#17 item 3): short reprs, exports to xarray and pandas that carry
the same numbers as the objects, step sizes at the precision they were given."""

from __future__ import annotations

import numpy as np
import pytest

from gdstab import Status, critical, orbits, problems, trajectories

jax = pytest.importorskip("jax")


def test_trajectories_export_the_same_numbers():
    p = problems.get("hyperbola")
    th = np.random.default_rng(0).uniform(-2, 2, (50, 2))
    r = trajectories(p, th, np.repeat([0.5, 1.05], 25), steps=500, record_every=100)
    ds = r.to_xarray()
    np.testing.assert_array_equal(ds.status.values, r.status)
    np.testing.assert_array_equal(ds.theta.values, r.theta)
    np.testing.assert_array_equal(ds.loss_t.values, r.metrics.loss.T)
    meanings = ds.status.attrs["flag_meanings"].split()
    for v, name in zip(ds.status.attrs["flag_values"], meanings):
        assert v == 0 and name == "not_computed" or Status(v).label == name
    df = r.to_dataframe()
    assert len(df) == 50 and list(df.status[:1]) == [Status(r.status[0]).label]
    np.testing.assert_array_equal(df.theta_1.values, r.theta[:, 1])
    tab = r.summary_table()
    conv = [(r.status[r.eta == e] == Status.CONVERGED).mean() for e in (0.5, 1.05)]
    np.testing.assert_allclose(tab.converged.values, conv)
    assert list(tab.index) == [0.5, 1.05] and tab.n.tolist() == [25, 25]


def test_step_sizes_print_at_the_precision_they_were_given():
    p = problems.get("hyperbola")
    r = trajectories(p, np.ones((2, 2), np.float32) * 0.9, np.float32(0.3), steps=50, dtype="float32")
    assert r.summary()[0]["eta"] == 0.3  # not 0.30000001192092896


def test_reprs_are_short_and_name_the_estimate():
    m = problems.get("mlp", samples=40)  # d = 25 186: the repr must not print the parameter vector
    r = critical.trainable_step_size(m, eta_low=0.01, eta_high=10.0, inits=2, steps=20, rtol=0.2)
    text = repr(r)
    assert len(text) < 800 and text.startswith("TrainableStepSize(eta=") and "evidence=<" in text
    q = problems.get("quadratic", spectrum=[1.0, 3.0])
    c = critical.critical_step_size(q, eta_low=0.1, eta_high=1.0, inits=4, steps=2000, rtol=1e-2)
    assert "eta=" in repr(c) and len(repr(c)) < 800
    ds = c.to_xarray()
    np.testing.assert_allclose(ds.eta.values, [e["eta"] for e in c.evidence])
    np.testing.assert_allclose(ds.converged.values, [e["converged"] for e in c.evidence])
    assert ds.attrs["eta"] == c.eta
    df = r.to_dataframe()
    assert df.index.name == "eta" and df.not_diverged.tolist() == [e["not_diverged"] for e in r.evidence]


def test_lyapunov_result_exports():
    p = problems.get("hyperbola")
    ly = orbits.lyapunov(p, np.array([[1.2, 0.9], [1.0, 1.1]]), 1.5, steps=1000, blocks=10, n_exponents="all")
    ds = ly.to_xarray()
    np.testing.assert_array_equal(ds.exponents.values, ly.exponents)
    np.testing.assert_array_equal(ds.history.values, ly.history)
    assert "exponents=<array float64 2x2>" in repr(ly)
