"""Sweep manifest v1 (`kind: Sweep`): a search over a signed recipe's fields for the gated
Pareto frontier.

    apiVersion: compressgate/v1
    kind: Sweep
    metadata: {name, version, owners, description}
    recipe: {path, sha256}               # the base recipe, pinned by the sha256 of its bytes
    seeds: [0]                           # the trials' seeds (default: the recipe's)
    selection: {fraction, seed}          # the selection split, carved from the train split
    axes: {PATH: [value, ...]}           # e.g. stages[prune].sparsity: [0.5, 0.75]
    objectives: [{metric, stage, goal}]  # 1 to 4
    strategy: {kind: grid | random | tpe | nsga2, seed, batch}
    budget: {trials, wall_time}
    choose: {objective, constraints: [{metric, min, max}]}

The models check what a sweep says about itself (`sweep_issues` its cross-field rules);
`load_sweep` adds the checks against the base recipe: its bytes are the pinned ones, every axis
names a field the recipe has and none of its controls or measurements, and each value, applied
alone, leaves a valid recipe. A trial is a concrete recipe (`trial_recipe`); the sweep's pick is
proposed as the base recipe's next version (`proposed_recipe`), which `check_provenance`
re-derives. A sweep is signed like a recipe (`sweep.yaml.dsse.json`): its statement's subjects
are the sweep and its base recipe, and it verifies only by an author who owns both.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import posixpath
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, JsonValue, WithJsonSchema, model_validator

from compressgate.recipes.load import LoadedRecipe, load_recipe, parse_recipe, read_manifest
from compressgate.recipes.manifest import (
    MAX_SEEDS,
    FileRef,
    Loc,
    Metadata,
    MetricName,
    Name,
    Recipe,
    Sha256,
    recipe_issues,
)
from compressgate.recipes.signing import (
    Signer,
    VerifiedRecipe,
    author_statement,
    envelope_path,
    verify_recipe,
    write_envelope,
)
from compressgate.recipes.spec import Spec
from compressgate.recipes.trust import Trust
from compressgate.recipes.yamldoc import YamlDocument, dump_yaml, format_path, parse_yaml, validate
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import (
    IntegrityError,
    Issue,
    ManifestError,
    NotFoundError,
)
from compressgate.registry.kernel.keys import PrivateKey

SWEEP_PREDICATE_TYPE = "https://compressgate.dev/attestation/sweep/v1"
MAX_AXES = 16
MAX_VALUES = 64
MAX_TRIALS = 10_000
MAX_OBJECTIVES = 4
MAX_BATCH = 64

_SEGMENT = r"[A-Za-z_][A-Za-z0-9_]*(?:\[[A-Za-z0-9_-]+\])?"
_AXIS = re.compile(rf"^{_SEGMENT}(?:\.{_SEGMENT})*$")
_PART = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:\[([A-Za-z0-9_-]+)\])?$")

# What a sweep may not change: the recipe's identity, controls and measurements.
REFUSED_ROOTS: dict[str, str] = {
    "apiVersion": "it says what the manifest is",
    "kind": "it says what the manifest is",
    "metadata": "its name, version and owners say who answers for the recipe",
    "environment": "the pinned environment is what every run is reproduced in",
    "gates": "the gates are the recipe's controls",
    "budget": "the budget bounds what a run may spend",
    "seeds": "the seeds are part of the measurement; the sweep's own `seeds` picks the trials'",
    "evaluators": "the evaluators are the recipe's measurements",
}


def _axis_path(value: str) -> str:
    if not _AXIS.match(value):
        raise ValueError(
            f"'{value}' is not a field path like 'stages[prune].sparsity' or 'model.train.epochs'"
        )
    return value


AxisPath = Annotated[
    str, AfterValidator(_axis_path), WithJsonSchema({"type": "string", "pattern": _AXIS.pattern})
]
AxisValues = Annotated[tuple[JsonValue, ...], Field(min_length=1, max_length=MAX_VALUES)]
Seed = Annotated[int, Field(ge=0, lt=2**32)]


# --- the manifest ------------------------------------------------------------------------------


class BaseRecipeRef(Spec):
    """The recipe the sweep changes: its path (relative to the sweep, inside its folder) and
    the sha256 of its exact bytes."""

    path: FileRef
    sha256: Sha256


class Selection(Spec):
    """The split the trials are chosen on, carved from the train split, so that the test split
    judges only the proposed recipe."""

    fraction: float = Field(default=0.2, gt=0, le=0.5)
    seed: Seed = 0


class Objective(Spec):
    """A metric measured after a stage of the recipe, to minimize or maximize."""

    metric: MetricName
    stage: Name
    goal: Literal["minimize", "maximize"]


class Strategy(Spec):
    """How trials are chosen: every combination (grid), at random, or by a sampler (TPE for one
    objective, NSGA-II for several). `batch`: the trials asked of the sampler at once."""

    kind: Literal["grid", "random", "tpe", "nsga2"] = "grid"
    seed: Seed = 0
    batch: int = Field(default=2, ge=1, le=MAX_BATCH)


class SweepBudget(Spec):
    """What the sweep may spend: trials (grid: default its size), and seconds of wall time."""

    trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    wall_time: float | None = Field(default=None, gt=0)


class Constraint(Spec):
    """A bound a frontier variant must meet to be chosen."""

    metric: MetricName
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some_bound(self) -> Constraint:
        if self.min is None and self.max is None:
            raise ValueError("give 'min', 'max' or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"'min' ({self.min:g}) is above 'max' ({self.max:g})")
        return self


class Choose(Spec):
    """How the proposed variant is picked among the frontier: the best `objective` (default:
    the first objective) among the variants within every constraint."""

    objective: MetricName | None = None
    constraints: tuple[Constraint, ...] = ()


class Sweep(Spec):
    """A search over a signed recipe's fields for the gated Pareto frontier."""

    api_version: Literal["compressgate/v1"] = Field(alias="apiVersion")
    kind: Literal["Sweep"]
    metadata: Metadata
    recipe: BaseRecipeRef
    seeds: Annotated[tuple[Seed, ...], Field(min_length=1, max_length=MAX_SEEDS)] | None = Field(
        default=None, description="the trials' seeds, among the recipe's; default: the recipe's"
    )
    selection: Selection = Field(default_factory=Selection)
    axes: dict[AxisPath, AxisValues] = Field(
        min_length=1,
        max_length=MAX_AXES,
        description="field path (stages[NAME].FIELD, model.train.epochs, data.args.KEY, …) -> "
        "the values it takes",
        json_schema_extra={"additionalProperties": False},
    )
    objectives: tuple[Objective, ...] = Field(min_length=1, max_length=MAX_OBJECTIVES)
    strategy: Strategy = Field(default_factory=Strategy)
    budget: SweepBudget = Field(default_factory=SweepBudget)
    choose: Choose = Field(default_factory=Choose)

    def grid_size(self) -> int:
        """The number of combinations of the axes' values."""
        return math.prod(len(values) for values in self.axes.values())

    def trials(self) -> int:
        """The trials to run: `budget.trials`, or the grid's size."""
        return self.budget.trials if self.budget.trials is not None else self.grid_size()

    def chosen_objective(self) -> Objective:
        """The objective the proposed variant is the best at (`choose.objective`, else the
        first)."""
        wanted = self.choose.objective
        return next((o for o in self.objectives if o.metric == wanted), self.objectives[0])


