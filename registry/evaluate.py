"""On-demand evaluation: `compressgate evaluate VARIANT --against BASELINE`.

The variant is named by a prefix of its artifact sha256 and found in the workspace's run
records. It is read back from the artifact store (digests checked), its seed's data is loaded
again through the recorded recipe (whose bytes must be the ones the run verified, and whose
test split must have the recorded digest), and the recipe's per-stage evaluators, or those
named with `--only`, compare it with the baseline of the same run and seed, or with the variant
given by `--against`, on the variant's test split. Nothing is written: recording evaluations is
the catalog's job.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ValidationError

from evaluators.base import EvalContext, Subject, evaluate_stage, flatten
from evaluators.results import Estimate, EvaluationResult
from recipes.evaluation import (
    ACROSS_SEEDS,
    EVALUATOR_KINDS,
    OPTIONLESS_EVALUATORS,
    EvaluatorSpec,
)
from recipes.load import load_recipe
from recipes.manifest import Recipe
from recipes.models import Variant
from registry.errors import IntegrityError, ManifestError, NotFoundError
from registry.executor import (
    BASELINE,
    THREADS,
    RunRecord,
    StageRecord,
    deterministic,
    load_splits,
    load_variant,
    recorded_recipe,
    split_digest,
    subject_of,
)
from registry.store import Artifact, ArtifactStore

_PREFIX = re.compile(r"^[0-9a-f]{6,64}$")


class OnDemandEvaluation(BaseModel):
    """A variant measured against another on the variant's test split."""

    variant: str
    stage: str
    seed: int
    run_id: str
    recipe: str
    against: str
    against_stage: str
    against_run_id: str
    evaluations: dict[str, EvaluationResult]
    metrics: dict[str, Estimate]


@dataclass(frozen=True)
class Located:
    run: RunRecord
    stage: StageRecord

    @property
    def artifact(self) -> Artifact:
        assert self.stage.artifact_sha256 is not None
        return Artifact.from_dict({"sha256": self.stage.artifact_sha256, "files": self.stage.files})


def _runs(workspace: Path) -> list[RunRecord]:
    """Every run record in the workspace, newest first (run ids start with their UTC time)."""
    runs = []
    for path in sorted((workspace / "runs").glob("*.json"), reverse=True):
        try:
            runs.append(RunRecord.model_validate_json(path.read_bytes()))
        except ValidationError as exc:
            raise IntegrityError(
                f"run record {path} is not a valid run record ({exc.error_count()} problem(s), "
                f"first: {exc.errors()[0]['msg']})",
                hint="restore it from a backup or move it out of the runs folder",
            ) from None
    return runs


def locate(runs: Sequence[RunRecord], prefix: str, what: str, workspace: Path) -> Located:
    """The stage record whose artifact digest starts with `prefix` (newest run first)."""
    digest = prefix.lower()
    if not _PREFIX.match(digest):
        raise ManifestError(
            f"{what} '{prefix}' is not a sha256 prefix",
            hint="give at least 6 hex digits of an artifact digest (stages[].artifact_sha256)",
        )
    found: dict[str, Located] = {}
    for run in runs:
        for stage in run.stages:
            sha = stage.artifact_sha256
            if stage.status == "done" and sha is not None and sha.startswith(digest):
                found.setdefault(sha, Located(run, stage))
    if not found:
        raise NotFoundError(
            f"no variant {prefix} in the run records of {workspace}",
            hint="`compressgate run --json` lists each stage's artifact_sha256",
        )
    if len(found) > 1:
        shown = ", ".join(f"{sha[:16]}… ({loc.stage.name})" for sha, loc in found.items())
        raise ManifestError(
            f"{what} '{prefix}' is ambiguous: it starts {len(found)} variants: {shown}",
            hint="give more hex digits",
        )
    return next(iter(found.values()))


