"""gdstab: gradient descent with a fixed step size as a dynamical system.

G(θ) = θ − η ∇L(θ).  Which minima can GD converge to at this η, from which initialisations,
what happens instead (divergence, cycles, chaos), and beyond which step size convergence
becomes impossible.

Importing gdstab does not change JAX's global configuration: float64 is enabled inside the
entry points that need it (``jax.enable_x64`` context), never as a side effect of the import.
The package imports its parts lazily (``gdstab.trajectories``, ``gdstab.sweep``, ... load on
first use), so ``import gdstab`` and the ``gdstab`` command start quickly.
"""

from __future__ import annotations

import importlib


__version__ = "0.1.0"

# public name -> the module that defines it
_NAMES = {
    "Problem": "gdstab.problems",
    "Criteria": "gdstab.dynamics",
    "Metrics": "gdstab.dynamics",
    "Status": "gdstab.outcomes",
    "Trajectories": "gdstab.dynamics",
    "trajectories": "gdstab.dynamics",
    "gd_map": "gdstab.dynamics",
    "wilson_interval": "gdstab.stats",
    "Interrupted": "gdstab.interrupts",
}
_SUBMODULES = ("problems", "dynamics", "outcomes", "random", "results", "sweep", "stability", "spectrum", "orbits",
               "basins", "sharpness", "critical", "plots",
               "reproduce", "report", "experiments", "interrupts", "stats", "optimizers")

__all__ = [*_NAMES, "__version__"]


def __getattr__(name: str) -> object:
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"gdstab.{name}")
    else:
        raise AttributeError(f"module 'gdstab' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES) | set(_SUBMODULES))
