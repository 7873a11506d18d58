"""spectrum: Lanczos and power iteration against dense eigendecompositions, HVPs against dense
Hessians, the GD Jacobian against I - eta H, slogdet against det."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdstab import problems, spectrum


def random_symmetric(d, seed, spread=1.0):
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    ev = rng.uniform(-1, 1, d) * spread
    return (Q * ev) @ Q.T, np.sort(ev)


@pytest.mark.parametrize("d, seed", [(30, 0), (80, 1), (200, 2)])
@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_lanczos_matches_eigh_on_random_symmetric_matrices(d, seed, which):
    A, ev = random_symmetric(d, seed, spread=10.0)
    k = 3
    r = spectrum.lanczos(lambda v: A @ v, d, k, key=jax.random.key(seed), which=which, tol=1e-12)
    want = ev[::-1][:k] if which == "largest" else ev[:k]
    assert r.converged
    np.testing.assert_allclose(r.eigenvalues, want, rtol=1e-8, atol=0)
    for i in range(k):  # eigenvectors: residual small and unit norm
        u = r.eigenvectors[:, i]
        assert np.linalg.norm(A @ u - want[i] * u) <= 1e-6 * np.abs(ev).max()
        assert np.linalg.norm(u) == pytest.approx(1.0, abs=1e-12)


def _tiny_mlp():
    """A 3-5-2 tanh network with biases, MSE on 12 samples: a genuinely curved Hessian."""
    rng = np.random.default_rng(0)
    X = jnp.asarray(rng.normal(size=(12, 3)))
    Y = jnp.asarray(rng.normal(size=(12, 2)))
    shapes = [(3, 5), (5,), (5, 2), (2,)]
    sizes = [int(np.prod(s)) for s in shapes]

    def loss(theta):
        parts, i = [], 0
        for s, n in zip(shapes, sizes):
            parts.append(theta[i : i + n].reshape(s))
            i += n
        W1, b1, W2, b2 = parts
        out = jnp.tanh(X @ W1 + b1) @ W2 + b2
        return 0.5 * jnp.mean(jnp.sum((out - Y) ** 2, axis=1))

    theta = jnp.asarray(rng.normal(size=sum(sizes)) * 0.7)
    return loss, theta


def test_lanczos_on_an_mlp_hessian_via_hvp():
    loss, theta = _tiny_mlp()
    d = theta.shape[0]
    H = spectrum.hessian(loss, theta)
    ev = np.linalg.eigvalsh(H)
    mv = spectrum.hvp(loss, theta)
    # the HVP agrees with the dense Hessian
    v = np.random.default_rng(3).normal(size=d)
    np.testing.assert_allclose(np.asarray(mv(jnp.asarray(v))), H @ v, rtol=1e-10, atol=1e-12)
    top = spectrum.lanczos(mv, d, 2, key=jax.random.key(1), which="largest")
    bottom = spectrum.lanczos(mv, d, 2, key=jax.random.key(2), which="smallest")
    assert top.converged and bottom.converged
    np.testing.assert_allclose(top.eigenvalues, ev[::-1][:2], rtol=1e-8)
    np.testing.assert_allclose(bottom.eigenvalues, ev[:2], rtol=1e-8, atol=1e-10 * np.abs(ev).max())


def test_lanczos_reports_non_convergence():
    A, _ = random_symmetric(300, 4)
    r = spectrum.lanczos(lambda v: A @ v, 300, 2, key=jax.random.key(0), max_iter=4, tol=1e-14)
    assert not r.converged and r.iterations == 4
    assert np.all(r.residuals > 0)


def test_power_iteration_matches_eigh():
    A, ev = random_symmetric(40, 5)
    A = A + 3.0 * np.outer(np.ones(40), np.ones(40)) / 40  # a clear dominant eigenvalue
    ev = np.linalg.eigvalsh(A)
    r = spectrum.power_iteration(lambda v: A @ v, 40, key=jax.random.key(0), tol=1e-12)
    assert r.converged
    assert r.eigenvalue == pytest.approx(ev[np.argmax(np.abs(ev))], rel=1e-10)
    slow = spectrum.power_iteration(lambda v: A @ v, 40, key=jax.random.key(0), max_iter=2)
    assert not slow.converged


def test_gd_jacobian_and_slogdet():
    loss, theta = _tiny_mlp()
    eta = 0.37
    H = spectrum.hessian(loss, theta)
    J = spectrum.gd_jacobian(loss, theta, eta)
    np.testing.assert_allclose(J, np.eye(H.shape[0]) - eta * H, atol=1e-12)
    sign, logdet = spectrum.slogdet_gd(H, eta)
    det = np.linalg.det(np.eye(H.shape[0]) - eta * H)
    assert sign == np.sign(det)
    assert logdet == pytest.approx(np.log(abs(det)), rel=1e-10)


def test_smallest_nonzero_eigenvalue_on_the_hyperbola_minima():
    p = problems.get("hyperbola")
    for x in (0.5, 1.0, 2.5):
        H = spectrum.hessian(p, jnp.array([x, 1 / x]))
        r = spectrum.smallest_nonzero_eigenvalue(H)
        assert r.value == pytest.approx(x * x + 1 / (x * x), rel=1e-12)
        assert r.n_zero == 1 and r.gap > 1e6


def test_smallest_nonzero_with_explicit_rank_tolerance():
    ev = np.array([1e-14, -3e-13, 2e-3, 5.0, 7.0])
    assert spectrum.smallest_nonzero_eigenvalue(ev).value == 2e-3
    assert spectrum.smallest_nonzero_eigenvalue(ev, rank_tol=1e-2).value == 5.0
    r = spectrum.smallest_nonzero_eigenvalue(np.zeros(3))
    assert np.isnan(r.value) and r.n_zero == 3


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: spectrum.lanczos(lambda v: v, 5, 6, key=jax.random.key(0)), "'k' parameter"),
        (lambda: spectrum.lanczos(lambda v: v, 5, 1, key=jax.random.key(0), which="middle"), "'which'"),
        (lambda: spectrum.lanczos(lambda v: v * np.nan, 5, 1, key=jax.random.key(0)), "finite"),
        (lambda: spectrum.slogdet_gd(np.ones((2, 3)), 0.1), "'H' parameter"),
        (lambda: spectrum.slogdet_gd(np.eye(2), -1.0), "'eta'"),
        (lambda: spectrum.hessian(lambda t: jnp.exp(t[0] ** 2), jnp.array([40.0])), "not finite"),
        (lambda: spectrum.smallest_nonzero_eigenvalue(np.array([np.inf, 1.0])), "not finite"),
    ],
)
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()
