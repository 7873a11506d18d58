"""The typed configuration of a sweep, loadable from TOML.

A sweep is a grid of step sizes × initialisations × (optionally) problem options::

    [problem]
    name = "hyperbola"            # a registered problem ...
    # expression = "0.5*(1-x*y)**2" # ... or a loss expression (restricted grammar)
    # variables = ["x", "y"]        # with expression: coordinate order
    # min_value = 0.0               # with expression: L*, if known

    [problem.options]             # fixed options of the problem, e.g. spectrum = [1.0, 3.0]

    [grid]
    eta = "0.1:1.0:10"            # "0.5", "0.1,0.5", "start:stop:num" or a list of floats
    inits = 1000                  # initialisations per grid point
    box = [-2.0, 2.0, -2.0, 2.0]  # optional; default: the problem's box

    [grid.options]                # swept problem options: one list per option (a dimension each)
    # a = [1.0, 2.0, 4.0]

    [run]
    steps = 1000
    seed = 0
    dtype = "float64"
    record_every = 0              # >0: record loss, |grad| and eta*|grad| every k steps
    backend = "auto"              # auto | jax | native
    store_theta = true            # store initial and final iterates (per trajectory, d values)
    cell_inits = 0                # initialisations per stored cell; 0 = automatic
    cell_etas = 0                 # step sizes per stored cell; 0 = automatic
    batch_size = 0                # 0 = full-batch GD; b > 0 = minibatch SGD (problems with data)

    [criteria]                    # any field of gdstab.Criteria
    tol = 1e-8

    [optimizer]                   # optional; absent = plain GD (configs without it mean GD)
    name = "momentum"             # gd | momentum | nesterov | rmsprop | adam
    beta = 0.9                    # the rule's hyperparameters (gdstab.optimizers.RULES); omitted = defaults

    [adaptive]                    # optional: compute only the cells a fraction-vs-eta question needs
    status = "converged"          # the fraction refined (a status name)
    halfwidth = 0.15              # target 95% Wilson half-width of every computed point
    change = 0.1                  # refine between computed step sizes whose fractions differ by more
    coarse = 5                    # step sizes of the first round (spread over the sorted grid)
    max_trajectories = 0          # budget; 0 = none (the grid itself is the limit)

With ``[adaptive]`` the grid is the set of candidates (:mod:`gdstab.sweep.adaptive`): the
initialisations come in blocks of ``run.cell_inits`` (default 10) and every cell holds one step
size.

A hyperparameter of the rule may be swept instead, as a list in ``[grid.options]`` (e.g.
``beta = [0.0, 0.5, 0.9]``): it becomes a dimension of the results like a problem option, and
every value of it starts from the same initial points (they depend on the problem options only).

Every key is checked: unknown keys and wrong types are refused with a message naming the key
and the expected type.  Execution settings (executor, scheduler, threads, progress) are not part
of the config: they never change results.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping


from .._validation import InvalidParameterError
from ..optimizers import GD, RULES, Rule
from ..outcomes import Criteria
from ..specs import check_option

__all__ = ["SweepConfig", "ProblemSpec", "AdaptiveSpec", "load_config", "ConfigError", "parse_adaptive"]


class ConfigError(InvalidParameterError):
    """A sweep configuration that does not follow the schema."""


def _err(key: str, expected: str, got: Any) -> ConfigError:
    shown = repr(got)
    if len(shown) > 200:
        shown = shown[:197] + "..."
    return ConfigError(f"The '{key}' parameter of the sweep config must be {expected}. Got {shown} instead.")


def _check_keys(table: Any, allowed: dict[str, str], where: str) -> None:
    if not isinstance(table, Mapping):
        raise _err(where, "a table", table)
    for key in table:
        if key not in allowed:
            full = f"{where}.{key}" if where else key
            raise ConfigError(
                f"Unknown key '{full}' in the sweep config. Allowed keys in "
                f"{('[' + where + ']') if where else 'the top level'}: "
                + ", ".join(f"{k} ({t})" for k, t in allowed.items())
                + "."
            )


def _int(value: Any, key: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _err(key, f"an int >= {minimum}", value)
    return value


def _float(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise _err(key, "a finite float", value)
    return float(value)


def _str(value: Any, key: str) -> str:
    if not isinstance(value, str):
        raise _err(key, "a string", value)
    return value


_OPTION_VALUE = "a number, a word, a list of numbers or a list of lists of numbers"


def _option_value(value: Any, key: str) -> Any:
    """Problem option values: scalars, words, lists of floats or matrices (lists of lists)."""
    if isinstance(value, str) and value.replace("_", "a").isalnum():
        return value
    if isinstance(value, bool):
        raise _err(key, _OPTION_VALUE, value)
    if isinstance(value, (int, float)):
        if not math.isfinite(float(value)):
            raise _err(key, _OPTION_VALUE, value)
        return value
    if isinstance(value, list) and value:
        return [_option_value(v, key) for v in value]
    raise _err(key, _OPTION_VALUE, value)


def _typed_option(value: Any, kind: str, key: str) -> Any:
    """A problem option value checked against the type the problem declares for it."""
    try:
        return check_option(_option_value(value, key), kind, key, "the sweep config")
    except InvalidParameterError as exc:
        raise ConfigError(str(exc)) from None


@dataclass(frozen=True)
class ProblemSpec:
    """Which problem: a registered ``name`` with ``options``, a loss ``expression``, or a user's
    ``model`` (``/abs/path/file.py:factory``, with ``data``, ``samples``, ``objective`` and the
    SHA-256 of the file: a changed file is another config, so a folder is never resumed with it)."""

    name: str | None = None
    expression: str | None = None
    variables: tuple[str, ...] | None = None
    min_value: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    model: str | None = None
    data: str | None = None
    samples: int | None = None
    objective: str | None = None
    model_sha256: str | None = None

    def build(self, swept: Mapping[str, Any] | None = None):
        """The :class:`~gdstab.problems.Problem`, with the swept option values ``swept``."""
        from .. import problems

        if self.model is not None:
            from ..problems.user_model import model_problem

            return model_problem(self.model, self.data, self.samples, self.objective)
        if self.expression is not None:
            return problems.Problem.from_expression(self.expression, self.variables, min_value=self.min_value)
        opts = dict(self.options)
        opts.update(swept or {})
        return problems.get(self.name, **opts)


@dataclass(frozen=True)
class SweepConfig:
    """A sweep: problem, grid, run settings and classification criteria.

    Main attributes: ``problem`` (:class:`ProblemSpec`), ``eta`` (the step sizes),
    ``inits`` (initialisations per grid point), ``steps`` (T), ``seed``.

    Other attributes: ``box`` (initialisation region, None = the problem's), ``options``
    (swept problem options: name -> list of values, each a dimension of the results),
    ``dtype``, ``record_every`` (0 = no per-step metrics), ``backend``, ``store_theta``,
    ``cell_inits`` and ``cell_etas`` (initialisations and step sizes per stored cell, 0 =
    automatic: cells of about 16 MiB of results), ``batch_size`` (0: full-batch
    GD; b > 0: minibatch SGD with per-trajectory shuffles, ``steps`` counting updates),
    ``criteria``.
    """

    problem: ProblemSpec
    eta: tuple[float, ...]
    inits: int
    steps: int
    seed: int = 0
    box: tuple[float, ...] | None = None
    options: Mapping[str, tuple[Any, ...]] = field(default_factory=dict)
    dtype: str = "float64"
    record_every: int = 0
    backend: str = "auto"
    store_theta: bool = True
    cell_inits: int = 0
    cell_etas: int = 0
    batch_size: int = 0
    criteria: Criteria = field(default_factory=Criteria)
    optimizer: Rule = GD
    adaptive: "AdaptiveSpec | None" = None

    # --- the grid --------------------------------------------------------------------------
    def option_names(self) -> tuple[str, ...]:
        return tuple(self.options)

    def option_points(self) -> list[dict[str, Any]]:
        """Every combination of the swept options, in C order of the option dimensions."""
        names = self.option_names()
        if not names:
            return [{}]
        return [dict(zip(names, combo)) for combo in itertools.product(*(self.options[n] for n in names))]

    def option_shape(self) -> tuple[int, ...]:
        return tuple(len(self.options[n]) for n in self.option_names())

    def _swept_hyper(self, o: int) -> tuple[dict[str, Any], dict[str, Any]]:
        """Option point ``o`` split into (problem options, the rule's swept hyperparameters)."""
        hyper = dict(RULES.get(self.optimizer.name, ()))
        point = self.option_points()[o]
        return ({k: v for k, v in point.items() if k not in hyper}, {k: v for k, v in point.items() if k in hyper})

    def problem_options(self, o: int) -> dict[str, Any]:
        """The swept problem options at option point ``o`` (without the rule's swept
        hyperparameters): what builds the problem and seeds its initial points."""
        return self._swept_hyper(o)[0]

    def rule_at(self, o: int) -> Rule:
        """The update rule at option point ``o`` (its swept hyperparameters applied)."""
        swept = self._swept_hyper(o)[1]
        if not swept:
            return self.optimizer
        return Rule(self.optimizer.name, {**dict(self.optimizer.hyper), **swept})

    def problem_at(self, o: int):
        """The :class:`~gdstab.problems.Problem` at option point ``o`` (built once per process
        and config: validation, the layout and every cell share it)."""
        return _problem_at(self, o)

    # --- identity ----------------------------------------------------------------------------
    def __hash__(self) -> int:  # the options are mappings: hash the canonical form (equal configs, equal hash)
        return hash(self.canonical_json())

    def to_dict(self) -> dict[str, Any]:
        """Plain data (the TOML schema), canonical: equal configs give equal dicts."""
        prob: dict[str, Any] = {}
        if self.problem.name is not None:
            prob["name"] = self.problem.name
        if self.problem.expression is not None:
            prob["expression"] = self.problem.expression
        if self.problem.variables is not None:
            prob["variables"] = list(self.problem.variables)
        if self.problem.min_value is not None:
            prob["min_value"] = self.problem.min_value
        for key in ("model", "data", "samples", "objective", "model_sha256"):
            if getattr(self.problem, key) is not None:
                prob[key] = getattr(self.problem, key)
        if self.problem.options:
            prob["options"] = {k: self.problem.options[k] for k in sorted(self.problem.options)}
        grid: dict[str, Any] = {"eta": list(self.eta), "inits": self.inits}
        if self.box is not None:
            grid["box"] = list(self.box)
        if self.options:
            grid["options"] = {k: list(v) for k, v in self.options.items()}
        out = {
            "problem": prob,
            "grid": grid,
            "run": {
                "steps": self.steps,
                "seed": self.seed,
                "dtype": self.dtype,
                "record_every": self.record_every,
                "backend": self.backend,
                "store_theta": self.store_theta,
                "cell_inits": self.cell_inits,
                "cell_etas": self.cell_etas,
                **({"batch_size": self.batch_size} if self.batch_size else {}),
            },
            "criteria": self.criteria.to_dict(),
        }
        if self.adaptive is not None:  # (absent: the digest of a config from before adaptive grids)
            out["adaptive"] = self.adaptive.to_dict()
        if not self.optimizer.is_gd:  # (a GD config has no table: its digest is that of older versions)
            # (a swept hyperparameter lives in grid.options only)
            out["optimizer"] = {k: v for k, v in self.optimizer.to_dict().items() if k not in self.options}
        return out

    def canonical_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """SHA-256 of the canonical form: a store made for another config has another digest."""
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()

    def to_toml(self) -> str:
        """The config as TOML text (round-trips through :func:`load_config`)."""
        return _to_toml(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SweepConfig":
        return _parse(data)


@functools.lru_cache(maxsize=64)
def _problem_at(cfg: SweepConfig, o: int):
    return cfg.problem.build(cfg.problem_options(o))


def load_config(source: str | Path | Mapping[str, Any]) -> SweepConfig:
    """A :class:`SweepConfig` from a TOML file path, TOML text, or an already-parsed mapping."""
    if isinstance(source, Mapping):
        return _parse(source)
    base = None  # a model file in the config is relative to the config's folder
    if isinstance(source, Path) or (isinstance(source, str) and "\n" not in source and source.endswith(".toml")):
        path = Path(source)
        base = path.resolve().parent
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"Cannot read the sweep config {str(path)!r}: {exc.strerror}.") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"The sweep config {str(path)!r} must be a TOML text file (UTF-8); byte {exc.start} "
                              f"is not text.") from None
    else:
        text = str(source)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"The sweep config is not valid TOML: {exc}.") from None
    except RecursionError:  # arrays or inline tables nested thousands of levels deep
        raise ConfigError("The sweep config is not usable: its arrays or tables are nested too deeply.") from None
    return _parse(data, base)


