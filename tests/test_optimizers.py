"""Update rules on the one update loop (issue #15): parity with optax called directly, the
classification on the full state, the closed-form boundaries, Lyapunov exponents, sweeps and
bad input.

References here are written in the tests: per-trajectory loops that call optax with no vmap and
no gdstab engine, NumPy recurrences written from the update equations, and companion matrices
built by applying those recurrences to unit vectors."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gdstab
from gdstab import Criteria, Status, problems, trajectories
from gdstab._validation import InvalidParameterError
from gdstab.dynamics import iterate, sgd_batch_indices, trace_count
from gdstab.optimizers import GD, Rule, parse_rule

jax = pytest.importorskip("jax")
optax = pytest.importorskip("optax")
import jax.numpy as jnp  # noqa: E402

#: nothing settles and nothing is periodic: every trajectory runs its T steps
RUN_ALL = Criteria(tol=1e-300, max_period=1, check_every=32)

SPECS = ["momentum:0.9", "nesterov:0.5", "rmsprop:0.9,0.1", "adam:0.9,0.999,0.1"]


def _optax_of(spec: str, eta: float):
    """The optax transformation a user would write for ``spec`` (the PyTorch forms)."""
    r = parse_rule(spec)
    if r.name == "momentum":
        return optax.sgd(eta, momentum=r["beta"])
    if r.name == "nesterov":
        return optax.sgd(eta, momentum=r["beta"], nesterov=True)
    if r.name == "rmsprop":
        return optax.rmsprop(eta, decay=r["rho"], eps=r["eps"], eps_in_sqrt=False)
    return optax.adam(eta, b1=r["b1"], b2=r["b2"], eps=r["eps"])


def _optax_loop(problem, theta0, etas, steps, tx_of, batch=None, key_data=None):
    """One trajectory at a time, optax called directly: no vmap, no gdstab engine."""
    grad = jax.jit(jax.grad(problem.loss))
    batch_grad = jax.jit(jax.grad(problem.batch_loss)) if batch else None
    out = []
    for i in range(theta0.shape[0]):
        tx = tx_of(float(etas[i]))
        th = jnp.asarray(theta0[i])
        state = tx.init(th)
        for t in range(steps):
            if batch is None:
                g = grad(th)
            else:
                g = batch_grad(th, sgd_batch_indices(jnp.asarray(key_data[i]), t, problem.n_samples, batch))
            upd, state = tx.update(g, state, th)
            th = optax.apply_updates(th, upd)
        out.append(np.asarray(th))
    return np.stack(out)


def _mlp():
    from gdstab.problems.data import mnist

    d = mnist((0, 1), n=6)
    return problems.mlp(d, depth=2, width=4, activation="tanh", loss="mse")


# ----------------------------------------------------------------------------- parity with optax


@pytest.mark.parametrize("spec", SPECS)
def test_ensemble_equals_a_per_trajectory_optax_loop(spec):
    p = _mlp()
    theta0 = np.asarray(p.init(jax.random.key(0), 3))
    # Step sizes below the rule's threshold at these points (as in the GD parity test: where the
    # map expands, rounding differences of two correct implementations grow beyond 1e-12 in 50
    # steps).  λ_max(H) <= 181 here; for the adaptive rules the threshold is on λ_max(P⁻¹H) with
    # P >= eps, so eps = 0.1 and η <= 4e-4 keep η λ_max(P⁻¹H) <= 0.72 < 2.  (With eps = 1e-6 the
    # coordinates whose gradient is ~1e-10 take steps of ~η, sign-like, and rmsprop's
    # rounding differences reach 5e-10: η λ_max(P⁻¹H) is then far above the threshold.)
    etas = np.array([1e-4, 2e-4, 4e-4]) if parse_rule(spec).adaptive else np.array([0.001, 0.002, 0.004])
    res = trajectories(p, theta0, etas, steps=50, criteria=RUN_ALL, backend="jax", optimizer=spec)
    assert np.all(res.status == Status.BOUNDED) and np.all(res.step == 50)
    ref = _optax_loop(p, theta0, etas, 50, lambda e: _optax_of(spec, e))
    np.testing.assert_allclose(res.theta, ref, rtol=0, atol=1e-12)
    assert res.optimizer == parse_rule(spec) and res.buffers.shape[0] == 3


def test_a_users_optax_factory_runs_on_the_same_loop():
    p = _mlp()
    theta0 = np.asarray(p.init(jax.random.key(1), 2))
    rule = Rule.from_optax(optax.lion, b1=0.9, b2=0.99)
    etas = np.array([1e-4, 2e-4])
    res = trajectories(p, theta0, etas, steps=50, criteria=RUN_ALL, backend="jax", optimizer=rule)
    ref = _optax_loop(p, theta0, etas, 50, lambda e: optax.lion(e, b1=0.9, b2=0.99))
    np.testing.assert_allclose(res.theta, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("spec", ["momentum:0.9", "adam:0.9,0.999,0.1"])
def test_sgd_with_a_rule_equals_the_optax_loop_with_per_trajectory_keys(spec):
    from gdstab.sweep.keys import trajectory_keys

    p = _mlp()
    theta0 = np.asarray(p.init(jax.random.key(2), 3))
    etas = np.array([1e-4, 2e-4, 4e-4]) if parse_rule(spec).adaptive else np.array([0.001, 0.002, 0.004])
    kd = np.concatenate([trajectory_keys(0, {}, [i], e) for i, e in enumerate(etas)])
    res = trajectories(p, theta0, etas, steps=50, criteria=RUN_ALL, backend="jax", optimizer=spec, batch_size=4,
                       keys=kd)
    ref = _optax_loop(p, theta0, etas, 50, lambda e: _optax_of(spec, e), batch=4, key_data=kd)
    np.testing.assert_allclose(res.theta, ref, rtol=0, atol=1e-12)


def test_iterate_follows_the_rule():
    p = problems.get("hyperbola")
    th0 = np.array([[1.2, 0.9], [-0.5, 1.5]])
    path = iterate(p, th0, 0.3, steps=40, optimizer="nesterov:0.7")
    ref = _optax_loop(p, th0, [0.3, 0.3], 40, lambda e: optax.sgd(e, momentum=0.7, nesterov=True))
    np.testing.assert_allclose(path[-1], ref, rtol=0, atol=1e-13)


def test_no_recompilation_for_new_eta_beta_or_seed():
    p = problems.get("hyperbola")
    a = trajectories(p, p.init(jax.random.key(0), 64), 0.5, steps=200, optimizer="momentum:0.5")
    n = trace_count(p)
    b = trajectories(p, p.init(jax.random.key(0), 64), 0.5, steps=200, optimizer="momentum:0.5")
    np.testing.assert_array_equal(a.theta, b.theta)
    trajectories(p, p.init(jax.random.key(1), 64), 0.7, steps=200, optimizer="momentum:0.9")
    trajectories(p, p.init(jax.random.key(2), 64), np.linspace(0.1, 1.2, 64), steps=300, optimizer="momentum:0.0")
    assert trace_count(p) == n
    trajectories(p, p.init(jax.random.key(0), 64), 0.5, steps=200, optimizer="adam:0.9,0.999")
    m = trace_count(p)
    assert m == n + 1  # a new kind of rule compiles once ...
    trajectories(p, p.init(jax.random.key(3), 64), 0.05, steps=200, optimizer="adam:0.5,0.99,1e-4")
    assert trace_count(p) == m  # ... and new hyperparameters of it do not


def test_gd_spelled_as_a_rule_is_plain_gd_bit_for_bit():
    p = problems.get("hyperbola")
    th = np.asarray(p.init(jax.random.key(4), 256))
    a = trajectories(p, th, 0.9, steps=500, backend="jax")
    b = trajectories(p, th, 0.9, steps=500, backend="jax", optimizer="gd")
    np.testing.assert_array_equal(a.theta, b.theta)
    np.testing.assert_array_equal(a.status, b.status)
    assert b.buffers is None and b.optimizer == GD


# ---------------------------------------------------------------------- classification on the state


def test_converged_means_the_buffers_are_at_rest_too():
    """Heavy ball on L = x²/2 from x0 = 5e-4 at η = 1e-5: the θ-step η‖v‖ ≈ 5e-9 is below tol
    from the first step (θ alone would look settled), but the buffer v still moves by ≈ g per
    step, so the full state is not at rest."""
    p = problems.get("quadratic", spectrum=[1.0])
    crit = Criteria(tol=1e-8, window=8)
    res = trajectories(p, np.array([[5e-4]]), 1e-5, steps=2000, criteria=crit, optimizer="momentum:0.5")
    assert res.status[0] == Status.BOUNDED  # not settled within the budget
    gd = trajectories(p, np.array([[5e-4]]), 1e-5, steps=2000, criteria=crit, backend="jax")
    assert gd.step[0] < 20  # plain GD's displacement test is met at once (then undecided by the eta rule)


@pytest.mark.parametrize("spec", SPECS[:2])
def test_a_converged_state_satisfies_the_definition(spec):
    """At the decision step of a converged trajectory one more step of the rule (applied with
    optax, outside the engine) moves the full state (θ, buffers) by at most tol."""
    p = problems.get("quadratic", spectrum=[1.0, 3.0])
    th0 = np.asarray(p.init(jax.random.key(5), 16))
    crit = Criteria()
    res = trajectories(p, th0, 0.2, steps=20_000, criteria=crit, optimizer=spec)
    assert np.all(res.status == Status.CONVERGED)
    r = parse_rule(spec)
    A = np.diag([1.0, 3.0])
    for th, v in zip(res.theta, res.buffers):
        g = A @ th
        v2 = r["beta"] * v + g
        th2 = th - 0.2 * (v2 if r.name == "momentum" else g + r["beta"] * v2)
        assert math.hypot(np.linalg.norm(th2 - th), np.linalg.norm(v2 - v)) <= crit.tol


def test_diverging_buffers_are_a_status_not_an_exception():
    p = problems.get("quadratic", spectrum=[1.0, 3.0])
    res = trajectories(p, np.array([[1.0, 1.0]]), 5.0, steps=500, optimizer="adam:0.9,0.999")
    assert res.status[0] in (Status.DIVERGED, Status.PERIODIC, Status.BOUNDED)
    res = trajectories(p, np.array([[1.0, 1.0]]), 1.5, steps=500, optimizer="momentum:0.9")
    assert res.status[0] == Status.DIVERGED


# ------------------------------------------------------------------------- closed-form boundaries


def _companion_radius(name: str, beta: float, eta: float, lam: float) -> float:
    """Spectral radius of the one-step map on (x, v) for L = λx²/2, from the update equations."""
    def step(s):
        x, v = s
        g = lam * x
        v = beta * v + g
        return np.array([x - eta * (v if name == "momentum" else g + beta * v), v])

    M = np.column_stack([step(e) for e in np.eye(2)])
    return float(np.max(np.abs(np.linalg.eigvals(M))))


@pytest.mark.parametrize("name", ["momentum", "nesterov"])
@pytest.mark.parametrize("beta", [0.0, 0.5, 0.9])
def test_the_converged_diverged_boundary_is_where_the_companion_radius_crosses_one(name, beta):
    spectrum = (1.0, 3.0)
    grid = np.linspace(0.01, 4.0, 20_000)
    rho = np.array([max(_companion_radius(name, beta, e, lam) for lam in spectrum) for e in grid])
    edge = grid[np.argmax(rho >= 1.0)]  # the first grid step size where the radius reaches 1
    p = problems.get("quadratic", spectrum=list(spectrum))
    th0 = np.asarray(p.init(jax.random.key(6), 32))
    for eta, expect in ((edge * 0.98, Status.CONVERGED), (edge * 1.02, Status.DIVERGED)):
        r = max(_companion_radius(name, beta, eta, lam) for lam in spectrum)
        steps = int(min(200_000, 60 / abs(math.log(r))))  # enough to contract (or blow up) by e^-60
        res = trajectories(p, th0, eta, steps=steps, optimizer=f"{name}:{beta}")
        assert np.all(res.status == expect), (eta, r, np.unique(res.status))


def test_heavy_ball_traps_nothing_on_the_hyperbola_above_one_plus_beta():
    """½(1 − xy)²: inf_M λ_max = 2, so heavy ball's critical step size is (2 + 2β)/2 = 1 + β."""
    p = problems.get("hyperbola")
    th0 = np.asarray(p.init(jax.random.key(7), 4000))
    above = trajectories(p, th0, 1.55, steps=20_000, optimizer="momentum:0.5")
    below = trajectories(p, th0, 1.45, steps=20_000, optimizer="momentum:0.5")
    assert above.count("converged") == 0
    assert below.count("converged") > 0