def sweep_issues(sweep: Sweep) -> Iterator[tuple[Loc, str]]:
    """Checks across fields that the field types cannot express, each at its exact path."""
    meta = sweep.metadata
    for index, owner in enumerate(meta.owners):
        if owner in meta.owners[:index]:
            yield ("metadata", "owners", index), f"owner '{owner}' is listed twice"
    if meta.derived_from is not None:
        yield (
            ("metadata", "derived_from"),
            "a sweep is not derived from a sweep; derived_from belongs to a proposed recipe",
        )
    for index, seed in enumerate(sweep.seeds or ()):
        if seed in (sweep.seeds or ())[:index]:
            yield ("seeds", index), f"seed {seed} is listed twice"
    for path, values in sweep.axes.items():
        seen: dict[str, int] = {}
        for index, value in enumerate(values):
            key = _canonical(value)
            if key in seen:
                yield (
                    ("axes", path, index),
                    f"the value {_shown(value)} is listed twice (first at [{seen[key]}])",
                )
            seen.setdefault(key, index)
    goals: dict[str, int] = {}
    for index, objective in enumerate(sweep.objectives):
        if objective.metric in goals:  # a trial's objectives are named by their metric
            yield (
                ("objectives", index),
                f"'{objective.metric}' is already objective [{goals[objective.metric]}]; a "
                "metric is an objective once",
            )
        goals.setdefault(objective.metric, index)
    count = len(sweep.objectives)
    kind = sweep.strategy.kind
    if kind == "tpe" and count != 1:
        yield (
            ("strategy", "kind"),
            f"'tpe' optimizes exactly one objective, and the sweep has {count}: use 'nsga2' for "
            "several objectives, or keep one",
        )
    if kind == "nsga2" and count < 2:
        yield (
            ("strategy", "kind"),
            "'nsga2' searches the frontier of at least two objectives, and the sweep has 1: use "
            "'tpe' (or 'random', 'grid') for one objective, or add an objective",
        )
    size = sweep.grid_size()
    trials = sweep.budget.trials
    shape = " × ".join(str(len(v)) for v in sweep.axes.values())
    if kind == "grid" and trials is not None and trials > size:
        yield (
            ("budget", "trials"),
            f"{trials:,} trials, more than the grid's {size:,} combinations ({shape}): a grid "
            "runs each once; lower it, or leave it out to run the whole grid",
        )
    if kind == "grid" and trials is None and size > MAX_TRIALS:
        yield (
            ("axes",),
            f"the grid has {size:,} combinations ({shape}), over the {MAX_TRIALS:,} trials a "
            "sweep may run: give budget.trials, or use fewer values or a 'random', 'tpe' or "
            "'nsga2' strategy",
        )
    if kind != "grid" and trials is None:
        yield (
            ("budget", "trials"),
            f"strategy '{kind}' samples the axes: say how many trials it runs (budget.trials)",
        )
    metrics = list(dict.fromkeys(o.metric for o in sweep.objectives))
    listed = ", ".join(metrics)
    if sweep.choose.objective is not None and sweep.choose.objective not in metrics:
        yield (
            ("choose", "objective"),
            f"'{sweep.choose.objective}' is not one of the objectives ({listed})",
        )
    for index, constraint in enumerate(sweep.choose.constraints):
        if constraint.metric not in metrics:
            yield (
                ("choose", "constraints", index, "metric"),
                f"'{constraint.metric}' is not one of the objectives ({listed}); a constraint "
                "bounds a measured objective",
            )


