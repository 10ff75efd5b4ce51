"""On-demand evaluation: `compressgate evaluate VARIANT --against BASELINE`.

The variant is named by a prefix of its artifact sha256 and found in the catalog. It is read
back from the artifact store (digests checked), its seed's data is loaded again through the
recorded recipe (whose bytes must be the ones the run verified, and whose test split must have
the recorded digest), and the recipe's per-stage evaluators, or those named with `--only`,
compare it with the baseline of the same run and seed, or with the variant given by
`--against`, on the variant's test split. Nothing is written.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel

from compressgate.evaluators.base import EvalContext, Subject, evaluate_stage, flatten
from compressgate.evaluators.results import Estimate, EvaluationResult
from compressgate.recipes.data import load_splits
from compressgate.recipes.evaluation import (
    ACROSS_SEEDS,
    EVALUATOR_KINDS,
    OPTIONLESS_EVALUATORS,
    EvaluatorSpec,
    PluginEvaluatorSpec,
)
from compressgate.recipes.load import load_recipe
from compressgate.recipes.manifest import Recipe
from compressgate.recipes.models import Variant, allowed_modules
from compressgate.recipes.trust import DEFAULT_MODULES, TRUST_FILE_NAME, load_trust
from compressgate.registry.catalog.records import RunRecord, StageRecord
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.catalog.store import Artifact, ArtifactStore
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from compressgate.registry.run.determinism import THREADS, deterministic
from compressgate.registry.run.engine import load_run_plugins, split_digest
from compressgate.registry.run.reproduce import recorded_recipe
from compressgate.registry.run.variants import BASELINE, load_variant, subject_of

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


def locate(catalog: Catalog, prefix: str, what: str) -> Located:
    """The recorded stage whose artifact digest starts with `prefix` (newest record first)."""
    digest = prefix.lower()
    if not _PREFIX.match(digest):
        raise ManifestError(
            f"{what} '{prefix}' is not a sha256 prefix",
            hint="give at least 6 hex digits of an artifact digest (stages[].artifact_sha256)",
        )
    variant = catalog.variant(digest)
    run = catalog.run(variant.run_id)
    return Located(run, run.stage(variant.seed, variant.stage))


def _specs(recipe: Recipe, only: Sequence[str]) -> list[EvaluatorSpec]:
    declared = {spec.kind: spec for spec in recipe.evaluator_specs()}
    if not only:
        return [spec for kind, spec in declared.items() if kind not in ACROSS_SEEDS]
    defaults = {spec.kind: spec for spec in OPTIONLESS_EVALUATORS}
    chosen = []
    for kind in only:
        if kind not in EVALUATOR_KINDS and not isinstance(declared.get(kind), PluginEvaluatorSpec):
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
    workspace: Path,
    variant: str,
    against: str | None = None,
    only: Sequence[str] = (),
    *,
    catalog: str | None = None,
    trust_path: Path | None = None,
) -> OnDemandEvaluation:
    """Run evaluators on a stored variant against a baseline; see the module docstring."""
    with Catalog(catalog_url(workspace, catalog), create=False) as records:
        target = locate(records, variant, "variant")
        run, stage, seed = target.run, target.stage, target.stage.seed
        if against is None:
            other = Located(run, run.stage(seed, BASELINE))
        else:
            other = locate(records, against, "--against")
    path = recorded_recipe(run)
    # The trust file beside the recorded recipe (or `trust_path`) allow-lists its modules.
    found = trust_path or path.parent / TRUST_FILE_NAME
    trust = load_trust(found) if trust_path is not None or found.is_file() else None
    modules = trust.modules if trust is not None else DEFAULT_MODULES
    recipe = load_recipe(path, trust=trust).recipe
    specs = _specs(recipe, only)
    plugins = load_run_plugins(recipe, trust, str(path))
    base = path.parent.resolve()
    store = ArtifactStore(workspace)
    with (
        deterministic(THREADS),
        allowed_modules(modules),
        tempfile.TemporaryDirectory(prefix="compressgate-eval-") as tmp,
    ):
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
        results = evaluate_stage(specs, candidate, reference, splits, ctx, plugins)
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