_TOP = {"problem": "table", "grid": "table", "run": "table", "criteria": "table", "optimizer": "table",
        "adaptive": "table"}
_PROBLEM = {
    "name": "string",
    "expression": "string",
    "model": "string FILE.py:FACTORY (relative to the config's folder)",
    "data": "string",
    "samples": "int",
    "objective": "string",
    "model_sha256": "string",
    "variables": "list of strings",
    "min_value": "float",
    "options": "table",
}
_GRID = {"eta": "string or list of floats", "inits": "int", "box": "list of floats", "options": "table of lists"}
_RUN = {
    "steps": "int",
    "seed": "int",
    "dtype": "string",
    "record_every": "int",
    "backend": "string",
    "store_theta": "bool",
    "cell_inits": "int",
    "cell_etas": "int",
    "batch_size": "int",
}
_CRITERIA_TYPES = {f.name: ("int" if f.type in ("int", int) else "float") for f in fields(Criteria)}


def _parse(data: Mapping[str, Any], base: Path | None = None) -> SweepConfig:
    try:
        return _parse_checked(data, base)
    except ConfigError:
        raise
    except InvalidParameterError as exc:  # from the spec parsers and problem factories
        raise ConfigError(str(exc)) from None


def _parse_checked(data: Mapping[str, Any], base: Path | None = None) -> SweepConfig:
    _check_keys(data, _TOP, "")
    for required in ("problem", "grid", "run"):
        if required not in data:
            raise ConfigError(f"The sweep config needs a [{required}] table.")
    spec = _parse_model(data["problem"], base) if "model" in data.get("problem", {}) else _parse_problem(data["problem"])
    rule = _parse_optimizer(data.get("optimizer", {"name": "gd"}))
    grid = _parse_grid(data["grid"], spec, rule, fixed_hyper=set(data.get("optimizer", {})) - {"name"})
    run = _parse_run(data["run"])
    adaptive = None
    if "adaptive" in data:
        adaptive = parse_adaptive(data["adaptive"])
        run = _adaptive_cells(run, grid["inits"])
    cfg = SweepConfig(problem=spec, **grid, **run, criteria=_parse_criteria(data.get("criteria", {}), run["dtype"]),
                      optimizer=rule, adaptive=adaptive)
    _check_buildable(cfg)
    return cfg


