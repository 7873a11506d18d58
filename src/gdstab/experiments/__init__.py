"""The paper's figures and our extensions as named experiments.

Each experiment has a config per scale ("small": runs on a laptop CPU, the default; "paper":
the paper's sizes), a compute function that returns an ``xarray.Dataset`` (and stores what it
computes under the results folder, resumably), and a plot function in :mod:`gdstab.plots`.
"""

from .paper_nets import NET_RUNS, compute_nets, convergence_table, heatmap_data, key_numbers_nets
from .paper_toy import FIG1, FIG2, compute_fig1, compute_fig2, key_numbers_fig12

__all__ = ["FIG1", "FIG2", "compute_fig1", "compute_fig2", "key_numbers_fig12", "NET_RUNS", "compute_nets",
           "convergence_table", "heatmap_data", "key_numbers_nets"]
