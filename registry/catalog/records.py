"""What the catalog takes and gives back, as pydantic records.

The run (`RunRecord`, each stage's `StageRecord`, `Timing`): the executor fills these in; the
catalog stores them row by row and gives them back, so that `compressgate catalog show RUN
--json` exports exactly the record the executor held. The catalog's own records (`VariantRecord`,
`JudgementRecord`, `SignoffRecord`, `ReportEntry`, `AliasMove`, …) are frozen. A record that
mirrors a table derives from that table's `*Fields` base in `schema`, so they share one
declaration of each field; only JSON documents, stored as text, are typed here.

Words: a gate's outcome on one seed is a *judgement* (`JudgementRecord`, table `gate_decisions`,
named before the words were settled); its outcome over the seeds, by its seeds policy, is its
*decision* (`compressgate.gates.review.GateDecision`, table `gate_verdicts`); a decision with its
sign-offs is its *review* (`GateReview`). A *verdict* is the value of any of them: pass or fail.
The table names stay: they are in every event of the hash chain.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compressgate.evaluators.results import (
    Estimate,
    EvaluationResult,
    ExemplarsResult,
    SeedAggregate,
)
from compressgate.registry.catalog.schema import (
    AliasMoveFields,
    AnnotationFields,
    AttestationFields,
    DecisionFields,
    PolicyFields,
    RecipeFields,
    ReleaseFields,
    ReportFields,
    ResumeFields,
    SignoffFields,
    StageFields,
    SweepEndFields,
    SweepFields,
    SweepTrialFields,
    VariantFields,
)

# --- the run, as the executor holds it ---------------------------------------------------------


class StageDocuments(BaseModel):
    """The JSON documents of a stage's variant (text in `VariantRow`)."""

    model_config = ConfigDict(defer_build=True)  # built when first used: see `schema.Model`

    files: list[dict[str, Any]] = Field(default_factory=list)
    metrics: dict[str, Estimate] = Field(
        default_factory=dict, description="every evaluator's metrics under their dotted names"
    )
    details: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)


class StageRecord(StageFields, StageDocuments):
    """One stage of one seed: what came out, from what, by which spec, and how good it is."""

    name: str
    status: Literal["running", "done", "failed"] = "running"
    artifact_sha256: str | None = None
    evaluations: dict[str, EvaluationResult] = Field(
        default_factory=dict, description="each evaluator's full result, by kind"
    )
    error: str | None = None


class RecipeRef(BaseModel):
    model_config = ConfigDict(defer_build=True)

    name: str
    version: int
    sha256: str
    path: str
    signers: list[str]


class Timing(BaseModel):
    model_config = ConfigDict(defer_build=True)

    total_seconds: float = 0.0
    compute_seconds: float = 0.0
    overhead_seconds: float = 0.0
    overhead_fraction: float = 0.0


RunStatus = Literal["running", "succeeded", "stopped", "failed"]


class RunRecord(BaseModel):
    """The run: recipe, environment, data digests, every stage record, status and timing."""

    model_config = ConfigDict(defer_build=True)

    run_id: str
    recipe: RecipeRef
    status: RunStatus = Field(
        default="running", description="stopped: a gate failed after an intermediate stage"
    )
    started_at: str
    finished_at: str | None = None
    workspace: str
    seeds: list[int]
    environment: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, dict[str, str]] = Field(default_factory=dict)
    stages: list[StageRecord] = Field(default_factory=list)
    aggregate: dict[str, dict[str, SeedAggregate]] = Field(
        default_factory=dict, description="per stage, each metric over the seeds"
    )
    exemplars: dict[str, ExemplarsResult] = Field(
        default_factory=dict, description="per compressed stage, across the seeds"
    )
    timing: Timing = Field(default_factory=Timing)
    error: str | None = None

    def stage(self, seed: int, name: str) -> StageRecord:
        for record in self.stages:
            if record.seed == seed and record.name == name:
                return record
        raise KeyError((seed, name))


# --- what the catalog gives back ---------------------------------------------------------------

# A record built on a table's fields is a SQLModel, whose config type is its own (a TypedDict
# like pydantic's): the same frozen config, typed loosely.
_FROZEN: Any = ConfigDict(frozen=True, defer_build=True)


