"""Contract tests every Problem must pass, and the closed forms of the toys."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdstab import problems
from gdstab.problems import Problem

ALL = [
    ("hyperbola", {}),
    ("saddle_quartic", {}),
    ("quadratic", {}),
    ("quadratic", {"spectrum": [1.0, 3.0, 0.0]}),
    ("quadratic", {"matrix": [[2.0, 1.0], [1.0, 2.0]]}),
    ("quartic", {}),
    ("quad_quartic", {}),
    ("zhu", {}),
    ("rosenbrock", {}),
    ("rosenbrock", {"a": -0.5, "b": 3.0}),
]


def _all_problems():
    out = [problems.get(n, **o) for n, o in ALL]
    out.append(Problem.from_expression("0.5*(1-x*y)**2 + 0.1*sin(x)", min_value=None))
    return out


PROBLEMS = _all_problems()
IDS = [f"{p.name}-{i}" for i, p in enumerate(PROBLEMS)]


@pytest.mark.parametrize("p", PROBLEMS, ids=IDS)
def test_contract_jit_vmap_dtype_and_gradient(p):
    key = jax.random.key(1)
    theta = jnp.asarray(p.init(key, 5))
    assert theta.shape == (5, p.dim) and theta.dtype == jnp.float64
    lo = np.array([b[0] for b in p.box])
    hi = np.array([b[1] for b in p.box])
    assert np.all(np.asarray(theta) >= lo) and np.all(np.asarray(theta) <= hi)
    vals = jax.jit(jax.vmap(p.loss))(theta)
    assert vals.shape == (5,) and vals.dtype == jnp.float64
    for i in range(5):
        assert float(vals[i]) == pytest.approx(float(p.loss(theta[i])), rel=1e-14, abs=1e-300)
    grads = jax.vmap(jax.grad(p.loss))(theta)
    assert grads.dtype == jnp.float64
    # central finite differences, step h: truncation O(h^2 * L''') and rounding O(eps/h)
    h = 1e-5
    for i in range(5):
        for j in range(p.dim):
            e = jnp.zeros(p.dim).at[j].set(h)
            fd = (p.loss(theta[i] + e) - p.loss(theta[i] - e)) / (2 * h)
            assert float(grads[i, j]) == pytest.approx(float(fd), rel=1e-6, abs=1e-6)
    # float32 stays float32 (users who train in float32)
    with jax.enable_x64(False):
        t32 = jnp.asarray(np.asarray(theta[0]), dtype=jnp.float32)
        assert jax.grad(p.loss)(t32).dtype == jnp.float32


@pytest.mark.parametrize("p", [q for q in PROBLEMS if q.minima is not None], ids=lambda q: q.name)
def test_minima_closed_forms_match_autodiff(p):
    m = p.minima
    pts = np.asarray(m.sample(jax.random.key(3), 6))
    assert pts.shape == (6, p.dim)
    hess = jax.hessian(p.loss)
    for th in pts:
        th = jnp.asarray(th)
        assert float(p.loss(th)) == pytest.approx(p.min_value, abs=1e-12)
        assert float(m.residual(th)) <= 1e-12
        g = jax.grad(p.loss)(th)
        assert float(jnp.linalg.norm(g)) <= 1e-10
        H = np.asarray(hess(th))
        want = np.sort(np.asarray(m.hessian_eigenvalues(th)))
        got = np.linalg.eigvalsh(0.5 * (H + H.T))
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-10 * max(1.0, abs(want).max()))
    # projection lands on M
    q = np.asarray(p.init(jax.random.key(4), 6))
    for th in q:
        on = m.project(jnp.asarray(th))
        if p.name == "saddle_quartic" and np.linalg.norm(np.asarray(on)) < 1e-3:
            continue  # the crossing point, where M is not a manifold
        assert float(m.residual(on)) <= 1e-10


def test_hyperbola_spectrum_is_paper_example():
    p = problems.get("hyperbola")
    for x in [0.5, 1.0, 3.0, -2.0]:
        th = jnp.array([x, 1.0 / x])
        ev = np.linalg.eigvalsh(np.asarray(jax.hessian(p.loss)(th)))
        np.testing.assert_allclose(ev, [0.0, x * x + 1 / (x * x)], atol=1e-12)


def test_rosenbrock_hessian_formula():
    a, b = 1.3, 7.0
    p = problems.get("rosenbrock", a=a, b=b)
    H = np.asarray(jax.hessian(p.loss)(jnp.array([a, a * a])))
    np.testing.assert_allclose(H, [[2 + 8 * b * a * a, -4 * a * b], [-4 * a * b, 2 * b]], rtol=1e-14)


@pytest.mark.parametrize(
    "name, opts, match",
    [
        ("nope", {}, "must be one of"),
        ("hyperbola", {"a": 1.0}, "must be among"),
        ("quadratic", {"a": -1.0}, "'a' parameter of quadratic"),
        ("quadratic", {"spectrum": [1.0, -2.0]}, "spectrum"),
        ("quadratic", {"spectrum": []}, "spectrum"),
        ("quadratic", {"matrix": [[1.0, 2.0], [0.0, 1.0]]}, "symmetric"),
        ("quadratic", {"matrix": [[1.0, 0.0], [0.0, -1.0]]}, "positive semi-definite"),
        ("quadratic", {"matrix": [[1.0, float("nan")], [float("nan"), 1.0]]}, "finite"),
        ("quadratic", {"a": 1.0, "spectrum": [1.0]}, "exclusive"),
        ("quadratic", {"a": 1.0, "dim": 0}, "'dim'"),
        ("rosenbrock", {"b": 0.0}, "'b' parameter of rosenbrock"),
        ("rosenbrock", {"a": float("inf")}, "'a' parameter of rosenbrock"),
    ],
)
def test_bad_problem_options(name, opts, match):
    with pytest.raises(ValueError, match=match):
        problems.get(name, **opts)


@pytest.mark.parametrize("box", ["1,0", "0,1,2", "a,b", [[0, 1], [2, 2]], [0, float("inf")], "0,1,0,1,0,1"])
def test_bad_boxes(box):
    with pytest.raises(ValueError, match="'box' parameter"):
        problems.parse_box(box, 2, caller="test")


def test_box_forms():
    assert problems.parse_box("-1,1", 2, caller="t") == ((-1.0, 1.0), (-1.0, 1.0))
    assert problems.parse_box([0, 1, 2, 3], 2, caller="t") == ((0.0, 1.0), (2.0, 3.0))
    assert problems.parse_box([[0, 1], [2, 3]], 2, caller="t") == ((0.0, 1.0), (2.0, 3.0))


def test_import_does_not_enable_x64():
    import subprocess
    import sys

    code = "import gdstab, jax, jax.numpy as jnp; print(jnp.ones(1).dtype, jax.config.jax_enable_x64)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["float32", "False"]


def test_the_problem_catalog_is_what_the_problems_are():
    """`gdstab problems` lists a static catalog (so it starts without JAX or data); every entry
    must be what building the problem at its default options gives."""
    from gdstab.problems.catalog import CATALOG

    assert set(CATALOG) == set(problems.available())
    for name, entry in CATALOG.items():
        p = problems.get(name)
        assert entry["normalisation"] == p.normalisation and entry["dim"] == p.dim, name
        assert entry["min_value"] == pytest.approx(p.min_value, rel=1e-9), name
        assert entry["minima"] == (p.minima.description if p.minima else None), name
        assert entry["compiled_kernel"] == (p.native is not None), name


def test_listing_and_version_start_quickly():
    """`gdstab --version` and `gdstab problems` import neither JAX nor the data (measured:
    ~0.3 s; the bound is generous for a loaded CI machine)."""
    import subprocess
    import sys
    import time

    for argv in (["--version"], ["problems"]):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-m", "gdstab", *argv], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and time.perf_counter() - t0 < 3.0, (argv, r.stderr)
    code = "import sys; from gdstab.cli import main; main(['problems']); print('jax' in sys.modules)"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip().endswith("False"), r.stdout[-200:]
