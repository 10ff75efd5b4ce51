"""The catalog's schema history: numbered migrations, each frozen as the DDL it ran, and the
append-only guards (triggers) every table carries.

A migration only adds to the schema; its statements never change once released, since
`verify_storage` holds a catalog's tables, indexes and triggers to exactly the text their
migration created. Each applied migration is a row of `schema_migrations` with its own event.

- v1: the initial schema;
- v2: run-level gate decisions (`gate_verdicts`) and later recipe envelopes;
- v3: rendered reports;
- v4: no DDL: events appended from here on leave `body` empty (the row states it: `audit
  verify` recomputes the body of every row), and documents are stored compact (`chain.compact`,
  `chain.pack_metrics`, `chain.stored`). A compressgate that knows only v3 refuses the catalog
  (exit 5) instead of misreading an empty body as an edited one; this one reads a v3 catalog as
  it is (`READABLE_FROM`).
- v5: the trust policy's signed versions (`policies`), the signed statement behind each
  alias move (`releases`), each run's attestation by its runner (`attestations`), and each
  run that resumed a stopped one past its waived gates (`resumes`). A v3 or v4 catalog is read
  as it is: it has no policy.
- v6: sweeps (`sweeps`), each trial of one linked to its run (`sweep_trials`), and how each
  ended (`sweep_ends`). An older catalog read as it is has no sweep.
- v7: tags and descriptions of runs and variants (`annotations`), and the indexes `catalog
  search` needs: variants by recording time, size, stage and kind, alias moves by variant,
  gate decisions by verdict, sign-offs by owner. An older catalog read as it is has no annotation.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

# The key columns of each table, as the guards of its migration name them (frozen: a guard's
# text never changes; `tests/registry/test_catalog_fields.py` holds them to the tables' keys).
KEYS: dict[str, tuple[str, ...]] = {
    "events": ("seq", "sha256"),
    "schema_migrations": ("version", "event_seq"),
    "recipes": ("sha256", "event_seq"),
    "runs": ("run_id", "event_seq"),
    "run_seeds": ("id", "event_seq"),
    "run_ends": ("run_id", "event_seq"),
    "variants": ("id", "event_seq"),
    "evaluations": ("id", "event_seq"),
    "gate_decisions": ("id", "event_seq"),
    "approvals": ("id", "event_seq"),
    "alias_moves": ("event_seq",),
    "gate_verdicts": ("id", "event_seq"),
    "recipe_envelopes": ("sha256", "event_seq"),
    "reports": ("sha256", "event_seq"),
    "policies": ("version", "event_seq"),
    "releases": ("move_seq", "event_seq"),
    "attestations": ("run_id", "event_seq"),
    "resumes": ("run_id", "event_seq"),
    "sweeps": ("sweep_id", "event_seq"),
    "sweep_trials": ("id", "event_seq"),
    "sweep_ends": ("sweep_id", "event_seq"),
    "annotations": ("event_seq",),
}
# The schema version that created each table after v1 (a catalog read as it is, older than
# the code, lacks the later ones).
INTRODUCED: dict[str, int] = {
    "gate_verdicts": 2,
    "recipe_envelopes": 2,
    "reports": 3,
    "policies": 5,
    "releases": 5,
    "attestations": 5,
    "resumes": 5,
    "sweeps": 6,
    "sweep_trials": 6,
    "sweep_ends": 6,
    "annotations": 7,
}


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
        keys = KEYS[table]
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


def named_guards(dialect: str, table: str) -> list[tuple[str, str]]:
    """(trigger name, its CREATE statement) for each guard of `table`."""
    return [(sql.split()[2], sql) for sql in _guards(dialect, table)]


# The body of the PostgreSQL guard function as the server stores it (psycopg's %% unescaped).
PG_BODY = " ".join(_PG_FUNCTION.split("$$")[1].replace("%%", "%").split())


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


def _v4(dialect: str) -> list[str]:
    """Events without a body and compact documents: nothing to create (see the module's
    docstring); the migration's event marks where the catalog changed."""
    return []


