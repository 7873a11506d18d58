"""The engine against closed forms, an independent reference implementation, and itself."""

import math

import jax
import numpy as np
import pytest

from gdstab import Criteria, Problem, Status, problems, trajectories
from gdstab._validation import InvalidParameterError
from gdstab import _native
from gdstab._reference import TOY_GRADS_NP, TOY_GRADS_PY, numpy_engine, python_trajectory
from gdstab.dynamics import trace_count

BACKENDS = ["jax"] + (["native"] if _native.available() else [])


def test_native_kernels_were_built():
    # the README's install builds them; a missing compiler would silently cost speed
    assert _native.available(), _native.unavailable_reason()


# ----------------------------------------------------------------------------- closed forms


@pytest.mark.parametrize("a", [4.0, 3.0, 0.7])
def test_quadratic_converges_below_two_over_a_cycles_at_it_diverges_above(a):
    p = problems.get("quadratic", a=a)
    x0 = np.array([[0.9], [-0.3], [1.7]])
    crit = 2.0 / a  # the GD map x -> (1 - eta a) x: contraction iff |1 - eta a| < 1
    below = trajectories(p, x0, 0.9 * crit, steps=2000)
    assert np.all(below.status == Status.CONVERGED)
    np.testing.assert_allclose(below.theta, 0.0, atol=1e-7)
    at = trajectories(p, x0, crit, steps=2000, backend="jax")
    assert np.all(at.status == Status.PERIODIC) and np.all(at.period == 2)
    # on the 2-cycle x -> -x the iterate keeps its modulus
    np.testing.assert_allclose(np.abs(at.theta), np.abs(x0), rtol=1e-9)
    above = trajectories(p, x0, 1.1 * crit, steps=2000)
    assert np.all(above.status == Status.DIVERGED)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eta", [0.05, 0.3, 1.0])
def test_quartic_diverges_iff_outside_sqrt_two_over_eta(backend, eta):
    p = problems.get("quartic")
    edge = math.sqrt(2.0 / eta)  # |1 - eta x^2| > 1  <=>  |x| > sqrt(2/eta)
    x0 = np.concatenate([np.linspace(-3 * edge, 3 * edge, 601)])
    x0 = x0[np.abs(np.abs(x0) - edge) > 1e-3 * edge]  # leave out the boundary itself
    r = trajectories(p, x0[:, None], eta, steps=3000, backend=backend)
    outside = np.abs(x0) > edge
    assert np.all(r.status[outside] == Status.DIVERGED)
    assert not np.any(r.status[~outside] == Status.DIVERGED)
    # (on the boundary itself x -> -x is a 2-cycle, but a repelling one: G'(x) = 1 - 3 eta x^2 = -5
    # there, so rounding errors grow 25-fold per cycle and no float trajectory stays on it)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("eta", [0.2, 1.0, 1.6])
def test_quad_quartic_basin_is_sqrt_two_minus_eta_over_eta(backend, eta):
    p = problems.get("quad_quartic")
    edge = math.sqrt((2.0 - eta) / eta)  # |1 - eta (1 + x^2)| < 1  <=>  x^2 < (2 - eta)/eta
    x0 = np.linspace(-2.5 * edge, 2.5 * edge, 501)
    x0 = x0[np.abs(np.abs(x0) - edge) > 2e-2 * edge]
    r = trajectories(p, x0[:, None], eta, steps=20000, backend=backend)
    inside = np.abs(x0) < edge
    assert np.all(r.status[inside] == Status.CONVERGED)
    assert np.all(r.status[~inside] == Status.DIVERGED)


