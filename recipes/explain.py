"""A recipe in plain words: what it compresses, how, and who decides whether the result ships."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from compressgate.recipes.load import LoadedRecipe
from compressgate.recipes.manifest import format_args


class StageExplanation(BaseModel):
    model_config = ConfigDict(frozen=True)
    index: int
    name: str
    kind: str
    summary: str


class EvaluatorExplanation(BaseModel):
    model_config = ConfigDict(frozen=True)
    kind: str
    summary: str
    metrics: list[str]


class GateExplanation(BaseModel):
    model_config = ConfigDict(frozen=True)
    name: str
    owner: str
    after: str
    metric: str
    rule: str
    summary: str
    seeds: str = "every"
    approval: str = "none"
    power: str | None = None  # the power check at the test split's size, when one applies
    underpowered: bool = False


class RecipeExplanation(BaseModel):
    model_config = ConfigDict(frozen=True)
    file: str
    name: str
    version: int
    sha256: str
    owners: list[str]
    description: str
    baseline: str
    data: str
    seeds: list[int]
    environment: str
    stages: list[StageExplanation]
    evaluators: list[EvaluatorExplanation]
    gates: list[GateExplanation]
    power_note: str | None = None  # why the gates' power could not be checked


def explain(loaded: LoadedRecipe) -> RecipeExplanation:
    recipe = loaded.recipe
    env = recipe.environment
    last = recipe.stages[-1].name
    return RecipeExplanation(
        file=str(loaded.path),
        name=recipe.metadata.name,
        version=recipe.metadata.version,
        sha256=loaded.sha256,
        owners=list(recipe.metadata.owners),
        description=recipe.metadata.description,
        baseline=recipe.model.describe(),
        data=f"{recipe.data.loader}(seed{', ' if recipe.data.args else ''}"
        f"{format_args(recipe.data.args)})",
        seeds=list(recipe.seeds),
        environment=(
            f"pinned by {env.lock}; "
            + ("a mismatch stops the run" if env.strict else "a mismatch is recorded as a warning")
        ),
        stages=[
            StageExplanation(index=i, name=s.name, kind=s.kind, summary=s.describe())
            for i, s in enumerate(recipe.stages, start=1)
        ],
        evaluators=[
            EvaluatorExplanation(
                kind=spec.kind, summary=spec.describe(), metrics=list(spec.metric_names())
            )
            for spec in recipe.evaluator_specs()
        ],
        gates=[
            GateExplanation(
                name=g.name,
                owner=g.owner,
                after=g.after or last,
                metric=g.metric,
                rule=g.rule,
                summary=g.describe(),
                seeds=g.seeds,
                approval=g.approval,
            )
            for g in recipe.gates
        ],
    )


def render_text(explanation: RecipeExplanation) -> str:
    e = explanation
    lines = [
        f"Recipe {e.name} v{e.version} ({e.file}, sha256 {e.sha256[:16]}…)",
        f"Owners: {', '.join(e.owners)}",
    ]
    if e.description:
        lines.append(f"Purpose: {e.description.strip()}")
    lines += [
        f"Baseline: {e.baseline}",
        f"Data: {e.data}; seeds {', '.join(map(str, e.seeds))}",
        f"Environment: {e.environment}",
        "",
        "Stages, in order:",
    ]
    lines += [f"  {s.index}. {s.name} [{s.kind}]: {s.summary}" for s in e.stages]
    lines += ["", "Evidence, measured after every stage against the baseline:"]
    for evaluator in e.evaluators:
        lines.append(f"  - {evaluator.kind}: {evaluator.summary}")
        lines.append(f"    metrics: {', '.join(evaluator.metrics)}")
    lines += ["", "Gates:" if e.gates else "Gates: none (nothing stops a variant)"]
    for g in e.gates:
        policy = "" if g.seeds == "every" else f" (seeds: {g.seeds})"
        signed = "; needs its owner's signed approval" if g.approval == "required" else ""
        lines.append(
            f"  - {g.name}, owned by {g.owner}, after stage {g.after}{policy}: {g.summary}{signed}"
        )
        if g.power:
            lines.append(f"    {'UNDERPOWERED: ' if g.underpowered else 'power: '}{g.power}")
    if e.power_note:
        lines.append(f"  ({e.power_note})")
    return "\n".join(lines)
