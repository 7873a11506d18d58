"""The report's text (#17): maths in symbols, short verdicts, long values out of the table."""

import pytest

from gdstab.report import _key_table, _measured, _verdict, pretty


@pytest.mark.parametrize("ascii_, expected", [
    ("GD on 1/2 (1 - xy)^2 at eta = 0.4", "GD on ½(1 − xy)² at η = 0.4"),
    ("x^2 + y^2 <= 2/eta", "x² + y² ≤ 2/η"),
    ("eta* = 2 / inf over M of lambda_max", "η* = 2 / inf_M λ_max"),
    ("beta = 0.9, theta, eps", "β = 0.9, θ, ε"),
    ("converged: eta*|grad| <= 0.0001", "converged: η‖∇L‖ ≤ 0.0001"),
    ("lambda_max(P^-1 H), P^-1/2 H P^-1/2", "λ_max(P⁻¹ H), P⁻¹ᐟ² H P⁻¹ᐟ²"),
    ("sqrt(5) - 1, [-1, 1]^12, 2 -> 4", "√5 − 1, [-1, 1]¹², 2 → 4"),
    ("theta_star, metadata, zeta", "theta_star, metadata, zeta"),  # only whole words
])
def test_pretty_writes_ascii_maths_in_symbols(ascii_, expected):
    assert pretty(ascii_) == expected


def test_verdicts_compare_with_the_closed_form_or_the_paper():
    assert _verdict({"value": 17.41439598847149, "closed_form": 17.41439598847182}).startswith("agrees with the closed")
    assert _verdict({"value": 1.1, "closed_form": 1.0}) == "differs from the closed form by 0.1 (relative)"
    assert _verdict({"value": 1.0, "interval": [0.99, 1.01], "closed_form": 1.0}) == "closed form inside the interval"
    assert _verdict({"value": 1.0, "interval": [1.01, 1.02], "closed_form": 1.0}) == "closed form outside the interval"
    assert _verdict({"value": 14.5, "paper": 37.4, "note": "not reproduced: a long reason"}) == "not reproduced"
    rows = {"beta=0": {"eta_star": 1.0, "consistent": True}, "beta=0.5": {"eta_star": 1.5, "consistent": False}}
    assert _verdict({"value": rows}) == "inconsistent with the theory"


def test_a_long_value_goes_into_a_collapsible_table_and_no_cell_is_long():
    series = {f"{e:g}": {"fraction": 0.5, "low": 0.4, "high": 0.6} for e in (0.1 * k for k in range(1, 20))}
    text, detail = _measured("trapping_fraction", {"value": series, "label": "trapping fraction"})
    assert text == "19 rows in the table below"
    assert detail.startswith("<details") and detail.count("<tr>") == 20  # header + 19 step sizes
    short, none = _measured("x", {"value": {"1": {"largest_eta_converged": 0.8}}})
    assert short == "1, largest η that converged: 0.8" and none == ""
    html = _key_table(["t"], {"t": {"value": series, "definition": "d " * 300, "note": "n: " + "why " * 100}})
    import re

    cells = re.findall(r"<td>(.*?)</td>", html.split("</table>")[0])
    assert cells and max(len(c) for c in cells) <= 200  # the definition and note live outside the table
