"""Every code block of README.md and docs/*.md runs as a reader would paste it (#17).

Each fenced block declares its language: ``bash`` blocks run line by line (a plain ``gdstab ...`` line
through ``gdstab.cli.main`` in this process, as the CLI tests run it; anything else in bash with
gdstab's environment first on PATH), ``python`` blocks each in a fresh interpreter (a block must stand on
its own, imports included; one with relative imports is a module of ``gdstab.experiments``
and runs as one), ``toml`` blocks whose first line is ``# NAME.toml`` are written to
that file first (and must load as a sweep config), ``text`` blocks are output and not run.  They
run in a temporary folder per page, holding a copy of ``examples/``.

Where the text's size takes minutes, SHRINK below replaces it with a tiny one (each entry names
the page and the text it changes), and SKIP lists the lines that cannot run here, with the
reason; an entry that no longer matches any block fails the test, so neither list goes stale.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["README.md"] + sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md"))
FENCE = re.compile(r"^[ \t]*```([A-Za-z]*)\n(.*?)^[ \t]*```", re.M | re.S)  # indented in lists too
LANGUAGES = ("bash", "python", "toml", "text")

#: (page, text in a block, what runs instead): sizes made tiny so that the whole page runs in seconds
SHRINK = [
    ("README.md", "np.arange(10_000)", "np.arange(500)"),
    ("docs/guide.md", "--inits 20000", "--inits 500"),
    ("docs/guide.md", "np.arange(10_000)", "np.arange(500)"),
    ("docs/guide.md", "--trapping 0.06:0.1:5 --inits 1000", "--trapping 0.06:0.1:5 --inits 50 --steps 500"),
    ("docs/guide.md", "np.arange(16)", "np.arange(2)"),
    ("docs/guide.md", "mnist((0, 1), n=100)", "mnist((0, 1), n=10)"),
    ("docs/guide.md", "steps=2000, dtype", "steps=50, dtype"),
    ("docs/guide.md", "steps=1000, dtype", "steps=50, dtype"),
    ("docs/guide.md", "batch_size=64", "batch_size=8"),
    ("docs/guide.md", "inits = 32", "inits = 2"),
    ("docs/guide.md", "steps = 1000", "steps = 20"),
    ("docs/guide.md", "samples = 100", "samples = 10"),
    ("docs/guide.md", "eta = [0.1, 0.5, 1.0, 2.0, 5.0]", "eta = [0.1, 5.0]"),
    ("docs/guide.md", "batch_size = 64", "batch_size = 8"),
    ("docs/dynamics.md", "--eta 1.0:1.6:600", "--eta 1.0:1.6:13 --transient 2000"),
    ("docs/dynamics.md", "--resolution 1024", "--resolution 32"),
    ("docs/dynamics.md", "--eta-range 0.1,3 --steps 50000", "--eta-range 0.1,3 --steps 3000 --inits 16"),
    ("docs/dynamics.md", "--option samples=100", "--option samples=10 --inits 4 --steps 300"),
    ("docs/optimizers.md", "steps=5000", "steps=500"),
    ("docs/optimizers.md", "--inits 2000 --steps 20000", "--inits 100 --steps 2000"),
    ("docs/sweeps.md", "inits = 10000", "inits = 50"),
    ("docs/models.md", "np.arange(32)", "np.arange(4)"),
    ("docs/models.md", "np.arange(256)", "np.arange(8)"),
    ("docs/models.md", "inits = 32", "inits = 2"),
    ("docs/models.md", "steps = 500", "steps = 20"),
    ("docs/models.md", "steps=2000, criteria=gdstab.Criteria(tol=1e-5", "steps=100, criteria=gdstab.Criteria(tol=1e-5"),
    ("docs/models.md", "steps=500, criteria", "steps=50, criteria"),
    ("docs/models.md", "inits=16, steps=300", "inits=4, steps=50"),
    ("docs/models.md", "steps=300, every=30", "steps=30, every=10"),
    ("docs/models.md", "--samples 200 --objective mse", "--samples 50 --objective mse --inits 4 --steps 100"),
    ("docs/models.md", "--samples 200 --eta 0.5 --steps 200 --every 20", "--samples 50 --eta 0.5 --steps 40 --every 20"),
    ("docs/sweeps.md", "steps = 1000  ", "steps = 100   "),
]

#: (page, start of a line): lines not run, and why
SKIP = [
    ("README.md", "python3 -m venv .venv", "the set-up commands: .ci/run runs them verbatim (tests/test_readme.py)"),
    ("docs/quickstart.md", "python3 -m venv .venv", "the README's set-up commands (tests/test_readme.py)"),
    ("docs/guide.md", "dask scheduler &", "starts a Dask cluster in the background; the --dask-local line runs"),
    ("docs/guide.md", "gdstab sweep mlp.toml --out runs/mlp --executor dask --scheduler",
     "needs the cluster of the line before; the --dask-local line runs the same executor"),
    ("docs/sweeps.md", "gdstab sweep sweep.toml --out results/ --executor dask --scheduler",
     "a cluster at 10.0.0.5 (an example address)"),
]


#: pages whose examples need optional extras (skipped, with the reason, where they are missing)
OPTIONAL = {"docs/models.md": ("torch", "torch2jax", "flax", "equinox", "sklearn")}


def _blocks(page: str) -> list[tuple[str, str]]:
    import textwrap

    return [(m.group(1), textwrap.dedent(m.group(2))) for m in FENCE.finditer((ROOT / page).read_text())]


def test_every_block_declares_a_language_and_the_lists_match_the_docs():
    for page in PAGES:
        for lang, _ in _blocks(page):
            assert lang in LANGUAGES, f"{page}: a code block tagged {lang!r}; tag it as one of {LANGUAGES}"
    for page, old, _ in SHRINK:
        assert any(old in body for _, body in _blocks(page)), f"SHRINK entry {old!r} matches nothing in {page}"
    for page, start, _ in SKIP:
        assert any(line.strip().startswith(start) for _, body in _blocks(page) for line in body.splitlines()), \
            f"SKIP entry {start!r} matches no line of {page}"


def _env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["MPLBACKEND"] = "Agg"
    return env


def _shrunk(page: str, body: str) -> str:
    for p, old, new in SHRINK:
        if p == page:
            body = body.replace(old, new)
    return body


def _skipped(page: str, line: str) -> bool:
    return any(p == page and line.strip().startswith(start) for p, start, _ in SKIP)


def _run(cmd, page: str, what: str, cwd: Path, **kw):
    proc = subprocess.run(cmd, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=600, **kw)
    assert proc.returncode == 0, f"{page}: {what} exited {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"


def _gdstab_argv(line: str) -> list[str] | None:
    """The arguments of a plain ``gdstab ...`` line (run in this process, as the CLI tests do:
    ~3 s of interpreter and JAX start-up saved per line), or None for anything the shell must run."""
    import shlex

    if any(op in line for op in ("|", "&", ";", ">", "<", "$", "`")):
        return None
    words = shlex.split(line, comments=True)
    return words[1:] if words and words[0] == "gdstab" else None


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if _blocks(p)])
def test_every_block_of_the_page_runs(page, tmp_path, monkeypatch, capsys):
    from gdstab.cli import main
    from gdstab.sweep import load_config

    import importlib.util

    missing = [m for m in OPTIONAL.get(page, ()) if importlib.util.find_spec(m) is None]
    if missing:  # the core suite passes without the optional extras
        pytest.skip(f"{page} needs the optional packages {missing} (pip install -e '.[test]' installs them)")
    shutil.copytree(ROOT / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    blocks = [(lang, _shrunk(page, body)) for lang, body in _blocks(page)]
    for lang, body in blocks:  # configs first: a page may show the command before the file
        first = body.splitlines()[0].strip() if body.strip() else ""
        if lang == "toml" and re.fullmatch(r"#\s*[\w.-]+\.toml", first):
            path = tmp_path / first.lstrip("#").strip()
            path.write_text(body)
            load_config(path)  # the config as shown parses and builds its problems
    for i, (lang, body) in enumerate(blocks):
        if lang == "python":
            code = body
            if re.search(r"^from \.", body, re.M):  # a module of gdstab.experiments (docs/architecture.md)
                code = (f"exec(compile({body!r}, 'example.py', 'exec'), "
                        "{'__name__': 'gdstab.experiments.example', '__package__': 'gdstab.experiments'})")
            _run([sys.executable, "-c", code], page, f"python block {i + 1}:\n{body}", tmp_path)
        elif lang == "bash":
            for line in body.splitlines():
                if not line.strip() or line.lstrip().startswith("#") or _skipped(page, line):
                    continue
                argv = _gdstab_argv(line)
                if argv is None:
                    _run(["bash", "-c", line], page, f"the line {line!r}", tmp_path)
                    continue
                code = main(argv)
                out = capsys.readouterr()
                assert code == 0, f"{page}: the line {line!r} exited {code}\n{out.out[-2000:]}\n{out.err[-3000:]}"


def test_the_figure_gallery_shows_every_reproduce_figure():
    """docs/figures.md (#17) holds the current image of every target's figure, each present."""
    from gdstab.experiments import registry

    text = (ROOT / "docs" / "figures.md").read_text()
    for t in registry.TARGETS.values():
        assert f"(figures/after/{t.figure}.png)" in text, t.figure
        assert (ROOT / "docs" / "figures" / "after" / f"{t.figure}.png").stat().st_size > 10_000
    for ref in re.findall(r"\]\((figures/[^)]+)\)", text):
        assert (ROOT / "docs" / ref).is_file(), ref