# --- axis paths against the base recipe ---------------------------------------------------------


@dataclass(frozen=True)
class _Step:
    """One key of an axis path in the recipe's YAML data: the key, the list element selected
    after it (if any), and the model's value at the key, for where the YAML leaves it out."""

    key: str
    index: int | None
    default: Any


def parse_axis(path: str) -> list[tuple[str, str | None]]:
    """`stages[prune].sparsity` -> [("stages", "prune"), ("sparsity", None)]."""
    parts = []
    for segment in path.split("."):
        match = _PART.match(segment)
        if match is None:
            raise ValueError(f"'{path}' is not a field path")
        parts.append((match.group(1), match.group(2)))
    return parts


class _AxisError(Exception):
    pass


def resolve_axis(recipe: Recipe, path: str) -> tuple[_Step, ...]:
    """The keys `path` names in `recipe`'s YAML data; ManifestError-worthy problems raise
    `_AxisError` with the message: a refused root, a field the recipe's spec lacks, a selector
    naming no element."""
    parts = parse_axis(path)
    root = parts[0][0]
    if root in REFUSED_ROOTS:
        raise _AxisError(
            f"'{root}' cannot be swept: a sweep must not loosen the recipe's controls or its "
            f"measurements ({REFUSED_ROOTS[root]})"
        )
    if parts == [("stages", None)]:
        raise _AxisError("sweep a stage's fields (stages[NAME].FIELD), not the list of stages")
    steps: list[_Step] = []
    value: Any = recipe
    annotation: Any = Recipe
    free = False  # inside a mapping of free keys (`args`): any key is accepted
    shown = ""
    for position, (name, selector) in enumerate(parts):
        where = f"{shown}.{name}" if shown else name
        if free:
            if value is not None and not isinstance(value, dict):
                raise _AxisError(f"{shown} is {_shown(value)}, not a mapping: it has no '{name}'")
            value = value.get(name) if isinstance(value, dict) else None
            annotation = None
        else:
            model = _model_class(value, annotation)
            if model is None:
                raise _AxisError(f"{shown} is a value, not a mapping: it has no field '{name}'")
            fields = {field.alias or key: (key, field) for key, field in model.model_fields.items()}
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                owner = shown or "the recipe"
                raise _AxisError(
                    f"{owner} has no field '{name}'{hint}; fields: {', '.join(sorted(fields))}"
                )
            attribute, field = fields[name]
            value = getattr(value, attribute) if isinstance(value, BaseModel) else None
            annotation = field.annotation
            free = _is_free(annotation)
        default = _as_json(value)
        index = None
        if selector is not None:
            index, value, annotation = _select(where, name, selector, value, annotation, free)
            where = f"{where}[{selector}]"
            if not free and _model_class(value, annotation) is not None:
                if position == len(parts) - 1:
                    raise _AxisError(
                        f"{where} is a whole {_noun(name)}: sweep its fields ({where}.FIELD)"
                    )
                if parts[position + 1][0] == _selector_key(name) and position + 2 == len(parts):
                    raise _AxisError(
                        f"{where}.{_selector_key(name)} names the {_noun(name)}: gates and "
                        "objectives refer to it, so it cannot be swept"
                    )
        steps.append(_Step(name, index, default))
        shown = where
    return tuple(steps)


def _select(
    where: str, name: str, selector: str, value: Any, annotation: Any, free: bool
) -> tuple[int, Any, Any]:
    """The element of a list that `[selector]` picks: by its name (stages, gates) or kind
    (evaluators), or by its index."""
    if not isinstance(value, tuple | list):
        raise _AxisError(f"{where} is not a list: [{selector}] selects nothing")
    key = _selector_key(name)
    named = [getattr(item, key, None) for item in value] if not free else []
    if selector in named:
        index = named.index(selector)
    elif selector.isdigit() and int(selector) < len(value):
        index = int(selector)
    elif any(n is not None for n in named):
        raise _AxisError(
            f"{where}[{selector}]: no {_noun(name)} named '{selector}'; {name}: "
            f"{', '.join(str(n) for n in named)}"
        )
    else:
        raise _AxisError(f"{where}[{selector}]: no item {selector}; it has {len(value)} item(s)")
    inner = None
    if not free:
        for option in _options(annotation):
            args = getattr(option, "__args__", ())
            if getattr(option, "__origin__", None) is tuple and args:
                inner = args[0]
    return index, value[index], inner


