"""The Python API: one function per CLI command, taking paths and returning result models.

The CLI parses arguments, calls one function here and prints; tests and other tools may call
these directly. Errors are `registry.errors` exceptions carrying their exit codes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from recipes.explain import RecipeExplanation, explain
from recipes.load import load_recipe
from recipes.manifest import FileRef, Recipe, iter_refs
from recipes.signing import sign_recipe as _sign_recipe
from recipes.signing import verify_recipe as _verify_recipe
from recipes.trust import Role, Trust, add_owner_key, load_trust
from registry.errors import CompressgateError, Issue, ManifestError, NotFoundError
from registry.keys import generate_keypair, load_private_key, load_public_key

if TYPE_CHECKING:
    from registry.evaluate import OnDemandEvaluation

TRUST_ENV = "COMPRESSGATE_TRUST"
TRUST_FILE_NAME = "trust.yaml"
EXAMPLES = ("digits", "digits-magnitude", "digits-qat")


class ApiResult(BaseModel):
    model_config = ConfigDict(frozen=True)


class IssueResult(ApiResult):
    file: str
    line: int | None
    path: str
    message: str


class ValidationResult(ApiResult):
    file: str
    valid: bool
    name: str | None = None
    version: int | None = None
    sha256: str | None = None
    trust: str | None = None
    exit_code: int = 0
    issues: list[IssueResult] = []


class SignResult(ApiResult):
    recipe: str
    envelope: str
    sha256: str
    keyid: str


class SignerResult(ApiResult):
    owner: str
    keyid: str


class VerifyResult(ApiResult):
    recipe: str
    name: str
    version: int
    sha256: str
    envelope: str
    trust: str
    signers: list[SignerResult]
    verified: bool = True


class KeyResult(ApiResult):
    owner: str
    keyid: str
    private_key: str
    public_key: str


class TrustResult(ApiResult):
    trust: str
    owner: str
    keyid: str
    roles: list[str]


def find_trust(recipe: Path, explicit: Path | None) -> Path | None:
    """The trust file: `--trust`, else $COMPRESSGATE_TRUST, else trust.yaml beside the recipe."""
    if explicit is not None:
        return explicit
    if os.environ.get(TRUST_ENV):
        return Path(os.environ[TRUST_ENV])
    beside = recipe.parent / TRUST_FILE_NAME
    return beside if beside.is_file() else None


def validate_recipes(
    paths: Sequence[Path], trust_path: Path | None = None
) -> list[ValidationResult]:
    """Validate each manifest; problems are reported per file, never raised."""
    records = []
    trusts: dict[Path, Trust] = {}
    for path in paths:
        found = find_trust(path, trust_path)
        try:
            if found is not None and found not in trusts:
                trusts[found] = load_trust(found)
            loaded = load_recipe(path, trust=trusts.get(found) if found else None)
        except CompressgateError as exc:
            issues = getattr(exc, "issues", ()) or (Issue(str(path), None, "", str(exc)),)
            records.append(
                ValidationResult(
                    file=str(path),
                    valid=False,
                    exit_code=exc.exit_code,
                    issues=[IssueResult(**vars(issue)) for issue in issues],
                )
            )
            continue
        meta = loaded.recipe.metadata
        records.append(
            ValidationResult(
                file=str(path),
                valid=True,
                name=meta.name,
                version=meta.version,
                sha256=loaded.sha256,
                trust=str(found) if found else None,
            )
        )
    return records


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of recipe manifest v1."""
    schema = Recipe.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://compressgate.dev/schema/recipe-v1.json"
    return schema


def explain_recipe(path: Path) -> RecipeExplanation:
    return explain(load_recipe(path))


def sign_recipe(path: Path, key_path: Path) -> SignResult:
    key = load_private_key(key_path)
    envelope, loaded = _sign_recipe(path, key)
    return SignResult(
        recipe=str(path), envelope=str(envelope), sha256=loaded.sha256, keyid=key.public.keyid
    )


