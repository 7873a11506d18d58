"""Orbit diagrams, period detection, Lyapunov exponents and basin maps (issue #8), against
closed forms derived here and dense Jacobians."""

import math
import warnings

import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdstab import basins, orbits, problems, trajectories
from gdstab._validation import InvalidParameterError

HYP = problems.get("hyperbola")  # L = ½(1 − xy)²


def two_cycle(eta):
    """The 2-cycle of GD on ½(1 − xy)² on the diagonal x = y = u.

    On the diagonal G(u, u) = (f(u), f(u)) with f(u) = u + η u (1 − u²).  A 2-cycle u+ ↦ u− ↦ u+
    satisfies f(u+) = u−, f(u−) = u+.  With s = u+ + u−, p = u+ u−:
      sum:        s + η (s − (u+³ + u−³)) = s  ⇒ u+³ + u−³ = s ⇒ s (s² − 3p) = s ⇒ s² − 3p = 1;
      difference: −(u+ − u−) = (u+ − u−) + η (u+ − u−)(1 − (u+² + u+u− + u−²))
                  ⇒ −2 = η (1 − (s² − p)) ⇒ s² − p = 1 + 2/η.
    Hence p = 1/η, s² = 1 + 3/η, and u± = [√(1 + 3/η) ± √(1 − 1/η)] / 2 (real for η > 1)."""
    a, b = math.sqrt(1 + 3 / eta), math.sqrt(1 - 1 / eta)
    return (a + b) / 2, (a - b) / 2


def cycle_jacobian_product(eta):
    """DG(u−) DG(u+) at the 2-cycle, from dense autodiff Jacobians of G."""
    up, um = two_cycle(eta)
    with jax.enable_x64(True):
        J = jax.jacobian(lambda th: HYP.gd_map(th, eta))
        return np.asarray(J(np.array([um, um]))) @ np.asarray(J(np.array([up, up])))


@pytest.mark.parametrize("eta", [1.05, 1.1, 1.2])
def test_two_cycle_is_the_attractor_on_the_diagonal(eta):
    up, um = two_cycle(eta)
    with jax.enable_x64(True):
        g_up = np.asarray(HYP.gd_map(np.array([up, up]), eta))
        g_um = np.asarray(HYP.gd_map(np.array([um, um]), eta))
    np.testing.assert_allclose(g_up, [um, um], atol=1e-14)
    np.testing.assert_allclose(g_um, [up, up], atol=1e-14)
    inits = np.array([[1.2, 0.9], [0.5, 1.5], [-1.3, -0.8]])
    ds = orbits.orbit_diagram(HYP, [eta], inits, transient=20_000, record=128, max_period=32)
    assert ds.period.values.tolist() == [[2, 2, 2]]
    for i, sign in enumerate([1, 1, -1]):
        vals = np.unique(np.round(ds.value.values[0, i], 9))
        np.testing.assert_allclose(np.sort(vals), np.sort([sign * up, sign * um]), atol=1e-8)
        # both coordinates equal: the cycle lies on the diagonal
        np.testing.assert_allclose(ds.theta_last.values[0, i, 0], ds.theta_last.values[0, i, 1], atol=1e-8)


def test_first_period_doubling_after_one_is_at_sqrt5_minus_1():
    # independent: a multiplier of the 2-cycle (eigenvalue of DG(u−)DG(u+)) crosses −1 there
    e_star = math.sqrt(5) - 1
    mult = np.linalg.eigvals(cycle_jacobian_product(e_star))
    assert np.min(np.abs(mult + 1)) < 1e-10
    assert np.all(np.abs(np.linalg.eigvals(cycle_jacobian_product(e_star - 0.01))) < 1)
    # from the orbit diagram, to the grid's resolution
    etas = np.linspace(1.0, 1.6, 600)
    ds = orbits.orbit_diagram(HYP, etas, [[1.2, 0.9], [0.5, 1.5]], transient=20_000, record=256)
    points = orbits.bifurcation_points(ds)
    first = next(b for b in points if b["eta"] > 1.0 + 1e-9)
    assert (first["period_before"], first["period_after"]) == (2, 4)
    assert abs(first["eta"] - e_star) <= 1e-3
    assert first["resolution"] <= 1e-3
    # the period-2 window before it
    assert set(ds.dominant_period.values[(etas > 1.01) & (etas < e_star - 2e-3)].tolist()) == {2}