class CatalogRecord(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class VariantRecord(VariantFields, StageDocuments):
    """A recorded variant: its stage's fields and documents, and its spec."""

    model_config = _FROZEN
    spec: dict[str, Any]


class JudgementRecord(DecisionFields):
    """One gate judged on one variant of one seed of a run."""

    model_config = _FROZEN
    rule: dict[str, Any]


class SignoffRecord(SignoffFields):
    """An approval or waiver as recorded (the caller checked its envelope): its id is the
    envelope's sha256, so the same envelope is recorded once."""

    model_config = _FROZEN


class ReportEntry(ReportFields):
    """A report file `report -o` wrote, to be recorded by the sha256 of its bytes."""

    model_config = _FROZEN


class RecordedReport(ReportEntry):
    """A report file `report -o` wrote, as the catalog recorded it (schema v3)."""

    seq: int


class PolicyRecord(PolicyFields):
    """A version of the trust policy as recorded (schema v5)."""

    model_config = _FROZEN
    signers: list[str]
    seq: int


class AttestationRecord(AttestationFields):
    """A run's attestation by its runner (schema v5)."""

    model_config = _FROZEN
    seq: int


class ResumeRecord(ResumeFields):
    """A run that resumed a stopped one (schema v5)."""

    model_config = _FROZEN
    waivers: list[dict[str, str]]
    seq: int


class SweepRecord(SweepFields):
    """A sweep as started (schema v6): its manifest's exact text, sha256 and envelope, the base
    recipe it searches, and how it searches."""

    model_config = _FROZEN
    signers: list[str]
    settings: dict[str, Any]


class SweepTrialRecord(SweepTrialFields):
    """One trial of a sweep (schema v6): its point in the search space, the run that tried it
    and what came of it (`passed`: every gate passed or needs approval)."""

    model_config = _FROZEN
    params: dict[str, Any]
    objectives: dict[str, float]  # mean over the seeds; {} when crashed
    failed_gates: list[str]


class SweepEndRecord(SweepEndFields):
    """How a sweep ended (schema v6): `finished` (its trials spent) or `stopped` (wall time),
    its Pareto frontier among passing trials and the trial chosen from it."""

    model_config = _FROZEN
    frontier: list[int]


class SweepListing(CatalogRecord):
    sweep_id: str
    name: str
    version: int
    strategy: str
    backend: str
    started_at: str
    trials: int  # trial rows recorded
    finished: bool  # it has an end row
    chosen: int | None


class ReleaseRecord(ReleaseFields):
    """The signed release of one alias move (schema v5)."""

    model_config = _FROZEN
    seq: int


class AliasMove(AliasMoveFields):
    model_config = _FROZEN
    seq: int
    release: ReleaseRecord | None = None  # the signed release, under a policy (schema v5)


class RecipeRecord(RecipeFields):
    model_config = _FROZEN
    signers: list[str]


class RunListing(CatalogRecord):
    run_id: str
    recipe: str
    version: int
    recipe_sha256: str
    status: str
    started_at: str
    finished_at: str | None
    seeds: list[int]
    signers: list[str]


class RunHead(CatalogRecord):
    """What a run's review reads of it (`Catalog.run_head`): its recipe and its status, not
    its stages and evaluations, which the full `RunRecord` inflates."""

    run_id: str
    recipe: RecipeRef
    status: RunStatus


class RunInfo(CatalogRecord):
    """A run's identity without its stages: recipe, signers, environment, who started it."""

    run_id: str
    recipe: str
    version: int
    recipe_sha256: str
    signers: list[str]
    environment_sha256: str
    lock_sha256: str
    python: str | None
    started_at: str
    actor: str


class AnnotationRecord(AnnotationFields):
    """A tag set or removed, a description set or cleared, as recorded (schema v7)."""

    model_config = _FROZEN
    seq: int


class Annotations(CatalogRecord):
    """A subject's tags and description now (the latest event of each key), and every event
    that made them, oldest first."""

    tags: dict[str, str] = {}
    description: str | None = None
    history: list[AnnotationRecord] = []


class SearchHit(CatalogRecord):
    """A variant `catalog search` found: who made it, where it points, its tags (a run's tags
    are its variants' unless a variant sets the key itself) and description."""

    id: str
    run_id: str
    seed: int
    stage: str
    kind: str
    artifact_sha256: str
    recipe: str
    recipe_version: int
    recorded_at: str
    size_bytes: int | None
    aliases: list[str]  # the aliases that point at it now
    tags: dict[str, str]
    description: str | None


class SearchPage(CatalogRecord):
    """One page of a search: the query as understood, the sort, the hits and the token of the
    next page (None: the last page)."""

    query: str
    sort: str
    limit: int
    results: list[SearchHit]
    next_page_token: str | None


class Head(CatalogRecord):
    size: int
    sha256: str


class AuditReport(CatalogRecord):
    catalog: str
    schema_version: int
    events: int
    rows: int
    artifacts: int
    head: Head
    seconds: float
    events_per_second: float  # the whole verification's rate: checked_events / seconds
    checkpoint: Head | None = None
    reports: list[RecordedReport] = []
    chain_events_per_second: float = 0.0  # the hash chain's check alone
    meaning: dict[str, Any] | None = None  # `governance.meaning.MeaningReport`
    since: Head | None = None  # `--since`: the checkpoint's head; only what is after it checked
    checked_events: int = 0  # the events checked (all, or those after `since`)
