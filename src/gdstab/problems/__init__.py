"""What is minimised: :class:`Problem` and the built-in families.

``get(name, **options)`` builds a registered problem; ``available()`` lists them with their
options.  User expressions: :meth:`Problem.from_expression`.
"""

from __future__ import annotations

from typing import Any, Callable

from .._validation import InvalidParameterError
from .base import Minima, NativeKernel, Problem, parse_box
from .groups import parameter_groups
from .expression import ExpressionError, parse_expression
from .data import DataError, Digits, mnist, read_idx, write_idx
from .linear import gaussian_data, linear_network, linear_problem
from .mlp import mlp, mlp_problem
from .toy import hyperbola, quad_quartic, quadratic, quartic, rosenbrock, saddle_quartic, zhu

__all__ = [
    "Problem",
    "Minima",
    "NativeKernel",
    "ExpressionError",
    "parse_expression",
    "parse_box",
    "parameter_groups",
    "get",
    "available",
    "OPTION_TYPES",
    "hyperbola",
    "saddle_quartic",
    "quadratic",
    "quartic",
    "quad_quartic",
    "zhu",
    "rosenbrock",
    "linear_network",
    "linear_problem",
    "gaussian_data",
    "mlp",
    "mnist",
    "Digits",
    "DataError",
    "read_idx",
    "write_idx",
]

_REGISTRY: dict[str, Callable[..., Problem]] = {
    "hyperbola": hyperbola,
    "saddle_quartic": saddle_quartic,
    "quadratic": quadratic,
    "quartic": quartic,
    "quad_quartic": quad_quartic,
    "zhu": zhu,
    "rosenbrock": rosenbrock,
    "mlp": mlp_problem,
    "linear": linear_problem,
}

#: option name -> type ("float", "int", "floats", "matrix") per problem, for typed configs and the CLI
OPTION_TYPES: dict[str, dict[str, str]] = {
    "hyperbola": {},
    "saddle_quartic": {},
    "quadratic": {"a": "float", "dim": "int", "spectrum": "floats", "matrix": "matrix"},
    "quartic": {},
    "quad_quartic": {},
    "zhu": {},
    "rosenbrock": {"a": "float", "b": "float"},
    "linear": {"dims": "ints", "samples": "int", "data_seed": "int", "normalisation": "string"},
    "mlp": {
        "depth": "int",
        "width": "int",
        "activation": "string",
        "loss": "string",
        "bias": "int",
        "digits": "ints",
        "samples": "int",
        "init": "string",
    },
}


def available() -> dict[str, dict[str, str]]:
    """Registered problem names and their options with types."""
    return {name: dict(OPTION_TYPES[name]) for name in _REGISTRY}


def get(name: str, **options: Any) -> Problem:
    """Build the registered problem ``name`` with keyword ``options``."""
    if not isinstance(name, str) or name not in _REGISTRY:
        raise InvalidParameterError(
            f"The 'problem' parameter must be one of {', '.join(sorted(_REGISTRY))}. Got {name!r} instead."
        )
    allowed = OPTION_TYPES[name]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InvalidParameterError(
            f"The options of problem {name!r} must be among {sorted(allowed) or 'none'}. Got {unknown} instead."
        )
    return _REGISTRY[name](**options)
