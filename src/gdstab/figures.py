"""Drawing a ``gdstab reproduce`` target's figure from its stored data (no computation), as its
record in :mod:`gdstab.experiments.registry` says: shared by :mod:`gdstab.reproduce` (which
computes the data) and :mod:`gdstab.report` (which redraws missing figures)."""

from __future__ import annotations

from pathlib import Path

from .experiments import registry
from .results import open_store

__all__ = ["STORES", "FIGURE_NAMES", "draw"]

#: the data a target's figure is drawn from (relative to DIR/data), and its file stem
STORES = {name: t.store for name, t in registry.TARGETS.items()}
FIGURE_NAMES = {name: t.figure for name, t in registry.TARGETS.items()}


def draw(target: str, out: str | Path, scale: str) -> list[Path]:
    """Redraw the figure of ``target`` from the data stored in ``out/data`` (no computation)."""
    import matplotlib.pyplot as plt

    from . import plots

    out = Path(out)
    t = registry.get(target)
    fig = t.draw(open_store(out / "data" / t.store), scale)
    paths = plots.save(fig, out / "figures" / t.figure)
    plt.close(fig)
    return paths
