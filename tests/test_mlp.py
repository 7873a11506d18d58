"""MLP problems on digits, the IDX loader, user JAX models and the GD/SGD ensemble engine."""

from __future__ import annotations


import numpy as np
import pytest

import gdstab
from gdstab import Criteria, problems
from gdstab._validation import InvalidParameterError
from gdstab.dynamics import sgd_batch_indices
from gdstab.problems.data import DataError, mnist, read_idx, write_idx

jax = pytest.importorskip("jax")
jnp = jax.numpy

# no settling, no period detection: the engine must then run exactly T steps
RUN_ALL = Criteria(tol=1e-300, max_period=1, check_every=32)


# ------------------------------------------------------------------------------------ data


def _fake_mnist(tmp_path, n=30, gz=True, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = np.arange(n, dtype=np.uint8) % 10
    suffix = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", images)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels)
    return images, labels


@pytest.mark.parametrize("gz", [True, False])
def test_idx_round_trip(tmp_path, gz):
    images, labels = _fake_mnist(tmp_path, gz=gz)
    suffix = ".gz" if gz else ""
    back = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    assert back.dtype == np.uint8 and np.array_equal(back, images)
    assert np.array_equal(read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}"), labels)
    for arr in (np.arange(12, dtype=np.int32).reshape(3, 4) - 5, np.linspace(-1, 1, 7)):
        write_idx(tmp_path / "a.idx", arr)
        assert np.array_equal(read_idx(tmp_path / "a.idx"), arr)


def test_mnist_from_idx_directory(tmp_path):
    images, labels = _fake_mnist(tmp_path)
    d = mnist((3, 7), source=tmp_path)
    keep = (labels == 3) | (labels == 7)
    assert d.n == keep.sum()
    np.testing.assert_array_equal(d.X, images[keep].reshape(-1, 784) / 255.0)
    np.testing.assert_array_equal(d.Y[:, 1], (labels[keep] == 7).astype(float))
    assert np.all(d.Y.sum(axis=1) == 1)
    pm = mnist((3, 7), source=tmp_path, targets="pm1", n=2)
    assert pm.Y.shape == (4, 1) and set(pm.Y[:, 0]) == {-1.0, 1.0}


def test_mnist_bad_files(tmp_path):
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        mnist((0, 1), source=tmp_path)  # empty directory
    _fake_mnist(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])  # truncated
    with pytest.raises(DataError, match="truncated or corrupt"):
        mnist((0, 1), source=tmp_path)
    path.write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match=str(path.name)):
        read_idx(path)
    path.write_bytes(b"hello world")
    with pytest.raises(DataError, match="bad header"):
        read_idx(path)
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nothing")


def test_mnist_offline_subset():
    d = mnist((0, 1))
    assert d.n == 1000 and d.X.shape == (1000, 784)
    assert d.X.min() == 0.0 and d.X.max() == 1.0
    assert set(np.unique(d.labels)) == {0, 1}
    np.testing.assert_array_equal(d.Y.argmax(axis=1), d.labels)
    small = mnist((0, 1), n=5)
    assert small.n == 10 and d.describe()["per_digit"] == {0: 500, 1: 500}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"digits": (0, 11)}, "digits"),
        ({"digits": (1, 1)}, "digits"),
        ({"digits": (0, 1), "n": 0}, "'n'"),
        ({"digits": (0, 1, 2), "targets": "pm1"}, "targets"),
        ({"digits": (0, 1), "split": "test"}, "split"),
    ],
)
def test_mnist_bad_arguments(kwargs, match):
    digits = kwargs.pop("digits")
    with pytest.raises(InvalidParameterError, match=match):
        mnist(digits, **kwargs)


# ------------------------------------------------------------------------------ problems


def _tiny_data(n=24, d_in=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d_in))
    Y = np.eye(2)[rng.integers(0, 2, n)]
    return X, Y


def test_mlp_bad_input():
    X, Y = _tiny_data()
    with pytest.raises(InvalidParameterError, match="'depth'"):
        problems.mlp((X, Y), depth=0)
    with pytest.raises(InvalidParameterError, match="'width'"):
        problems.mlp((X, Y), width=-3)
    with pytest.raises(InvalidParameterError, match="'activation'"):
        problems.mlp((X, Y), activation="swish")
    with pytest.raises(InvalidParameterError, match="shape"):
        problems.mlp((X, Y[:-1]))
    Xn = X.copy()
    Xn[3, 2] = np.nan
    with pytest.raises(InvalidParameterError, match="non-finite"):
        problems.mlp((Xn, Y))
    with pytest.raises(InvalidParameterError, match="one-hot"):
        problems.mlp((X, 2 * Y), loss="cross_entropy")
    with pytest.raises(InvalidParameterError, match="'data'"):
        problems.mlp("digits")