def verify_recipe(path: Path, trust_path: Path | None = None) -> VerifyResult:
    found = find_trust(path, trust_path)
    if found is None:
        raise NotFoundError(
            f"no trust file for {path}",
            hint=f"pass --trust FILE, set ${TRUST_ENV}, or put {TRUST_FILE_NAME} beside the recipe",
        )
    verified = _verify_recipe(path, load_trust(found), trust_source=str(found))
    loaded = verified.loaded
    return VerifyResult(
        recipe=str(path),
        name=loaded.recipe.metadata.name,
        version=loaded.recipe.metadata.version,
        sha256=loaded.sha256,
        envelope=str(verified.envelope),
        trust=str(found),
        signers=[SignerResult(owner=s.owner, keyid=s.keyid) for s in verified.signers],
    )


def generate_keys(owner: str, out_dir: Path) -> KeyResult:
    private, public, key = generate_keypair(owner, out_dir)
    return KeyResult(owner=owner, keyid=key.keyid, private_key=str(private), public_key=str(public))


def trust_add(trust_path: Path, owner: str, key_path: Path, roles: Sequence[Role]) -> TrustResult:
    key = load_public_key(key_path)
    trust = add_owner_key(trust_path, owner, key, tuple(roles))
    return TrustResult(
        trust=str(trust_path), owner=owner, keyid=key.keyid, roles=list(trust.owners[owner].roles)
    )


def init_example(dest: Path, example: str = "digits") -> list[Path]:
    """Copy a bundled example recipe (as DEST/recipe.yaml) and the files it names into DEST."""
    if example not in EXAMPLES:
        raise ManifestError(f"unknown example '{example}'; known: {', '.join(EXAMPLES)}")
    source_dir = Path(str(resources.files("recipes.examples")))
    source = source_dir / f"{example}.yaml"
    loaded = load_recipe(source)
    copies = [(source, dest / "recipe.yaml")]
    copies += [
        (source_dir / ref, dest / ref)
        for _, ref in iter_refs(loaded.recipe)
        if isinstance(ref, FileRef)
    ]
    clashes = [str(target) for _, target in copies if target.exists()]
    if clashes:
        raise ManifestError(f"{', '.join(clashes)} already exist(s)", hint="choose an empty folder")
    for src, target in copies:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return [target for _, target in copies]


# --- running -----------------------------------------------------------------------------------

WORKSPACE_ENV = "COMPRESSGATE_WORKSPACE"
DEFAULT_WORKSPACE = Path(".compressgate")


class MetricSummary(ApiResult):
    """One metric: estimate and interval (the full evidence is in the run record)."""

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95
    method: str = ""
    unit: str = ""


class SeedSummary(ApiResult):
    """One metric of one stage over the seeds."""

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    worst: float | None = None
    worst_seed: int | None = None
    spread: float


class StageSummary(ApiResult):
    seed: int
    name: str
    kind: str
    format: str | None
    cached: bool
    artifact_sha256: str | None
    parent_sha256: str | None
    spec_sha256: str | None
    size_bytes: int | None
    params: int | None
    macs: int | None
    metrics: dict[str, MetricSummary]
    seconds: float
    eval_seconds: float
    details: dict[str, Any] = {}
    warnings: list[str] = []


class RecipeSummary(ApiResult):
    name: str
    version: int
    sha256: str
    path: str
    signers: list[str]


class RunSummary(ApiResult):
    """What `compressgate run --json` prints; the full record is at `record`."""

    run_id: str
    recipe: RecipeSummary
    status: str
    record: str
    seeds: list[int]
    stages: list[StageSummary]
    aggregate: dict[str, dict[str, SeedSummary]] = {}
    exemplars: dict[str, dict[str, Any]] = {}
    environment_mismatches: list[str] = []
    timing: dict[str, float] = {}


def workspace_dir(explicit: Path | None) -> Path:
    """`--workspace`, else $COMPRESSGATE_WORKSPACE, else ./.compressgate."""
    if explicit is not None:
        return explicit
    return Path(os.environ.get(WORKSPACE_ENV) or DEFAULT_WORKSPACE)


def _trust_for(path: Path, trust_path: Path | None) -> Path:
    found = find_trust(path, trust_path)
    if found is None:
        raise NotFoundError(
            f"no trust file for {path}: a run verifies the recipe's signature first",
            hint=f"pass --trust FILE, set ${TRUST_ENV}, or put {TRUST_FILE_NAME} beside the recipe",
        )
    return found


