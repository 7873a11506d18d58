"""The losses a model adapter names (``"mse"``, ``"cross_entropy"``) as JAX functions of
(model output, targets), with their normalisation in words: the definitions of PyTorch's
``F.mse_loss`` and ``F.cross_entropy`` (mean reduction), shared by the PyTorch, Flax and Equinox
adapters so that the same model gives the same loss in every framework."""

from __future__ import annotations

from typing import Callable

__all__ = ["named_loss", "model_data", "NAMES"]

NAMES = ("mse", "cross_entropy")


def named_loss(name: str) -> tuple[Callable, str] | None:
    """(loss(out, y), words) for a name of :data:`NAMES`, else None.

    ``"mse"``: the mean over every output entry of (out − y)²; ``"cross_entropy"``: the mean over
    samples of −log softmax(out)[label] for integer labels ``y``."""
    import jax
    import jax.numpy as jnp

    if name == "mse":
        return (lambda out, y: jnp.mean((out - y) ** 2)), "mean squared error over all outputs (torch mse_loss)"
    if name == "cross_entropy":
        def ce(out, y):
            logp = jax.nn.log_softmax(out, axis=-1)
            return -jnp.mean(jnp.take_along_axis(logp, y.astype(jnp.int32)[:, None], axis=-1))

        return ce, "mean over samples of the cross-entropy of the softmax (torch cross_entropy)"
    return None


def model_data(data, loss, caller: str):
    """The ``(X, Y)`` pair of a model adapter as NumPy arrays (tensors are detached and copied),
    X in float64, Y as int64 labels for ``"cross_entropy"`` and float64 otherwise; refused with
    the parameter named unless it is a pair with the same non-zero number of samples."""
    import numpy as np

    from .._validation import fail

    if not (isinstance(data, (tuple, list)) and len(data) == 2):
        raise fail("data", caller, "a pair (X, Y) of arrays or tensors with the samples on the first axis", type(data))
    X, Y = (np.asarray(a.detach().cpu().numpy() if hasattr(a, "detach") else a) for a in data)
    if X.ndim == 0 or Y.ndim == 0 or X.shape[0] != Y.shape[0] or X.shape[0] == 0:
        raise fail("data", caller, "X and Y with the same number of samples on their first axis",
                   f"shapes {X.shape} and {Y.shape}")
    return X.astype(np.float64), (Y.astype(np.int64) if loss == "cross_entropy" else Y.astype(np.float64))