def _selector_key(name: str) -> str:
    return "kind" if name == "evaluators" else "name"


def _noun(name: str) -> str:
    return {"stages": "stage", "gates": "gate", "evaluators": "evaluator"}.get(name, "item")


def _options(annotation: Any) -> Iterator[Any]:
    import types
    import typing

    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        yield from _options(typing.get_args(annotation)[0])
    elif origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            yield from _options(arg)
    else:
        yield annotation


def _model_class(value: Any, annotation: Any) -> type[BaseModel] | None:
    """The spec class at a point of the path: the value's own, or, where the recipe leaves a
    field unset (None), the first model its annotation admits."""
    if isinstance(value, BaseModel):
        return type(value)
    for option in _options(annotation):
        if isinstance(option, type) and issubclass(option, BaseModel):
            return option
    return None


def _is_free(annotation: Any) -> bool:
    """A mapping of free keys (`args: dict[str, JsonValue]`) or a JSON value."""
    import typing

    return any(
        typing.get_origin(option) is dict or option is JsonValue for option in _options(annotation)
    )


def _as_json(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    if isinstance(value, tuple | list):
        return [_as_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _as_json(v) for k, v in value.items()}
    return value


def apply_axis(data: dict[str, Any], steps: tuple[_Step, ...], value: JsonValue) -> None:
    """Set the field `steps` name in the recipe's YAML data to `value` (a copy), creating the
    mappings the YAML leaves out with the model's values."""
    node: Any = data
    for position, step in enumerate(steps):
        last = position == len(steps) - 1
        if last and step.index is None:
            node[step.key] = copy.deepcopy(value)
            return
        if node.get(step.key) is None:
            node[step.key] = copy.deepcopy(step.default) if step.default is not None else {}
        node = node[step.key]
        if step.index is not None:
            if last:
                node[step.index] = copy.deepcopy(value)
                return
            node = node[step.index]


# --- loading -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedSweep:
    """A validated sweep and the exact bytes it was read from."""

    path: Path
    sweep: Sweep
    data: bytes

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.data)


def read_sweep(path: Path) -> bytes:
    return read_manifest(path, what="sweep")