def test_lyapunov_exponents_of_heavy_ball_on_a_quadratic_are_log_companion_radii():
    from gdstab.orbits import lyapunov

    p = problems.get("quadratic", spectrum=[1.0, 3.0])
    beta = 0.5
    for eta in (0.02, 0.05, 0.99):
        blocks = []
        for lam in (1.0, 3.0):
            M = np.array([[1 - eta * lam, -eta * beta], [lam, beta]])  # on (x, v), from x' = x - eta (beta v + g)
            blocks += list(np.log(np.abs(np.linalg.eigvals(M))))
        expect = np.sort(blocks)[::-1]
        real = eta == 0.02  # all four eigenvalues real and distinct: the full spectrum converges exponentially
        # (a random initial frame: the identity's columns are not generic for this decoupled map)
        r = lyapunov(p, np.array([[1.0, 1.0]]), eta, steps=20_000, transient=1000,
                     n_exponents="all" if real else 1, optimizer=f"momentum:{beta}", key=jax.random.key(0))
        got = r.exponents[0]
        np.testing.assert_allclose(got, expect[: got.size], rtol=0, atol=1e-9)


@pytest.mark.parametrize("spec", ["adam:0.9,0.999", "rmsprop:0.99"])
def test_frozen_preconditioner_verdict_matches_iterating_the_recurrence(spec):
    from gdstab.stability import frozen_preconditioner_stability

    rule = parse_rule(spec)
    b1 = rule["b1"] if rule.name == "adam" else 0.0
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    P = np.array([0.5, 2.0])
    mu = np.max(np.linalg.eigvals(np.diag(1 / P) @ H).real)
    for f in (0.98, 1.02):
        eta = f * rule.threshold / mu
        verdict = frozen_preconditioner_stability(rule, eta, H, P)
        assert verdict["lambda_max_preconditioned"] == pytest.approx(mu, rel=1e-12)
        th, m = np.array([1.0, -1.0]), np.zeros(2)
        for _ in range(50_000):
            m = b1 * m + (1 - b1) * (H @ th)
            th = th - eta * m / P
            if np.linalg.norm(th) > 1e6 or np.linalg.norm(th) < 1e-12:
                break
        assert verdict["linearly_stable"] == (np.linalg.norm(th) < 1e-12), (f, np.linalg.norm(th))


