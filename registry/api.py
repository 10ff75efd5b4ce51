"""The Python API: one function per CLI command, taking paths and returning result models.

The CLI parses arguments, calls one function here and prints; tests and other tools may call
these directly. Errors are `compressgate.registry.kernel.errors` exceptions carrying their exit
codes.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from compressgate.recipes.explain import RecipeExplanation, explain
from compressgate.recipes.load import load_recipe
from compressgate.recipes.manifest import FileRef, Recipe, iter_refs
from compressgate.recipes.signing import sign_recipe as _sign_recipe
from compressgate.recipes.signing import verify_recipe as _verify_recipe
from compressgate.recipes.trust import TRUST_FILE_NAME, Role, Trust, add_owner_key, load_trust
from compressgate.registry.kernel.errors import (
    CompressgateError,
    Issue,
    ManifestError,
    NotFoundError,
)
from compressgate.registry.kernel.keys import generate_keypair, load_private_key, load_public_key

if TYPE_CHECKING:
    from compressgate.registry.run.evaluate import OnDemandEvaluation

TRUST_ENV = "COMPRESSGATE_TRUST"
EXAMPLES = ("digits", "digits-magnitude", "digits-qat", "arrests-fairness", "minilm-int8")


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
    power: list[dict[str, Any]] = []  # each statistical gate's power check
    warnings: list[str] = []  # underpowered gates; a power check that could not be made


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
    paths: Sequence[Path], trust_path: Path | None = None, *, with_power: bool = True
) -> list[ValidationResult]:
    """Validate each manifest; problems are reported per file, never raised. With
    `with_power`, each statistical gate's power is checked at the test split's size (the data
    loader runs for the first seed) and an underpowered gate is a warning."""
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
        trusted = trusts.get(found) if found else None
        checks, note = power_checks(path, loaded, trusted) if with_power else ([], None)
        warnings = [
            f"gate '{c['gate']}' is underpowered: {c['message']}"
            for c in checks
            if c["underpowered"]
        ] + ([note] if note else [])
        records.append(
            ValidationResult(
                file=str(path),
                valid=True,
                name=meta.name,
                version=meta.version,
                sha256=loaded.sha256,
                trust=str(found) if found else None,
                power=checks,
                warnings=warnings,
            )
        )
    return records


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of recipe manifest v1."""
    schema = Recipe.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://compressgate.dev/schema/recipe-v1.json"
    return schema


def explain_recipe(path: Path, trust_path: Path | None = None) -> RecipeExplanation:
    """The recipe in plain words, with each statistical gate's power at the test split's size."""
    found = find_trust(path, trust_path)
    trust = load_trust(found) if found else None
    loaded = load_recipe(path, trust=trust)
    explanation = explain(loaded)
    checks, note = power_checks(path, loaded, trust)
    by_gate = {c["gate"]: c for c in checks}
    gates = [
        g.model_copy(
            update={
                "power": by_gate[g.name]["message"],
                "underpowered": by_gate[g.name]["underpowered"],
            }
        )
        if g.name in by_gate
        else g
        for g in explanation.gates
    ]
    return explanation.model_copy(update={"gates": gates, "power_note": note})


def sign_recipe(path: Path, key_path: Path, trust_path: Path | None = None) -> SignResult:
    key = load_private_key(key_path)
    found = find_trust(path, trust_path)
    envelope, loaded = _sign_recipe(path, key, load_trust(found) if found else None)
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


class AllowResult(ApiResult):
    trust: str
    modules: list[str]


def trust_allow(trust_path: Path, modules: Sequence[str]) -> AllowResult:
    """Add modules to the trust file's allow-list of code recipes may import."""
    from compressgate.recipes.trust import allow_modules

    trust = allow_modules(trust_path, tuple(modules))
    return AllowResult(trust=str(trust_path), modules=list(trust.modules))


def init_example(dest: Path, example: str = "digits") -> list[Path]:
    """Copy a bundled example recipe (as DEST/recipe.yaml) and the files it names into DEST."""
    if example not in EXAMPLES:
        raise ManifestError(f"unknown example '{example}'; known: {', '.join(EXAMPLES)}")
    source_dir = Path(str(resources.files("compressgate.recipes.examples")))
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
    """What `compressgate run --json` prints; `record` names the catalog that holds the full
    record (`compressgate catalog show RUN_ID --json` exports it)."""

    run_id: str
    recipe: RecipeSummary
    status: str
    record: str
    seeds: list[int]
    stages: list[StageSummary]
    aggregate: dict[str, dict[str, SeedSummary]] = {}
    exemplars: dict[str, dict[str, Any]] = {}
    environment_mismatches: list[str] = []
    # An isolated run: the environment it ran in (lock_sha256, path, interpreter, built, and
    # `prefix`, the sys.prefix the worker reported from inside).
    isolated: dict[str, Any] | None = None
    timing: dict[str, float] = {}
    gates: list[dict[str, Any]] = []  # the recorded gate decisions, per seed
    decisions: list[dict[str, Any]] = []  # each gate's decision over the seeds (its policy)

    @property
    def exit_code(self) -> int:
        """1 if a gate failed (the run stopped, or a gate on the last stage failed)."""
        failed = self.status == "stopped" or any(d["verdict"] != "pass" for d in self.decisions)
        return 1 if failed else 0


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