def test_registered_mlp_options():
    p = problems.get("mlp", depth=2, width=4, samples=3, activation="tanh", loss="cross_entropy")
    assert p.n_samples == 6 and p.dim == 784 * 4 + 4 + 4 * 4 + 4 + 4 * 2 + 2
    with pytest.raises(InvalidParameterError):
        problems.get("mlp", samples=-1)


def _manual_mlp_loss(params, X, Y, act, loss):
    """An independent forward pass written from the module docstring (pytree parameters)."""
    h = X
    for i, (W, b) in enumerate(params):
        h = h @ W + b
        if i < len(params) - 1:
            h = act(h)
    if loss == "mse":
        return jnp.mean((h - Y) ** 2)
    return -jnp.mean(jnp.sum(Y * jax.nn.log_softmax(h, axis=1), axis=1))


def _params_from_theta(theta, shapes):
    out, i = [], 0
    for W_shape, b_shape in zip(shapes[0::2], shapes[1::2]):
        W = theta[i : i + W_shape[0] * W_shape[1]].reshape(W_shape)
        i += W.size
        b = theta[i : i + b_shape[0]]
        i += b.size
        out.append((W, b))
    return out


@pytest.mark.parametrize("activation, loss", [("gelu", "mse"), ("relu", "cross_entropy"), ("tanh", "mse"),
                                              ("sigmoid", "cross_entropy")])
def test_mlp_loss_matches_manual_forward(activation, loss):
    from gdstab.problems.mlp import mlp_shapes

    X, Y = _tiny_data()
    p = problems.mlp((X, Y), depth=2, width=5, activation=activation, loss=loss)
    acts = {"gelu": lambda z: jax.nn.gelu(z, approximate=False), "relu": jax.nn.relu, "tanh": jnp.tanh,
            "sigmoid": jax.nn.sigmoid}
    theta = np.asarray(p.init(jax.random.key(3), 1)[0])
    shapes = mlp_shapes(6, 2, 5, 2, True)
    params = _params_from_theta(jnp.asarray(theta), shapes)
    ref = _manual_mlp_loss(params, X, Y, acts[activation], loss)
    assert abs(float(p.loss(jnp.asarray(theta))) - float(ref)) <= 1e-14 * max(1.0, abs(float(ref)))
    # batch_loss on all indices is the full loss; on a subset it is the loss of that subset
    idx = np.array([0, 5, 7])
    sub = _manual_mlp_loss(params, X[idx], Y[idx], acts[activation], loss)
    assert abs(float(p.batch_loss(jnp.asarray(theta), idx)) - float(sub)) <= 1e-14


def test_gradient_assembles_theta_once(jaxpr_counts):
    """The gradient of a deep MLP costs O(dim), not O(depth × dim): θ is cut by one split, whose
    transpose is one concatenation (a slice per layer transposes to a pad of θ's size per layer,
    then a sum of them: 88× slower per step at depth 16 on 10 digits).  The values are those of
    the per-layer slicing written in this file."""
    from gdstab.problems.mlp import mlp_shapes

    X, Y = _tiny_data()
    counts = {}
    for depth in (2, 8):
        p = problems.mlp((X, Y), depth=depth, width=5, activation="tanh")
        theta = jnp.asarray(p.init(jax.random.key(depth), 1)[0])
        counts[depth] = jaxpr_counts(jax.grad(p.loss), theta, theta.size)
        assert "pad" not in counts[depth], counts[depth]
        shapes = mlp_shapes(6, depth, 5, 2, True)
        manual = jax.grad(lambda th: _manual_mlp_loss(_params_from_theta(th, shapes), X, Y, jnp.tanh, "mse"))
        assert "pad" in jaxpr_counts(manual, theta, theta.size)  # what the check would catch
        np.testing.assert_allclose(np.asarray(p.grad(theta)), np.asarray(manual(theta)), rtol=1e-12, atol=1e-15)
    assert counts[8] == counts[2]


def test_lecun_init_scale():
    X, Y = _tiny_data(d_in=400)
    p = problems.mlp((X, Y), depth=1, width=64, bias=False)
    th = np.asarray(p.init(jax.random.key(0), 20))
    W0 = th[:, : 400 * 64]
    # entries N(0, 1/fan_in): the sample variance of 512000 draws is within ~4 standard errors
    var = W0.var()
    assert abs(var * 400 - 1.0) < 4 * np.sqrt(2 / W0.size)


