"""The sweep layer: configs, keys, crash-safe storage and resume, executors."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdstab import problems, sweep
from gdstab.sweep import ConfigError, StoreError, StoreMismatchError, load_config

BASE = """
[problem]
name = "hyperbola"

[grid]
eta = "0.3:1.2:4"
inits = 600

[run]
steps = 400
seed = 3
cell_inits = 100
"""


def cfg_text(**replace):
    text = BASE
    for k, v in replace.items():
        text = text.replace(k, v)
    return text


# ---------------------------------------------------------------------------------- configs


def test_config_round_trip_and_digest():
    cfg = load_config(BASE)
    again = load_config(cfg.to_toml())
    assert again == cfg and again.digest() == cfg.digest()
    assert cfg.eta == tuple(np.linspace(0.3, 1.2, 4))
    other = load_config(cfg_text(**{"seed = 3": "seed = 4"}))
    assert other.digest() != cfg.digest()


def test_config_with_swept_options_and_expression():
    cfg = load_config("""
[problem]
name = "quadratic"
[grid]
eta = [0.1, 0.5]
inits = 10
[grid.options]
a = [1.0, 2.0, 4.0]
[run]
steps = 50
""")
    assert cfg.option_shape() == (3,)
    assert [p["a"] for p in cfg.option_points()] == [1.0, 2.0, 4.0]
    e = load_config("""