def test_lyapunov_exponents_on_the_two_cycle_and_in_the_chaotic_band():
    eta = 1.2
    up, _ = two_cycle(eta)
    want = np.sort(0.5 * np.log(np.abs(np.linalg.eigvals(cycle_jacobian_product(eta)))))[::-1]
    r = orbits.lyapunov(HYP, [[up, up]], eta, steps=20_000, transient=100, n_exponents="all")
    np.testing.assert_allclose(r.exponents[0], want, atol=1e-9)
    assert r.converged[0] and np.all(r.exponents[0] < 0)
    # chaotic band: positive largest exponent, far outside its error bar
    c = orbits.lyapunov(HYP, [[1.2, 0.9]], 1.5, steps=40_000, transient=2_000)
    assert not c.diverged[0]
    assert c.exponents[0, 0] > 0.1 and c.exponents[0, 0] > 10 * c.stderr[0, 0]
    assert c.history.shape == (1, 20, 1)


def test_lyapunov_of_a_quadratic_is_log_of_the_multipliers():
    # L = ½ θᵀAθ: DG = I − ηA everywhere, exponents log|1 − ηλ_i| (descending)
    q = problems.get("quadratic", spectrum=[1.0, 3.0, 0.5])
    eta = 0.55
    want = np.sort(np.log(np.abs(1 - eta * np.array([1.0, 3.0, 0.5]))))[::-1]
    # a random initial frame; the transient aligns it with the eigenvectors (the misalignment
    # decays like exp(-300 * 0.11), 0.11 = smallest gap between the exponents)
    r = orbits.lyapunov(q, [[0.3, -0.2, 0.1]], eta, steps=200, transient=300, n_exponents="all", key=jax.random.key(3))
    np.testing.assert_allclose(r.exponents[0], want, atol=1e-9)
    one = orbits.lyapunov(q, [[0.3, -0.2, 0.1]], eta, steps=200, transient=300, key=jax.random.key(3))
    assert one.exponents[0, 0] == pytest.approx(want[0], abs=1e-9)
    # without the transient the frame's initial misalignment biases a short average (~1/T)
    raw = orbits.lyapunov(q, [[0.3, -0.2, 0.1]], eta, steps=200, transient=0, n_exponents="all", key=jax.random.key(3))
    assert np.max(np.abs(raw.exponents[0] - want)) > 1e-4
    # sum of all exponents = time average of log|det DG| (an identity of the QR method), on a
    # contracting orbit (η = 1.2: rounding differences between the two loops do not grow)
    r2 = orbits.lyapunov(HYP, [[1.5, 0.4]], 1.2, steps=400, transient=0, n_exponents="all", blocks=10)
    with jax.enable_x64(True):
        J = jax.jit(jax.jacobian(lambda th: HYP.gd_map(th, 1.2)))
        G = jax.jit(lambda th: HYP.gd_map(th, 1.2))
        th = np.array([1.5, 0.4])
        logdet = 0.0
        for _ in range(400):
            logdet += math.log(abs(np.linalg.det(np.asarray(J(th)))))
            th = np.asarray(G(th))
    assert r2.exponents[0].sum() == pytest.approx(logdet / 400, abs=1e-12)


def test_lyapunov_of_a_diverging_trajectory_is_reported_not_raised():
    r = orbits.lyapunov(HYP, [[3.0, 3.0]], 1.5, steps=100, transient=10, blocks=4)
    assert r.diverged[0] and np.isnan(r.exponents[0, 0]) and not r.converged[0]


