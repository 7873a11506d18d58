"""Named parameter groups of a problem's θ (the layers of a network, the modules of a model), for
per-group learning rates."""

from __future__ import annotations

import numpy as np

from .._validation import fail
from .base import Problem
from .mlp import mlp_shapes

__all__ = ["parameter_groups"]


def parameter_groups(problem: Problem) -> dict[str, np.ndarray]:
    """The named parameter groups of a problem as index arrays into θ: the layers of gdstab's
    MLPs and deep linear networks ("layer0", "layer1", ...: weights and bias), the modules of a
    PyTorch model ("0", "2", ... or their names), the leaves of a JAX pytree (their paths).  For
    per-group learning rates (:func:`gdstab.optimizers.group_rule`)."""
    o = problem.options
    if "groups" in o:
        sizes = list(o["groups"])
    elif "depth" in o and "d_in" in o:  # gdstab's MLP
        shapes = mlp_shapes(o["d_in"], o["depth"], o["width"], o["d_out"], o["bias"])
        per = 2 if o["bias"] else 1
        sizes = [(f"layer{i // per}", int(np.prod(sh))) for i, sh in enumerate(shapes)]
    elif "shapes" in o and "dims" in o:  # a deep linear network
        sizes = [(f"layer{i}", int(np.prod(sh))) for i, sh in enumerate(o["shapes"])]
    else:
        raise fail("problem", "parameter_groups", "a network or model problem with named parameters",
                    f"{problem.name} (no parameter layout)")
    out: dict[str, list] = {}
    start = 0
    for name, n in sizes:
        out.setdefault(name, []).append(np.arange(start, start + n))
        start += n
    if start != problem.dim:  # pragma: no cover - a layout that does not cover θ is a bug
        raise RuntimeError(f"parameter groups of {problem.name} cover {start} of {problem.dim} parameters")
    return {k: np.concatenate(v) for k, v in out.items()}
