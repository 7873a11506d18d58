"""A restricted arithmetic grammar for loss functions typed by users.

The text is tokenised and parsed by hand into a small syntax tree, which is then turned into
a JAX function by composing closures.  Nothing the user types is ever passed to ``eval``,
``exec``, ``compile`` or a symbolic package: the only things an expression can do are the
operations listed below.

Grammar (usual precedence; ``**`` binds tighter than unary minus and is right-associative,
as in Python, so ``-x**2`` is ``-(x**2)`` and ``2**-1`` is allowed)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom (("**" | "^") unary)?
    atom   := NUMBER | NAME | FUNC "(" expr ")" | FUNC2 "(" expr "," expr ")" | "(" expr ")"

* numbers: ``2``, ``0.5``, ``.5``, ``1e-3``, ``1.5E+2`` (finite, read as float64);
* names: a letter followed by letters, digits or ``_``; every name that is not a function or
  the constant ``pi`` is a variable (the coordinates of θ);
* functions of one argument: exp, log, sin, cos, tanh, sigmoid, sqrt, abs, cosh, sinh,
  softplus (log(1 + e^a)), log1p, expm1, erf; of two: min(a, b), max(a, b);
* ``^`` is accepted as a synonym of ``**`` (there is no bitwise xor in this grammar).

Limits that keep parsing and tracing cheap: at most 4000 characters, nesting depth 100,
64 variables, and a constant exponent of magnitude at most 100.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence

from .._validation import InvalidParameterError

__all__ = [
    "ExpressionError",
    "Expression",
    "parse_expression",
    "FUNCTIONS",
    "FUNCTIONS2",
    "MAX_LENGTH",
    "MAX_DEPTH",
    "MAX_VARIABLES",
    "MAX_EXPONENT",
]

FUNCTIONS = ("exp", "log", "sin", "cos", "tanh", "sigmoid", "sqrt", "abs", "cosh", "sinh", "softplus", "log1p",
             "expm1", "erf")
#: functions of two arguments, ``min(a, b)`` and ``max(a, b)``
FUNCTIONS2 = ("min", "max")
CONSTANTS = {"pi": math.pi}
MAX_LENGTH = 4000
MAX_DEPTH = 100
MAX_VARIABLES = 64
MAX_EXPONENT = 100.0

_BINARY = {"+": lambda a, b: a + b, "-": lambda a, b: a - b, "*": lambda a, b: a * b, "/": lambda a, b: a / b}


class ExpressionError(InvalidParameterError):
    """A loss expression that does not follow the grammar; ``position`` is the 0-based index
    of the offending character."""

    def __init__(self, text: str, position: int, problem: str):
        self.text = text
        self.position = position
        self.problem = problem
        shown = text if len(text) <= 120 else text[:117] + "..."
        caret = " " * min(position, 120) + "^"
        super().__init__(
            f"The 'loss' expression is invalid at position {position}: {problem}.\n  {shown}\n  {caret}"
        )


# ---------------------------------------------------------------------------------------------
# tokens

_NUMBER = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DIGITS = frozenset("0123456789")
_LETTERS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class _Tok:
    kind: str  # "num", "name", "op", "(", ")", "end"
    text: str
    pos: int


def _tokenize(text: str) -> list[_Tok]:
    toks: list[_Tok] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
            continue
        if ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            m = _NUMBER.match(text, i)
            assert m is not None
            end = m.end()
            if end < n and (text[end] in _LETTERS or text[end] in "_."):
                raise ExpressionError(text, end, f"unexpected character {text[end]!r} after the number {m.group()!r}")
            toks.append(_Tok("num", m.group(), i))
            i = end
            continue
        if ch in _LETTERS or ch == "_":
            m = _NAME.match(text, i)
            assert m is not None
            toks.append(_Tok("name", m.group(), i))
            i = m.end()
            continue
        if text.startswith("**", i):
            toks.append(_Tok("op", "**", i))
            i += 2
            continue
        if ch in "+-*/^":
            toks.append(_Tok("op", "**" if ch == "^" else ch, i))
            i += 1
            continue
        if ch in "(),":
            toks.append(_Tok(ch, ch, i))
            i += 1
            continue
        if not ch.isprintable() or ch.isspace():
            raise ExpressionError(text, i, f"unexpected character {ch!r} (only spaces and tabs may separate tokens)")
        hint = ""
        if ch == ".":
            hint = " (attribute access is not part of the grammar)"
        elif ch in "'\"":
            hint = " (strings are not part of the grammar)"
        elif ch in "[]{}":
            hint = " (use parentheses for grouping)"
        elif ch in ";:=<>!&|~%@":
            hint = " (allowed operators: + - * / ** ^)"
        raise ExpressionError(text, i, f"unexpected character {ch!r}{hint}")
    toks.append(_Tok("end", "", n))
    return toks


# ---------------------------------------------------------------------------------------------
# syntax tree


@dataclass(frozen=True)
class Num:
    value: float
    pos: int


@dataclass(frozen=True)
class Var:
    name: str
    pos: int


@dataclass(frozen=True)
class Neg:
    operand: "Node"
    pos: int


@dataclass(frozen=True)
class Bin:
    op: str  # + - * / **
    left: "Node"
    right: "Node"
    pos: int


@dataclass(frozen=True)
class Call:
    func: str
    arg: "Node"
    pos: int


@dataclass(frozen=True)
class Call2:
    func: str  # min | max
    left: "Node"
    right: "Node"
    pos: int


@dataclass(frozen=True)
class Chain:
    """A left-associative chain ``first op1 x1 op2 x2 ...`` of + and - (or of * and /), kept
    flat so that a long chain costs no recursion depth anywhere (parsing, rendering, tracing,
    differentiation) and is evaluated left to right, exactly as the nested form."""

    first: "Node"
    rest: tuple[tuple[str, "Node"], ...]
    pos: int


Node = Num | Var | Neg | Bin | Call | Call2 | Chain


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = _tokenize(text)
        self.i = 0
        self.depth = 0

    def peek(self) -> _Tok:
        return self.toks[self.i]

    def take(self) -> _Tok:
        tok = self.toks[self.i]
        self.i += 1
        return tok

    def error(self, tok: _Tok, problem: str) -> ExpressionError:
        return ExpressionError(self.text, tok.pos, problem)

    def enter(self, tok: _Tok) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(tok, f"the expression is nested deeper than {MAX_DEPTH} levels")

    def parse(self) -> Node:
        if self.peek().kind == "end":
            raise self.error(self.peek(), "the expression is empty")
        node = self.expr()
        tok = self.peek()
        if tok.kind != "end":
            if tok.kind == ")":
                raise self.error(tok, "unbalanced parenthesis: ')' without a matching '('")
            raise self.error(tok, f"expected an operator, found {tok.text!r}")
        return node

    def expr(self) -> Node:
        first, rest = self.term(), []
        while self.peek().kind == "op" and self.peek().text in "+-" and len(self.peek().text) == 1:
            op = self.take()
            rest.append((op.text, self.term()))
        return Chain(first, tuple(rest), first.pos) if rest else first

    def term(self) -> Node:
        first, rest = self.unary(), []
        while self.peek().kind == "op" and self.peek().text in ("*", "/"):
            op = self.take()
            rest.append((op.text, self.unary()))
        return Chain(first, tuple(rest), first.pos) if rest else first

    def unary(self) -> Node:
        tok = self.peek()
        if tok.kind == "op" and tok.text in ("+", "-"):
            self.take()
            self.enter(tok)
            operand = self.unary()
            self.depth -= 1
            return Neg(operand, tok.pos) if tok.text == "-" else operand
        return self.power()

    def power(self) -> Node:
        base = self.atom()
        tok = self.peek()
        if tok.kind == "op" and tok.text == "**":
            self.take()
            self.enter(tok)
            exponent = self.unary()
            self.depth -= 1
            value = _constant_value(exponent, self.text)
            if value is not None and not abs(value) <= MAX_EXPONENT:
                raise self.error(tok, f"the exponent {value:g} is too large (the limit is {MAX_EXPONENT:g} in magnitude)")
            return Bin("**", base, exponent, tok.pos)
        return base

    def call2(self, name_tok: _Tok) -> Node:
        """``min(a, b)`` / ``max(a, b)``: exactly two arguments."""
        name = name_tok.text
        open_tok = self.take()
        self.enter(open_tok)
        if self.peek().kind == ")":
            raise self.error(self.peek(), f"the function {name!r} takes two arguments, none was given")
        left = self.expr()
        self.expect(",", open_tok, f"the function {name!r} takes two arguments separated by ','")
        right = self.expr()
        self.depth -= 1
        self.expect(")", open_tok, f"the function {name!r} takes two arguments; expected ')'")
        return Call2(name, left, right, name_tok.pos)

    def expect(self, kind: str, open_tok: _Tok, what: str) -> None:
        """Take a token of ``kind`` (``)`` or ``,``) inside the parenthesis ``open_tok``, or
        raise: an unclosed parenthesis at the end, else ``what`` and the token found."""
        tok = self.take()
        if tok.kind != kind:
            if tok.kind == "end":
                raise self.error(open_tok, "unbalanced parenthesis: '(' is never closed")
            raise self.error(tok, f"{what}, found {tok.text!r}")

    def atom(self) -> Node:
        tok = self.take()
        if tok.kind == "num":
            value = float(tok.text)
            if not math.isfinite(value):
                raise self.error(tok, f"the number {tok.text!r} is not a finite float64")
            return Num(value, tok.pos)
        if tok.kind == "name":
            name = tok.text
            if name.startswith("_"):
                raise self.error(tok, f"the name {name!r} is not allowed (names start with a letter)")
            if self.peek().kind == "(" and name in FUNCTIONS2:
                return self.call2(tok)
            if self.peek().kind == "(":
                if name not in FUNCTIONS:
                    raise self.error(tok, f"unknown function {name!r} (known functions: "
                                          f"{', '.join(FUNCTIONS + FUNCTIONS2)})")
                open_tok = self.take()
                self.enter(open_tok)
                if self.peek().kind == ")":
                    raise self.error(self.peek(), f"the function {name!r} takes one argument, none was given")
                arg = self.expr()
                self.depth -= 1
                self.expect(")", open_tok, f"expected ')' to close the call of {name!r}")
                return Call(name, arg, tok.pos)
            if name in FUNCTIONS or name in FUNCTIONS2:
                example = f"{name}(x, y)" if name in FUNCTIONS2 else f"{name}(x)"
                raise self.error(tok, f"the function {name!r} must be called with parentheses, e.g. {example}")
            if keyword.iskeyword(name) or keyword.issoftkeyword(name):
                raise self.error(tok, f"{name!r} is a Python keyword, not a variable or function of the grammar")
            if name in CONSTANTS:
                return Num(CONSTANTS[name], tok.pos)
            return Var(name, tok.pos)
        if tok.kind == "(":
            self.enter(tok)
            if self.peek().kind == ")":
                raise self.error(self.peek(), "empty parentheses")
            node = self.expr()
            self.depth -= 1
            self.expect(")", tok, "expected ')'")
            return node
        if tok.kind == "end":
            raise self.error(tok, "the expression ends where an operand was expected")
        if tok.kind == ")":
            raise self.error(tok, "unbalanced parenthesis or missing operand before ')'")
        raise self.error(tok, f"expected a number, a variable, a function call or '(', found {tok.text!r}")


def _constant_value(node: Node, text: str) -> float | None:
    """Value of a subtree without variables (float arithmetic, overflow -> inf), else None."""
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Var):
        return None
    if isinstance(node, Neg):
        v = _constant_value(node.operand, text)
        return None if v is None else -v
    if isinstance(node, Call):
        v = _constant_value(node.arg, text)
        if v is None:
            return None
        try:
            return {
                "exp": lambda a: math.exp(a) if a < 710 else math.inf,
                "log": lambda a: math.log(a) if a > 0 else math.nan,
                "sin": math.sin,
                "cos": math.cos,
                "tanh": math.tanh,
                "sigmoid": lambda a: 1.0 / (1.0 + math.exp(-a)) if a > -710 else 0.0,
                "sqrt": lambda a: math.sqrt(a) if a >= 0 else math.nan,
                "abs": abs,
                "cosh": lambda a: math.cosh(a) if abs(a) < 710 else math.inf,
                "sinh": lambda a: math.sinh(a) if abs(a) < 710 else math.copysign(math.inf, a),
                "softplus": lambda a: max(a, 0.0) + math.log1p(math.exp(-abs(a))),
                "log1p": lambda a: math.log1p(a) if a > -1 else (-math.inf if a == -1 else math.nan),
                "expm1": lambda a: math.expm1(a) if a < 709 else math.inf,
                "erf": math.erf,
            }[node.func](v)
        except (OverflowError, ValueError):
            return math.nan
    if isinstance(node, Call2):
        a, b = _constant_value(node.left, text), _constant_value(node.right, text)
        if a is None or b is None:
            return None
        return min(a, b) if node.func == "min" else max(a, b)
    if isinstance(node, Chain):
        value = _constant_value(node.first, text)
        for op, operand in node.rest:
            b = _constant_value(operand, text)
            if value is None or b is None:
                return None
            value = _arith(op, value, b)
        return value
    assert isinstance(node, Bin)
    a = _constant_value(node.left, text)
    b = _constant_value(node.right, text)
    if a is None or b is None:
        return None
    return _arith(node.op, a, b)


def _arith(op: str, a: float, b: float) -> float:
    """``a op b`` in float arithmetic (overflow -> inf, undefined -> nan)."""
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b if b != 0 else math.nan
        # a ** b with a bounded exponent (checked by the parser before we get here)
        if abs(b) > MAX_EXPONENT:
            return math.inf
        r = a**b
        return r if isinstance(r, float) else math.nan  # complex result for a < 0, b fractional
    except (OverflowError, ZeroDivisionError):
        return math.inf


def _variables(node: Node, out: list[str]) -> None:
    if isinstance(node, Var):
        if node.name not in out:
            out.append(node.name)
    elif isinstance(node, Neg):
        _variables(node.operand, out)
    elif isinstance(node, Call):
        _variables(node.arg, out)
    elif isinstance(node, Bin):
        _variables(node.left, out)
        _variables(node.right, out)
    elif isinstance(node, Call2):
        _variables(node.left, out)
        _variables(node.right, out)
    elif isinstance(node, Chain):
        _variables(node.first, out)
        for _, operand in node.rest:
            _variables(operand, out)


def _natural_key(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _render(node: Node) -> str:
    if isinstance(node, Num):
        return repr(node.value)
    if isinstance(node, Var):
        return node.name
    if isinstance(node, Neg):
        return f"(-{_render(node.operand)})"
    if isinstance(node, Call):
        return f"{node.func}({_render(node.arg)})"
    if isinstance(node, Call2):
        return f"{node.func}({_render(node.left)}, {_render(node.right)})"
    if isinstance(node, Chain):  # rendered as the nested left-associative form
        text = _render(node.first)
        for op, operand in node.rest:
            text = f"({text} {op} {_render(operand)})"
        return text
    return f"({_render(node.left)} {node.op} {_render(node.right)})"


@dataclass(frozen=True)
class Expression:
    """A parsed loss expression: the source text, its tree and its ordered variables."""

    text: str
    tree: Node
    variables: tuple[str, ...]

    def canonical(self) -> str:
        """Fully parenthesised form (what the tree means, independent of spacing)."""
        return _render(self.tree)

    def to_jax(self) -> Callable:
        """A pure JAX function ``f(theta) -> scalar`` with ``theta[i]`` the i-th variable."""
        import jax
        import jax.numpy as jnp
        import jax.scipy.special
        from jax import lax

        index = {name: i for i, name in enumerate(self.variables)}
        funcs = {
            "exp": jnp.exp,
            "log": jnp.log,
            "sin": jnp.sin,
            "cos": jnp.cos,
            "tanh": jnp.tanh,
            "sigmoid": jax.nn.sigmoid,
            "sqrt": jnp.sqrt,
            "abs": jnp.abs,
            "cosh": jnp.cosh,
            "sinh": jnp.sinh,
            "softplus": jax.nn.softplus,
            "log1p": jnp.log1p,
            "expm1": jnp.expm1,
            "erf": jax.scipy.special.erf,
        }

        def build(node: Node) -> Callable:
            if isinstance(node, Num):
                value = node.value
                return lambda th: jnp.asarray(value, dtype=th.dtype)
            if isinstance(node, Var):
                i = index[node.name]
                return lambda th: th[i]
            if isinstance(node, Neg):
                f = build(node.operand)
                return lambda th: -f(th)
            if isinstance(node, Call):
                f, fn = build(node.arg), funcs[node.func]
                return lambda th: fn(f(th))
            if isinstance(node, Call2):
                lf, rf = build(node.left), build(node.right)
                pick = jnp.minimum if node.func == "min" else jnp.maximum
                return lambda th: pick(lf(th), rf(th))
            if isinstance(node, Chain):
                f0 = build(node.first)
                rest = [(_BINARY[op], build(operand)) for op, operand in node.rest]

                def chain(th):
                    value = f0(th)
                    for op, f in rest:  # left to right, as the nested form
                        value = op(value, f(th))
                    return value

                return chain
            lf, rf = build(node.left), build(node.right)
            if node.op == "+":
                return lambda th: lf(th) + rf(th)
            if node.op == "-":
                return lambda th: lf(th) - rf(th)
            if node.op == "*":
                return lambda th: lf(th) * rf(th)
            if node.op == "/":
                return lambda th: lf(th) / rf(th)
            exponent = _constant_value(node.right, self.text)
            if exponent is not None and float(exponent).is_integer():
                p = int(exponent)  # |p| <= MAX_EXPONENT, checked while parsing
                return lambda th: lax.integer_pow(lf(th), p)
            return lambda th: jnp.power(lf(th), rf(th))

        body = build(self.tree)

        def loss(theta):
            return body(theta)

        return loss


def parse_expression(text: str, variables: Sequence[str] | None = None) -> Expression:
    """Parse ``text`` with the restricted grammar.

    ``variables`` fixes the order of the coordinates of θ (and may list variables that do not
    occur); by default the variables are sorted in natural order (x, y, z; w2 before w10).
    Raises :class:`ExpressionError` naming the position and the problem.
    """
    if not isinstance(text, str):
        raise InvalidParameterError(f"The 'loss' parameter must be a str. Got {text!r} instead.")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(text, MAX_LENGTH, f"the expression is longer than {MAX_LENGTH} characters")
    tree = _Parser(text).parse()
    found: list[str] = []
    _variables(tree, found)
    if variables is None:
        order = tuple(sorted(found, key=_natural_key))
    else:
        order = tuple(variables)
        for v in order:
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", v) or v in FUNCTIONS or v in CONSTANTS:
                raise InvalidParameterError(
                    f"The 'variables' parameter must list names made of a letter then letters, digits or '_' "
                    f"(not a function or constant name). Got {v!r} instead."
                )
        if len(set(order)) != len(order):
            raise InvalidParameterError(f"The 'variables' parameter must not repeat names. Got {list(order)!r} instead.")
        missing = [v for v in found if v not in order]
        if missing:
            raise InvalidParameterError(
                f"The 'variables' parameter must list every variable of the expression. "
                f"Got {list(order)!r} instead, which lacks {missing!r}."
            )
    if not order:
        raise ExpressionError(text, 0, "the expression has no variables (a loss needs at least one)")
    if len(order) > MAX_VARIABLES:
        raise ExpressionError(text, 0, f"the expression has {len(order)} variables (the limit is {MAX_VARIABLES})")
    return Expression(text=text, tree=tree, variables=order)
