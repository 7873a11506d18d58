"""The gdstab command and the text formats it reads."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdstab.cli import main
from gdstab.specs import parse_eta, parse_option


def run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


def test_trajectories_json(capsys):
    code, out, err = run(
        capsys, "trajectories", "--problem", "hyperbola", "--eta", "0.5,1.05", "--inits", "400",
        "--steps", "2000", "--seed", "3", "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["seed"] == 3 and data["inits"] == 400
    rows = data["results"]
    assert [r["eta"] for r in rows] == [0.5, 1.05]
    for r in rows:
        assert sum(r[s]["count"] for s in ("converged", "diverged", "periodic", "bounded", "stationary")) == 400
        for s in ("converged", "diverged", "periodic", "bounded", "stationary"):
            c = r[s]
            assert c["low"] <= c["fraction"] <= c["high"]
    assert rows[0]["converged"]["fraction"] > 0.9
    assert rows[1]["converged"]["count"] == 0 and rows[1]["periodic"]["fraction"] > 0.5


def test_trajectories_expression_and_negative_box(capsys):
    code, out, err = run(
        capsys, "trajectories", "--loss", "0.5*(1-x*y)**2", "--min-value", "0", "--eta", "0.1:0.5:3",
        "--box", "-2,2,-2,2", "--inits", "100", "--steps", "300", "--json",
    )
    assert code == 0, err
    data = json.loads(out)
    assert data["box"] == [[-2.0, 2.0], [-2.0, 2.0]]
    assert [r["eta"] for r in data["results"]] == list(np.linspace(0.1, 0.5, 3))


def test_same_seed_same_numbers(capsys):
    args = ["trajectories", "--problem", "zhu", "--eta", "0.3", "--inits", "300", "--steps", "400", "--json"]
    a = json.loads(run(capsys, *args, "--seed", "5")[1])["results"]
    b = json.loads(run(capsys, *args, "--seed", "5")[1])["results"]
    assert a == b


def test_table_output(capsys):
    code, out, _ = run(capsys, "trajectories", "--problem", "quadratic", "--option", "spectrum=1,3",
                       "--eta", "0.6,0.7", "--box", "-1,1", "--inits", "50", "--steps", "500")
    assert code == 0
    assert "converged" in out and "0.6" in out and "[" in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["--problem", "hyperbola", "--eta", "-0.1"], "'--eta'"),
        (["--problem", "hyperbola", "--eta", "0"], "'--eta'"),
        (["--problem", "hyperbola", "--eta", "nan"], "'--eta'"),
        (["--problem", "hyperbola", "--eta", "1:2"], "'--eta'"),
        (["--problem", "hyperbola", "--eta", "0.5", "--steps", "0"], "'--steps'"),
        (["--problem", "hyperbola", "--eta", "0.5", "--inits", "-3"], "'--inits'"),
        (["--problem", "hyperbola", "--eta", "0.5", "--box", "1,0,0,1"], "'--box'"),
        (["--problem", "hyperbola", "--eta", "0.5", "--box", "0,1,0"], "'--box'"),
        (["--problem", "hyperbola", "--eta", "0.5", "--box", "a,b"], "'--box'"),
        (["--problem", "nosuch", "--eta", "0.5"], "'problem' parameter must be one of"),
        (["--problem", "quadratic", "--option", "b=1", "--eta", "0.5"], "'option'"),
        (["--problem", "quadratic", "--option", "a=x", "--eta", "0.5"], "'a' parameter"),
        (["--problem", "quadratic", "--option", "spectrum", "--eta", "0.5"], "key=value"),
        (["--loss", "__import__('os').system('echo hi')", "--eta", "0.5"], "invalid at position"),
        (["--loss", "x +", "--eta", "0.5"], "invalid at position"),
        (["--problem", "hyperbola", "--eta", "0.5", "--tol", "-1"], "'tol' parameter of Criteria"),
        (["--problem", "hyperbola", "--eta", "0.5", "--min-value", "0"], "go with --loss"),
    ],
)
def test_bad_input_exits_2_with_one_clear_line(capsys, argv, match):
    code, out, err = run(capsys, "trajectories", *argv)
    assert code == 2
    assert match in err
    assert out == ""


def test_help_explains_every_flag():
    out = subprocess.run([sys.executable, "-m", "gdstab.cli", "trajectories", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for flag in ("--problem", "--loss", "--eta", "--box", "--inits", "--steps", "--seed", "--json", "--tol",
                 "--window", "--f-tol", "--max-norm", "--max-period", "--option", "start:stop:num", "Wilson"):
        assert flag in out


def test_console_script_installed():
    from pathlib import Path

    script = Path(sys.executable).parent / "gdstab"  # installed beside the interpreter by pip
    out = subprocess.run([str(script), "problems", "--json"], capture_output=True, text=True, check=True)
    assert "hyperbola" in json.loads(out.stdout)


# --------------------------------------------------------------------- spec parsers (property)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=1e-6, max_value=1e6), min_size=1, max_size=20))
def test_eta_list_round_trip(values):
    got = parse_eta(",".join(repr(v) for v in values))
    np.testing.assert_array_equal(got, np.array(values))


@settings(max_examples=200, deadline=None)
@given(st.floats(1e-4, 10), st.floats(1e-4, 10), st.integers(2, 500))
def test_eta_range_is_linspace(a, b, n):
    got = parse_eta(f"{a!r}:{b!r}:{n}")
    np.testing.assert_array_equal(got, np.linspace(a, b, n))
    assert got.size == n and got[0] == a and math.isclose(got[-1], b)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=30))
def test_eta_parser_never_crashes(text):
    try:
        v = parse_eta(text)
    except ValueError as exc:
        assert "'eta' parameter" in str(exc)
    else:
        assert v.size >= 1 and np.all(np.isfinite(v)) and np.all(v > 0)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30))
def test_option_parser_never_crashes(text):
    try:
        k, v = parse_option(text, {"a": "float", "n": "int", "s": "floats", "m": "matrix"}, problem="p")
    except ValueError as exc:
        assert "parameter" in str(exc)
    else:
        assert k in {"a", "n", "s", "m"}


def test_step_sizes_print_at_the_precision_they_were_given(capsys):
    """Issue #16 item 9: eta = 1 - 1e-8, 1 and 1 + 1e-8 all printed "1" with 6 digits."""
    from gdstab.cli._common import fmt_eta

    for x in (1 - 1e-8, 1.0, 1 + 1e-8, 0.1, 0.30000001192092896, 2.5e-5, 3e7):
        assert float(fmt_eta(x)) == x
    assert fmt_eta(0.1) == "0.1" and fmt_eta(1.0) == "1"
    assert main(["trajectories", "--problem", "quad_quartic", "--eta", "0.99999999,1,1.00000001",
                 "--inits", "4", "--steps", "20"]) == 0
    rows = [l.split()[0] for l in capsys.readouterr().out.splitlines() if l.strip().startswith(("0.9", "1"))]
    assert rows == ["0.99999999", "1", "1.00000001"]


