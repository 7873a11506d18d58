"""gdstab reproduce fig1 fig2 end to end, and the stability command."""

import json
import math

import numpy as np
import pytest

from gdstab.cli import main


def _numbers(obj):
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield obj


@pytest.mark.slow
def test_reproduce_fig1_fig2_end_to_end(tmp_path, capsys):
    out = tmp_path / "rep"
    assert main(["reproduce", "fig1", "fig2", "--out", str(out), "--quiet"]) == 0
    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert figs == [f"fig{i}.{e}" for i in (1, 2) for e in ("pdf", "png", "svg")]
    assert all((out / "figures" / f).stat().st_size > 1000 for f in figs)
    summary = json.loads((out / "summary.json").read_text())
    nums = list(_numbers(summary["key_numbers"]))
    assert nums and all(math.isfinite(v) for v in nums)
    k = summary["key_numbers"]
    assert k["eta_E"]["value"] == pytest.approx(1.0, rel=1e-9)
    assert k["eta_star"]["value"] == pytest.approx(1.0, rel=1e-9)
    for key in ("mws_length_eta_0.1_per_branch", "mws_length_eta_0.1_both_branches", "trapping_fraction"):
        assert "definition" in k[key]
    tf = k["trapping_fraction"]["value"]
    assert tf["0.1"]["fraction"] > 0.99 and tf["1"]["fraction"] == 0.0  # nothing converges at eta_E = 1
    # data behind the figures
    import xarray as xr

    d2 = xr.open_zarr(out / "data" / "fig2.zarr", consolidated=False).load()
    assert d2.ws_length_normalised.values[0] == pytest.approx(1.0)
    assert np.all(np.diff(d2.ws_length_normalised.values) <= 1e-12)  # M_WS shrinks as eta grows
    assert (out / "data" / "fig2.csv").read_text().startswith("eta,")
    # rerun: the trapping sweep is resumed (nothing recomputed), same numbers
    assert main(["reproduce", "fig2", "--out", str(out), "--quiet"]) == 0
    again = json.loads((out / "summary.json").read_text())["key_numbers"]["trapping_fraction"]
    assert again == k["trapping_fraction"]


def test_reproduce_refuses_unknown_and_unimplemented_targets(tmp_path, capsys):
    assert main(["reproduce", "fig9", "--out", str(tmp_path / "x")]) == 2
    assert "must be among" in capsys.readouterr().err
    assert main(["reproduce", "fig3", "--out", str(tmp_path / "x")]) == 2
    assert "not implemented yet" in capsys.readouterr().err


def test_stability_cli(capsys):
    assert main(["stability", "--problem", "hyperbola", "--eta", "0.1,0.5", "--point", "1,1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["critical"]["eta_E"] == pytest.approx(1.0, rel=1e-9)
    rows = d["per_eta"]
    assert rows[0]["mws_length"]["total"] == pytest.approx(2 * rows[0]["mws_length"]["per_branch"][0])
    assert rows[1]["point"]["linearly_stable"] and rows[1]["point"]["weakly_stable"]
    assert main(["stability", "--problem", "hyperbola", "--eta", "0.5", "--point", "1,2"]) == 2
    assert "must be a minimum" in capsys.readouterr().err
    assert main(["stability", "--problem", "hyperbola", "--eta", "0,1"]) == 2
    assert "'--eta'" in capsys.readouterr().err
    assert main(["stability", "--loss", "x**2 + y**2", "--eta", "0.5", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["critical"] is None
