"""gdstab: gradient descent with a fixed step size as a dynamical system.

G(θ) = θ − η ∇L(θ).  Which minima can GD converge to at this η, from which initialisations,
what happens instead (divergence, cycles, chaos), and beyond which step size convergence
becomes impossible.

Importing gdstab does not change JAX's global configuration: float64 is enabled inside the
entry points that need it (``jax.enable_x64`` context), never as a side effect of the import.
"""

from .dynamics import Criteria, Metrics, Status, Trajectories, gd_map, trajectories
from .problems import Problem
from .stats import wilson_interval

__version__ = "0.1.0"

__all__ = [
    "Problem",
    "Criteria",
    "Metrics",
    "Status",
    "Trajectories",
    "trajectories",
    "gd_map",
    "wilson_interval",
    "__version__",
]