[problem]
expression = "0.5*(1-x*y)**2"
min_value = 0.0
[grid]
eta = "0.5"
inits = 10
[run]
steps = 50
[criteria]
tol = 1e-9
window = 4
""")
    assert e.criteria.tol == 1e-9 and e.criteria.window == 4


@pytest.mark.parametrize(
    "text, match",
    [
        (BASE + "\n[extra]\nx = 1\n", "Unknown key 'extra'"),
        (cfg_text(**{"inits = 600": "inits = 600\ncolour = 1"}), "Unknown key 'grid.colour'"),
        (cfg_text(**{"inits = 600": "inits = '600'"}), "'grid.inits' parameter of the sweep config must be an int >= 1"),
        (cfg_text(**{"inits = 600": "inits = 0"}), "'grid.inits'"),
        (cfg_text(**{"steps = 400": "steps = 4.5"}), "'run.steps' parameter of the sweep config must be an int"),
        (cfg_text(**{"seed = 3": "seed = -1"}), "'run.seed'"),
        (cfg_text(**{'eta = "0.3:1.2:4"': "eta = -1.0"}), "'grid.eta'"),
        (cfg_text(**{'eta = "0.3:1.2:4"': "eta = [0.1, 0.1]"}), "distinct"),
        (cfg_text(**{'eta = "0.3:1.2:4"': "eta = true"}), "'grid.eta'"),
        (cfg_text(**{'name = "hyperbola"': 'name = "nope"'}), "'problem.name'"),
        (cfg_text(**{'name = "hyperbola"': 'expression = "x +"'}), "invalid at position"),
        (cfg_text(**{"steps = 400": "steps = 400\ndtype = 'float16'"}), "'run.dtype'"),
        (cfg_text(**{"steps = 400": "steps = 400\nstore_theta = 1"}), "'run.store_theta' parameter of the sweep config must be a bool"),
        (BASE + "\n[criteria]\ntol = 'small'\n", "'criteria.tol'"),
        (BASE + "\n[criteria]\nwindow = 0\n", "'window' parameter"),
        (BASE + "\n[criteria]\nspeed = 1\n", "Unknown key 'criteria.speed'"),
        (BASE + "\n[grid.options]\na = [1.0]\n", "Unknown key 'grid.options.a'"),
        (cfg_text(**{"inits = 600": "inits = 600\nbox = [0.0, 1.0, 2.0]"}), "'grid.box'"),
        ("[problem\nname=1", "not valid TOML"),
        ("[grid]\neta = 1\ninits = 1\n[run]\nsteps = 1", "needs a [problem] table"),
    ],
)
def test_bad_configs_name_the_key_and_the_expected_type(text, match):
    with pytest.raises(ConfigError, match=match.replace("[", r"\[").replace("(", r"\(")):
        load_config(text)


_WRONG = st.one_of(st.text(max_size=5), st.booleans(), st.lists(st.integers(), max_size=2),
                   st.floats(allow_nan=True), st.integers(-5, 0), st.dictionaries(st.text(max_size=3), st.integers(), max_size=1))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([("grid", "inits"), ("run", "steps"), ("run", "seed"), ("run", "record_every"),
                        ("run", "store_theta"), ("grid", "eta"), ("run", "dtype"), ("criteria", "tol"),
                        ("criteria", "max_period"), ("grid", "box"), ("run", "cell_inits"),
                        ("run", "cell_etas")]), _WRONG)
def test_property_wrong_values_never_pass_silently(where, value):
    import tomllib

    data = tomllib.loads(BASE)
    data.setdefault(where[0], {})[where[1]] = value
    try:
        cfg = load_config(data)
    except ConfigError as exc:
        assert f"{where[0]}.{where[1]}" in str(exc) or where[1] in str(exc)
    else:  # a value that happens to be valid must round-trip exactly
        assert load_config(cfg.to_toml()) == cfg


# ------------------------------------------------------------------------------------- keys


def test_keys_depend_only_on_seed_and_coordinates():
    p = problems.get("hyperbola")
    a = sweep.init_points(p, 7, np.arange(20))
    b = sweep.init_points(p, 7, np.arange(5, 9))
    np.testing.assert_array_equal(a[5:9], b)
    c = sweep.init_points(p, 8, np.arange(20))
    assert not np.array_equal(a, c)
    assert np.all(np.abs(a) <= 2.0)


# ---------------------------------------------------------------------- storage and resume


def _run_uninterrupted(tmp_path, text=BASE, name="ref", **kw):
    return sweep.run(load_config(text), tmp_path / name, quiet=True, **kw)


@pytest.mark.parametrize("chunk", [1, 7])
def test_engine_chunk_size_does_not_change_the_dataset(tmp_path, chunk):
    ref = _run_uninterrupted(tmp_path, chunk_size="auto")
    other = sweep.run(load_config(BASE), tmp_path / f"c{chunk}", quiet=True, chunk_size=chunk)
    xr.testing.assert_identical(ref, other)


def test_cell_size_does_not_change_the_values(tmp_path):
    ref = _run_uninterrupted(tmp_path)
    other = sweep.run(load_config(cfg_text(**{"cell_inits = 100": "cell_inits = 0"})), tmp_path / "auto", quiet=True)
    for v in ref.data_vars:
        np.testing.assert_array_equal(ref[v].values, other[v].values)


@pytest.mark.parametrize("cell_etas", [1, 3, 0])
def test_step_sizes_per_cell_do_not_change_the_values(tmp_path, cell_etas):
    """Cells spanning several step sizes (one engine call on the tiled block) store exactly
    what one-step-size cells store."""
    ref = _run_uninterrupted(tmp_path, cfg_text(**{"cell_inits = 100": "cell_inits = 100\ncell_etas = 1"}))
    text = cfg_text(**{"cell_inits = 100": f"cell_inits = 0\ncell_etas = {cell_etas}"})
    layout = sweep.Layout.for_config(load_config(text))
    assert layout.cell_etas == (cell_etas or 4)  # auto: all 4 step sizes of this small grid in one cell
    other = sweep.run(load_config(text), tmp_path / f"e{cell_etas}", quiet=True)
    assert other.attrs["cell_etas"] == layout.cell_etas
    for v in ref.data_vars:
        np.testing.assert_array_equal(ref[v].values, other[v].values)


def test_results_read_directly_equal_zarrs_reading(tmp_path):
    """open_results reads raw chunk files itself; xarray's own Zarr reader must see the same
    Dataset, including edge chunks (600 = 4 x 128 + 88 initialisations) and cells not computed."""
    import zarr

    text = cfg_text(**{"cell_inits = 100": "cell_inits = 128\ncell_etas = 3\nrecord_every = 100"})
    out = tmp_path / "partial"
    ds = sweep.run(load_config(text), out, quiet=True, max_cells=7)
    assert (ds.status.values == 0).any() and (ds.status.values > 0).any()
    ref = xr.open_zarr(str(out / "data.zarr"), consolidated=False).load()
    xr.testing.assert_identical(ds, ref)
    for v in ds.variables:
        assert ds[v].dtype == ref[v].dtype, v
    g = zarr.open_group(str(out / "data.zarr"), mode="r")
    np.testing.assert_array_equal(g["final_theta"][...], ds.final_theta.values)
    # a damaged chunk file is named, not read as garbage
    chunk = next((out / "data.zarr" / "final_loss").rglob("c/*/*"))
    chunk.write_bytes(chunk.read_bytes()[:-8])
    with pytest.raises(sweep.StoreError, match="chunk"):
        sweep.open_results(out)


def test_dataset_contents_and_provenance(tmp_path):
    ds = _run_uninterrupted(tmp_path)
    assert dict(ds.sizes) == {"eta": 4, "init": 600, "coord": 2}
    assert set(ds.data_vars) >= {"status", "decision_step", "period", "final_loss", "final_grad_norm", "final_theta", "init_theta"}
    assert (ds.status.values > 0).all()
    for k in ("gdstab_version", "jax_version", "device", "seed", "gdstab_config", "config_toml"):
        assert k in ds.attrs
    # matches the engine called directly on the same initial points
    from gdstab import trajectories

    p = problems.get("hyperbola")
    th0 = ds.init_theta.values
    r = trajectories(p, th0, float(ds.eta[2]), steps=400)
    np.testing.assert_array_equal(ds.status.values[2], r.status)
    np.testing.assert_array_equal(ds.decision_step.values[2], r.step)
    s = sweep.summary(ds)
    assert len(s) == 4 and all(row["n"] == 600 for row in s)
    assert (tmp_path / "ref" / "runs.jsonl").exists() and (tmp_path / "ref" / "config.toml").exists()


def test_max_cells_then_resume_gives_the_identical_dataset(tmp_path):
    ref = _run_uninterrupted(tmp_path)
    out = tmp_path / "parts"
    for _ in range(4):  # 20 of the 24 cells
        sweep.run(load_config(BASE), out, quiet=True, max_cells=5)
    part = sweep.open_results(out)
    assert (part.status.values == 0).any()  # not finished yet: 0 = not computed
    final = sweep.run(load_config(BASE), out, quiet=True)
    xr.testing.assert_identical(ref, final)


def _marker_count(out):
    d = Path(out) / "cells"
    return len(list(d.glob("*.json"))) if d.exists() else 0


SLOW = """
[problem]
name = "zhu"