def test_linear_reports_its_restarts_spread_and_warns_when_they_disagree(tmp_path, capsys):
    """Issue #16 item 1: on ill-conditioned data (singular values 5.37 and 0.177) the starts of
    the minimisation over M may end apart; the value is then printed as a bound, with a warning,
    never to 12 digits.  The report must be consistent with the spread it states."""
    import json

    rng = np.random.default_rng(5)
    U, _ = np.linalg.qr(rng.normal(size=(2, 2)))
    V, _ = np.linalg.qr(rng.normal(size=(6, 2)))
    np.savez(tmp_path / "ill.npz", X=U @ np.diag([5.37, 0.177]) @ V.T, Y=rng.normal(size=(2, 6)))
    from gdstab.cli.theory import _linear_lines

    for extra in ([], ["--data", str(tmp_path / "ill.npz")]):
        assert main(["linear", "--dims", "2,3,2", "--restarts", "2", "--json", *extra]) == 0
        data = json.loads(capsys.readouterr().out)
        values = data["restarts"]
        assert data["restart_spread"] == pytest.approx((max(values) - min(values)) / min(values))
        assert data["inf_lambda_max"] == pytest.approx(min(values), rel=1e-12)
        text = "\n".join(_linear_lines(data, data["data"]))  # what the command prints for this result
        assert ("warning" in text) == (data["restart_spread"] > 1e-6)
        # the same result had its starts disagreed (as before the polish: 2.3 % on this data)
        low = min(values)
        data.update(restarts=[low, low * 1.023], restart_spread=0.023, restarts_agree=False)
        text = "\n".join(_linear_lines(data, data["data"]))
        assert "warning" in text and "at most" in text and f"{low:.12g}" not in text


def test_a_data_file_that_would_unpack_beyond_memory_is_refused_before_reading(tmp_path, capsys):
    """Issue #16 item 11: a 2 MB .npz 'zip bomb' took 2.4 GB before its error.  The arrays'
    headers declare their size; it is checked before anything is allocated."""
    import io
    import zipfile

    hdr = io.BytesIO()
    np.lib.format.write_array_header_1_0(hdr, {"descr": "<f8", "fortran_order": False, "shape": (2, 2_000_000_000)})
    with zipfile.ZipFile(tmp_path / "bomb.npz", "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("X.npy", hdr.getvalue() + bytes(1024))
        z.writestr("Y.npy", hdr.getvalue() + bytes(1024))
    assert main(["linear", "--dims", "2,3,2", "--data", str(tmp_path / "bomb.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--data" in err and "GiB" in err and "memory" in err
