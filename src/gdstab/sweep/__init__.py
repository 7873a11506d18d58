"""Sweeps: grids over step sizes × initialisations × problem options, stored cell by cell.

``run(config, out=DIR)`` runs (or resumes) a sweep and returns an ``xarray.Dataset``;
``load_config`` reads the TOML schema documented in :mod:`gdstab.sweep.config`;
``open_results`` reads a results folder; ``summary`` gives fractions with Wilson intervals.
Keys come from :mod:`gdstab.random`, the one place in gdstab where seeds become keys.
"""

from .config import ConfigError, ProblemSpec, SweepConfig, load_config
from ..random import init_keys, init_points, trajectory_key
from .cells import compute_cell
from .executors import EXECUTORS, DaskExecutor, Executor, LocalExecutor
from .driver import STATUS_CODES, folder_summary, open_results, run, summary
from .store import Layout, ResultsFolder, StoreError, StoreMismatchError

__all__ = [
    "SweepConfig",
    "ProblemSpec",
    "ConfigError",
    "load_config",
    "run",
    "open_results",
    "summary",
    "folder_summary",
    "compute_cell",
    "Executor",
    "LocalExecutor",
    "DaskExecutor",
    "EXECUTORS",
    "STATUS_CODES",
    "init_keys",
    "init_points",
    "trajectory_key",
    "Layout",
    "ResultsFolder",
    "StoreError",
    "StoreMismatchError",
]
