"""Finished runs recorded straight into a catalog, as the executor records them, without
running a recipe: the recipe's exact bytes, each stage's variant (baseline, distill, int8), each
seed's judgement of every gate and the run-level gate decision its seeds policy makes of them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from compressgate.evaluators.results import Estimate
from compressgate.gates.review import GateDecision
from compressgate.recipes.load import parse_recipe
from compressgate.recipes.manifest import GateSpec
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord
from compressgate.registry.catalog.repository import Catalog, JudgementRecord
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.run.judging import judge_for_catalog as judge_gate

STAGES = ("baseline", "distill", "int8")

RECIPE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: digits, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  train: {epochs: 3, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [0]
stages:
  - name: distill
    kind: distill
    student: {factory: compressgate.recipes.examples.digits:build_student}
    epochs: 4
    lr: 0.003
  - {name: int8, kind: quantize, method: static, calibration_samples: 64}
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.9, approval: APPROVAL}
"""


def recipe_file(path: Path, *, approval: str = "none", after: str | None = None) -> Path:
    """The recipe the runs record: one 'accuracy' gate (interval above 0.9), on int8 unless
    `after` names another stage, needing its owner's approval with `approval='required'`."""
    text = RECIPE.replace("APPROVAL", approval)
    if after is not None:
        text = text.replace("approval:", f"after: {after}, approval:")
    path.write_text(text)
    return path


def record_run(
    url: str, run_id: str, accuracy: float, recipe: Path, *, run_level: bool = True
) -> RunRecord:
    """A finished run of `recipe` (baseline, distill, int8) whose every stage measured
    `accuracy`, its gates judged as the executor judges them: per seed, then by seeds policy
    (without `run_level`: per seed only, as runs were recorded before catalog schema v2)."""
    content = recipe.read_bytes()
    parsed, _ = parse_recipe(content, str(recipe))
    record = RunRecord(
        run_id=run_id,
        recipe=RecipeRef(
            name=parsed.metadata.name,
            version=parsed.metadata.version,
            sha256=sha256_bytes(content),
            path=str(recipe),
            signers=[],
        ),
        status="succeeded",
        started_at="2026-11-23T10:00:00Z",
        finished_at="2026-11-23T10:01:00Z",
        workspace="/ws",
        seeds=list(parsed.seeds),
    )
    parent = None
    for index, name in enumerate(STAGES):
        sha = f"{run_id[-6:]}{index:02d}".ljust(64, "0")
        estimate = Estimate(
            estimate=accuracy,
            ci_low=accuracy - 0.02,
            ci_high=accuracy + 0.02,
            n=450,
            method="wilson",
            higher_is_better=True,
        )
        record.stages.append(
            StageRecord(
                seed=0,
                name=name,
                kind=name if index == 0 else "distill" if index == 1 else "quantize",
                status="done",
                format="onnx" if name == "int8" else "torch",
                artifact_sha256=sha,
                parent_sha256=parent,
                size_bytes=1000 - index * 300,
                metrics={"accuracy": estimate},
            )
        )
        parent = sha
    decisions, verdicts = judged(record, parsed.gates, parsed.stages[-1].name)
    with Catalog(url) as catalog:
        catalog.record_run_start(
            record, recipe_content=content.decode("utf-8"), envelope="{}", lock_sha256=""
        )
        for stage in record.stages:
            catalog.record_stage(run_id, record.recipe.sha256, stage, {"name": stage.name})
        catalog.record_run_end(record, decisions, verdicts if run_level else ())
    return record


def judged(
    record: RunRecord, gates: Sequence[GateSpec], last: str
) -> tuple[list[JudgementRecord], list[GateDecision]]:
    """Each seed's judgement of each gate and each gate's decision over the seeds, as
    `compressgate.registry.run.engine` makes them."""
    decisions, verdicts = [], []
    for gate in gates:
        each, decision = judge_gate(gate, record, gate.after or last, None, "2026-11-23T10:01:00Z")
        decisions += each
        verdicts.append(decision)
    return decisions, verdicts
