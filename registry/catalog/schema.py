"""The catalog's tables, as SQLModel classes, and the field declarations they share with records.

Each table's fields are declared once, in a `*Fields` base (SQLModel's base-model pattern): the
table is `XRow(XFields, table=True)` and the record the catalog hands out (`records`) derives
from the same base, so a new stage field is one declaration here plus its migration
(`migrations`). A row stores each JSON document as text (canonical JSON, exact bytes kept; its
event carries the sha256 of that text, see `DOCUMENTS`); the record declares the document's
type, so document columns are the one thing a row and its record each declare.
`tests/registry/test_catalog_fields.py` holds the tables, the migrations and the records to the
same fields and types.
"""

from __future__ import annotations

from typing import Any, Literal

import sqlalchemy as sa
from pydantic import ConfigDict
from sqlmodel import AutoString, Field, SQLModel

# SQLModel's config type is its own TypedDict, like pydantic's: the same config, typed loosely.
_DEFERRED: Any = ConfigDict(defer_build=True)


class Model(SQLModel):
    """The base of every table and `*Fields` class: pydantic builds a class's validator when it
    first validates, not when the module is imported. Rows read through SQLAlchemy never
    validate, and a command builds the few records it hands out: about 30 ms less of every
    command's start (`bench/catalog.py`, cold commands)."""

    model_config = _DEFERRED


# --- events and schema history -----------------------------------------------------------------


class Event(Model, table=True):
    __tablename__ = "events"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    content_sha256: str
    prev_sha256: str
    sha256: str = Field(unique=True)
    body: str  # the row as its event states it; empty from schema v4 on (`chain.event_body`)


class SchemaMigration(Model, table=True):
    __tablename__ = "schema_migrations"
    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    name: str
    applied_at: str
    event_seq: int = Field(unique=True)


# --- recipes and runs --------------------------------------------------------------------------


class RecipeFields(Model):
    """A recipe as recorded once per exact bytes (`RecipeRecord`)."""

    sha256: str = Field(primary_key=True)
    name: str = Field(index=True)
    version: int
    path: str
    content: str  # the recipe's exact text
    envelope: str  # the DSSE envelope's exact text
    recorded_at: str
    actor: str


class RecipeRow(RecipeFields, table=True):
    __tablename__ = "recipes"
    signers: str  # JSON list of owner names
    event_seq: int = Field(unique=True)


class RecipeEnvelopeRow(Model, table=True):
    """A later signature envelope of a recorded recipe (re-signed, co-signed, a rotated key);
    the first is in `recipes` (schema v2)."""

    __tablename__ = "recipe_envelopes"
    sha256: str = Field(primary_key=True)  # of the envelope's text
    recipe_sha256: str = Field(index=True)
    envelope: str
    recorded_at: str
    event_seq: int = Field(unique=True)


class RunRow(Model, table=True):
    __tablename__ = "runs"
    run_id: str = Field(primary_key=True)
    recipe_sha256: str
    recipe_name: str = Field(index=True)
    recipe_version: int
    recipe_path: str
    signers: str
    seeds: str
    workspace: str
    started_at: str
    environment: str
    environment_sha256: str
    lock_sha256: str
    actor: str
    event_seq: int = Field(unique=True)


class RunSeedRow(Model, table=True):
    __tablename__ = "run_seeds"
    id: str = Field(primary_key=True)  # run_id/seed
    run_id: str
    seed: int
    data: str  # the digests of the seed's train, calibration and test splits
    event_seq: int = Field(unique=True)


class RunEndRow(Model, table=True):
    __tablename__ = "run_ends"
    run_id: str = Field(primary_key=True)
    status: str
    finished_at: str
    error: str | None = None
    timing: str
    aggregate: str
    exemplars: str
    failed_stages: str
    event_seq: int = Field(unique=True)


# --- variants (one per stage of each seed) and their evaluations ------------------------------