[grid]
eta = "0.05:0.45:8"
inits = 2000

[run]
steps = 3000
seed = 11
cell_inits = 50
backend = "jax"
"""


@pytest.mark.slow
def test_sigkill_at_several_points_then_resume_is_identical(tmp_path):
    cfg_path = tmp_path / "slow.toml"
    cfg_path.write_text(SLOW)
    total = sweep.Layout.for_config(load_config(SLOW)).n_cells
    ref = sweep.run(load_config(SLOW), tmp_path / "ref", quiet=True)
    out = tmp_path / "killed"
    gd = Path(sys.executable).parent / "gdstab"
    kills = 0
    for target in (0.15, 0.45, 0.75):
        proc = subprocess.Popen([str(gd), "sweep", str(cfg_path), "--out", str(out), "--quiet"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 240
        while proc.poll() is None and _marker_count(out) < target * total and time.time() < deadline:
            time.sleep(0.005)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills >= 2, "the sweep finished before it could be killed; make it longer"
    assert _marker_count(out) < total
    final = sweep.run(load_config(SLOW), out, quiet=True)
    xr.testing.assert_identical(ref, final)


def test_corrupted_and_partial_cells_are_detected_and_recomputed(tmp_path):
    ref = _run_uninterrupted(tmp_path)
    out = tmp_path / "bad"
    _run_uninterrupted(tmp_path, name="bad")
    # corrupt the data chunk of one finished cell, truncate the marker of another
    chunk = next((out / "data.zarr" / "final_loss" / "c").rglob("*"))
    while chunk.is_dir():
        chunk = next(chunk.iterdir())
    chunk.write_bytes(b"\x00garbage" * 10)
    markers = sorted((out / "cells").glob("*.json"))
    markers[3].write_text('{"cell": [0, 0,')
    ds = sweep.run(load_config(BASE), out, quiet=True)
    xr.testing.assert_identical(ref, ds)


def test_another_config_is_refused_with_how_to_start_fresh(tmp_path):
    _run_uninterrupted(tmp_path)
    with pytest.raises(StoreMismatchError, match="run.steps.*start fresh.*--overwrite"):
        sweep.run(load_config(cfg_text(**{"steps = 400": "steps = 401"})), tmp_path / "ref", quiet=True)
    ds = sweep.run(load_config(cfg_text(**{"steps = 400": "steps = 401"})), tmp_path / "ref", quiet=True, overwrite=True)
    assert json.loads(ds.attrs["gdstab_config"])["run"]["steps"] == 401


def test_resume_flag_and_foreign_folders(tmp_path):
    with pytest.raises(StoreError, match="no sweep to continue"):
        sweep.run(load_config(BASE), tmp_path / "none", quiet=True, resume=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(StoreError, match="entries that gdstab did not write .'notes.txt'."):
        sweep.run(load_config(BASE), foreign, quiet=True)
    assert sorted(os.listdir(foreign)) == ["notes.txt"]  # nothing written into it
    with pytest.raises(StoreError, match="does not exist"):
        sweep.open_results(tmp_path / "nowhere")
    with pytest.raises(StoreError, match="missing or incomplete"):
        sweep.open_results(foreign)


# ------------------------------------------------------------------------------------ dask


@pytest.mark.slow
def test_dask_local_cluster_matches_local_and_survives_a_killed_worker(tmp_path):
    from distributed import Client, LocalCluster

    ref = _run_uninterrupted(tmp_path)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      host="127.0.0.1") as cluster, Client(cluster) as client:
        assert cluster.scheduler_address.startswith("tcp://127.0.0.1:")
        ds = sweep.run(load_config(BASE), tmp_path / "dask", executor="dask",
                       scheduler=cluster.scheduler_address, quiet=True)
        xr.testing.assert_identical(ref, ds)

        pids = client.run(os.getpid)
        victim = sorted(pids.values())[0]
        killed = []

        def kill_once(cell, done, total):
            if done == 4 and not killed:
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        ds2 = sweep.run(load_config(BASE), tmp_path / "dask_kill", executor="dask",
                        scheduler=cluster.scheduler_address, quiet=True, on_cell=kill_once)
        assert killed
        xr.testing.assert_identical(ref, ds2)
        assert _marker_count(tmp_path / "dask_kill") == sweep.Layout.for_config(load_config(BASE)).n_cells


def test_dask_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="exactly one of 'scheduler'"):
        sweep.run(load_config(BASE), tmp_path / "x", executor="dask")
    with pytest.raises(ValueError, match="go with executor='dask'"):
        sweep.run(load_config(BASE), tmp_path / "x", dask_local=2)


# ------------------------------------------------------------------------------------- CLI


def test_cli_sweep_and_show(tmp_path, capsys):
    from gdstab.cli import main

    cfg = tmp_path / "s.toml"
    cfg.write_text(BASE)
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "converged" in out and "24 of 24 cells" in out
    assert main(["show", str(tmp_path / "o"), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["cells_done"] == 24 and len(data["results"]) == 4
    cfg2 = tmp_path / "s2.toml"
    cfg2.write_text(cfg_text(**{"seed = 3": "seed = 5"}))
    assert main(["sweep", str(cfg2), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "start fresh" in capsys.readouterr().err
    assert main(["show", str(tmp_path / "missing")]) == 2


def test_bad_scheduler_addresses(tmp_path):
    with pytest.raises(ValueError, match="'scheduler' parameter .* tcp://host:8786"):
        sweep.run(load_config(BASE), tmp_path / "x", executor="dask", scheduler="localhost")
    with pytest.raises(ValueError, match="Cannot connect to the Dask scheduler"):
        sweep.run(load_config(BASE), tmp_path / "y", executor="dask", scheduler="tcp://127.0.0.1:9")


@pytest.mark.parametrize("extra", ["", "record_every = 100\n", "store_theta = false\n"])
def test_returned_dataset_equals_the_stored_one(tmp_path, extra):
    """A sweep computed whole returns the arrays it stored without reading them back: that
    Dataset must be identical to the one read from the folder."""
    text = BASE.replace("[grid]", "[grid.options]\na = [1.0, 2.0]\n[grid]").replace('name = "hyperbola"', 'name = "quadratic"')
    text = text.replace("cell_inits = 100\n", "cell_inits = 128\ncell_etas = 3\n" + extra)
    ds = sweep.run(load_config(text), tmp_path / "m", quiet=True)
    xr.testing.assert_identical(ds, sweep.open_results(tmp_path / "m"))
    for v in ds.variables:
        assert ds[v].dtype == sweep.open_results(tmp_path / "m")[v].dtype
    # CF-style metadata (#17): every data variable and the eta coordinate say what they are;
    # status carries flag_values / flag_meanings that decode it
    reread = sweep.open_results(tmp_path / "m")
    assert all(reread[v].attrs.get("long_name") for v in reread.data_vars)
    assert reread.eta.attrs["units"] == "1" and "step size" in reread.eta.attrs["long_name"]
    flags = dict(zip(reread.status.attrs["flag_meanings"].split(), reread.status.attrs["flag_values"]))
    from gdstab.outcomes import Status

    assert flags["converged"] == int(Status.CONVERGED) and flags["diverged"] == int(Status.DIVERGED)
    assert set(np.unique(reread.status.values)) <= set(flags.values())


def test_store_metadata_is_what_xarray_writes(tmp_path):
    """gdstab writes the Zarr metadata documents itself; they must equal those xarray (through
    zarr-python) writes for the same Dataset, chunks and codecs."""
    text = BASE.replace("cell_inits = 100\n", "cell_inits = 128\ncell_etas = 3\nrecord_every = 100\n")
    ds = sweep.run(load_config(text), tmp_path / "g", quiet=True)
    layout = sweep.Layout.for_config(load_config(text))
    chunks = {"eta": layout.cell_etas, "init": layout.cell_inits, "coord": layout.dim, "record": layout.n_records}
    enc = {}
    for name in ds.variables:
        enc[name] = {"compressors": None, "chunks": tuple(chunks[d] if name in ds.data_vars else ds.sizes[d]
                                                          for d in ds[name].dims)}
        if ds[name].dtype.kind in "iu":
            enc[name]["_FillValue"] = None
    ds.to_zarr(str(tmp_path / "x.zarr"), encoding=enc, consolidated=False)
    keys = ("shape", "data_type", "chunk_grid", "chunk_key_encoding", "fill_value", "codecs", "attributes",
            "dimension_names", "zarr_format", "node_type", "storage_transformers")
    for name in ds.variables:
        mine = json.loads((tmp_path / "g" / "data.zarr" / name / "zarr.json").read_text())
        theirs = json.loads((tmp_path / "x.zarr" / name / "zarr.json").read_text())
        assert {k: mine.get(k) for k in keys} == {k: theirs.get(k) for k in keys}, name
    group = json.loads((tmp_path / "g" / "data.zarr" / "zarr.json").read_text())
    assert group["attributes"] == json.loads((tmp_path / "x.zarr" / "zarr.json").read_text())["attributes"]


def test_large_sweeps_are_read_back_with_the_same_result(tmp_path, monkeypatch):
    import importlib

    run_module = importlib.import_module("gdstab.sweep.driver")
    a = _run_uninterrupted(tmp_path, name="mem")
    monkeypatch.setattr(run_module, "_KEEP_IN_MEMORY", 0)
    b = _run_uninterrupted(tmp_path, name="disk")
    xr.testing.assert_identical(a, b)
    assert sweep.Layout.for_config(load_config(BASE)).total_bytes() == sum(v.nbytes for v in a.data_vars.values())


@pytest.mark.slow
def test_a_dask_cluster_without_workers_is_reported_and_the_sweep_continues_when_one_joins(tmp_path, monkeypatch):
    """Issue #16 item 11: with every worker gone the driver waited silently."""
    import importlib
    import threading

    from distributed import LocalCluster

    import sys

    monkeypatch.setattr(importlib.import_module("gdstab.sweep.executors"), "DASK_QUIET_SECONDS", 1.0)
    messages = []
    monkeypatch.setattr(sys, "stderr", type("E", (), {"write": lambda self, t: messages.append(t),
                                                               "flush": lambda self: None,
                                                               "isatty": lambda self: False})())
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as cluster:
        def add_worker_later():
            time.sleep(4)
            cluster.scale(1)

        threading.Thread(target=add_worker_later, daemon=True).start()
        ds = sweep.run(load_config(BASE), tmp_path / "w", executor="dask", scheduler=cluster.scheduler_address)
    assert any("has no workers" in m and cluster.scheduler_address in m for m in messages), messages
    xr.testing.assert_identical(ds, sweep.run(load_config(BASE), tmp_path / "local", quiet=True))