def _parse_problem(p: Any) -> ProblemSpec:
    """The [problem] table: a registered name with fixed options, or an expression."""
    from .. import problems

    _check_keys(p, _PROBLEM, "problem")
    name = p.get("name")
    expr = p.get("expression")
    if (name is None) == (expr is None):
        raise ConfigError("The [problem] table of the sweep config needs exactly one of 'name' or 'expression'.")
    variables = None
    min_value = None
    fixed: dict[str, Any] = {}
    if name is not None:
        name = _str(name, "problem.name")
        if name not in problems.available():
            raise _err("problem.name", "one of " + ", ".join(sorted(problems.available())), name)
        for key in ("variables", "min_value"):
            if key in p:
                raise ConfigError(f"The 'problem.{key}' key goes with 'problem.expression', not with 'problem.name'.")
        types = problems.OPTION_TYPES[name]
        opts = p.get("options", {})
        _check_keys(opts, types, "problem.options")
        fixed = {k: _typed_option(v, types[k], f"problem.options.{k}") for k, v in opts.items()}
    else:
        expr = _str(expr, "problem.expression")
        if "options" in p:
            raise ConfigError("The 'problem.options' table goes with 'problem.name', not with 'problem.expression'.")
        if "variables" in p:
            v = p["variables"]
            if not isinstance(v, list) or not all(isinstance(s, str) for s in v):
                raise _err("problem.variables", "a list of strings", v)
            variables = tuple(v)
        if "min_value" in p:
            min_value = _float(p["min_value"], "problem.min_value")
        problems.parse_expression(expr, variables)  # refuse a bad expression now
    return ProblemSpec(name=name, expression=expr, variables=variables, min_value=min_value, options=fixed)


