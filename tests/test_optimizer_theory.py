"""Update rules as linear dynamical systems near a minimum (issue #15, item 4: the theory).

The references here never use gdstab.optimizers and gdstab.stability' matrices: the one-step maps are the update
equations written out in the tests and linearised by applying them to unit states, and the
boundaries are checked by iterating the recurrences themselves on quadratics."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdstab import optimizers as rules
from gdstab import stability

BETAS = (0.0, 0.5, 0.9)


def _step(name, beta, eta, lam, state):
    """One update of the rule on L = lam/2 x^2 (gradient lam x), state (x, buffer), written from
    the optax / PyTorch definitions; for adam lam stands for an eigenvalue of P^-1 H and the
    buffer for P^-1 m (P frozen), b1 = beta."""
    x, v = state
    g = lam * x
    if name == "gd":
        return np.array([x - eta * g, 0.0])
    if name == "momentum":
        v = beta * v + g
        return np.array([x - eta * v, v])
    if name == "nesterov":
        v = beta * v + g
        return np.array([x - eta * (g + beta * v), v])
    if name == "adam":
        v = beta * v + (1 - beta) * g
        return np.array([x - eta * v, v])
    raise AssertionError(name)


def _radius(name, beta, eta, lam):
    M = np.column_stack([_step(name, beta, eta, lam, e) for e in np.eye(2)])  # linear: columns = images of the basis
    return float(np.max(np.abs(np.linalg.eigvals(M))))


@pytest.mark.parametrize("name", ["gd", "momentum", "nesterov", "adam"])
@pytest.mark.parametrize("beta", BETAS)
def test_the_threshold_is_where_the_spectral_radius_crosses_one(name, beta):
    rule = rules.Rule(name, {"gd": (), "momentum": (("beta", beta),), "nesterov": (("beta", beta),),
                             "adam": (("b1", beta),)}[name])
    c = rules.threshold(rule)
    lam = 3.0
    grid = np.linspace(1e-3, 2.5 * c / lam, 4001)
    rho = np.array([_radius(name, beta, e, lam) for e in grid])
    inside = rho < 1 - 1e-9
    # stable exactly on (0, c / lam): the first grid point beyond the boundary is unstable
    assert np.all(inside[grid < c / lam * (1 - 1e-3)]) and not np.any(inside[grid > c / lam * (1 + 1e-3)])
    for e in (0.3 * c / lam, 0.99 * c / lam, 1.01 * c / lam):
        assert stability.spectral_radius(rule, e, lam) == pytest.approx(_radius(name, beta, e, lam), rel=1e-12)


@pytest.mark.parametrize("beta", BETAS)
@pytest.mark.parametrize("name", ["momentum", "nesterov"])
def test_iterating_the_rule_on_a_quadratic_converges_exactly_below_the_threshold(name, beta):
    """Spectrum (1, 3): the boundary is set by lambda_max = 3, eta = c / 3."""
    rule = rules.Rule(name, (("beta", beta),))
    edge = rules.threshold(rule) / 3.0
    for eta, converges in ((edge * (1 - 1e-2), True), (edge * (1 + 1e-2), False)):
        s = [np.array([1.0, 0.0]), np.array([1.0, 0.0])]
        for _ in range(20_000):
            s = [_step(name, beta, eta, lam, x) for lam, x in zip((1.0, 3.0), s)]
            size = max(abs(x[0]) for x in s)
            if size > 1e6:  # diverged
                break
        assert (size < 1e-6) == converges and (size > 1e6 or converges), (eta, size)


def test_adam_with_a_frozen_preconditioner_matches_its_threshold():
    """m <- b1 m + (1 - b1) g, theta <- theta - eta P^-1 m on 1/2 theta^T H theta with P frozen:
    stable iff eta lambda_max(P^-1 H) < (2 + 2 b1) / (1 - b1) (38 at b1 = 0.9)."""
    H = np.array([[2.0, 0.5], [0.5, 1.0]])
    P = np.diag([0.5, 2.0])
    mu = float(np.max(np.linalg.eigvals(np.linalg.solve(P, H)).real))
    b1 = 0.9
    rule = rules.parse_rule("adam:0.9,0.999")
    assert rules.threshold(rule) == pytest.approx(38.0)
    for f, converges in ((0.99, True), (1.01, False)):
        eta = f * 38.0 / mu
        th, m = np.array([1.0, -1.0]), np.zeros(2)
        for _ in range(20_000):
            m = b1 * m + (1 - b1) * (H @ th)
            th = th - eta * np.linalg.solve(P, m)
            if np.linalg.norm(th) > 1e6:
                break
        assert (np.linalg.norm(th) < 1e-6) == converges


def test_heavy_ball_critical_step_size_of_the_hyperbola_is_one_plus_beta(capsys):
    import json

    from gdstab.cli import main

    for beta in BETAS:
        assert main(["stability", "--problem", "hyperbola", "--eta", "1.2", "--point", "1,1",
                     "--optimizer", f"momentum:{beta}", "--json"]) == 0
        d = json.loads(capsys.readouterr().out)
        assert d["rule"]["eta_star"] == pytest.approx(1 + beta, rel=1e-9)
        q = d["per_eta"][0]["point"]["rule"]
        assert q["linearly_stable"] == (1.2 * 2.0 < 2 + 2 * beta)
        assert q["spectral_radius"] == pytest.approx(_radius("momentum", beta, 1.2, 2.0), rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(rules.RULES)), st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=4))
def test_optimizer_specs_parse_or_are_refused_with_the_standard_message(name, values):
    text = name + (":" + ",".join(repr(v) for v in values) if values else "")
    keys = [k for k, _ in rules.RULES[name]]
    ok_range = {"beta": (0, 1, True), "b1": (0, 1, True), "b2": (0, 1, True), "rho": (0, 1, False),
                "eps": (0, math.inf, False)}

    def admissible(k, v):
        lo, hi, closed = ok_range[k]
        return math.isfinite(v) and (lo <= v if closed else lo < v) and v < hi

    valid = len(values) <= len(keys) and all(admissible(k, v) for k, v in zip(keys, values))
    if valid:
        r = rules.parse_rule(text)
        assert rules.parse_rule(r.spec()) == r
        assert r.name == name and len(r.hyper) == len(keys)
    else:
        with pytest.raises(ValueError, match="'--optimizer' parameter of gdstab must be"):
            rules.parse_rule(text)