# ------------------------------------------------------------ typed config and executors (#14)


def test_workers_receive_the_typed_config_and_never_parse_text(tmp_path, monkeypatch):
    """The config object pickles (Dask ships it to workers) with the same hash and equality; a
    sweep given the object runs with the parser disabled, so no worker re-parses text."""
    import pickle

    from gdstab.sweep import config as config_module

    cfg = load_config(BASE)
    again = pickle.loads(pickle.dumps(cfg))
    assert again == cfg and hash(again) == hash(cfg) and again.digest() == cfg.digest()
    ref = _run_uninterrupted(tmp_path)

    def no_parsing(*a, **kw):
        raise AssertionError("a sweep given a SweepConfig parsed a config")

    monkeypatch.setattr(config_module, "_parse", no_parsing)
    monkeypatch.setattr(config_module, "load_config", no_parsing)
    ds = sweep.run(cfg, tmp_path / "typed", quiet=True)
    xr.testing.assert_identical(ref, ds)
    cell = sweep.compute_cell(cfg, (0, 0, 0))
    status = cell["arrays"]["status"]  # the step sizes of block 0 x the first 100 initialisations
    np.testing.assert_array_equal(status, ref.status.values[: status.shape[0], :100])


def test_a_sweep_builds_each_problem_once_per_process(tmp_path, monkeypatch):
    from gdstab.sweep import config as config_module

    built = []
    real = config_module.ProblemSpec.build
    monkeypatch.setattr(config_module.ProblemSpec, "build", lambda self, swept=None: built.append(swept) or real(self, swept))
    text = cfg_text(**{'name = "hyperbola"': 'name = "quadratic"'}) + "\n"
    text = text.replace("inits = 600", "inits = 600\noptions = { a = [1.0, 3.0] }")
    sweep.run(text, tmp_path / "q", quiet=True)
    assert sorted(b["a"] for b in built) == [1.0, 3.0]