def _parse_model(p: Any, base: Path | None) -> ProblemSpec:
    """The [problem] table of a user's model: ``model = "FILE.py:FACTORY"`` (relative to the
    config's folder), optional ``data``, ``samples``, ``objective``; the file's SHA-256 joins
    the config (``model_sha256``: given, it must match)."""
    _check_keys(p, _PROBLEM, "problem")
    extra = sorted(set(p) - {"model", "data", "samples", "objective", "model_sha256"})
    if extra:
        raise ConfigError(f"The 'problem.model' key goes with data, samples and objective only; got also {extra}.")
    spec = _str(p["model"], "problem.model")
    path_text, sep, attr = spec.rpartition(":")
    if not sep or not attr.isidentifier():
        raise _err("problem.model", "FILE.py:FACTORY", spec)
    path = Path(path_text)
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    if not path.is_file():
        raise _err("problem.model", "an existing Python file FILE.py:FACTORY (relative to the config's folder)", spec)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if "model_sha256" in p and p["model_sha256"] != digest:
        raise ConfigError(f"The model file {str(path)!r} changed since this config was written (SHA-256 "
                          f"{digest[:12]}... instead of {str(p['model_sha256'])[:12]}...): its results would not be "
                          f"the stored ones. Use a new --out folder for the new model.")
    samples = None if "samples" not in p else _int(p["samples"], "problem.samples", 1)
    objective = None if "objective" not in p else _str(p["objective"], "problem.objective")
    if objective not in (None, "mse", "cross_entropy"):
        raise _err("problem.objective", "'mse' or 'cross_entropy'", objective)
    data = None if "data" not in p else _str(p["data"], "problem.data")
    if data is not None and data.endswith(".npz") and not Path(data).is_absolute():
        data = str((base or Path.cwd()) / data)
    return ProblemSpec(model=f"{path.resolve()}:{attr}", data=data, samples=samples, objective=objective,
                       model_sha256=digest)