# ------------------------------------------------------------------------------ other tools


@pytest.mark.parametrize("b2, eps", [(0.999, 1e-8), (0.5, 0.3)])
def test_preconditioned_sharpness_against_an_independent_adam(b2, eps):
    """Both settings run in one process: the compiled tracker is shared by every Adam, so the
    second must use its own beta2 and eps (the first version used those of the first run)."""
    from gdstab.sharpness import track_sharpness

    A = np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 0.5], [0.0, 0.5, 1.0]])
    p = problems.get("quadratic", matrix=A.tolist())
    th0 = np.array([1.0, -2.0, 0.5])
    eta, b1 = 0.01, 0.9
    ds = track_sharpness(p, th0, eta, steps=40, every=10, optimizer=f"adam:{b1},{b2},{eps}")
    th, m, s = th0.copy(), np.zeros(3), np.zeros(3)
    expect = [np.nan]
    for t in range(1, 41):
        g = A @ th
        m = b1 * m + (1 - b1) * g
        s = b2 * s + (1 - b2) * g * g
        P = np.sqrt(s / (1 - b2**t)) + eps
        th = th - eta * (m / (1 - b1**t)) / P
        if t % 10 == 0:
            expect.append(np.max(np.linalg.eigvals(np.diag(1 / P) @ A).real))
    np.testing.assert_allclose(ds.preconditioned_sharpness.values, expect, rtol=1e-10)
    np.testing.assert_allclose(ds.theta_last.values, th, rtol=0, atol=1e-12)
    assert ds.attrs["threshold"] == pytest.approx((2 + 2 * b1) / (1 - b1) / eta)


