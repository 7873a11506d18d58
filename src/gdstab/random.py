"""Randomness: the one place where gdstab turns seeds into PRNG keys, splits keys, and draws
random initial points.  Everything random in the library takes a key (or a seed at the command
line) that comes through here.

The key of a trajectory depends only on (seed, grid coordinates), never on chunking, cell
layout or executor:

    key(seed, option point, init i) = fold_in(fold_in(key(seed), h(option point)), i)

where h is a 31-bit hash of the canonical JSON of the option values (so that adding values to a
grid does not change the keys of the points already there).  The step size is deliberately not
part of the initialisation key: every η of a sweep starts from the same initial points (common
random numbers), which makes differences between step sizes sharper.  Later stochastic parts
(e.g. SGD's shuffles) derive their keys with :func:`trajectory_key`, which does include η.
"""

from __future__ import annotations

import functools
import json
import zlib
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["key", "option_hash", "init_keys", "init_points", "trajectory_key", "trajectory_keys"]


def key(seed: int):
    """The JAX PRNG key of an integer seed (``jax.random.key``), the root of every other key."""
    import jax

    return jax.random.key(int(seed))


def option_hash(point: Mapping[str, Any]) -> int:
    """A stable 31-bit integer for a combination of option values."""
    text = json.dumps({k: point[k] for k in sorted(point)}, sort_keys=True, separators=(",", ":"))
    return zlib.crc32(text.encode()) & 0x7FFFFFFF


def _base(seed: int, point: Mapping[str, Any]):
    import jax

    return jax.random.fold_in(key(seed), option_hash(point))


def init_keys(seed: int, point: Mapping[str, Any], indices: Sequence[int] | np.ndarray):
    """Keys of the initialisations ``indices`` at the option point ``point``."""
    import jax
    import jax.numpy as jnp

    base = _base(seed, point)
    idx = jnp.asarray(np.asarray(indices, dtype=np.uint32))
    return jax.vmap(lambda i: jax.random.fold_in(base, i))(idx)


@functools.lru_cache(maxsize=64)
def _sampler(problem, box):
    import jax

    def draw(base, idx):
        return jax.vmap(lambda i: problem.init(jax.random.fold_in(base, i), 1, box)[0])(idx)

    return jax.jit(draw)


def init_points(problem, seed: int, indices, box=None, point: Mapping[str, Any] | None = None) -> np.ndarray:
    """Initial points (len(indices), d) drawn by ``problem.init`` with the per-initialisation
    keys; the same (seed, option point, index) always gives the same point."""
    import jax
    import jax.numpy as jnp

    box = None if box is None else tuple(tuple(float(v) for v in b) for b in box)
    idx = np.asarray(indices, dtype=np.uint32)
    with jax.enable_x64(True):
        pts = _sampler(problem, box)(_base(seed, point or {}), jnp.asarray(idx))
        return np.asarray(pts, dtype=np.float64)


def _with_eta(key, eta_value: float):
    """Fold the float64 bits of η into a key (two 32-bit halves)."""
    import jax

    bits = int(np.float64(eta_value).view(np.uint64))
    key = jax.random.fold_in(key, (bits >> 32) & 0xFFFFFFFF)
    return jax.random.fold_in(key, bits & 0xFFFFFFFF)


def trajectory_key(seed: int, point: Mapping[str, Any], init: int, eta_value: float):
    """A key for the stochastic parts of one trajectory (depends on η by its float64 bits)."""
    import jax

    return _with_eta(jax.random.fold_in(_base(seed, point), int(init)), eta_value)


def trajectory_keys(seed: int, point: Mapping[str, Any], indices, eta_value: float) -> np.ndarray:
    """:func:`trajectory_key` for the initialisations ``indices`` at one η, as (n, k) uint32
    key data (the form :func:`gdstab.trajectories` takes with ``batch_size``)."""
    import jax
    import jax.numpy as jnp

    base = _base(seed, point)
    idx = jnp.asarray(np.asarray(indices, dtype=np.uint32))
    return np.asarray(jax.vmap(lambda i: jax.random.key_data(_with_eta(jax.random.fold_in(base, i), eta_value)))(idx))