def summarize(record: Any, where: str) -> RunSummary:
    """The run summary of a `compressgate.registry.catalog.records.RunRecord` held in the catalog
    `where`."""
    return RunSummary(
        run_id=record.run_id,
        recipe=RecipeSummary(**record.recipe.model_dump()),
        status=record.status,
        record=where,
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
        isolated=_isolated(record.environment),
        timing=record.timing.model_dump(),
    )


def _isolated(environment: dict[str, Any]) -> dict[str, Any] | None:
    isolated = environment.get("isolated")
    if isolated is None:
        return None
    return dict(isolated) | {"prefix": environment.get("interpreter", {}).get("prefix")}


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
    catalog: str | None = None,
    isolate: bool = False,
    envs: Path | None = None,
) -> RunSummary:
    """Verify and run a recipe; every stage output lands in the workspace's artifact store
    and every record in the catalog."""
    from compressgate.registry.catalog.repository import catalog_url, safe_url
    from compressgate.registry.run import engine as executor

    root = workspace_dir(workspace)
    options = executor.RunOptions(
        workspace=root,
        trust=_trust_for(path, trust_path),
        force=force,
        progress=progress,
        on_stage=on_stage,
        catalog=catalog,
        isolate=isolate,
        envs=envs,
    )
    record = executor.run_recipe(path, options)
    with options.open_catalog() as records:
        decisions = records.decisions(run_id=record.run_id)
        verdicts = records.gate_verdicts(record.run_id)
    summary = summarize(record, safe_url(catalog_url(root, catalog)))
    return summary.model_copy(
        update={
            "gates": [d.model_dump(mode="json") for d in decisions],
            "decisions": [v.model_dump(mode="json") for v in verdicts],
        }
    )


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
    isolated: dict[str, Any] | None = None  # the environment both runs ran in