def test_critical_step_size_of_heavy_ball_on_a_quadratic_is_c_over_lambda_max():
    from gdstab.critical import critical_step_size

    p = problems.get("quadratic", spectrum=[1.0, 3.0])
    r = critical_step_size(p, eta_low=0.1, eta_high=3.0, inits=8, steps=20_000, optimizer="momentum:0.5")
    assert r.fraction_interval[0] <= 1.0 <= r.fraction_interval[1] * (1 + 1e-9)
    assert r.eta_sharpness == pytest.approx(3.0 / 3.0, rel=1e-9)


def test_basin_map_with_a_rule_matches_trajectories():
    from gdstab.basins import basin_map

    p = problems.get("hyperbola")
    ds = basin_map(p, 1.2, resolution=8, steps=1000, optimizer="momentum:0.5")
    a, b = np.meshgrid(ds.a.values, ds.b.values)
    res = trajectories(p, np.stack([a.ravel(), b.ravel()], 1), 1.2, steps=1000, optimizer="momentum:0.5")
    np.testing.assert_array_equal(ds.status.values.ravel(), res.status)
    assert ds.attrs["optimizer"] == "momentum:0.5"


# ---------------------------------------------------------------------------------- sweeps


def test_a_sweep_with_beta_on_the_grid_equals_direct_runs(tmp_path):
    from gdstab.sweep import load_config, open_results, run

    cfg = load_config("""
[problem]
name = "hyperbola"
[grid]
eta = [0.8, 1.3]
inits = 64
[grid.options]
beta = [0.0, 0.5]
[run]
steps = 2000
[optimizer]
name = "momentum"
""")
    assert cfg.optimizer.name == "momentum" and cfg.rule_at(1)["beta"] == 0.5
    assert load_config(cfg.to_toml()) == cfg and "beta" not in cfg.to_dict()["optimizer"]  # round trip
    run(cfg, tmp_path / "s", quiet=True)
    ds = open_results(tmp_path / "s")
    np.testing.assert_array_equal(ds.init_theta.values[0], ds.init_theta.values[1])  # the same points for every beta
    for i, beta in enumerate((0.0, 0.5)):
        for j, eta in enumerate((0.8, 1.3)):
            res = trajectories(problems.get("hyperbola"), ds.init_theta.values[i], eta, steps=2000,
                               optimizer=f"momentum:{beta}")
            np.testing.assert_array_equal(ds.status.values[i, j], res.status)


