"""Find, read, override and validate a study file; every mistake becomes one ConfigError."""

from __future__ import annotations

import copy
import inspect
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

from hpo.errors import ConfigError
from hpo.objectives import Objective, resolve_objective
from hpo.samplers import SAMPLERS
from hpo.spec._checker import Checker
from hpo.spec._model import BACKENDS, KEEP_MODELS, Goal, Parameter, Resources, StudySpec
from hpo.spec._stopping import parse_stopping

_TOP_KEYS = {
    "description",
    "hypothesis",
    "objective",
    "parameters",
    "objectives",
    "constraints",
    "run",
    "stopping",
}
_RUN_DEFAULTS: dict[str, Any] = {
    "trials": 20,
    "health_after": 20,
    "stop_when_unhealthy": False,
    "report": True,
    "concurrency": 1,
    "seed": 0,
    "sampler": "auto",
    "startup_trials": 10,
    "backend": "ray",
    "keep_models": "front",
    "resources": {"cpus": 1, "gpus": 0},
    "max_retries": 0,
    "heartbeat_interval": 10,
}
_PARAM_KEYS = {
    "float": {"low", "high", "log", "step"},
    "int": {"low", "high", "log", "step"},
    "categorical": {"choices"},
}


class _Loader(yaml.SafeLoader):
    """Safe YAML that also reads ``1e-5`` and ``1.2e8`` as numbers (YAML 1.2), not strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*)?\.?\d*[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def bundled_study_dir() -> Path:
    """Where the study files shipped with hpo live."""
    return Path(str(files("search_spaces")))


def find_study_file(name: str, cwd: Path | None = None) -> Path:
    """``NAME`` -> ./search_spaces/NAME.yaml, then the bundled one; a path is taken as is."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(f"no study file {name!r}")
        return path
    for folder in ((cwd or Path.cwd()) / "search_spaces", bundled_study_dir()):
        candidate = folder / f"{name}.yaml"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in bundled_study_dir().glob("*.yaml"))
    raise ConfigError(
        f"no study named {name!r} in ./search_spaces or bundled ({', '.join(known)})"
    )


def parse_assignment(text: str) -> tuple[str, Any]:
    """``"run.trials=30"`` -> ``("run.trials", 30)``; the value is read as YAML."""
    path, sep, value = text.partition("=")
    if not sep or not path.strip():
        raise ConfigError(f"--set {text!r}: expected FIELD=VALUE, e.g. run.concurrency=4")
    try:
        return path.strip(), read_yaml(value)
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {text!r}: value is not valid YAML ({exc})") from None


def load_spec(
    name_or_path: str,
    overrides: Sequence[tuple[str, Any]] = (),
    *,
    study_name: str | None = None,
) -> StudySpec:
    """Read a study file, apply ``(dotted.field, value)`` overrides in order, validate."""
    path = find_study_file(name_or_path)
    source = str(path)
    try:
        document = read_yaml(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"malformed YAML{where}: {problem}", source=source) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", source=source) from None
    return build_spec(document, study_name or path.stem, source, overrides)


STUDY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
"""Study names become folder names under ``$HPO_HOME/studies``: nothing that leaves it."""


def build_spec(
    document: Any, name: str, source: str, overrides: Sequence[tuple[str, Any]] = ()
) -> StudySpec:
    """Validate a parsed study document (e.g. the copy recorded with a study)."""
    if not isinstance(document, dict):
        raise ConfigError(
            "a study file is a mapping (objective:, parameters:, ...)", source=source
        )
    if not STUDY_NAME.fullmatch(name):
        raise ConfigError(
            f"study name {name!r} must be letters, digits, '.', '_' or '-', starting with a "
            "letter or digit (it names the study's folder)",
            source=source,
        )
    document = copy.deepcopy(document)
    for dotted, value in overrides:
        assign(document, dotted, value, source)
    return _validate(document, name, source)


def assign(document: dict[str, Any], dotted: str, value: Any, source: str) -> None:
    """Set ``a.b.c`` in the document; a field outside the top-level keys is taken inside
    ``objective.args`` (``data.train=...`` means ``objective.args.data.train=...``)."""
    if dotted.split(".", 1)[0] not in _TOP_KEYS:
        dotted = f"objective.args.{dotted}"
    *parents, leaf = dotted.split(".")
    node = document
    for i, key in enumerate(parents):
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(
                f"cannot set {dotted!r}: {'.'.join(parents[: i + 1])} is not a mapping",
                source=source,
            )
        node = child
    node[leaf] = value