def reproduce_run(
    run_id: str,
    *,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    progress: bool = False,
    on_stage: Any = None,
    catalog: str | None = None,
    envs: Path | None = None,
) -> ReproduceResult:
    """Re-run a recorded run from scratch and compare every stage's artifact digest."""
    from compressgate.registry.run import engine as executor

    root = workspace_dir(workspace)
    located = executor.RunOptions(workspace=root, trust=Path(), catalog=catalog)
    original = executor.load_run(located, run_id)
    options = executor.RunOptions(
        workspace=root,
        trust=_trust_for(Path(original.recipe.path), trust_path),
        progress=progress,
        on_stage=on_stage,
        catalog=catalog,
        envs=envs,
    )
    _, again, comparisons = executor.reproduce(run_id, options)
    return ReproduceResult(
        run_id=run_id,
        reproduced_run_id=again.run_id,
        identical=all(c.identical for c in comparisons),
        isolated=_isolated(again.environment),
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


# --- pinned environments -----------------------------------------------------------------------


class EnvSummary(ApiResult):
    lock_sha256: str
    path: str
    interpreter: str
    python: str | None
    pins: int | None
    require_hashes: bool | None
    created_at: str | None
    compressgate_sha256: str | None
    built: bool = False
    refreshed: bool = False
    seconds: float = 0.0


def _env_summary(env: Any) -> EnvSummary:
    marker = env.marker
    return EnvSummary(
        lock_sha256=env.digest,
        path=str(env.path),
        interpreter=str(env.python),
        python=marker.get("python"),
        pins=marker.get("pins"),
        require_hashes=marker.get("require_hashes"),
        created_at=marker.get("created_at"),
        compressgate_sha256=marker.get("compressgate_sha256"),
        built=env.built,
        refreshed=env.refreshed,
        seconds=round(env.seconds, 3),
    )


def env_create(
    lock: Path, *, workspace: Path | None = None, envs: Path | None = None, say: Any = None
) -> EnvSummary:
    """Build the environment of `lock` (or find it built); see `compressgate.registry.run.envs`."""
    from compressgate.registry.run import envs as store

    return _env_summary(
        store.ensure(lock, store.store_dir(workspace_dir(workspace), envs), say=say)
    )


class EnvListing(ApiResult):
    store: str
    environments: list[EnvSummary]
    partial: list[str]  # folders of builds that never finished: never used


def env_list(*, workspace: Path | None = None, envs: Path | None = None) -> EnvListing:
    from compressgate.registry.run import envs as store

    root = store.store_dir(workspace_dir(workspace), envs)
    found, partial = store.listing(root)
    return EnvListing(
        store=str(root),
        environments=[_env_summary(e) for e in found],
        partial=[str(p) for p in partial],
    )


class EnvDifference(ApiResult):
    package: str
    wanted: str | None  # None: installed, not in the lock
    found: str | None  # None: locked, not installed
    text: str


class EnvVerifyResult(ApiResult):
    lock: str
    lock_sha256: str
    interpreter: str
    matches: bool
    differences: list[EnvDifference]

    @property
    def exit_code(self) -> int:
        return 0 if self.matches else 5


def env_verify(
    lock: Path,
    *,
    workspace: Path | None = None,
    envs: Path | None = None,
    current: bool = False,
) -> EnvVerifyResult:
    """The environment of `lock` (or, with `current`, the running interpreter's), package by
    package against the lock."""
    import sys

    from compressgate.registry.run import envs as store
    from compressgate.registry.run.environment import installed, read_lock

    if current:
        interpreter = sys.executable
        differences = store.differences(read_lock(lock), installed())
    else:
        env, differences = store.verify(lock, store.store_dir(workspace_dir(workspace), envs))
        interpreter = str(env.python)
    return EnvVerifyResult(
        lock=str(lock),
        lock_sha256=store.lock_digest(lock),
        interpreter=interpreter,
        matches=not differences,
        differences=[
            EnvDifference(package=d.package, wanted=d.wanted, found=d.found, text=str(d))
            for d in differences
        ],
    )


class EnvExportResult(ApiResult):
    path: str | None
    pins: int
    sha256: str
    text: str


def env_export(
    out: Path | None, *, requires: str | None = None, force: bool = False
) -> EnvExportResult:
    """The running environment as a lock of exact pins (written to `out` if given)."""
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.run import envs as store

    pins = store.export_pins(requires)
    text = store.render_lock(pins, requires=requires)
    if out is not None:
        store.write_lock(out, text, force=force)
    return EnvExportResult(
        path=str(out) if out is not None else None,
        pins=len(pins),
        sha256=sha256_bytes(text.encode("utf-8")),
        text=text,
    )


# --- evaluating on demand -----------------------------------------------------------------------


def evaluate_variant(
    variant: str,
    *,
    against: str | None = None,
    only: Sequence[str] = (),
    workspace: Path | None = None,
    catalog: str | None = None,
    trust_path: Path | None = None,
) -> OnDemandEvaluation:
    """Measure a stored variant against a baseline with the recipe's evaluators (or `only`)."""
    from compressgate.registry.run.evaluate import evaluate_variant as evaluate

    return evaluate(
        workspace_dir(workspace), variant, against, only, catalog=catalog, trust_path=trust_path
    )


# --- the catalog --------------------------------------------------------------------------------


if TYPE_CHECKING:
    from compressgate.registry.catalog.records import RunRecord
    from compressgate.registry.catalog.repository import (
        AliasMove,
        AuditReport,
        Catalog,
        Decision,
        RunListing,
    )
    from compressgate.registry.catalog.views import AliasResult, Diff, Lineage, VariantShow


def open_catalog(
    workspace: Path | None = None, catalog: str | None = None, *, migrate: bool = False
) -> Catalog:
    """The existing catalog: `--catalog URL`, else $COMPRESSGATE_CATALOG, else
    WORKSPACE/catalog.db (only `run` creates one). With `migrate` (commands that write), an
    older schema is migrated; without, it is refused (exit 5)."""
    from compressgate.registry.catalog.repository import Catalog, catalog_url

    return Catalog(catalog_url(workspace_dir(workspace), catalog), create=False, migrate=migrate)


def catalog_list(
    *,
    recipe: str | None = None,
    limit: int = 50,
    offset: int = 0,
    workspace: Path | None = None,
    catalog: str | None = None,
) -> list[RunListing]:
    """Runs, newest first, optionally of one recipe, a page at a time."""
    with open_catalog(workspace, catalog) as records:
        return records.runs(recipe=recipe, limit=limit, offset=offset)


def is_run_id(ref: str) -> bool:
    return ref.startswith("run-") and "/" not in ref


def catalog_show_run(
    run_id: str, *, workspace: Path | None = None, catalog: str | None = None
) -> tuple[RunRecord, list[Decision], str]:
    """A run's full record (the JSON export), its gate decisions, and where it is held."""
    from compressgate.registry.catalog.repository import safe_url

    with open_catalog(workspace, catalog) as records:
        return records.run(run_id), records.decisions(run_id=run_id), safe_url(records.url)


def catalog_show_variant(
    ref: str, *, workspace: Path | None = None, catalog: str | None = None
) -> VariantShow:
    from compressgate.registry.catalog.views import VariantShow
    from compressgate.registry.governance.aliases import gate_status

    with open_catalog(workspace, catalog) as records:
        variant = records.variant(ref)
        try:
            status = gate_status(records, variant, None)
            promotable, problem = status.passed, status.problem
        except NotFoundError as exc:  # no trust file to check the sign-offs with
            promotable, problem = False, str(exc)
        decisions = [d for d in records.decisions(run_id=variant.run_id) if d.seed == variant.seed]
        run = records.run(variant.run_id)
        kinds = list(run.stage(variant.seed, variant.stage).evaluations)
        aliases = [
            name for name, move in records.aliases().items() if move.variant_id == variant.id
        ]
    return VariantShow(
        variant=variant,
        decisions=decisions,
        evaluations=kinds,
        aliases=aliases,
        promotable=promotable,
        problem=problem,
    )


def catalog_lineage(
    ref: str, *, workspace: Path | None = None, catalog: str | None = None
) -> Lineage:
    from compressgate.registry.catalog.views import Lineage

    with open_catalog(workspace, catalog) as records:
        chain = records.lineage(ref)
        return Lineage(run=records.run_info(chain[-1].run_id), chain=chain)


def catalog_diff(
    ref_a: str, ref_b: str, *, workspace: Path | None = None, catalog: str | None = None
) -> Diff:
    from compressgate.registry.catalog.views import Diff, DiffRow

    with open_catalog(workspace, catalog) as records:
        a, b = records.variant(ref_a), records.variant(ref_b)

    def rows(left: dict[str, Any], right: dict[str, Any]) -> list[DiffRow]:
        return [
            DiffRow(key=k, a=left.get(k), b=right.get(k), same=left.get(k) == right.get(k))
            for k in sorted(set(left) | set(right))
        ]

    identity_fields = (
        *("run_id", "seed", "stage", "kind", "format", "artifact_sha256"),
        *("parent_sha256", "recipe_sha256", "size_bytes", "params", "macs"),
    )
    return Diff(
        a=a.id,
        b=b.id,
        identity=rows(
            {k: getattr(a, k) for k in identity_fields}, {k: getattr(b, k) for k in identity_fields}
        ),
        config=rows(_flat(a.spec), _flat(b.spec)),
        metrics=rows(
            {k: [m.estimate, m.ci_low, m.ci_high] for k, m in a.metrics.items()},
            {k: [m.estimate, m.ci_low, m.ci_high] for k, m in b.metrics.items()},
        ),
    )


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def promote_variant(
    ref: str,
    alias: str,
    *,
    reason: str = "",
    actor: str | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
    trust_path: Path | None = None,
) -> AliasResult:
    """Point an alias at a variant of an approved run (exit 1 otherwise)."""
    from compressgate.registry.catalog.views import AliasResult
    from compressgate.registry.governance.aliases import promote

    with open_catalog(workspace, catalog, migrate=True) as records:
        move, changed = promote(
            records, ref, alias, reason=reason or "promoted", actor=actor, trust=trust_path
        )
    return AliasResult(alias=alias, changed=changed, move=move)


def rollback_alias(
    alias: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
    trust_path: Path | None = None,
) -> AliasResult:
    """Move an alias back to its previous known-good variant (or to `to`)."""
    from compressgate.registry.catalog.views import AliasResult
    from compressgate.registry.governance.aliases import rollback

    with open_catalog(workspace, catalog, migrate=True) as records:
        move = rollback(records, alias, to=to, reason=reason, actor=actor, trust=trust_path)
    return AliasResult(alias=alias, changed=True, move=move)


def alias_history(
    alias: str, *, workspace: Path | None = None, catalog: str | None = None
) -> list[AliasMove]:
    with open_catalog(workspace, catalog) as records:
        history = records.alias_history(alias)
    if not history:
        raise NotFoundError(f"alias {alias} has never pointed anywhere")
    return history


def audit_verify(
    *,
    checkpoint: Path | None = None,
    trust_path: Path | None = None,
    artifacts: bool = True,
    reports: Sequence[Path] = (),
    workspace: Path | None = None,
    catalog: str | None = None,
) -> AuditReport:
    """Recompute the chain, every row, every artifact digest, check a checkpoint, and find
    each report file among the reports the catalog recorded."""
    from compressgate.registry.catalog.audit import verify
    from compressgate.registry.catalog.store import ArtifactStore

    root = workspace_dir(workspace)
    trust = load_trust(trust_path) if trust_path is not None else None
    with open_catalog(workspace, catalog) as records:
        store = ArtifactStore(root) if artifacts else None
        return verify(records, store, checkpoint_file=checkpoint, trust=trust, reports=reports)


def audit_checkpoint(
    key_path: Path, *, workspace: Path | None = None, catalog: str | None = None
) -> bytes:
    """A signed checkpoint (DSSE envelope JSON) of the catalog's head."""
    from compressgate.registry.catalog.audit import checkpoint

    key = load_private_key(key_path)
    with open_catalog(workspace, catalog) as records:
        return checkpoint(records, key)


# --- gated review ----------------------------------------------------------------------------


def power_checks(
    path: Path, loaded: Any = None, trust: Trust | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """Each statistical gate's power check at the recipe's test split size (the loader, from a
    module `trust` allow-lists, is run for the first seed), or no checks and the reason."""
    from compressgate.gates.power import check_recipe, sample_sizes
    from compressgate.recipes.models import allowed_modules
    from compressgate.recipes.trust import DEFAULT_MODULES
    from compressgate.registry.run.engine import load_splits

    loaded = loaded or load_recipe(path, trust=trust)
    recipe = loaded.recipe
    if not recipe.gates:
        return [], None
    try:
        with allowed_modules(trust.modules if trust else DEFAULT_MODULES):
            splits = load_splits(recipe, path.parent.resolve(), recipe.seeds[0])
    except CompressgateError as exc:
        return [], f"the data loader failed, so the gates' power was not checked: {exc}"
    checks = check_recipe(recipe, sample_sizes(splits))
    return [c.model_dump(mode="json") for c in checks], None


class SubmitResult(ApiResult):
    """What `compressgate submit --json` prints: the run and its review."""

    run: RunSummary
    review: dict[str, Any]
    power: list[dict[str, Any]] = []

    @property
    def exit_code(self) -> int:
        return 1 if self.review["status"] == "rejected" else 0


def submit(
    path: Path,
    *,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    force: bool = False,
    progress: bool = False,
    catalog: str | None = None,
) -> SubmitResult:
    """Verify the signature and trust, run the recipe, judge its gates: the run's review."""
    from compressgate.recipes.signing import verify_recipe as verify
    from compressgate.registry.governance.review import status

    trust_file = _trust_for(path, trust_path)
    trust = load_trust(trust_file)
    verified = verify(path, trust, trust_source=str(trust_file))  # exit 3 before any work
    power, _ = power_checks(path, verified.loaded, trust)
    summary = run_recipe(
        path,
        trust_path=trust_file,
        workspace=workspace,
        force=force,
        progress=progress,
        catalog=catalog,
    )
    with open_catalog(workspace, catalog) as records:
        found = status(records, summary.run_id, trust)
    return SubmitResult(run=summary, review=found.model_dump(mode="json"), power=power)


def review_status(
    run_id: str | None,
    *,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
    limit: int = 10,
) -> list[Any]:
    """The review status of a run (or of the newest `limit` runs), sign-offs checked now."""
    from compressgate.registry.governance.review import load_trust_for, status

    with open_catalog(workspace, catalog) as records:
        ids = [run_id] if run_id else [r.run_id for r in records.runs(limit=limit)]
        return [status(records, rid, load_trust_for(records, rid, trust_path)) for rid in ids]


class SignoffResult(ApiResult):
    signoff: dict[str, Any]
    review: dict[str, Any]
    envelope: str | None = None  # where the envelope was written, with --out


def sign_off(
    run_id: str,
    gate: str,
    *,
    kind: str,
    key_path: Path | None = None,
    envelope_path: Path | None = None,
    reason: str | None = None,
    expires: str | None = None,
    out: Path | None = None,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
) -> SignoffResult:
    """Sign with the owner's key (or take a signed envelope) and record an approval or
    waiver of one gate of one run."""
    from compressgate.registry.governance.review import load_trust_for, status
    from compressgate.registry.governance.review import sign_off as record
    from compressgate.registry.kernel.dsse import Envelope
    from compressgate.registry.kernel.files import write_atomic

    if (key_path is None) == (envelope_path is None):
        raise ManifestError("give exactly one of --key KEY and --envelope FILE")
    when = _expiry(expires) if expires else None
    key = load_private_key(key_path) if key_path is not None else None
    envelope = None
    if envelope_path is not None:
        try:
            data = envelope_path.read_bytes()
        except FileNotFoundError:
            raise NotFoundError(f"envelope {envelope_path} not found") from None
        envelope = Envelope.from_json(data, source=str(envelope_path))
    with open_catalog(workspace, catalog, migrate=True) as records:
        trust = load_trust_for(records, run_id, trust_path)()
        checked, signed = record(
            records,
            run_id,
            gate,
            kind=kind,  # type: ignore[arg-type]
            trust=trust,
            key=key,
            envelope=envelope,
            reason=reason,
            expires=when,
            source=str(envelope_path) if envelope_path else "the sign-off",
        )
        found = status(records, run_id, trust)
    if out is not None:
        write_atomic(out, signed.to_json())
    return SignoffResult(
        signoff=checked.model_dump(mode="json"),
        review=found.model_dump(mode="json"),
        envelope=str(out) if out else None,
    )


def _expiry(text: str) -> Any:
    """--expires: a date (the waiver counts through that day, UTC) or an ISO 8601 time."""
    from datetime import UTC, date, datetime, timedelta

    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ManifestError(
            f"--expires {text!r} is not a date",
            hint="give YYYY-MM-DD (counts through that day, UTC) or an ISO 8601 time",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# --- ci ----------------------------------------------------------------------------------------


def changed_recipes(base: str, root: Path | None = None) -> list[Path]:
    """The recipe manifests changed against the git ref `base` (committed or not): a YAML file
    with `kind: Recipe` that changed, or whose signature envelope did."""
    import subprocess

    import yaml

    where = root or Path.cwd()
    try:
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=where,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        names = subprocess.run(
            ["git", "diff", "--name-only", "--diff-filter=ACMR", base, "--"],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        untracked = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard"],
            cwd=top,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except FileNotFoundError:
        raise NotFoundError("git is not installed: --base needs it") from None
    except subprocess.CalledProcessError as exc:
        raise ManifestError(
            f"--base {base}: git could not compare against it ({exc.stderr.strip()})",
            hint="give a ref that exists here, e.g. origin/main (fetch it first in CI)",
        ) from None
    found: dict[Path, None] = {}
    for name in [*names, *untracked]:
        path = Path(top) / name
        if name.endswith(".dsse.json"):
            path = path.with_name(path.name.removesuffix(".dsse.json"))
        if path.suffix not in (".yaml", ".yml") or not path.is_file():
            continue
        try:
            document = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError):
            document = None
        if isinstance(document, dict) and document.get("kind") == "Recipe":
            found[path] = None
        elif document is None and name.endswith((".yaml", ".yml")) and "recipe" in path.name:
            found[path] = None  # unreadable: let validation report it
    return sorted(found)


def ci_check(
    paths: Sequence[Path],
    *,
    base: str | None = None,
    trust_path: Path | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
    reuse: bool = True,
    progress: bool = False,
) -> list[Any]:
    """Check each recipe (given, or changed against `base`): signature, run (or reuse a run of
    the same recipe digest in the same environment), gates; one `compressgate.gates.ci.CiResult`
    each."""
    from compressgate.gates.ci import CiResult
    from compressgate.recipes.signing import verify_recipe as verify
    from compressgate.registry.governance.review import status
    from compressgate.registry.run.engine import environment_sha256

    recipes: list[Path] = []
    for path in paths:
        if path.is_dir():
            recipes += [p for p in sorted(path.rglob("*.y*ml")) if _is_recipe(p)]
        else:
            recipes.append(path)
    if base is not None:
        changed = {p.resolve() for p in changed_recipes(base)}
        recipes = [p for p in recipes if p.resolve() in changed] if paths else sorted(changed)
    results = []
    for path in recipes:
        try:
            trust_file = _trust_for(path, trust_path)
            trust = load_trust(trust_file)
            verified = verify(path, trust, trust_source=str(trust_file))
            loaded = verified.loaded
            run_id = None
            if reuse:
                digest = environment_sha256(loaded.recipe, path.parent.resolve())
                with open_catalog_for_writing(workspace, catalog) as records:
                    run_id = records.reusable_run(loaded.sha256, digest)
            cached = run_id is not None
            if run_id is None:
                run_id = run_recipe(
                    path,
                    trust_path=trust_file,
                    workspace=workspace,
                    progress=progress,
                    catalog=catalog,
                ).run_id
            with open_catalog(workspace, catalog) as records:
                found = status(records, run_id, trust)
        except CompressgateError as exc:
            results.append(
                CiResult(
                    path=str(path),
                    exit_code=exc.exit_code,
                    error=" ".join(str(exc).split()) or type(exc).__name__,
                )
            )
            continue
        results.append(
            CiResult(
                path=str(path),
                recipe=f"{found.recipe}@{found.recipe_version}",
                review=found,
                exit_code=found.exit_code,
                cached=cached,
                run_id=run_id,
                underpowered=[
                    f"{g.decision.gate}: {g.decision.power['message']}"
                    for g in found.gates
                    if g.decision.power and g.decision.power.get("underpowered")
                ],
            )
        )
    return results


def _is_recipe(path: Path) -> bool:
    import yaml

    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        return False
    return isinstance(document, dict) and document.get("kind") == "Recipe"


def open_catalog_for_writing(workspace: Path | None = None, catalog: str | None = None) -> Catalog:
    """The catalog, created (or migrated) if needed."""
    from compressgate.registry.catalog.repository import Catalog as Opened
    from compressgate.registry.catalog.repository import catalog_url

    return Opened(catalog_url(workspace_dir(workspace), catalog))


# --- reports -----------------------------------------------------------------------------------

HISTORY_RUNS = 10  # earlier runs of the recipe shown on the accuracy plots


def report_data(
    run_id: str,
    *,
    trust_path: Path | None = None,
    checkpoint: Path | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
) -> Any:
    """Everything a report of `run_id` shows, read from the catalog
    (`compressgate.reports.model.ReportData`);
    the recorded recipe's signature is checked now against the trust file."""
    from compressgate.recipes.load import parse_recipe
    from compressgate.recipes.signing import check_signature
    from compressgate.registry.catalog.audit import read_checkpoint
    from compressgate.registry.governance.review import status, trust_path_for
    from compressgate.reports.model import Chain, Point, RecipeIdentity, ReportData, SignerInfo

    with open_catalog(workspace, catalog) as records:
        run = records.run(run_id)
        info = records.run_info(run_id)
        recorded = records.recipe(run.recipe.sha256)
        parsed, _ = parse_recipe(recorded.content.encode("utf-8"), f"recipe {recorded.sha256[:12]}")
        trust_file = trust_path_for(records, run_id, trust_path)
        trust: Trust | None = None
        envelopes = records.recipe_envelopes(recorded.sha256)
        signers = [SignerInfo(owner=o, keyid="?") for o in recorded.signers]
        verified, said = False, "NOT verified: no envelope recorded"
        try:
            trust = load_trust(trust_file)
        except CompressgateError as exc:
            said = f"NOT verified: {exc}"
        for index, envelope in reversed(list(enumerate(envelopes))):
            if trust is None:
                break
            try:
                signed = check_signature(
                    recorded.content.encode("utf-8"),
                    envelope.encode("utf-8"),
                    trust,
                    source=f"recorded envelope {index + 1} of {len(envelopes)}",
                    name=f"recipe {recorded.sha256[:12]}",
                    trust_source=str(trust_file),
                )
            except CompressgateError as exc:
                if not verified and said.endswith("no envelope recorded"):
                    said = f"NOT verified: {exc}"
                continue
            signers = [SignerInfo(owner=s.owner, keyid=s.keyid) for s in signed]
            verified = True
            said = (
                f"verified against {trust_file} (recorded envelope {index + 1} of {len(envelopes)})"
            )
            break
        review = status(
            records, run_id, trust if trust is not None else (lambda: load_trust(trust_file))
        )
        history = _history(records, run, Point)
        stages = [s for s in run.stages if s.status == "done"]
        lineage: list[dict[str, Any]] = []
        if stages:
            seed = run.seeds[0]
            final = [s for s in stages if s.seed == seed][-1]
            lineage = [
                {"id": v.id, "stage": v.stage, "artifact_sha256": v.artifact_sha256}
                for v in records.lineage(f"{run_id}/{seed}/{final.name}")
            ]
        since = _since_previous(records, run, recorded.content, status, trust_file)
        head = records.evidence_head()  # recorded reports left out: the same bytes next time
        shown = None
        if checkpoint is not None and trust is not None:
            at, signer = read_checkpoint(checkpoint, trust)
            shown = {"tree_size": at.size, "head_sha256": at.sha256, "signer": signer}
    return ReportData(
        run=run.model_dump(mode="json"),
        review=review,
        recipe=RecipeIdentity(
            name=run.recipe.name,
            version=run.recipe.version,
            sha256=run.recipe.sha256,
            path=run.recipe.path,
            description=" ".join(parsed.metadata.description.split()),
            owners=list(parsed.metadata.owners),
            signers=signers,
            verified=verified,
            signature=said,
            content=recorded.content,
        ),
        lock_sha256=info.lock_sha256,
        environment_sha256=info.environment_sha256,
        history=history,
        lineage=lineage,
        since_previous=since,
        chain=Chain(size=head.size, head_sha256=head.sha256, checkpoint=shown),
    )


def _history(records: Catalog, run: Any, point: Any) -> list[Any]:
    """Every finished variant of this run and of the recipe's earlier runs, as plot points."""
    earlier = [
        r.run_id
        for r in records.runs(recipe=run.recipe.name, limit=HISTORY_RUNS + 1)
        if r.run_id < run.run_id
    ][:HISTORY_RUNS]
    runs = [run, *(records.run(r) for r in earlier)]
    points = []
    for each in runs:
        for stage in each.stages:
            accuracy = stage.metrics.get("accuracy")
            if stage.status != "done" or accuracy is None:
                continue
            latency = stage.metrics.get("latency.p50_ms")
            points.append(
                point(
                    run_id=each.run_id,
                    seed=stage.seed,
                    stage=stage.name,
                    size_bytes=stage.size_bytes,
                    latency_ms=None if latency is None else latency.estimate,
                    accuracy=accuracy.estimate,
                    ci_low=accuracy.ci_low,
                    ci_high=accuracy.ci_high,
                    current=each.run_id == run.run_id,
                )
            )
    return points


def _since_previous(records: Catalog, run: Any, content: str, status: Any, trust_file: Path) -> Any:
    """The changes since the newest earlier approved run of the same recipe name."""
    import difflib

    from compressgate.reports.model import Change, SincePrevious

    for listed in records.runs(recipe=run.recipe.name, limit=HISTORY_RUNS + 1):
        if listed.run_id >= run.run_id:
            continue
        try:
            earlier = status(records, listed.run_id, lambda: load_trust(trust_file))
        except CompressgateError:
            continue
        if earlier.status != "approved":
            continue
        before = records.run(listed.run_id)
        old = records.recipe(before.recipe.sha256).content
        changes = [
            Change(field="recipe", before=a.removeprefix("-"), after="")
            if a.startswith("-")
            else Change(field="recipe", before="", after=a.removeprefix("+"))
            for a in difflib.unified_diff(old.splitlines(), content.splitlines(), n=0, lineterm="")
            if a[:1] in "+-" and not a.startswith(("+++", "---"))
        ][:40]
        for name in ("accuracy", "paired.accuracy_difference", "size.bytes", "latency.p50_ms"):
            then, now_ = (_headline(r, name) for r in (before, run))
            if then != now_:
                changes.append(
                    Change(
                        field=f"{name} (seed {run.seeds[0]}, final stage)", before=then, after=now_
                    )
                )
        return SincePrevious(
            run_id=before.run_id,
            recipe_version=before.recipe.version,
            recipe_sha256=before.recipe.sha256,
            changes=changes,
        )
    return None


def _headline(run: Any, metric: str) -> str:
    done = [s for s in run.stages if s.status == "done" and s.seed == run.seeds[0]]
    if not done:
        return "–"
    found = done[-1].metrics.get(metric)
    return "–" if found is None else f"{found.estimate:.6g}"


def report(
    run_id: str,
    fmt: str = "html",
    *,
    trust_path: Path | None = None,
    checkpoint: Path | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
) -> bytes:
    """The report of `run_id` in `fmt` (html, md, json, card)."""
    from compressgate.reports.render import FORMATS, render

    if fmt not in FORMATS:
        raise ManifestError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    data = report_data(
        run_id, trust_path=trust_path, checkpoint=checkpoint, workspace=workspace, catalog=catalog
    )
    return render(data, fmt)  # type: ignore[arg-type]


def write_report(
    run_id: str,
    out: Path,
    fmt: str = "html",
    *,
    trust_path: Path | None = None,
    checkpoint: Path | None = None,
    workspace: Path | None = None,
    catalog: str | None = None,
    actor: str | None = None,
) -> Any:
    """Render the report of `run_id` to the file `out` and record it in the catalog (the
    sha256 of its bytes, a new event unless those bytes are recorded already), so that
    `audit verify --report FILE` can tell it from a changed copy; the `RecordedReport`."""
    import contextlib
    from importlib.metadata import PackageNotFoundError, version

    from compressgate.registry.catalog.repository import default_actor, now
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.kernel.files import write_atomic
    from compressgate.reports.render import FORMATS, render

    if fmt not in FORMATS:
        raise ManifestError(f"--format {fmt!r}: one of {', '.join(FORMATS)}")
    with open_catalog(workspace, catalog, migrate=True):
        pass  # an older catalog is migrated before anything is read from it
    data = report_data(
        run_id, trust_path=trust_path, checkpoint=checkpoint, workspace=workspace, catalog=catalog
    )
    body = render(data, fmt)  # type: ignore[arg-type]
    try:
        tool = f"compressgate {version('compressgate')}"
    except PackageNotFoundError:
        tool = "compressgate"
    write_atomic(out, body)
    try:
        with open_catalog(workspace, catalog, migrate=True) as records:
            return records.record_report(
                {
                    "sha256": sha256_bytes(body),
                    "run_id": run_id,
                    "format": fmt,
                    "size_bytes": len(body),
                    "path": str(out.resolve()),
                    "head_size": data.chain.size,
                    "rendered_at": now(),
                    "actor": actor or default_actor(),
                    "tool": tool,
                }
            )
    except BaseException:
        with contextlib.suppress(OSError):
            out.unlink()  # a report file exists only if the catalog recorded it
        raise