def test_configs_without_an_optimizer_table_keep_their_digest():
    from gdstab.sweep import load_config

    text = '[problem]\nname = "hyperbola"\n[grid]\neta = 0.5\ninits = 4\n[run]\nsteps = 10\n'
    a = load_config(text)
    b = load_config(text + '[optimizer]\nname = "gd"\n')
    assert a.optimizer == GD and "optimizer" not in a.to_dict() and a.digest() == b.digest()
    c = load_config(text + '[optimizer]\nname = "adam"\nb1 = 0.5\n')
    assert c.digest() != a.digest() and load_config(c.to_toml()) == c


@pytest.mark.parametrize("table, match", [
    ('[optimizer]\nname = "lion"\n', "optimizer.name"),
    ('[optimizer]\nname = "momentum"\nrho = 0.9\n', "Unknown key 'optimizer.rho'"),
    ('[optimizer]\nname = "momentum"\nbeta = 1.0\n', "optimizer.beta"),
    ('[optimizer]\nname = "rmsprop"\nrho = 0.0\n', "optimizer.rho"),
    ('[optimizer]\nname = "adam"\neps = 0.0\n', "optimizer.eps"),
    ('[optimizer]\nname = "adam"\nb1 = "x"\n', "optimizer.b1"),
    ('[optimizer]\nname = "momentum"\nbeta = 0.5\n[grid.options]\nbeta = [0.1]\n', "both fixed"),
    ('[optimizer]\nname = "momentum"\n[grid.options]\nbeta = [0.1, 1.5]\n', "grid.options.beta"),
    ('[grid.options]\nbeta = [0.1]\n', "Unknown key 'grid.options.beta'"),
])
def test_bad_optimizer_tables_are_refused_with_the_key(table, match):
    from gdstab.sweep import ConfigError, load_config

    base = '[problem]\nname = "hyperbola"\n[grid]\neta = 0.5\ninits = 4\n[run]\nsteps = 10\n'
    if "[grid.options]" in table:  # the sub-table must follow [grid]
        opt, grid_opts = table.split("[grid.options]")
        text = base.replace("[run]", "[grid.options]" + grid_opts + "[run]") + opt
    else:
        text = base + table
    with pytest.raises(ConfigError, match=match.replace("(", r"\(")):
        load_config(text)


