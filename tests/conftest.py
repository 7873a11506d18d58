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


@pytest.fixture(autouse=True)
def _hang_guard():
    """A test that hangs (e.g. a lost Dask future) ends the run after 10 minutes with every
    thread's traceback, instead of silently using up CI's time."""
    import faulthandler

    faulthandler.dump_traceback_later(600, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture
def jaxpr_counts():
    """``counts(fn, x, size=None)``: primitive name -> how many equations of the jaxpr of
    ``fn(x)`` (nested jaxprs included) there are, only those with an output of ``size``
    elements when given."""
    import jax
    from jax.extend.core import jaxprs_in_params

    def counts(fn, x, size=None):
        out: dict = {}

        def walk(jaxpr):
            for eq in jaxpr.eqns:
                if size is None or any(getattr(v.aval, "size", 0) == size for v in eq.outvars):
                    out[eq.primitive.name] = out.get(eq.primitive.name, 0) + 1
                for sub in jaxprs_in_params(eq.params):
                    walk(sub)

        walk(jax.make_jaxpr(fn)(x).jaxpr)
        return out

    return counts