@pytest.mark.parametrize("p", [1, 2, 3, 5])
def test_detect_period_on_synthetic_orbits(p):
    rng = np.random.default_rng(p)
    cycle = rng.normal(size=(p, 3))
    pts = np.stack([cycle[k % p] for k in range(40)])[:, None, :]
    assert orbits.detect_period(pts, max_period=16).tolist() == [p]


def test_detect_period_codes_and_bad_input():
    rng = np.random.default_rng(0)
    noise = rng.normal(size=(40, 1, 2))
    inf = np.full((40, 1, 2), 1.0)
    inf[5] = np.inf
    far = np.full((40, 1, 2), 1e7)
    got = orbits.detect_period(np.concatenate([noise, inf, far], axis=1), max_period=16)
    assert got.tolist() == [orbits.PERIOD_APERIODIC, orbits.PERIOD_DIVERGED, orbits.PERIOD_DIVERGED]
    with pytest.raises(InvalidParameterError, match="'points'.*2 \\* max_period"):
        orbits.detect_period(noise[:10], max_period=8)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(0, 11), st.integers(0, 2**31 - 1))
def test_property_period_is_found_whatever_the_phase(p, phase, seed):
    rng = np.random.default_rng(seed)
    cycle = rng.uniform(-3, 3, size=(p, 2))
    pts = np.stack([cycle[(k + phase) % p] for k in range(30)])[:, None, :]
    assert orbits.detect_period(pts, max_period=12)[0] == p


def test_short_transient_warns_with_the_number_used():
    with pytest.warns(RuntimeWarning, match="transient = 50 steps"):
        orbits.orbit_diagram(HYP, [1.1], [[1.2, 0.9]], transient=50, record=64, max_period=8)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        orbits.orbit_diagram(HYP, [1.1], [[1.2, 0.9]], transient=800, record=64, max_period=8)
    with pytest.raises(InvalidParameterError, match="'record'"):
        orbits.orbit_diagram(HYP, [1.1], [[1.2, 0.9]], transient=800, record=10, max_period=8)
    with pytest.raises(InvalidParameterError, match="'observe'"):
        orbits.orbit_diagram(HYP, [1.1], [[1.2, 0.9]], transient=800, record=64, max_period=8, observe="w")


def test_orbit_observable_loss_and_variable_names():
    ds = orbits.orbit_diagram(HYP, [1.2], [[1.2, 0.9]], transient=5000, record=64, max_period=8, observe="loss")
    up, um = two_cycle(1.2)
    want = {0.5 * (1 - up * up) ** 2, 0.5 * (1 - um * um) ** 2}
    np.testing.assert_allclose(np.sort(np.unique(np.round(ds.value.values[0, 0], 10))), np.sort(list(want)), atol=1e-9)
    e = problems.Problem.from_expression("0.5*(1-a*b)**2", ["a", "b"], min_value=0.0)
    ds2 = orbits.orbit_diagram(e, [1.2], [[1.2, 0.9]], transient=5000, record=64, max_period=8, observe="b")
    assert ds2.attrs["observable"] == "b" and ds2.period.values[0, 0] == 2


def test_basin_map_equals_the_engine_pixel_by_pixel():
    ds = basins.basin_map(HYP, 0.6, extent=(-2, 2, -1.5, 1.5), resolution=(40, 30), steps=500, classify="sign")
    assert ds.status.shape == (30, 40)
    a, b = np.meshgrid(ds.a.values, ds.b.values)
    r = trajectories(HYP, np.stack([a.ravel(), b.ravel()], axis=1), 0.6, steps=500)
    np.testing.assert_array_equal(ds.status.values.ravel(), r.status)
    np.testing.assert_array_equal(ds.decision_step.values.ravel(), r.step)
    conv = r.status == 1
    # classes: sign pattern (x > 0) + 2 (y > 0); on xy = 1 both signs agree: classes 0 and 3
    assert set(np.unique(ds.minimum_class.values.ravel()[conv])) <= {0, 3}
    np.testing.assert_array_equal(ds.minimum_class.values.ravel()[conv], np.where(r.theta[conv, 0] > 0, 3, 0))
    assert np.all(ds.minimum_class.values.ravel()[~conv] == -1)