# ---------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("kwargs, match", [
    ({"name": "momentum", "hyper": {"beta": 1.0}}, "'beta' parameter of the momentum rule"),
    ({"name": "momentum", "hyper": {"beta": -0.1}}, "'beta' parameter"),
    ({"name": "rmsprop", "hyper": {"rho": 1.0}}, "'rho' parameter"),
    ({"name": "adam", "hyper": {"eps": 0.0}}, "'eps' parameter"),
    ({"name": "adam", "hyper": {"beta": 0.5}}, "a hyperparameter of adam"),
    ({"name": "sgd"}, "'name' parameter of Rule"),
])
def test_bad_rules_are_refused_with_the_standard_message(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        Rule(**kwargs)


def test_bad_optax_factories_are_refused():
    with pytest.raises(InvalidParameterError, match="'factory' parameter of Rule.from_optax"):
        Rule.from_optax(42)
    with pytest.raises(InvalidParameterError, match="'factory' parameter"):
        Rule.from_optax(optax.sgd, nonsense=1.0)
    with pytest.raises(InvalidParameterError, match="learning_rate"):
        Rule.from_optax(optax.sgd, learning_rate=0.1)


def test_trajectories_refuses_a_bad_optimizer_and_native_with_a_rule():
    p = problems.get("hyperbola")
    with pytest.raises(InvalidParameterError, match="'optimizer' parameter of trajectories"):
        trajectories(p, np.ones((1, 2)), 0.5, steps=10, optimizer="adam:2")
    with pytest.raises(InvalidParameterError, match="'optimizer' parameter of trajectories"):
        trajectories(p, np.ones((1, 2)), 0.5, steps=10, optimizer=3)
    with pytest.raises(InvalidParameterError, match="plain GD only"):
        trajectories(p, np.ones((1, 2)), 0.5, steps=10, optimizer="momentum:0.5", backend="native")


@pytest.mark.parametrize("argv", [
    ["trajectories", "--problem", "hyperbola", "--eta", "0.5", "--optimizer", "momentum:1"],
    ["orbit", "--problem", "hyperbola", "--eta", "0.5", "--optimizer", "adam:0.9,0.999,0"],
    ["lyapunov", "--problem", "hyperbola", "--eta", "0.5", "--optimizer", "rmsprop:"],
    ["basin", "--problem", "hyperbola", "--eta", "0.5", "--optimizer", "nesterov:a"],
    ["sharpness", "--problem", "hyperbola", "--eta", "0.5", "--optimizer", "sgd"],
    ["critical-lr", "--problem", "hyperbola", "--optimizer", "momentum:0.5,0.5"],
    ["trajectories", "--problem", "hyperbola", "--eta", "0.5", "--optimizer", "momentum:0.5", "--diagnose"],
])
def test_cli_refuses_bad_optimizers_with_exit_code_two(argv, capsys):
    from gdstab.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "--optimizer" in err and "Got" in err


def test_cli_trajectories_with_a_rule_prints_and_reports_it(capsys):
    import json

    from gdstab.cli import main

    assert main(["trajectories", "--problem", "hyperbola", "--eta", "1.45,1.55", "--inits", "500", "--steps",
                 "20000", "--optimizer", "momentum:0.5", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["optimizer"] == {"name": "momentum", "beta": 0.5}
    assert d["results"][0]["converged"]["fraction"] > 0 and d["results"][1]["converged"]["fraction"] == 0
    assert gdstab.optimizers.parse_rule("momentum:0.5").threshold == 3.0