class StageFields(Model):
    """What a stage made of one seed, as the executor holds it (`StageRecord`) and the catalog
    stores it (`VariantRow`, `VariantRecord`)."""

    seed: int
    kind: str
    format: Literal["torch", "onnx"] | None = Field(default=None, sa_type=AutoString)
    parent_sha256: str | None = None
    spec_sha256: str | None = None
    cache_key: str | None = None
    cached: bool = False
    size_bytes: int | None = None
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    evaluation_key: str | None = None
    seconds: float = 0.0
    eval_seconds: float = 0.0


class VariantFields(StageFields):
    """A recorded variant: the stage's fields, where it belongs and when it was recorded."""

    id: str = Field(primary_key=True)  # run_id/seed/stage
    run_id: str
    stage: str
    artifact_sha256: str = Field(index=True)
    recipe_sha256: str
    recorded_at: str


class VariantRow(VariantFields, table=True):
    __tablename__ = "variants"
    spec: str
    files: str
    metrics: str  # `chain.pack_metrics`: a repeated estimate is stored once (schema v4)
    details: str
    warnings: str
    event_seq: int = Field(unique=True)


class EvaluationRow(Model, table=True):
    __tablename__ = "evaluations"
    id: str = Field(primary_key=True)  # variant id/kind
    variant_id: str = Field(index=True)
    kind: str
    result: str
    event_seq: int = Field(unique=True)


# --- gates, sign-offs, aliases, reports --------------------------------------------------------


class DecisionFields(Model):
    """One gate judged on one variant of one seed of a run (`JudgementRecord`)."""

    run_id: str
    seed: int
    gate: str
    variant_id: str = Field(index=True)
    stage: str
    artifact_sha256: str
    metric: str
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    threshold: float | None = None
    pvalue: float | None = None
    verdict: str
    owner: str
    evidence_sha256: str
    note: str
    decided_at: str


class GateJudgementRow(DecisionFields, table=True):
    __tablename__ = "gate_decisions"
    id: str = Field(primary_key=True)  # run_id/seed/gate
    rule: str  # the gate spec as JSON
    event_seq: int = Field(unique=True)


class GateDecisionRow(Model, table=True):
    """One gate of one run, decided over its seeds by the gate's seeds policy (schema v2);
    its record is `compressgate.gates.review.GateDecision`, a layer below the catalog."""

    __tablename__ = "gate_verdicts"
    id: str = Field(primary_key=True)  # run_id/gate
    run_id: str = Field(index=True)
    gate: str
    owner: str
    metric: str
    stage: str
    policy: str
    approval: str
    rule: str  # the gate spec as JSON
    estimate: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    n: int | None = None
    threshold: float | None = None
    pvalue: float | None = None
    verdict: str
    note: str
    seeds: str  # each seed's judgement, as JSON
    power: str  # the power check, as JSON (null when the rule has none)
    evidence_sha256: str
    decided_at: str
    event_seq: int = Field(unique=True)


class SignoffFields(Model):
    """An approval or a waiver of a gate, with the envelope that signs it (`SignoffRecord`)."""

    id: str = Field(primary_key=True)  # sha256 of the envelope
    run_id: str
    gate: str
    variant_id: str
    artifact_sha256: str
    kind: str  # approval | waiver
    verdict: str
    owner: str
    keyid: str
    reason: str | None = None
    expires: str | None = None
    envelope: str
    recorded_at: str


class ApprovalRow(SignoffFields, table=True):
    __tablename__ = "approvals"
    event_seq: int = Field(unique=True)


class ReportFields(Model):
    """A report rendered to a file: the sha256 of its exact bytes (`ReportEntry`)."""

    sha256: str = Field(primary_key=True)  # of the bytes written
    run_id: str = Field(index=True)
    format: str  # html | md | json | card
    size_bytes: int
    path: str  # where it was written
    head_size: int  # the chain head the report shows: its event number
    rendered_at: str
    actor: str
    tool: str  # compressgate and its version


