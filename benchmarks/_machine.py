"""Machine and version information printed with every benchmark."""

import os
import platform


def describe() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    info = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    try:
        import jax
        import numpy

        import gdstab

        info.update(gdstab=gdstab.__version__, jax=jax.__version__, numpy=numpy.__version__,
                    jax_backend=jax.default_backend())
    except Exception:  # pragma: no cover
        pass
    return info
