"""Deep linear networks against closed forms (paper section "Main Results: Linear Networks")."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdstab import spectrum, stability
from gdstab.problems.linear import (balanced_point, gauge, is_balanced, linear_network, path_to_infinity)


def whitened(d0, n, s, rng):
    Q, _ = np.linalg.qr(rng.normal(size=(n, d0)))
    return np.sqrt(s) * Q.T  # X X^T = s I


@pytest.mark.parametrize("norm, want", [("sum", 4.0), ("half_sum", 2.0)])
def test_scalar_network_inf_lambda_max(norm, want):
    p = linear_network((1, 1, 1), np.ones((1, 1)), np.ones((1, 1)), normalisation=norm)
    # M = {xy = 1}: L = c (1 - xy)^2 has Hessian 2c (y, x)(y, x)^T on M: lambda = 2c (x^2 + y^2) >= 4c
    x = 1.7
    ev = np.linalg.eigvalsh(spectrum.hessian(p, [x, 1 / x]))
    c = 1.0 if norm == "sum" else 0.5
    np.testing.assert_allclose(ev, [0.0, 2 * c * (x * x + 1 / (x * x))], atol=1e-12)
    r = stability.critical_step_sizes(p, key=jax.random.key(0), n_samples=50)
    assert r.inf_lambda_max == pytest.approx(want, rel=1e-9)
    assert r.eta_star == pytest.approx(2 / want, rel=1e-9)


def test_depth_three_scalar_network():
    p = linear_network((1, 1, 1, 1), np.ones((1, 1)), np.ones((1, 1)))
    starts = [balanced_point((1, 1, 1, 1), np.ones((1, 1)), 1)] + list(np.asarray(p.minima.sample(jax.random.key(1), 3)))
    best, th, _, _ = stability.minimise_sharpness_on_minima(p, starts)
    assert best == pytest.approx(6.0, rel=1e-10)  # |x| = |y| = |z| = 1, lambda = 2 * 3


@pytest.mark.parametrize("dims", [(2, 3, 2), (3, 3, 3), (2, 2, 2, 2), (1, 2, 1)])
def test_whitened_data_flattest_minimum_is_balanced_with_the_closed_form(dims):
    rng = np.random.default_rng(sum(dims))
    s = 1.7
    X = whitened(dims[0], 9, s, rng)
    Y = rng.normal(size=(dims[-1], 9))
    p = linear_network(dims, X, Y)
    t = p.options["target"]
    N = len(dims) - 1
    sigma1 = np.linalg.svd(t.W_star, compute_uv=False)[0]
    want = 2 * s * N * sigma1 ** (2 - 2 / N)
    bal = balanced_point(dims, t.W_star, t.rank)
    assert is_balanced(dims, bal)
    lam_bal = np.linalg.eigvalsh(spectrum.hessian(p, bal))[-1]
    assert lam_bal == pytest.approx(want, rel=1e-10)
    # optimisation from unbalanced starts finds nothing flatter, and reaches the value
    starts = list(np.asarray(p.minima.sample(jax.random.key(2), 4)))
    best, th, vals, _ = stability.minimise_sharpness_on_minima(p, starts)
    assert best == pytest.approx(want, rel=1e-8)
    assert min(vals) >= want * (1 - 1e-10)


@pytest.mark.parametrize("dims", [(2, 3, 2), (3, 1, 3), (2, 2, 2, 2), (3, 2, 4), (4, 3, 2, 2)])
def test_dimension_of_M_and_spectrum_counts(dims):
    rng = np.random.default_rng(7)
    X = rng.normal(size=(dims[0], 12))
    Y = rng.normal(size=(dims[-1], 12))
    p = linear_network(dims, X, Y)
    t = p.options["target"]
    r = min(dims)
    assert t.rank == r and t.filling == (r == min(dims[0], dims[-1]))
    assert t.dim_M == t.d_theta - r * (dims[0] + dims[-1] - r)
    pts = list(np.asarray(p.minima.sample(jax.random.key(3), 3)))
    pts.append(np.asarray(p.minima.project(jnp.asarray(rng.normal(size=p.dim)))))  # a general point
    for th in pts:
        assert float(p.minima.residual(jnp.asarray(th))) <= 1e-12
        assert float(p.loss(jnp.asarray(th))) - t.min_value <= 1e-10 * max(1.0, t.min_value)
        ev = np.linalg.eigvalsh(spectrum.hessian(p, th))
        nz = spectrum.smallest_nonzero_eigenvalue(ev)
        assert nz.n_zero == t.dim_M
        assert (ev > nz.threshold).sum() == r * (dims[0] + dims[-1] - r)
        assert (ev < -nz.threshold).sum() == 0


def test_hessian_on_M_equals_the_chain_rule_form():
    dims = (2, 3, 2)
    rng = np.random.default_rng(4)
    X, Y = rng.normal(size=(2, 10)), rng.normal(size=(2, 10))
    p = linear_network(dims, X, Y, normalisation="half_mean")
    th = np.asarray(p.minima.sample(jax.random.key(5), 1))[0]
    c = 0.5 / 10

    def mu(theta):
        W1, W2 = theta[:6].reshape(3, 2), theta[6:].reshape(2, 3)
        return (W2 @ W1).reshape(-1)  # row-major vec

    J = np.asarray(jax.jacfwd(mu)(jnp.asarray(th)))
    # l(W) = c ||Y - W X||^2: with row-major vec, D^2 l = 2c (I_{d_h} kron X X^T)
    D2l = 2 * c * np.kron(np.eye(2), X @ X.T)
    np.testing.assert_allclose(spectrum.hessian(p, th), J.T @ D2l @ J, rtol=1e-10, atol=1e-12)


def test_non_filling_minimum_is_the_whitened_eckart_young_solution():
    rng = np.random.default_rng(8)
    dims = (3, 1, 3)
    X, Y = rng.normal(size=(3, 15)), rng.normal(size=(3, 15))
    p = linear_network(dims, X, Y)
    t = p.options["target"]
    assert not t.filling and np.linalg.matrix_rank(t.W_star) == 1
    loss_of = lambda W: np.sum((Y - W @ X) ** 2)  # noqa: E731
    assert loss_of(t.W_star) == pytest.approx(t.min_value, rel=1e-12)
    # no rank-1 matrix does better (random search around and far from W*)
    for _ in range(300):
        u, v = rng.normal(size=(3, 1)), rng.normal(size=(1, 3))
        assert loss_of(u @ v) >= t.min_value - 1e-9
        a = t.W_star + 1e-3 * (u @ v)
        U, s_, Vt = np.linalg.svd(a)
        assert loss_of(s_[0] * np.outer(U[:, 0], Vt[0])) >= t.min_value - 1e-9
    # with whitened data it is the plain truncated SVD of W0*
    Xw = whitened(3, 15, 2.0, rng)
    pw = linear_network(dims, Xw, Y)
    tw = pw.options["target"]
    U, s_, Vt = np.linalg.svd(tw.W0_star)
    np.testing.assert_allclose(tw.W_star, s_[0] * np.outer(U[:, 0], Vt[0]), atol=1e-12)


def test_gauge_transforms_stay_on_M_and_walks_report_the_spectrum():
    dims = (2, 3, 2)
    rng = np.random.default_rng(9)
    p = linear_network(dims, rng.normal(size=(2, 12)), rng.normal(size=(2, 12)))
    t = p.options["target"]
    th = gauge(dims, balanced_point(dims, t.W_star, t.rank), [np.eye(3) + 0.5 * rng.normal(size=(3, 3))])
    assert float(p.minima.residual(jnp.asarray(th))) <= 1e-12
    rows = stability.walk_along_minima(p, path_to_infinity(dims, t.W_star, t.rank, "shear"), [0, 4, 16])
    for r in rows:
        assert abs(r["loss_minus_min"]) <= 1e-9 * max(1.0, t.min_value)
        assert r["n_zero"] == t.dim_M  # the rank cut is unambiguous along the path
    # lambda_max is proper (grows without bound) while lambda_min+ decreases towards 0 along a
    # shear of the hidden layer: the measurement reported in docs/linear.md
    assert rows[-1]["lambda_max"] > 50 * rows[0]["lambda_max"]
    assert rows[-1]["lambda_min_pos"] < rows[0]["lambda_min_pos"] / 20


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"dims": (2, 3, 2), "X": np.ones((3, 5)), "Y": np.ones((2, 5))}, "'X' parameter"),
        ({"dims": (2, 3, 2), "X": np.ones((2, 5)), "Y": np.ones((2, 4))}, "'Y' parameter"),
        ({"dims": (2, 3, 2), "X": np.ones((2, 5)), "Y": np.ones((2, 5))}, "full rank.*linearly independent"),
        ({"dims": (2, 3, 2), "X": np.ones((2, 1)), "Y": np.ones((2, 1))}, "full rank"),
        ({"dims": (2, 3, 2), "X": np.full((2, 5), np.nan), "Y": np.ones((2, 5))}, "finite"),
        ({"dims": (2,), "X": np.ones((2, 5)), "Y": np.ones((2, 5))}, "'dims'"),
        ({"dims": (2, 0, 2), "X": np.eye(2), "Y": np.eye(2)}, "'dims'"),
        ({"dims": (2, 2), "X": np.eye(2), "Y": np.eye(2), "normalisation": "avg"}, "'normalisation'"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        linear_network(**kwargs)


def test_cli_linear(capsys, tmp_path):
    from gdstab.cli import main

    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", X=whitened(2, 6, 1.0, rng), Y=rng.normal(size=(2, 6)))
    assert main(["linear", "--dims", "2,3,2", "--data", str(tmp_path / "d.npz"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["rank"] == 2 and d["filling"] and d["dim_M"] == 8
    sp = d["spectrum_at_sampled_minimum"]
    assert sp["zero"] == 8 and sp["positive"] == 4 and sp["negative"] == 0
    assert d["eta_star"] == pytest.approx(2 / d["inf_lambda_max"])
    assert set(d["walks"]) == {"scaling", "shear", "kernel"}
    assert main(["linear", "--dims", "2,x,2"]) == 2
    assert "'--dims'" in capsys.readouterr().err
    np.savez(tmp_path / "bad.npz", A=np.ones(2))
    assert main(["linear", "--dims", "2,3,2", "--data", str(tmp_path / "bad.npz")]) == 2
    assert "'--data'" in capsys.readouterr().err


def test_dynamics_check_trapping_vanishes_beyond_eta_star(capsys, tmp_path):
    """(1,1,1), X = Y = 1: eta* = 0.5 in closed form (inf lambda_max = 4).  Below it GD from
    [-1, 1]^2 converges; beyond it no minimum is linearly stable and no trajectory converges."""
    from gdstab.cli import main

    np.savez(tmp_path / "one.npz", X=np.ones((1, 1)), Y=np.ones((1, 1)))
    assert main(["linear", "--dims", "1,1,1", "--data", str(tmp_path / "one.npz"), "--trapping", "0.2,0.4,0.6,0.9",
                 "--inits", "400", "--steps", "4000", "--json", "--plot", str(tmp_path / "trap")]) == 0
    d = json.loads(capsys.readouterr().out)["trapping"]
    assert d["eta_star"] == pytest.approx(0.5, rel=1e-9)
    frac = {r["eta"]: r["converged"] for r in d["per_eta"]}
    assert frac[0.2] > 0.9 and frac[0.4] > 0.9
    assert frac[0.6] == 0.0 and frac[0.9] == 0.0
    assert (tmp_path / "trap.png").stat().st_size > 1000


def test_curvature_matrix_has_the_hessians_nonzero_spectrum():
    """The small matrix S Dμ Dμᵀ S of a filling network = the non-zero Hessian eigenvalues on M
    (dense autodiff Hessian), at random points of M; non-filling networks have none."""
    rng = np.random.default_rng(3)
    dims = (3, 4, 2, 2)
    X, Y = rng.normal(size=(3, 11)), rng.normal(size=(2, 11))
    p = linear_network(dims, X, Y, normalisation="half_mean")
    t = p.options["target"]
    assert t.filling and p.minima.curvature is not None
    k = t.d_theta - t.dim_M
    with jax.enable_x64(True):
        for th in np.asarray(p.minima.sample(jax.random.key(5), 3)):
            dense = np.linalg.eigvalsh(spectrum.hessian(p, th))
            small = np.linalg.eigvalsh(np.asarray(p.minima.curvature(jax.numpy.asarray(th))))
            assert small.shape == (dims[0] * dims[-1],) and k == dims[0] * dims[-1]
            np.testing.assert_allclose(small, dense[-k:], rtol=1e-10, atol=1e-10 * dense[-1])
            assert np.all(np.abs(dense[:-k]) <= 1e-9 * dense[-1])
    bottleneck = linear_network((3, 1, 3), rng.normal(size=(3, 8)), rng.normal(size=(3, 8)))
    assert bottleneck.minima.curvature is None


def test_inf_lambda_max_small_matrix_and_dense_hessian_agree():
    """Two routes to inf_M λ_max on non-whitened data (no closed form): the small curvature
    matrix and the dense Hessian (curvature removed), from different starts."""
    import dataclasses

    rng = np.random.default_rng(11)
    dims = (2, 3, 3, 2)
    X, Y = rng.normal(size=(2, 10)), rng.normal(size=(2, 10))
    p = linear_network(dims, X, Y)
    t = p.options["target"]
    starts = [balanced_point(dims, t.W_star, t.rank)] + list(np.asarray(p.minima.sample(jax.random.key(8), 3)))
    small, th, vals, _ = stability.minimise_sharpness_on_minima(p, starts)
    dense_p = dataclasses.replace(p, minima=dataclasses.replace(p.minima, curvature=None))
    dense, _, dvals, _ = stability.minimise_sharpness_on_minima(dense_p, starts[::-1][:2])
    # the smoothing error is <= t log k with t <= 1e-12 lambda at the last stage: 1e-10 leaves
    # room for the last stage stopping short (measured agreement: ~1e-13)
    assert dense == pytest.approx(small, rel=1e-10)
    np.testing.assert_allclose(vals, small, rtol=1e-10)  # every start reaches the same infimum
    # it is an infimum: no sampled point of M is flatter
    with jax.enable_x64(True):
        pts = np.asarray(p.minima.sample(jax.random.key(9), 200))
    sampled = [np.linalg.eigvalsh(spectrum.hessian(p, q))[-1] for q in pts]
    assert min(sampled) >= small * (1 - 1e-9)
    assert p.minima.residual(jax.numpy.asarray(th)) < 1e-12


def test_analyse_linear_network_is_what_the_command_prints(capsys, tmp_path):
    """The library function behind `gdstab linear`: the scalar network (1, 1, 1) on X = Y = 1 has
    inf_M lambda_max = 4 (eta* = 0.5), M = {w1 w2 = 1} of dimension 1, one zero and one positive
    eigenvalue at every minimum; the command's JSON is this analysis plus where the data came from."""
    from gdstab.cli import main
    from gdstab.experiments.paper_linear import analyse_linear_network

    a = analyse_linear_network([1, 1, 1], np.ones((1, 1)), np.ones((1, 1)), seed=2, restarts=3)
    assert a["inf_lambda_max"] == pytest.approx(4.0, rel=1e-9) and a["eta_star"] == pytest.approx(0.5, rel=1e-9)
    assert a["dim_M"] == 1 and a["rank"] == 1 and a["filling"]
    sp = a["spectrum_at_sampled_minimum"]
    assert (sp["zero"], sp["positive"], sp["negative"]) == (1, 1, 0)
    assert a["starts"] == 4 and len(a["restarts"]) == 4 and a["restarts_agree"]
    assert a["minimiser_balanced"]
    np.savez(tmp_path / "one.npz", X=np.ones((1, 1)), Y=np.ones((1, 1)))
    assert main(["linear", "--dims", "1,1,1", "--data", str(tmp_path / "one.npz"), "--seed", "2", "--restarts", "3",
                 "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed.pop("data") == f"data from {tmp_path / 'one.npz'}"
    assert printed == json.loads(json.dumps(a))


def _ill_conditioned_data():
    """(2, 3, 2) data with 6 samples whose X has singular values 5.37 and 0.177 (cond(XXᵀ) ≈ 920,
    one input direction about 30 times weaker than the other): issue #16, item 1."""
    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    V, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    return U @ np.diag([5.37, 0.177]) @ V.T, rng.normal(size=(2, 6))


@pytest.mark.slow
def test_inf_lambda_max_on_ill_conditioned_data_reaches_an_independent_optimum():
    """Before the polish the five starts ended 2.3 % apart (31.63 ... 30.91) and the smallest was
    0.15 % above the infimum.  The reference here is computed without gdstab's projection: an
    explicit chart of M = {W2 W1 = W*} (W1 free of full rank, W2 = W* W1⁺ + z nᵀ with n spanning
    ker W1ᵀ), Nelder–Mead on the chart from random starts, the Hessian of a loss written here."""
    from scipy.optimize import minimize

    from gdstab.experiments.paper_linear import analyse_linear_network

    X, Y = _ill_conditioned_data()
    W_star = Y @ X.T @ np.linalg.inv(X @ X.T)

    def loss(th):
        R = Y - th[6:].reshape(2, 3) @ th[:6].reshape(3, 2) @ X
        return jnp.sum(R * R)

    H = jax.jit(jax.hessian(loss))

    def on_chart(z):
        W1 = z[:6].reshape(3, 2)
        n = np.linalg.svd(W1)[0][:, 2]  # the unit vector of ker W1ᵀ
        W2 = W_star @ np.linalg.pinv(W1) + np.outer(z[6:], n)
        return np.concatenate([W1.ravel(), W2.ravel()])

    def lam_max(z):
        return float(np.linalg.eigvalsh(np.asarray(H(jnp.asarray(on_chart(z)))))[-1])

    rng = np.random.default_rng(0)
    reference = []
    for _ in range(2):
        z = np.concatenate([rng.normal(size=6), 0.3 * rng.normal(size=2)])
        for _ in range(3):
            z = minimize(lam_max, z, method="Nelder-Mead",
                         options={"maxfev": 6000, "xatol": 1e-11, "fatol": 1e-13, "adaptive": True}).x
        reference.append(lam_max(z))
    assert max(reference) - min(reference) <= 1e-8 * min(reference)  # the reference agrees with itself
    a = analyse_linear_network([2, 3, 2], X, Y)
    assert a["inf_lambda_max"] == pytest.approx(min(reference), rel=1e-8)
    assert a["restarts_agree"] and a["restart_spread"] <= 1e-8


def test_gradient_assembles_theta_once(jaxpr_counts):
    """θ is cut into W_1, …, W_h by one split, so the gradient is one concatenation (no pad of
    θ's size per matrix); the values are those of the per-matrix slicing written here."""
    rng = np.random.default_rng(2)
    dims = (3, 4, 4, 4, 4, 2)
    X, Y = rng.normal(size=(3, 7)), rng.normal(size=(2, 7))
    p = linear_network(dims, X, Y)
    theta = jnp.asarray(rng.normal(size=p.dim))

    def sliced_loss(th):
        P, i = None, 0
        for a, b in zip(dims[:-1], dims[1:]):
            W = th[i:i + a * b].reshape(b, a)
            i += a * b
            P = W if P is None else W @ P
        R = Y - P @ X
        return jnp.sum(R * R)  # normalisation "sum"

    assert "pad" not in jaxpr_counts(jax.grad(p.loss), theta)
    assert "pad" in jaxpr_counts(jax.grad(sliced_loss), theta)  # what the check would catch
    np.testing.assert_allclose(np.asarray(jax.grad(p.loss)(theta)), np.asarray(jax.grad(sliced_loss)(theta)),
                               rtol=1e-13, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(p.loss(theta)), np.asarray(sliced_loss(theta)))