@pytest.mark.parametrize("backend", BACKENDS)
def test_hyperbola_at_1_05_bounded_trajectories_end_on_the_diagonal_two_cycle(backend):
    eta = 1.05
    # 2-cycle of the diagonal map u -> u + eta u (1 - u^2): solve f(f(u)) = u, f(u) != u.
    # With s = u+ + u-, p = u+ u-: f(u+) = u- and f(u-) = u+ give s^2 = 1 + 3/eta - ... ; the
    # closed form is u± = [sqrt(1 + 3/eta) ± sqrt(1 - 1/eta)] / 2; check it is a 2-cycle here.
    up = (math.sqrt(1 + 3 / eta) + math.sqrt(1 - 1 / eta)) / 2
    um = (math.sqrt(1 + 3 / eta) - math.sqrt(1 - 1 / eta)) / 2
    f = lambda u: u + eta * u * (1 - u * u)  # noqa: E731
    assert f(up) == pytest.approx(um, rel=1e-12) and f(um) == pytest.approx(up, rel=1e-12)

    p = problems.get("hyperbola")
    theta0 = p.init(jax.random.key(7), 3000)
    r = trajectories(p, theta0, eta, steps=6000, backend=backend)
    assert not np.any(r.status == Status.CONVERGED)  # eta > eta_E = 1
    kept = r.status != Status.DIVERGED
    assert kept.sum() > 1000
    assert np.all(r.status[kept] == Status.PERIODIC)
    assert np.all(r.period[kept] == 2)
    # the cycle lies on x = y (or x = y < 0 by symmetry) at |u| in {u+, u-}
    th = r.theta[kept]
    np.testing.assert_allclose(th[:, 0], th[:, 1], atol=1e-6)
    mod = np.abs(th[:, 0])
    assert np.all(np.minimum(np.abs(mod - up), np.abs(mod - um)) < 1e-6)


def test_hyperbola_converges_to_weakly_stable_minima_below_eta_e():
    eta = 0.4
    p = problems.get("hyperbola")
    r = trajectories(p, p.init(jax.random.key(2), 2000), eta, steps=5000)
    conv = r.status == Status.CONVERGED
    assert conv.mean() > 0.8
    x, y = r.theta[conv].T
    np.testing.assert_allclose(x * y, 1.0, atol=1e-6)
    # a limit point of GD must be (weakly) stable: x^2 + y^2 <= 2/eta (up to the tolerance)
    assert np.all(x * x + y * y <= 2 / eta + 1e-6)


def test_stationary_status_for_a_saddle():
    p = problems.get("hyperbola")
    r = trajectories(p, np.zeros((1, 2)), 0.5, steps=100)
    assert r.status[0] == Status.STATIONARY and r.step[0] == Criteria().window - 1


# ------------------------------------------------------------------- reference implementation