def _parse_optimizer(t: Any) -> Rule:
    """The [optimizer] table: the rule's name and its fixed hyperparameters."""
    if not isinstance(t, Mapping):
        raise _err("optimizer", "a table", t)
    name = _str(t.get("name", "gd"), "optimizer.name")
    if name not in RULES:
        raise _err("optimizer.name", "one of " + ", ".join(RULES), name)
    _check_keys(t, {"name": "string", **{k: "float" for k, _ in RULES[name]}}, "optimizer")
    return _rule(name, {k: _float(v, f"optimizer.{k}") for k, v in t.items() if k != "name"}, "optimizer")


def _rule(name: str, hyper: dict[str, float], where: str) -> Rule:
    try:
        return Rule(name, hyper)
    except InvalidParameterError as exc:  # "The 'beta' parameter of the momentum rule must be ..."
        key = next(iter(k for k in hyper if f"'{k}'" in str(exc)), "")
        raise ConfigError(f"The '{where}.{key}' parameter of the sweep config is invalid: {exc}") from None


def _parse_swept_hyper(rule: Rule, k: str, values: Any) -> tuple[float, ...]:
    """A swept hyperparameter of the rule (a list in [grid.options])."""
    key = f"grid.options.{k}"
    if not isinstance(values, list) or not values:
        raise _err(key, "a non-empty list of floats (one per grid point)", values)
    vals = tuple(_float(v, key) for v in values)
    for v in vals:
        _rule(rule.name, {**dict(rule.hyper), k: v}, "grid.options")
    if len(set(vals)) != len(vals):
        raise _err(key, "distinct values", values)
    return vals