def test_linear_mlp_matches_deep_linear_network():
    """identity activation, no biases: f(x) = x W_0 W_1 W_2 is the linear network with
    W_i^lin = W_{i-1}^T; the MLP's MSE (mean over n*C) is the 'mean' linear loss / C."""
    X, Y = _tiny_data(n=30, d_in=3)
    p = problems.mlp((X, Y), depth=2, width=4, activation="identity", bias=False)
    lin = problems.linear_network((3, 4, 4, 2), X.T, Y.T, normalisation="mean")
    rng = np.random.default_rng(1)
    for _ in range(3):
        theta = rng.normal(size=p.dim)
        W0 = theta[:12].reshape(3, 4)
        W1 = theta[12:28].reshape(4, 4)
        W2 = theta[28:].reshape(4, 2)
        # linear layout: W_1 (4x3), W_2 (4x4), W_3 (2x4), row-major
        phi = np.concatenate([W0.T.ravel(), W1.T.ravel(), W2.T.ravel()])
        l_mlp = float(p.loss(jnp.asarray(theta)))
        l_lin = float(lin.loss(jnp.asarray(phi))) / 2
        assert abs(l_mlp - l_lin) <= 1e-13 * l_lin
        g_mlp = np.asarray(p.grad(jnp.asarray(theta)))
        g_lin = np.asarray(lin.grad(jnp.asarray(phi))) / 2
        g_lin_in_mlp_layout = np.concatenate([g_lin[:12].reshape(4, 3).T.ravel(), g_lin[12:28].reshape(4, 4).T.ravel(),
                                              g_lin[28:].reshape(2, 4).T.ravel()])
        np.testing.assert_allclose(g_mlp, g_lin_in_mlp_layout, rtol=1e-12, atol=1e-14)


def test_from_jax_pytree_model():
    X, Y = _tiny_data()
    ref = problems.mlp((X, Y), depth=1, width=3, activation="tanh")

    def loss_fn(params, batch):
        x, y = batch
        h = jnp.tanh(x @ params["w1"] + params["b1"])
        return jnp.mean((h @ params["w2"] + params["b2"] - y) ** 2)

    template = {"w1": jnp.zeros((6, 3)), "b1": jnp.zeros(3), "w2": jnp.zeros((3, 2)), "b2": jnp.zeros(2)}
    p = gdstab.Problem.from_jax(loss_fn, template, (X, Y))
    assert p.dim == ref.dim and p.n_samples == 24
    th = np.asarray(p.init(jax.random.key(0), 2))
    assert th.shape == (2, ref.dim) and np.all(th[:, :5] == 0)  # b1, b2 start at zero
    # ravel_pytree orders dict keys alphabetically: b1, b2, w1, w2
    t = th[0]
    b1, b2, w1, w2 = t[:3], t[3:5], t[5:23].reshape(6, 3), t[23:].reshape(3, 2)
    theta_ref = np.concatenate([w1.ravel(), b1, w2.ravel(), b2])
    assert abs(float(p.loss(jnp.asarray(t))) - float(ref.loss(jnp.asarray(theta_ref)))) < 1e-14
    with pytest.raises(InvalidParameterError, match="loss_fn"):
        gdstab.Problem.from_jax(lambda params, batch: params["w1"], template, (X, Y))
    with pytest.raises(InvalidParameterError, match="data"):
        gdstab.Problem.from_jax(loss_fn, template, (X, Y[:5]))


# ------------------------------------------------------------------------------ engine


def _per_model_loop(problem, theta0, eta, steps, batch=None, key_data=None):
    """Plain loop, one model at a time, no vmap: θ ← θ − η ∇L(θ) (on the batch of each step)."""
    out = []
    grad = jax.jit(jax.grad(problem.loss))
    batch_grad = jax.jit(jax.grad(problem.batch_loss))
    for i in range(theta0.shape[0]):
        th = jnp.asarray(theta0[i])
        for t in range(steps):
            if batch is None:
                g = grad(th)
            else:
                idx = sgd_batch_indices(jnp.asarray(key_data[i]), t, problem.n_samples, batch)
                g = batch_grad(th, idx)
            th = th - eta[i] * g
        out.append(np.asarray(th))
    return np.stack(out)