def test_basin_map_on_a_plane_through_a_point():
    q = problems.get("quadratic", spectrum=[1.0, 2.0, 4.0])
    u, v = [1.0, 1.0, 0.0], [0.0, 1.0, -1.0]
    ds = basins.basin_map(q, 0.45, center=[0.1, 0.2, 0.3], directions=[u, v], resolution=8, steps=2000)
    assert np.all(ds.status.values == 1)  # η < 2/λ_max = 0.5: every pixel converges
    ds2 = basins.basin_map(q, 0.55, center=[0.1, 0.2, 0.3], directions=[u, v], resolution=8, steps=2000)
    assert np.all(ds2.status.values != 1)  # beyond 2/λ_max nothing with a λ_max component converges


@pytest.mark.parametrize("directions, match", [
    ([[0.0, 0.0], [1.0, 0.0]], "non-zero"),
    ([[1.0, 2.0], [-2.0, -4.0]], "parallel"),
    ([[1.0, 2.0]], "two finite direction vectors"),
    ([[1.0, np.nan], [0.0, 1.0]], "finite"),
])
def test_basin_map_refuses_degenerate_planes(directions, match):
    with pytest.raises(InvalidParameterError, match=f"'directions'.*{match}"):
        basins.basin_map(HYP, 0.5, directions=directions, resolution=4)


def test_basin_map_bad_extent_and_center():
    with pytest.raises(InvalidParameterError, match="'extent'"):
        basins.basin_map(HYP, 0.5, extent=(1, -1, 0, 1), resolution=4)
    with pytest.raises(InvalidParameterError, match="'center'"):
        basins.basin_map(HYP, 0.5, center=[0.0, 0.0, 0.0], resolution=4)
    with pytest.raises(InvalidParameterError, match="'eta'"):
        basins.basin_map(HYP, -0.5, resolution=4)


def test_non_finite_model_outputs_are_statuses():
    """A loss that is NaN on part of the space (the square root of a negative number for
    x < -3): every tool reports trajectories there as diverged instead of raising; the others
    are unaffected."""
    p = problems.Problem.from_expression("0.5*(1-x*y)^2 - 0.01*sqrt(x+3)", ["x", "y"])
    start = [[-3.5, 1.0], [1.2, 0.9]]  # the loss is NaN at the first
    ds = orbits.orbit_diagram(p, [0.3], start, transient=2000, record=64, max_period=8)
    assert ds.period.values[0, 0] == orbits.PERIOD_DIVERGED and ds.period.values[0, 1] != orbits.PERIOD_DIVERGED
    r = orbits.lyapunov(p, start, 0.3, steps=200, transient=100, blocks=4)
    assert r.diverged[0] and np.isnan(r.exponents[0, 0]) and not r.diverged[1]
    from gdstab import sharpness

    t = sharpness.track_sharpness(p, start[0], 0.3, steps=20, every=5)
    assert t.attrs["status"] == "diverged"
    b = basins.basin_map(p, 0.3, extent=(-4, 1, -1, 1), resolution=(6, 3), steps=200)
    assert b.a.values[0] == -4 and np.all(b.status.values[:, 0] == basins.BASIN_CODES["diverged"])