def _validate(doc: dict[str, Any], name: str, source: str) -> StudySpec:
    check = Checker(source)
    check.mapping(doc, "", _TOP_KEYS)
    objective = check.mapping(doc.get("objective"), "objective", {"name", "args"})
    objective_name = check.text(objective.get("name"), "objective.name")
    args = check.mapping(objective.get("args") or {}, "objective.args")
    metrics, accepted_params = _check_objective(check, objective_name, args)

    parameters = _parameters(check, check.mapping(doc.get("parameters"), "parameters"))
    if accepted_params is not None:
        for parameter in parameters:
            if parameter.name not in accepted_params:
                raise check.fail(
                    f"parameters.{parameter.name}",
                    f"objective {objective_name!r} has no such parameter "
                    f"(it takes: {', '.join(accepted_params)})",
                )
    goals = _goals(check, doc.get("objectives"), metrics)
    constraints = check.conditions(doc.get("constraints") or [], "constraints", metrics)

    run = {**_RUN_DEFAULTS, **check.mapping(doc.get("run") or {}, "run", _RUN_DEFAULTS)}
    resources = check.mapping(run["resources"], "run.resources", {"cpus", "gpus"})
    sampler = check.text(run["sampler"], "run.sampler")
    if sampler not in SAMPLERS:
        raise check.fail(
            "run.sampler", f"unknown sampler {sampler!r} (known: {', '.join(SAMPLERS)})"
        )
    backend = run["backend"]
    if backend not in BACKENDS:
        raise check.fail(
            "run.backend", f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})"
        )
    stop_when_unhealthy = run["stop_when_unhealthy"]
    if not isinstance(stop_when_unhealthy, bool):
        raise check.fail(
            "run.stop_when_unhealthy", f"expected true or false, got {stop_when_unhealthy!r}"
        )
    keep_models = run["keep_models"]
    if keep_models not in KEEP_MODELS:
        raise check.fail(
            "run.keep_models", f"{keep_models!r} is not one of {', '.join(KEEP_MODELS)}"
        )
    if not isinstance(run["report"], bool):
        raise check.fail("run.report", f"expected true or false, got {run['report']!r}")
    resolved = copy.deepcopy(doc)
    resolved["run"] = copy.deepcopy(run)
    return StudySpec(
        name=name,
        source=source,
        objective=objective_name,
        objective_args=dict(args),
        parameters=parameters,
        goals=goals,
        constraints=constraints,
        metrics=tuple(metrics),
        trials=int(check.number(run["trials"], "run.trials", integer=True, minimum=1)),
        concurrency=int(
            check.number(run["concurrency"], "run.concurrency", integer=True, minimum=1)
        ),
        resources=Resources(
            cpus=float(check.number(resources.get("cpus", 1), "run.resources.cpus", minimum=0)),
            gpus=float(check.number(resources.get("gpus", 0), "run.resources.gpus", minimum=0)),
        ),
        seed=int(check.number(run["seed"], "run.seed", integer=True, minimum=0)),
        sampler=sampler,
        backend=backend,
        startup_trials=int(
            check.number(run["startup_trials"], "run.startup_trials", integer=True, minimum=1)
        ),
        stopping=parse_stopping(check, doc.get("stopping"), goals, metrics),
        health_after=int(
            check.number(run["health_after"], "run.health_after", integer=True, minimum=1)
        ),
        stop_when_unhealthy=stop_when_unhealthy,
        keep_models=keep_models,
        report=run["report"],
        max_retries=int(
            check.number(run["max_retries"], "run.max_retries", integer=True, minimum=0)
        ),
        heartbeat_interval=int(check.number(
            run["heartbeat_interval"], "run.heartbeat_interval", integer=True, minimum=1
        )),
        description=check.text(doc.get("description", ""), "description"),
        hypothesis=check.text(doc.get("hypothesis", ""), "hypothesis"),
        raw=resolved,
    )


def _check_objective(
    check: Checker, name: str, args: dict[str, Any]
) -> tuple[list[str], tuple[str, ...] | None]:
    try:
        cls = resolve_objective(name)
    except LookupError as exc:
        raise check.fail("objective.name", str(exc)) from None
    signature = inspect.signature(cls.__init__)
    takes_any = cls.__init__ is not Objective.__init__ and any(
        p.kind is p.VAR_KEYWORD for p in signature.parameters.values()
    )
    known_args = [
        p for p, v in signature.parameters.items() if p != "self" and v.kind is not v.VAR_KEYWORD
    ]
    for arg in args:
        if not takes_any and arg not in known_args:
            raise check.fail(
                f"objective.args.{arg}",
                f"objective {name!r} takes no argument "
                f"{arg!r} (it takes: {', '.join(known_args) or 'none'})",
            )
    try:
        instance = cls(**args)
    except (ValueError, TypeError) as exc:
        raise check.fail("objective.args", str(exc)) from None
    return list(instance.metric_names()), cls.parameters