def summarize(record: Any, record_path: Path) -> RunSummary:
    """The run summary of a `registry.executor.RunRecord`."""
    return RunSummary(
        run_id=record.run_id,
        recipe=RecipeSummary(**record.recipe.model_dump()),
        status=record.status,
        record=str(record_path),
        seeds=record.seeds,
        stages=[
            StageSummary(
                metrics={
                    name: MetricSummary.model_validate(m.model_dump(include=_METRIC_FIELDS))
                    for name, m in stage.metrics.items()
                },
                **stage.model_dump(
                    include={
                        "seed",
                        "name",
                        "kind",
                        "format",
                        "cached",
                        "artifact_sha256",
                        "parent_sha256",
                        "spec_sha256",
                        "size_bytes",
                        "params",
                        "macs",
                        "seconds",
                        "eval_seconds",
                        "details",
                        "warnings",
                    }
                ),
            )
            for stage in record.stages
        ],
        aggregate={
            name: {
                metric: SeedSummary.model_validate(value.model_dump(include=_SEED_FIELDS))
                for metric, value in metrics.items()
            }
            for name, metrics in record.aggregate.items()
        },
        exemplars={
            name: {
                "n": result.n,
                "count": result.count,
                "fraction": MetricSummary.model_validate(
                    result.fraction.model_dump(include=_METRIC_FIELDS)
                ).model_dump(),
                "note": result.note,
            }
            for name, result in record.exemplars.items()
        },
        environment_mismatches=record.environment.get("mismatches", []),
        timing=record.timing.model_dump(),
    )


_METRIC_FIELDS = set(MetricSummary.model_fields)
_SEED_FIELDS = set(SeedSummary.model_fields)


def run_recipe(
    path: Path,
    *,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    force: bool = False,
    progress: bool = False,
    on_stage: Any = None,
) -> RunSummary:
    """Verify and run a recipe; every stage output lands in the workspace's artifact store."""
    from registry import executor

    root = workspace_dir(workspace)
    options = executor.RunOptions(
        workspace=root,
        trust=_trust_for(path, trust_path),
        force=force,
        progress=progress,
        on_stage=on_stage,
    )
    record = executor.run_recipe(path, options)
    return summarize(record, root / "runs" / f"{record.run_id}.json")


class StageComparison(ApiResult):
    seed: int
    name: str
    recorded_sha256: str | None
    reproduced_sha256: str | None
    identical: bool


class ReproduceResult(ApiResult):
    run_id: str
    reproduced_run_id: str
    identical: bool
    stages: list[StageComparison]


def reproduce_run(
    run_id: str,
    *,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    progress: bool = False,
    on_stage: Any = None,
) -> ReproduceResult:
    """Re-run a recorded run from scratch and compare every stage's artifact digest."""
    from registry import executor

    root = workspace_dir(workspace)
    original = executor.load_run(root, run_id)
    options = executor.RunOptions(
        workspace=root,
        trust=_trust_for(Path(original.recipe.path), trust_path),
        progress=progress,
        on_stage=on_stage,
    )
    _, again, comparisons = executor.reproduce(run_id, options)
    return ReproduceResult(
        run_id=run_id,
        reproduced_run_id=again.run_id,
        identical=all(c.identical for c in comparisons),
        stages=[
            StageComparison(
                seed=c.seed,
                name=c.name,
                recorded_sha256=c.recorded,
                reproduced_sha256=c.reproduced,
                identical=c.identical,
            )
            for c in comparisons
        ],
    )


# --- evaluating on demand -----------------------------------------------------------------------


def evaluate_variant(
    variant: str,
    *,
    against: str | None = None,
    only: Sequence[str] = (),
    workspace: Path | None = None,
) -> OnDemandEvaluation:
    """Measure a stored variant against a baseline with the recipe's evaluators (or `only`)."""
    from registry.evaluate import evaluate_variant as evaluate

    return evaluate(workspace_dir(workspace), variant, against, only)
