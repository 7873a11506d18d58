"""Adaptive step-size grids (gdstab.sweep.adaptive): the rounds' rules checked against a
synthetic status array, the fractions against the exhaustive grid on the same cells, resuming,
the budget and the [adaptive] table's validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdstab import sweep
from gdstab.stats import wilson_interval
from gdstab.sweep import adaptive
from gdstab.sweep.config import ConfigError
from gdstab.sweep.store import Layout

BASE = """
[problem]
name = "hyperbola"
[grid]
eta = "0.1:1.6:31"
inits = 40
[run]
steps = 600
store_theta = false
"""


def _cfg(extra: str = "[adaptive]\nhalfwidth = 0.15\n"):
    return sweep.load_config(BASE + extra)


def test_first_round_spreads_over_the_sorted_grid_and_next_round_follows_the_rules():
    """Independent of the engine: a status array whose converged fraction is 1 below grid
    index 12, 0.5 at 12 and 0 above; the next rounds are derived by hand."""
    cfg = sweep.load_config(BASE.replace('"0.1:1.6:31"', "[1.6, 0.1, 0.85, 0.35, 1.1, 0.6, 1.35, 0.2, 0.3]")
                            + "[adaptive]\ncoarse = 3\n")
    layout = Layout.for_config(cfg)
    assert (layout.cell_inits, layout.cell_etas, layout.n_blocks) == (10, 1, 4)
    order = np.argsort(cfg.eta)
    first = adaptive.first_round(cfg, layout)
    assert first == [(0, int(order[0]), 0), (0, int(order[4]), 0), (0, int(order[8]), 0)]  # 0.1, 0.6, 1.6
    status = np.zeros((9, 40), np.int8)
    for e, eta in enumerate(cfg.eta):
        status[e] = 1 if eta < 0.6 else 2  # converged below 0.6, diverged from 0.6 on
    cells = adaptive.next_round(cfg, layout, status, set(first))
    # the fractions 1, 0, 0: a change between 0.1 and 0.6 -> the middle candidate (0.3, sorted
    # position 2); none between 0.6 and 1.6; half-widths of n = 10 at 0 or 1 are 0.139 <= 0.15
    assert cells == [(0, int(order[2]), 0)]
    status[list(cfg.eta).index(0.3), :5] = 2  # 0.3 converges half of the time
    second = adaptive.next_round(cfg, layout, status, set(first) | set(cells))
    e03 = list(cfg.eta).index(0.3)
    assert sorted(second) == sorted([(0, e03, 1), (0, int(order[1]), 0), (0, int(order[3]), 0)])


def test_adaptive_fractions_equal_the_exhaustive_grid_on_common_cells_and_meet_the_target(tmp_path):
    cfg = _cfg()
    ds = sweep.run(cfg, tmp_path / "a", quiet=True)
    report = json.loads(ds.attrs["adaptive"])
    full = sweep.run(sweep.load_config(BASE), tmp_path / "full", quiet=True)
    layout = Layout.for_config(cfg)
    assert report["stopped"].startswith("done") and not report["wider_than_target"]
    rows = report["points"][0]
    assert report["trajectories"] == sum(r["n"] for r in rows) < 0.5 * 31 * 40
    for r in rows:  # the same initialisations (common random numbers): identical statuses
        e, n = r["eta_index"], r["n"]
        np.testing.assert_array_equal(ds.status.values[e, :n], full.status.values[e, :n])
        assert (ds.status.values[e, n:] == 0).all()  # the rest was never computed
        k = int((full.status.values[e, :n] == 1).sum())
        f, lo, hi = wilson_interval(k, n)
        assert (r["count"], r["fraction"]) == (k, f) and r["halfwidth"] <= 0.15 + 1e-12
        assert n % layout.cell_inits == 0 or n == cfg.inits
    etas = [r["eta"] for r in rows]
    assert etas == sorted(etas) and etas[0] == min(cfg.eta) and etas[-1] == max(cfg.eta)
    grid = sorted(cfg.eta)
    for a, b in zip(rows, rows[1:]):  # every change larger than `change` is located to the grid
        if abs(a["fraction"] - b["fraction"]) > cfg.adaptive.change:
            assert grid.index(b["eta"]) == grid.index(a["eta"]) + 1, (a, b)
    # the exhaustive grid's transition (last eta where most converge) lies between computed points
    conv = (full.status.values == 1).mean(axis=1)
    assert any(abs(r["eta"] - cfg.eta[int(np.flatnonzero(conv > 0.5).max())]) < 1e-12 for r in rows)


@pytest.mark.parametrize("per_call", [3, 4])
def test_an_interrupted_adaptive_sweep_resumes_to_the_identical_result(tmp_path, per_call):
    cfg = _cfg()
    whole = sweep.run(cfg, tmp_path / "whole", quiet=True)
    for _ in range(60):  # a few cells per call, as if interrupted again and again
        part = sweep.run(cfg, tmp_path / "parts", quiet=True, max_cells=per_call)
        stopped = json.loads(part.attrs["adaptive"])["stopped"]
        if not stopped.startswith("incomplete"):
            break
        assert (part.status.values != 0).sum() < (whole.status.values != 0).sum()  # never "done" while incomplete
    assert json.loads(part.attrs["adaptive"]) == json.loads(whole.attrs["adaptive"])
    # reading the folder replays the rounds from the stored data: the same report
    assert json.loads(sweep.open_results(tmp_path / "whole").attrs["adaptive"]) == json.loads(whole.attrs["adaptive"])
    rows = sweep.summary(whole)  # unchosen candidates are left out
    assert len(rows) == len(json.loads(whole.attrs["adaptive"])["points"][0]) and all(r["n"] > 0 for r in rows)
    np.testing.assert_array_equal(part.status.values, whole.status.values)
    runs = [json.loads(line) for line in (tmp_path / "parts" / "runs.jsonl").read_text().splitlines()]
    assert any("adaptive" in r for r in runs)


def test_the_budget_stops_before_a_round_that_would_exceed_it(tmp_path):
    ds = sweep.run(_cfg("[adaptive]\nmax_trajectories = 70\n"), tmp_path / "b", quiet=True)
    report = json.loads(ds.attrs["adaptive"])
    assert report["stopped"].startswith("budget") and report["trajectories"] <= 70
    assert int((ds.status.values != 0).sum()) == report["trajectories"]


@pytest.mark.parametrize("table, match", [
    ("[adaptive]\nstatus = 'sideways'\n", "adaptive.status"),
    ("[adaptive]\nhalfwidth = 0.5\n", "adaptive.halfwidth"),
    ("[adaptive]\nchange = 1.0\n", "adaptive.change"),
    ("[adaptive]\ncoarse = 1\n", "adaptive.coarse"),
    ("[adaptive]\nmax_trajectories = -1\n", "adaptive.max_trajectories"),
    ("[adaptive]\nrefine = 2\n", "refine"),
])
def test_bad_adaptive_tables_name_the_key(table, match):
    with pytest.raises(ConfigError, match=match):
        _cfg(table)
    with pytest.raises(ConfigError, match="cell_etas"):
        sweep.load_config(BASE.replace("store_theta = false", "store_theta = false\ncell_etas = 4") + "[adaptive]\n")


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["converged", "diverged", "periodic", "bounded", "stationary"]),
       st.floats(0.01, 0.49), st.floats(0.0, 0.99), st.integers(2, 40), st.integers(0, 10**6))
def test_property_adaptive_tables_round_trip(status, half, change, coarse, budget):
    text = (f"[adaptive]\nstatus = '{status}'\nhalfwidth = {half!r}\nchange = {change!r}\ncoarse = {coarse}\n"
            f"max_trajectories = {budget}\n")
    cfg = _cfg(text)
    again = sweep.load_config(cfg.to_toml())
    assert again == cfg and again.digest() == cfg.digest()
    assert cfg.digest() != sweep.load_config(BASE).digest()
    assert cfg.adaptive.to_dict() == {"status": status, "halfwidth": half, "change": change, "coarse": coarse,
                                      "max_trajectories": budget}


def test_a_networks_adaptive_cells_equal_the_exhaustive_grid_on_common_trajectories(tmp_path):
    """Networks run sequential lanes, whose arithmetic does not depend on the cell or lane
    layout: blocks of 10 in an adaptive sweep and one cell of every initialisation in the
    exhaustive sweep give the same statuses and decision steps on common trajectories."""
    base = """