def _v5(dialect: str) -> list[str]:
    """The trust policy anchored in the catalog: each version signed by the root threshold of
    the one before it; each alias move's signed release; each run's attestation."""
    return [
        """CREATE TABLE policies (
            version INTEGER PRIMARY KEY, sha256 TEXT NOT NULL, content TEXT NOT NULL,
            envelope TEXT NOT NULL, recorded_at TEXT NOT NULL, signers TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        """CREATE TABLE releases (
            move_seq BIGINT PRIMARY KEY REFERENCES alias_moves(event_seq), owner TEXT NOT NULL,
            keyid TEXT NOT NULL, policy_version INTEGER NOT NULL REFERENCES policies(version),
            envelope TEXT NOT NULL, event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        """CREATE TABLE attestations (
            run_id TEXT PRIMARY KEY REFERENCES runs(run_id), owner TEXT NOT NULL,
            keyid TEXT NOT NULL, policy_version INTEGER NOT NULL REFERENCES policies(version),
            envelope TEXT NOT NULL, event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        *_guards(dialect, "policies"),
        *_guards(dialect, "releases"),
        """CREATE TABLE resumes (
            run_id TEXT PRIMARY KEY REFERENCES runs(run_id),
            resumed_from TEXT NOT NULL REFERENCES runs(run_id), waivers TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        *_guards(dialect, "attestations"),
        *_guards(dialect, "resumes"),
    ]


def _v6(dialect: str) -> list[str]:
    """Sweeps: each sweep's signed manifest and base recipe, each trial linked to its run (one
    row per trial number: `id` is `SWEEP/TRIAL`), and each sweep's end with its frontier."""
    double = "DOUBLE PRECISION"
    return [
        """CREATE TABLE sweeps (
            sweep_id TEXT PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,
            sha256 TEXT NOT NULL, content TEXT NOT NULL, envelope TEXT NOT NULL,
            recipe_sha256 TEXT NOT NULL REFERENCES recipes(sha256), signers TEXT NOT NULL,
            strategy TEXT NOT NULL, backend TEXT NOT NULL, settings TEXT NOT NULL,
            started_at TEXT NOT NULL, event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_sweeps_sha256 ON sweeps (sha256)",
        f"""CREATE TABLE sweep_trials (
            id TEXT PRIMARY KEY, sweep_id TEXT NOT NULL REFERENCES sweeps(sweep_id),
            trial INTEGER NOT NULL, run_id TEXT REFERENCES runs(run_id), params TEXT NOT NULL,
            status TEXT NOT NULL, objectives TEXT NOT NULL, failed_gates TEXT NOT NULL,
            error TEXT, attempts INTEGER NOT NULL, seconds {double} NOT NULL,
            recorded_at TEXT NOT NULL, event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        "CREATE INDEX ix_sweep_trials_sweep ON sweep_trials (sweep_id, trial)",
        "CREATE INDEX ix_sweep_trials_run_id ON sweep_trials (run_id)",
        """CREATE TABLE sweep_ends (
            sweep_id TEXT PRIMARY KEY REFERENCES sweeps(sweep_id), status TEXT NOT NULL,
            frontier TEXT NOT NULL, chosen INTEGER, why TEXT NOT NULL, finished_at TEXT NOT NULL,
            event_seq BIGINT NOT NULL UNIQUE REFERENCES events(seq))""",
        *_guards(dialect, "sweeps"),
        *_guards(dialect, "sweep_trials"),
        *_guards(dialect, "sweep_ends"),
    ]


def _v7(dialect: str) -> list[str]:
    """Tags and descriptions: one row per tag set or removed, description set or cleared, on a
    run or a variant (the latest row of a subject's key is its value); and the indexes `catalog
    search` reads by (`catalog.search`)."""
    return [
        """CREATE TABLE annotations (
            event_seq BIGINT PRIMARY KEY REFERENCES events(seq), subject_kind TEXT NOT NULL,
            subject_id TEXT NOT NULL, kind TEXT NOT NULL, key TEXT NOT NULL, value TEXT,
            actor TEXT NOT NULL, recorded_at TEXT NOT NULL, keyid TEXT,
            policy_version INTEGER REFERENCES policies(version), envelope TEXT)""",
        "CREATE INDEX ix_annotations_subject ON annotations "
        "(subject_kind, subject_id, kind, key, event_seq)",
        "CREATE INDEX ix_annotations_value ON annotations (kind, key, value, subject_kind)",
        "CREATE INDEX ix_variants_recorded_at ON variants (recorded_at, id)",
        "CREATE INDEX ix_variants_size ON variants (size_bytes, id)",
        "CREATE INDEX ix_variants_stage ON variants (stage, kind)",
        "CREATE INDEX ix_variants_kind ON variants (kind)",
        "CREATE INDEX ix_alias_moves_variant ON alias_moves (variant_id, alias)",
        "CREATE INDEX ix_gate_verdicts_verdict ON gate_verdicts (verdict, gate, run_id)",
        "CREATE INDEX ix_approvals_owner ON approvals (owner, kind, run_id)",
        *_guards(dialect, "annotations"),
    ]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "initial schema", _v1),
    Migration(2, "run-level gate decisions, recipe envelopes", _v2),
    Migration(3, "rendered reports", _v3),
    Migration(4, "events without bodies, compact documents", _v4),
    Migration(5, "trust policy versions, signed releases, run attestations, resumes", _v5),
    Migration(6, "sweeps, their trials and ends", _v6),
    Migration(7, "tags and descriptions, search indexes", _v7),
)
SCHEMA_VERSION = MIGRATIONS[-1].version
# The oldest schema read (and audited) as it is: v4 created nothing, it changed only what is
# written, so a v3 catalog is read without migrating it; an older one is refused until a
# writing command migrates it.
READABLE_FROM = 3


def expected_triggers(dialect: str, version: int = SCHEMA_VERSION) -> set[str]:
    """The names of the append-only triggers a catalog of this dialect and schema version must
    have."""
    return {
        name
        for table in KEYS
        if INTRODUCED.get(table, 1) <= version
        for name, _ in named_guards(dialect, table)
    }
