"""Plug-ins in a recipe: the installed entry point each `plugin:` names, whether the trust in force
allows its distribution, and loading it (only then).

Third-party stages and evaluators are entry points of the groups `compressgate.stages` and
`compressgate.evaluators` (`compressgate.registry.kernel.plugins`). A recipe names one with
`plugin: NAME`; it runs only when the trust policy's `plugins` lists its distribution at the
installed version (and code digest, when the policy pins one: `Trust.plugin_refusal`).

- `plugin_issues`, part of loading a recipe (`compressgate.recipes.load`: validate, sign,
  verify, run): which distribution provides each plug-in and whether it is allowed, from the
  distributions' metadata alone. Nothing is imported, allowed or not.
- `load_plugins`, when a run starts and before anything is recorded (the engine, and the worker
  of an isolated run under the trust it verified again): imports each allowed plug-in, checks
  it is a stage or an evaluator, and validates each entry's `params` with the plug-in's own
  `Params` model.
- `Plugins.record()`: what the run records (distribution, version, entry point, code sha256);
  `code_digests`, what enters the stages' cache keys (from metadata, so that `ci` can compare
  without importing), so that other plug-in code is never served a cached output.

Allowing a distribution allows the modules its entry points name, which must be its own files:
the trust's `modules` list (what factories and loaders may name) is not widened by it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from compressgate.recipes.evaluation import PluginEvaluatorSpec
from compressgate.recipes.manifest import Loc, PluginStageSpec, Recipe
from compressgate.recipes.spec import Spec
from compressgate.recipes.trust import Trust
from compressgate.recipes.yamldoc import describe, format_path
from compressgate.registry.kernel.errors import Issue, ManifestError
from compressgate.registry.kernel.plugins import (
    GROUPS,
    PLUGIN_NAME,
    Family,
    InstalledPlugin,
    installed_plugins,
)

PluginSpec = PluginStageSpec | PluginEvaluatorSpec


@dataclass(frozen=True)
class LoadedPlugin:
    """An allowed plug-in, imported: its entry point, its code digest and its class."""

    entry: InstalledPlugin
    code_sha256: str | None
    target: Any

    def record(self) -> dict[str, Any]:
        """What the run record says of it: enough to know which code ran."""
        entry = self.entry
        return {
            "family": entry.family,
            "name": entry.name,
            "group": entry.group,
            "distribution": entry.distribution,
            "version": entry.version,
            "target": entry.target,
            "code_sha256": self.code_sha256,
        }


@dataclass(frozen=True)
class Plugins:
    """The plug-ins a run loaded, by family and name (none: `Plugins()`)."""

    stages: Mapping[str, LoadedPlugin] = field(default_factory=dict)
    evaluators: Mapping[str, LoadedPlugin] = field(default_factory=dict)

    def get(self, family: Family, name: str) -> LoadedPlugin:
        loaded = (self.stages if family == "stage" else self.evaluators).get(name)
        if loaded is None:
            raise ManifestError(
                f"plug-in {family} '{name}' was not loaded under the trust in force",
                hint="plug-ins are loaded when a run starts (`compressgate run`, `submit`)",
            )
        return loaded

    def record(self) -> list[dict[str, Any]]:
        return [p.record() for p in (*self.stages.values(), *self.evaluators.values())]


def plugin_specs(recipe: Recipe) -> Iterator[tuple[Loc, Family, PluginSpec]]:
    """Every `plugin:` entry of the recipe, with where it is and its family."""
    for index, stage in enumerate(recipe.stages):
        if isinstance(stage, PluginStageSpec):
            yield ("stages", index, "plugin"), "stage", stage
    for index, spec in enumerate(recipe.evaluators):
        if isinstance(spec, PluginEvaluatorSpec):
            yield ("evaluators", index, "plugin"), "evaluator", spec


def find(family: Family, name: str) -> InstalledPlugin:
    """The installed entry point `name` of `family`'s group (metadata only: nothing imported);
    a ManifestError when none or several distributions provide it."""
    installed = [p for p in installed_plugins(family) if PLUGIN_NAME.match(p.name)]
    found = [p for p in installed if p.name == name]
    if len(found) > 1:
        raise ManifestError(
            f"plug-in {family} '{name}' is provided by several distributions "
            f"({', '.join(p.distribution for p in found)}); uninstall all but one"
        )
    if not found:
        names = [p.name for p in installed]
        close = difflib.get_close_matches(name, names, n=1)
        listing = ", ".join(p.describe() for p in installed) or "none"
        raise ManifestError(
            f"unknown {family} plug-in '{name}': no installed distribution provides it in the "
            f"entry point group {GROUPS[family]}"
            + (f" (did you mean '{close[0]}'?)" if close else "")
            + f"; installed: {listing}"
        )
    return found[0]


def refusal(entry: InstalledPlugin, trust: Trust | None) -> str | None:
    """Why the trust in force does not allow `entry`'s distribution to run, and what to do
    (None: it does)."""
    digest = entry.code_sha256()
    why: str | None
    if trust is None:
        why = "no trust policy is in force, and only a policy's plugins: may allow a plug-in"
    else:
        why = trust.plugin_refusal(entry.distribution, entry.version, digest)
    if why is None:
        return None
    rule = f"{{distribution: {entry.distribution}, version: '{entry.version}'" + (
        f", sha256: {digest}}}" if digest else "}"
    )
    listed = trust is not None and trust.plugin_rule(entry.distribution) is not None
    fix = (
        f"install the release the policy names, or an owner changes its trust.yaml plugins: "
        f"entry to {rule}"
        if listed
        else f"an owner adds {rule} to trust.yaml plugins:"
    )
    return (
        f"plug-in {entry.family} '{entry.name}' comes from {entry.distribution} "
        f"{entry.version}, and {why}; nothing of it was imported. To use it, {fix} and has the "
        "policy re-signed"
    )


def plugin_issues(recipe: Recipe, trust: Trust | None) -> list[tuple[Loc, str]]:
    """Each `plugin:` entry that no installed distribution provides, or whose distribution the
    trust does not allow, at its path. Distribution metadata only: nothing is imported.

    A recipe that runs isolated (`environment.isolate`) runs its plug-ins in the environment
    built from its lock: one not installed here is judged there, by the worker, against the
    same trust, before anything is recorded."""
    problems: list[tuple[Loc, str]] = []
    for loc, family, spec in plugin_specs(recipe):
        try:
            entry = find(family, spec.kind)
        except ManifestError as exc:
            if not (recipe.environment.isolate and not _installed_as(family, spec.kind)):
                problems.append((loc, str(exc)))
            continue
        why = refusal(entry, trust)
        if why is not None:
            problems.append((loc, why))
    return problems


def _installed_as(family: Family, name: str) -> bool:
    return any(p.name == name for p in installed_plugins(family))


def code_digests(recipe: Recipe) -> dict[str, dict[str, str | None]]:
    """What each plug-in the recipe names is here, by `family:name`: distribution, version and
    code sha256 (None where none is installed), from metadata alone. Part of the run's code
    digest (`compressgate.registry.run.engine.code_digest`): another plug-in build is another
    cache key."""
    found: dict[str, dict[str, str | None]] = {}
    for _, family, spec in plugin_specs(recipe):
        try:
            entry = find(family, spec.kind)
        except ManifestError:
            found[f"{family}:{spec.kind}"] = {"distribution": None}
            continue
        found[f"{family}:{spec.kind}"] = {
            "distribution": entry.canonical,
            "version": entry.version,
            "code_sha256": entry.code_sha256(),
        }
    return found


def load_plugins(
    recipe: Recipe, trust: Trust | None, *, source: str, bases: Mapping[Family, type]
) -> Plugins:
    """Import the recipe's plug-ins, each only after the trust allowed its distribution, check
    each is a subclass of its family's base (`bases`: `Stage`, `Evaluator`), and validate every
    entry's `params` with its `Params`; a ManifestError listing every problem otherwise."""
    loaded: dict[Family, dict[str, LoadedPlugin]] = {"stage": {}, "evaluator": {}}
    issues: list[Issue] = []
    for loc, family, spec in plugin_specs(recipe):
        where = format_path(loc)
        if spec.kind not in loaded[family]:
            try:
                loaded[family][spec.kind] = _load(find(family, spec.kind), trust, bases[family])
            except ManifestError as exc:
                issues.append(Issue(source, None, where, str(exc)))
                continue
        try:
            params_of(loaded[family][spec.kind].target, spec.params)
        except ValidationError as exc:
            model = params_model(loaded[family][spec.kind].target)
            params = format_path(loc[:-1]) + ".params"
            for detail in exc.errors(include_url=False):
                path = ".".join([params, *(str(step) for step in detail["loc"])])
                issues.append(Issue(source, None, path, describe(detail, model)))
    if issues:
        raise ManifestError(issues=tuple(issues))
    return Plugins(stages=loaded["stage"], evaluators=loaded["evaluator"])


