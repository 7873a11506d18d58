"""The shape of the house (docs/architecture.md): imports of gdstab's own modules form no cycle,
and no module imports another module's underscore name.  Read from the source (AST), so every
import counts, those inside functions included."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "gdstab"


def _modules() -> dict[str, Path]:
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = list(p.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def _imports(mods: dict[str, Path]):
    """(importing module, imported module, imported name or None, line) for every import of a
    gdstab module anywhere in the source."""
    for mod, path in mods.items():
        package = mod.split(".") if path.name == "__init__.py" else mod.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "gdstab":
                        yield mod, a.name, None, node.lineno
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package[: len(package) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target.split(".")[0] != "gdstab":
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in mods:  # `from . import folders`: the submodule itself
                        yield mod, sub, None, node.lineno
                    else:
                        yield mod, target, a.name, node.lineno


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in list(edges):
        if v not in index:
            visit(v)
    return out


def test_the_import_graph_has_no_cycle():
    mods = _modules()
    edges: dict[str, set[str]] = {}
    for mod, target, _, _ in _imports(mods):
        if target != mod and target in mods:
            edges.setdefault(mod, set()).add(target)
    assert _cycles(edges) == []


def test_the_cycle_finder_finds_a_cycle():  # the check above can fail
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_imports_another_modules_private_name():
    mods = _modules()
    bad = [f"{mod}:{line} imports {name} from {target}" for mod, target, name, line in _imports(mods)
           if name and name.startswith("_") and not name.startswith("__") and target != mod]
    assert bad == []


def test_a_new_reproduce_target_is_one_registry_record(tmp_path, monkeypatch):
    """What docs/architecture.md promises: a target is one :class:`Target` record (in its own
    experiment module, listed in the registry); reproduce, the figures and the report read the
    registry and need no edit."""
    import numpy as np
    import xarray as xr

    from gdstab.experiments import registry
    from gdstab.experiments.target import Target
    from gdstab.reproduce import reproduce
    from gdstab.results import save_dataset

    def compute(out, scale, quiet, keys):
        ds = xr.Dataset({"y": ("x", np.arange(5.0) ** 2)}, coords={"x": np.arange(5)})
        save_dataset(ds, out / "data" / "demo.zarr")
        keys["demo_sum"] = {"value": float(ds.y.sum()), "definition": "sum of squares 0..4"}

    def draw(ds, scale):
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots()
        ax.plot(ds.x, ds.y)
        return fig

    demo = Target("demo", "demo.zarr", "demo_figure", compute, draw, lambda scale: f"A demo target ({scale}).")
    monkeypatch.setitem(registry.TARGETS, "demo", demo)
    summary = reproduce(["demo"], tmp_path / "out", quiet=True)
    assert summary["key_numbers"]["demo_sum"]["value"] == 30.0
    assert (tmp_path / "out" / "figures" / "demo_figure.png").stat().st_size > 0
    page = (tmp_path / "out" / "report.html").read_text()
    assert "A demo target (small)." in page and "id='demo'" in page


#: the longest a function's code may be (lines, its docstring not counted): a longer one hides
#: steps that deserve a name (issue #14)
MAX_FUNCTION_LINES = 80


def test_no_function_is_longer_than_80_lines_of_code():
    long = []
    for mod, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                    n -= first.end_lineno - first.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{mod}.{node.name}: {n} lines")
    assert not long, long
