"""Build the optional compiled fast path (gdstab._native._toykernels).

Everything else is declared in pyproject.toml.  The extension is optional: where no C compiler
is available the build is skipped and gdstab runs on its JAX engine alone."""

import sys

from setuptools import Extension, setup

if sys.platform == "win32":
    args = ["/O2", "/fp:precise"]
else:
    args = ["-O3", "-ffp-contract=off", "-fno-fast-math", "-std=gnu11"]

setup(
    ext_modules=[
        Extension(
            "gdstab._native._toykernels",
            sources=["src/gdstab/_native/toykernels.c"],
            extra_compile_args=args,
            optional=True,
        )
    ]
)
