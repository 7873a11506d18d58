"""What ``gdstab problems`` lists, without building anything (no JAX, no data): each
registered problem at its default options.  ``tests/test_problems.py`` checks every entry against
the problem built by :func:`gdstab.problems.get`, so this table cannot drift from the code."""

from __future__ import annotations

from typing import Any

__all__ = ["CATALOG"]

#: name -> normalisation, dimension, L*, description of the minima, whether a compiled kernel exists
CATALOG: dict[str, dict[str, Any]] = {
    'hyperbola': {
        'normalisation': 'L(x, y) = 1/2 (1 - x*y)^2: one sample, with a factor 1/2',
        'dim': 2,
        'min_value': 0.0,
        'minima': '{(x, y) : x*y = 1} (two branches, x > 0 and x < 0)',
        'compiled_kernel': True,
    },
    'saddle_quartic': {
        'normalisation': 'L(x, y) = 1/2 (y^2 - x^2)^2',
        'dim': 2,
        'min_value': 0.0,
        'minima': '{(x, y) : y = x or y = -x}',
        'compiled_kernel': True,
    },
    'quadratic': {
        'normalisation': 'L(theta) = 1/2 theta^T A theta (Hessian = A)',
        'dim': 1,
        'min_value': 0.0,
        'minima': 'ker A = {0}',
        'compiled_kernel': False,
    },
    'quartic': {
        'normalisation': 'L(x) = x^4 / 4',
        'dim': 1,
        'min_value': 0.0,
        'minima': '{0}',
        'compiled_kernel': True,
    },
    'quad_quartic': {
        'normalisation': 'L(x) = x^2/2 + x^4/4',
        'dim': 1,
        'min_value': 0.0,
        'minima': '{0}',
        'compiled_kernel': True,
    },
    'zhu': {
        'normalisation': 'L(x, y) = 1/4 (x^2 y^2 - 1)^2',
        'dim': 2,
        'min_value': 0.0,
        'minima': '{(x, y) : x^2 y^2 = 1} (four branches)',
        'compiled_kernel': True,
    },
    'rosenbrock': {
        'normalisation': 'L(x, y) = (a - x)^2 + b (y - x^2)^2 (no factor 1/2)',
        'dim': 2,
        'min_value': 0.0,
        'minima': '{(1, 1)}',
        'compiled_kernel': True,
    },
    'mlp': {
        'normalisation': 'mean squared error over all n*C = 1000*2 outputs, no 1/2',
        'dim': 25186,
        'min_value': 0.0,
        'minima': None,
        'compiled_kernel': False,
    },
    'linear': {
        'normalisation': 'L = 1 * ||Y - W_h...W_1 X||_F^2 (sum, n = 20)',
        'dim': 12,
        'min_value': 46.249406136122055,
        'minima': 'mu_d^-1(W*), a smooth manifold of dimension 8',
        'compiled_kernel': False,
    },
}