def _parse_grid(g: Any, spec: ProblemSpec, rule: Rule = GD, fixed_hyper: set[str] = frozenset()) -> dict[str, Any]:
    """The [grid] table: step sizes, initialisations, box, swept options (problem options, and
    hyperparameters of ``rule`` that are not among the ``fixed_hyper`` of its [optimizer] table)."""
    from .. import problems
    from ..specs import parse_eta

    name, expr, fixed = spec.name, spec.expression, spec.options
    _check_keys(g, _GRID, "grid")
    if "eta" not in g or "inits" not in g:
        raise ConfigError("The [grid] table of the sweep config needs 'eta' and 'inits'.")
    eta_raw = g["eta"]
    if isinstance(eta_raw, list):
        if not eta_raw or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in eta_raw):
            raise _err("grid.eta", "a non-empty list of floats > 0, or a string spec", eta_raw)
    elif not isinstance(eta_raw, (str, int, float)) or isinstance(eta_raw, bool):
        raise _err("grid.eta", "a string spec ('0.5', '0.1,0.5', 'start:stop:num') or a list of floats", eta_raw)
    eta = tuple(float(v) for v in parse_eta(eta_raw, name="grid.eta", caller="the sweep config"))
    if len(set(eta)) != len(eta):
        raise _err("grid.eta", "distinct step sizes", eta_raw)
    inits = _int(g["inits"], "grid.inits", 1)
    if inits > 2**31 - 1:  # initialisation indices are 32-bit key material
        raise _err("grid.inits", "an int between 1 and 2**31 - 1", inits)
    box = None
    if "box" in g:
        b = g["box"]
        if not isinstance(b, list) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b):
            raise _err("grid.box", "a list of floats [low, high, ...]", b)
        box = tuple(float(v) for v in b)
    swept: dict[str, tuple[Any, ...]] = {}
    hyper = dict(RULES[rule.name])
    if "options" in g:
        if expr is not None and not (isinstance(g["options"], Mapping) and set(g["options"]) <= set(hyper)):
            raise ConfigError("The 'grid.options' table goes with 'problem.name', not with 'problem.expression' "
                              "(except the optimizer's hyperparameters).")
        types = {} if expr is not None else problems.OPTION_TYPES[name]
        _check_keys(g["options"], {**types, **{k: "list of floats (a hyperparameter of the optimizer)"
                                                for k in hyper}}, "grid.options")
        for k, values in g["options"].items():
            if k in hyper:
                if k in fixed_hyper:
                    raise ConfigError(f"The hyperparameter '{k}' is both fixed ([optimizer]) and swept (grid.options).")
                swept[k] = _parse_swept_hyper(rule, k, values)
                continue
            key = f"grid.options.{k}"
            if not isinstance(values, list) or not values:
                raise _err(key, "a non-empty list of option values (one per grid point)", values)
            if k in fixed:
                raise ConfigError(f"The option '{k}' is both fixed (problem.options) and swept (grid.options).")
            vals = tuple(_typed_option(v, types[k], key) for v in values)
            if len({json.dumps(v) for v in vals}) != len(vals):
                raise _err(key, "distinct values", values)
            swept[k] = vals
    return {"eta": eta, "inits": inits, "box": box, "options": swept}


def _parse_run(r: Any) -> dict[str, Any]:
    """The [run] table: steps, seed, dtype, records, backend, storage, SGD batch size."""
    _check_keys(r, _RUN, "run")
    if "steps" not in r:
        raise ConfigError("The [run] table of the sweep config needs 'steps'.")
    steps = _int(r["steps"], "run.steps", 1)
    if steps >= 2**31 - 1:
        raise _err("run.steps", "an int < 2**31 - 1", steps)
    seed = _int(r.get("seed", 0), "run.seed", 0)
    if seed > 2**63 - 1:
        raise _err("run.seed", "an int between 0 and 2**63 - 1", seed)
    dtype = _str(r.get("dtype", "float64"), "run.dtype")
    if dtype not in ("float64", "float32"):
        raise _err("run.dtype", "'float64' or 'float32'", dtype)
    record_every = _int(r.get("record_every", 0), "run.record_every", 0)
    if record_every > steps:
        raise _err("run.record_every", f"an int between 0 (no records) and run.steps = {steps}", record_every)
    backend = _str(r.get("backend", "auto"), "run.backend")
    if backend not in ("auto", "jax", "native"):
        raise _err("run.backend", "'auto', 'jax' or 'native'", backend)
    store_theta = r.get("store_theta", True)
    if not isinstance(store_theta, bool):
        raise _err("run.store_theta", "a bool (true or false)", store_theta)
    cell_inits = _int(r.get("cell_inits", 0), "run.cell_inits", 0)
    cell_etas = _int(r.get("cell_etas", 0), "run.cell_etas", 0)
    batch_size = _int(r.get("batch_size", 0), "run.batch_size", 0)
    return {"steps": steps, "seed": seed, "dtype": dtype, "record_every": record_every, "backend": backend,
            "store_theta": store_theta, "cell_inits": cell_inits, "cell_etas": cell_etas, "batch_size": batch_size}


def _parse_criteria(c: Any, dtype: str) -> Criteria:
    """The [criteria] table (the default tolerance follows the dtype)."""
    _check_keys(c, _CRITERIA_TYPES, "criteria")
    ckw: dict[str, Any] = {"tol": Criteria.DEFAULT_TOL[dtype]}  # the default follows the dtype
    for k, v in c.items():
        key = f"criteria.{k}"
        ckw[k] = _int(v, key, 0) if _CRITERIA_TYPES[k] == "int" else _float(v, key)
    try:
        return Criteria(**ckw)
    except InvalidParameterError as exc:
        raise ConfigError(str(exc).replace("parameter of Criteria", "parameter of the sweep config [criteria]")) from None


