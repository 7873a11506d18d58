"""Deprecated location of :mod:`gdstab.random` (kept for one release): the keys of a sweep are
drawn there."""

from ..random import init_keys, init_points, option_hash, trajectory_key, trajectory_keys

__all__ = ["option_hash", "init_keys", "init_points", "trajectory_key", "trajectory_keys"]
