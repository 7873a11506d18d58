"""XLA:CPU's 512-bit vector option (gdstab.dynamics.use_wide_cpu_vectors; docs/performance.md).

Each case runs in a fresh interpreter: XLA reads XLA_FLAGS once, when JAX creates its backend."""

import json
import os
import subprocess
import sys

import pytest

from gdstab.dynamics import WIDE_VECTORS_FLAG, _cpu_flags

AVX512 = "avx512f" in _cpu_flags()

RUN = r"""
import json, sys, numpy as np
from gdstab.dynamics import use_wide_cpu_vectors
on = use_wide_cpu_vectors() if sys.argv[1] == "ask" else False
import jax
jax.config.update("jax_enable_x64", True)
from gdstab import problems, trajectories
from gdstab.random import init_points
out = {"on": on, "flags": __import__("os").environ.get("XLA_FLAGS", ""), "runs": []}
for depth, dtype, steps in ((2, "float32", 150), (4, "float64", 60)):
    p = problems.get("mlp", depth=depth, samples=20)
    th0 = init_points(p, 1, np.arange(6))
    r = trajectories(p, th0, np.array([0.05, 0.4, 0.9, 1.3, 2.0, 0.2]), steps=steps, dtype=dtype, backend="jax")
    out["runs"].append([np.asarray(a).tobytes().hex() for a in (r.theta, r.loss, r.grad_norm, r.status, r.step)])
out["late"] = use_wide_cpu_vectors()  # the backend exists now
print(json.dumps(out))
"""


def _run(mode, flags=None):
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if flags is not None:
        env["XLA_FLAGS"] = flags
    done = subprocess.run([sys.executable, "-c", RUN, mode], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not AVX512, reason="the option is only set on CPUs with AVX-512")
def test_wide_vectors_are_asked_for_and_change_no_bit_of_a_network_run():
    wide, plain = _run("ask"), _run("plain")
    assert wide["on"] and WIDE_VECTORS_FLAG in wide["flags"].split()
    assert not plain["on"] and WIDE_VECTORS_FLAG not in plain["flags"]
    assert wide["runs"] == plain["runs"]  # float32 and float64 MLPs: every output, bit for bit
    assert wide["late"]  # asked again once the backend runs: still reported as in effect


def test_a_users_own_width_is_kept_and_a_started_backend_is_left_alone():
    mine = _run("ask", flags="--xla_cpu_prefer_vector_width=256")
    assert mine["flags"] == "--xla_cpu_prefer_vector_width=256" and not mine["on"]
    code = ("import jax.numpy as jnp; jnp.ones(2).sum()\n"
            "from gdstab.dynamics import use_wide_cpu_vectors; import os\n"
            "print(use_wide_cpu_vectors(), os.environ.get('XLA_FLAGS', ''))")
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False"]  # too late: nothing set, and it says so
