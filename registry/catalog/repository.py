"""The catalog: append-only, hash-chained records of recipes, runs, variants, evaluations,
gate decisions, approvals and alias moves, in SQLite (default) or PostgreSQL.

Every row of every table is written together with one event, in one transaction. The event's
`body` is the canonical JSON of `{"table": …, "row": …}` — the row's columns, with each JSON
document column replaced by the sha256 of its exact text — and the event stores the sha256 of
that body (`content_sha256`), the chain hash of its predecessor (`prev_sha256`) and its own
chain hash `sha256 = sha256("{seq}\\n{prev_sha256}\\n{content_sha256}")`. So:

- a changed row no longer matches its event's body, a changed body no longer matches its
  content hash, and a changed hash breaks every later link: `audit verify` names the first;
- a rewritten history (every hash recomputed, by someone with full database access) differs
  from a signed checkpoint (tree size + head hash) published outside the database.

UPDATE and DELETE are refused on every table by triggers, in SQLite and PostgreSQL, and so are
SQLite's `INSERT OR REPLACE` and upserts (a BEFORE INSERT trigger refuses any row whose key is
already there: REPLACE deletes the old row without firing DELETE triggers unless
`recursive_triggers` is on). Appends are serialised: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by
a transaction-scoped advisory lock, so concurrent writers never fork or lose the chain.

The schema is versioned by numbered migrations (see `MIGRATIONS`), each recorded in the
`schema_migrations` table and in the chain itself.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.engine import Connection, Engine
from sqlmodel import Field, SQLModel

from compressgate.evaluators.results import Estimate, ExemplarsResult, SeedAggregate
from compressgate.gates.review import GateDecision, SeedVerdict
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord, Timing
from compressgate.registry.kernel.errors import (
    CompressgateError,
    EnvironmentMismatch,
    IntegrityError,
    ManifestError,
    NotFoundError,
    Refused,
)

CATALOG_ENV = "COMPRESSGATE_CATALOG"
CATALOG_FILE = "catalog.db"
GENESIS = "0" * 64
BASELINE = "baseline"

# --- tables ------------------------------------------------------------------------------------
# JSON documents are stored as text (canonical JSON, exact bytes kept); the event of a row
# carries their sha256 instead of the text itself.


class Event(SQLModel, table=True):
    __tablename__ = "events"
    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    content_sha256: str
    prev_sha256: str
    sha256: str = Field(unique=True)
    body: str


class SchemaMigration(SQLModel, table=True):
    __tablename__ = "schema_migrations"
    version: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    name: str
    applied_at: str
    event_seq: int = Field(unique=True)


class RecipeRow(SQLModel, table=True):
    __tablename__ = "recipes"
    sha256: str = Field(primary_key=True)
    name: str = Field(index=True)
    version: int
    path: str
    signers: str  # JSON list of owner names
    content: str  # the recipe's exact text
    envelope: str  # the DSSE envelope's exact text
    recorded_at: str
    actor: str
    event_seq: int = Field(unique=True)


class RunRow(SQLModel, table=True):
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


class RunSeedRow(SQLModel, table=True):
    __tablename__ = "run_seeds"
    id: str = Field(primary_key=True)  # run_id/seed
    run_id: str
    seed: int
    data: str  # the digests of the seed's train, calibration and test splits
    event_seq: int = Field(unique=True)


class RunEndRow(SQLModel, table=True):
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


class VariantRow(SQLModel, table=True):
    __tablename__ = "variants"
    id: str = Field(primary_key=True)  # run_id/seed/stage
    run_id: str
    seed: int
    stage: str
    kind: str
    format: str | None = None
    artifact_sha256: str = Field(index=True)
    parent_sha256: str | None = None
    spec_sha256: str | None = None
    spec: str
    recipe_sha256: str
    cache_key: str | None = None
    cached: bool
    size_bytes: int | None = None
    files: str
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    metrics: str
    details: str
    warnings: str
    evaluation_key: str | None = None
    seconds: float
    eval_seconds: float
    recorded_at: str
    event_seq: int = Field(unique=True)


class EvaluationRow(SQLModel, table=True):
    __tablename__ = "evaluations"
    id: str = Field(primary_key=True)  # variant id/kind
    variant_id: str = Field(index=True)
    kind: str
    result: str
    event_seq: int = Field(unique=True)


class GateDecisionRow(SQLModel, table=True):
    __tablename__ = "gate_decisions"
    id: str = Field(primary_key=True)  # run_id/seed/gate
    run_id: str
    seed: int
    gate: str
    variant_id: str = Field(index=True)
    stage: str
    artifact_sha256: str
    metric: str
    rule: str  # the gate spec as JSON
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
    event_seq: int = Field(unique=True)


class GateVerdictRow(SQLModel, table=True):
    """One gate of one run, decided over its seeds by the gate's seeds policy (schema v2)."""

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


class RecipeEnvelopeRow(SQLModel, table=True):
    """A later signature envelope of a recorded recipe (re-signed, co-signed, a rotated key);
    the first is in `recipes` (schema v2)."""

    __tablename__ = "recipe_envelopes"
    sha256: str = Field(primary_key=True)  # of the envelope's text
    recipe_sha256: str = Field(index=True)
    envelope: str
    recorded_at: str
    event_seq: int = Field(unique=True)


class ApprovalRow(SQLModel, table=True):
    __tablename__ = "approvals"
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
    event_seq: int = Field(unique=True)


class ReportRow(SQLModel, table=True):
    """A report rendered to a file: the sha256 of its exact bytes (schema v3)."""

    __tablename__ = "reports"
    sha256: str = Field(primary_key=True)  # of the bytes written
    run_id: str = Field(index=True)
    format: str  # html | md | json | card
    size_bytes: int
    path: str  # where it was written
    head_size: int  # the chain head the report shows: its event number
    rendered_at: str
    actor: str
    tool: str  # compressgate and its version
    event_seq: int = Field(unique=True)


class AliasMoveRow(SQLModel, table=True):
    __tablename__ = "alias_moves"
    event_seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    alias: str = Field(index=True)
    variant_id: str
    artifact_sha256: str
    previous_variant_id: str | None = None
    action: str  # promote | rollback
    actor: str
    reason: str
    moved_at: str


ROW_TABLES: tuple[type[SQLModel], ...] = (
    SchemaMigration,
    RecipeRow,
    RunRow,
    RunSeedRow,
    RunEndRow,
    VariantRow,
    EvaluationRow,
    GateDecisionRow,
    ApprovalRow,
    AliasMoveRow,
    GateVerdictRow,
    RecipeEnvelopeRow,
    ReportRow,
)
TABLES: tuple[type[SQLModel], ...] = (Event, *ROW_TABLES)
_BY_NAME: dict[str, type[SQLModel]] = {t.__tablename__: t for t in ROW_TABLES}  # type: ignore[misc]
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
}


def _table(model: type[SQLModel]) -> sa.Table:
    return model.__table__  # type: ignore[attr-defined,no-any-return]


def _name(model: type[SQLModel]) -> str:
    return str(model.__tablename__)


# --- migrations --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: Callable[[str], list[str]]  # dialect name -> DDL


