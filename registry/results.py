"""What the Python API returns: frozen pydantic results, one per kind of answer.

`compressgate COMMAND --json` prints exactly these models, so their field names are a published
contract: add fields, never rename one (docs/architecture.md, "Published names").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from compressgate.registry.catalog.records import RunRecord
    from compressgate.registry.run.envs import Difference, Env
    from compressgate.registry.run.isolation import Outcome
    from compressgate.registry.run.reproduce import Comparison


class Result(BaseModel):
    """Every result is frozen: it reports what happened, it is not a handle to change it."""

    model_config = ConfigDict(frozen=True, defer_build=True)


class IssueResult(Result):
    file: str
    line: int | None
    path: str
    message: str


class ValidationResult(Result):
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


class SignResult(Result):
    recipe: str
    envelope: str
    sha256: str
    keyid: str


class SignerResult(Result):
    owner: str
    keyid: str


class VerifyResult(Result):
    recipe: str
    name: str
    version: int
    sha256: str
    envelope: str
    trust: str
    signers: list[SignerResult]
    verified: bool = True
    provenance: str | None = None  # a recipe a sweep proposed: the trial, checked in the catalog


class KeyResult(Result):
    owner: str
    keyid: str
    private_key: str
    public_key: str


class TrustResult(Result):
    trust: str
    owner: str
    keyid: str
    roles: list[str]


class AllowResult(Result):
    trust: str
    modules: list[str]


class MetricSummary(Result):
    """One metric: estimate and interval (the full evidence is in the run record)."""

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    confidence: float = 0.95
    method: str = ""
    unit: str = ""


class SeedSummary(Result):
    """One metric of one stage over the seeds."""

    mean: float
    ci_low: float
    ci_high: float
    seeds: int
    worst: float | None = None
    worst_seed: int | None = None
    spread: float


class StageSummary(Result):
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


class RecipeSummary(Result):
    name: str
    version: int
    sha256: str
    path: str
    signers: list[str]


class RunSummary(Result):
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


def summarize(record: RunRecord, where: str) -> RunSummary:
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
        isolated=isolated_environment(record.environment),
        timing=record.timing.model_dump(),
    )


def summarize_outcome(outcome: Outcome, where: str) -> RunSummary:
    """The summary of a run the engine just finished, from what it holds (nothing re-read): its
    record, each seed's judgement of each gate and each gate's decision over the seeds."""
    summary = summarize(outcome.record, where)
    return summary.model_copy(
        update={
            "gates": [j.model_dump(mode="json") for j in outcome.judgements],
            "decisions": [d.model_dump(mode="json") for d in outcome.decisions],
        }
    )


def isolated_environment(environment: dict[str, Any]) -> dict[str, Any] | None:
    isolated = environment.get("isolated")
    if isolated is None:
        return None
    return dict(isolated) | {"prefix": environment.get("interpreter", {}).get("prefix")}


_METRIC_FIELDS = set(MetricSummary.model_fields)
_SEED_FIELDS = set(SeedSummary.model_fields)


class StageComparison(Result):
    seed: int
    name: str
    recorded_sha256: str | None
    reproduced_sha256: str | None
    identical: bool
    metrics_checked: int = 0
    metrics_differing: list[str] = []
    timed_apart: list[str] = []  # timings away from the recorded ones: reported, not judged


class ReproduceResult(Result):
    run_id: str
    reproduced_run_id: str
    identical: bool
    stages: list[StageComparison]
    isolated: dict[str, Any] | None = None  # the environment both runs ran in
    recomputed: str = (
        "every stage and every evaluation, from scratch in a temporary store (no stage cache); "
        "artifacts compared by digest, figures exactly (peak memory within 25%); timings "
        "reported, not judged"
    )


def reproduce_result(
    run_id: str, again: RunRecord, comparisons: Sequence[Comparison]
) -> ReproduceResult:
    return ReproduceResult(
        run_id=run_id,
        reproduced_run_id=again.run_id,
        identical=all(c.identical for c in comparisons),
        isolated=isolated_environment(again.environment),
        stages=[
            StageComparison(
                seed=c.seed,
                name=c.name,
                recorded_sha256=c.recorded,
                reproduced_sha256=c.reproduced,
                identical=c.identical,
                metrics_checked=c.metrics_checked,
                metrics_differing=list(c.metrics_differing),
                timed_apart=list(c.timed_apart),
            )
            for c in comparisons
        ],
    )


class EnvSummary(Result):
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


def env_summary(env: Env) -> EnvSummary:
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


class EnvListing(Result):
    store: str
    environments: list[EnvSummary]
    partial: list[str]  # folders of builds that never finished: never used


class EnvDifference(Result):
    package: str
    wanted: str | None  # None: installed, not in the lock
    found: str | None  # None: locked, not installed
    text: str


class EnvVerifyResult(Result):
    lock: str
    lock_sha256: str
    interpreter: str
    matches: bool
    differences: list[EnvDifference]

    @property
    def exit_code(self) -> int:
        return 0 if self.matches else 5


def env_listing(store: Path) -> EnvListing:
    """The environments built in `store`, and the folders of builds that never finished."""
    from compressgate.registry.run import envs

    found, partial = envs.listing(store)
    return EnvListing(
        store=str(store),
        environments=[env_summary(e) for e in found],
        partial=[str(p) for p in partial],
    )


def env_verification(lock: Path, store: Path, *, current: bool = False) -> EnvVerifyResult:
    """The environment of `lock` in `store` (or, with `current`, the running interpreter's),
    package by package against the lock."""
    import sys

    from compressgate.registry.run import envs
    from compressgate.registry.run.environment import installed, read_lock

    if current:
        interpreter = sys.executable
        differences = envs.differences(read_lock(lock), installed())
    else:
        env, differences = envs.verify(lock, store)
        interpreter = str(env.python)
    return env_verify_result(lock, envs.lock_digest(lock), interpreter, differences)


def env_verify_result(
    lock: Path, digest: str, interpreter: str, differences: Sequence[Difference]
) -> EnvVerifyResult:
    return EnvVerifyResult(
        lock=str(lock),
        lock_sha256=digest,
        interpreter=interpreter,
        matches=not differences,
        differences=[
            EnvDifference(package=d.package, wanted=d.wanted, found=d.found, text=str(d))
            for d in differences
        ],
    )


class EnvExportResult(Result):
    path: str | None
    pins: int
    sha256: str
    text: str


class SubmitResult(Result):
    """What `compressgate submit --json` prints: the run and its review."""

    run: RunSummary
    review: dict[str, Any]
    power: list[dict[str, Any]] = []

    @property
    def exit_code(self) -> int:
        return 1 if self.review["status"] == "rejected" else 0


class SignoffResult(Result):
    signoff: dict[str, Any]
    review: dict[str, Any]
    envelope: str | None = None  # where the envelope was written, with --out


class ResolveResult(Result):
    """What `alias resolve --json` prints: where an alias points now, once the move's release
    (under a policy) and the artifact's bytes verify; the run's review as it stands. A
    `compressgate://RECIPE/VARIANT` URI names a variant directly: it has no move, so `alias`
    and the move's fields (`moved_at`, `moved_by`, `action`, `seq`, `policy_version`,
    `release_keyid`) are None; `checked` says what was verified instead."""

    alias: str | None  # as the catalog keys it: NAME, or RECIPE:NAME under a policy
    variant: str  # RUN/SEED/STAGE
    sha256: str  # the artifact's digest
    path: str  # its file, hashed to `sha256` just now
    format: str | None  # onnx | torch
    size_bytes: int | None
    run_id: str
    recipe: str
    recipe_version: int
    recipe_sha256: str
    review: str  # approved | awaiting-approval | rejected | ...; unchecked: see review_reasons
    review_reasons: list[str]
    policy_version: int | None  # the policy the move was signed under; None: unsigned regime
    # (or no move)
    moved_at: str | None
    moved_by: str | None
    action: str | None  # promote | rollback
    seq: int | None  # the move's event number in the catalog
    release_keyid: str | None  # the releaser's key, under a policy
    verified: bool = True
    uri: str | None = None  # the compressgate:// URI resolved (canonical), if one was given
    checked: list[str] = []  # what was verified, in words


class SweepTrialResult(Result):
    """One trial of a sweep: its run, parameters, outcome on the selection split."""

    trial: int
    run_id: str | None
    params: dict[str, Any]
    status: str  # passed | failed (a gate) | crashed
    objectives: dict[str, float]
    failed_gates: list[str] = []
    error: str | None = None
    attempts: int = 1
    seconds: float = 0.0
    on_frontier: bool = False
    chosen: bool = False


class SweepResult(Result):
    """A sweep as the catalog holds it (`sweep run`, `sweep show`, `sweep status ID`)."""

    sweep_id: str
    name: str
    version: int
    sha256: str
    recipe_sha256: str
    signers: list[str]
    strategy: str
    backend: str
    workers: int
    started_at: str
    finished_at: str | None
    status: str  # running | finished | stopped (wall time)
    budget_trials: int
    objectives: list[dict[str, Any]]
    choose: str  # the choice rule in words
    trials: list[SweepTrialResult]
    frontier: list[int]
    chosen: int | None
    why: str
    resumed: bool = False


class SweepListResult(Result):
    sweeps: list[dict[str, Any]]


class ProposeResult(Result):
    """`sweep propose`: the recipe written for its author to sign and submit."""

    sweep_id: str
    trial: int
    recipe: str
    sha256: str
    params: dict[str, Any]
    next: str