def test_basin_map_on_a_plane_through_network_parameters():
    """A plane through a network's parameter vector spanned by two random directions."""
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(20, 3)), rng.normal(size=(20, 1))

    def loss(params, batch):
        x, y = batch
        h = jax.numpy.tanh(x @ params["w1"])
        return jax.numpy.mean((h @ params["w2"] - y) ** 2)

    p = problems.Problem.from_jax(loss, {"w1": np.zeros((3, 4)), "w2": np.zeros((4, 1))}, (X, Y))
    with jax.enable_x64(True):
        center = np.asarray(p.init(jax.random.key(0), 1))[0]
    u, v = rng.normal(size=(2, p.dim))
    ds = basins.basin_map(p, 0.2, center=center, directions=[u, v], extent=(-1, 1, -1, 1), resolution=(5, 4),
                          steps=300)
    assert ds.status.shape == (4, 5)
    th0 = center[None] + ds.a.values[None, :, None] * u + ds.b.values[:, None, None] * v  # (b, a, d)
    r = trajectories(p, th0.reshape(-1, p.dim), 0.2, steps=300)
    np.testing.assert_array_equal(ds.status.values.ravel(), r.status)


def test_transient_settled_on_synthetic_orbits():
    """A 2-cycle approached through a slowly decaying period-4 wobble is detected as period 4
    while the wobble lasts; the two halves of the record give it away (issue #16 item 2)."""
    k = np.arange(256)
    exact4 = np.stack([np.cos(np.pi * k / 2) + 0.3 * (-1.0) ** k], axis=1)[:, None, :]
    wobble = ((-1.0) ** k + 1e-5 * 0.9999**k * np.cos(np.pi * k / 2))[:, None, None]
    growing = ((-1.0) ** k * (1 + 1e-9 * 1.01**k))[:, None, None]
    pts = np.concatenate([exact4, wobble, growing], axis=1)
    periods = orbits.detect_period(pts, max_period=8, rtol=1e-6)
    assert periods.tolist() == [4, 4, 2]
    assert orbits.transient_settled(pts, periods).tolist() == [True, False, False]


@pytest.mark.slow
def test_bifurcation_intervals_widen_where_the_transient_is_too_short():
    """The issue's command: the first period doubling of 1/2 (1 - xy)^2 is at sqrt(5) - 1
    (closed form, derived in test_period_doubling_multiplier); with the default transient the
    step sizes just below it still look like period 4, and the bracket must still contain it.
    A second method: a transient 20x longer locates every doubling of a wider grid, and each
    of those must lie in the short transient's bracket."""
    ds = orbits.orbit_diagram(HYP, np.linspace(1.2355, 1.2365, 101), [[1.2, 0.9]], transient=20_000)
    (b,) = orbits.bifurcation_points(ds)
    assert b["eta_low"] <= np.sqrt(5) - 1 <= b["eta_high"]
    grid = np.linspace(1.2, 1.3, 201)
    short = orbits.bifurcation_points(orbits.orbit_diagram(HYP, grid, [[1.2, 0.9]], transient=20_000))
    long = [x for x in orbits.bifurcation_points(orbits.orbit_diagram(HYP, grid, [[1.2, 0.9]], transient=400_000))
            if x["reliable"]]
    assert long
    for x in long:
        assert any(s["eta_low"] <= x["eta"] <= s["eta_high"] for s in short), (x, short)