[problem]
name = "mlp"
[problem.options]
activation = "tanh"
samples = 50
width = 32
depth = 1
[grid]
eta = [0.2, 1.0, 3.0, 8.0, 20.0]
inits = 20
[run]
steps = 150
dtype = "float32"
store_theta = false
"""
    from gdstab import dynamics

    cfg = sweep.load_config(base + "[adaptive]\ncoarse = 3\nhalfwidth = 0.2\n")
    assert dynamics._sequential_lanes(cfg.problem_at(0), 0, 4, "cpu")
    ds = sweep.run(cfg, tmp_path / "a", quiet=True, threads=2)
    full = sweep.run(sweep.load_config(base.replace("store_theta = false", "store_theta = false\ncell_inits = 20")),
                     tmp_path / "f", quiet=True, threads=1)
    done = ds.status.values != 0
    assert done.sum() >= 30 and not done.all()
    np.testing.assert_array_equal(ds.status.values[done], full.status.values[done])
    np.testing.assert_array_equal(ds.decision_step.values[done], full.decision_step.values[done])


def test_cli_prints_the_adaptive_rounds_and_show_replays_them(tmp_path, capsys):
    from gdstab.cli import main

    path = tmp_path / "a.toml"
    path.write_text(BASE + "[adaptive]\nhalfwidth = 0.15\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "adaptive " in out and "rounds" in out and "of 1240 candidates" in out
    assert main(["show", str(tmp_path / "o"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["adaptive"]["stopped"].startswith("done")
    assert all(r["n"] > 0 for r in data["results"]) and len(data["results"]) < 31


@settings(max_examples=60, deadline=None)
@given(st.integers(2, 12), st.integers(1, 5), st.integers(2, 6), st.floats(0.05, 0.45), st.floats(0.0, 0.9),
       st.integers(0, 2**32 - 1))
def test_property_rounds_add_only_next_blocks_and_always_end(n_eta, n_blocks, coarse, half, change, seed):
    """On any status data: a round adds only cells not yet known, each the next block of a computed
    step size or the first block of a new one; the rounds end (at most every cell once)."""
    rng = np.random.default_rng(seed)
    etas = ", ".join(repr(float(e)) for e in np.sort(rng.uniform(0.1, 2.0, n_eta)))
    cfg = sweep.load_config(BASE.replace('"0.1:1.6:31"', f"[{etas}]").replace("inits = 40", f"inits = {5 * n_blocks}")
                            .replace("store_theta = false", "store_theta = false\ncell_inits = 5")
                            + f"[adaptive]\ncoarse = {coarse}\nhalfwidth = {half!r}\nchange = {change!r}\n")
    layout = Layout.for_config(cfg)
    status = rng.integers(1, 5, size=(n_eta, 5 * n_blocks)).astype(np.int8)
    known: set = set()
    cells = adaptive.first_round(cfg, layout)
    for _ in range(n_eta * n_blocks + 1):
        if not cells:
            break
        for o, e, b in cells:
            assert (o, e, b) not in known and o == 0 and 0 <= e < n_eta and 0 <= b < n_blocks
            assert b == 0 or (o, e, b - 1) in known  # blocks come in order
        known |= set(cells)
        cells = adaptive.next_round(cfg, layout, status, known)
    assert not cells  # ended
