"""The losses a model adapter names (``"mse"``, ``"cross_entropy"``) as JAX functions of
(model output, targets), with their normalisation in words: the definitions of PyTorch's
``F.mse_loss`` and ``F.cross_entropy`` (mean reduction), shared by the PyTorch, Flax and Equinox
adapters so that the same model gives the same loss in every framework."""

from __future__ import annotations

from typing import Callable

__all__ = ["named_loss", "NAMES"]

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