@pytest.mark.parametrize("batch", [None, 4])
def test_ensemble_matches_per_model_loop(batch):
    d = mnist((0, 1), n=6)
    p = problems.mlp(d, depth=2, width=4, activation="gelu", loss="mse" if batch is None else "cross_entropy")
    theta0 = np.asarray(p.init(jax.random.key(0), 3))
    # Step sizes below 2/λ_max at the initial points (λ_max ≤ 181 here): where G expands
    # (η λ_max ≫ 2), a 1e-16 difference in the order of a sum is multiplied by up to |1 − ηλ| per
    # step, and two correct implementations drift apart by far more than 1e-12 in 50 steps.
    eta = np.array([0.002, 0.005, 0.01])
    kw = {}
    kd = None
    if batch:
        from gdstab.sweep.keys import trajectory_keys

        kd = np.concatenate([trajectory_keys(0, {}, [i], e) for i, e in enumerate(eta)])
        kw = {"batch_size": batch, "keys": kd}
    res = gdstab.trajectories(p, theta0, eta, steps=50, criteria=RUN_ALL, backend="jax", **kw)
    assert np.all(res.status == gdstab.Status.BOUNDED) and np.all(res.step == 50)
    ref = _per_model_loop(p, theta0, eta, 50, batch, kd)
    np.testing.assert_allclose(res.theta, ref, rtol=0, atol=1e-12)


def test_sgd_batches_are_permutations():
    kd = np.asarray(jax.random.key_data(jax.random.key(5)))
    n, b = 23, 5  # 4 updates per epoch, 3 samples dropped per epoch
    for e in range(3):
        seen = np.concatenate([np.asarray(sgd_batch_indices(kd, 4 * e + j, n, b)) for j in range(4)])
        assert len(set(seen)) == 20 and seen.min() >= 0 and seen.max() < n
    first = np.asarray(sgd_batch_indices(kd, 0, n, b))
    assert not np.array_equal(first, np.asarray(sgd_batch_indices(kd, 4, n, b)))  # reshuffled each epoch


def test_sgd_bad_input():
    X, Y = _tiny_data()
    p = problems.mlp((X, Y), depth=1, width=2)
    th = np.zeros((2, p.dim))
    kd = np.zeros((2, 2), np.uint32)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        gdstab.trajectories(p, th, 0.1, steps=5, batch_size=25, keys=kd)
    with pytest.raises(InvalidParameterError, match="'keys'"):
        gdstab.trajectories(p, th, 0.1, steps=5, batch_size=4)
    with pytest.raises(InvalidParameterError, match="'keys'"):
        gdstab.trajectories(p, th, 0.1, steps=5, batch_size=4, keys=np.zeros((3, 2), np.uint32))
    with pytest.raises(InvalidParameterError, match="data"):
        gdstab.trajectories(problems.hyperbola(), np.ones((2, 2)), 0.1, steps=5, batch_size=4, keys=kd)


def test_diverging_network_is_a_status():
    X, Y = _tiny_data()
    p = problems.mlp((X, Y), depth=1, width=8)
    th = np.asarray(p.init(jax.random.key(0), 4), dtype=np.float64)
    res = gdstab.trajectories(p, th, 1e4, steps=200, dtype="float32")
    assert np.all(res.status == gdstab.Status.DIVERGED)


def test_mlp_sweep_with_sgd_resumes_identically(tmp_path):
    import xarray as xr

    from gdstab import sweep

    text = """
[problem]
name = "mlp"
[problem.options]
samples = 8
width = 3
activation = "relu"
loss = "cross_entropy"
[grid]
eta = [0.1, 1.0]
inits = 3
[grid.options]
depth = [1, 2]
[run]
steps = 30
dtype = "float64"
batch_size = 4
record_every = 10
store_theta = false
[criteria]
max_period = 1
"""
    full = sweep.run(text, tmp_path / "a", quiet=True)
    sweep.run(text, tmp_path / "b", quiet=True, max_cells=3, threads=1)
    resumed = sweep.run(text, tmp_path / "b", quiet=True, threads=1)
    xr.testing.assert_identical(full.drop_attrs(), resumed.drop_attrs())
    assert full["loss_t"].shape == (2, 2, 3, 4)
    with pytest.raises(InvalidParameterError, match="batch_size"):
        sweep.load_config(text.replace("batch_size = 4", "batch_size = 17"))


def test_trajectory_keys_match_the_single_key_rule():
    from gdstab.sweep.keys import trajectory_key, trajectory_keys

    got = trajectory_keys(3, {"depth": 1}, [0, 5, 9], 0.7)
    want = np.stack([np.asarray(jax.random.key_data(trajectory_key(3, {"depth": 1}, i, 0.7))) for i in (0, 5, 9)])
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, trajectory_keys(3, {"depth": 1}, [0, 5, 9], 0.70000001))
