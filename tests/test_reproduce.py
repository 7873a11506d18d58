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


def test_reproduce_refuses_unknown_targets(tmp_path, capsys):
    assert main(["reproduce", "fig9", "--out", str(tmp_path / "x")]) == 2
    assert "must be among" in capsys.readouterr().err


@pytest.fixture
def tiny_nets(monkeypatch):
    """Figures 3-6 with tiny networks (the code path of the small scale, in seconds)."""
    from gdstab.experiments import paper_nets

    tiny = {
        "gd": paper_nets.NetRun("gelu", "mse", samples=4, depths=(1, 2), etas=(0.05, 50.0), inits=2, steps=40,
                                record_every=10, batch_size=0, tol=1e-4, f_tol=1e-2, width=3),
        "sgd": paper_nets.NetRun("relu", "cross_entropy", samples=6, depths=(1, 2), etas=(0.05, 1e3), inits=2,
                                 steps=30, record_every=10, batch_size=4, tol=1e-3, f_tol=5e-2, width=3),
    }
    monkeypatch.setitem(paper_nets.NET_RUNS, "small", tiny)
    return tiny


def test_reproduce_network_figures_and_report(tmp_path, tiny_nets, capsys):
    out = tmp_path / "nets"
    assert main(["reproduce", "fig3", "fig4", "fig5", "fig6", "--out", str(out), "--quiet"]) == 0
    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert figs == [f"fig{i}.{e}" for i in (3, 4, 5, 6) for e in ("pdf", "png", "svg")]
    summary = json.loads((out / "summary.json").read_text())
    k = summary["key_numbers"]
    for name in ("fig3_largest_converging_eta", "fig4_largest_converging_eta"):
        assert set(k[name]["value"]) >= {"1", "2"} and "definition" in k[name]
    # eta = 50 blows every GD network up; at eta = 1000 no SGD network converges (they diverge or
    # their ReLUs die: stationary at log 2)
    assert k["fig3_largest_converging_eta"]["value"]["1"]["smallest_eta_all_diverged"] == 50.0
    assert all(k["fig4_largest_converging_eta"]["value"][d]["largest_eta_converged"] in (None, 0.05) for d in ("1", "2"))
    fig5 = k["fig5_divergence_at_depth_2"]
    assert fig5["target"] == "fig5" and fig5["value"]["smallest_eta_all_diverged"] == 50.0

    from gdstab.sweep import open_results

    ds = open_results(out / "data" / "nets_gd")
    assert ds["loss_t"].dims == ("depth", "eta", "init", "record") and ds.sizes["record"] == 5
    table = (out / "data" / "fig3.csv").read_text()
    assert table.startswith("depth,eta,") and "converged_fraction" in table
    html = (out / "report.html").read_text()
    assert html.count("<img") == 4 and "fig3_largest_converging_eta" in html
    # each key number in the section of its figure: fig3's run also yields fig5's numbers
    assert summary["key_number_targets"]["fig5_divergence_at_depth_2"] == "fig5"
    fig5 = html.split("id='fig5'")[1].split("</section>")[0]
    assert "fig5_divergence_at_depth_2" in fig5 and "fig3_largest_converging_eta" not in fig5
    # rerun: nothing is recomputed (the sweeps are complete), the same numbers
    before = (out / "data" / "nets_sgd" / "runs.jsonl").read_text()
    assert main(["reproduce", "fig4", "fig6", "--out", str(out), "--quiet"]) == 0
    assert (out / "data" / "nets_sgd" / "runs.jsonl").read_text() == before
    assert json.loads((out / "summary.json").read_text())["key_numbers"] == k