def _load(entry: InstalledPlugin, trust: Trust | None, base: type) -> LoadedPlugin:
    why = refusal(entry, trust)
    if why is not None:  # judged again here: the trust in force now is what counts
        raise ManifestError(why)
    digest = entry.code_sha256()
    try:
        target = entry.load()
    except ManifestError:
        raise
    except Exception as exc:  # the plug-in's own import failed
        raise ManifestError(
            f"plug-in {entry.describe()}: importing {entry.module} failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not (isinstance(target, type) and issubclass(target, base)):
        raise ManifestError(
            f"plug-in {entry.describe()}: {entry.target} is not a subclass of "
            f"{base.__module__}.{base.__qualname__}"
        )
    params = getattr(target, "Params", None)
    if params is not None and not (isinstance(params, type) and issubclass(params, BaseModel)):
        raise ManifestError(
            f"plug-in {entry.describe()}: {entry.target}.Params is not a pydantic model"
        )
    return LoadedPlugin(entry, digest, target)


class NoParams(Spec):
    """The `params` of a plug-in that declares no `Params` model: none may be given."""


def params_model(target: Any) -> type[BaseModel]:
    """The model a plug-in class validates its `params` with."""
    model = getattr(target, "Params", None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else NoParams


def params_of(target: Any, params: Mapping[str, Any]) -> BaseModel:
    """A plug-in entry's `params` as its class's `Params` model takes them; pydantic's
    ValidationError when they do not fit."""
    return params_model(target).model_validate(dict(params))


# --- what is installed, and what the trust allows (`compressgate plugins`) ---------------------


class PluginRow(BaseModel):
    """One installed entry point of a plug-in group, and whether the trust allows it."""

    name: str
    family: Family
    group: str
    distribution: str
    version: str
    target: str
    location: str | None
    code_sha256: str | None
    allowed: bool
    why: str


class PluginListing(BaseModel):
    """Every installed plug-in entry point, judged by one trust file (or none)."""

    trust: str | None
    plugins: list[PluginRow]


def list_plugins(trust: Trust | None, trust_source: str | None = None) -> PluginListing:
    """Every entry point of the plug-in groups, from metadata alone (nothing is imported), each
    with what the trust says of its distribution."""
    from compressgate.recipes.evaluation import EVALUATOR_KINDS
    from compressgate.recipes.manifest import STAGE_KINDS

    installed = installed_plugins()
    builtins: dict[Family, tuple[str, ...]] = {"stage": STAGE_KINDS, "evaluator": EVALUATOR_KINDS}
    rows = []
    for entry in installed:
        digest = entry.code_sha256()
        twins = [p for p in installed if (p.family, p.name) == (entry.family, entry.name)]
        if not PLUGIN_NAME.match(entry.name) or len(entry.name) > 64:
            why: str | None = (
                f"never used: '{entry.name}' is not a plug-in name (lowercase words joined by '-')"
            )
        elif entry.name in builtins[entry.family]:
            why = f"never used: '{entry.name}' is a built-in {entry.family} kind"
        elif len(twins) > 1:
            others = ", ".join(p.distribution for p in twins if p is not entry)
            why = f"never used: {others} provide(s) '{entry.name}' too"
        elif trust is None:
            why = "refused: no trust file, and only a trust policy's plugins: may allow one"
        else:
            why = trust.plugin_refusal(entry.distribution, entry.version, digest)
            why = None if why is None else f"refused: {why}"
        rule = trust.plugin_rule(entry.distribution) if trust is not None else None
        allowed = why is None and rule is not None
        if allowed and rule is not None:
            pinned = "this exact code" if rule.sha256 else "any build of that version"
            why = f"allowed by plugins: {rule.pin()} ({pinned})"
        rows.append(
            PluginRow(
                name=entry.name,
                family=entry.family,
                group=entry.group,
                distribution=entry.distribution,
                version=entry.version,
                target=entry.target,
                location=entry.location,
                code_sha256=digest,
                allowed=allowed,
                why=why or "",
            )
        )
    return PluginListing(trust=trust_source, plugins=rows)