# step sizes per toy, kept where the dynamics is not chaotic (chaos would amplify last-bit
# differences between two float formulas of the same gradient into different orbits)
REF_ETAS = {
    "hyperbola": [0.05, 0.3, 0.8, 1.05, 1.2],
    "quartic": [0.05, 0.3, 1.0],
    "quad_quartic": [0.2, 1.0, 1.6],
    "saddle_quartic": [0.05, 0.3, 0.8],
    "zhu": [0.05, 0.2, 0.4],
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", sorted(REF_ETAS))
def test_engine_matches_plain_python_reference(backend, name):
    p = problems.get(name)
    crit = Criteria(tol=1e-7, window=5, max_period=6, check_every=16, period_checks=2)
    rng = np.random.default_rng(11)
    n = 80
    theta0 = p.init(jax.random.key(5), n)
    etas = rng.choice(REF_ETAS[name], size=n)
    T = 400
    r = trajectories(p, theta0, etas, steps=T, criteria=crit, backend=backend)
    raw_to_status = {2: Status.DIVERGED, 3: Status.PERIODIC, 4: Status.BOUNDED}
    for i in range(n):
        st, step, per, th = python_trajectory(TOY_GRADS_PY[name], theta0[i], float(etas[i]), T, crit)
        want = raw_to_status.get(st, Status.CONVERGED if p.loss(th) <= crit.f_tol else Status.STATIONARY)
        assert (r.status[i], r.step[i], r.period[i]) == (want, step, per), i
        if want not in (Status.DIVERGED, Status.BOUNDED):
            np.testing.assert_allclose(r.theta[i], th, rtol=1e-9, atol=1e-12)


def test_numpy_reference_matches_engine():
    p = problems.get("hyperbola")
    crit = Criteria()
    theta0 = p.init(jax.random.key(9), 3000)
    eta = np.repeat([0.1, 0.5, 0.9, 1.05], 750)
    ref = numpy_engine(TOY_GRADS_NP["hyperbola"], theta0, eta, 1500, crit)
    r = trajectories(p, theta0, eta, steps=1500, backend="jax")
    raw = np.where(r.status == Status.CONVERGED, 1, r.status)
    agree = (raw == ref[0]) & (r.step == ref[1])
    assert agree.mean() > 0.995


# ------------------------------------------------------------------ determinism and compiling


def _same(a, b):
    for f in ("status", "step", "period"):
        np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    np.testing.assert_array_equal(a.theta.view(np.int64), b.theta.view(np.int64))  # bitwise


@pytest.mark.parametrize("backend", BACKENDS)
def test_bitwise_identical_whatever_the_chunk_size(backend):
    p = problems.get("hyperbola")
    theta0 = p.init(jax.random.key(3), 300)
    eta = np.repeat([0.3, 0.9, 1.05, 1.5], 75)
    ref = trajectories(p, theta0, eta, steps=300, chunk_size="auto", backend=backend)
    for cs in (1, 7, 64):
        _same(ref, trajectories(p, theta0, eta, steps=300, chunk_size=cs, backend=backend))


def test_same_seed_same_result_and_no_recompilation_for_new_eta_or_seed():
    p = problems.get("hyperbola")
    a = trajectories(p, p.init(jax.random.key(0), 128), 0.5, steps=200, backend="jax")
    n = trace_count(p)
    b = trajectories(p, p.init(jax.random.key(0), 128), 0.5, steps=200, backend="jax")
    _same(a, b)
    trajectories(p, p.init(jax.random.key(1), 128), 0.7, steps=200, backend="jax")
    trajectories(p, p.init(jax.random.key(2), 128), np.linspace(0.1, 1.2, 128), steps=300, backend="jax")
    trajectories(p, p.init(jax.random.key(2), 128), 0.7, steps=300, criteria=Criteria(tol=1e-6), backend="jax")
    assert trace_count(p) == n


def test_float32_runs_with_its_own_tolerances():
    p = problems.get("hyperbola")
    r = trajectories(p, p.init(jax.random.key(0), 256), 0.5, steps=2000, dtype="float32",
                     criteria=Criteria(tol=1e-5, f_tol=1e-5))
    assert r.theta.dtype == np.float32
    assert (r.status == Status.CONVERGED).mean() > 0.9


# ---------------------------------------------------------------------------------- metrics


def test_recorded_metrics_match_a_plain_loop():
    p = problems.get("hyperbola")
    theta0 = np.array([[1.5, 0.2], [0.1, 2.0], [3.0, 3.0]])
    eta = np.array([0.3, 0.9, 0.5])
    T, k = 60, 7
    r = trajectories(p, theta0, eta, steps=T, record_every=k)
    m = r.metrics
    np.testing.assert_array_equal(m.steps, np.arange(0, T + 1, k))
    for i in range(3):
        x, y = theta0[i]
        for t in range(T + 1):
            if t % k == 0:
                row = t // k
                if t <= r.step[i]:
                    # the two loops round differently; r = 1 - x*y then agrees to ~1e-15
                    # absolutely (not relatively: r -> 0 at a minimum), hence abs=1e-14
                    L = 0.5 * (1 - x * y) ** 2
                    g = math.hypot(-y * (1 - x * y), -x * (1 - x * y))
                    assert m.loss[row, i] == pytest.approx(L, rel=1e-10, abs=1e-14)
                    assert m.grad_norm[row, i] == pytest.approx(g, rel=1e-10, abs=1e-14)
                    assert m.step_norm[row, i] == pytest.approx(eta[i] * g, rel=1e-10, abs=1e-14)
                else:  # frozen after the decision
                    assert m.loss[row, i] == r.loss[i] or (np.isnan(r.loss[i]) and np.isnan(m.loss[row, i]))
            r_ = 1 - x * y
            if t < r.step[i]:
                x, y = x + eta[i] * y * r_, y + eta[i] * x * r_


def test_recording_does_not_change_outcomes():
    p = problems.get("zhu")
    theta0 = p.init(jax.random.key(4), 200)
    a = trajectories(p, theta0, 0.2, steps=500, backend="jax")
    b = trajectories(p, theta0, 0.2, steps=500, record_every=10)
    _same(a, b)


def test_summary_fractions_and_wilson_intervals():
    p = problems.get("quadratic", a=1.0)
    x0 = np.linspace(-1, 1, 40)[:, None]
    r = trajectories(p, np.tile(x0, (2, 1)), np.repeat([0.5, 2.5], 40), steps=500)
    rows = r.summary()
    assert [row["eta"] for row in rows] == [0.5, 2.5]
    conv = rows[0]["converged"]
    assert conv["fraction"] == 1.0 and conv["count"] == 40
    assert 0.9 < conv["low"] < 1.0 and conv["high"] == 1.0
    assert rows[1]["diverged"]["fraction"] == 1.0


# ------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"eta": -0.1}, "'eta' parameter of trajectories must be a finite float > 0"),
        ({"eta": 0.0}, "'eta'"),
        ({"eta": float("nan")}, "'eta'"),
        ({"eta": float("inf")}, "'eta'"),
        ({"eta": [0.1, 0.2]}, "'eta'"),
        ({"eta": "fast"}, "'eta'"),
        ({"steps": 0}, "'steps' parameter of trajectories must be an int >= 1"),
        ({"steps": -5}, "'steps'"),
        ({"steps": 2.5}, "'steps'"),
        ({"theta0": np.zeros((3, 3))}, "'theta0'"),
        ({"theta0": np.full((3, 2), np.nan)}, "'theta0'"),
        ({"theta0": np.zeros((0, 2))}, "'theta0'"),
        ({"backend": "gpu"}, "'backend'"),
        ({"dtype": "float16"}, "'dtype'"),
        ({"chunk_size": 0}, "'chunk_size'"),
        ({"record_every": 0}, "'record_every'"),
        ({"criteria": {"tol": 1}}, "'criteria'"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(kwargs, match):
    p = problems.get("hyperbola")
    args = {"theta0": np.ones((3, 2)), "eta": 0.5, "steps": 10}
    args.update(kwargs)
    theta0 = args.pop("theta0")
    eta = args.pop("eta")
    with pytest.raises(ValueError, match=match):
        trajectories(p, theta0, eta, **args)


@pytest.mark.parametrize(
    "kwargs",
    [{"tol": 0.0}, {"tol": -1.0}, {"window": 0}, {"max_norm": float("inf")}, {"check_every": 4, "max_period": 8},
     {"max_period": 0}, {"period_checks": 0}, {"f_tol": -1.0}],
)
def test_bad_criteria(kwargs):
    with pytest.raises(ValueError, match="parameter of Criteria"):
        Criteria(**kwargs)


def test_native_backend_refused_where_it_does_not_apply():
    p = problems.get("quadratic")
    with pytest.raises(ValueError, match="no compiled kernel"):
        trajectories(p, np.ones((2, 1)), 0.1, steps=10, backend="native")


def test_non_finite_values_are_results_not_exceptions():
    import warnings

    p = problems.Problem.from_expression("exp(x) + log(y)", min_value=None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = trajectories(p, np.array([[800.0, 1.0], [0.0, -1.0], [0.0, 1.0]]), 0.1, steps=50)
    assert r.status[0] == Status.DIVERGED and r.step[0] == 0
    assert r.status[1] == Status.DIVERGED


@pytest.mark.parametrize("backend", BACKENDS)
def test_threads_do_not_change_results(backend):
    # also guards the thread-locality of jax.enable_x64: workers must still compute in float64
    p = problems.get("hyperbola")
    theta0 = p.init(jax.random.key(8), 500)
    eta = np.repeat([0.4, 1.05], 250)
    one = trajectories(p, theta0, eta, steps=3000, chunk_size=64, threads=1, backend=backend)
    two = trajectories(p, theta0, eta, steps=3000, chunk_size=64, threads=2, backend=backend)
    _same(one, two)
    assert two.theta.dtype == np.float64 and two.loss.dtype == np.float64
    conv = two.status == Status.CONVERGED
    assert np.all(two.loss[conv] < 1e-15)  # float32 would leave ~1e-8


@pytest.mark.parametrize("backend", BACKENDS)
def test_slowly_contracting_oscillation_is_not_a_cycle(backend):
    """Near η = 2/λ the iterates of a quadratic alternate around the minimum while contracting
    by |1 − ηλ| per step; two steps bring them back within tol long before they settle.  The
    persistence rule (the cycle's largest step must not shrink between segments) keeps them
    from being called 2-cycles: they converge.  True 2-cycles (½(1 − xy)² at η = 1.1, the
    closed form u± of test_orbits) are still found."""
    q = problems.get("quadratic", spectrum=[1.0, 3.0])
    kernel_backend = backend if q.native is not None or backend == "jax" else "jax"
    for eta in (0.655, 0.66, 0.665):  # |1 − 3η| = 0.965, 0.98, 0.995
        r = trajectories(q, np.array([[0.5, 0.7], [0.9, -0.3]]), eta, steps=20_000, backend=kernel_backend)
        assert r.status.tolist() == [Status.CONVERGED] * 2, eta
    h = problems.get("hyperbola")
    pts = np.array([[1.2, 0.9], [0.5, 1.5], [1.02, 0.97]])
    r = trajectories(h, pts, 1.1, steps=5000, backend=backend)
    assert r.status.tolist() == [Status.PERIODIC] * 3 and r.period.tolist() == [2, 2, 2]
    r = trajectories(h, pts, 0.98, steps=20_000, backend=backend)  # |1 − 2η| = 0.96 at (1, 1)
    assert r.status.tolist() == [Status.CONVERGED] * 3


def test_default_tolerances_follow_the_dtype():
    """Issue #16 item 11: with the float64 tolerance 1e-8, float32 runs on 1/2 (1 - xy)^2 called
    994 of 1000 converging runs "bounded" at eta = 0.1 and 762 "periodic" at 0.9 (float32 rounding
    keeps a converged iterate moving by ~1e-8).  The float64 run is the reference."""
    from gdstab import problems
    from gdstab import random as gdstab_random

    p = problems.get("hyperbola")
    th = gdstab_random.init_points(p, 0, np.arange(1000))
    for eta in (0.1, 0.9):
        ref = trajectories(p, th, eta, steps=1000)
        f32 = trajectories(p, th, eta, steps=1000, dtype="float32")
        assert f32.criteria.tol == 1e-5 and ref.criteria.tol == 1e-8
        assert np.array_equal(np.bincount(f32.status, minlength=6), np.bincount(ref.status, minlength=6))
    from gdstab.sweep import load_config

    text = "[problem]\nname='hyperbola'\n[grid]\neta='0.1'\ninits=2\n[run]\nsteps=5\ndtype='{}'\n"
    assert load_config(text.format("float32")).criteria.tol == 1e-5
    assert load_config(text.format("float64")).criteria.tol == 1e-8
    assert load_config(text.format("float32") + "[criteria]\ntol=1e-6\n").criteria.tol == 1e-6


@pytest.mark.parametrize("backend", ["native", "jax"])
def test_a_slowly_growing_orbit_at_exactly_two_is_not_a_cycle(backend):
    """Issue #16 item 9: at eta = 2 on x^2/2 + x^4/4, G(x) = -x - 2x^3 and G(G(x)) = x + 4x^3 + O(x^5):
    the only periodic orbit is the fixed point 0 (G(G(x)) = x forces x = 0), and every other orbit
    drifts outwards by 4|x|^3 per two steps.  7.1 % of the points of [-0.02, 0.02] used to be called
    period 2 (their return distance is below tol = 1e-8 for |x| < 1.4e-3).  A cycle must now close:
    its return distance may not grow between segments unless it is below DRIFT * tol = 1e-11,
    i.e. unless 4|x|^3 <= 1e-11, |x| <= 1.36e-4 (drift indistinguishable from rounding-level
    closure within the window; the orbit grows by < 2 % over the 10^5 steps there)."""
    from gdstab.outcomes import DRIFT
    from gdstab.random import init_points

    if backend == "native" and not _native.available("quad_quartic"):
        pytest.skip("compiled kernels not built")
    p = problems.get("quad_quartic")
    x0 = init_points(p, 0, np.arange(2000), [(-0.02, 0.02)])
    r = trajectories(p, x0, 2.0, steps=100_000, backend=backend)
    periodic = r.status == Status.PERIODIC
    x_c = (DRIFT * Criteria().tol / 4) ** (1 / 3)
    assert np.all(np.abs(x0[periodic, 0]) <= 1.05 * x_c)  # the drift threshold, from the closed form
    assert periodic.mean() <= 1.05 * x_c / 0.02 + 0.01  # the uniform measure of |x0| <= x_c, + sampling
    # the others drift outwards: diverged, or still undecided after 10^5 steps (never converged)
    assert not np.any(r.status == Status.CONVERGED) and np.all(np.isin(r.status[~periodic], [Status.DIVERGED, Status.BOUNDED]))
    # a real 2-cycle (1/2 (1 - xy)^2 at eta = 1.1 from (1.2, 0.9)) is still found
    h = trajectories(problems.get("hyperbola"), [[1.2, 0.9]], 1.1, steps=20_000, backend=backend)
    assert h.status[0] == Status.PERIODIC and h.period[0] == 2


@pytest.mark.parametrize("backend", ["native", "jax"])
def test_a_step_size_too_small_to_move_is_undecided_not_stationary(backend):
    """Issue #16 item 11: at eta <= 1e-12 every trajectory 'settles' (eta |grad L| <= tol from the
    start) and was reported 100 % stationary.  Below ETA_CRITICAL a settled point that is not a
    global minimum must be critical at ETA_CRITICAL too; the saddle (0, 0) of 1/2 (1 - xy)^2,
    where the gradient is exactly 0, stays stationary at any step size."""
    from gdstab.outcomes import ETA_CRITICAL

    if backend == "native" and not _native.available("hyperbola"):
        pytest.skip("compiled kernels not built")
    p = problems.get("hyperbola")
    x0 = p.init(jax.random.key(0), 200)
    for eta in (1e-12, 1e-6):
        r = trajectories(p, x0, eta, steps=200, backend=backend)
        assert np.all(r.status == Status.BOUNDED), np.unique(r.status)
        assert np.all(r.grad_norm * ETA_CRITICAL > Criteria().tol)  # none of them at a critical point
    saddle = trajectories(p, [[0.0, 0.0]], 1e-6, steps=200, backend=backend)
    assert saddle.status[0] == Status.STATIONARY
    free = Problem.from_expression("0.5*(1-x*y)^2")  # L* unknown: 'converged' needs a critical point too
    assert np.all(trajectories(free, x0, 1e-12, steps=200, backend="jax").status == Status.BOUNDED)
    assert trajectories(free, [[1.0, 1.0]], 1e-12, steps=200, backend="jax").status[0] == Status.CONVERGED


def test_engine_evaluates_the_gradient_once_per_step_and_never_past_T():
    """T steps classify θ_0 … θ_T: T + 1 gradient evaluations of the batch, plus one for the final
    values; the last segment of check_every steps stops at T (it used to run to the segment's
    end, on frozen states: 16 evaluations instead of 11 for T = 10, check_every = 8)."""
    import jax
    import jax.numpy as jnp

    calls = []

    def loss_fn(p, data):
        jax.debug.callback(lambda: calls.append(1))  # once per evaluation of the vmapped batch
        return 0.5 * jnp.sum(p["w"] ** 2)

    with jax.enable_x64(True):
        p = Problem.from_jax(loss_fn, {"w": jnp.zeros(3)}, None)
        calls.clear()
        tr = trajectories(p, np.ones((4, 3)), 2.0, steps=10, backend="jax", threads=1,
                          criteria=Criteria(check_every=8, max_period=2))
    assert (tr.step == 10).all()  # w -> -w: still running at T
    assert len(calls) == 10 + 1 + 1


def _users_model(callback=None):
    """A from_jax tanh network on 500 samples (1344 parameters): a GEMM-sized step per trajectory."""
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(500, 20)), rng.normal(size=(500, 1))

    def loss_fn(p, data):
        if callback is not None:
            jax.debug.callback(callback)  # once per evaluation (of one lane, or of a vmapped batch)
        x, y = data
        return jnp.mean((jnp.tanh(x @ p["w1"]) @ p["w2"] - y) ** 2)

    with jax.enable_x64(True):
        return Problem.from_jax(loss_fn, {"w1": jnp.zeros((20, 64)), "w2": jnp.zeros((64, 1))}, (X, Y))


def test_lanes_of_a_users_model_measure_its_working_set_and_run_sequentially():
    """A model without a size estimate (from_jax, from_torch, ...): its per-trajectory working set
    is read from XLA's memory analysis of the vmapped gradient (at least the hidden activations:
    n samples × width values); too big for L2_MIN_CHUNK lanes in a core's L2, it runs
    L2_MIN_CHUNK sequential lanes per worker (fewer when a thread's share of B is smaller)."""
    from gdstab import dynamics
    from gdstab.dynamics import _auto_chunk, _measured_bytes

    p = _users_model()
    measured = _measured_bytes(p, "float64")
    assert measured >= 500 * 64 * 8
    assert _measured_bytes(p, "float32") < measured
    assert dynamics._sequential_lanes(p, 0, 8, "cpu") and not dynamics._sequential_lanes(p, 0, 8, "gpu")
    for B, threads in ((100, 2), (7, 2), (1, 4), (1000, 3), (3, 4)):
        c = _auto_chunk(p, B, 0, 8, "cpu", None, threads)
        assert c & (c - 1) == 0 and c <= dynamics.L2_MIN_CHUNK  # a power of two
        assert c <= -(-B // threads)  # at most a thread's share: every thread has lanes to fill
    assert _auto_chunk(p, 100, 0, 8, "cpu", None, 2) == dynamics.L2_MIN_CHUNK


def test_sequential_lanes_evaluate_each_trajectory_exactly_until_its_decision():
    """Per-trajectory early exit: in sequential lanes a trajectory computes the gradients of its
    steps 0 … decision step and nothing more (a finished lane costs nothing, a waiting
    trajectory takes it), plus one vmapped evaluation of the final values; the results are
    bitwise the same for any number of lanes and threads, and records included."""
    calls = []
    p = _users_model(lambda: calls.append(1))
    th0 = 0.3 * np.random.default_rng(1).normal(size=(12, p.dim))
    eta = np.repeat([0.05, 3.0, 40.0, 400.0], 3)  # slow (bounded at T), fast and diverging ones
    crit = Criteria(check_every=8, max_period=2)
    ref = None
    for chunk, threads in ((1, 1), (3, 2), (8, 1), (4, 2)):
        calls.clear()
        r = trajectories(p, th0, eta, steps=60, backend="jax", chunk_size=chunk, threads=threads, criteria=crit,
                         record_every=7)
        assert len(calls) == int((r.step + 1).sum()) + 1, (chunk, threads)
        ref = r if ref is None else ref
        _same(ref, r)
        np.testing.assert_array_equal(r.metrics.loss, ref.metrics.loss)
    assert len(set(ref.status.tolist())) >= 2 and ref.step.min() < 30 and ref.step.max() == 60


def test_vectorised_lanes_take_waiting_trajectories_when_they_finish():
    """Persistent lanes (small problems, vectorised): one trajectory that runs to T and 31 that
    settle within a few segments, in 4 lanes.  A chunk that exits only when all of its members
    are done would run T + 1 steps for the long one's chunk and then 7 more chunks of short
    ones; with the lanes the short ones pass through the 3 other lanes while the long one runs."""
    import jax.numpy as jnp

    calls = []

    def loss_fn(p, data):
        jax.debug.callback(lambda: calls.append(1))
        return 0.5 * jnp.sum(p["w"] ** 2)

    with jax.enable_x64(True):
        p = Problem.from_jax(loss_fn, {"w": jnp.zeros(3)}, None)
        eta = np.r_[2.0, np.full(31, 1.0)]  # w -> -w forever; w -> 0 at once
        T = 300
        r = trajectories(p, np.ones((32, 3)), eta, steps=T, backend="jax", threads=1, chunk_size=4,
                         criteria=Criteria(check_every=8, max_period=1))
    assert r.step[0] == T and r.step[1:].max() < 16
    chunk_exit = (T + 1) + 7 * (int(r.step[1:].max()) + 1)  # at least this many batch steps
    assert len(calls) - 1 < T + 1 + 16 < chunk_exit
    _same(r, trajectories(p, np.ones((32, 3)), eta, steps=T, backend="jax", threads=1, chunk_size=1,
                          criteria=Criteria(check_every=8, max_period=1)))


def test_auto_chunks_of_small_networks_stay_in_l2_and_network_estimates_follow_the_dtype():
    """A small network's lanes (per-trajectory working set measured) are cut to the core's L2
    cache (the 64 MiB rule gave chunks of 1024, 2.4x slower: docs/performance.md), and the MLP's
    activation estimate, given in float64 bytes, halves in float32 (twice the lanes under the
    accelerator's budget; on the CPU a network this big runs sequential lanes)."""
    from gdstab import dynamics, problems
    from gdstab.experiments.field_fractal import fractal_problem

    p = fractal_problem(16, 4)
    per = dynamics._measured_bytes(p, "float64") + 8 * (4 * p.dim + 12)
    c = dynamics._auto_chunk(p, 4096, 0, 8, "cpu", None, 1)
    assert dynamics.L2_MIN_CHUNK <= c and c * per <= dynamics.l2_cache_bytes()
    assert not dynamics._sequential_lanes(p, 0, 8, "cpu")
    assert dynamics._auto_chunk(p, 4096, 0, 8, "gpu", None, 1) > c  # accelerators keep the 64 MiB rule
    m = problems.get("mlp", depth=4, width=32, samples=0)
    c64 = dynamics._auto_chunk(m, 2**16, 0, 8, "gpu", None, 1)
    c32 = dynamics._auto_chunk(m, 2**16, 0, 4, "gpu", None, 1)
    assert c32 == 2 * c64, (c32, c64)
    assert dynamics._sequential_lanes(m, 0, 4, "cpu")
    assert dynamics._auto_chunk(m, 4096, 0, 4, "cpu", None, 2) == dynamics.L2_MIN_CHUNK


def test_accelerator_chunks_are_sized_to_the_device_memory(monkeypatch):
    """On an accelerator the chunk budget is an eighth of the memory the device reports (64 MiB
    where it reports none); the CPU keeps 64 MiB."""
    from gdstab import dynamics, problems

    class FakeDevice:
        def __init__(self, stats):
            self.stats = stats

        def memory_stats(self):
            return self.stats

    m = problems.get("mlp", depth=4, width=32, samples=0)
    try:
        dynamics.chunk_budget_bytes.cache_clear()
        monkeypatch.setattr(jax, "devices", lambda *a: [FakeDevice({"bytes_limit": 80 * 2**30})])
        assert dynamics.chunk_budget_bytes("gpu") == 10 * 2**30
        assert dynamics.chunk_budget_bytes("cpu") == 64 * 2**20
        big = dynamics._auto_chunk(m, 4096, 0, 4, "gpu", None, 1)
        assert big > dynamics._auto_chunk(m, 4096, 0, 4, "cpu", None, 1) and big <= 4096
        dynamics.chunk_budget_bytes.cache_clear()
        monkeypatch.setattr(jax, "devices", lambda *a: [FakeDevice(None)])
        assert dynamics.chunk_budget_bytes("gpu") == 64 * 2**20
    finally:
        dynamics.chunk_budget_bytes.cache_clear()


def test_batch_check_accepts_huge_finite_values_and_refuses_one_non_finite_entry():
    """check_batch proves finiteness from one sum; a sum that overflows (finite entries of 1e308)
    must fall back to the entry-by-entry test, and a single nan or inf anywhere must be found."""
    from gdstab._validation import check_batch

    p = problems.get("hyperbola")
    th, et = check_batch(p, np.full((4, 2), 1e308), np.full(4, 1e308), "t")
    assert th.shape == (4, 2) and et.shape == (4,)
    for bad in (np.nan, np.inf, -np.inf):
        x = np.zeros((1000, 2))
        x[777, 1] = bad
        with pytest.raises(InvalidParameterError, match="'theta0'"):
            check_batch(p, x, 0.1, "t")
        e = np.full(1000, 0.1)
        e[500] = bad
        with pytest.raises(InvalidParameterError, match="'eta'"):
            check_batch(p, np.zeros((1000, 2)), e, "t")
