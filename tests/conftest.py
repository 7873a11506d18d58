import os

import pytest

# tests run on the CPU whatever the machine has; keep XLA from grabbing every core twice
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")


@pytest.fixture(autouse=True)
def _x64():
    """Analysis tests run in float64, as gdstab's entry points do."""
    import jax

    with jax.enable_x64(True):
        yield
