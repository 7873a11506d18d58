"""Sharpness tracking (edge of stability) and the critical step size estimator (issue #8)."""

import math

import jax
import numpy as np
import pytest

from gdstab import critical, problems, sharpness, spectrum
from gdstab._validation import InvalidParameterError
from gdstab.problems.linear import linear_network


def zhu_sharpness(theta):
    """λ_max of the Hessian of ¼(x²y² − 1)² at (x, y), from the closed-form Hessian:
    ∂xx = 3x²y⁴ − y², ∂yy = 3x⁴y² − x², ∂xy = 4x³y³ − 2xy."""
    x, y = theta
    h = np.array([[3 * x**2 * y**4 - y**2, 4 * x**3 * y**3 - 2 * x * y],
                  [4 * x**3 * y**3 - 2 * x * y, 3 * x**4 * y**2 - x**2]])
    return np.linalg.eigvalsh(h)[-1]


def test_zhu_edge_of_stability_self_stabilisation():
    """GD from (4, 0.1) at η = 0.1 ends at a minimum with sharpness just below 2/η = 20, after
    the sharpness went above 2/η; gradient flow from the same point lands much sharper."""
    p = problems.get("zhu")
    eta = 0.1
    ds = sharpness.track_sharpness(p, [4.0, 0.1], eta, steps=3000, every=10)
    assert ds.attrs["status"] == "ok" and ds.attrs["threshold"] == pytest.approx(20.0)
    s = ds.sharpness.values
    assert s[0] == pytest.approx(zhu_sharpness([4.0, 0.1]), rel=1e-12)
    assert s[-1] == pytest.approx(zhu_sharpness(ds.theta_last.values), rel=1e-12)
    assert ds.loss.values[-1] < 1e-10  # at a minimum
    assert np.nanmax(s) > 20.0  # it crossed the edge of stability
    assert 0.0 < 20.0 - s[-1] < 0.05 * 20.0  # and came back just below it
    # gradient flow conserves x² − y² (dL/dt along the flow leaves x² − y² fixed because L
    # depends on xy only), so it lands on x²y² = 1 with x² − y² = c: sharpness 2(x² + y²) =
    # 2 sqrt(c² + 4); checked here by integrating the flow itself.
    from scipy.integrate import solve_ivp

    grad = jax.jit(jax.grad(p.loss))
    with jax.enable_x64(True):
        sol = solve_ivp(lambda t, th: -np.asarray(grad(np.asarray(th))), (0, 200), [4.0, 0.1], rtol=1e-11, atol=1e-12,
                        method="LSODA")
    th_gf = sol.y[:, -1]
    c = 4.0**2 - 0.1**2
    assert zhu_sharpness(th_gf) == pytest.approx(2 * math.sqrt(c * c + 4), rel=1e-6)
    assert zhu_sharpness(th_gf) > 1.5 * s[-1]


def test_lanczos_tracking_matches_the_dense_hessian():
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(10, 40)), rng.normal(size=(5, 40))
    p = linear_network((10, 20, 5), X, Y, normalisation="half_mean")  # d = 300 > 256: Lanczos
    with jax.enable_x64(True):
        th0 = np.asarray(p.init(jax.random.key(1), 1))[0] * 0.5
    ds = sharpness.track_sharpness(p, th0, 0.05, steps=60, every=20, key=jax.random.key(2), tol=1e-10)
    assert ds.attrs["method"].startswith("Lanczos")
    assert bool(ds.lanczos_converged.all())
    dense = np.linalg.eigvalsh(spectrum.hessian(p, ds.theta_last.values))[-1]
    assert ds.sharpness.values[-1] == pytest.approx(dense, rel=1e-8)
    # warm starts: later runs need no more matrix-vector products than the first
    assert ds.matvecs.values[-1] <= ds.matvecs.values[0]


