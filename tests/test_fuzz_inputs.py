"""Fuzzing the input surfaces (issue #16 item 11): whatever a user types -- a sweep config, a
command line, a loss expression -- ends in a result or in one clear refusal (the library's
InvalidParameterError / ConfigError; exit status 2 with one line at the command line), never in
a traceback, a hang or a dead process.  Bounded in time (Hypothesis deadlines and example
counts), with a fixed database-free seed so CI is repeatable."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gdstab._validation import InvalidParameterError
from gdstab.cli import main
from gdstab.problems import Problem
from gdstab.sweep import load_config

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

# values of every TOML type, sizes from tiny to absurd (huge ints must be refused, not allocated)
scalars = st.one_of(
    st.booleans(),
    st.integers(-3, 40),
    st.integers(2**31 - 2, 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["gelu", "relu", "float32", "jax", "native", "0.1:1:3", "1e9", "-1", ""]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                      max_leaves=8)

KEYS = {
    "problem": ["name", "expression", "variables", "min_value", "options"],
    "grid": ["eta", "inits", "box", "options"],
    "run": ["steps", "seed", "dtype", "record_every", "backend", "store_theta", "cell_inits", "cell_etas",
            "batch_size"],
    "criteria": ["tol", "window", "f_tol", "max_norm", "max_period", "check_every", "period_checks"],
}
OPTIONS = ["dim", "a", "spectrum", "matrix", "depth", "width", "activation", "loss", "bias", "digits", "samples",
           "init", "dims", "data_seed", "normalisation", "b"]


@st.composite
def configs(draw):
    cfg = {"problem": {"name": draw(st.sampled_from(["hyperbola", "quadratic", "mlp", "linear", "rosenbrock",
                                                     "nope"]))},
           "grid": {"eta": "0.1", "inits": 2}, "run": {"steps": 5}}
    for _ in range(draw(st.integers(1, 4))):  # replace or add a few keys with arbitrary values
        table = draw(st.sampled_from(sorted(KEYS)))
        key = draw(st.sampled_from(KEYS[table] + ["unknown"]))
        cfg.setdefault(table, {})[key] = draw(values)
    if draw(st.booleans()):
        cfg["problem"]["options"] = {draw(st.sampled_from(OPTIONS)): draw(values)}
    if draw(st.booleans()):
        cfg["grid"]["options"] = {draw(st.sampled_from(OPTIONS)): draw(values)}
    return cfg


@FUZZ
@given(configs())
def test_any_sweep_config_loads_or_is_refused_clearly(cfg):
    try:
        load_config(cfg)
    except InvalidParameterError as exc:
        assert str(exc) and "\n" not in str(exc).strip() or "expression" in str(exc)
    except RecursionError:  # pragma: no cover - the assertion names the input
        pytest.fail(f"RecursionError for {cfg!r}")


@FUZZ
@given(st.text(alphabet="xy0123456789.+-*/^()e sincotahqrlgbpmdfu_,", max_size=300))
def test_any_typed_expression_parses_or_is_refused_clearly(text):
    import jax
    import jax.numpy as jnp

    try:
        p = Problem.from_expression(text)
    except InvalidParameterError:
        return
    with jax.enable_x64(True):
        v, g = jax.value_and_grad(p.loss)(jnp.full(p.dim, 0.5))
    assert v.shape == () and g.shape == (p.dim,)  # a number (possibly nan/inf), never an exception


ARGS = st.lists(st.one_of(
    st.sampled_from(["--problem", "hyperbola", "quadratic", "mlp", "--loss", "x*y", "--eta", "0.5", "1:2:3",
                     "--inits", "3", "-1", "0", "1e99", "--steps", "4", "--box", "-1,1", "--option", "dim=2",
                     "dim=x", "--json", "--seed", "nan", "--tol", "inf", "--window", "--max-period", "0",
                     "--init", "1,2", "--out", "/dev/null", "--resolution", "4", "--every", "2"]),
    st.text(max_size=8)), max_size=10)


@settings(max_examples=80, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.sampled_from(["trajectories", "stability", "orbit", "lyapunov", "basin", "sharpness", "critical-lr",
                        "linear", "show", "problems"]), ARGS)
def test_any_command_line_ends_in_a_result_or_one_line(capsys, command, argv):
    try:
        code = main([command, *argv])
    except SystemExit as exc:  # argparse: usage and one error line, status 2
        code = exc.code
    out = capsys.readouterr()
    assert code in (0, 1, 2), (command, argv, code)
    if code:
        assert "Traceback" not in out.err
        errors = [l for l in out.err.splitlines() if "error" in l]
        assert len(errors) == 1, (command, argv, out.err)