class _Backwards(sweep.Executor):
    """A third executor, as a contributor would add one: the cells in reverse order, in-process."""

    name = "backwards"

    def __init__(self):
        self.started = self.closed = False

    def start(self, say):
        self.started = True

    def results(self, cfg, cells, chunk_size):
        for cell in reversed(cells):
            yield sweep.compute_cell(cfg, cell, 1, chunk_size)

    def close(self, quiet=False):
        self.closed = True


def test_a_new_executor_is_one_class(tmp_path, monkeypatch):
    """An Executor subclass runs a sweep, given as an instance or registered by name, with the
    same Dataset as the local executor (the driver stores cells in whatever order they come)."""
    from gdstab.sweep import executors

    ref = _run_uninterrupted(tmp_path)
    ex = _Backwards()
    xr.testing.assert_identical(ref, sweep.run(load_config(BASE), tmp_path / "b1", executor=ex, quiet=True))
    assert ex.started and ex.closed
    monkeypatch.setitem(executors.EXECUTORS, "backwards", _Backwards)
    xr.testing.assert_identical(ref, sweep.run(load_config(BASE), tmp_path / "b2", executor="backwards", quiet=True))
    with pytest.raises(ValueError, match="'executor' parameter of gdstab.sweep.run must be one of"):
        sweep.run(load_config(BASE), tmp_path / "b3", executor="nowhere", quiet=True)