def test_sgd_tracking_is_reproducible_and_keyed():
    rng = np.random.default_rng(1)
    X, Y = rng.normal(size=(30, 3)), rng.normal(size=(30, 1))

    def loss(params, batch):
        x, y = batch
        return 0.5 * jax.numpy.mean((x @ params["w"] + params["b"] - y) ** 2)

    p = problems.Problem.from_jax(loss, {"w": np.zeros((3, 1)), "b": np.zeros(1)}, (X, Y))
    th0 = np.full(p.dim, 0.1)
    a = sharpness.track_sharpness(p, th0, 0.1, steps=40, every=10, batch_size=5, key=jax.random.key(0))
    b = sharpness.track_sharpness(p, th0, 0.1, steps=40, every=10, batch_size=5, key=jax.random.key(0))
    c = sharpness.track_sharpness(p, th0, 0.1, steps=40, every=10, batch_size=5, key=jax.random.key(1))
    np.testing.assert_array_equal(a.loss.values, b.loss.values)
    assert not np.array_equal(a.theta_last.values, c.theta_last.values)
    # the loss is quadratic: the sharpness is constant, λ_max of mean [x 1]ᵀ[x 1]
    Z = np.hstack([X, np.ones((30, 1))])
    np.testing.assert_allclose(a.sharpness.values, np.linalg.eigvalsh(Z.T @ Z / 30)[-1], rtol=1e-10)
    with pytest.raises(InvalidParameterError, match="'key'"):
        sharpness.track_sharpness(p, th0, 0.1, steps=10, batch_size=5)
    with pytest.raises(InvalidParameterError, match="'batch_size'"):
        sharpness.track_sharpness(p, th0, 0.1, steps=10, batch_size=31, key=jax.random.key(0))


def test_diverging_run_is_a_status():
    p = problems.get("hyperbola")
    ds = sharpness.track_sharpness(p, [3.0, 3.0], 1.5, steps=200, every=5)
    assert ds.attrs["status"] == "diverged"
    assert np.isnan(ds.sharpness.values[-1])
    with pytest.raises(InvalidParameterError, match="'theta0'"):
        sharpness.track_sharpness(p, [1.0, np.nan], 0.5)
    with pytest.raises(InvalidParameterError, match="'every'"):
        sharpness.track_sharpness(p, [1.0, 1.0], 0.5, every=0)


def test_critical_step_size_of_a_quadratic_is_two_over_lambda_max():
    q = problems.get("quadratic", spectrum=[1.0, 3.0])
    r = critical.critical_step_size(q, eta_low=0.01, eta_high=10.0, inits=16, steps=40_000, rtol=1e-3)
    lo, hi = r.interval
    assert lo <= 2 / 3 <= hi and hi / lo - 1 < 0.03
    assert r.fraction_interval[0] <= 2 / 3 <= r.fraction_interval[1]
    assert r.eta_sharpness == pytest.approx(2 / 3, rel=1e-9)  # every minimum reached is θ = 0
    assert r.eta == pytest.approx(2 / 3, rel=1e-9)
    ev = r.evidence
    assert [e["eta"] for e in ev] == sorted(e["eta"] for e in ev)
    assert all(e["converged"] in (0, 16) for e in ev)  # all or nothing for a quadratic
    assert r.warnings == ()  # a non-degenerate minimum: nothing limits the answer


def test_critical_step_size_says_when_a_degenerate_minimum_and_the_bracket_decide():
    """x^4/4 (issue #16 item 6): the minimum x = 0 has zero curvature, so GD creeps towards it
    (x_t ~ 1/sqrt(2 eta t)) and "converged" means "eta |x|^3 <= tol within the budget"; the
    flattest minimum reached then has sharpness 3x^2 ~ 1e-4, whose 2/s lies far above eta_high.
    Checked here from the definitions: eta * s_min * steps < 10, and 2/s_min > eta_high."""
    q = problems.get("quartic")
    r = critical.critical_step_size(q, eta_low=0.01, eta_high=10.0, inits=64, steps=20_000, box=[(-1.0, 1.0)])
    assert r.argmin_eta * r.min_sharpness * 20_000 < 10 and 2 / r.min_sharpness > 10.0
    assert [w.split(":")[0] for w in r.warnings] == ["budget", "bracket"]
    assert r.eta == r.eta_fraction and r.interval == r.fraction_interval  # not the unsupported 2/s_min


def test_critical_step_size_of_the_hyperbola_is_one():
    h = problems.get("hyperbola")
    r = critical.critical_step_size(h, eta_low=0.1, eta_high=3.0, inits=64, steps=50_000, rtol=1e-3)
    lo, hi = r.interval
    assert lo <= 1.0 <= hi and hi - lo < 0.01
    # the flattest minimum reached is near (1, 1): sharpness x² + y² >= 2 on M
    assert r.min_sharpness == pytest.approx(2.0, rel=1e-5)
    assert r.eta_sharpness == pytest.approx(1.0, rel=1e-5)
    d = r.to_dict()
    assert d["settings"]["inits"] == 64 and len(d["evidence"]) >= 5