def _ddl_v1(dialect: str) -> list[str]:
    """Version 1 of the schema, frozen as DDL: later migrations only add to it."""
    double = "DOUBLE PRECISION"
    statements = [
        """CREATE TABLE events (
            seq BIGINT PRIMARY KEY, content_sha256 TEXT NOT NULL, prev_sha256 TEXT NOT NULL,
            sha256 TEXT NOT NULL UNIQUE, body TEXT NOT NULL)""",
        """CREATE TABLE schema_migrations (
            version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        """CREATE TABLE recipes (
            sha256 TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,
            path TEXT NOT NULL, signers TEXT NOT NULL, content TEXT NOT NULL,
            envelope TEXT NOT NULL, recorded_at TEXT NOT NULL, actor TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_recipes_name ON recipes (name)",
        """CREATE TABLE runs (
            run_id TEXT PRIMARY KEY, recipe_sha256 TEXT NOT NULL REFERENCES recipes(sha256),
            recipe_name TEXT NOT NULL, recipe_version INTEGER NOT NULL, recipe_path TEXT NOT NULL,
            signers TEXT NOT NULL, seeds TEXT NOT NULL, workspace TEXT NOT NULL,
            started_at TEXT NOT NULL, environment TEXT NOT NULL,
            environment_sha256 TEXT NOT NULL, lock_sha256 TEXT NOT NULL,
            actor TEXT NOT NULL, event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_runs_recipe_name ON runs (recipe_name, run_id)",
        """CREATE TABLE run_seeds (
            id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id),
            seed BIGINT NOT NULL, data TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_run_seeds_run_id ON run_seeds (run_id)",
        """CREATE TABLE run_ends (
            run_id TEXT PRIMARY KEY REFERENCES runs(run_id), status TEXT NOT NULL,
            finished_at TEXT NOT NULL, error TEXT, timing TEXT NOT NULL, aggregate TEXT NOT NULL,
            exemplars TEXT NOT NULL, failed_stages TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        f"""CREATE TABLE variants (
            id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id),
            seed BIGINT NOT NULL, stage TEXT NOT NULL, kind TEXT NOT NULL, format TEXT,
            artifact_sha256 TEXT NOT NULL, parent_sha256 TEXT, spec_sha256 TEXT,
            spec TEXT NOT NULL, recipe_sha256 TEXT NOT NULL, cache_key TEXT,
            cached BOOLEAN NOT NULL, size_bytes BIGINT, files TEXT NOT NULL, params BIGINT,
            nonzero_params BIGINT, macs BIGINT, metrics TEXT NOT NULL, details TEXT NOT NULL,
            warnings TEXT NOT NULL, evaluation_key TEXT, seconds {double} NOT NULL,
            eval_seconds {double} NOT NULL, recorded_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_variants_artifact_sha256 ON variants (artifact_sha256)",
        "CREATE INDEX ix_variants_run ON variants (run_id, seed)",
        """CREATE TABLE evaluations (
            id TEXT PRIMARY KEY, variant_id TEXT NOT NULL REFERENCES variants(id),
            kind TEXT NOT NULL, result TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_evaluations_variant_id ON evaluations (variant_id)",
        f"""CREATE TABLE gate_decisions (
            id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id),
            seed BIGINT NOT NULL, gate TEXT NOT NULL,
            variant_id TEXT NOT NULL REFERENCES variants(id), stage TEXT NOT NULL,
            artifact_sha256 TEXT NOT NULL, metric TEXT NOT NULL, rule TEXT NOT NULL,
            estimate {double}, ci_low {double}, ci_high {double}, n BIGINT, threshold {double},
            pvalue {double}, verdict TEXT NOT NULL, owner TEXT NOT NULL,
            evidence_sha256 TEXT NOT NULL, note TEXT NOT NULL, decided_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_gate_decisions_variant_id ON gate_decisions (variant_id)",
        """CREATE TABLE approvals (
            id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id),
            gate TEXT NOT NULL, variant_id TEXT NOT NULL REFERENCES variants(id),
            artifact_sha256 TEXT NOT NULL, kind TEXT NOT NULL, verdict TEXT NOT NULL,
            owner TEXT NOT NULL, keyid TEXT NOT NULL, reason TEXT, expires TEXT,
            envelope TEXT NOT NULL, recorded_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        """CREATE TABLE alias_moves (
            event_seq BIGINT PRIMARY KEY REFERENCES events(seq), alias TEXT NOT NULL,
            variant_id TEXT NOT NULL REFERENCES variants(id), artifact_sha256 TEXT NOT NULL,
            previous_variant_id TEXT, action TEXT NOT NULL, actor TEXT NOT NULL,
            reason TEXT NOT NULL, moved_at TEXT NOT NULL)""",
        "CREATE INDEX ix_alias_moves_alias ON alias_moves (alias, event_seq)",
    ]
    return statements + [s for table in _V1_TABLES for s in _guards(dialect, table)]


_V1_TABLES = (
    "events",
    "schema_migrations",
    "recipes",
    "runs",
    "run_seeds",
    "run_ends",
    "variants",
    "evaluations",
    "gate_decisions",
    "approvals",
    "alias_moves",
)


def _guards(dialect: str, table: str) -> list[str]:
    """Triggers that make `table` append-only."""
    if dialect == "sqlite":
        keys = _unique_columns(table)
        clash = " OR ".join(f"{column} = NEW.{column}" for column in keys)
        return [
            f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} BEGIN SELECT "
            f"RAISE(ABORT, 'compressgate catalog: {table} is append-only: UPDATE refused'); END",
            f"CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table} BEGIN SELECT "
            f"RAISE(ABORT, 'compressgate catalog: {table} is append-only: DELETE refused'); END",
            # INSERT OR REPLACE and upserts: refuse any row whose key is already taken, before
            # the conflict clause could delete the old row.
            f"CREATE TRIGGER {table}_no_replace BEFORE INSERT ON {table} "
            f"WHEN EXISTS (SELECT 1 FROM {table} WHERE {clash}) BEGIN SELECT "
            f"RAISE(ABORT, 'compressgate catalog: {table} is append-only: a row with this key "
            "exists (INSERT OR REPLACE refused)'); END",
        ]
    return [
        f"""CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table}
        FOR EACH ROW EXECUTE FUNCTION compressgate_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
        FOR EACH STATEMENT EXECUTE FUNCTION compressgate_append_only()""",
    ]


_PG_FUNCTION = """CREATE OR REPLACE FUNCTION compressgate_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'compressgate catalog: %% is append-only: %% refused', TG_TABLE_NAME, TG_OP
    USING ERRCODE = 'restrict_violation';
END $$"""


def _named_guards(dialect: str, table: str) -> list[tuple[str, str]]:
    """(trigger name, its CREATE statement) for each guard of `table`."""
    return [(sql.split()[2], sql) for sql in _guards(dialect, table)]


# The body of the PostgreSQL guard function as the server stores it (psycopg's %% unescaped).
_PG_BODY = " ".join(_PG_FUNCTION.split("$$")[1].replace("%%", "%").split())


def _unique_columns(table: str) -> list[str]:
    model = next(t for t in TABLES if _name(t) == table)
    columns = _table(model).columns
    return [c.name for c in columns if c.primary_key or c.unique]


def _v1(dialect: str) -> list[str]:
    return ([_PG_FUNCTION] if dialect == "postgresql" else []) + _ddl_v1(dialect)


def _v2(dialect: str) -> list[str]:
    """Run-level gate decisions: one row per gate of a run, decided by its seeds policy; and
    every later signature envelope of a recorded recipe.

    Approvals and waivers go to v1's `approvals` table: its `variant_id` is the variant the
    gate judged for the run's first seed; the envelope binds every judged variant."""
    double = "DOUBLE PRECISION"
    return [
        f"""CREATE TABLE gate_verdicts (
            id TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id),
            gate TEXT NOT NULL, owner TEXT NOT NULL, metric TEXT NOT NULL, stage TEXT NOT NULL,
            policy TEXT NOT NULL, approval TEXT NOT NULL, rule TEXT NOT NULL,
            estimate {double}, ci_low {double}, ci_high {double}, n BIGINT, threshold {double},
            pvalue {double}, verdict TEXT NOT NULL, note TEXT NOT NULL, seeds TEXT NOT NULL,
            power TEXT NOT NULL, evidence_sha256 TEXT NOT NULL, decided_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_gate_verdicts_run_id ON gate_verdicts (run_id)",
        "CREATE INDEX ix_approvals_run_id ON approvals (run_id, gate)",
        """CREATE TABLE recipe_envelopes (
            sha256 TEXT PRIMARY KEY, recipe_sha256 TEXT NOT NULL REFERENCES recipes(sha256),
            envelope TEXT NOT NULL, recorded_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_recipe_envelopes_recipe ON recipe_envelopes (recipe_sha256)",
        *_guards(dialect, "gate_verdicts"),
        *_guards(dialect, "recipe_envelopes"),
    ]


def _v3(dialect: str) -> list[str]:
    """Rendered reports: each file `report -o` writes, by the sha256 of its bytes, so that
    `audit verify --report FILE` tells a report as rendered from one changed since."""
    return [
        """CREATE TABLE reports (
            sha256 TEXT PRIMARY KEY, run_id TEXT NOT NULL REFERENCES runs(run_id),
            format TEXT NOT NULL, size_bytes BIGINT NOT NULL, path TEXT NOT NULL,
            head_size BIGINT NOT NULL, rendered_at TEXT NOT NULL, actor TEXT NOT NULL,
            tool TEXT NOT NULL, event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_reports_run_id ON reports (run_id)",
        *_guards(dialect, "reports"),
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _v1),
    Migration(2, "run-level gate decisions, recipe envelopes", _v2),
    Migration(3, "rendered reports", _v3),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def expected_triggers(dialect: str) -> set[str]:
    """The names of the append-only triggers a catalog of this dialect must have."""
    return {name for t in TABLES for name, _ in _named_guards(dialect, _name(t))}


# --- records returned ------------------------------------------------------------------------


class CatalogRecord(BaseModel):
    model_config = ConfigDict(frozen=True)


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


class VariantRecord(CatalogRecord):
    id: str
    run_id: str
    seed: int
    stage: str
    kind: str
    format: str | None
    artifact_sha256: str
    parent_sha256: str | None
    spec_sha256: str | None
    spec: dict[str, Any]
    recipe_sha256: str
    size_bytes: int | None
    params: int | None
    macs: int | None
    metrics: dict[str, Estimate]
    files: list[dict[str, Any]]
    recorded_at: str


class Decision(CatalogRecord):
    """One gate judged on one variant of one seed of a run."""

    run_id: str
    seed: int
    gate: str
    variant_id: str
    stage: str
    artifact_sha256: str
    metric: str
    rule: dict[str, Any]
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    threshold: float | None
    pvalue: float | None
    verdict: str
    owner: str
    evidence_sha256: str
    note: str
    decided_at: str


class AliasMove(CatalogRecord):
    seq: int
    alias: str
    variant_id: str
    artifact_sha256: str
    previous_variant_id: str | None
    action: Literal["promote", "rollback"]
    actor: str
    reason: str
    moved_at: str


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


class RecipeRecord(CatalogRecord):
    sha256: str
    name: str
    version: int
    path: str
    signers: list[str]
    content: str
    envelope: str
    recorded_at: str


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
    events_per_second: float
    checkpoint: Head | None = None
    reports: list[RecordedReport] = []


class RecordedReport(CatalogRecord):
    """A report file `report -o` wrote, as the catalog recorded it (schema v3)."""

    sha256: str
    run_id: str
    format: str
    size_bytes: int
    path: str
    head_size: int
    rendered_at: str
    actor: str
    tool: str
    seq: int


# --- helpers -----------------------------------------------------------------------------------


def document(value: Any) -> str:
    """The canonical text of a JSON document: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def chain_hash(seq: int, prev: str, content: str) -> str:
    return hashlib.sha256(f"{seq}\n{prev}\n{content}".encode()).hexdigest()


def event_body(table: str, row: dict[str, Any]) -> str:
    """What a row's event says of it: every column, documents by their sha256."""
    documents = DOCUMENTS.get(table, frozenset())
    shown = {
        key: (_sha(value) if key in documents and value is not None else value)
        for key, value in row.items()
        if key != "event_seq"
    }
    return document({"table": table, "row": shown})


def _json(text: str) -> Any:
    """A JSON document read back from the catalog; one that no longer parses was changed
    outside compressgate (exit 3)."""
    try:
        return json.loads(text)
    except ValueError as exc:
        raise IntegrityError(
            f"catalog document is damaged: {exc}",
            hint="run `compressgate audit verify` to find the changed row",
        ) from None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def default_actor() -> str:
    """Who is acting: $COMPRESSGATE_ACTOR, else the login name."""
    explicit = os.environ.get("COMPRESSGATE_ACTOR")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return f"uid:{os.getuid()}"


def catalog_url(workspace: Path, explicit: str | None = None) -> str:
    """`--catalog URL`, else $COMPRESSGATE_CATALOG, else SQLite at WORKSPACE/catalog.db.

    A plain path is taken as a SQLite file.
    """
    value = explicit or os.environ.get(CATALOG_ENV) or str(workspace / CATALOG_FILE)
    if "://" not in value:
        return f"sqlite:///{Path(value).resolve()}"
    return value


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable catalog URL>"


# --- the repository ----------------------------------------------------------------------------

# What SQLite says of a file it can open but not read: damage (exit 3), not an unreachable
# catalog (exit 4). A flipped byte in a row's text, or in the schema's own SQL, says the last.
_DAMAGE = (
    "malformed",
    "not a database",
    "Could not decode to UTF-8",
    "no such table",
    "no such column",
    "unsupported file format",
)


class Catalog:
    """The one door to the catalog database: appends records, reads them back, verifies."""

    def __init__(self, url: str, *, create: bool = True, migrate: bool = False) -> None:
        """Open the catalog at `url`. With `create` (the commands that record runs), create it
        or apply pending migrations; with `migrate` (the other writing commands), open an
        existing catalog and apply pending migrations; with neither, only open an existing
        catalog of the current schema."""
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port not a number
            raise ManifestError(
                f"catalog URL {safe_url(url)!r} cannot be parsed: {exc}",
                hint="use a path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            ) from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ManifestError(
                f"catalog URL {safe_url(url)!r}: only SQLite and PostgreSQL are supported",
                hint="use a path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            )
        if self.dialect == "sqlite" and parsed.database:
            if not create and not Path(parsed.database).is_file():
                raise NotFoundError(
                    f"no catalog at {parsed.database}",
                    hint="`compressgate run` creates it; or pass --catalog URL",
                )
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = self._engine(url)
        try:
            if create:
                self.migrate()
            elif migrate:
                with self._reading() as conn:
                    if self._version(conn) == 0:
                        raise NotFoundError(
                            f"no catalog at {safe_url(self.url)}: the database has no catalog "
                            "tables",
                            hint="`compressgate run` creates it",
                        )
                self.migrate()
            else:
                self._check_schema()
        except BaseException:
            self.engine.dispose()
            raise

    # -- connection handling

    def _engine(self, url: str) -> Engine:
        if self.dialect == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": 120})

            @sa.event.listens_for(engine, "connect")
            def _connect(dbapi: Any, _record: Any) -> None:
                dbapi.isolation_level = None  # we issue BEGIN ourselves
                cursor = dbapi.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=120000")
                # 64 MiB of page cache: index lookups in a catalog of millions of events stay
                # in memory (SQLite's default is 2 MiB).
                cursor.execute("PRAGMA cache_size=-65536")
                cursor.close()

            @sa.event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                # Writers take the write lock at once: no two read the same chain head.
                write = conn.get_execution_options().get("compressgate_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        try:
            with (
                self.engine.connect().execution_options(compressgate_write=True) as conn,
                conn.begin(),
            ):
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(
                        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || "
                        "'.compressgate-events'))"
                    )
                yield conn
        except sa.exc.OperationalError as exc:
            raise self._unavailable(exc) from None
        except sa.exc.IntegrityError as exc:
            text = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise IntegrityError(
                f"catalog {safe_url(self.url)} refused the write: {text}"
            ) from None
        except sa.exc.DatabaseError as exc:
            raise self._damaged(exc) from None
        except UnicodeDecodeError as exc:
            raise self._undecodable(exc) from None

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise self._unavailable(exc) from None
        except sa.exc.DatabaseError as exc:
            raise self._damaged(exc) from None
        except UnicodeDecodeError as exc:  # SQLite quoting bytes of a damaged file
            raise self._undecodable(exc) from None

    def _undecodable(self, exc: UnicodeDecodeError) -> IntegrityError:
        return IntegrityError(
            f"catalog {safe_url(self.url)} is damaged: it holds bytes that are not UTF-8 "
            f"({exc.reason} at {exc.start})",
            hint="restore it from a backup and run `compressgate audit verify`",
        )

    def _damaged(self, exc: sa.exc.DatabaseError) -> IntegrityError:
        text = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return IntegrityError(
            f"catalog {safe_url(self.url)} is damaged: {text}",
            hint="restore it from a backup and run `compressgate audit verify`",
        )

    def _unavailable(self, exc: sa.exc.OperationalError) -> CompressgateError:
        text = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if any(sign in text for sign in _DAMAGE):
            return IntegrityError(
                f"catalog {safe_url(self.url)} is damaged: {text}",
                hint="restore it from a backup and run `compressgate audit verify`",
            )
        return NotFoundError(
            f"catalog {safe_url(self.url)} is not reachable: {text}",
            hint="check --catalog / $COMPRESSGATE_CATALOG",
        )

    # -- schema

    def _version(self, conn: Connection) -> int:
        """The applied schema version (0: an empty database); exit 5 if newer than ours."""
        inspector = sa.inspect(conn)
        current = 0
        if inspector.has_table("schema_migrations"):
            current = (
                conn.execute(sa.select(sa.func.max(_table(SchemaMigration).c.version))).scalar_one()
                or 0
            )
        if current == 0 and inspector.has_table("events"):
            raise IntegrityError(
                f"catalog {safe_url(self.url)} has an event log but no applied migration: "
                "its schema history was deleted",
                hint="restore it from a backup and audit it against a checkpoint",
            )
        if current > SCHEMA_VERSION:
            raise EnvironmentMismatch(
                f"catalog {safe_url(self.url)} has schema version {current}; this "
                f"compressgate knows versions up to {SCHEMA_VERSION}",
                hint="upgrade compressgate to read this catalog",
            )
        return int(current)

    def _check_schema(self) -> None:
        with self._reading() as conn:
            current = self._version(conn)
        if current == 0:
            raise NotFoundError(
                f"no catalog at {safe_url(self.url)}: the database has no catalog tables",
                hint="`compressgate run` creates it",
            )
        if current < SCHEMA_VERSION:
            raise EnvironmentMismatch(
                f"catalog {safe_url(self.url)} has schema version {current}, older than this "
                f"compressgate's {SCHEMA_VERSION}",
                hint="any writing command (run, submit, ci, promote, rollback, approve, waive, "
                "report -o) migrates it",
            )

    def migrate(self) -> None:
        """Apply every migration the database has not seen, each with its own event."""
        with self._writing() as conn:
            current = self._version(conn)
            for migration in MIGRATIONS:
                if migration.version <= current:
                    continue
                for statement in migration.statements(self.dialect):
                    conn.exec_driver_sql(statement)
                self._append(
                    conn,
                    [
                        (
                            SchemaMigration,
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "applied_at": now(),
                            },
                        )
                    ],
                )

    def schema_version(self) -> int:
        with self._reading() as conn:
            return int(
                conn.execute(sa.select(sa.func.max(_table(SchemaMigration).c.version))).scalar_one()
            )

    # -- appending

    def _append(
        self, conn: Connection, rows: Sequence[tuple[type[SQLModel], dict[str, Any]]]
    ) -> list[int]:
        """Append rows, each with its chained event, inside the caller's write transaction."""
        events = _table(Event)
        last = conn.execute(
            sa.select(events.c.seq, events.c.sha256).order_by(events.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        new_events, sequences = [], []
        by_table: dict[type[SQLModel], list[dict[str, Any]]] = {}
        for model, given in rows:
            seq += 1
            row = _coerced(model, given)
            body = event_body(_name(model), row)
            content = _sha(body)
            digest = chain_hash(seq, prev, content)
            new_events.append(
                {
                    "seq": seq,
                    "content_sha256": content,
                    "prev_sha256": prev,
                    "sha256": digest,
                    "body": body,
                }
            )
            by_table.setdefault(model, []).append({**row, "event_seq": seq})
            sequences.append(seq)
            prev = digest
        conn.execute(events.insert(), new_events)
        for model in ROW_TABLES:  # parents before children (foreign keys)
            if model in by_table:
                conn.execute(_table(model).insert(), by_table[model])
        return sequences

    def append(self, rows: Sequence[tuple[type[SQLModel], dict[str, Any]]]) -> list[int]:
        """Append rows (each with its event) in one transaction; returns their event numbers."""
        with self._writing() as conn:
            return self._append(conn, rows)

    # -- recording a run

    def record_run_start(
        self,
        record: RunRecord,
        *,
        recipe_content: str,
        envelope: str,
        lock_sha256: str,
        actor: str | None = None,
    ) -> None:
        """The recipe (once per exact bytes) and the run's start, in one transaction."""
        who = actor or default_actor()
        at = now()
        with self._writing() as conn:
            rows: list[tuple[type[SQLModel], dict[str, Any]]] = []
            recipes = _table(RecipeRow)
            known = conn.execute(
                sa.select(recipes.c.sha256).where(recipes.c.sha256 == record.recipe.sha256)
            ).first()
            if known is not None:
                rows += self._new_envelope(conn, record.recipe.sha256, envelope, at)
            if known is None:
                rows.append(
                    (
                        RecipeRow,
                        {
                            "sha256": record.recipe.sha256,
                            "name": record.recipe.name,
                            "version": record.recipe.version,
                            "path": record.recipe.path,
                            "signers": document(record.recipe.signers),
                            "content": recipe_content,
                            "envelope": envelope,
                            "recorded_at": at,
                            "actor": who,
                        },
                    )
                )
            rows.append(
                (
                    RunRow,
                    {
                        "run_id": record.run_id,
                        "recipe_sha256": record.recipe.sha256,
                        "recipe_name": record.recipe.name,
                        "recipe_version": record.recipe.version,
                        "recipe_path": record.recipe.path,
                        "signers": document(record.recipe.signers),
                        "seeds": document(record.seeds),
                        "workspace": record.workspace,
                        "started_at": record.started_at,
                        "environment": document(record.environment),
                        "environment_sha256": record.environment.get("fingerprint_sha256", ""),
                        "lock_sha256": lock_sha256,
                        "actor": who,
                    },
                )
            )
            self._append(conn, rows)

    def _new_envelope(
        self, conn: Connection, recipe_sha256: str, envelope: str, at: str
    ) -> list[tuple[type[SQLModel], dict[str, Any]]]:
        """The row for `envelope` if the recipe has not been recorded with it yet."""
        if envelope in self._envelopes(conn, recipe_sha256):
            return []
        return [
            (
                RecipeEnvelopeRow,
                {
                    "sha256": hashlib.sha256(envelope.encode("utf-8")).hexdigest(),
                    "recipe_sha256": recipe_sha256,
                    "envelope": envelope,
                    "recorded_at": at,
                },
            )
        ]

    def _envelopes(self, conn: Connection, recipe_sha256: str) -> list[str]:
        recipes, later = _table(RecipeRow), _table(RecipeEnvelopeRow)
        first = conn.execute(
            sa.select(recipes.c.envelope).where(recipes.c.sha256 == recipe_sha256)
        ).scalar()
        rest = conn.execute(
            sa.select(later.c.envelope)
            .where(later.c.recipe_sha256 == recipe_sha256)
            .order_by(later.c.event_seq)
        ).scalars()
        return ([first] if first is not None else []) + list(rest)

    def recipe_envelopes(self, recipe_sha256: str) -> list[str]:
        """Every signature envelope the recipe was run with, oldest first."""
        with self._reading() as conn:
            return self._envelopes(conn, recipe_sha256)

    def record_seed(self, run_id: str, seed: int, data: dict[str, str]) -> None:
        """The digests of one seed's data splits, as the run loaded them."""
        row = {"id": f"{run_id}/{seed}", "run_id": run_id, "seed": seed, "data": document(data)}
        self.append([(RunSeedRow, row)])

    def record_stage(self, run_id: str, recipe_sha256: str, stage: StageRecord, spec: Any) -> None:
        """A finished stage: its variant row and one evaluation row per evaluator."""
        assert stage.artifact_sha256 is not None
        variant_id = f"{run_id}/{stage.seed}/{stage.name}"
        row = {
            "id": variant_id,
            "run_id": run_id,
            "seed": stage.seed,
            "stage": stage.name,
            "kind": stage.kind,
            "format": stage.format,
            "artifact_sha256": stage.artifact_sha256,
            "parent_sha256": stage.parent_sha256,
            "spec_sha256": stage.spec_sha256,
            "spec": document(spec),
            "recipe_sha256": recipe_sha256,
            "cache_key": stage.cache_key,
            "cached": stage.cached,
            "size_bytes": stage.size_bytes,
            "files": document(stage.files),
            "params": stage.params,
            "nonzero_params": stage.nonzero_params,
            "macs": stage.macs,
            "metrics": document({k: v.model_dump(mode="json") for k, v in stage.metrics.items()}),
            "details": document(stage.details),
            "warnings": document(stage.warnings),
            "evaluation_key": stage.evaluation_key,
            "seconds": float(stage.seconds),
            "eval_seconds": float(stage.eval_seconds),
            "recorded_at": now(),
        }
        rows: list[tuple[type[SQLModel], dict[str, Any]]] = [(VariantRow, row)]
        for kind, result in stage.evaluations.items():
            rows.append(
                (
                    EvaluationRow,
                    {
                        "id": f"{variant_id}/{kind}",
                        "variant_id": variant_id,
                        "kind": kind,
                        "result": document(result.model_dump(mode="json")),
                    },
                )
            )
        self.append(rows)

    def record_run_end(
        self,
        record: RunRecord,
        decisions: Sequence[Decision] = (),
        verdicts: Sequence[GateDecision] = (),
    ) -> None:
        """The run's outcome, its per-seed gate judgements and its gate decisions, in one
        transaction."""
        failed = [s.model_dump(mode="json") for s in record.stages if s.status == "failed"]
        rows: list[tuple[type[SQLModel], dict[str, Any]]] = [
            (
                GateDecisionRow,
                {
                    **d.model_dump(exclude={"rule"}),
                    "id": f"{d.run_id}/{d.seed}/{d.gate}",
                    "rule": document(d.rule),
                },
            )
            for d in decisions
        ]
        rows += [
            (
                GateVerdictRow,
                {
                    **v.model_dump(mode="json", exclude={"rule", "seeds", "power"}),
                    "id": f"{v.run_id}/{v.gate}",
                    "rule": document(v.rule),
                    "seeds": document([s.model_dump(mode="json") for s in v.seeds]),
                    "power": document(v.power),
                },
            )
            for v in verdicts
        ]
        rows.append(
            (
                RunEndRow,
                {
                    "run_id": record.run_id,
                    "status": record.status,
                    "finished_at": record.finished_at or now(),
                    "error": record.error,
                    "timing": document(record.timing.model_dump(mode="json")),
                    "aggregate": document(
                        {
                            stage: {m: v.model_dump(mode="json") for m, v in metrics.items()}
                            for stage, metrics in record.aggregate.items()
                        }
                    ),
                    "exemplars": document(
                        {k: v.model_dump(mode="json") for k, v in record.exemplars.items()}
                    ),
                    "failed_stages": document(failed),
                },
            )
        )
        self.append(rows)

    # -- reading runs

    def run(self, run_id: str) -> RunRecord:
        """The full run record, as the executor held it (the JSON export of a run)."""
        with self._reading() as conn:
            runs, ends = _table(RunRow), _table(RunEndRow)
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                raise self._no_run(conn, run_id)
            end = conn.execute(sa.select(ends).where(ends.c.run_id == run_id)).mappings().first()
            seeds = _table(RunSeedRow)
            data = {
                str(seed): _json(text)
                for seed, text in conn.execute(
                    sa.select(seeds.c.seed, seeds.c.data)
                    .where(seeds.c.run_id == run_id)
                    .order_by(seeds.c.event_seq)
                )
            }
            variants, evaluations = _table(VariantRow), _table(EvaluationRow)
            stage_rows = (
                conn.execute(
                    sa.select(variants)
                    .where(variants.c.run_id == run_id)
                    .order_by(variants.c.event_seq)
                )
                .mappings()
                .all()
            )
            results: dict[str, dict[str, Any]] = {}
            for evaluation in conn.execute(
                sa.select(evaluations.c.variant_id, evaluations.c.kind, evaluations.c.result)
                .join(variants, variants.c.id == evaluations.c.variant_id)
                .where(variants.c.run_id == run_id)
                .order_by(evaluations.c.event_seq)
            ):
                results.setdefault(evaluation[0], {})[evaluation[1]] = _json(evaluation[2])
        try:
            stages = [_stage_record(dict(s), results.get(s["id"], {})) for s in stage_rows]
            if end is not None:
                stages += [StageRecord.model_validate(s) for s in _json(end["failed_stages"])]
            return RunRecord(
                run_id=row["run_id"],
                recipe=RecipeRef(
                    name=row["recipe_name"],
                    version=row["recipe_version"],
                    sha256=row["recipe_sha256"],
                    path=row["recipe_path"],
                    signers=_json(row["signers"]),
                ),
                status=end["status"] if end is not None else "running",
                started_at=row["started_at"],
                finished_at=end["finished_at"] if end is not None else None,
                workspace=row["workspace"],
                seeds=_json(row["seeds"]),
                environment=_json(row["environment"]),
                data=data,
                stages=stages,
                aggregate=(
                    {
                        stage: {m: SeedAggregate.model_validate(v) for m, v in metrics.items()}
                        for stage, metrics in _json(end["aggregate"]).items()
                    }
                    if end is not None
                    else {}
                ),
                exemplars=(
                    {
                        k: ExemplarsResult.model_validate(v)
                        for k, v in _json(end["exemplars"]).items()
                    }
                    if end is not None
                    else {}
                ),
                timing=Timing.model_validate_json(end["timing"]) if end is not None else Timing(),
                error=end["error"] if end is not None else None,
            )
        except ValidationError as exc:
            # A JSON document that still parses but no longer holds what was written (a flipped
            # byte in a key, say): changed outside compressgate, like one that does not parse.
            where = ".".join(map(str, exc.errors()[0]["loc"]))
            raise IntegrityError(
                f"catalog rows of run {run_id} no longer form its record: "
                f"{exc.error_count()} field(s) invalid, first {where}",
                hint="run `compressgate audit verify` to find the changed row",
            ) from None

    def _no_run(self, conn: Connection, run_id: str) -> NotFoundError:
        runs = _table(RunRow)
        recent = [
            r[0]
            for r in conn.execute(sa.select(runs.c.run_id).order_by(runs.c.run_id.desc()).limit(5))
        ]
        return NotFoundError(
            f"run {run_id} is not in the catalog {safe_url(self.url)}",
            hint=f"recent runs: {', '.join(recent)}" if recent else "no run has been recorded yet",
        )

    def run_info(self, run_id: str) -> RunInfo:
        runs = _table(RunRow)
        with self._reading() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                raise self._no_run(conn, run_id)
        fingerprint = _json(row["environment"]).get("fingerprint", {})
        return RunInfo(
            run_id=row["run_id"],
            recipe=row["recipe_name"],
            version=row["recipe_version"],
            recipe_sha256=row["recipe_sha256"],
            signers=_json(row["signers"]),
            environment_sha256=row["environment_sha256"],
            lock_sha256=row["lock_sha256"],
            python=fingerprint.get("python"),
            started_at=row["started_at"],
            actor=row["actor"],
        )

    def runs(
        self, *, recipe: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunListing]:
        """Runs, newest first (run ids start with their UTC time), optionally of one recipe."""
        runs, ends = _table(RunRow), _table(RunEndRow)
        query = (
            sa.select(
                runs.c.run_id,
                runs.c.recipe_name,
                runs.c.recipe_version,
                runs.c.recipe_sha256,
                ends.c.status,
                runs.c.started_at,
                ends.c.finished_at,
                runs.c.seeds,
                runs.c.signers,
            )
            .select_from(runs.outerjoin(ends, ends.c.run_id == runs.c.run_id))
            .order_by(runs.c.run_id.desc())
        )
        # Page the keys from the index alone (OFFSET skips index entries, not joined rows),
        # then join only the page's runs.
        keys = sa.select(runs.c.run_id).order_by(runs.c.run_id.desc()).limit(limit).offset(offset)
        if recipe is not None:
            keys = keys.where(runs.c.recipe_name == recipe)
        query = query.where(runs.c.run_id.in_(keys))
        with self._reading() as conn:
            return [
                RunListing(
                    run_id=r[0],
                    recipe=r[1],
                    version=r[2],
                    recipe_sha256=r[3],
                    status=r[4] or "running",
                    started_at=r[5],
                    finished_at=r[6],
                    seeds=_json(r[7]),
                    signers=_json(r[8]),
                )
                for r in conn.execute(query)
            ]

    def recipe(self, sha256: str) -> RecipeRecord:
        with self._reading() as conn:
            table = _table(RecipeRow)
            row = conn.execute(sa.select(table).where(table.c.sha256 == sha256)).mappings().first()
        if row is None:
            raise NotFoundError(f"recipe {sha256} is not in the catalog")
        return RecipeRecord(
            **{k: v for k, v in row.items() if k not in ("signers", "actor", "event_seq")},
            signers=_json(row["signers"]),
        )

    # -- variants

    def variant(self, ref: str) -> VariantRecord:
        """A variant by id (RUN/SEED/STAGE) or by a prefix of its artifact sha256 (at least 6
        hex digits; when several records share the artifact: the newest run's first)."""
        variants = _table(VariantRow)
        with self._reading() as conn:
            if "/" in ref:
                query = sa.select(variants).where(variants.c.id == ref)
            else:
                if len(ref) < 6 or any(ch not in "0123456789abcdef" for ch in ref):
                    raise ManifestError(
                        f"variant {ref!r}: give RUN/SEED/STAGE or at least 6 hex digits of its "
                        "artifact sha256"
                    )
                query = (
                    sa.select(variants)
                    # A range the index serves (LIKE is not indexed in SQLite), then the prefix.
                    .where(
                        variants.c.artifact_sha256 >= ref,
                        variants.c.artifact_sha256 < ref + "g",
                        variants.c.artifact_sha256.startswith(ref),
                    )
                    .order_by(variants.c.event_seq.desc())
                )
            rows = conn.execute(query.limit(50)).mappings().all()
        if not rows:
            raise NotFoundError(
                f"no variant {ref} in the catalog {safe_url(self.url)}",
                hint="`compressgate catalog show RUN` lists a run's variants",
            )
        artifacts = {r["artifact_sha256"]: r["stage"] for r in rows}
        if len(artifacts) > 1:
            shown = ", ".join(f"{sha[:16]}… ({name})" for sha, name in sorted(artifacts.items()))
            raise ManifestError(
                f"variant '{ref}' is ambiguous: it starts {len(artifacts)} variants: {shown}",
                hint="give more hex digits",
            )
        # The newest run that made it; within that run, the stage that made it first (an
        # export of an ONNX model repeats its parent's bytes).
        newest = rows[0]["run_id"]
        first = min((r for r in rows if r["run_id"] == newest), key=lambda r: r["event_seq"])
        return _variant_record(dict(first))

    def records_of_artifact(self, sha256: str) -> list[VariantRecord]:
        variants = _table(VariantRow)
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(variants)
                .where(variants.c.artifact_sha256 == sha256)
                .order_by(variants.c.event_seq.desc())
            ).mappings()
            return [_variant_record(dict(r)) for r in rows]

    def lineage(self, ref: str) -> list[VariantRecord]:
        """The variant and its ancestors within its run and seed, baseline first."""
        variant = self.variant(ref)
        chain = [variant]
        variants = _table(VariantRow)
        with self._reading() as conn:
            while chain[-1].parent_sha256 is not None and len(chain) < 1000:
                row = (
                    conn.execute(
                        sa.select(variants)
                        .where(
                            variants.c.run_id == variant.run_id,
                            variants.c.seed == variant.seed,
                            variants.c.artifact_sha256 == chain[-1].parent_sha256,
                        )
                        .order_by(variants.c.event_seq)
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    break
                chain.append(_variant_record(dict(row)))
        return chain[::-1]

    def decisions(self, variant_id: str | None = None, run_id: str | None = None) -> list[Decision]:
        table = _table(GateDecisionRow)
        query = sa.select(table).order_by(table.c.event_seq)
        if variant_id is not None:
            query = query.where(table.c.variant_id == variant_id)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        with self._reading() as conn:
            return [
                Decision(
                    **{k: v for k, v in r.items() if k not in ("id", "rule", "event_seq")},
                    rule=_json(r["rule"]),
                )
                for r in conn.execute(query).mappings()
            ]

    def gate_verdicts(self, run_id: str) -> list[GateDecision]:
        """The run's gate decisions (one per gate, by its seeds policy), in recipe order."""
        table = _table(GateVerdictRow)
        query = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.event_seq)
        with self._reading() as conn:
            return [
                GateDecision(
                    **{
                        k: v
                        for k, v in r.items()
                        if k not in ("id", "rule", "seeds", "power", "event_seq")
                    },
                    rule=_json(r["rule"]),
                    seeds=[SeedVerdict.model_validate(s) for s in _json(r["seeds"])],
                    power=_json(r["power"]),
                )
                for r in conn.execute(query).mappings()
            ]

    def record_signoff(self, row: dict[str, Any]) -> int:
        """Record an approval or a waiver (the caller has checked its envelope); its id is the
        envelope's sha256, so the same envelope is recorded once."""
        table = _table(ApprovalRow)
        with self._writing() as conn:
            taken = conn.execute(sa.select(table.c.id).where(table.c.id == row["id"])).first()
            if taken is not None:
                raise Refused(
                    f"this {row['kind']} is already recorded for run {row['run_id']}",
                    hint="`compressgate review status` shows it",
                )
            (seq,) = self._append(conn, [(ApprovalRow, row)])
            return seq

    def signoffs(self, run_id: str) -> list[dict[str, Any]]:
        """The approvals and waivers recorded for a run, oldest first, as stored."""
        table = _table(ApprovalRow)
        query = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.event_seq)
        with self._reading() as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def reusable_run(self, recipe_sha256: str, environment_sha256: str) -> str | None:
        """The newest finished run of this exact recipe in this exact environment, if any."""
        runs, ends = _table(RunRow), _table(RunEndRow)
        query = (
            sa.select(runs.c.run_id)
            .select_from(runs.join(ends, ends.c.run_id == runs.c.run_id))
            .where(
                runs.c.recipe_sha256 == recipe_sha256,
                runs.c.environment_sha256 == environment_sha256,
                ends.c.status.in_(("succeeded", "stopped")),
            )
            .order_by(runs.c.run_id.desc())
            .limit(1)
        )
        with self._reading() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    # -- reports

    def record_report(self, row: dict[str, Any]) -> RecordedReport:
        """Record a rendered report (a new event), unless its exact bytes are recorded already:
        then the first record stands and nothing is appended."""
        table = _table(ReportRow)
        with self._writing() as conn:
            taken = (
                conn.execute(sa.select(table).where(table.c.sha256 == row["sha256"]))
                .mappings()
                .first()
            )
            if taken is not None:
                return _recorded_report(dict(taken))
            (seq,) = self._append(conn, [(ReportRow, row)])
        return _recorded_report({**_coerced(ReportRow, row), "event_seq": seq})

    def report_by_sha256(self, sha256: str) -> RecordedReport | None:
        """The recorded report whose bytes have this sha256, or None."""
        table = _table(ReportRow)
        with self._reading() as conn:
            found = (
                conn.execute(sa.select(table).where(table.c.sha256 == sha256)).mappings().first()
            )
        return None if found is None else _recorded_report(dict(found))

    # -- aliases

    def move_alias(
        self,
        alias: str,
        variant: VariantRecord,
        *,
        action: Literal["promote", "rollback"],
        reason: str,
        actor: str | None = None,
        expected_previous: str | Literal[False] | None = False,
    ) -> AliasMove:
        """Point `alias` at `variant` (a new event). With `expected_previous`, refuse if the
        alias moved meanwhile (another on-call got there first)."""
        moves = _table(AliasMoveRow)
        with self._writing() as conn:
            current = conn.execute(
                sa.select(moves.c.variant_id)
                .where(moves.c.alias == alias)
                .order_by(moves.c.event_seq.desc())
                .limit(1)
            ).scalar()
            if expected_previous is not False and current != expected_previous:
                raise ManifestError(
                    f"alias {alias} moved meanwhile (now {current}); nothing changed",
                    hint="look at `compressgate alias history` and try again",
                )
            row = {
                "alias": alias,
                "variant_id": variant.id,
                "artifact_sha256": variant.artifact_sha256,
                "previous_variant_id": current,
                "action": action,
                "actor": actor or default_actor(),
                "reason": reason,
                "moved_at": now(),
            }
            (seq,) = self._append(conn, [(AliasMoveRow, row)])
        return AliasMove(seq=seq, **row)  # type: ignore[arg-type]

    def alias_history(self, alias: str) -> list[AliasMove]:
        """Every move of the alias, oldest first."""
        moves = _table(AliasMoveRow)
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(moves).where(moves.c.alias == alias).order_by(moves.c.event_seq)
            ).mappings()
            return [
                AliasMove(seq=r["event_seq"], **{k: v for k, v in r.items() if k != "event_seq"})
                for r in rows
            ]

    def alias(self, alias: str) -> AliasMove | None:
        """Where the alias points now (its last move), or None."""
        moves = _table(AliasMoveRow)
        with self._reading() as conn:
            r = (
                conn.execute(
                    sa.select(moves)
                    .where(moves.c.alias == alias)
                    .order_by(moves.c.event_seq.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if r is None:
            return None
        return AliasMove(seq=r["event_seq"], **{k: v for k, v in r.items() if k != "event_seq"})

    def aliases(self) -> dict[str, AliasMove]:
        moves = _table(AliasMoveRow)
        with self._reading() as conn:
            names = [r[0] for r in conn.execute(sa.select(moves.c.alias).distinct())]
        found = {name: self.alias(name) for name in sorted(names)}
        return {k: v for k, v in found.items() if v is not None}

    # -- audit

    def head(self) -> Head:
        events = _table(Event)
        with self._reading() as conn:
            last = conn.execute(
                sa.select(events.c.seq, events.c.sha256).order_by(events.c.seq.desc()).limit(1)
            ).first()
        return (
            Head(size=int(last[0]), sha256=str(last[1])) if last else Head(size=0, sha256=GENESIS)
        )

    def evidence_head(self) -> Head:
        """The newest event that is not a rendered report's: what a report shows as the chain
        head, so that recording a report does not change the next rendering of it."""
        events, reports = _table(Event), _table(ReportRow)
        with self._reading() as conn:
            last = conn.execute(
                sa.select(events.c.seq, events.c.sha256)
                .where(~events.c.seq.in_(sa.select(reports.c.event_seq)))
                .order_by(events.c.seq.desc())
                .limit(1)
            ).first()
        return (
            Head(size=int(last[0]), sha256=str(last[1])) if last else Head(size=0, sha256=GENESIS)
        )

    def event_hash(self, seq: int) -> str | None:
        events = _table(Event)
        with self._reading() as conn:
            return conn.execute(sa.select(events.c.sha256).where(events.c.seq == seq)).scalar()

    def verify_chain(self, workers: int | None = None) -> Head:
        """Recompute every event's content and chain hash, in order; raise at the first break.

        A long chain is checked in `workers` processes (default: one per CPU, at most 8), each
        over a contiguous range of events; the links between ranges are checked here."""
        events = _table(Event)
        with self._reading() as conn:
            size = int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())
        count = workers or min(os.cpu_count() or 1, 8)
        forking = "fork" in multiprocessing.get_all_start_methods()
        if size < _PARALLEL_FROM or count < 2 or not forking:
            spans = [_verify_span(self.url, 1, size)]
        else:
            bounds = [1 + size * k // count for k in range(count + 1)]
            # fork: the workers open their own connections and never touch the parent's; spawn
            # would re-import a caller's __main__.
            context = multiprocessing.get_context("fork")
            with ProcessPoolExecutor(count, mp_context=context) as pool:
                spans = list(
                    pool.map(
                        _verify_span,
                        [self.url] * count,
                        bounds[:-1],
                        [b - 1 for b in bounds[1:]],
                    )
                )
        prev = GENESIS
        for span in spans:
            if span.first_prev is not None and span.first_prev != prev:
                raise IntegrityError(
                    f"catalog chain broken at event {span.start}: it does not link to event "
                    f"{span.start - 1} (prev_sha256 {span.first_prev[:16]}…, expected "
                    f"{prev[:16]}…)"
                )
            if span.error is not None:
                raise IntegrityError(span.error[1], hint=span.error[2])
            prev = span.last or prev
        return Head(size=size, sha256=prev)

    def verify_rows(self) -> int:
        """Every row against its event's body; every event owned by exactly one row."""
        owned = 0
        with self._reading() as conn:
            for model in ROW_TABLES:
                table, name = _table(model), _name(model)
                events = _table(Event)
                query = sa.select(table, events.c.content_sha256.label("_content")).join(
                    events, events.c.seq == table.c.event_seq
                )
                # Closed even when a row breaks off the loop: PostgreSQL streams through a
                # server-side cursor.
                with closing(conn.execution_options(yield_per=5000).execute(query)) as result:
                    for mapping in result.mappings():
                        # As written: SQLite gives booleans back as 0/1.
                        row = _coerced(model, {k: v for k, v in mapping.items() if k != "_content"})
                        if _sha(event_body(name, row)) != mapping["_content"]:
                            key = ", ".join(f"{c}={row[c]}" for c in _unique_columns(name)[:1])
                            raise IntegrityError(
                                f"catalog row {name}({key}) does not match its event "
                                f"{row['event_seq']}: the row was edited after it was recorded"
                            )
                        owned += 1
                unowned = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(~table.c.event_seq.in_(sa.select(events.c.seq)))
                ).scalar_one()
                if unowned:
                    raise IntegrityError(
                        f"catalog table {name} has {unowned} row(s) without an event"
                    )
            total = conn.execute(sa.select(sa.func.count()).select_from(_table(Event))).scalar_one()
        if owned != total:
            raise IntegrityError(
                f"catalog has {total} events but {owned} rows point at one: rows were deleted "
                "or inserted around the chain"
            )
        return owned

    def verify_storage(self) -> None:
        """SQLite: the file's pages, indexes and free list as SQLite checks them (`PRAGMA
        integrity_check`): a changed byte that no row shows (an index entry, a page header);
        and every table and index defined exactly as its migration created it."""
        if self.dialect != "sqlite":
            return
        with self._reading() as conn:
            found = [str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check")]
            objects = [
                (str(kind), str(name), str(table), sql)
                for kind, name, table, sql in conn.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                )
            ]
            version = self._version(conn)
        defined = {n: " ".join(str(sql).split()) for k, n, _, sql in objects if sql is not None}
        if found != ["ok"]:
            raise IntegrityError(
                f"catalog {safe_url(self.url)} is damaged: {found[0]}"
                + (f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""),
                hint="restore it from a backup and run `compressgate audit verify`",
            )
        expected = {
            statement.split()[2]: " ".join(statement.split())
            for migration in MIGRATIONS
            if migration.version <= version
            for statement in migration.statements(self.dialect)
            if statement.split()[:2] in (["CREATE", "TABLE"], ["CREATE", "INDEX"])
        }
        # Each object of the kind and on the table its name says (the triggers' text is
        # `verify_triggers`'s); SQLite's own indexes for UNIQUE columns named after their table.
        owners = {
            n: (sql.split()[1].lower(), sql.split()[4] if sql.split()[1] == "INDEX" else n)
            for n, sql in expected.items()
        }
        owners.update(
            {
                n: ("trigger", t)
                for t in {o[1] for o in owners.values()}
                for n, _ in _named_guards(self.dialect, t)
            }
        )
        altered = sorted(n for n, sql in expected.items() if defined.get(n) != sql)
        for kind, name, table, _ in objects:
            auto = name.startswith("sqlite_autoindex_") and (
                "index",
                name.removeprefix("sqlite_autoindex_").rsplit("_", 1)[0],
            )
            if (kind, table) != (owners.get(name) or auto):
                altered.append(name)
        if altered:
            raise IntegrityError(
                f"catalog {safe_url(self.url)} schema altered: {', '.join(altered)} no longer "
                "defined as its migration created it",
                hint="someone altered the schema; audit the catalog against a checkpoint",
            )

    def verify_triggers(self) -> None:
        """Every append-only trigger present, enabled and exactly as we created it."""
        expected = {
            name: " ".join(sql.split())
            for model in TABLES
            for name, sql in _named_guards(self.dialect, _name(model))
        }
        with self._reading() as conn:
            if self.dialect == "sqlite":
                found = {
                    str(name): " ".join(str(sql).split())
                    for name, sql in conn.exec_driver_sql(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                    )
                }
                altered = sorted(n for n in expected if n in found and found[n] != expected[n])
                disabled: list[str] = []
                body_ok = True
            else:
                rows = conn.exec_driver_sql(
                    "SELECT t.tgname, t.tgenabled, p.proname, p.prosrc FROM pg_trigger t "
                    "JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_proc p ON p.oid = t.tgfoid "
                    "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
                ).all()
                found = {str(r[0]): "" for r in rows}
                disabled = sorted(str(r[0]) for r in rows if r[1] not in ("O", "A"))
                altered = sorted(
                    str(r[0])
                    for r in rows
                    if r[0] in expected and r[2] != "compressgate_append_only"
                )
                bodies = {" ".join(str(r[3]).split()) for r in rows if r[0] in expected}
                body_ok = bodies <= {_PG_BODY}
        missing = sorted(set(expected) - set(found))
        problems = []
        if missing:
            problems.append(f"trigger(s) {', '.join(missing)} missing")
        if disabled:
            problems.append(f"trigger(s) {', '.join(disabled)} disabled")
        if altered:
            problems.append(f"trigger(s) {', '.join(altered)} altered")
        if not body_ok:
            problems.append("the function compressgate_append_only() was replaced")
        if problems:
            raise IntegrityError(
                f"catalog append-only guard removed: {'; '.join(problems)}",
                hint="someone altered the schema; audit the catalog against a checkpoint",
            )

    def artifacts(self) -> Iterable[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
        """(artifact sha256, files, details) of every variant, one per distinct artifact."""
        variants = _table(VariantRow)
        seen: set[str] = set()
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(
                    variants.c.artifact_sha256, variants.c.files, variants.c.details
                ).order_by(variants.c.event_seq)
            ).all()
        for sha, files, details in rows:
            if sha in seen:
                continue
            seen.add(sha)
            yield sha, _json(files), _json(details)


_PARALLEL_FROM = 20_000  # events: below this, one process is as fast as starting others


@dataclass(frozen=True)
class _Span:
    """What one worker found over events start..end."""

    start: int
    first_prev: str | None  # the prev_sha256 stored in event `start`
    last: str | None  # the chain hash of event `end`
    error: tuple[int, str, str | None] | None  # (seq, message, hint) of the first break


def _verify_span(url: str, start: int, end: int) -> _Span:
    """Check events start..end: numbering, content hashes, links and chain hashes."""
    engine = sa.create_engine(url)
    sha = hashlib.sha256
    first_prev: str | None = None
    prev: str | None = None
    expected = start
    body_sql = "CAST(body AS BLOB)" if engine.dialect.name == "sqlite" else "body"
    rows = None
    try:
        with engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=20_000).exec_driver_sql(
                f"SELECT seq, content_sha256, prev_sha256, sha256, {body_sql} FROM events "
                f"WHERE seq >= {int(start)} AND seq <= {int(end)} ORDER BY seq"
            )
            for seq, content, stored_prev, digest, body in rows:
                if seq != expected:
                    what = "it is missing" if seq > expected else f"found event {seq} instead"
                    return _Span(
                        start,
                        first_prev,
                        prev,
                        (
                            expected,
                            f"catalog chain broken at event {expected}: {what}",
                            "events were deleted or renumbered; restore from a backup",
                        ),
                    )
                if first_prev is None:
                    first_prev = prev = stored_prev
                data = body if isinstance(body, bytes) else str(body).encode()
                if sha(data).hexdigest() != content:
                    message = (
                        f"catalog chain broken at event {seq}: its body no longer matches its "
                        "content hash (the event was edited)"
                    )
                    return _Span(start, first_prev, prev, (seq, message, None))
                if stored_prev != prev:
                    message = (
                        f"catalog chain broken at event {seq}: it does not link to event "
                        f"{seq - 1} (prev_sha256 {stored_prev[:16]}…, expected {str(prev)[:16]}…)"
                    )
                    return _Span(start, first_prev, prev, (seq, message, None))
                if sha(f"{seq}\n{prev}\n{content}".encode()).hexdigest() != digest:
                    message = f"catalog chain broken at event {seq}: its chain hash does not match"
                    return _Span(start, first_prev, prev, (seq, message, None))
                prev = digest
                expected += 1
    except (sa.exc.DatabaseError, UnicodeDecodeError) as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if isinstance(exc, sa.exc.DatabaseError) and not any(m in text for m in _DAMAGE):
            raise
        message = f"catalog {safe_url(url)} is damaged at event {expected}: {text}"
        hint = "restore it from a backup and audit it against a checkpoint"
        return _Span(start, first_prev, prev, (expected, message, hint))
    finally:
        if rows is not None:
            rows.close()  # a break returns mid-stream: PostgreSQL's server-side cursor
        engine.dispose()
    if expected <= end:
        return _Span(
            start,
            first_prev,
            prev,
            (
                expected,
                f"catalog chain broken at event {expected}: it is missing",
                "events were deleted or renumbered; restore from a backup",
            ),
        )
    return _Span(start, first_prev, prev, None)


def _coerced(model: type[SQLModel], row: dict[str, Any]) -> dict[str, Any]:
    """The row in its columns' types, as the database gives it back (2 in a float column is
    2.0), so that the event states exactly what a later read will find."""
    columns = _table(model).columns
    out = {}
    for key, value in row.items():
        column = columns.get(key)
        if value is not None and column is not None:
            kind = column.type.python_type
            if kind is float:
                value = float(value)
            elif kind is bool:
                value = bool(value)
            elif kind is int and not isinstance(value, bool):
                value = int(value)
        out[key] = value
    return out


def _stage_record(row: dict[str, Any], evaluations: dict[str, Any]) -> StageRecord:
    return StageRecord.model_validate(
        {
            "seed": row["seed"],
            "name": row["stage"],
            "kind": row["kind"],
            "status": "done",
            "cached": bool(row["cached"]),
            "format": row["format"],
            "artifact_sha256": row["artifact_sha256"],
            "parent_sha256": row["parent_sha256"],
            "spec_sha256": row["spec_sha256"],
            "cache_key": row["cache_key"],
            "size_bytes": row["size_bytes"],
            "files": _json(row["files"]),
            "params": row["params"],
            "nonzero_params": row["nonzero_params"],
            "macs": row["macs"],
            "metrics": _json(row["metrics"]),
            "evaluations": evaluations,
            "evaluation_key": row["evaluation_key"],
            "details": _json(row["details"]),
            "warnings": _json(row["warnings"]),
            "seconds": row["seconds"],
            "eval_seconds": row["eval_seconds"],
        }
    )


def _variant_record(row: dict[str, Any]) -> VariantRecord:
    return VariantRecord(
        id=row["id"],
        run_id=row["run_id"],
        seed=row["seed"],
        stage=row["stage"],
        kind=row["kind"],
        format=row["format"],
        artifact_sha256=row["artifact_sha256"],
        parent_sha256=row["parent_sha256"],
        spec_sha256=row["spec_sha256"],
        spec=_json(row["spec"]),
        recipe_sha256=row["recipe_sha256"],
        size_bytes=row["size_bytes"],
        params=row["params"],
        macs=row["macs"],
        metrics=_json(row["metrics"]),
        files=_json(row["files"]),
        recorded_at=row["recorded_at"],
    )


def _recorded_report(row: dict[str, Any]) -> RecordedReport:
    return RecordedReport(
        seq=row["event_seq"], **{k: v for k, v in row.items() if k != "event_seq"}
    )


def open_catalog(workspace: Path, url: str | None = None) -> Catalog:
    return Catalog(catalog_url(workspace, url))