def parse_sweep(data: bytes, source: str) -> tuple[Sweep, YamlDocument]:
    """Parse and validate sweep bytes, with no checks against the base recipe."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(
            issues=(Issue(source, None, "", f"not UTF-8 text (byte {exc.start})"),)
        ) from None
    document = parse_yaml(text, source)
    sweep = validate(Sweep, document)
    _raise(document, list(sweep_issues(sweep)))
    return sweep, document


def load_sweep(
    path: Path,
    *,
    base: LoadedRecipe | None = None,
    trust: Trust | None = None,
    data: bytes | None = None,
) -> LoadedSweep:
    """Read and validate a sweep against its base recipe; ManifestError lists every problem.

    `base`, when given, is the base recipe already loaded; else it is loaded from the sweep's
    `recipe.path` (checked against `trust`, if given). Either way its bytes must be those the
    sweep pins (`recipe.sha256`): IntegrityError (exit 3) otherwise."""
    return _load(path, base=base, trust=trust, data=data)[0]


def _load(
    path: Path,
    *,
    base: LoadedRecipe | None = None,
    trust: Trust | None = None,
    data: bytes | None = None,
) -> tuple[LoadedSweep, LoadedRecipe]:
    if data is None:
        data = read_sweep(path)
    sweep, document = parse_sweep(data, str(path))
    if base is None:
        base_path = base_recipe_path(path, sweep, document)
        base_data = base_path.read_bytes()
        _check_pin(path, sweep, document, base_path, sha256_bytes(base_data))
        base = load_recipe(base_path, trust=trust, data=base_data)
    else:
        _check_pin(path, sweep, document, base.path, base.sha256)
    _raise(document, list(base_issues(sweep, base, trust)))
    return LoadedSweep(path, sweep, data), base


def base_recipe_path(path: Path, sweep: Sweep, document: YamlDocument) -> Path:
    """The base recipe's file: inside the sweep's folder, and there."""
    ref = sweep.recipe.path
    root = path.parent.resolve()
    target = path.parent / ref
    try:
        resolved = target.resolve()
    except (OSError, RuntimeError):
        _raise(document, [(("recipe", "path"), f"'{ref}' cannot be resolved: a link loop")])
    if not resolved.is_relative_to(root):
        _raise(document, [(("recipe", "path"), f"'{ref}' resolves outside the sweep's folder")])
    if not resolved.is_file():
        _raise(document, [(("recipe", "path"), f"recipe '{ref}' not found beside the sweep")])
    return target


def _check_pin(
    path: Path, sweep: Sweep, document: YamlDocument, base_path: Path, actual: str
) -> None:
    if actual != sweep.recipe.sha256:
        line, _ = document.locate(("recipe", "sha256"))
        raise IntegrityError(
            f"{path}:{line} recipe.sha256: the base recipe {base_path} has sha256 {actual}, and "
            f"the sweep pins {sweep.recipe.sha256}",
            hint="if the recipe's change is meant, pin its new sha256 in the sweep and sign it",
        )


def _raise(document: YamlDocument, problems: list[tuple[Loc, str]]) -> None:
    if problems:
        issues = [
            Issue(document.source, *document.locate(loc), message) for loc, message in problems
        ]
        issues.sort(key=lambda issue: issue.line or 0)
        raise ManifestError(issues=tuple(issues))


def base_issues(sweep: Sweep, base: LoadedRecipe, trust: Trust | None) -> Iterator[tuple[Loc, str]]:
    """The sweep against its base recipe: the seeds among the recipe's, objectives after its
    stages on metrics it measures, axes naming fields it has, and each value, applied alone
    with the trials' seeds, a valid recipe."""
    recipe = base.recipe
    for index, seed in enumerate(sweep.seeds or ()):
        if seed not in recipe.seeds:
            yield (
                ("seeds", index),
                f"seed {seed} is not one of the recipe's seeds "
                f"({', '.join(map(str, recipe.seeds))})",
            )
    stages = [stage.name for stage in recipe.stages]
    metrics = recipe.metric_names()
    plugins = [s for s in recipe.evaluator_specs() if hasattr(s, "provides")]
    for index, objective in enumerate(sweep.objectives):
        if objective.stage not in stages:
            yield (
                ("objectives", index, "stage"),
                f"no stage is named '{objective.stage}'; stages: {', '.join(stages)}",
            )
        given = objective.metric in metrics or any(s.provides(objective.metric) for s in plugins)
        if not given:
            close = difflib.get_close_matches(objective.metric, metrics, n=2, cutoff=0.6)
            hint = f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            yield (
                ("objectives", index, "metric"),
                f"the recipe's evaluators give no metric '{objective.metric}'"
                + (f"; {hint}" if hint else "; `compressgate recipe explain` lists them"),
            )
    resolved: dict[str, tuple[_Step, ...]] = {}
    for path in sweep.axes:
        try:
            resolved[path] = resolve_axis(recipe, path)
        except _AxisError as exc:
            yield ("axes", path), str(exc)
    yield from _value_issues(sweep, base, trust, resolved)


def _value_issues(
    sweep: Sweep, base: LoadedRecipe, trust: Trust | None, resolved: dict[str, tuple[_Step, ...]]
) -> Iterator[tuple[Loc, str]]:
    """Each axis value applied alone to the base recipe, checked as the recipe is loaded; only
    what the value adds to the base's own findings counts (a base loaded with a trust file the
    sweep was not given may name modules only that file allows)."""
    data = base_data(base)
    known = set(_recipe_problems(base, data, trust))
    for path, steps in resolved.items():
        for value in sweep.axes[path]:
            trial = copy.deepcopy(data)
            apply_axis(trial, steps, value)
            added = [p for p in _recipe_problems(base, trial, trust) if p not in known]
            if added:
                yield (
                    ("axes", path),
                    f"the value {_shown(value)} makes the recipe invalid: {_said(added)}",
                )


def trial_seed_issues(sweep: LoadedSweep, base: LoadedRecipe) -> tuple[str, ...]:
    """What the trials' seeds (`seeds`, fewer than the recipe's) leave a trial recipe unable to
    do, as `FIELD: MESSAGE`: an evaluator that compares models across seeds, a gate judged on
    the mean over the seeds. A trial recipe is valid but for these; the driver skips them."""
    return tuple(_said([p]) for p in sorted(_seed_problems(sweep.sweep, base)))


def _seed_problems(sweep: Sweep, base: LoadedRecipe) -> set[tuple[str, str]]:
    if sweep.seeds is None:
        return set()
    data = base_data(base)
    before = _model_problems(data)
    data["seeds"] = list(sweep.seeds)
    return _model_problems(data) - before


def _model_problems(data: dict[str, Any]) -> set[tuple[str, str]]:
    try:
        recipe, _ = parse_recipe(dump_yaml(data).encode("utf-8"), "recipe")
    except ManifestError as exc:
        return {(i.path, i.message) for i in exc.issues}
    return {(format_path(loc), message) for loc, message in recipe_issues(recipe)}


def _said(problems: list[tuple[str, str]]) -> str:
    return "; ".join(f"{path}: {message}" if path else message for path, message in problems)


