"""The record of one ``gdstab reproduce`` target (see :mod:`gdstab.experiments.registry`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["Target", "dataset_compute", "plot_draw"]


@dataclass(frozen=True)
class Target:
    """Everything ``gdstab reproduce``, ``gdstab report`` and the command line need to know of
    one target.

    Attributes:
        name: the target's name on the command line (``fig1``, ``orbit``, ...).
        store: where its data live, relative to ``DIR/data`` (a Zarr store or a sweep folder).
        figure: the file stem of its figure under ``DIR/figures``.
        compute: ``compute(out, scale, quiet, key_numbers)`` computes (or resumes) the data into
            ``out/data/<store>`` (plus CSV tables beside it) and adds the target's key numbers to
            the dict ``key_numbers``.
        draw: ``draw(ds, scale)`` returns the matplotlib figure from the stored Dataset (no
            computation).
        caption: ``caption(scale)``: the figure's caption in the report.
        shares: another target computed by the same run (fig3 and fig5 share the GD network
            sweep): when that one is complete and the store is readable, this one is too.
        title: the heading of its section in the report (Unicode maths, no code names).
    """

    name: str
    store: str
    figure: str
    compute: Callable[[Path, str, bool, dict], None]
    draw: Callable[[Any, str], Any]
    caption: Callable[[str], str]
    shares: str | None = None
    title: str = ""


def dataset_compute(compute: Callable[[str], Any], key_numbers: Callable[[Any], dict], store: str):
    """The ``compute`` of a target whose data are one Dataset: ``compute(scale)``, saved to
    ``out/data/<store>``, and its ``key_numbers(ds)`` added to the summary."""

    def run(out: Path, scale: str, quiet: bool, keys: dict) -> None:
        from ..results import save_dataset

        ds = compute(scale)
        save_dataset(ds, Path(out) / "data" / store)
        keys.update(key_numbers(ds))

    return run


def plot_draw(name: str):
    """The ``draw`` of a target whose figure is ``gdstab.plots.<name>(ds)``."""

    def draw(ds, scale: str):
        from .. import plots

        return getattr(plots, name)(ds)

    return draw
