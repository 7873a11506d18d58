"""The ``gdstab reproduce`` targets, in the order they run: one :class:`Target` record each,
defined next to its computation (``TARGETS`` in each experiment module).  ``gdstab reproduce``,
``gdstab report`` and the command line read this registry and nothing else.

Adding a target: a module in ``gdstab/experiments/`` with its compute and draw functions and a
``TARGETS`` tuple, and the module in the import line and ``_MODULES`` below (docs/architecture.md has a worked example).
"""

from __future__ import annotations

from . import beyond, field_catapult, field_eos, field_fractal, optimizer_dynamics, paper_linear, paper_nets, paper_toy
from .target import Target

__all__ = ["Target", "TARGETS", "names", "get"]

#: the experiment modules that define targets, in the order their targets run
_MODULES = (paper_toy, paper_nets, paper_linear, beyond, optimizer_dynamics, field_eos, field_catapult, field_fractal)


def _collect() -> dict[str, Target]:
    out: dict[str, Target] = {}
    for module in _MODULES:
        for t in module.TARGETS:
            if t.name in out or t.name == "all":
                raise RuntimeError(f"the reproduce target {t.name!r} is defined twice")  # pragma: no cover
            out[t.name] = t
    return out


#: name -> Target, in the order the targets run
TARGETS: dict[str, Target] = _collect()


def names() -> tuple[str, ...]:
    return tuple(TARGETS)


def get(name: str) -> Target:
    return TARGETS[name]