def _recipe_problems(
    base: LoadedRecipe, data: dict[str, Any], trust: Trust | None
) -> list[tuple[str, str]]:
    """(field, message) of every problem `load_recipe` finds in the recipe `data`, as if it
    were the base recipe's file."""
    try:
        load_recipe(base.path, trust=trust, data=dump_yaml(data).encode("utf-8"))
    except ManifestError as exc:
        return [(i.path, i.message) for i in exc.issues] or [("", str(exc))]
    return []


def base_data(base: LoadedRecipe) -> dict[str, Any]:
    """The base recipe's YAML data (a fresh copy)."""
    data: dict[str, Any] = parse_yaml(base.data.decode("utf-8"), str(base.path)).data
    return data


# --- trials and proposals ----------------------------------------------------------------------


def trial_params(sweep: LoadedSweep, params: Mapping[str, JsonValue]) -> dict[str, JsonValue]:
    """`params` in the axes' order, each as the axis spells the value; ManifestError if an axis
    is missing, a key is no axis, or a value is not among its axis's."""
    axes = sweep.sweep.axes
    problems = [f"no value for the axis '{path}'" for path in axes if path not in params]
    problems += [f"'{key}' is not an axis of the sweep" for key in params if key not in axes]
    chosen: dict[str, JsonValue] = {}
    for path, values in axes.items():
        if path not in params:
            continue
        wanted = _canonical(params[path])
        match = [value for value in values if _canonical(value) == wanted]
        if not match:
            listed = ", ".join(_shown(v) for v in values)
            problems.append(f"{path}: {_shown(params[path])} is not one of its values ({listed})")
        else:
            chosen[path] = match[0]
    if problems:
        raise ManifestError(f"{sweep.path}: {'; '.join(problems)}")
    return chosen


def _derived(
    sweep: LoadedSweep, base: LoadedRecipe, chosen: dict[str, JsonValue], trial: int, sweep_id: str
) -> dict[str, Any]:
    meta, base_meta = sweep.sweep.metadata, base.recipe.metadata
    return {
        "sweep": {"name": meta.name, "version": meta.version, "sha256": sweep.sha256},
        "sweep_id": sweep_id,
        "trial": trial,
        "recipe": {"name": base_meta.name, "version": base_meta.version, "sha256": base.sha256},
        "params": chosen,
    }


def _derive(
    sweep: LoadedSweep,
    base: LoadedRecipe,
    params: Mapping[str, JsonValue],
    *,
    trial: int,
    sweep_id: str,
    proposed: bool,
) -> dict[str, Any]:
    if trial < 0:
        raise ManifestError(f"trial {trial}: a trial number is 0 or more")
    chosen = trial_params(sweep, params)
    data = base_data(base)
    for path, value in chosen.items():
        apply_axis(data, resolve_axis(base.recipe, path), value)
    meta = sweep.sweep.metadata
    metadata = data["metadata"]
    if proposed:
        metadata["version"] = base.recipe.metadata.version + 1
        said = base.recipe.metadata.description.rstrip("\n")
        line = f"Proposed by trial {trial} of sweep {meta.name} v{meta.version} ({sweep_id})."
        metadata["description"] = f"{said}\n{line}" if said else line
    else:
        if sweep.sweep.seeds is not None:
            data["seeds"] = list(sweep.sweep.seeds)
        metadata["description"] = f"trial {trial} of sweep {meta.name} v{meta.version}"
    metadata["derived_from"] = _derived(sweep, base, chosen, trial, sweep_id)
    return data


def _checked(
    data: dict[str, Any],
    source: str,
    ignored: set[tuple[str, str]] | None = None,
) -> tuple[bytes, Recipe]:
    """Dumped recipe data, validated as the Recipe model and its cross-field rules (but for
    the `ignored` (field, message) problems)."""
    text = dump_yaml(data).encode("utf-8")
    recipe, document = parse_recipe(text, source)
    problems = [
        (loc, message)
        for loc, message in recipe_issues(recipe)
        if (format_path(loc), message) not in (ignored or set())
    ]
    if problems:
        issues = [Issue(source, *document.locate(loc), message) for loc, message in problems]
        raise ManifestError(issues=tuple(issues))
    return text, recipe


def trial_recipe(
    sweep: LoadedSweep,
    base: LoadedRecipe,
    params: Mapping[str, JsonValue],
    *,
    trial: int,
    sweep_id: str = "",
) -> tuple[bytes, Recipe]:
    """The concrete recipe of one trial: the base recipe with each axis set to `params[axis]`,
    the sweep's seeds, a description naming the trial, and `metadata.derived_from`. The same
    inputs give the same bytes, whatever order `params` come in; ManifestError if the result
    is not a valid recipe (a combination of values can be where no value alone is), but for
    what the sweep's fewer seeds cause (`trial_seed_issues`)."""
    data = _derive(sweep, base, params, trial=trial, sweep_id=sweep_id, proposed=False)
    name = sweep.sweep.metadata.name
    ignored = _seed_problems(sweep.sweep, base)
    return _checked(data, f"trial {trial} of sweep {name} ({sweep.path})", ignored)


