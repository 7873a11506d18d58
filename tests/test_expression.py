"""The restricted expression grammar: meaning, precedence, and refusal of everything else."""

import builtins
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gdstab.problems import ExpressionError, Problem, parse_expression
from gdstab.problems.expression import MAX_DEPTH, MAX_EXPONENT


def value(expr, **vals):
    e = parse_expression(expr, list(vals))
    theta = jnp.array([vals[v] for v in e.variables], dtype=jnp.float64)
    return float(e.to_jax()(theta))


def test_paper_toy_matches_closed_form():
    for x, y in [(0.3, -1.2), (2.0, 0.5), (-1.5, -0.7)]:
        assert value("0.5*(1-x*y)**2", x=x, y=y) == pytest.approx(0.5 * (1 - x * y) ** 2, rel=1e-15)


@pytest.mark.parametrize(
    "expr, expected",
    [
        ("-x**2", -(2.0**2)),  # ** binds tighter than unary minus
        ("2**-1", 0.5),  # unary minus in the exponent
        ("2**3**2", 2.0**9),  # right-associative
        ("x^2", 4.0),  # ^ is a synonym of **
        ("1 - x - 1", -2.0),  # left-associative
        ("8 / x / 2", 2.0),
        ("2*x + 3*x*x", 16.0),
        ("sigmoid(x) + tanh(x)", 1 / (1 + math.exp(-2)) + math.tanh(2)),
        ("sqrt(abs(-x)) * exp(log(x))", math.sqrt(2.0) * 2.0),
        ("sin(pi/2*x) + cos(x)", math.sin(math.pi) + math.cos(2.0)),
        ("1.5e1 + .5 + 2.", 17.5),
        ("--x", 2.0),
        ("+x", 2.0),
    ],
)
def test_precedence_and_functions(expr, expected):
    assert value(expr, x=2.0) == pytest.approx(expected, rel=1e-14)


def test_variable_order_natural_and_explicit():
    assert parse_expression("w10 + w2 + a").variables == ("a", "w2", "w10")
    assert parse_expression("x*y", ["y", "x"]).variables == ("y", "x")
    with pytest.raises(ValueError, match="lacks"):
        parse_expression("x*y", ["x"])
    with pytest.raises(ValueError, match="repeat"):
        parse_expression("x", ["x", "x"])


def test_gradient_through_expression():
    p = Problem.from_expression("0.5*(1-x*y)**2")
    g = jax.grad(p.loss)(jnp.array([0.3, 2.0]))
    r = 1 - 0.3 * 2.0
    np.testing.assert_allclose(np.asarray(g), [-2.0 * r, -0.3 * r], rtol=1e-15)


MALICIOUS = [
    "__import__('os')",
    "__import__",
    "_x + 1",
    "x.__class__",
    "x.real",
    "().__class__.__bases__",
    "lambda x: x",
    "lambda: 1",
    "exec('1')",
    "eval('1')",
    "open('/etc/passwd')",
    "os.system('ls')",
    "import os",
    "x if y else z",
    "[x for x in y]",
    "{1: 2}",
    "x[0]",
    "'abc'",
    '"abc"',
    "x; y",
    "x, y",
    "x = 1",
    "x == y",
    "x < y",
    "x & y",
    "x | y",
    "~x",
    "x % 2",
    "x @ y",
    "not x",
    "x and y",
    "f(x)",
    "foo(x)",
    "exp(x, y)",
    "exp()",
    "exp",
    "exp x",
    "2x",
    "x y",
    "(x",
    "x)",
    "((x)",
    "()",
    "",
    "   ",
    "x +",
    "* x",
    "x ** ",
    "2**1000",
    "x**1e6",
    "2**2**2**2**2",
    "x**(-500)",
    "1e999",
    "x\n+1",
    "x\x00",
    "\\x",
    "$x",
    "x!",
    "`x`",
    "1..2",
    "1.2.3",
    "x" + "+x" * 3000,
    "(" * (MAX_DEPTH + 5) + "x" + ")" * (MAX_DEPTH + 5),
    "-" * (MAX_DEPTH + 5) + "x",
    "pi(x)",
    "for",
    "yield",
    "await x",
    "match",
]


