"""Gradient flow (diffrax) and GD's distance to it, against closed forms, conserved quantities
and an independent LSODA solve (issue #19, item 1)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.linalg import expm

from gdstab import Problem, problems
from gdstab._validation import InvalidParameterError
from gdstab.flow import distance_to_flow, gradient_flow

# the controller keeps the *local* error of every step below atol + rtol|θ_i| (1e-12 + 1e-10|θ_i|);
# over ~100-400 steps the global error of these O(1) paths stays below 1e-9 (measured 1.6e-10 for
# Tsit5 on ½(1 − xy)², 1.5e-12 on the stiff quadratic); the implicit solver's global error on the
# stiff quadratic was 9e-9, hence its looser bound below.
GLOBAL = 1e-9


def _quadratic(A):
    def loss(p, data):
        return 0.5 * p["w"] @ (jnp.asarray(A) @ p["w"])

    with jax.enable_x64(True):
        return Problem.from_jax(loss, {"w": jnp.zeros(A.shape[0])}, None)


def _spd(d, seed, low=0.5, high=3.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return Q @ np.diag(np.linspace(low, high, d)) @ Q.T


def test_quadratic_flow_equals_the_matrix_exponential():
    A = _spd(3, 0)
    p = _quadratic(A)
    th0 = np.random.default_rng(1).normal(size=(4, 3))
    r = gradient_flow(p, th0, 4.0, times=9)
    assert r.solver == "tsit5" and r.stiffness == pytest.approx(3.0 * 4.0, rel=1e-9)  # λ_max·t_max: not stiff
    assert list(r.status) == ["ok"] * 4
    exact = np.stack([[expm(-t * A) @ z for t in r.t] for z in th0])
    np.testing.assert_allclose(r.theta, exact, rtol=0, atol=GLOBAL)
    np.testing.assert_allclose(r.loss, 0.5 * np.einsum("btd,de,bte->bt", exact, A, exact), rtol=0, atol=GLOBAL)
    ds = r.to_xarray()
    assert ds.theta.dims == ("trajectory", "t", "coordinate") and ds.attrs["solver"] == "tsit5"


def test_the_hyperbola_flow_conserves_x2_minus_y2_and_agrees_with_lsoda():
    """L = ½(1 − xy)² depends on xy only, so d(x² − y²)/dt = 2x·x' − 2y·y' = 0 along the flow."""
    p = problems.get("hyperbola")
    th0 = np.array([[1.5, 0.2], [0.3, -2.0], [3.0, 3.0], [-0.5, 0.4]])
    r = gradient_flow(p, th0, 6.0, times=13)
    c = th0[:, 0] ** 2 - th0[:, 1] ** 2
    drift = r.theta[..., 0] ** 2 - r.theta[..., 1] ** 2 - c[:, None]
    assert np.abs(drift).max() < GLOBAL
    grad = jax.jit(jax.grad(p.loss))
    with jax.enable_x64(True):
        for i, z in enumerate(th0):
            sol = solve_ivp(lambda t, th: -np.asarray(grad(np.asarray(th))), (0, 6.0), z, t_eval=r.t,
                            rtol=1e-11, atol=1e-12, method="LSODA")
            # LSODA's own global error at these tolerances is the limit (~1e-8 measured against DOP853)
            np.testing.assert_allclose(r.theta[i], sol.y.T, rtol=0, atol=1e-7)


def test_zhu_flow_reaches_the_minimum_the_conserved_quantity_predicts():
    """The Zhu test of tests/test_sharpness.py: the flow from (4, 0.1) lands on x²y² = 1 with
    x² − y² = c, sharpness 2(x² + y²) = 2√(c² + 4)."""
    p = problems.get("zhu")
    r = gradient_flow(p, np.array([4.0, 0.1]), 200.0, times=[0.0, 50.0, 200.0])
    x, y = r.theta[0, -1]
    c = 4.0**2 - 0.1**2
    assert x * x - y * y == pytest.approx(c, abs=GLOBAL * 100)
    assert 2 * (x * x + y * y) == pytest.approx(2 * math.sqrt(c * c + 4), rel=1e-8)


def test_a_stiff_flow_picks_the_implicit_solver_and_an_explicit_one_says_it_ran_out():
    A = np.diag([1e4, 1.0])
    p = problems.get("quadratic", spectrum=(1e4, 1.0))
    th0 = np.array([[1.0, 1.0], [0.5, -2.0]])
    r = gradient_flow(p, th0, 10.0, times=11)
    assert r.solver == "kvaerno5" and r.stiffness == pytest.approx(1e5)
    assert list(r.status) == ["ok", "ok"] and r.accepted_steps.max() < 1000  # Tsit5 needed ~28 600
    exact = np.stack([[expm(-t * A) @ z for t in r.t] for z in th0])
    np.testing.assert_allclose(r.theta, exact, rtol=0, atol=1e-7)  # measured 9e-9, see GLOBAL
    short = gradient_flow(p, th0, 10.0, times=11, solver="tsit5", max_steps=2000)
    assert list(short.status) == ["max_steps", "max_steps"]
    assert np.isnan(short.theta[:, -1]).all() and np.isfinite(short.theta[:, 0]).all()


def test_a_flow_that_blows_up_is_a_status_not_an_exception():
    p = Problem.from_expression("-x**4 + y**2")
    r = gradient_flow(p, np.array([1.0, 1.0]), 1.0, times=5, solver="tsit5", max_steps=5000)  # x' = 4x³: t* = 1/8
    assert r.status[0] != "ok"
    assert np.isnan(r.theta[0, -1]).all() and np.isnan(r.loss[0, -1])


def test_results_do_not_depend_on_the_chunking():
    p = problems.get("hyperbola")
    th0 = np.random.default_rng(3).uniform(-2, 2, size=(5, 2))
    a = gradient_flow(p, th0, 3.0, times=4, chunk_size=5)
    b = gradient_flow(p, th0, 3.0, times=4, chunk_size=2)
    assert np.array_equal(a.theta, b.theta) and np.array_equal(a.accepted_steps, b.accepted_steps)
    c = gradient_flow(p, th0[3], 3.0, times=4)
    assert np.array_equal(c.theta[0], a.theta[3])


def test_distance_of_gd_to_the_flow_on_a_quadratic_is_the_closed_form():
    """GD: θ_k = (I − ηA)^k θ₀; flow: e^{−kηA} θ₀."""
    A = _spd(3, 4, low=0.2, high=1.5)
    p = _quadratic(A)
    th0 = np.random.default_rng(5).normal(size=(3, 3))
    eta, steps, every = 0.3, 40, 4
    d = distance_to_flow(p, th0, eta, steps, every=every)
    assert list(d.step) == list(range(0, 41, 4))
    M = np.eye(3) - eta * A
    gd = np.stack([[np.linalg.matrix_power(M, k) @ z for k in d.step] for z in th0])
    gf = np.stack([[expm(-k * eta * A) @ z for k in d.step] for z in th0])
    exact = np.linalg.norm(gd - gf, axis=2)
    np.testing.assert_allclose(d.distance, exact, rtol=0, atol=GLOBAL)
    away = exact > d.rtol * (1 + np.linalg.norm(gf, axis=2))
    want = np.where(away.any(axis=1), d.step[np.argmax(away, axis=1)], -1)
    assert np.array_equal(d.departure, want)
    assert (d.departure > 0).any() or (d.departure == -1).all()
    ds = d.to_xarray()
    np.testing.assert_allclose(ds.t.values, d.step * eta)


def test_a_diverging_gd_run_is_an_infinite_distance_not_an_error():
    p = problems.get("hyperbola")
    d = distance_to_flow(p, np.array([[3.0, 3.0], [1.5, 0.2]]), 0.5, 40, every=5)
    assert np.isinf(d.distance[0, -1]) and d.departure[0] == 5  # (3, 3): λ = 18 > 2/η, GD leaves at once
    assert np.isfinite(d.distance[1]).all() and np.isfinite(d.flow_loss).all()


@pytest.mark.parametrize("kwargs, name", [
    ({"t_max": 0.0}, "t_max"), ({"t_max": math.inf}, "t_max"), ({"times": 1}, "times"),
    ({"times": [0.0, 2.0, 1.0]}, "times"), ({"times": [0.0, 9.0]}, "times"), ({"solver": "euler"}, "solver"),
    ({"rtol": -1.0}, "rtol"), ({"max_steps": 0}, "max_steps"),
])
def test_bad_input_to_the_flow_names_the_parameter(kwargs, name):
    p = problems.get("hyperbola")
    args = {"t_max": 5.0, **kwargs}
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of gradient_flow"):
        gradient_flow(p, np.array([1.0, 1.0]), args.pop("t_max"), **args)


@pytest.mark.parametrize("kwargs, name", [({"eta": 0.0}, "eta"), ({"steps": 0}, "steps"), ({"every": 50}, "every"),
                                          ({"rtol": 0.0}, "rtol")])
def test_bad_input_to_the_distance_names_the_parameter(kwargs, name):
    p = problems.get("hyperbola")
    args = {"eta": 0.1, "steps": 10, **kwargs}
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of distance_to_flow"):
        distance_to_flow(p, np.array([1.0, 1.0]), args.pop("eta"), args.pop("steps"), **args)


def test_flow_command_prints_json_and_writes_its_folder(tmp_path, capsys):
    import json

    from gdstab.cli import main

    out = tmp_path / "f"
    assert main(["flow", "--problem", "hyperbola", "--init", "1.5,0.2", "--init", "3,3", "--t-max", "4", "--times", "5",
                 "--eta", "0.5", "--every", "2", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["solver"] == "tsit5" and s["gd"]["steps"] == 8 and len(s["trajectories"]) == 2
    a, b = s["trajectories"]
    assert a["status"] == b["status"] == "ok"
    # x² − y² is conserved: the end point of the flow from (1.5, 0.2) satisfies it
    x, y = a["theta_end"]
    assert x * x - y * y == pytest.approx(1.5**2 - 0.2**2, abs=1e-9)
    assert b["gd"]["gd_diverged"] and b["gd"]["departure_step"] == 2
    for name in ("flow.png", "flow.pdf", "flow.zarr", "distance.zarr", "flow.json"):
        assert (out / name).exists()
    import xarray as xr

    ds = xr.open_zarr(out / "flow.zarr")
    assert ds.status.attrs["flag_meanings"] == "ok max_steps failed" and list(ds.status.values) == [0, 0]
    assert main(["flow", "--problem", "hyperbola", "--t-max", "-1"]) == 2
    assert "'--t-max' parameter of gdstab flow must be a finite float > 0" in capsys.readouterr().err
