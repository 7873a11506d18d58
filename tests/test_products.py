"""problems.products.dense: x @ W (and F.linear's x @ Wᵀ) with a derivative written for
XLA:CPU's fast layout must be the plain product for every transformation: values, gradients in W
with x constant (the data) and with x differentiated, forward-over-reverse HVPs, jacfwd, vmap."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gdstab.problems.products import dense, split_flat

R = np.random.default_rng(0)
X = R.normal(size=(40, 9))  # float64 NumPy: each test runs under jax.enable_x64
W0 = R.normal(size=(9, 5)) / 3
V0 = R.normal(size=(5, 3)) / 2


@pytest.fixture(autouse=True)
def _x64():
    with jax.enable_x64(True):
        yield


def _losses(transpose_w):
    def plain(W, V, x=X):
        x = jnp.asarray(x)
        h = jnp.tanh(x @ (W.T if transpose_w else W))
        return jnp.sum(jnp.sin(h @ V) ** 2)

    def ours(W, V, x=X):
        x = jnp.asarray(x)
        h = jnp.tanh(dense(x, W, transpose_w))
        return jnp.sum(jnp.sin(dense(h, V) @ jnp.eye(3)) ** 2)  # second layer: x differentiated

    return plain, ours


@pytest.mark.parametrize("transpose_w", [False, True])
def test_dense_equals_the_plain_product_under_every_transformation(transpose_w):
    plain, ours = _losses(transpose_w)
    W = jnp.asarray(W0.T if transpose_w else W0)
    V = jnp.asarray(V0)
    assert W.dtype == jnp.float64
    close = dict(rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(ours(W, V), plain(W, V), **close)
    for arg in (0, 1):  # gradients in the data layer's weight and in the next layer's
        np.testing.assert_allclose(jax.grad(ours, arg)(W, V), jax.grad(plain, arg)(W, V), **close)
    dW = jnp.asarray(R.normal(size=W.shape))
    dV = jnp.asarray(R.normal(size=V.shape))
    hvp = [jax.jvp(jax.grad(f, (0, 1)), (W, V), (dW, dV))[1] for f in (ours, plain)]
    for a, b in zip(*hvp):
        np.testing.assert_allclose(a, b, **close)
    np.testing.assert_allclose(jax.jacfwd(jax.grad(ours))(W, V), jax.jacfwd(jax.grad(plain))(W, V), **close)
    Ws = jnp.stack([W, 2 * W, -W])
    np.testing.assert_allclose(jax.vmap(jax.grad(ours))(Ws, jnp.stack([V] * 3)),
                               jax.vmap(jax.grad(plain))(Ws, jnp.stack([V] * 3)), **close)
    # x differentiated too (the input gradient), and a pure forward-mode derivative of the loss
    x = jnp.asarray(X)
    gx = jax.grad(lambda x: ours(W, V, x))(x)
    np.testing.assert_allclose(gx, jax.grad(lambda x: plain(W, V, x))(x), **close)
    np.testing.assert_allclose(jax.jvp(lambda W: ours(W, V), (W,), (dW,))[1],
                               jax.jvp(lambda W: plain(W, V), (W,), (dW,))[1], **close)


def test_the_mlp_gradient_is_the_plain_networks():
    """gdstab's MLP (first layer through dense, full batch and minibatch) against the same
    network written with plain products."""
    from gdstab import problems

    rng = np.random.default_rng(1)
    Xd, Yd = rng.normal(size=(30, 7)), rng.normal(size=(30, 2))
    p = problems.mlp(depth=2, width=6, data=(Xd, Yd), activation="tanh", loss="mse")
    th = jnp.asarray(np.asarray(p.init(jax.random.key(0), 1))[0], dtype=jnp.float64)
    shapes = [(7, 6), (6,), (6, 6), (6,), (6, 2), (2,)]

    def plain(theta, idx=np.arange(30)):
        parts, i = [], 0
        for s in shapes:
            n = int(np.prod(s))
            parts.append(theta[i:i + n].reshape(s))
            i += n
        h = jnp.asarray(Xd[idx])
        for layer in range(3):
            h = h @ parts[2 * layer] + parts[2 * layer + 1]
            h = jnp.tanh(h) if layer < 2 else h
        return jnp.mean((h - Yd[idx]) ** 2)

    np.testing.assert_allclose(jax.grad(p.loss)(th), jax.grad(plain)(th), rtol=1e-12, atol=1e-14)
    idx = jnp.asarray([3, 7, 1, 29])
    np.testing.assert_allclose(jax.grad(p.batch_loss)(th, idx), jax.grad(plain)(th, np.asarray(idx)), rtol=1e-12,
                               atol=1e-14)


def test_split_flat_cuts_theta_in_order_and_its_gradient_is_one_concatenation(jaxpr_counts):
    """NumPy and JAX θ give the pieces of slicing by hand; reverse mode through the JAX split has
    no pad (slicing by hand has one per piece) and the gradient of a weighted sum is the weights."""
    shapes = [(3, 4), (4,), (4, 2), (2,)]
    theta = R.normal(size=26)
    by_hand, i = [], 0
    for s in shapes:
        n = int(np.prod(s))
        by_hand.append(theta[i:i + n].reshape(s))
        i += n
    for got in (split_flat(theta, shapes), split_flat(jnp.asarray(theta), shapes)):
        assert [g.shape for g in got] == shapes
        for g, want in zip(got, by_hand):
            np.testing.assert_array_equal(np.asarray(g), want)
    weights = [R.normal(size=s) for s in shapes]

    def weighted(th):
        return sum(jnp.sum(w * part) for w, part in zip(weights, split_flat(th, shapes)))

    def weighted_by_slices(th):
        total, i = 0.0, 0
        for w, s in zip(weights, shapes):
            n = int(np.prod(s))
            total = total + jnp.sum(w * th[i:i + n].reshape(s))
            i += n
        return total

    th = jnp.asarray(theta)
    assert "pad" not in jaxpr_counts(jax.grad(weighted), th)
    assert jaxpr_counts(jax.grad(weighted_by_slices), th).get("pad") == len(shapes)
    np.testing.assert_array_equal(np.asarray(jax.grad(weighted)(th)), np.concatenate([w.ravel() for w in weights]))
