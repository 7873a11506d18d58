"""The shipped example configs (examples/*.toml) run, at a tiny size, and every store gdstab
writes opens with a plain ``xarray.open_zarr`` without a warning."""

from __future__ import annotations

import tomllib
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from gdstab import sweep
from gdstab.results import save_dataset

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.toml"))


def test_the_four_documented_examples_are_there():
    assert {p.stem for p in EXAMPLES} >= {"toy", "linear", "mlp_gd", "mlp_sgd"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_runs_at_tiny_size(tmp_path, path):
    """Tiny: 2 step sizes, 3 initialisations, 30 steps, 20 samples and batches of 8 for networks (marked here:
    the configs themselves are sized for a real run)."""
    doc = tomllib.loads(path.read_text())
    cfg = sweep.load_config(path)  # the file as shipped parses
    assert cfg.inits >= 8 and cfg.steps >= 1000
    doc["grid"]["eta"] = [float(e) for e in cfg.eta[:2]]
    doc["grid"]["inits"] = 3
    doc["run"]["steps"] = 30
    options = doc["problem"].setdefault("options", {})
    if "samples" in options and doc["problem"]["name"] == "mlp":
        options["samples"] = 20
    if doc["run"].get("batch_size"):
        doc["run"]["batch_size"] = 8
    if "depth" in doc.get("grid", {}).get("options", {}):
        doc["grid"]["options"]["depth"] = [1]
    ds = sweep.run(sweep.load_config(doc), tmp_path / path.stem, quiet=True)
    assert (ds.status.values > 0).all()  # every trajectory computed and classified
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = xr.open_zarr(tmp_path / path.stem / "data.zarr")
        np.testing.assert_array_equal(plain.status.values, ds.status.values)


def test_plain_stores_open_without_warnings_and_replace_atomically(tmp_path):
    ds = xr.Dataset({"a": (("x",), np.arange(4.0))}, coords={"x": np.arange(4)}, attrs={"what": "test"})
    save_dataset(ds, tmp_path / "s.zarr")
    save_dataset(ds * 2, tmp_path / "s.zarr")  # replaces the store that is there
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        back = xr.open_zarr(tmp_path / "s.zarr").load()
    xr.testing.assert_identical(back, ds * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.zarr"]  # no temporary left behind
