"""Stochastic trace (Hutchinson, Hutch++) and spectral density (stochastic Lanczos quadrature)
against dense eigenvalues (issue #19, item 2)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdstab import problems, spectrum
from gdstab._validation import InvalidParameterError


def _sym(d, seed, shift=0.0):
    rng = np.random.default_rng(seed)
    A = rng.normal(size=(d, d))
    return (A + A.T) / 2 + shift * np.eye(d)


def _mlp_at_init(n, d_in, depth, width):
    rng = np.random.default_rng(0)
    X, Y = rng.normal(size=(n, d_in)), rng.normal(size=(n, 2))
    p = problems.mlp(depth=depth, width=width, data=(X, Y), activation="tanh", loss="mse")
    with jax.enable_x64(True):
        return p, np.asarray(p.init(jax.random.key(0), 1))[0]


def _dense_moments(A):
    lam = np.linalg.eigvalsh(A)
    return np.array([np.mean(lam**p) for p in range(5)])


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_is_within_three_standard_errors_of_the_dense_trace(method):
    for seed in range(3):
        A = _sym(80, seed, shift=2.0)
        r = spectrum.trace_estimate(lambda v: A @ v, 80, key=jax.random.key(seed), probes=60, method=method)
        assert r.matvecs == 60 and np.isfinite(r.stderr) and r.stderr > 0
        assert abs(r.estimate - np.trace(A)) <= 3 * r.stderr


def test_hutch_plus_plus_beats_hutchinson_when_a_few_eigenvalues_dominate():
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(200, 200)))
    A = Q @ np.diag(np.r_[np.full(10, 100.0), np.full(190, 0.1)]) @ Q.T
    h = spectrum.trace_estimate(lambda v: A @ v, 200, key=jax.random.key(1), probes=90, method="hutchinson")
    pp = spectrum.trace_estimate(lambda v: A @ v, 200, key=jax.random.key(1), probes=90, method="hutch++")
    assert pp.stderr < h.stderr / 10  # the sketch captures the 10 large eigenvalues exactly
    assert abs(pp.estimate - np.trace(A)) <= 3 * pp.stderr


@pytest.mark.parametrize("method", ["hutchinson", "hutch++"])
def test_trace_estimators_are_unbiased_over_200_seeds(method):
    A = _sym(40, 7, shift=1.0)
    est = np.array([spectrum.trace_estimate(lambda v: A @ v, 40, key=jax.random.key(s), probes=9, method=method).estimate
                    for s in range(200)])
    assert abs(est.mean() - np.trace(A)) <= 3 * est.std(ddof=1) / np.sqrt(200)


def test_each_probes_quadrature_reproduces_its_moments_exactly():
    """Σ τ_j θ_jᵖ = vᵀHᵖv/‖v‖² for p < 2m: the quadrature of m Lanczos steps is exact there."""
    A = _sym(50, 3)
    key = jax.random.key(4)
    r = spectrum.spectral_density(lambda v: A @ v, 50, key=key, probes=5, lanczos_steps=6)
    V = spectrum.probe_vectors(key, 50, 5)
    for i, v in enumerate(V):
        u = v / np.linalg.norm(v)
        for p in range(5):
            want = u @ np.linalg.matrix_power(A, p) @ u
            got = np.sum(r.weights[i] * r.nodes[i] ** p)
            assert got == pytest.approx(want, rel=1e-10, abs=1e-12 * np.abs(A).max() ** p)


def test_density_moments_match_the_dense_eigenvalues_with_enough_probes():
    """With d orthogonal probes the probes span the space and the moment estimates are exact
    (1e-6 relative as asked; rounding gives ~1e-13); with 40 Rademacher probes they are within
    3 standard errors."""
    A = _sym(30, 5, shift=0.5)
    exact = _dense_moments(A)
    r = spectrum.spectral_density(lambda v: A @ v, 30, key=jax.random.key(0), probes=30, lanczos_steps=10,
                                  distribution="orthogonal")
    np.testing.assert_allclose(r.moments, exact, rtol=1e-6)
    g = r.grid
    assert np.sum(r.density[:-1] * np.diff(g)) == pytest.approx(1.0, abs=1e-3)  # integrates to 1
    rr = spectrum.spectral_density(lambda v: A @ v, 30, key=jax.random.key(1), probes=40, lanczos_steps=10)
    assert np.all(np.abs(rr.moments - exact) <= 3 * rr.moments_stderr + 1e-12)
    assert rr.moments[0] == pytest.approx(1.0)


def test_density_moments_are_unbiased_over_200_seeds():
    A = _sym(25, 9)
    exact = _dense_moments(A)
    m = np.array([spectrum.spectral_density(lambda v: A @ v, 25, key=jax.random.key(s), probes=2, lanczos_steps=4,
                                            grid=50).moments for s in range(200)])
    se = m.std(axis=0, ddof=1) / np.sqrt(200)
    assert np.all(np.abs(m.mean(axis=0)[1:] - exact[1:]) <= 3 * se[1:])


def test_density_of_a_small_mlp_hessian_matches_its_dense_spectrum():
    p, th = _mlp_at_init(20, 4, depth=1, width=6)
    H = spectrum.hessian(p, th)
    d = p.dim
    r = spectrum.spectral_density(spectrum.hvp(p, th), d, key=jax.random.key(2), probes=d, lanczos_steps=12,
                                  distribution="orthogonal")
    np.testing.assert_allclose(r.moments, _dense_moments(H), rtol=1e-6)
    t = spectrum.trace_estimate(spectrum.hvp(p, th), d, key=jax.random.key(3), probes=30)
    assert abs(t.estimate - np.trace(H)) <= 3 * t.stderr
    # a count above a threshold is not a polynomial: exact only where the Ritz values are the
    # eigenvalues (here d steps: every probe's Krylov space is the whole space)
    full = spectrum.spectral_density(spectrum.hvp(p, th), d, key=jax.random.key(2), probes=d, lanczos_steps=d,
                                     distribution="orthogonal")
    lam = np.linalg.eigvalsh(H)
    frac, se = full.fraction_above(0.5 * (lam[-3] + lam[-4]))  # the top 3 of d eigenvalues
    assert frac == pytest.approx(3 / d, abs=1e-8)


def test_same_key_same_numbers_and_probes_independent_of_how_many_are_drawn():
    A = _sym(20, 1)
    a = spectrum.spectral_density(lambda v: A @ v, 20, key=jax.random.key(5), probes=4, lanczos_steps=5)
    b = spectrum.spectral_density(lambda v: A @ v, 20, key=jax.random.key(5), probes=4, lanczos_steps=5)
    assert np.array_equal(a.density, b.density) and np.array_equal(a.nodes, b.nodes)
    assert np.array_equal(spectrum.probe_vectors(jax.random.key(5), 20, 7)[:4], spectrum.probe_vectors(jax.random.key(5), 20, 4))


@pytest.mark.parametrize("fn, kwargs, name", [
    ("trace_estimate", {"probes": 0}, "probes"), ("trace_estimate", {"probes": 2, "method": "hutch++"}, "probes"),
    ("trace_estimate", {"method": "exact"}, "method"), ("spectral_density", {"probes": -1}, "probes"),
    ("spectral_density", {"sigma": 0.0}, "sigma"), ("spectral_density", {"lanczos_steps": 0}, "lanczos_steps"),
    ("spectral_density", {"distribution": "uniform"}, "distribution"),
    ("spectral_density", {"probes": 11, "distribution": "orthogonal"}, "probes"),
    ("spectral_density", {"grid": [1.0, 0.0]}, "grid"),
])
def test_bad_input_names_the_parameter(fn, kwargs, name):
    A = np.eye(10)
    with pytest.raises(InvalidParameterError, match=f"'{name}' parameter of {fn}"):
        getattr(spectrum, fn)(lambda v: A @ v, 10, key=jax.random.key(0), **kwargs)


def test_a_matvec_returning_non_finite_values_is_refused():
    with pytest.raises(InvalidParameterError, match="'matvec' parameter of trace_estimate must return 5 finite"):
        spectrum.trace_estimate(lambda v: v * np.nan, 5, key=jax.random.key(0), probes=3)


def test_spectrum_command_top_eigenvalues_trace_and_density(tmp_path, capsys):
    import json

    from gdstab.cli import main

    assert main(["spectrum", "--problem", "hyperbola", "--init", "1.5,0.7", "--top", "2", "--eta", "0.5", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    x, y = 1.5, 0.7
    H = np.array([[y * y, 2 * x * y - 1], [2 * x * y - 1, x * x]])  # of ½(1 − xy)²
    np.testing.assert_allclose(s["top"]["eigenvalues"], np.linalg.eigvalsh(H)[::-1], rtol=1e-12)
    assert s["top_above_2_over_eta"] == 0
    out = tmp_path / "s"
    assert main(["spectrum", "--loss", "x**2 + 3*y**2 + 10*z**2 + x*y", "--init", "0,0,0", "--density", "--probes", "3",
                 "--lanczos-steps", "3", "--eta", "0.15", "--out", str(out), "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    H = np.array([[2.0, 1, 0], [1, 6, 0], [0, 0, 20]])
    lam = np.linalg.eigvalsh(H)
    assert s["density"]["moments"][1] == pytest.approx(lam.mean(), abs=3 * s["density"]["moments_stderr"][1] + 1e-12)
    assert abs(s["trace"]["estimate"] - np.trace(H)) <= 3 * s["trace"]["stderr"] + 1e-9
    # 3 steps from any probe span the 3-D space: every probe's nodes are the 3 eigenvalues
    assert s["density"]["range"] == pytest.approx([lam[0], lam[-1]], rel=1e-9)
    assert s["density"]["above_2_over_eta"]["count"] == pytest.approx(1.0, abs=3 * s["density"]["above_2_over_eta"]["count_stderr"] + 1e-9)
    assert (out / "spectrum.png").exists() and (out / "spectrum.zarr").exists()
    assert main(["spectrum", "--problem", "hyperbola", "--top", "3"]) == 2
    assert "'--top' parameter of gdstab spectrum must be an int <= d = 2" in capsys.readouterr().err


@pytest.mark.parametrize("method", ["krylov-schur", "eigsh"])
def test_top_eigenvalues_with_bounded_memory_match_the_dense_spectrum(method):
    p, th = _mlp_at_init(30, 6, depth=2, width=8)
    lam = np.linalg.eigvalsh(spectrum.hessian(p, th))[::-1]
    r = spectrum.top_eigenvalues(spectrum.hvp(p, th), p.dim, 10, key=jax.random.key(1), method=method)
    assert r.converged and r.complete is None and r.method == method
    np.testing.assert_allclose(r.eigenvalues, lam[:10], rtol=1e-8, atol=1e-8 * lam[0])
    # every eigenvalue above a threshold: k grows until the smallest found is below it
    thr = 0.5 * (lam[13] + lam[14])  # 14 eigenvalues above
    a = spectrum.top_eigenvalues(spectrum.hvp(p, th), p.dim, 4, key=jax.random.key(1), above=thr, method=method)
    assert a.complete and int(np.sum(a.eigenvalues > thr)) == 14
    np.testing.assert_allclose(a.eigenvalues[:14], lam[:14], rtol=1e-8, atol=1e-8 * lam[0])
    with pytest.raises(InvalidParameterError, match="'k' parameter of top_eigenvalues"):
        spectrum.top_eigenvalues(lambda v: v, 5, 5, key=jax.random.key(0))


def test_the_device_solvers_never_hand_numpy_vectors_to_the_product():
    """Lanczos (restarted), the top eigenvalues, SLQ and Hutch++ keep their vectors as JAX arrays:
    the product receives JAX arrays, and the answers still equal the dense ones."""
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.normal(size=(120, 120)))
    ev = np.sort(rng.uniform(-1, 3, 120))
    A = jnp.asarray((Q * ev) @ Q.T)
    seen = []

    def mv(v):
        seen.append(isinstance(v, jax.Array) and not isinstance(v, np.ndarray))
        return A @ v

    top = spectrum.top_eigenvalues(mv, 120, 4, key=jax.random.key(0))
    np.testing.assert_allclose(top.eigenvalues, ev[::-1][:4], rtol=1e-9)
    low = spectrum.lanczos(mv, 120, 2, key=jax.random.key(1), which="smallest", tol=1e-12)
    np.testing.assert_allclose(low.eigenvalues, ev[:2], rtol=1e-8)
    tr = spectrum.trace_estimate(mv, 120, key=jax.random.key(2), probes=120, method="hutchinson", distribution="orthogonal")
    assert tr.estimate == pytest.approx(ev.sum(), rel=1e-10)  # d orthogonal probes: exact
    dens = spectrum.spectral_density(mv, 120, key=jax.random.key(3), probes=2, lanczos_steps=120)
    assert dens.moments[1] == pytest.approx(ev.mean(), rel=1e-9, abs=3 * dens.moments_stderr[1])
    assert seen and all(seen)


def test_restarted_lanczos_bounds_its_basis_and_still_converges():
    """A cluster at the top of a 600-dimensional spectrum needs more than ncv = 20 steps, so the
    solver restarts (memory stays 21 vectors); the answers equal eigh's."""
    rng = np.random.default_rng(3)
    Q, _ = np.linalg.qr(rng.normal(size=(600, 600)))
    ev = np.concatenate([[10.0, 9.99, 9.98], rng.uniform(0, 9.9, 597)])
    A = (Q * ev) @ Q.T
    r = spectrum.lanczos(lambda v: A @ np.asarray(v), 600, 3, key=jax.random.key(0), tol=1e-10)
    assert r.converged and r.iterations > 20  # restarted at least once
    np.testing.assert_allclose(r.eigenvalues, [10.0, 9.99, 9.98], rtol=1e-9)
    t = spectrum.top_eigenvalues(lambda v: A @ np.asarray(v), 600, 3, key=jax.random.key(0))
    np.testing.assert_allclose(t.eigenvalues, [10.0, 9.99, 9.98], rtol=1e-9)
    # a budget too small to converge is reported, for both solvers
    for method in ("krylov-schur", "eigsh"):
        cut = spectrum.top_eigenvalues(lambda v: A @ np.asarray(v), 600, 3, key=jax.random.key(0), tol=1e-14,
                                       max_iter=25, method=method)
        assert not cut.converged and cut.matvecs <= 2 * 25 + 3