def test_what_bounded_trajectories_were_doing():
    """Issue #16 item 8: `bounded` split into regimes, each case with a closed form.
    slow: 1/2 (1e-4 x^2 + y^2) at eta = 0.5 contracts x by 1 - 5e-5 per step, the loss decreases
    monotonically; chaotic: 4/3 x^3 - 3/2 x^2 at eta = 1 is the logistic map 4x(1 - x), Lyapunov
    exponent ln 2; diverging: 1/2 x^2 at eta = 2.05 grows by 1.05 per step; oscillating: 1/2 x^2
    at eta = 2 flips x forever at constant loss (period detection off)."""
    from gdstab import Criteria, Problem, Status
    from gdstab.orbits import diagnose_bounded

    cases = [
        (problems.get("quadratic", spectrum=[1e-4, 1.0]), [1.0, 1.0], 0.5, Criteria(), "slow"),
        (Problem.from_expression("4/3*x^3-1.5*x^2"), [0.3], 1.0, Criteria(), "chaotic"),
        (problems.get("quadratic"), [0.5], 2.05, Criteria(), "diverging"),
        (problems.get("quadratic"), [0.5], 2.0, Criteria(max_period=1, check_every=32), "oscillating"),
    ]
    for p, x0, eta, crit, want in cases:
        r = trajectories(p, [x0], eta, steps=100, criteria=crit)
        assert r.status[0] == Status.BOUNDED, (want, r.status)
        d = diagnose_bounded(p, r.theta, eta, steps=4000)[0]
        assert d["regime"] == want, (want, d)
        if want == "chaotic":
            assert abs(d["lyapunov"] - math.log(2)) <= 3 * d["lyapunov_stderr"] + 1e-3


def test_trajectories_diagnose_reports_the_regimes_of_bounded_runs(capsys):
    import json

    from gdstab.cli import main

    # 1/2 (1 - xy)^2 at eta = 1.5 from near (1, 1): chaotic (the orbit diagram's aperiodic band)
    assert main(["trajectories", "--problem", "hyperbola", "--eta", "1.5", "--box", "0.9,1.1", "--inits", "20",
                 "--steps", "2000", "--diagnose", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)["results"][0]
    reg = row["bounded_regimes"]
    assert reg["diagnosed"] == round(row["bounded"]["fraction"] * 20) > 0
    assert sum(v for k, v in reg.items() if k != "diagnosed") == reg["diagnosed"] and reg["chaotic"] == reg["diagnosed"]


def test_zhus_example_is_at_the_edge_of_stability_then_slow():
    """Zhu et al. (2022): GD on 1/4 (x^2 y^2 - 1)^2 at eta = 0.1 from (4, 0.1) catapults, then its
    sharpness self-stabilises just below 2/eta = 20 while the loss keeps oscillating down; once
    the oscillation has died out the loss decreases monotonically.  Checked here with the closed-form
    Hessian and a NumPy continuation written in the test, then against diagnose_bounded."""
    from gdstab import Status
    from gdstab.orbits import diagnose_bounded

    def grad(x, y):
        r = x * x * y * y - 1
        return np.array([r * x * y * y, r * x * x * y])

    def loss(x, y):
        return 0.25 * (x * x * y * y - 1) ** 2

    def top_eig(x, y):
        H = np.array([[3 * x**2 * y**4 - y**2, 4 * x**3 * y**3 - 2 * x * y],
                      [4 * x**3 * y**3 - 2 * x * y, 3 * x**4 * y**2 - x**2]])
        return float(np.linalg.eigvalsh(H)[-1])

    z, eta = problems.get("zhu"), 0.1
    for T, want in ((600, "edge_of_stability"), (2000, "slow")):
        r = trajectories(z, [[4.0, 0.1]], eta, steps=T)
        assert r.status[0] == Status.BOUNDED
        th = r.theta[0].copy()
        path = [th]
        for _ in range(400):
            th = th - eta * grad(*th)
            path.append(th)
        L = np.array([loss(*p) for p in path[200:]])  # the second half, as diagnose_bounded reads it
        rises = int(np.sum(np.diff(L) > 1e-12 * (1 + np.abs(L[:-1]))))
        s = top_eig(*path[-1])
        d = diagnose_bounded(z, r.theta, eta, steps=400)[0]
        assert d["sharpness"] == pytest.approx(s, rel=1e-8) and d["increases"] == rises
        if want == "edge_of_stability":
            assert rises > 0 and L[-10:].mean() < L[:10].mean() and abs(s * eta / 2 - 1) <= 0.1
        else:
            assert rises == 0 and L[-1] < L[0]
        assert d["regime"] == want