def _specs(recipe: Recipe, only: Sequence[str]) -> list[EvaluatorSpec]:
    declared = {spec.kind: spec for spec in recipe.evaluator_specs()}
    if not only:
        return [spec for kind, spec in declared.items() if kind not in ACROSS_SEEDS]
    defaults = {spec.kind: spec for spec in OPTIONLESS_EVALUATORS}
    chosen = []
    for kind in only:
        if kind not in EVALUATOR_KINDS:
            raise ManifestError(
                f"unknown evaluator kind '{kind}'; known: {', '.join(EVALUATOR_KINDS)}"
            )
        if kind in ACROSS_SEEDS:
            raise ManifestError(
                f"'{kind}' compares every seed's models and is computed by `compressgate run`",
                hint="read it from the run record (exemplars)",
            )
        spec = declared.get(kind) or defaults.get(kind)
        if spec is None:
            raise ManifestError(
                f"the '{kind}' evaluator needs options the recipe does not declare",
                hint=f"declare '{kind}' under the recipe's evaluators",
            )
        chosen.append(spec)
    return chosen


def _record(run: RunRecord, seed: int, sha: str | None) -> StageRecord | None:
    for stage in run.stages:
        if stage.seed == seed and stage.artifact_sha256 == sha and stage.status == "done":
            return stage
    return None


def evaluate_variant(
    workspace: Path, variant: str, against: str | None = None, only: Sequence[str] = ()
) -> OnDemandEvaluation:
    """Run evaluators on a stored variant against a baseline; see the module docstring."""
    runs = _runs(workspace)
    target = locate(runs, variant, "variant", workspace)
    run, stage, seed = target.run, target.stage, target.stage.seed
    if against is None:
        baseline_record = run.stage(seed, BASELINE)
        other = Located(run, baseline_record)
    else:
        other = locate(runs, against, "--against", workspace)
    path = recorded_recipe(run)
    recipe = load_recipe(path).recipe
    specs = _specs(recipe, only)
    base = path.parent.resolve()
    store = ArtifactStore(workspace)
    with deterministic(THREADS), tempfile.TemporaryDirectory(prefix="compressgate-eval-") as tmp:
        scratch = Path(tmp)
        splits = load_splits(recipe, base, seed)
        recorded = run.data.get(str(seed), {}).get("test")
        if recorded != split_digest(splits.test):
            raise IntegrityError(
                f"the data loader no longer gives the test split run {run.run_id} used for "
                f"seed {seed} (digest {split_digest(splits.test)[:16]}…, recorded "
                f"{(recorded or 'nothing')[:16]}…)",
                hint="the loader or its data changed since the run; re-run the recipe",
            )

        def subject(located: Located) -> Subject:
            record = located.stage
            assert record.format is not None
            loaded = load_variant(store, located.artifact, record.format, base, scratch)
            return subject_of(store, record, loaded, _torch_ancestor(located), scratch)

        def _torch_ancestor(located: Located) -> Variant | None:
            record: StageRecord | None = located.stage
            while record is not None and record.format != "torch":
                record = _record(located.run, record.seed, record.parent_sha256)
            if record is None or record is located.stage:
                return None
            assert record.format is not None
            found = Located(located.run, record)
            return load_variant(store, found.artifact, record.format, base, scratch)

        candidate = subject(target)
        parent_record = _record(run, seed, stage.parent_sha256)
        parent = subject(Located(run, parent_record)) if parent_record is not None else None
        same = other.stage.artifact_sha256 == stage.artifact_sha256
        reference = None if same else subject(other)
        ctx = EvalContext(seed=seed, stage=stage.name, splits=splits, parent=parent)
        results = evaluate_stage(specs, candidate, reference, splits, ctx)
    assert stage.artifact_sha256 is not None and other.stage.artifact_sha256 is not None
    return OnDemandEvaluation(
        variant=stage.artifact_sha256,
        stage=stage.name,
        seed=seed,
        run_id=run.run_id,
        recipe=str(path),
        against=other.stage.artifact_sha256,
        against_stage=other.stage.name,
        against_run_id=other.run.run_id,
        evaluations=results,
        metrics=flatten(results),
    )