def test_critical_step_size_bad_brackets():
    q = problems.get("quadratic", spectrum=[1.0, 3.0])
    with pytest.raises(InvalidParameterError, match="'eta_high'.*raise it"):
        critical.critical_step_size(q, eta_low=0.01, eta_high=0.5, inits=4, steps=2000)
    with pytest.raises(InvalidParameterError, match="'eta_low'.*lower it"):
        critical.critical_step_size(q, eta_low=0.9, eta_high=5.0, inits=4, steps=2000)
    with pytest.raises(InvalidParameterError, match="'eta_high'"):
        critical.critical_step_size(q, eta_low=0.5, eta_high=0.5)
    with pytest.raises(InvalidParameterError, match="'fraction'"):
        critical.critical_step_size(q, eta_low=0.1, eta_high=5.0, fraction=1.0)


def test_the_largest_step_size_that_trains_on_a_quadratic_is_two_over_lambda_max():
    """Issue #16 item 8: 'does not diverge' as a criterion.  On 1/2 (x^2 + 3 y^2) the y-coordinate
    of GD is multiplied by 1 - 3 eta per step: no run diverges for eta <= 2/3, and beyond it
    |1 - 3 eta|^T |y0| exceeds max_norm = 1e6 within T = 20000 steps once
    eta > 2/3 + ln(1e6 / |y0|) / (3 T) (< 2/3 (1 + 1e-3) for |y0| > 1e-3)."""
    q = problems.get("quadratic", spectrum=[1.0, 3.0])
    r = critical.trainable_step_size(q, eta_low=0.01, eta_high=10.0, steps=20_000, rtol=1e-4)
    lo, hi = r.interval
    assert 2 / 3 * (1 - 2e-4) <= lo < hi <= 2 / 3 * (1 + 1e-3)
    assert hi / lo - 1 <= 1e-4 and lo <= r.eta <= hi
    below = [e for e in r.evidence if e["eta"] <= 2 / 3]
    assert below and all(e["not_diverged"] == e["n"] for e in below)
    with pytest.raises(InvalidParameterError, match="'eta_high' parameter of trainable_step_size"):
        critical.trainable_step_size(q, eta_low=0.01, eta_high=0.5, steps=100)


def test_critical_lr_on_a_network_answers_with_default_settings(capsys):
    """`gdstab critical-lr --problem mlp` used to stop at 'eta_low: 0 of 16 converged' with the
    documented defaults; for problems on data it now bisects on 'does not diverge' (criterion
    auto -> trains), and says so.  (Sizes reduced here; the defaults are 8 runs of 500 steps.)"""
    import json

    from gdstab.cli import main

    assert main(["critical-lr", "--problem", "mlp", "--option", "samples=20", "--steps", "100", "--inits", "4",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["criterion_used"] == "trains"
    lo, hi = d["interval"]
    assert 0.001 < lo < hi < 100 and hi / lo - 1 <= 1e-2
    at = {e["eta"]: e for e in d["evidence"]}
    assert at[lo]["not_diverged"] > 2 and at[hi]["not_diverged"] <= 2


def test_sharpness_plateau_says_whether_the_run_had_settled():
    """The plateau reported with the eos key numbers: the median of the last 10 % of the
    records, with a flag that is False while the sharpness is still moving there."""
    from gdstab.sharpness import sharpness_plateau

    step = np.arange(0, 1000, 10)
    flat = np.concatenate([np.linspace(1.0, 19.9, 80), np.full(20, 19.9)])
    p = sharpness_plateau(step, flat)
    assert p["settled"] and p["value"] == 19.9 and p["window"] == [900, 990] and p["records"] == 10
    ramp = np.linspace(1.0, 20.0, 100)  # still rising at the end: no plateau
    q = sharpness_plateau(step, ramp)
    assert not q["settled"] and q["relative_spread"] == pytest.approx((ramp[-1] - ramp[-10]) / np.median(ramp[-10:]))
    nan_tail = np.concatenate([flat[:50], np.full(50, np.nan)])  # a run that diverged: only measured records count
    assert sharpness_plateau(step, nan_tail)["window"][1] == 490


def test_sharpness_plateau_of_too_few_records_is_not_settled():
    from gdstab.sharpness import sharpness_plateau

    one = sharpness_plateau(np.array([0, 10]), np.array([3.0, np.nan]))
    assert one["records"] == 1 and not one["settled"] and one["value"] == 3.0
    assert not sharpness_plateau(np.array([0]), np.array([np.nan]))["settled"]