class ReportRow(ReportFields, table=True):
    """A report rendered to a file (schema v3)."""

    __tablename__ = "reports"
    event_seq: int = Field(unique=True)


class AliasMoveFields(Model):
    """One move of an alias (`AliasMove`); its event number is its key."""

    alias: str = Field(index=True)
    variant_id: str
    artifact_sha256: str
    previous_variant_id: str | None = None
    action: Literal["promote", "rollback"] = Field(sa_type=AutoString)
    actor: str
    reason: str
    moved_at: str


class AliasMoveRow(AliasMoveFields, table=True):
    __tablename__ = "alias_moves"
    event_seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})


# --- the trust policy and signed releases (schema v5) -----------------------------------------


class PolicyFields(Model):
    """A version of the trust policy, with the envelope whose root signatures made it count."""

    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    sha256: str  # of the document's exact bytes (a later version may repeat an earlier one)
    content: str  # the trust document's exact text
    envelope: str  # the DSSE envelope's exact text
    recorded_at: str


class PolicyRow(PolicyFields, table=True):
    __tablename__ = "policies"
    signers: str  # JSON list of the root owners whose signatures counted
    event_seq: int = Field(unique=True)


class ReleaseFields(Model):
    """The signed statement behind one alias move: who released, under which policy."""

    move_seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    owner: str
    keyid: str
    policy_version: int
    envelope: str


class ReleaseRow(ReleaseFields, table=True):
    __tablename__ = "releases"
    event_seq: int = Field(unique=True)


class AttestationFields(Model):
    """The runner's signed statement of a finished run (`governance.attestation`)."""

    run_id: str = Field(primary_key=True)
    owner: str
    keyid: str
    policy_version: int
    envelope: str


class AttestationRow(AttestationFields, table=True):
    __tablename__ = "attestations"
    event_seq: int = Field(unique=True)


class ResumeFields(Model):
    """A run that resumed a stopped one past the gates its owners waived."""

    run_id: str = Field(primary_key=True)
    resumed_from: str


class ResumeRow(ResumeFields, table=True):
    __tablename__ = "resumes"
    waivers: str  # JSON: [{gate, signoff_id}] the waivers of the stopped run it relied on
    event_seq: int = Field(unique=True)


# --- sweeps (schema v6) ------------------------------------------------------------------------


class SweepFields(Model):
    """A sweep as started: its signed manifest's exact bytes and the base recipe it searches."""

    sweep_id: str = Field(primary_key=True)
    name: str
    version: int
    sha256: str = Field(index=True)  # of the sweep manifest's exact bytes
    content: str  # the manifest's exact text
    envelope: str  # the DSSE envelope's exact text
    recipe_sha256: str  # the base recipe's (in `recipes`)
    strategy: str  # grid | random | tpe | nsga2
    backend: str  # local | ray
    started_at: str


class SweepRow(SweepFields, table=True):
    __tablename__ = "sweeps"
    signers: str  # JSON list of owner names
    settings: str  # JSON: workers, trials, selection, …
    event_seq: int = Field(unique=True)


class SweepTrialFields(Model):
    """One trial of a sweep, linked to the run that tried it (None: it crashed before)."""

    sweep_id: str = Field(index=True)
    trial: int
    run_id: str | None = Field(default=None, index=True)
    status: str  # passed (every gate passed or needs approval) | failed (a gate) | crashed
    error: str | None = None
    attempts: int = 1  # more when a killed worker's trial was retried
    seconds: float
    recorded_at: str


class SweepTrialRow(SweepTrialFields, table=True):
    __tablename__ = "sweep_trials"
    id: str = Field(primary_key=True)  # sweep_id/trial: one row per trial of a sweep
    params: str  # JSON: axis path -> value
    objectives: str  # JSON: metric -> mean over the seeds
    failed_gates: str  # JSON list of gate names
    event_seq: int = Field(unique=True)