def _parameters(check: Checker, raw: dict[str, Any]) -> tuple[Parameter, ...]:
    if not raw:
        raise check.fail("parameters", "a study needs at least one parameter")
    parameters: list[Parameter] = []
    for name, body in raw.items():
        field = f"parameters.{name}"
        body = check.mapping(body, field)
        kind = body.get("type")
        if kind not in _PARAM_KEYS:
            raise check.fail(
                f"{field}.type", f"{kind!r} is not a parameter type (float, int, categorical)"
            )
        check.mapping(body, field, _PARAM_KEYS[kind] | {"type", "when"})
        distribution = _distribution(check, field, kind, body)
        when = _condition(check, field, body.get("when"), {p.name: p for p in parameters})
        parameters.append(Parameter(name, distribution, when))
    return tuple(parameters)


def _distribution(
    check: Checker, field: str, kind: str, body: dict[str, Any]
) -> BaseDistribution:
    if kind == "categorical":
        choices = body.get("choices")
        if not isinstance(choices, list) or not choices:
            raise check.fail(f"{field}.choices", f"expected a non-empty list, got {choices!r}")
        if any(not (c is None or isinstance(c, bool | int | float | str)) for c in choices):
            raise check.fail(f"{field}.choices", "choices are numbers, strings, booleans or null")
        return CategoricalDistribution(choices)
    integer = kind == "int"
    low = check.number(body.get("low"), f"{field}.low", integer=integer)
    high = check.number(body.get("high"), f"{field}.high", integer=integer)
    if low > high:
        raise check.fail(f"{field}.low", f"{low!r} is greater than high {high!r}")
    log = body.get("log", False)
    if not isinstance(log, bool):
        raise check.fail(f"{field}.log", f"expected true or false, got {log!r}")
    step = body.get("step")
    if step is not None:
        check.number(step, f"{field}.step", integer=integer, minimum=0)
    try:
        if integer:
            return IntDistribution(int(low), int(high), log=log, step=int(step or 1))
        return FloatDistribution(
            float(low), float(high), log=log, step=None if step is None else float(step)
        )
    except ValueError as exc:
        raise check.fail(field, str(exc)) from None


def _condition(
    check: Checker, field: str, raw: Any, earlier: Mapping[str, Parameter]
) -> dict[str, tuple[Any, ...]]:
    if raw is None:
        return {}
    when: dict[str, tuple[Any, ...]] = {}
    for parent, values in check.mapping(raw, f"{field}.when").items():
        if parent not in earlier:
            raise check.fail(
                f"{field}.when.{parent}", "must name a parameter declared above this one"
            )
        allowed = tuple(values) if isinstance(values, list) else (values,)
        distribution = earlier[parent].distribution
        for value in allowed:
            if not _possible(distribution, value):
                raise check.fail(
                    f"{field}.when.{parent}", f"{value!r} is not a possible value of {parent}"
                )
        when[parent] = allowed
    return when


def _possible(distribution: BaseDistribution, value: Any) -> bool:
    if isinstance(distribution, CategoricalDistribution):
        return value in distribution.choices
    assert isinstance(distribution, FloatDistribution | IntDistribution)
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and distribution.low <= value <= distribution.high
    )


def _goals(check: Checker, raw: Any, metrics: Sequence[str]) -> tuple[Goal, ...]:
    if not isinstance(raw, list) or not raw:
        raise check.fail("objectives", f"expected a list of {{metric, direction}}, got {raw!r}")
    goals: list[Goal] = []
    for i, item in enumerate(raw):
        field = f"objectives[{i}]"
        item = check.mapping(item, field, {"metric", "direction", "ref"})
        metric = check.metric(item.get("metric"), f"{field}.metric", metrics)
        if any(goal.metric == metric for goal in goals):
            raise check.fail(f"{field}.metric", f"{metric!r} is already an objective")
        direction = item.get("direction")
        if direction not in ("maximize", "minimize"):
            raise check.fail(f"{field}.direction", f"{direction!r} is not maximize or minimize")
        ref = item.get("ref")
        goals.append(
            Goal(metric, direction, None if ref is None else check.number(ref, f"{field}.ref"))
        )
    return tuple(goals)