@pytest.mark.parametrize("expr", MALICIOUS)
def test_malicious_or_malformed_expressions_are_refused(expr, monkeypatch):
    called = []

    def trap(*a, **k):  # nothing may reach Python's evaluator
        called.append(a)
        raise AssertionError("eval/exec/compile must not be called")

    monkeypatch.setattr(builtins, "eval", trap)
    monkeypatch.setattr(builtins, "exec", trap)
    monkeypatch.setattr(builtins, "compile", trap)
    with pytest.raises(ExpressionError) as info:
        parse_expression(expr)
    assert not called
    err = info.value
    assert 0 <= err.position <= len(expr)
    msg = str(err)
    assert "'loss' expression is invalid at position" in msg
    assert len(msg) < 1000


def test_at_least_thirty_refusals():
    assert len(MALICIOUS) >= 30


def test_error_messages_are_specific():
    with pytest.raises(ExpressionError, match="unknown function 'foo'") as e:
        parse_expression("1 + foo(x)")
    assert e.value.position == 4
    with pytest.raises(ExpressionError, match="never closed"):
        parse_expression("(x + 1")
    with pytest.raises(ExpressionError, match="too large"):
        parse_expression("x**1000")
    with pytest.raises(ExpressionError, match="attribute access"):
        parse_expression("x.real")
    with pytest.raises(ExpressionError, match="keyword"):
        parse_expression("lambda")
    assert MAX_EXPONENT == 100


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_fuzz_any_text_parses_or_raises_expression_error(text):
    try:
        parse_expression(text)
    except ExpressionError as exc:
        assert 0 <= exc.position <= len(text)


# --- valid expressions built as trees: parse(render(tree)) means the same as the tree ---

_leaf = st.one_of(
    st.floats(min_value=0.0, max_value=10.0, allow_nan=False).map(lambda v: (repr(v), v)),
    st.sampled_from(["x", "y"]).map(lambda n: (n, n)),
)


def _combine(children):
    un = st.tuples(st.sampled_from(["tanh", "sin", "cos", "sigmoid", "abs"]), children).map(
        lambda t: (f"{t[0]}({t[1][0]})", (t[0], t[1][1]))
    )
    neg = children.map(lambda c: (f"-({c[0]})", ("neg", c[1])))
    bi = st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(
        lambda t: (f"({t[0][0]}) {t[1]} ({t[2][0]})", (t[1], t[0][1], t[2][1]))
    )
    sq = children.map(lambda c: (f"({c[0]})**2", ("sq", c[1])))
    return st.one_of(un, neg, bi, sq)


trees = st.recursive(_leaf, _combine, max_leaves=12)

_FN = {"tanh": math.tanh, "sin": math.sin, "cos": math.cos, "abs": abs, "sigmoid": lambda a: 1 / (1 + math.exp(-a))}


def _eval(tree, env):
    if isinstance(tree, float):
        return tree
    if isinstance(tree, str):
        return env[tree]
    op = tree[0]
    if op in _FN:
        return _FN[op](_eval(tree[1], env))
    if op == "neg":
        return -_eval(tree[1], env)
    if op == "sq":
        v = _eval(tree[1], env)
        return v * v
    a, b = _eval(tree[1], env), _eval(tree[2], env)
    return {"+": a + b, "-": a - b, "*": a * b}[op]


@settings(max_examples=150, deadline=None)
@given(trees, st.floats(-2, 2), st.floats(-2, 2))
def test_parsed_tree_means_what_it_says(tree, x, y):
    text, structure = tree
    e = parse_expression(text, ["x", "y"])
    got = float(e.to_jax()(jnp.array([x, y])))
    want = _eval(structure, {"x": x, "y": y})
    assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    # the canonical rendering parses back to the same meaning
    again = parse_expression(e.canonical(), ["x", "y"])
    assert float(again.to_jax()(jnp.array([x, y]))) == pytest.approx(got, rel=1e-12, abs=1e-12)