class SweepEndFields(Model):
    """How a sweep ended and which trial it chose."""

    sweep_id: str = Field(primary_key=True)
    status: str  # finished (its trials spent) | stopped (its wall time spent)
    chosen: int | None = None
    why: str
    finished_at: str


class SweepEndRow(SweepEndFields, table=True):
    __tablename__ = "sweep_ends"
    frontier: str  # JSON list of trial numbers on the Pareto frontier
    event_seq: int = Field(unique=True)


# --- tags and descriptions (schema v7) ---------------------------------------------------------


class AnnotationFields(Model):
    """One tag set, tag removed, description set or description cleared on a run or a variant
    (`governance.annotations`): never edited, the latest event for (subject, kind, key) is the
    current value. Under a trust policy signed by its actor's key (`envelope`)."""

    subject_kind: str  # run | variant
    subject_id: str  # a run id, or a variant id (RUN/SEED/STAGE)
    kind: str  # tag | description
    key: str  # the tag's key; '' for a description
    value: str | None = None  # None: the tag removed (the description cleared)
    actor: str  # under a policy: the owner of the key that signed it
    recorded_at: str
    keyid: str | None = None  # None: recorded under the unsigned regime
    policy_version: int | None = None
    envelope: str | None = None  # the DSSE envelope's exact text


class AnnotationRow(AnnotationFields, table=True):
    __tablename__ = "annotations"
    event_seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})


# --- the tables as a whole ---------------------------------------------------------------------

ROW_TABLES: tuple[type[SQLModel], ...] = (  # parents before children (foreign keys)
    SchemaMigration,
    RecipeRow,
    RunRow,
    RunSeedRow,
    RunEndRow,
    VariantRow,
    EvaluationRow,
    GateJudgementRow,
    ApprovalRow,
    AliasMoveRow,
    GateDecisionRow,
    RecipeEnvelopeRow,
    ReportRow,
    PolicyRow,
    ReleaseRow,
    AttestationRow,
    ResumeRow,
    SweepRow,
    SweepTrialRow,
    SweepEndRow,
    AnnotationRow,
)
TABLES: tuple[type[SQLModel], ...] = (Event, *ROW_TABLES)
# Document columns: their event carries the sha256 of the text.
DOCUMENTS: dict[str, frozenset[str]] = {
    "recipes": frozenset({"content", "envelope"}),
    "runs": frozenset({"environment"}),
    "run_seeds": frozenset({"data"}),
    "run_ends": frozenset({"timing", "aggregate", "exemplars", "failed_stages"}),
    "variants": frozenset({"spec", "files", "metrics", "details"}),
    "evaluations": frozenset({"result"}),
    "gate_decisions": frozenset({"rule"}),
    "gate_verdicts": frozenset({"rule", "seeds", "power"}),
    "recipe_envelopes": frozenset({"envelope"}),
    "approvals": frozenset({"envelope"}),
    "policies": frozenset({"content", "envelope"}),
    "releases": frozenset({"envelope"}),
    "attestations": frozenset({"envelope"}),
    "resumes": frozenset({"waivers"}),
    "sweeps": frozenset({"content", "envelope", "settings"}),
    "sweep_trials": frozenset({"params", "objectives", "failed_gates"}),
    "sweep_ends": frozenset({"frontier"}),
    "annotations": frozenset({"envelope"}),
}
# Columns a later migration adds to an existing table (ALTER TABLE … ADD COLUMN, declared
# here like any other field): left out of a row's event body while NULL, so that the rows
# written before the column existed still match their events. None yet.
LATE_COLUMNS: dict[str, frozenset[str]] = {}


def table(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def name(model: type[SQLModel]) -> str:
    return str(model.__tablename__)


BY_NAME: dict[str, type[SQLModel]] = {name(t): t for t in TABLES}


def unique_columns(table_name: str) -> list[str]:
    """The key columns of a table: its primary key and every unique column, in order."""
    columns = table(BY_NAME[table_name]).columns
    return [c.name for c in columns if c.primary_key or c.unique]
