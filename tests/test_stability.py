"""stability: verdicts, critical step sizes, M_WS arc length and non-singularity against
closed forms and independent computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.integrate import quad

from gdstab import problems, stability
from gdstab.problems import Problem


@pytest.mark.parametrize("x", [0.6, 1.0, 1.7])
@pytest.mark.parametrize("eta", [0.3, 0.7, 1.0])
def test_hyperbola_minimum_verdicts(x, eta):
    p = problems.get("hyperbola")
    s = stability.minimum_stability(p, [x, 1 / x], eta)
    lam = x * x + 1 / (x * x)
    np.testing.assert_allclose(s.eigenvalues, [0.0, lam], atol=1e-12)
    assert s.lambda_max == pytest.approx(lam, rel=1e-12) and s.lambda_min_pos == pytest.approx(lam, rel=1e-12)
    assert s.spectral_radius == pytest.approx(max(1.0, abs(1 - eta * lam)), rel=1e-12)
    assert s.linearly_stable == s.weakly_stable == (lam <= 2 / eta + 1e-12)


def test_linear_and_weak_stability_differ_with_two_nonzero_eigenvalues():
    p = problems.get("quadratic", spectrum=[1.0, 3.0, 0.0])
    s = stability.minimum_stability(p, [0.0, 0.0, 0.0], 1.0)  # 2/eta = 2: 1 <= 2 < 3
    assert s.weakly_stable and not s.linearly_stable
    assert s.n_zero == 1 and s.lambda_min_pos == 1.0 and s.lambda_max == 3.0


def test_hyperbola_critical_step_sizes_are_one():
    r = stability.critical_step_sizes(problems.get("hyperbola"), key=jax.random.key(0))
    assert r.eta_star == pytest.approx(1.0, rel=1e-9) and r.eta_E == pytest.approx(1.0, rel=1e-9)
    np.testing.assert_allclose(np.abs(r.argmin_lambda_max), [1.0, 1.0], atol=1e-5)


@pytest.mark.parametrize("spectrum", [[2.0], [0.5, 4.0], [1.0, 3.0, 0.0]])
def test_quadratic_critical_step_sizes_are_exact(spectrum):
    r = stability.critical_step_sizes(problems.get("quadratic", spectrum=spectrum), key=jax.random.key(1), n_samples=50)
    assert r.eta_star == 2.0 / max(spectrum)
    assert r.eta_E == 2.0 / min(v for v in spectrum if v > 0)


def test_zhu_critical_step_size():
    # on x^2 y^2 = 1 the sharpness is 2 (x^2 + y^2) >= 4, attained at |x| = |y| = 1
    r = stability.critical_step_sizes(problems.get("zhu"), key=jax.random.key(2))
    assert r.eta_star == pytest.approx(0.5, rel=1e-9)


def test_a_hessian_that_vanishes_on_m_gives_infinite_critical_step_sizes():
    """1/2 (y^2 - x^2)^2: on M = {y = +-x} the Hessian is grad f grad f^T with f = y^2 - x^2, so
    its one non-zero eigenvalue at (s, +-s) is |grad f|^2 = 8 s^2 (checked against the dense
    Hessian below), which tends to 0 at the origin: inf_M lambda_min+ = 0 and eta_E = inf, like
    eta* (issue #16: it was printed as 1.756e24 from a round-off-sized eigenvalue)."""
    p = problems.get("saddle_quartic")
    for s in (0.5, 1e-3, -2.0):
        ev = np.linalg.eigvalsh(np.asarray(jax.hessian(p.loss)(jnp.array([s, s]))))
        assert ev[-1] == pytest.approx(8 * s * s, rel=1e-12) and abs(ev[0]) <= 1e-12 * ev[-1]
    c = stability.critical_step_sizes(p, key=jax.random.key(0))
    assert c.eta_E == math.inf and c.inf_lambda_min_pos == 0.0
    assert c.eta_star == math.inf and "tend to 0" in c.note
    h = stability.critical_step_sizes(problems.get("hyperbola"), key=jax.random.key(0))
    assert h.eta_E == pytest.approx(1.0, rel=1e-9) and h.note == ""  # a positive infimum is untouched


@pytest.mark.parametrize("eta", [0.1, 0.3, 0.6, 0.95])
def test_hyperbola_weakly_stable_arc_length(eta):
    r = stability.weakly_stable_arc_length(problems.get("hyperbola"), eta)
    # closed form from the issue: per branch, the integral of sqrt(2 cosh u) over [0, arccosh(1/eta)]
    a = math.acosh(1 / eta)
    want_u, _ = quad(lambda u: math.sqrt(2 * math.cosh(u)), 0, a, epsabs=1e-13, epsrel=1e-13)
    # independently, in x: the branch (x, 1/x) with x^2 + 1/x^2 <= 2/eta has x^2 in
    # [1/eta - sqrt(1/eta^2 - 1), 1/eta + sqrt(1/eta^2 - 1)]; arc element sqrt(1 + 1/x^4) dx
    r2 = math.sqrt(1 / eta**2 - 1)
    x1, x2 = math.sqrt(1 / eta - r2), math.sqrt(1 / eta + r2)
    want_x, _ = quad(lambda x: math.sqrt(1 + x**-4), x1, x2, epsabs=1e-13, epsrel=1e-13)
    assert want_u == pytest.approx(want_x, rel=1e-10)
    assert len(r.per_branch) == 2
    for b in r.per_branch:
        assert b == pytest.approx(want_u, rel=1e-8)
    assert r.total == pytest.approx(2 * want_u, rel=1e-8)


def test_arc_length_at_eta_0_1_is_not_the_papers_37_4():
    # the paper reports 37.4 for the length of M_WS at eta = 0.1; the definition gives the
    # closed form above, per branch and for both branches, neither of which is near 37.4
    r = stability.weakly_stable_arc_length(problems.get("hyperbola"), 0.1)
    want, _ = quad(lambda u: math.sqrt(2 * math.cosh(u)), 0, math.acosh(10.0), epsabs=1e-13, epsrel=1e-13)
    assert r.total == pytest.approx(2 * want, rel=1e-8)
    assert abs(r.per_branch[0] - 37.4) > 10 and abs(r.total - 37.4) > 10


def test_weakly_stable_fraction_matches_the_arc_condition():
    p = problems.get("hyperbola")
    f, lo, hi = stability.weakly_stable_fraction(p, 0.5, key=jax.random.key(3), n_samples=4000)
    # the sampler draws s ~ U(-2, 2) for (e^s, e^-s): weakly stable iff 2 cosh(2s) <= 4
    want = math.acosh(2.0) / 2 / 2.0  # |s| <= acosh(2)/2, over an interval of length 4
    # a 4-sigma band (a 95% interval would miss for one seed in twenty by design)
    assert abs(f - want) <= 4 * math.sqrt(want * (1 - want) / 4000)
    assert lo < f < hi


def _deep_linear():
    """L = sum of squares of Y - W3 W2 W1 X with dims (2, 2, 2, 2), 5 samples: d = 12."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(2, 5)))
    Y = jnp.asarray(rng.normal(size=(2, 5)))

    def loss(t):
        W1, W2, W3 = t[:4].reshape(2, 2), t[4:8].reshape(2, 2), t[8:12].reshape(2, 2)
        return jnp.sum((Y - W3 @ W2 @ W1 @ X) ** 2)

    return Problem(name="linear-2222", loss=loss, dim=12, box=tuple((-1.0, 1.0) for _ in range(12)))


def _tanh_mlp():
    """2-3-1 tanh network with biases, MSE (mean, 1/2) on 6 samples: d = 13."""
    rng = np.random.default_rng(1)
    X = jnp.asarray(rng.normal(size=(6, 2)))
    Y = jnp.asarray(rng.normal(size=(6, 1)))

    def loss(t):
        W1, b1, W2, b2 = t[:6].reshape(2, 3), t[6:9], t[9:12].reshape(3, 1), t[12:13]
        return 0.5 * jnp.mean((jnp.tanh(X @ W1 + b1) @ W2 + b2 - Y) ** 2)

    return Problem(name="tanh-mlp", loss=loss, dim=13, box=tuple((-2.0, 2.0) for _ in range(13)))


@pytest.mark.slow
@pytest.mark.parametrize("make, eta", [(_deep_linear, 0.1), (_tanh_mlp, 2.0)])
def test_singular_set_fraction_shrinks_like_eps(make, eta):
    p = make()
    r = stability.singular_set_fraction(p, eta, [1e-2, 1e-3, 1e-4, 1e-5], key=jax.random.key(4), n=400_000)
    assert np.all(np.diff(r.counts) <= 0)
    assert r.counts[-1] >= 3, r.counts  # enough events for the fit to mean something
    # measure zero with simple zeros: fraction proportional to eps (slope 1); the tolerance
    # covers Poisson noise of the smallest counts (~1/sqrt(count) on each log-fraction)
    assert abs(r.slope - 1.0) < 0.25, (r.slope, r.counts)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: stability.minimum_stability(problems.get("hyperbola"), [1.0, 2.0], 0.5), "must be a minimum"),
        (lambda: stability.minimum_stability(problems.get("hyperbola"), [0.0, 0.0], 0.5), "global minimum"),
        (lambda: stability.minimum_stability(problems.get("hyperbola"), [1.0, 1.0], -0.5), "'eta'"),
        (lambda: stability.minimum_stability(problems.get("hyperbola"), [np.nan, 1.0], 0.5), "'theta'"),
        (lambda: stability.weakly_stable_arc_length(problems.get("rosenbrock"), 0.5), "one-dimensional"),
        (lambda: stability.singular_set_fraction(problems.get("hyperbola"), 0.5, [0.0], key=jax.random.key(0)), "'eps'"),
        (lambda: stability.critical_step_sizes(Problem.from_expression("x**2"), key=jax.random.key(0)), "needs a description"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_stability_summary_of_the_hyperbola_against_closed_forms():
    """The library function behind `gdstab stability`: eta* = eta_E = 1 (inf over xy = 1 of
    x^2 + y^2 = 2), the M_WS arc length per step size from the integral in x, and the verdicts
    at the minimum (1, 1), whose Hessian is [[1, 1], [1, 1]] (eigenvalues 0 and 2)."""
    s = stability.stability_summary(problems.get("hyperbola"), [0.5, 1.5], key=jax.random.key(0), point=[1.0, 1.0])
    assert s["critical"]["eta_star"] == pytest.approx(1.0, rel=1e-9)
    assert s["critical"]["eta_E"] == pytest.approx(1.0, rel=1e-9)
    r2 = math.sqrt(1 / 0.5**2 - 1)
    want, _ = quad(lambda x: math.sqrt(1 + x**-4), math.sqrt(2 - r2), math.sqrt(2 + r2), epsabs=1e-13, epsrel=1e-13)
    half, beyond = s["per_eta"]
    assert half["mws_length"]["total"] == pytest.approx(2 * want, rel=1e-8)
    assert beyond["mws_length"]["total"] == 0.0  # 2/eta = 4/3 < 2 = inf lambda on M
    assert half["point"]["eigenvalues"] == pytest.approx([0.0, 2.0], abs=1e-12)
    assert half["point"]["linearly_stable"] and not beyond["point"]["linearly_stable"]
    assert beyond["threshold_2_over_eta"] == pytest.approx(2 / 1.5)


def test_stability_summary_samples_m_when_it_has_no_curve_and_says_when_it_has_no_description():
    # quadratic with spectrum (0, 1, 3): M = ker A, every minimum has the non-zero eigenvalues
    # {1, 3}; weakly stable iff 1 <= 2/eta, so the fraction is 1 at eta = 1.5 and 0 at eta = 2.5
    q = problems.get("quadratic", spectrum=[0.0, 1.0, 3.0])
    s = stability.stability_summary(q, [1.5, 2.5], key=jax.random.key(1))
    assert [r["mws_fraction"]["fraction"] for r in s["per_eta"]] == [1.0, 0.0]
    assert s["critical"]["eta_star"] == pytest.approx(2 / 3) and s["critical"]["eta_E"] == pytest.approx(2.0)
    free = Problem.from_expression("(x*y - 1)^2")  # M not described: estimated (see the test below)
    s = stability.stability_summary(free, [0.5], key=jax.random.key(0))
    assert s["critical"]["estimate"] and s["critical"]["eta_star"] == pytest.approx(0.5, rel=1e-8)
    big = Problem(name="big", loss=lambda th: jnp.sum(th**2), dim=65, box=((-1.0, 1.0),) * 65)
    s = stability.stability_summary(big, [0.5], key=jax.random.key(0))
    assert s["critical"] is None and "no description" in s["critical_note"] and "d = 65" in s["critical_note"]
    with pytest.raises(ValueError, match="'etas' parameter of stability_summary"):
        stability.stability_summary(free, [0.5, -1.0], key=jax.random.key(0))


@pytest.mark.parametrize("expr, min_value, eta_star, eta_E", [
    # 1/2 (1 - xy)^2: on M = {xy = 1} the one non-zero eigenvalue is x^2 + y^2 >= 2 (at +-(1, 1))
    ("0.5*(1-x*y)^2", 0.0, 1.0, 1.0),
    ("0.5*(1-x*y)^2", None, 1.0, 1.0),  # L* unknown: the lowest loss found
    # an isolated minimum: the Hessian is diag(1, 3)
    ("0.5*x^2+1.5*y^2", 0.0, 2 / 3, 2.0),
    # two isolated minima x = +-1 of (x^2 - 1)^2 (3 + x): L'' = 8 x^2 (3 + x) = 32 at 1, 16 at -1
    ("(x^2-1)^2*(3+x)", 0.0, 2 / 16, 2 / 16),
])
def test_critical_step_sizes_of_an_expression_are_estimated_from_minima_found(expr, min_value, eta_star, eta_E):
    """Issue #16 item 10: without a description of M, eta* and eta_E from minima found
    numerically; closed forms above.  They are lower bounds, reached here."""
    p = Problem.from_expression(expr, min_value=min_value)
    r = stability.estimate_critical_step_sizes(p, key=jax.random.key(0))
    assert r.eta_star == pytest.approx(eta_star, rel=1e-8) and r.eta_E == pytest.approx(eta_E, rel=1e-8)
    assert r.global_minima >= 10 and "lower bounds" in r.note and r.to_dict()["estimate"]


def test_an_estimate_is_a_lower_bound_and_says_when_no_minimum_is_found():
    p = Problem.from_expression("0.5*(1-x*y)^2", min_value=0.0)
    r = stability.estimate_critical_step_sizes(p, key=jax.random.key(3), starts=8, refine=False)
    assert r.eta_star <= 1.0 + 1e-12  # without refinement: the flattest of 8 minima, below the true eta*
    with pytest.raises(ValueError, match="found no minimum"):
        stability.estimate_critical_step_sizes(Problem.from_expression("x"), key=jax.random.key(0))
    with pytest.raises(ValueError, match="none within f_tol"):
        stability.estimate_critical_step_sizes(Problem.from_expression("x^2", min_value=-1.0), key=jax.random.key(0))


def test_sampled_critical_step_sizes_report_whether_their_refinements_agree():
    """Issue #16 (evidence for every estimator): with a sampled M the infima come from local
    refinements started at the best few samples; their spread is reported, and a disagreement
    becomes a note that the value is only a bound.  On a quadratic every minimum has the same
    spectrum, so the refinements agree exactly; on a (2, 2, 2) linear network lambda_min+ has
    infimum 0 along M (docs/linear.md), which refinements from different starts approach
    differently."""
    from gdstab.problems.linear import linear_network

    q = stability.critical_step_sizes(problems.get("quadratic", spectrum=[0.0, 1.0, 3.0]), key=jax.random.key(0))
    assert q.refine_spread == (0.0, 0.0) and q.note == ""
    rng = np.random.default_rng(0)
    lin = linear_network((2, 2, 2), rng.normal(size=(2, 6)), rng.normal(size=(2, 6)))
    c = stability.critical_step_sizes(lin, key=jax.random.key(0), n_samples=200)
    assert c.refine_spread[0] <= stability.REFINE_AGREE  # inf lambda_max: the starts agree
    assert c.refine_spread[1] > stability.REFINE_AGREE and "lambda_min+" in c.note and "upper bound" in c.note
    assert c.to_dict()["refine_spread"][1] == pytest.approx(c.refine_spread[1])
