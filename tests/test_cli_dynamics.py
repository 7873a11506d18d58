"""gdstab orbit | lyapunov | basin | sharpness | critical-lr (issue #8)."""

import json
import math

import pytest

from gdstab.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_orbit_json_reports_periods_and_the_first_period_doubling(capsys, tmp_path):
    code, out, err = run(capsys, "orbit", "--problem", "hyperbola", "--eta", "1.0:1.6:600", "--init", "1.2,0.9",
                         "--init", "-1.3,-0.8", "--json", "--out", str(tmp_path / "o"))
    assert code == 0, err
    data = json.loads(out)
    assert len(data["per_eta"]) == 600
    row = next(r for r in data["per_eta"] if r["eta"] > 1.1)
    assert row["period"] == 2 and row["periods"] == [2, 2]
    first = next(b for b in data["bifurcations"] if b["eta"] > 1.0 + 1e-9)
    assert (first["period_before"], first["period_after"]) == (2, 4)
    assert abs(first["eta"] - (math.sqrt(5) - 1)) <= 1e-3
    for suffix in ("png", "pdf", "svg", "json"):
        assert (tmp_path / "o" / f"orbit.{suffix}").stat().st_size > 0
    assert (tmp_path / "o" / "orbit.zarr").is_dir()


def test_orbit_text_and_lyapunov(capsys):
    code, out, err = run(capsys, "orbit", "--problem", "hyperbola", "--eta", "1.2,1.5", "--init", "1.2,0.9",
                         "--transient", "3000", "--record", "128", "--max-period", "16", "--lyapunov", "--lyapunov-steps", "4000")
    assert code == 0, err
    assert "period 2" in out and "bifurcation points" in out
    code, out, err = run(capsys, "lyapunov", "--problem", "hyperbola", "--eta", "1.2,1.5", "--init", "1.2,0.9",
                         "--all", "--steps", "20000", "--json")
    assert code == 0, err
    res = json.loads(out)["results"]
    assert res[0]["exponents"][0] < 0 < res[1]["exponents"][0]


def test_basin_json_and_figure(capsys, tmp_path):
    code, out, err = run(capsys, "basin", "--problem", "hyperbola", "--eta", "0.9", "--resolution", "64,48",
                         "--extent", "-2,2,-2,2", "--classify", "sign", "--json", "--out", str(tmp_path / "b"))
    assert code == 0, err
    data = json.loads(out)
    assert data["pixels"] == 64 * 48
    assert sum(v["count"] for v in data["fractions"].values()) == 64 * 48
    assert set(data["minimum_classes"]) <= {"0", "3"} and len(data["minimum_classes"]) == 2
    assert (tmp_path / "b" / "basin.png").stat().st_size > 0


def test_sharpness_zhu_edge_of_stability(capsys):
    code, out, err = run(capsys, "sharpness", "--problem", "zhu", "--init", "4,0.1", "--eta", "0.1", "--steps", "3000",
                         "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["max_sharpness"] > 20 > data["final_sharpness"] > 19
    assert data["status"] == "ok" and data["first_step_above_threshold"] is not None


def test_a_diverged_sharpness_run_reports_its_status_and_only_measured_values(capsys):
    """Issue #16 item 5.  An independent NumPy GD loop on 1/4 (x^2 y^2 - 1)^2 from (4, 0.1) at
    eta = 0.5 says where the run leaves the finite numbers: the report must say "diverged" in
    that window and give no final loss or sharpness (the values at step 0 are not results)."""
    import numpy as np

    th = np.array([4.0, 0.1])
    first_bad = None
    with np.errstate(all="ignore"):
        for t in range(1, 20001):
            x, y = th
            r = x * x * y * y - 1.0
            th = th - 0.5 * np.array([r * x * y * y, r * x * x * y])
            if not np.all(np.isfinite(th)):
                first_bad = t
                break
    assert first_bad is not None and first_bad <= 100
    code, out, err = run(capsys, "sharpness", "--problem", "zhu", "--init", "4,0.1", "--eta", "0.5", "--steps",
                         "20000", "--every", "100", "--json")
    assert code == 0, err
    data = json.loads(out)
    assert data["status"] == "diverged" and data["diverged_between"] == [0, 100]
    assert data["final_loss"] is None and data["final_sharpness"] is None
    assert data["measured"]["records"] == 1 and data["measured"]["last_step"] == 0
    code, out, err = run(capsys, "sharpness", "--problem", "zhu", "--init", "4,0.1", "--eta", "0.5", "--steps",
                         "20000", "--every", "100")
    lines = out.splitlines()
    status = next(i for i, l in enumerate(lines) if l.startswith("status"))
    assert "DIVERGED between steps 0 and 100" in lines[status]
    assert status < next(i for i, l in enumerate(lines) if l.startswith("sharpness"))
    assert "final" not in out.split("status")[1]


def test_critical_lr_json(capsys):
    code, out, err = run(capsys, "critical-lr", "--problem", "quadratic", "--option", "spectrum=1,3",
                         "--eta-range", "0.01,10", "--inits", "8", "--steps", "40000", "--json")
    assert code == 0, err
    data = json.loads(out)
    lo, hi = data["interval"]
    assert lo <= 2 / 3 <= hi
    assert data["eta"] == pytest.approx(2 / 3, rel=1e-9)


@pytest.mark.parametrize("argv, match", [
    (["orbit", "--problem", "hyperbola", "--eta", "1.1", "--init", "1,2,3"], "'--init'"),
    (["orbit", "--problem", "hyperbola", "--eta", "1.1", "--record", "10"], "'record'"),
    (["basin", "--problem", "hyperbola", "--eta", "0.5", "--u", "1,0", "--v", "2,0"], "parallel"),
    (["basin", "--problem", "hyperbola", "--eta", "0.5", "--u", "0,0", "--v", "0,1"], "non-zero"),
    (["basin", "--problem", "hyperbola", "--eta", "0.5", "--u", "1,0"], "go together"),
    (["basin", "--problem", "hyperbola", "--eta", "0.5,0.6"], "single step size"),
    (["basin", "--problem", "hyperbola", "--eta", "0.5", "--resolution", "a"], "'--resolution'"),
    (["sharpness", "--problem", "zhu", "--eta", "0.1", "--init", "4,nan"], "'--init'"),
    (["critical-lr", "--problem", "hyperbola", "--eta-range", "2,1"], "'eta_high'"),
    (["lyapunov", "--problem", "hyperbola", "--eta", "1.5", "--steps", "1001"], "multiple of blocks"),
])
def test_bad_input_exits_2(capsys, argv, match):
    code, out, err = run(capsys, *argv)
    assert code == 2 and match in err and out == ""


def test_library_warnings_print_as_one_line_at_the_cli():
    """A gdstab warning reaches the terminal as 'gdstab CMD: warning: ...', not as Python's
    two-line 'file:line: RuntimeWarning' with a source line."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "gdstab", "orbit", "--problem", "hyperbola", "--eta", "1.1", "--init",
                        "1.2,0.9", "--transient", "100", "--record", "128"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert any(ln.startswith("gdstab orbit: warning: ") for ln in lines), r.stderr
    assert all(ln.startswith("gdstab orbit: ") for ln in lines), r.stderr  # warnings and progress lines
    assert "RuntimeWarning" not in r.stderr
