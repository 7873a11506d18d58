"""Hyperparameter maps (issue #19, item 3): per-group learning rates, η x initialisation scale,
η x an optimizer's hyperparameter, checked pixel by pixel against closed forms and direct runs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import gdstab
from gdstab import Criteria, Problem, Status, problems
from gdstab._validation import InvalidParameterError
from gdstab.hypermaps import hyperparameter_map
from gdstab.optimizers import group_rule
from gdstab.problems import parameter_groups


def _separable(a=4.0, b=1.0):
    def loss(q, data):
        return 0.5 * (a * q["x"] ** 2 + b * q["y"] ** 2)

    with jax.enable_x64(True):
        return Problem.from_jax(loss, {"x": jnp.zeros(()), "y": jnp.zeros(())}, None, min_value=0.0)


def test_per_group_learning_rates_on_a_separable_quadratic_are_the_closed_form_rectangle():
    """L = ½(4x² + y²), step sizes η·m_x and η·m_y: GD converges iff 4η m_x < 2 and η m_y < 2
    (each coordinate is its own 1-D map x -> (1 − 4η m_x) x), diverges if either exceeds 2."""
    p = _separable()
    # grids that miss the thresholds m_x = 1 and m_y = 4, where GD neither converges nor diverges
    mx, my = np.linspace(0.05, 2.95, 30), np.linspace(0.1, 6.0, 40)
    ds = hyperparameter_map(p, ("lr:x", mx), ("lr:y", my), eta=0.5, theta0=[0.5, 0.5], steps=3000)
    X, Y = np.meshgrid(mx, my)
    conv = (4 * 0.5 * X < 2) & (0.5 * Y < 2)
    div = (4 * 0.5 * X > 2) | (0.5 * Y > 2)
    assert np.array_equal(ds.status.values == Status.CONVERGED, conv)
    assert np.array_equal(ds.status.values == Status.DIVERGED, div)
    assert ds.attrs["x_name"] == "lr:x" and ds.x.attrs["long_name"] == "lr:x"


def test_the_group_rule_with_unit_multipliers_is_plain_gd_to_the_bit():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 2))
    p = problems.mlp(depth=2, width=5, data=(X, Y), activation="tanh", loss="mse")
    g = parameter_groups(p)
    assert list(g) == ["layer0", "layer1", "layer2"] and sum(v.size for v in g.values()) == p.dim
    idx = np.zeros(p.dim, int)
    for i, ix in enumerate(g.values()):
        idx[ix] = i
    with jax.enable_x64(True):
        th = np.asarray(p.init(jax.random.key(0), 6))
    crit = Criteria(tol=1e-300, max_period=1, check_every=32)
    a = gdstab.trajectories(p, th, 0.1, steps=60, optimizer=group_rule(idx, list(g)), criteria=crit)
    b = gdstab.trajectories(p, th, 0.1, steps=60, backend="jax", criteria=crit)
    assert np.array_equal(a.theta, b.theta)
    # a multiplier m on one layer is GD with that layer's step size η·m, written out in the test
    m = np.array([1.0, 0.5, 2.0])
    c = gdstab.trajectories(p, th, 0.1, steps=20, optimizer=group_rule(idx, list(g)), hyper=m, criteria=crit)
    grad = jax.jit(jax.vmap(jax.grad(p.loss)))
    with jax.enable_x64(True):
        x = th.copy()
        for _ in range(20):
            x = x - 0.1 * m[idx][None, :] * np.asarray(grad(x))
    np.testing.assert_allclose(c.theta, x, rtol=0, atol=1e-13)


def test_eta_by_init_scale_equals_the_runs_it_stands_for():
    p = problems.get("hyperbola")
    etas, scales = np.linspace(0.2, 1.4, 7), np.linspace(0.5, 2.0, 5)
    base = np.array([1.3, 0.4])
    ds = hyperparameter_map(p, ("eta", etas), ("init_scale", scales), theta0=base, steps=500)
    E, S = np.meshgrid(etas, scales)
    direct = gdstab.trajectories(p, S.reshape(-1, 1) * base[None, :], E.reshape(-1), steps=500)
    assert np.array_equal(ds.status.values.reshape(-1), np.asarray(direct.status, dtype=np.int8))
    np.testing.assert_array_equal(ds.final_loss.values.reshape(-1), direct.loss)


def test_eta_by_momentum_beta_equals_one_rule_per_column():
    p = problems.get("hyperbola")
    etas, betas = np.linspace(0.1, 1.6, 6), np.array([0.0, 0.5, 0.9])
    ds = hyperparameter_map(p, ("eta", etas), ("beta", betas), optimizer="momentum:0.9", theta0=[1.2, 0.3], steps=400)
    for j, beta in enumerate(betas):
        direct = gdstab.trajectories(p, np.tile([1.2, 0.3], (6, 1)), etas, steps=400, optimizer=f"momentum:{beta}")
        assert np.array_equal(ds.status.values[j], np.asarray(direct.status, dtype=np.int8))


def test_parameter_groups_name_layers_modules_and_leaves():
    with jax.enable_x64(True):
        q = Problem.from_jax(lambda pr, d: jnp.sum(pr["a"]["w"] ** 2) + jnp.sum(pr["b"] ** 2),
                             {"a": {"w": jnp.zeros((2, 3))}, "b": jnp.zeros(4)}, None)
    assert {k: v.tolist() for k, v in parameter_groups(q).items()} == {"a.w": list(range(6)), "b": [6, 7, 8, 9]}
    with pytest.raises(InvalidParameterError, match="'problem' parameter of parameter_groups"):
        parameter_groups(problems.get("hyperbola"))


@pytest.mark.parametrize("kwargs, name", [
    ({"x": ("eta", [0.5])}, "x"), ({"x": ("eta", [0.5, 0.5])}, "x"), ({"y": ("eta", [0.1, 0.2])}, "y"),
    ({"x": ("lr:z", [0.5, 1.0]), "eta": 0.5}, "x"),
    ({"x": ("lr:x", [0.5, 1.0]), "optimizer": "momentum", "eta": 0.5}, "optimizer"), ({"eta": 0.5}, "eta"),
    ({"x": ("init_scale", [0.5, 1.0]), "y": ("lr:y", [0.5, 1.0]), "eta": None}, "eta"),
    ({"y": ("beta", [0.5, 1.5]), "optimizer": "momentum"}, "x"), ({"y": ("gamma", [0.1, 0.2])}, "y"),
])
def test_bad_axes_are_refused_naming_the_parameter(kwargs, name):
    p = _separable()
    args = {"x": ("eta", [0.1, 0.2]), "y": ("init_scale", [0.5, 1.0]), "steps": 10, "eta": None, **kwargs}
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of hyperparameter_map"):
        hyperparameter_map(p, args.pop("x"), args.pop("y"), **args)


def test_hypermap_command_writes_a_map_the_boundary_command_reads(tmp_path, capsys):
    import json

    from gdstab.cli import main

    out = tmp_path / "h"
    assert main(["hypermap", "--problem", "hyperbola", "--x", "eta:0.1:1.5:40", "--y", "init_scale:0.5:2:40",
                 "--steps", "300", "--quiet", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["x"]["name"] == "eta" and len(s["y"]["values"]) == 40 and abs(sum(v["fraction"] for v in s["fractions"].values()) - 1) < 1e-12
    assert all(v["low"] <= v["fraction"] <= v["high"] for v in s["fractions"].values())
    assert main(["boundary", str(out), "--json"]) == 0
    b = json.loads(capsys.readouterr().out)
    assert b["map"].endswith("hypermap.zarr") and b["shape"] == [40, 40]
    assert main(["hypermap", "--problem", "hyperbola", "--x", "eta:1:0.1:40", "--y", "init_scale:0.5:2:4"]) == 2
    assert "'--x' parameter of gdstab hypermap must be NAME:START:STOP:NUM" in capsys.readouterr().err