def test_cli_dask_flags_imply_the_dask_executor(monkeypatch, tmp_path):
    """`--dask-local N` or `--scheduler ADDR` alone run on Dask (they used to need --executor dask)."""
    from gdstab import sweep as sweep_pkg
    from gdstab.cli import main

    seen = []

    def fake_run(config, out, **kw):
        seen.append(kw["executor"])
        raise sweep_pkg.ConfigError("stop here")

    monkeypatch.setattr(sweep_pkg, "run", fake_run)
    for extra, expect in ((["--dask-local", "2"], "dask"), (["--scheduler", "tcp://h:1"], "dask"), ([], "local"),
                          (["--executor", "local"], "local")):
        assert main(["sweep", "cfg.toml", "--out", str(tmp_path / "x"), *extra]) == 2
        assert seen[-1] == expect


def test_dask_is_an_optional_extra_with_a_clear_message(monkeypatch, tmp_path):
    """dask[distributed] is the extra gdstab[dask] (and in the test extra), not a core
    dependency; without it --executor dask stops with one line, before any folder is made."""
    import importlib.util
    import tomllib
    from pathlib import Path

    from gdstab.cli import main

    meta = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]
    assert not any(d.startswith("dask") for d in meta["dependencies"])
    assert any(d.startswith("dask[distributed]") for d in meta["optional-dependencies"]["dask"])
    assert any(d.startswith("dask[distributed]") for d in meta["optional-dependencies"]["test"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "distributed" else real(name, *a))
    cfg = tmp_path / "c.toml"
    cfg.write_text('[problem]\nname = "hyperbola"\n[grid]\neta = 0.5\ninits = 4\n[run]\nsteps = 10\n')
    assert main(["sweep", str(cfg), "--out", str(tmp_path / "out"), "--dask-local", "1"]) == 2
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------- projection


def test_projection_counts_the_work_and_scales_the_calibrated_step_cost(tmp_path):
    """The projection: parameter-steps = trajectories x T x d (24 cells of 100 trajectories of
    a 2-D problem, T = 400), and per option point seconds = (cost of one calibrated step of a
    cell) / (trajectories in the cell) x (trajectories of the option) x T."""
    from gdstab.sweep.projection import PROJECT_ABOVE, project, work
    from gdstab.sweep.store import Layout

    cfg = load_config(BASE)
    layout = Layout.for_config(cfg)
    cells = list(layout.cells())
    assert work(cfg, layout, cells) == 600 * 4 * 400 * 2 < PROJECT_ABOVE
    p = project(cfg, cells)
    (row,) = p.per_option
    assert row["trajectories"] == 2400 and row["cells"] == len(cells) and p.steps == 400
    n_cell = 2400 // len(cells)
    assert row["seconds"] == pytest.approx(row["seconds_per_step"] / n_cell * 2400 * 400)
    assert p.seconds == pytest.approx(row["seconds"]) and p.calibration_seconds > 0
    assert "projected time" in p.text() and "T = 400" in p.text()


def test_sweeps_print_the_projection_when_asked_or_large_and_estimate_writes_nothing(tmp_path, capsys):
    from gdstab.cli import main

    sweep.run(BASE, tmp_path / "a", project=True)
    assert "projected time" in capsys.readouterr().err
    sweep.run(BASE, tmp_path / "b")  # small: no calibration
    assert "projected time" not in capsys.readouterr().err
    sweep.run(BASE, tmp_path / "c", project=True, quiet=True)
    assert "projected time" not in capsys.readouterr().err
    cfg = tmp_path / "s.toml"
    cfg.write_text(BASE)
    assert main(["sweep", str(cfg), "--estimate", "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["projected_seconds"] > 0 and s["steps"] == 400 and len(s["per_option"]) == 1
    assert sorted(os.listdir(tmp_path)) == ["a", "b", "c", "s.toml"]
    assert main(["sweep", str(cfg)]) == 2
    assert "--out" in capsys.readouterr().err


def test_projection_uses_the_fastest_calibration_runs_and_keeps_each_pairs_estimate(monkeypatch):
    """On a shared machine other work only adds time: the step cost comes from the fastest short
    and the fastest long run (a fake clock: every run costs 1 + steps/16 s, plus 0.5 s of
    'another tenant' in the first short run and 0.7 s in the second long run)."""
    import gdstab.dynamics
    from gdstab.sweep import projection

    now = [0.0]
    extra = iter([3.0, 0.5, 0.0, 0.0, 0.7])  # compile, short, long, short, long
    calls = []

    def fake_trajectories(problem, theta0, eta, *, steps, **kw):
        calls.append(steps)
        now[0] += 1.0 + steps / 16 + next(extra)

    monkeypatch.setattr(gdstab.dynamics, "trajectories", fake_trajectories)
    monkeypatch.setattr(projection.time, "perf_counter", lambda: now[0])
    cfg = load_config(BASE)
    p = projection.project(cfg)
    (row,) = p.per_option
    assert calls == [8, 8, 24, 8, 24] and projection.CAL_REPEATS == 2
    assert row["seconds_per_step"] == pytest.approx(1 / 16)  # (2.5 - 1.5) / 16: the noise left out
    assert row["seconds_per_step_pairs"] == pytest.approx([(2.5 - 2.0) / 16, (3.2 - 1.5) / 16])
    assert p.spread() == pytest.approx(1.7 / 0.5)  # the evidence: the pairs disagree 3.4-fold
    assert "differed by up to 3.40x" in p.text()