def proposed_recipe(
    sweep: LoadedSweep,
    base: LoadedRecipe,
    params: Mapping[str, JsonValue],
    *,
    trial: int,
    sweep_id: str,
) -> bytes:
    """What `sweep propose` writes for the author to sign: the base recipe's next version with
    the trial's values (and the base's seeds), its provenance in `metadata.derived_from`."""
    data = _derive(sweep, base, params, trial=trial, sweep_id=sweep_id, proposed=True)
    meta = sweep.sweep.metadata
    text, _ = _checked(data, f"the recipe proposed by trial {trial} of sweep {meta.name}")
    header = (
        f"# Proposed by compressgate sweep propose from trial {trial} of sweep {meta.name} "
        f"v{meta.version} (sha256 {sweep.sha256}): sign and submit it for review.\n"
    )
    return header.encode("utf-8") + text


def check_provenance(recipe: Recipe, sweep: LoadedSweep, base: LoadedRecipe) -> None:
    """A recipe whose `metadata.derived_from` names this sweep must be exactly what the sweep
    proposed from that trial: IntegrityError naming the first field that differs."""
    meta = recipe.metadata
    who = f"recipe {meta.name} v{meta.version}"
    derived = meta.derived_from
    if derived is None:
        raise IntegrityError(f"{who} names no sweep it was derived from (metadata.derived_from)")
    sweep_meta, base_meta = sweep.sweep.metadata, base.recipe.metadata
    for field, ref, name, version, sha in (
        ("sweep", derived.sweep, sweep_meta.name, sweep_meta.version, sweep.sha256),
        ("recipe", derived.recipe, base_meta.name, base_meta.version, base.sha256),
    ):
        if (ref.name, ref.version, ref.sha256) != (name, version, sha):
            raise IntegrityError(
                f"{who}: metadata.derived_from.{field} names {ref.name} v{ref.version} (sha256 "
                f"{ref.sha256}), not {name} v{version} (sha256 {sha})"
            )
    try:
        text = proposed_recipe(
            sweep, base, derived.params, trial=derived.trial, sweep_id=derived.sweep_id
        )
    except ManifestError as exc:
        raise IntegrityError(
            f"{who}: metadata.derived_from.params cannot be re-derived: {exc}"
        ) from None
    expected = parse_recipe(text, "the proposed recipe")[0]
    found = _first_difference(
        expected.model_dump(mode="json", by_alias=True),
        recipe.model_dump(mode="json", by_alias=True),
        (),
    )
    if found is not None:
        loc, want, have = found
        raise IntegrityError(
            f"{who} differs from what trial {derived.trial} of sweep {sweep_meta.name} "
            f"v{sweep_meta.version} proposed, first at {format_path(loc)}: {_shown(have)}, "
            f"proposed {_shown(want)}",
            hint="a proposed recipe is signed as proposed; change the sweep, not its proposal",
        )


_MISSING = object()


def _first_difference(want: Any, have: Any, loc: Loc) -> tuple[Loc, Any, Any] | None:
    if isinstance(want, dict) and isinstance(have, dict):
        for key in [*want, *(k for k in have if k not in want)]:
            found = _first_difference(want.get(key, _MISSING), have.get(key, _MISSING), (*loc, key))
            if found is not None:
                return found
        return None
    if isinstance(want, list) and isinstance(have, list) and len(want) == len(have):
        for index, (a, b) in enumerate(zip(want, have, strict=True)):
            found = _first_difference(a, b, (*loc, index))
            if found is not None:
                return found
        return None
    if want is _MISSING or have is _MISSING or _canonical(want) != _canonical(have):
        return loc, want, have
    return None


def _canonical(value: Any) -> str:
    """A value's JSON text, keys sorted and integral floats as integers (3.0 is 3)."""

    def plain(v: Any) -> Any:
        if isinstance(v, float) and v.is_integer():
            return int(v)
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [plain(x) for x in v]
        return v

    return json.dumps(plain(value), sort_keys=True, separators=(",", ":"))


def _shown(value: Any) -> str:
    if value is _MISSING:
        return "(absent)"
    return json.dumps(value, separators=(", ", ": "), default=str)


# --- signatures --------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerifiedSweep:
    loaded: LoadedSweep
    envelope: Path
    signers: tuple[Signer, ...]
    base: VerifiedRecipe


def sweep_subjects(loaded: LoadedSweep, base: LoadedRecipe) -> list[tuple[str, str]]:
    """The sweep file, then its base recipe by its path relative to the sweep's folder."""
    return [
        (loaded.path.name, loaded.sha256),
        (posixpath.normpath(str(loaded.sweep.recipe.path)), base.sha256),
    ]


def sweep_statement(loaded: LoadedSweep, base: LoadedRecipe) -> bytes:
    """The in-toto Statement v1 a sweep's envelope signs."""
    meta, base_meta = loaded.sweep.metadata, base.recipe.metadata
    return dsse.statement(
        sweep_subjects(loaded, base),
        SWEEP_PREDICATE_TYPE,
        {
            "sweep": {"name": meta.name, "version": meta.version},
            "recipe": {"name": base_meta.name, "version": base_meta.version},
        },
    )