@dataclass(frozen=True)
class AdaptiveSpec:
    """The ``[adaptive]`` table: which fraction is refined and when to stop
    (:mod:`gdstab.sweep.adaptive`)."""

    status: str = "converged"
    halfwidth: float = 0.15
    change: float = 0.1
    coarse: int = 5
    max_trajectories: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_ADAPTIVE = {"status": "string", "halfwidth": "float", "change": "float", "coarse": "int", "max_trajectories": "int"}
#: initialisations per block of an adaptive sweep when run.cell_inits is not given: at a fraction
#: of 0 or 1 ten trajectories give a 95% Wilson half-width of 0.139 (eight: 0.162)
ADAPTIVE_BLOCK = 10


def parse_adaptive(t: Any) -> AdaptiveSpec:
    """The validated ``[adaptive]`` table (a mapping) of a sweep config."""
    from ..outcomes import status_codes

    _check_keys(t, _ADAPTIVE, "adaptive")
    default = AdaptiveSpec()
    status = _str(t.get("status", default.status), "adaptive.status")
    codes = status_codes(include_not_computed=False)
    if status not in codes:
        raise _err("adaptive.status", f"one of {', '.join(repr(k) for k in codes)}", status)
    half = _float(t.get("halfwidth", default.halfwidth), "adaptive.halfwidth")
    if not 0 < half < 0.5:
        raise _err("adaptive.halfwidth", "a float in (0, 0.5)", half)
    change = _float(t.get("change", default.change), "adaptive.change")
    if not 0 <= change < 1:
        raise _err("adaptive.change", "a float in [0, 1)", change)
    coarse = _int(t.get("coarse", default.coarse), "adaptive.coarse", 2)
    budget = _int(t.get("max_trajectories", default.max_trajectories), "adaptive.max_trajectories", 0)
    return AdaptiveSpec(status, half, change, coarse, budget)


def _adaptive_cells(run: dict[str, Any], inits: int) -> dict[str, Any]:
    """An adaptive sweep's cells: one step size each, initialisations in blocks."""
    if run["cell_etas"] > 1:
        raise _err("run.cell_etas", "0 or 1 with [adaptive] (every cell holds one step size)", run["cell_etas"])
    return {**run, "cell_etas": 1, "cell_inits": run["cell_inits"] or min(inits, ADAPTIVE_BLOCK)}


def _check_buildable(cfg: SweepConfig) -> None:
    """Build every problem of the grid once now, so that bad options fail before any work."""
    from .. import problems

    spec, batch_size, backend, box = cfg.problem, cfg.batch_size, cfg.backend, cfg.box
    for o, point in enumerate(cfg.option_points()):
        try:
            prob = cfg.problem_at(o)
        except ConfigError:
            raise
        except InvalidParameterError as exc:
            raise ConfigError(f"The problem options of the sweep config do not build a problem: {exc}") from None
        except (TypeError, ValueError, OverflowError, MemoryError) as exc:
            raise ConfigError(f"The problem options of the sweep config {dict(spec.options, **point)} do not build "
                              f"problem {spec.name!r} ({type(exc).__name__}: {str(exc)[:200]}).") from None
        if batch_size:
            if prob.batch_loss is None or not prob.n_samples:
                raise _err("run.batch_size", f"0 for problem {prob.name!r}, which has no data (SGD needs a data set)", batch_size)
            if batch_size > prob.n_samples:
                raise _err("run.batch_size", f"an int <= the number of samples ({prob.n_samples})", batch_size)
            if backend == "native":
                raise _err("run.backend", "'auto' or 'jax' with SGD (batch_size > 0)", backend)
        if box is not None:
            problems.parse_box(list(box), prob.dim, caller="the sweep config", name="grid.box")


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf") if not math.isnan(v) else "nan"
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(v)  # pragma: no cover


def _to_toml(data: Mapping[str, Any]) -> str:
    lines: list[str] = []

    def table(prefix: str, tab: Mapping[str, Any]) -> None:
        scalars = {k: v for k, v in tab.items() if not isinstance(v, Mapping)}
        subs = {k: v for k, v in tab.items() if isinstance(v, Mapping)}
        lines.append(f"[{prefix}]")
        for k, v in scalars.items():
            lines.append(f"{k} = {_toml_value(v)}")
        lines.append("")
        for k, v in subs.items():
            table(f"{prefix}.{k}", v)

    for k, v in data.items():
        table(k, v)
    return "\n".join(lines)
