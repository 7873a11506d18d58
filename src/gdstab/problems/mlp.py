"""Fully connected networks (MLPs) on a data set, as :class:`Problem` s on a flat θ.

Architecture: input d_in (784 for MNIST), ``depth`` hidden layers of ``width`` units, each
followed by the activation, and a linear output layer of C units (2 for the paper's digits 0/1).
Row convention: a layer maps a row h to ``act(h @ W + b)`` with W of shape (fan_in, fan_out).

θ layout (flat, row-major): W_0, b_0, W_1, b_1, …, W_depth, b_depth (b_l omitted when
``bias=False``).

Losses (normalisation stated, thresholds such as 2/η follow it):

* ``mse``: L(θ) = (1/(n·C)) Σ_i ‖f(x_i) − y_i‖² — the mean over all n·C output entries, no ½
  (PyTorch's ``MSELoss()``), with one-hot targets y_i;
* ``cross_entropy``: L(θ) = (1/n) Σ_i −log softmax(f(x_i))_{c_i}, c_i the class of sample i.

Initialisation (``init``): ``"lecun"`` (default) W entries N(0, 1/fan_in); ``"he"`` N(0, 2/fan_in);
biases start at 0 (``bias_init`` adds N(0, bias_init²) instead).

Activations: gelu (the exact erf form), relu, tanh, sigmoid, identity.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from .._validation import check_memory, choice, fail, positive_int
from .base import Problem
from .products import dense, split_flat

__all__ = ["mlp", "ACTIVATIONS", "LOSSES", "mlp_shapes"]

ACTIVATIONS = ("gelu", "relu", "tanh", "sigmoid", "identity")
LOSSES = ("mse", "cross_entropy")


def _activation(name: str):
    import jax
    import jax.numpy as jnp

    return {
        "gelu": lambda z: jax.nn.gelu(z, approximate=False),
        "relu": jax.nn.relu,
        "tanh": jnp.tanh,
        "sigmoid": jax.nn.sigmoid,
        "identity": lambda z: z,
    }[name]


def mlp_shapes(d_in: int, depth: int, width: int, d_out: int, bias: bool) -> list[tuple[int, ...]]:
    """Shapes of W_0, (b_0), …, W_depth, (b_depth) in θ order."""
    sizes = [d_in] + [width] * depth + [d_out]
    shapes: list[tuple[int, ...]] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        shapes.append((a, b))
        if bias:
            shapes.append((b,))
    return shapes


def _data_arrays(data: Any, caller: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, str]:
    """(X, Y, labels or None, description) from a Digits set or an (X, Y) pair."""
    from .data import Digits

    if isinstance(data, Digits):
        return data.X, data.Y, data.labels, data.source
    if isinstance(data, (tuple, list)) and len(data) == 2:
        try:
            X = np.asarray(data[0], dtype=np.float64)
            Y = np.asarray(data[1], dtype=np.float64)
        except (TypeError, ValueError):
            raise fail("data", caller, "a Digits set or a pair (X (n, d_in), Y (n, C)) of float arrays", type(data)) from None
        return X, Y, None, "user arrays"
    raise fail("data", caller, "a Digits set (gdstab.problems.data.mnist) or a pair (X (n, d_in), Y (n, C))", type(data).__name__)


def mlp(
    data: Any = None,
    *,
    depth: int = 1,
    width: int = 32,
    activation: str = "gelu",
    loss: str = "mse",
    bias: bool = True,
    init: str = "lecun",
    bias_init: float = 0.0,
    min_value: float | None = 0.0,
    name: str | None = None,
) -> Problem:
    """An MLP problem on ``data`` (default: MNIST digits 0 and 1 from the offline subset).

    Main arguments:
        data: a :class:`~gdstab.problems.data.Digits` set or a pair ``(X, Y)`` with X (n, d_in)
            finite features and Y (n, C) targets (one-hot rows for cross-entropy).
        depth: number of hidden layers (>= 1).  width: units per hidden layer (>= 1).

    Other arguments: ``activation`` (gelu, relu, tanh, sigmoid, identity), ``loss`` (mse,
    cross_entropy), ``bias``, ``init`` (lecun, he), ``bias_init`` (std of initial biases),
    ``min_value``: L* used by the classification, default 0 — the infimum of both losses for a
    network that can fit its data (MSE: interpolation; cross-entropy: approached as the margins
    grow).  A trajectory that settles with L − L* > f_tol (a plateau, a collapsed network) is
    then ``stationary``, not ``converged``; pass None to call every settled trajectory converged.
    See the module docstring for the normalisation of the losses.
    """
    caller = "mlp"
    depth = positive_int(depth, "depth", caller)
    width = positive_int(width, "width", caller)
    # parameters of the largest layers (784 inputs): refused before anything is allocated;
    # training an ensemble needs several copies of them and of the activations
    n_params = 785 * width + (depth - 1) * (width + 1) * width + (width + 1) * 10
    check_memory(8.0 * n_params * 8, "width" if width * width >= depth else "depth", caller,
                 f"{n_params:.3g} parameters (width {width}, depth {depth})", width if width * width >= depth else depth)
    activation = choice(activation, "activation", caller, ACTIVATIONS)
    loss = choice(loss, "loss", caller, LOSSES)
    init = choice(init, "init", caller, ("lecun", "he"))
    if not isinstance(bias, bool):
        raise fail("bias", caller, "a bool", bias)
    if isinstance(bias_init, bool) or not isinstance(bias_init, (int, float)) or not (math.isfinite(bias_init) and bias_init >= 0):
        raise fail("bias_init", caller, "a finite float >= 0", bias_init)
    if data is None:
        from .data import mnist

        data = mnist((0, 1))
    X, Y, labels, source = _data_arrays(data, caller)
    _check_data(X, Y, loss, caller)
    n, d_in = X.shape
    C = Y.shape[1]
    shapes = mlp_shapes(d_in, depth, width, C, bias)
    dim = int(sum(int(np.prod(s)) for s in shapes))
    full_loss, batch_loss = _mlp_losses(X, Y, shapes, depth, bias, _activation(activation), loss)
    sampler = _mlp_sampler(shapes, 1.0 if init == "lecun" else 2.0, float(bias_init))
    norm = (
        f"mean squared error over all n*C = {n}*{C} outputs, no 1/2"
        if loss == "mse"
        else f"mean over n = {n} samples of the softmax cross-entropy"
    )
    itemsize = 8
    # working set of one trajectory besides its parameters: activations and their cotangents, in
    # float64 bytes (the engine scales it to the dtype it runs in)
    act_bytes = itemsize * n * (width * depth * 4 + C * 4)
    return Problem(
        name=name or f"mlp_{activation}_{loss}_depth{depth}", loss=full_loss, dim=dim, box=None,
        min_value=None if min_value is None else float(min_value), normalisation=norm,
        options={"depth": depth, "width": width, "activation": activation, "loss": loss, "bias": bias, "init": init,
                 "bias_init": float(bias_init), "d_in": int(d_in), "d_out": int(C), "samples": int(n),
                 "data": source, "bytes_per_trajectory": int(act_bytes)},
        sampler=sampler, n_samples=int(n), batch_loss=batch_loss)


def _check_data(X: np.ndarray, Y: np.ndarray, loss: str, caller: str) -> None:
    """Shapes (n, d_in) and (n, C), finite values, one-hot targets for cross-entropy."""
    if X.ndim != 2 or X.shape[0] < 1 or X.shape[1] < 1:
        raise fail("data", caller, "features X of shape (n, d_in) with n, d_in >= 1", f"shape {X.shape}")
    if Y.ndim != 2 or Y.shape[0] != X.shape[0] or Y.shape[1] < 1:
        raise fail("data", caller, f"targets Y of shape ({X.shape[0]}, C) matching X {X.shape}", f"shape {Y.shape}")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(Y))):
        raise fail("data", caller, "finite features and targets", "non-finite values (NaN or inf)")
    if loss == "cross_entropy":
        onehot = np.all((Y == 0) | (Y == 1)) and np.all(Y.sum(axis=1) == 1)
        if not onehot or Y.shape[1] < 2:
            raise fail("data", caller, "one-hot targets Y (n, C >= 2) for the cross_entropy loss", "targets that are not one-hot")


def _mlp_losses(X: np.ndarray, Y: np.ndarray, shapes, depth: int, bias: bool, act, loss: str):
    """The full-batch loss θ ↦ L(θ) and the minibatch loss (θ, idx) ↦ L on the rows idx."""
    import jax
    import jax.numpy as jnp

    classes = np.argmax(Y, axis=1)
    per_layer = 2 if bias else 1

    def forward(theta, x):
        parts = split_flat(theta, shapes)
        h = x
        for layer in range(depth + 1):
            W = parts[per_layer * layer]
            # the first layer: the weight gradient from a row-major copy of the batch's Xᵀ
            h = dense(h, W) if layer == 0 else h @ W
            if bias:
                h = h + parts[per_layer * layer + 1]
            if layer < depth:
                h = act(h)
        return h

    def _loss_on(theta, x, y, c):
        out = forward(theta, x.astype(theta.dtype))
        if loss == "mse":
            r = out - y.astype(theta.dtype)
            return jnp.mean(r * r)
        logp = jax.nn.log_softmax(out, axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, c[:, None], axis=1))

    def full_loss(theta):
        return _loss_on(theta, jnp.asarray(X), jnp.asarray(Y), jnp.asarray(classes))

    def batch_loss(theta, idx):
        return _loss_on(theta, jnp.asarray(X)[idx], jnp.asarray(Y)[idx], jnp.asarray(classes)[idx])

    return full_loss, batch_loss


def _mlp_sampler(shapes, gain: float, bias_init: float):
    """Initial parameters: weights N(0, gain / fan_in), biases N(0, bias_init²)."""
    import jax
    import jax.numpy as jnp

    def sampler(key, m):
        keys = jax.random.split(key, len(shapes))
        parts = []
        for k, shape in zip(keys, shapes):
            if len(shape) == 2:
                w = jax.random.normal(k, (m,) + shape) * math.sqrt(gain / shape[0])
            else:
                w = jax.random.normal(k, (m,) + shape) * bias_init
            parts.append(w.reshape(m, -1))
        return jnp.concatenate(parts, axis=1)

    return sampler


def mlp_problem(
    depth: int = 1,
    width: int = 32,
    activation: str = "gelu",
    loss: str = "mse",
    bias: int = 1,
    digits: Sequence[int] = (0, 1),
    samples: int = 0,
    init: str = "lecun",
) -> Problem:
    """The registered ``"mlp"`` problem: an MLP on the offline MNIST subset with typed options
    (``samples`` = samples per digit, 0 = all 500; ``bias`` 1/0)."""
    from .data import mnist

    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
        raise fail("samples", "mlp", "an int >= 0 (samples per digit; 0 = all)", samples)
    if bias not in (0, 1, True, False):
        raise fail("bias", "mlp", "0 or 1", bias)
    data = mnist(tuple(int(d) for d in digits), n=samples or None)
    return mlp(data, depth=depth, width=width, activation=activation, loss=loss, bias=bool(bias), init=init)