def sign_sweep(path: Path, key: PrivateKey, trust: Trust | None = None) -> tuple[Path, LoadedSweep]:
    """Sign a valid sweep (PATH.dsse.json); an existing envelope over the same statement gains
    a co-signature."""
    loaded, base = _load(path, trust=trust)
    return write_envelope(path, sweep_statement(loaded, base), key), loaded


def _signed_by_authors(
    data: bytes, raw: bytes, trust: Trust, *, source: str, name: str, trust_source: str
) -> tuple[dsse.Statement, dict[Any, str], list[Any]]:
    """The statement of the sweep envelope `raw` over the sweep bytes `data`, the trust's
    author keys and those that signed it; IntegrityError says what failed."""
    return author_statement(
        data,
        raw,
        trust,
        predicate_type=SWEEP_PREDICATE_TYPE,
        what="a sweep",
        source=source,
        name=name,
        trust_source=trust_source,
    )


def check_sweep_signature(
    data: bytes,
    raw: bytes,
    trust: Trust,
    base: LoadedRecipe,
    *,
    source: str,
    name: str,
    trust_source: str = "the trust file",
) -> tuple[Signer, ...]:
    """The owners whose author keys signed the sweep bytes `data` (and its base recipe's bytes,
    `base`) in the envelope `raw`: the checks of `verify_sweep` on recorded bytes, as a report
    makes them (the base recipe's own signature is checked apart). IntegrityError otherwise."""
    statement, candidates, valid = _signed_by_authors(
        data, raw, trust, source=source, name=name, trust_source=trust_source
    )
    sweep, _ = parse_sweep(data, name)
    listed = dict(statement.subjects[1:])
    ref = posixpath.normpath(str(sweep.recipe.path))
    if listed.get(ref) != base.sha256 or sweep.recipe.sha256 != base.sha256:
        raise IntegrityError(f"{name}: its signature does not cover base recipe {base.sha256}")
    owners = set(sweep.metadata.owners) & set(base.recipe.metadata.owners)
    signers = tuple(
        Signer(candidates[key], key.keyid) for key in valid if candidates[key] in owners
    )
    if not signers:
        raise IntegrityError(f"{name}: not signed by an owner of both the sweep and its recipe")
    return signers


def verify_sweep(
    path: Path, trust: Trust, *, trust_source: str = "the trust file"
) -> VerifiedSweep:
    """Verify a sweep's envelope: an author who owns the sweep and its base recipe signed the
    sweep's and the base's current bytes, the base recipe verifies, and the sweep pins it.
    IntegrityError (exit 3) says which check failed."""
    data = read_sweep(path)
    target = envelope_path(path)
    hint = f"sign it with `compressgate recipe sign {path} --key KEY`"
    raw = dsse.read_envelope_bytes(target, signed=path, hint=hint)
    statement, candidates, valid = _signed_by_authors(
        data, raw, trust, source=str(target), name=str(path), trust_source=trust_source
    )
    sweep, document = parse_sweep(data, str(path))
    base_path = base_recipe_path(path, sweep, document)
    name = posixpath.normpath(str(sweep.recipe.path))
    listed = dict(statement.subjects[1:])
    try:
        base = verify_recipe(base_path, trust, trust_source=trust_source)
    except NotFoundError as exc:
        raise IntegrityError(
            f"{path}: its base recipe {base_path} is not signed ({exc}); a sweep searches over "
            "a signed recipe only",
            hint=exc.hint,
        ) from None
    except IntegrityError as exc:
        raise IntegrityError(
            f"{path}: its base recipe does not verify: {exc}", hint=exc.hint
        ) from None
    _check_pin(path, sweep, document, base_path, base.loaded.sha256)
    if listed.get(name) != base.loaded.sha256:
        was = listed.get(name)
        raise IntegrityError(
            f"{path}: its signature lists the base recipe {name} with sha256 {was}, not "
            f"{base.loaded.sha256}"
            if was
            else f"{path}: its base recipe {name} is not among the files its signature lists"
        )
    owners = set(sweep.metadata.owners) & set(base.loaded.recipe.metadata.owners)
    signers = tuple(
        Signer(candidates[key], key.keyid) for key in valid if candidates[key] in owners
    )
    if not signers:
        names = ", ".join(sorted({candidates[k] for k in valid}))
        raise IntegrityError(
            f"{path}: signed by {names}, not by an owner of both the sweep "
            f"({', '.join(sweep.metadata.owners)}) and its base recipe "
            f"({', '.join(base.loaded.recipe.metadata.owners)}): a sweep changes that recipe"
        )
    loaded = load_sweep(path, base=base.loaded, trust=trust, data=data)
    return VerifiedSweep(loaded, target, signers, base)