def test_report_command_and_damaged_folders(tmp_path, tiny_nets, capsys):
    import shutil

    out = tmp_path / "r"
    assert main(["reproduce", "fig3", "--out", str(out), "--quiet"]) == 0
    (out / "report.html").unlink()
    (out / "figures" / "fig3.png").unlink()
    assert main(["report", str(out)]) == 0  # the figure is redrawn from the stored sweep
    assert (out / "report.html").stat().st_size > 1000 and (out / "figures" / "fig3.png").exists()
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "summary.json" in capsys.readouterr().err
    shutil.rmtree(out / "data" / "nets_gd")
    assert main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert "nets_gd" in err and "is missing" in err and "gdstab reproduce fig3" in err
    (out / "summary.json").write_text("{not json")
    assert main(["report", str(out)]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_reproduce_linear_and_nonsingular(tmp_path, monkeypatch):
    from gdstab.experiments import paper_linear

    monkeypatch.setitem(paper_linear.NONSINGULAR, "small", (4000, (1e-1, 1e-2, 1e-3)))
    monkeypatch.setitem(paper_linear.LINEAR_CHECK, "small", ((2, 3, 2), (0.5, 0.9, 1.1, 1.5), 100, 2000))
    out = tmp_path / "lin"
    assert main(["reproduce", "linear", "nonsingular", "--out", str(out), "--quiet"]) == 0
    k = json.loads((out / "summary.json").read_text())["key_numbers"]
    # closed forms (sum of squares, no 1/2): scalar networks 2N, whitened data 2 s N sigma_1^(2 - 2/N)
    assert k["linear_inf_lambda_max_1x1x1"]["value"] == pytest.approx(4.0, rel=1e-9)
    assert k["linear_inf_lambda_max_1x1x1x1"]["value"] == pytest.approx(6.0, rel=1e-9)
    for dims in ("2x3x2", "3x3x3", "2x2x2x2"):
        e = k[f"linear_inf_lambda_max_{dims}"]
        assert e["value"] == pytest.approx(e["closed_form"], rel=1e-8)
    assert k["linear_trapping_above_eta_star"]["value"] == 0.0
    assert 0.5 < k["nonsingular_slope_linear"]["value"] < 1.5
    rows = (out / "data" / "linear_table.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("case,dims")


def test_reproduce_beyond_the_paper(tmp_path):
    """orbit, eos and basin targets: key numbers against their closed forms, figures in the
    report, and a rerun that recomputes nothing."""
    import math

    from gdstab.reproduce import reproduce

    out = tmp_path / "beyond"
    s = reproduce(["orbit", "eos_toy", "basin"], out, quiet=True)
    k = s["key_numbers"]
    assert abs(k["first_period_doubling"]["value"] - (math.sqrt(5) - 1)) <= 1e-3
    assert k["lyapunov_eta_1_5"]["value"] > 10 * k["lyapunov_eta_1_5"]["stderr"] > 0
    e = k["eos_final_sharpness"]
    assert 19.0 < e["value"] < 20.0 < e["max_along_run"] and e["gradient_flow_sharpness"] > 30
    assert e["plateau"]["settled"] and abs(e["plateau"]["value"] - e["value"]) <= 1e-3 * e["value"]
    lo, hi = k["critical_step_size_hyperbola"]["interval"]
    assert lo <= 1.0 <= hi
    html = (out / "report.html").read_text()
    assert all(f"id='{t}'" in html for t in ("orbit", "eos_toy", "basin"))
    for stem in ("orbit_diagram", "edge_of_stability", "basin_map"):
        assert (out / "figures" / f"{stem}.svg").stat().st_size > 0
    walls = {t: s["experiments"][t]["wall_time_s"] for t in ("orbit", "eos_toy", "basin")}
    again = reproduce(["orbit", "eos_toy", "basin"], out, quiet=True)
    assert {t: again["experiments"][t]["wall_time_s"] for t in walls} == walls  # nothing recomputed


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
    # no description of M: estimated from minima found (issue #16 item 10); the Hessian is 2I
    crit = json.loads(capsys.readouterr().out)["critical"]
    assert crit["estimate"] and crit["eta_star"] == pytest.approx(1.0) and crit["eta_E"] == pytest.approx(1.0)


def test_reproduce_optimizer_targets(tmp_path, monkeypatch):
    """momentum and adaptive_eos (issue #15) at a reduced size: the momentum key numbers against
    eta* = c / inf_M lambda_max computed here (heavy ball 1 + beta, Nesterov (1 + beta)/(1 + 2 beta)),
    no convergence above it; adaptive_eos reaches the adaptive threshold 38/eta; both in the report."""
    from gdstab.experiments import optimizer_dynamics as od
    from gdstab.reproduce import reproduce

    monkeypatch.setitem(od.MOMENTUM, "small", od._Momentum((0.6, 0.9, 1.1, 1.45, 1.55, 1.95), 64, 4000))
    monkeypatch.setitem(od.ADAPTIVE_EOS, "small", od._AdaptiveEos((1e-2,), 100, 1200, 40))
    out = tmp_path / "opt"
    s = reproduce(["momentum", "adaptive_eos"], out, quiet=True)
    k = s["key_numbers"]
    for beta in (0.0, 0.5, 0.9):
        hb = k["momentum_critical_step_size"]["value"][f"beta={beta:g}"]
        ne = k["nesterov_critical_step_size"]["value"][f"beta={beta:g}"]
        assert hb["eta_star"] == pytest.approx(1 + beta) and ne["eta_star"] == pytest.approx((1 + beta) / (1 + 2 * beta))
        assert hb["converged_above_eta_star"] == 0 and ne["converged_above_eta_star"] == 0
        assert hb["consistent"] and ne["consistent"]
    assert k["momentum_critical_step_size"]["value"]["beta=0.5"]["largest_eta_with_convergence"] == 1.45
    a = k["adaptive_eos_plateau_ratio"]["value"]["eta=0.01"]
    assert a["reached"] and 0.9 <= a["max_ratio"] < 1.5 and a["window"][1] == 1200
    html = (out / "report.html").read_text()
    assert "id='momentum'" in html and "id='adaptive_eos'" in html
    for stem in ("momentum", "adaptive_eos"):
        assert (out / "figures" / f"{stem}.png").stat().st_size > 0
