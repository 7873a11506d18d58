"""Matrix products of a model's layers with derivatives written for XLA:CPU's fast layouts.

Reverse mode turns a layer's product ``y = x W`` into the weight gradient ``xᵀ g``, a product that
contracts the first axis of ``x``.  XLA:CPU runs that product 1.6-3.5x slower than the same one
read from a row-major copy of ``xᵀ`` (measured on the MNIST layers, 400-1 000 × 784 by 32, float64:
docs/performance.md).  For a layer whose input is not differentiated (the data, in the first
layer) :func:`dense` writes its derivative so that reverse mode reads such a copy: for constant
data XLA folds the transpose at compile time, and an optimisation barrier keeps it from folding
the copy back into ``x``.  Values are those of ``x @ W`` to rounding; every transformation
(grad, vmap, forward-over-reverse Hessian-vector products, jacfwd) applies.

:func:`split_flat` cuts a model's flat θ into its layers' arrays so that reverse mode assembles
the gradient by one concatenation.
"""

from __future__ import annotations

__all__ = ["dense", "split_flat"]

_DENSE = None


def dense(x, W, transpose_w: bool = False):
    """``x @ W`` (or ``x @ Wᵀ`` with ``transpose_w``, PyTorch's ``F.linear`` layout) for x of shape
    (n, d_in): when ``x`` is not differentiated, reverse mode's weight gradient is the product of
    a row-major ``xᵀ`` with the cotangent; otherwise the ordinary derivative."""
    fn = _dense_fn()
    return fn(x, W.T) if transpose_w else fn(x, W)


def split_flat(theta, shapes) -> list:
    """θ (NumPy or JAX, one axis) cut into consecutive arrays of ``shapes``, row-major.  A JAX θ
    is cut by one ``lax.split``, whose reverse-mode transpose is one concatenation: a slice per
    piece would transpose to a pad of each gradient piece to the size of θ and a sum of them,
    work in pieces × dim per gradient (88× a depth-16 MLP's step on 10 digits)."""
    import numpy as np

    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    if isinstance(theta, np.ndarray):
        parts = np.split(theta, np.cumsum(sizes)[:-1])
    else:
        import jax

        parts = jax.lax.split(theta, sizes)
    return [part.reshape(shape) for part, shape in zip(parts, shapes)]


def _dense_fn():
    global _DENSE
    if _DENSE is None:
        import functools

        import jax
        from jax.custom_derivatives import SymbolicZero

        @jax.custom_jvp
        def product(x, W):
            return x @ W

        @functools.partial(product.defjvp, symbolic_zeros=True)
        def _jvp(primals, tangents):
            x, W = primals
            dx, dW = tangents
            y = x @ W
            if isinstance(dW, SymbolicZero):
                return y, (jax.numpy.zeros_like(y) if isinstance(dx, SymbolicZero) else dx @ W)
            if not isinstance(dx, SymbolicZero):
                return y, dx @ W + x @ dW
            xt = jax.lax.optimization_barrier(x.T)  # materialised xᵀ, row-major
            # the barrier on dW becomes one on the weight gradient xᵀ g in reverse mode, so that a
            # transpose after it (F.linear's Wᵀ) is not folded into the product's layout
            return y, xt.T @ jax.lax.optimization_barrier(dW)

        _DENSE = product
    return _DENSE