# --- long flat chains and deep nesting: one clear answer or one clear refusal, never a
# RecursionError (issue #16 item 11: chains of ~1 000 terms overflowed Python's stack) ---


@pytest.mark.parametrize("op", ["+", "-", "*", "/"])
def test_a_flat_chain_up_to_the_length_limit_parses_evaluates_and_differentiates(op):
    from gdstab.problems.expression import MAX_LENGTH

    n = (MAX_LENGTH + 1) // 2  # "x op x op ... x" fills the limit
    text = op.join(["x"] * n)
    assert len(text) <= MAX_LENGTH
    x = 1.0001
    p = Problem.from_expression(text, ["x"])
    v, g = jax.value_and_grad(p.loss)(jnp.array([x]))
    # independent: the same left-to-right arithmetic in Python floats, and the closed-form slope
    ref = x
    for _ in range(n - 1):
        ref = {"+": ref + x, "-": ref - x, "*": ref * x, "/": ref / x}[op]
    slope = {"+": n, "-": 2 - n, "*": n * x ** (n - 1), "/": (2 - n) * x ** (1 - n)}[op]
    assert float(v) == ref  # bit for bit: the chain is evaluated left to right
    assert float(g[0]) == pytest.approx(slope, rel=1e-9)


@pytest.mark.parametrize("make", [
    lambda k: "(" * k + "x" + ")" * k,
    lambda k: "-" * k + "x",
    lambda k: "sin(" * k + "x" + ")" * k,
    lambda k: "**".join(["x"] * (k + 1)),
], ids=["parentheses", "unary minus", "function calls", "powers"])
def test_nesting_at_the_depth_limit_works_and_one_more_level_is_refused(make):
    ok = Problem.from_expression(make(MAX_DEPTH - 1), ["x"])
    v, g = jax.value_and_grad(ok.loss)(jnp.array([0.9]))
    assert np.isfinite(float(v)) and np.isfinite(float(g[0]))
    with pytest.raises(ExpressionError, match="nested deeper"):
        parse_expression(make(MAX_DEPTH + 1), ["x"])


# --- the functions added in issue #16 item 10 --------------------------------------------------

_NEW = {
    "cosh": (math.cosh, math.sinh),
    "sinh": (math.sinh, math.cosh),
    "softplus": (lambda a: math.log1p(math.exp(a)), lambda a: 1 / (1 + math.exp(-a))),
    "log1p": (math.log1p, lambda a: 1 / (1 + a)),
    "expm1": (math.expm1, math.exp),
    "erf": (math.erf, lambda a: 2 / math.sqrt(math.pi) * math.exp(-a * a)),
}


@pytest.mark.parametrize("name", sorted(_NEW))
@pytest.mark.parametrize("x", [-0.7, 0.01, 1.3])
def test_new_functions_value_and_derivative(name, x):
    f, df = _NEW[name]
    p = Problem.from_expression(f"{name}(x)", ["x"])
    v, g = jax.value_and_grad(p.loss)(jnp.array([x]))
    assert float(v) == pytest.approx(f(x), rel=1e-14, abs=1e-15)
    assert float(g[0]) == pytest.approx(df(x), rel=1e-12)


def test_min_and_max_take_two_arguments():
    assert value("min(x, y)", x=0.3, y=-2.0) == -2.0
    assert value("max(x*y, 0.5) + min(1, 2)", x=0.3, y=0.4) == 1.5
    p = Problem.from_expression("max(x, y)**2", ["x", "y"])
    g = jax.grad(p.loss)(jnp.array([0.3, 0.9]))
    assert g.tolist() == [0.0, pytest.approx(1.8)]  # the gradient flows through the larger argument
    for bad, where in (("min(x)", "two arguments"), ("max(x, y, z)", "two arguments"), ("min x", "parentheses"),
                       ("cosh(x, y)", "to close the call"), ("x, y", "expected an operator")):
        with pytest.raises(ExpressionError, match=where):
            parse_expression(bad, ["x", "y", "z"])
