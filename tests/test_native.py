"""The compiled toy kernels: every instruction-set variant gives the same bits (issue #21, item 4).

The shipped library holds target clones (x86-64-v4, x86-64-v3, baseline) and the loader picks
one for the CPU; here each variant is built on its own from the same source (the clone
attribute replaced by one target), loaded with ctypes and run on the same trajectories as the
shipped library.  Variants the CPU cannot run are skipped, saying which."""

import shutil
import subprocess
import sysconfig
from pathlib import Path

import numpy as np
import pytest

from gdstab import Criteria, _native, problems
from gdstab.random import init_points

SRC = Path(__file__).resolve().parents[1] / "src" / "gdstab" / "_native" / "toykernels.c"
VARIANTS = {"x86-64-v4": "avx512f", "x86-64-v3": "avx2", "default": None}


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _build(tmp_path: Path, arch: str) -> Path:
    attr = "" if arch == "default" else f'__attribute__((target("arch={arch}")))'
    out = tmp_path / f"tk_{arch}.so"
    cc = shutil.which("gcc") or shutil.which("cc")
    cmd = [cc, "-O3", "-ffp-contract=off", "-fno-fast-math", "-std=gnu11", "-shared", "-fPIC",
           f"-DKERNEL_ATTR={attr}", f"-I{sysconfig.get_paths()['include']}", str(SRC), "-o", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    return out


def _run(lib, monkeypatch, theta0, eta, steps):
    """gdstab's own native runner with ``lib`` in place of the shipped library."""
    monkeypatch.setattr(_native, "_lib", lib)
    return _native.run("hyperbola", theta0, eta, (), steps, Criteria().as_array(), threads=1)


@pytest.mark.skipif(not _native.available() or not (shutil.which("gcc") or shutil.which("cc")),
                    reason="needs the compiled kernels and a C compiler")
@pytest.mark.parametrize("arch", list(VARIANTS))
def test_every_instruction_set_variant_gives_the_shipped_bits(tmp_path, monkeypatch, arch):
    flag = VARIANTS[arch]
    if flag and flag not in _cpu_flags():
        pytest.skip(f"this CPU has no {flag}: the {arch} variant cannot run here")
    shipped = _native._load()
    variant = _native.open_library(_build(tmp_path, arch))
    p = problems.get("hyperbola")
    pts = init_points(p, 0, np.arange(3000))
    eta = np.repeat(np.array([0.3, 0.9, 1.05, 1.3]), 750)
    with monkeypatch.context() as m:
        a = _run(shipped, m, pts, eta, 2000)
    with monkeypatch.context() as m:
        b = _run(variant, m, pts, eta, 2000)
    for k in a:
        assert np.array_equal(a[k], b[k], equal_nan=True), k
    assert len(set(a["status"].tolist())) >= 3  # several outcomes: more than one path is compared
