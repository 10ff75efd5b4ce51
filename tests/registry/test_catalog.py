"""The catalog's append-only and tamper-evidence guarantees, attacked from outside the program.

Every attack goes through a tool an operator with database access really has: the `sqlite3`
and `psql` command-line programs, a raw byte edit of the SQLite file, a rebuilt database with a
recomputed chain. Each must be refused by a trigger or named by `compressgate audit verify`
(exit 3). The catalogs are filled with synthetic rows through `Catalog.append`, one row per
table at least, in the transactions the executor uses.
"""

from __future__ import annotations

import base64
import dataclasses
import gc
import hashlib
import json
import os
import secrets
import shutil
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import AutoString, SQLModel

from compressgate.recipes.trust import add_owner_key
from compressgate.registry.catalog.repository import (
    SCHEMA_VERSION,
    TABLES,
    AliasMoveRow,
    AnnotationRow,
    ApprovalRow,
    AttestationRow,
    Catalog,
    EvaluationRow,
    GateDecisionRow,
    GateJudgementRow,
    Head,
    PolicyRow,
    RecipeEnvelopeRow,
    RecipeRow,
    ReleaseRow,
    ReportRow,
    ResumeRow,
    RunEndRow,
    RunRow,
    RunSeedRow,
    SchemaMigration,
    SweepEndRow,
    SweepRow,
    SweepTrialRow,
    VariantRow,
    document,
    now,
)
from compressgate.registry.catalog.schema import table as schema_table
from compressgate.registry.kernel.errors import (
    EXIT_BAD_INPUT,
    EXIT_ENVIRONMENT,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EnvironmentMismatch,
    IntegrityError,
    NotFoundError,
)
from compressgate.registry.kernel.keys import generate_keypair
from tests.helpers.postgres import fresh_schema
from tests.helpers.workspace import Invoke

RUN = "20261123T100000Z-a1b2c3"
STAGES = ("baseline", "distill", "int8")
TABLE_NAMES = [str(model.__tablename__) for model in TABLES]


# --- synthetic catalogs -----------------------------------------------------------------------


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def variant_row(
    run_id: str, seed: int, stage: str, *, tag: str, parent: str | None = None
) -> dict[str, Any]:
    """A variant as `Catalog.record_stage` writes it (floats as floats, documents as text)."""
    return {
        "id": f"{run_id}/{seed}/{stage}",
        "run_id": run_id,
        "seed": seed,
        "stage": stage,
        "kind": "quantize" if stage == "int8" else stage,
        "format": "onnx" if stage == "int8" else "torch",
        "artifact_sha256": sha(f"{run_id}/{seed}/{stage}/{tag}"),
        "parent_sha256": parent,
        "spec_sha256": sha(f"spec {stage}"),
        "spec": document({"name": stage, "tag": tag}),
        "recipe_sha256": sha(f"recipe {tag}"),
        "cache_key": sha(f"cache {run_id}/{seed}/{stage}"),
        "cached": stage == "baseline",
        "size_bytes": 4096,
        "files": document([{"name": "model.pt", "sha256": sha(stage), "size": 4096}]),
        "params": 1000,
        "nonzero_params": 900,
        "macs": 20000,
        "metrics": document({"accuracy": {"estimate": 0.93, "n": 450, "of": stage, "tag": tag}}),
        "details": document({}),
        "warnings": document([]),
        "evaluation_key": None,
        "seconds": 1.25,
        "eval_seconds": 0.5,
        "recorded_at": now(),
    }


def evaluation_row(variant_id: str, kind: str = "accuracy") -> dict[str, Any]:
    return {
        "id": f"{variant_id}/{kind}",
        "variant_id": variant_id,
        "kind": kind,
        "result": document({"estimate": 0.93, "ci_low": 0.91, "ci_high": 0.95, "n": 450}),
    }


def alias_move(variant: dict[str, Any], *, reason: str, previous: str | None) -> dict[str, Any]:
    return {
        "alias": "production",
        "variant_id": variant["id"],
        "artifact_sha256": variant["artifact_sha256"],
        "previous_variant_id": previous,
        "action": "promote",
        "actor": "on-call",
        "reason": reason,
        "moved_at": now(),
    }


@dataclass(frozen=True)
class Seeded:
    url: str
    events: int
    seqs: dict[str, int]  # the event of each named row
    variants: dict[str, dict[str, Any]]  # by stage


def seed_catalog(url: str, *, tag: str = "original", policy: bool = False) -> Seeded:
    """A run of three stages with every kind of row, appended as the executor would: recipe
    and run start together, one transaction per seed, per stage (variant and evaluation), the
    run's end with its gate decision, an approval, a re-signed envelope, a rendered report, then
    two alias moves; with `policy`, a policy version and a release too (unsigned: the catalog
    then reads only with its meaning left unchecked), an attestation, a resume, and a sweep with
    a trial of the run and its end (schema v6); a tag set on a variant and one removed from the
    run (schema v7)."""
    recipe_sha = sha(f"recipe {tag}")
    seqs: dict[str, int] = {}
    variants: dict[str, dict[str, Any]] = {}
    with Catalog(url) as catalog:
        seqs["recipe"], seqs["run"] = catalog.append(
            [
                (
                    RecipeRow,
                    {
                        "sha256": recipe_sha,
                        "name": "digits",
                        "version": 1,
                        "path": "/ws/recipe.yaml",
                        "signers": document(["ml-platform"]),
                        "content": f"apiVersion: compressgate/v1\n# {tag}\n",
                        "envelope": document({"payload": tag}),
                        "recorded_at": now(),
                        "actor": "ci",
                    },
                ),
                (
                    RunRow,
                    {
                        "run_id": RUN,
                        "recipe_sha256": recipe_sha,
                        "recipe_name": "digits",
                        "recipe_version": 1,
                        "recipe_path": "/ws/recipe.yaml",
                        "signers": document(["ml-platform"]),
                        "seeds": document([0, 1]),
                        "workspace": "/ws",
                        "started_at": now(),
                        "environment": document({"python": "3.11.9", "tag": tag}),
                        "environment_sha256": sha(f"environment {tag}"),
                        "lock_sha256": sha("lock"),
                        "actor": "ci",
                    },
                ),
            ]
        )
        for seed in (0, 1):
            data = {"train": sha(f"train {seed} {tag}"), "test": sha(f"test {seed} {tag}")}
            row = {"id": f"{RUN}/{seed}", "run_id": RUN, "seed": seed, "data": document(data)}
            (seqs[f"seed-{seed}"],) = catalog.append([(RunSeedRow, row)])
        parent = None
        for stage in STAGES:
            variant = variant_row(RUN, 0, stage, tag=tag, parent=parent)
            variants[stage] = variant
            parent = variant["artifact_sha256"]
            seqs[f"variant-{stage}"], seqs[f"evaluation-{stage}"] = catalog.append(
                [(VariantRow, variant), (EvaluationRow, evaluation_row(variant["id"]))]
            )
        int8 = variants["int8"]
        decision = {
            "id": f"{RUN}/0/accuracy",
            "run_id": RUN,
            "seed": 0,
            "gate": "accuracy",
            "variant_id": int8["id"],
            "stage": "int8",
            "artifact_sha256": int8["artifact_sha256"],
            "metric": "accuracy",
            "rule": document({"rule": "bound", "min": 0.9}),
            "estimate": 0.93,
            "ci_low": 0.91,
            "ci_high": 0.95,
            "n": 450,
            "threshold": 0.9,
            "pvalue": None,
            "verdict": "pass",
            "owner": "ml-lead",
            "evidence_sha256": sha("evidence"),
            "note": f"bound holds ({tag})",
            "decided_at": now(),
        }
        end = {
            "run_id": RUN,
            "status": "succeeded",
            "finished_at": now(),
            "error": None,
            "timing": document({"total_seconds": 12.5}),
            "aggregate": document({}),
            "exemplars": document({}),
            "failed_stages": document([]),
        }
        verdict = {
            "id": f"{RUN}/accuracy",
            "run_id": RUN,
            "gate": "accuracy",
            "owner": "ml-lead",
            "metric": "accuracy",
            "stage": "int8",
            "policy": "every",
            "approval": "required",
            "rule": document({"rule": "bound", "min": 0.9}),
            "estimate": 0.93,
            "ci_low": 0.91,
            "ci_high": 0.95,
            "n": 450,
            "threshold": 0.9,
            "pvalue": None,
            "verdict": "pass",
            "note": f"1/1 seeds pass ({tag})",
            "seeds": document([{"seed": 0, "verdict": "pass"}]),
            "power": document(None),
            "evidence_sha256": sha("evidence"),
            "decided_at": now(),
        }
        seqs["decision"], seqs["verdict"], seqs["run-end"] = catalog.append(
            [(GateJudgementRow, decision), (GateDecisionRow, verdict), (RunEndRow, end)]
        )
        approval = {
            "id": sha(f"approval {tag}"),
            "run_id": RUN,
            "gate": "latency",
            "variant_id": int8["id"],
            "artifact_sha256": int8["artifact_sha256"],
            "kind": "waiver",
            "verdict": "approved",
            "owner": "serving",
            "keyid": sha("serving key"),
            "reason": "latency measured on the wrong host",
            "expires": None,
            "envelope": document({"payload": f"waiver {tag}"}),
            "recorded_at": now(),
        }
        (seqs["approval"],) = catalog.append([(ApprovalRow, approval)])
        resigned = {
            "sha256": sha(f"envelope {tag}"),
            "recipe_sha256": recipe_sha,
            "envelope": document({"payload": f"re-signed {tag}"}),
            "recorded_at": now(),
        }
        (seqs["envelope"],) = catalog.append([(RecipeEnvelopeRow, resigned)])
        report = {
            "sha256": sha(f"report {tag}"),
            "run_id": RUN,
            "format": "html",
            "size_bytes": 16384,
            "path": "/ws/report.html",
            "head_size": seqs["envelope"],
            "rendered_at": now(),
            "actor": "auditor",
            "tool": "compressgate 0.1.0",
        }
        (seqs["report"],) = catalog.append([(ReportRow, report)])
        (seqs["promote-distill"],) = catalog.append(
            [(AliasMoveRow, alias_move(variants["distill"], reason=f"{tag} v1", previous=None))]
        )
        (seqs["promote-int8"],) = catalog.append(
            [
                (
                    AliasMoveRow,
                    alias_move(
                        int8, reason=f"{tag} int8 passes", previous=variants["distill"]["id"]
                    ),
                )
            ]
        )
        if not policy:
            return Seeded(url, catalog.head().size, seqs, variants)
        seqs["policy"], seqs["release"], seqs["attestation"], seqs["resume"] = catalog.append(
            [
                (
                    PolicyRow,
                    {
                        "version": 1,
                        "sha256": sha(f"policy {tag}"),
                        "content": f"apiVersion: compressgate/v1\n# {tag}\n",
                        "envelope": document({"payload": f"policy {tag}"}),
                        "recorded_at": now(),
                        "signers": document(["root-a", "root-b"]),
                    },
                ),
                (
                    ReleaseRow,
                    {
                        "move_seq": seqs["promote-int8"],
                        "owner": "serving",
                        "keyid": sha("serving key"),
                        "policy_version": 1,
                        "envelope": document({"payload": f"release {tag}"}),
                    },
                ),
                (
                    AttestationRow,
                    {
                        "run_id": RUN,
                        "owner": "ci",
                        "keyid": sha("ci key"),
                        "policy_version": 1,
                        "envelope": document({"payload": f"run {tag}"}),
                    },
                ),
                (
                    ResumeRow,
                    {
                        "run_id": RUN,
                        "resumed_from": RUN,
                        "waivers": document([{"gate": "latency", "signoff_id": tag}]),
                    },
                ),
            ]
        )
        sweep_id = f"sweep-20261123T120000Z-{tag}"
        seqs["sweep"], seqs["sweep-trial"], seqs["sweep-end"] = catalog.append(
            [
                (
                    SweepRow,
                    {
                        "sweep_id": sweep_id,
                        "name": "digits-sweep",
                        "version": 1,
                        "sha256": sha(f"sweep {tag}"),
                        "content": f"kind: Sweep\n# {tag}\n",
                        "envelope": document({"payload": f"sweep {tag}"}),
                        "recipe_sha256": recipe_sha,
                        "signers": document(["ml-platform"]),
                        "strategy": "grid",
                        "backend": "local",
                        "settings": document({"trials": 4, "workers": 2}),
                        "started_at": now(),
                    },
                ),
                (
                    SweepTrialRow,
                    {
                        "id": f"{sweep_id}/0",
                        "sweep_id": sweep_id,
                        "trial": 0,
                        "run_id": RUN,
                        "params": document({"stages.int8.method": "static"}),
                        "status": "passed",
                        "objectives": document({"size.bytes": 4096.0}),
                        "failed_gates": document([]),
                        "error": None,
                        "attempts": 1,
                        "seconds": 12.5,
                        "recorded_at": now(),
                    },
                ),
                (
                    SweepEndRow,
                    {
                        "sweep_id": sweep_id,
                        "status": "finished",
                        "frontier": document([0]),
                        "chosen": 0,
                        "why": f"the one passing trial ({tag})",
                        "finished_at": now(),
                    },
                ),
            ]
        )
        seqs["annotation"], seqs["annotation-removed"] = catalog.append(
            [
                (
                    AnnotationRow,
                    {
                        "subject_kind": "variant",
                        "subject_id": variants["int8"]["id"],
                        "kind": "tag",
                        "key": "team",
                        "value": f"vision {tag}",
                        "actor": "alice",
                        "recorded_at": now(),
                        "keyid": None,
                        "policy_version": None,
                        "envelope": None,
                    },
                ),
                (
                    AnnotationRow,
                    {
                        "subject_kind": "run",
                        "subject_id": RUN,
                        "kind": "tag",
                        "key": "tier",
                        "value": None,
                        "actor": "alice",
                        "recorded_at": now(),
                        "keyid": None,
                        "policy_version": None,
                        "envelope": None,
                    },
                ),
            ]
        )
        return Seeded(url, catalog.head().size, seqs, variants)


def append_moves(url: str, variant: dict[str, Any], count: int, *, reason: str) -> None:
    """`count` more alias moves, one transaction each."""
    with Catalog(url) as catalog:
        for index in range(count):
            catalog.append(
                [(AliasMoveRow, alias_move(variant, reason=f"{reason} {index}", previous=None))]
            )


def audited(url: str) -> Head:
    """Triggers present, chain intact, every row matching its event: the catalog's head."""
    with Catalog(url) as catalog:
        return state(catalog).head


@dataclass(frozen=True)
class State:
    head: Head
    counts: dict[str, int]  # rows by table


def state(catalog: Catalog) -> State:
    """The catalog's verified head and its row counts."""
    catalog.verify_triggers()
    head = catalog.verify_chain()
    assert catalog.verify_rows() == head.size
    with catalog.engine.connect() as conn:
        counts = {
            str(model.__tablename__): conn.execute(
                sa.select(sa.func.count()).select_from(table_of(model))
            ).scalar_one()
            for model in TABLES
        }
    return State(head, counts)


def table_of(model: type[SQLModel]) -> sa.Table:
    table = model.__table__  # type: ignore[attr-defined]
    assert isinstance(table, sa.Table)
    return table


def sqlite_path(url: str) -> Path:
    database = sa.engine.make_url(url).database
    assert database is not None
    return Path(database)


# --- attacking through the database's own command-line programs -------------------------------


def sql_literal(value: object) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Target:
    """One existing row of a table, and the SQL to attack it."""

    table: str
    key: str  # the primary key column
    where: str  # `key = <literal>` of the row
    columns: list[str]
    tampered: str  # a text column the attack rewrites

    def copy(self, *, tamper: bool) -> str:
        """`(columns) SELECT …` re-inserting the row, with its text column rewritten."""
        chosen = [
            f"'tampered' AS {c}" if tamper and c == self.tampered else c for c in self.columns
        ]
        return (
            f"({', '.join(self.columns)}) SELECT {', '.join(chosen)} "
            f"FROM {self.table} WHERE {self.where}"
        )

    def statement(self, kind: str) -> str:
        t = self.table
        statements = {
            "update": f"UPDATE {t} SET {self.tampered} = 'tampered' WHERE {self.where}",
            "delete": f"DELETE FROM {t} WHERE {self.where}",
            "insert-or-replace": f"INSERT OR REPLACE INTO {t} {self.copy(tamper=True)}",
            "replace-into": f"REPLACE INTO {t} {self.copy(tamper=True)}",
            "upsert": (
                f"INSERT INTO {t} {self.copy(tamper=False)} "
                f"ON CONFLICT ({self.key}) DO UPDATE SET {self.tampered} = 'tampered'"
            ),
            "truncate": f"TRUNCATE {t} CASCADE",  # CASCADE: past the foreign keys, to the guard
        }
        return statements[kind]


def target(catalog: Catalog, table: str) -> Target:
    model = next(m for m in TABLES if m.__tablename__ == table)
    sa_table = table_of(model)
    key = next(c.name for c in sa_table.columns if c.primary_key)
    tampered = next(
        c.name
        for c in sa_table.columns
        if isinstance(c.type, AutoString) and not (c.primary_key or c.unique or c.nullable)
    )
    with catalog.engine.connect() as conn:
        value = conn.execute(
            sa.select(sa_table.c[key]).order_by(sa_table.c[key]).limit(1)
        ).scalar_one_or_none()
    assert value is not None, f"the seeded catalog has no row in {table}"
    return Target(
        table=table,
        key=key,
        where=f"{key} = {sql_literal(value)}",
        columns=[c.name for c in sa_table.columns],
        tampered=tampered,
    )


def program(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"the `{name}` command-line program is not installed")
    return found


def sqlite3_cli(path: Path, sql: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [program("sqlite3"), "-init", os.devnull, "-batch", "-bail", str(path), sql],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def psql(url: str, sql: str) -> subprocess.CompletedProcess[str]:
    """`psql -c SQL` on the catalog's database and schema (the SQLAlchemy URL made libpq's)."""
    executable = program("psql")
    parsed = sa.engine.make_url(url)
    options = parsed.query.get("options")
    libpq = parsed.set(
        drivername="postgresql",
        password=None,
        query={k: v for k, v in parsed.query.items() if k != "options"},
    )
    env = {**os.environ, "PGOPTIONS": str(options or "")}
    if parsed.password is not None:
        env["PGPASSWORD"] = str(parsed.password)
    return subprocess.run(
        [
            executable,
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "--dbname",
            libpq.render_as_string(hide_password=False),
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """One seeded SQLite catalog, closed (its WAL checkpointed), for tests to copy."""
    path = tmp_path_factory.mktemp("template") / "catalog.db"
    seeded = seed_catalog(f"sqlite:///{path}", policy=True)
    assert not Path(f"{path}-wal").exists()
    return seeded


@pytest.fixture(scope="module")
def sqlite_template_unsigned(tmp_path_factory: pytest.TempPathFactory) -> Seeded:
    """The same without a policy (the unsigned regime: a trust file names the auditors)."""
    path = tmp_path_factory.mktemp("template") / "catalog.db"
    return seed_catalog(f"sqlite:///{path}")


@pytest.fixture
def sqlite_catalog(sqlite_template: Seeded, tmp_path: Path) -> Seeded:
    """A copy of the seeded SQLite catalog for one test to attack."""
    path = tmp_path / "catalog.db"
    shutil.copyfile(sqlite_path(sqlite_template.url), path)
    return dataclasses.replace(sqlite_template, url=f"sqlite:///{path}")


@pytest.fixture
def unsigned_catalog(sqlite_template_unsigned: Seeded, tmp_path: Path) -> Seeded:
    """A copy of the seeded SQLite catalog without a policy."""
    path = tmp_path / "catalog.db"
    shutil.copyfile(sqlite_path(sqlite_template_unsigned.url), path)
    return dataclasses.replace(sqlite_template_unsigned, url=f"sqlite:///{path}")


@pytest.fixture
def pg_catalog() -> Iterator[str]:
    """A seeded catalog in a fresh PostgreSQL schema (skips without $COMPRESSGATE_TEST_PG_URL)."""
    with fresh_schema(f"cg_test_{secrets.token_hex(6)}") as url:
        seed_catalog(url, policy=True)
        yield url


def test_the_seeded_catalog_fills_every_table_and_verifies(catalog_url: str, cli: Invoke) -> None:
    seeded = seed_catalog(catalog_url, policy=True)
    with Catalog(catalog_url) as catalog:
        verified = state(catalog)
    assert all(verified.counts.values()), verified.counts
    events = verified.counts.pop("events")
    assert events == verified.head.size == seeded.events == sum(verified.counts.values())
    result = cli(
        "audit", "verify", "--catalog", catalog_url, "--skip-artifacts", "--skip-meaning", "--json"
    )
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["events"], report["rows"]) == (seeded.events, seeded.events)


def test_the_bulk_row_hash_is_the_event_body_of_every_row(catalog_url: str) -> None:
    """`audit verify` recomputes each row's body with a hasher planned once per table; on
    every row of every table it gives exactly `event_body(coerced(row))`, what `append` hashed,
    and its event's content hash."""
    from compressgate.registry.catalog.chain import coerced, event_body
    from compressgate.registry.catalog.chain import sha as text_sha
    from compressgate.registry.catalog.integrity import _body_hasher
    from compressgate.registry.catalog.schema import ROW_TABLES, Event

    seed_catalog(catalog_url, policy=True)
    events = table_of(Event)
    checked = 0
    with Catalog(catalog_url) as catalog, catalog.engine.connect() as conn:
        for model in ROW_TABLES:
            table, name = table_of(model), str(model.__tablename__)
            columns = [c.name for c in table.columns]
            body_sha = _body_hasher(name, columns)
            query = sa.select(*table.columns, events.c.content_sha256).join(
                events, events.c.seq == table.c.event_seq
            )
            for row in conn.execute(query):
                mapping = dict(zip(columns, row, strict=False))
                expected = text_sha(event_body(name, coerced(model, mapping)))
                assert body_sha(row) == expected == row[-1], (name, mapping)
                checked += 1
        assert checked == catalog.head().size


def test_rows_verify_alike_in_one_process_and_in_several(
    sqlite_catalog: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The row check split over worker processes owns the same rows and finds the same edit."""
    from compressgate.registry.catalog import integrity

    monkeypatch.setattr(integrity, "_PARALLEL_FROM", 1)
    with Catalog(sqlite_catalog.url) as catalog:
        assert catalog.verify_rows(workers=3) == catalog.verify_rows(workers=1)
        assert catalog.verify_rows(workers=3) == catalog.head().size
    path = sqlite_path(sqlite_catalog.url)
    with sqlite3.connect(path) as conn:
        conn.execute("DROP TRIGGER IF EXISTS evaluations_no_update")
        (seq,) = conn.execute("SELECT max(event_seq) FROM evaluations").fetchone()
        conn.execute("UPDATE evaluations SET kind = 'edited' WHERE event_seq = ?", (seq,))
    with Catalog(sqlite_catalog.url) as catalog:
        for workers in (1, 3):
            with pytest.raises(IntegrityError, match=rf"does not match its event {seq}"):
                catalog.verify_rows(workers=workers)


SQLITE_ATTACKS = ["update", "delete", "insert-or-replace", "replace-into", "upsert"]


@pytest.mark.parametrize("kind", SQLITE_ATTACKS)
@pytest.mark.parametrize("table", TABLE_NAMES)
def test_the_sqlite3_program_cannot_change_or_remove_a_row(
    sqlite_catalog: Seeded, table: str, kind: str
) -> None:
    url = sqlite_catalog.url
    with Catalog(url) as catalog:
        before, sql = state(catalog), target(catalog, table).statement(kind)
    done = sqlite3_cli(sqlite_path(url), sql)
    assert done.returncode != 0, f"{sql!r} was not refused"
    assert f"{table} is append-only" in done.stderr, done.stderr
    with Catalog(url) as catalog:
        assert state(catalog) == before


PG_ATTACKS = ["update", "delete", "truncate", "upsert"]


@pytest.mark.postgres
@pytest.mark.parametrize("kind", PG_ATTACKS)
@pytest.mark.parametrize("table", TABLE_NAMES)
def test_the_psql_program_cannot_change_or_remove_a_row(
    pg_catalog: str, table: str, kind: str
) -> None:
    with Catalog(pg_catalog) as catalog:
        before, sql = state(catalog), target(catalog, table).statement(kind)
    done = psql(pg_catalog, sql)
    assert done.returncode != 0, f"{sql!r} was not refused"
    # TRUNCATE … CASCADE is refused by whichever of the cascaded tables' guards fires first.
    refused = (
        "is append-only: TRUNCATE refused" if kind == "truncate" else f"{table} is append-only"
    )
    assert refused in done.stderr, done.stderr
    with Catalog(pg_catalog) as catalog:
        assert state(catalog) == before


# --- edits that bypass the triggers -----------------------------------------------------------


def flip_letter(path: Path, needle: bytes, offset: int = 0, *, not_after: bytes = b"") -> None:
    """Swap the case of the first letter from `needle[offset]` on, at the one place `needle` is
    in the file (places right after `not_after` left out): same length, still printable."""
    data = path.read_bytes()
    places, start = [], data.find(needle)
    while start != -1:
        if not (not_after and data[:start].endswith(not_after)):
            places.append(start)
        start = data.find(needle, start + 1)
    assert len(places) == 1, f"{needle[:40]!r}… is in the file at offsets {places}"
    at = places[0] + next(i for i in range(offset, len(needle)) if needle[i : i + 1].isalpha())
    path.write_bytes(data[:at] + data[at : at + 1].swapcase() + data[at + 1 :])


def scalar(url: str, sql: str, **params: object) -> Any:
    with Catalog(url) as catalog, catalog.engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def closed_sqlite_file(url: str) -> Path:
    """The catalog's file, once no connection holds it and its WAL is checkpointed into it."""
    path = sqlite_path(url)
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed"
    return path


def verify(cli: Invoke, url: str, *extra: str | Path) -> tuple[int, str]:
    result = cli("audit", "verify", "--catalog", url, "--skip-artifacts", "--skip-meaning", *extra)
    return result.exit_code, result.stdout + result.stderr


def test_an_event_edited_in_the_sqlite_file_is_named_by_audit_verify(
    sqlite_catalog: Seeded, cli: Invoke
) -> None:
    url, seq = sqlite_catalog.url, sqlite_catalog.seqs["run"]
    assert 1 < seq < sqlite_catalog.events, "an event in the middle of the chain"
    # From schema v4 an event stores no body (its row states it), only hashes.
    assert scalar(url, "SELECT body FROM events WHERE seq = :seq", seq=seq) == ""
    content = scalar(url, "SELECT content_sha256 FROM events WHERE seq = :seq", seq=seq)
    assert verify(cli, url)[0] == 0
    path = closed_sqlite_file(url)
    # One hex letter of the event's content hash changes case.
    flip_letter(path, content.encode())

    result = cli("audit", "verify", "--catalog", url, "--skip-artifacts", "--skip-meaning")
    assert result.exit_code == EXIT_INTEGRITY, result.stderr
    assert f"event {seq}: its chain hash does not match" in result.stderr
    assert f"event {seq + 1}" not in result.stderr


@pytest.mark.parametrize(
    ("table", "column", "name"),
    [
        # A plain column: its text is in the row and, after "reason":", in the event's body.
        ("alias_moves", "reason", "promote-distill"),
        # A JSON document column: its text is only in the row (the event holds its sha256).
        ("run_seeds", "data", "seed-1"),
        ("variants", "metrics", "variant-distill"),
    ],
    ids=["alias_moves.reason", "run_seeds.data", "variants.metrics"],
)
def test_a_row_edited_in_the_sqlite_file_is_named_by_audit_verify(
    sqlite_catalog: Seeded, cli: Invoke, table: str, column: str, name: str
) -> None:
    url, seq = sqlite_catalog.url, sqlite_catalog.seqs[name]
    value = scalar(url, f"SELECT {column} FROM {table} WHERE event_seq = :seq", seq=seq)
    assert verify(cli, url)[0] == 0
    path = closed_sqlite_file(url)
    flip_letter(path, value.encode(), not_after=f'"{column}":"'.encode())

    result = cli("audit", "verify", "--catalog", url, "--skip-artifacts", "--skip-meaning")
    assert result.exit_code == EXIT_INTEGRITY, result.stderr
    assert f"catalog row {table}(" in result.stderr, result.stderr
    assert f"does not match its event {seq}" in result.stderr


@pytest.mark.parametrize(
    "trigger", ["events_no_update", "runs_no_delete", "alias_moves_no_replace"]
)
def test_a_trigger_dropped_with_the_sqlite3_program_is_named_by_audit_verify(
    sqlite_catalog: Seeded, cli: Invoke, trigger: str
) -> None:
    url = sqlite_catalog.url
    dropped = sqlite3_cli(sqlite_path(url), f"DROP TRIGGER {trigger}")
    assert dropped.returncode == 0, dropped.stderr
    code, output = verify(cli, url)
    assert code == EXIT_INTEGRITY, output
    assert "append-only guard removed" in output
    assert trigger in output


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("trigger", "table"), [("events_append_only", "events"), ("runs_no_truncate", "runs")]
)
def test_a_trigger_dropped_with_psql_is_named_by_audit_verify(
    pg_catalog: str, cli: Invoke, trigger: str, table: str
) -> None:
    dropped = psql(pg_catalog, f"DROP TRIGGER {trigger} ON {table}")
    assert dropped.returncode == 0, dropped.stderr
    code, output = verify(cli, pg_catalog)
    assert code == EXIT_INTEGRITY, output
    assert trigger in output


@pytest.mark.postgres
@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("ALTER TABLE events DISABLE TRIGGER events_append_only", "events_append_only disabled"),
        (
            "CREATE OR REPLACE FUNCTION compressgate_append_only() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN OLD; END $$",
            "compressgate_append_only() was replaced",
        ),
    ],
    ids=["disabled", "function-replaced"],
)
def test_a_guard_switched_off_with_psql_is_named_by_audit_verify(
    pg_catalog: str, cli: Invoke, statement: str, says: str
) -> None:
    changed = psql(pg_catalog, statement)
    assert changed.returncode == 0, changed.stderr
    code, output = verify(cli, pg_catalog)
    assert code == EXIT_INTEGRITY, output
    assert says in output


def test_a_guard_recreated_as_a_no_op_under_its_own_name_is_named_by_audit_verify(
    sqlite_catalog: Seeded, cli: Invoke
) -> None:
    path = sqlite_path(sqlite_catalog.url)
    swapped = sqlite3_cli(
        path,
        "DROP TRIGGER alias_moves_no_delete; CREATE TRIGGER alias_moves_no_delete BEFORE DELETE "
        "ON alias_moves BEGIN SELECT 1; END",
    )
    assert swapped.returncode == 0, swapped.stderr
    code, output = verify(cli, sqlite_catalog.url)
    assert code == EXIT_INTEGRITY, output
    assert "alias_moves_no_delete altered" in output


def test_a_deleted_schema_history_is_an_integrity_failure(
    sqlite_catalog: Seeded, cli: Invoke
) -> None:
    path = sqlite_path(sqlite_catalog.url)
    wiped = sqlite3_cli(
        path, "DROP TRIGGER schema_migrations_no_delete; DELETE FROM schema_migrations"
    )
    assert wiped.returncode == 0, wiped.stderr
    code, output = verify(cli, sqlite_catalog.url)
    assert code == EXIT_INTEGRITY, output
    assert "its schema history was deleted" in output


# --- signed checkpoints -----------------------------------------------------------------------


@dataclass(frozen=True)
class Signers:
    trust: Path
    auditor: Path  # the private key of an owner with the auditor role
    approver: Path  # of an owner in the trust file with only the approver role
    stranger: Path  # of no owner in the trust file


@pytest.fixture
def signers(tmp_path: Path) -> Signers:
    keys, trust = tmp_path / "keys", tmp_path / "trust.yaml"
    auditor, _, auditor_public = generate_keypair("audit-team", keys)
    add_owner_key(trust, "audit-team", auditor_public, ("auditor",))
    approver, _, approver_public = generate_keypair("ml-lead", keys)
    add_owner_key(trust, "ml-lead", approver_public, ("approver",))
    stranger, _, _ = generate_keypair("stranger", keys)
    return Signers(trust, auditor, approver, stranger)


def sign_checkpoint(cli: Invoke, url: str, key: Path, out: Path) -> dict[str, Any]:
    """`audit checkpoint --key KEY -o OUT`; returns the signed payload."""
    result = cli("audit", "checkpoint", "--key", key, "-o", out, "--catalog", url)
    assert result.exit_code == 0, result.stderr
    payload: dict[str, Any] = json.loads(base64.b64decode(json.loads(out.read_bytes())["payload"]))
    return payload


def test_a_catalog_that_grew_after_its_checkpoint_verifies_against_it(
    catalog_url: str, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    seeded = seed_catalog(catalog_url)
    checkpoint = tmp_path / "cp.json"
    payload = sign_checkpoint(cli, catalog_url, signers.auditor, checkpoint)
    assert payload["tree_size"] == seeded.events
    assert payload["head_sha256"] == audited(catalog_url).sha256
    assert payload["schema_version"] == SCHEMA_VERSION
    append_moves(catalog_url, seeded.variants["int8"], 3, reason="later")

    code, output = verify(cli, catalog_url, "--checkpoint", checkpoint, "--trust", signers.trust)
    assert code == 0, output
    assert f"extends checkpoint at event {seeded.events}" in output
    assert f"{seeded.events + 3} events" in output


@pytest.mark.parametrize("extra", [0, 4], ids=["same-length", "longer"])
def test_a_history_rebuilt_with_a_valid_chain_fails_the_checkpoint(
    tmp_path: Path, cli: Invoke, signers: Signers, extra: int
) -> None:
    genuine = seed_catalog(f"sqlite:///{tmp_path / 'genuine.db'}")
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, genuine.url, signers.auditor, checkpoint)
    append_moves(genuine.url, genuine.variants["int8"], 2, reason="after the checkpoint")
    against = ("--checkpoint", checkpoint, "--trust", signers.trust)
    assert verify(cli, genuine.url, *against)[0] == 0
    # Someone with full access rebuilds the catalog from scratch with other content and every
    # hash recomputed: a valid chain on its own, as long as the checkpointed one or longer.
    forged = seed_catalog(f"sqlite:///{tmp_path / 'forged.db'}", tag="forged")
    append_moves(forged.url, forged.variants["int8"], extra, reason="forged")
    assert audited(forged.url).size == genuine.events + extra
    assert verify(cli, forged.url)[0] == 0

    code, output = verify(cli, forged.url, *against)
    assert code == EXIT_INTEGRITY, output
    assert f"catalog history rewritten: event {genuine.events} hashes to" in output


@pytest.mark.parametrize("signer", ["approver", "stranger"])
def test_a_checkpoint_not_signed_by_an_auditor_is_refused(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path, signer: str
) -> None:
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, unsigned_catalog.url, getattr(signers, signer), checkpoint)
    code, output = verify(
        cli, unsigned_catalog.url, "--checkpoint", checkpoint, "--trust", signers.trust
    )
    assert code == EXIT_INTEGRITY, output
    assert "no valid signature by a key with the 'auditor' role" in output


def test_a_checkpoint_with_a_flipped_payload_byte_is_refused(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    head = sign_checkpoint(cli, unsigned_catalog.url, signers.auditor, checkpoint)["head_sha256"]
    against = ("--checkpoint", checkpoint, "--trust", signers.trust)
    assert verify(cli, unsigned_catalog.url, *against)[0] == 0
    envelope = json.loads(checkpoint.read_bytes())
    payload = base64.b64decode(envelope["payload"])
    at = payload.index(head.encode())
    flipped = b"1" if payload[at : at + 1] == b"0" else b"0"
    envelope["payload"] = base64.b64encode(payload[:at] + flipped + payload[at + 1 :]).decode()
    checkpoint.write_text(json.dumps(envelope))

    code, output = verify(cli, unsigned_catalog.url, *against)
    assert code == EXIT_INTEGRITY, output
    assert "no valid signature" in output


# --- audit verify --since a checkpoint ---------------------------------------------------------


def since(cli: Invoke, url: str, checkpoint: Path, trust: Path, *extra: str) -> tuple[int, str]:
    return verify(cli, url, "--since", checkpoint, "--trust", trust, *extra)


def test_since_a_checkpoint_only_the_events_after_it_are_checked(
    catalog_url: str, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    seeded = seed_catalog(catalog_url)
    checkpoint = tmp_path / "cp.json"
    payload = sign_checkpoint(cli, catalog_url, signers.auditor, checkpoint)
    append_moves(catalog_url, seeded.variants["int8"], 3, reason="later")

    code, output = since(cli, catalog_url, checkpoint, signers.trust, "--json")
    assert code == 0, output
    report = json.loads(output)
    assert report["since"] == {"size": seeded.events, "sha256": payload["head_sha256"]}
    assert report["checkpoint"] == report["since"]
    assert report["checked_events"] == 3
    assert report["events"] == report["rows"] == seeded.events + 3
    assert report["head"] == audited(catalog_url).model_dump()
    assert report["events_per_second"] == pytest.approx(3 / report["seconds"], rel=0.01)
    code, output = since(cli, catalog_url, checkpoint, signers.trust)
    assert code == 0, output
    assert f"verifies since the checkpoint at event {seeded.events}" in output
    assert f"3 new events and their rows, 0 artifact blobs; {seeded.events + 3} events" in output


def test_since_a_checkpoint_of_the_head_itself_checks_its_one_event(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, unsigned_catalog.url, signers.auditor, checkpoint)
    code, output = since(cli, unsigned_catalog.url, checkpoint, signers.trust, "--json")
    assert code == 0, output
    assert json.loads(output)["checked_events"] == 0


def test_since_finds_a_row_edited_after_the_checkpoint_not_one_before_it(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    """`--since` re-hashes only the rows after the checkpoint: an older row edited in place is
    the full verify's to find (what the docs say of a daily --since and a periodic full run)."""
    url = unsigned_catalog.url
    checkpoint = tmp_path / "cp.json"
    size = sign_checkpoint(cli, url, signers.auditor, checkpoint)["tree_size"]
    append_moves(url, unsigned_catalog.variants["int8"], 2, reason="after")

    def edit(seq: int) -> None:
        with sqlite3.connect(sqlite_path(url)) as conn:
            (guard,) = conn.execute(
                "SELECT sql FROM sqlite_master WHERE name = 'alias_moves_no_update'"
            ).fetchone()
            conn.execute("DROP TRIGGER alias_moves_no_update")
            conn.execute("UPDATE alias_moves SET reason = 'edited' WHERE event_seq = ?", (seq,))
            conn.execute(guard)  # put back exactly: the trigger check passes

    with Catalog(url) as catalog:
        moves = [m.seq for m in catalog.alias_moves()]
    before, after = max(s for s in moves if s <= size), max(moves)
    assert after > size
    edit(before)
    code, output = since(cli, url, checkpoint, signers.trust)
    assert code == 0, output
    code, output = verify(cli, url)
    assert code == EXIT_INTEGRITY, output
    assert f"alias_moves(event_seq={before}) does not match its event {before}" in output

    edit(after)
    code, output = since(cli, url, checkpoint, signers.trust)
    assert code == EXIT_INTEGRITY, output
    assert f"alias_moves(event_seq={after}) does not match its event {after}" in output
    assert "verifies" not in output


def test_since_counts_a_row_inserted_under_an_older_event(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    """A row slipped in under an event before the checkpoint (owned already by another
    table's row) is not re-hashed by --since, but it is one row too many."""
    url = unsigned_catalog.url
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, url, signers.auditor, checkpoint)
    append_moves(url, unsigned_catalog.variants["int8"], 1, reason="after")
    with sqlite3.connect(sqlite_path(url)) as conn:
        columns = [r[1] for r in conn.execute("PRAGMA table_info(alias_moves)")]
        chosen = ["1" if c == "event_seq" else c for c in columns]
        conn.execute(
            f"INSERT INTO alias_moves ({', '.join(columns)}) SELECT {', '.join(chosen)} "
            "FROM alias_moves ORDER BY event_seq DESC LIMIT 1"
        )
    code, output = since(cli, url, checkpoint, signers.trust)
    assert code == EXIT_INTEGRITY, output
    assert (
        f"catalog has {unsigned_catalog.events + 1} events but {unsigned_catalog.events + 2} rows"
        in output
    )


def test_since_a_checkpoint_of_another_history_is_refused(
    tmp_path: Path, cli: Invoke, signers: Signers
) -> None:
    genuine = seed_catalog(f"sqlite:///{tmp_path / 'genuine.db'}")
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, genuine.url, signers.auditor, checkpoint)
    forged = seed_catalog(f"sqlite:///{tmp_path / 'forged.db'}", tag="forged")
    append_moves(forged.url, forged.variants["int8"], 2, reason="forged")
    assert verify(cli, forged.url)[0] == 0
    code, output = since(cli, forged.url, checkpoint, signers.trust)
    assert code == EXIT_INTEGRITY, output
    assert f"catalog history rewritten: event {genuine.events} hashes to" in output


@pytest.mark.parametrize("signer", ["approver", "stranger"])
def test_since_a_checkpoint_not_signed_by_an_auditor_is_refused(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path, signer: str
) -> None:
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, unsigned_catalog.url, getattr(signers, signer), checkpoint)
    code, output = since(cli, unsigned_catalog.url, checkpoint, signers.trust)
    assert code == EXIT_INTEGRITY, output
    assert "no valid signature by a key with the 'auditor' role" in output
    assert "verifies" not in output


def test_since_and_checkpoint_together_are_refused(
    unsigned_catalog: Seeded, cli: Invoke, signers: Signers, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    sign_checkpoint(cli, unsigned_catalog.url, signers.auditor, checkpoint)
    code, output = since(
        cli, unsigned_catalog.url, checkpoint, signers.trust, "--checkpoint", str(checkpoint)
    )
    assert code == EXIT_BAD_INPUT, output
    assert "--since and --checkpoint both name a checkpoint" in output


def test_the_chain_since_a_head_is_checked_alike_in_several_processes(
    sqlite_catalog: Seeded, monkeypatch: pytest.MonkeyPatch
) -> None:
    from compressgate.registry.catalog import integrity

    monkeypatch.setattr(integrity, "_PARALLEL_FROM", 1)
    append_moves(sqlite_catalog.url, sqlite_catalog.variants["int8"], 5, reason="after")
    with Catalog(sqlite_catalog.url) as catalog:
        whole = catalog.verify_chain(workers=1)
        at = sqlite_catalog.events
        mark = Head(size=at, sha256=str(catalog.event_hash(at)))
        for workers in (1, 3):
            assert catalog.verify_chain(workers=workers, since=mark) == whole
            assert catalog.verify_rows(workers=workers, since=at) == whole.size
        wrong = Head(size=at, sha256="0" * 64)
        with pytest.raises(IntegrityError, match=f"event {at} hashes to"):
            catalog.verify_chain(workers=3, since=wrong)
        with pytest.raises(IntegrityError, match="the catalog has only"):
            catalog.verify_chain(since=Head(size=whole.size + 1, sha256=whole.sha256))


# --- concurrent writers -----------------------------------------------------------------------

WRITERS, TRANSACTIONS = 8, 25
ROWS_PER_TRANSACTION = 2  # a variant and its evaluation
WRITER = """\
import json, sys, time
from pathlib import Path
from compressgate.registry.catalog.repository import Catalog, EvaluationRow, VariantRow
models = {"variants": VariantRow, "evaluations": EvaluationRow}
url, plan, ready, go = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), Path(sys.argv[4])
transactions = json.loads(plan.read_text())
with Catalog(url) as catalog:
    ready.touch()
    deadline = time.monotonic() + 120
    while not go.exists():
        assert time.monotonic() < deadline, "never told to go"
        time.sleep(0.002)
    for rows in transactions:
        time.sleep(0.002)  # a writer works between appends: lets SQLite's writers interleave
        catalog.append([(models[table], row) for table, row in rows])
"""


def test_concurrent_writer_processes_extend_one_unbroken_chain(
    catalog_url: str, tmp_path: Path
) -> None:
    initial = seed_catalog(catalog_url).events
    (tmp_path / "writers").mkdir()
    go = tmp_path / "writers" / "go"
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for writer in range(WRITERS):
            seed = 100 + writer  # keys no other writer uses
            plan = [
                [
                    ["variants", variant := variant_row(RUN, seed, f"w{i:03d}", tag=str(writer))],
                    ["evaluations", evaluation_row(variant["id"])],
                ]
                for i in range(TRANSACTIONS)
            ]
            files = tmp_path / "writers" / str(writer)
            files.with_suffix(".json").write_text(json.dumps(plan))
            with files.with_suffix(".log").open("wb") as log:
                processes.append(
                    subprocess.Popen(
                        [
                            sys.executable,
                            "-c",
                            WRITER,
                            catalog_url,
                            str(files.with_suffix(".json")),
                            str(files.with_suffix(".ready")),
                            str(go),
                        ],
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
        deadline = time.monotonic() + 120
        while not all((tmp_path / "writers" / f"{w}.ready").exists() for w in range(WRITERS)):
            assert all(p.poll() is None for p in processes), "a writer died before starting"
            assert time.monotonic() < deadline, "the writers never got ready"
            time.sleep(0.01)
        go.touch()  # all connected: they now append at the same time
        codes = [p.wait(timeout=300) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = [(tmp_path / "writers" / f"{w}.log").read_text() for w in range(WRITERS)]
    assert codes == [0] * WRITERS, logs

    expected = initial + WRITERS * TRANSACTIONS * ROWS_PER_TRANSACTION
    head = audited(catalog_url)
    assert head.size == expected
    with Catalog(catalog_url) as catalog, catalog.engine.connect() as conn:
        seqs = [r[0] for r in conn.execute(sa.text("SELECT seq FROM events ORDER BY seq"))]
        assert seqs == list(range(1, expected + 1))
        for writer in range(WRITERS):
            variants = conn.execute(
                sa.text(
                    "SELECT v.stage, v.event_seq, e.event_seq FROM variants v "
                    "JOIN evaluations e ON e.variant_id = v.id "
                    "WHERE v.run_id = :run AND v.seed = :seed ORDER BY v.event_seq"
                ),
                {"run": RUN, "seed": 100 + writer},
            ).all()
            # Every transaction is there, in the writer's order, its two rows adjacent.
            assert [r[0] for r in variants] == [f"w{i:03d}" for i in range(TRANSACTIONS)]
            assert all(evaluation == variant + 1 for _, variant, evaluation in variants)


# --- schema versions --------------------------------------------------------------------------


def append_future_migration(url: str) -> None:
    with Catalog(url) as catalog:
        catalog.append(
            [(SchemaMigration, {"version": 999, "name": "from the future", "applied_at": now()})]
        )


def test_a_catalog_from_a_newer_schema_is_refused_on_open(catalog_url: str, cli: Invoke) -> None:
    append_future_migration(catalog_url)
    with pytest.raises(EnvironmentMismatch, match="has schema version 999"):
        Catalog(catalog_url)
    code, output = verify(cli, catalog_url)
    assert code == EXIT_ENVIRONMENT, output
    assert "schema version 999" in output


@pytest.mark.postgres
def test_a_refused_catalog_leaves_no_database_connection_open(pg_catalog: str) -> None:
    append_future_migration(pg_catalog)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(EnvironmentMismatch):
            Catalog(pg_catalog)
        gc.collect()
    leaked = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert not leaked


RECORDER = """\
import sys, time
from pathlib import Path
from compressgate.evaluators.results import Estimate
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord
url, writer, go = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
deadline = time.monotonic() + 120
while not go.exists():
    assert time.monotonic() < deadline, "never told to go"
    time.sleep(0.002)
for number in range(RUNS):
    run_id = f"run-20261123T000000Z-{writer:02d}{number:04d}"
    record = RunRecord(
        run_id=run_id,
        # Every writer records the same recipe: it must be stored once.
        recipe=RecipeRef(name="shared", version=1, sha256="ef" * 32, path="/r.yaml", signers=[]),
        started_at="2026-11-23T00:00:00Z",
        workspace="/ws",
        seeds=[0],
    )
    with Catalog(url) as catalog:  # as `compressgate run` does: one open per run
        catalog.record_run_start(record, recipe_content="x", envelope="{}", lock_sha256="")
        catalog.record_seed(run_id, 0, {"test": "t"})
        parent = None
        for index, name in enumerate(("baseline", "distill", "int8")):
            sha = f"{writer:02d}{number:04d}{index:02d}".ljust(64, "0")
            stage = StageRecord(
                seed=0, name=name, kind=name, status="done", artifact_sha256=sha,
                parent_sha256=parent,
                metrics={"accuracy": Estimate(estimate=0.9, ci_low=0.8, ci_high=0.95, n=9,
                                              method="w")},
            )
            catalog.record_stage(run_id, record.recipe.sha256, stage, {"name": name})
            record.stages.append(stage)
            parent = sha
        record.status = "succeeded"
        catalog.record_run_end(record)
"""
RUNS_PER_WRITER = 3


def test_concurrent_processes_recording_runs_lose_nothing(catalog_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"
    with Catalog(catalog_url) as catalog:
        initial = catalog.head().size
    script = RECORDER.replace("RUNS", str(RUNS_PER_WRITER))
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", script, catalog_url, str(writer), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for writer in range(WRITERS)
    ]
    try:
        time.sleep(1.0)  # let them all import and wait
        go.touch()
        outputs = [p.communicate(timeout=300)[0].decode() for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert [p.returncode for p in processes] == [0] * WRITERS, outputs
    runs = WRITERS * RUNS_PER_WRITER
    # Per run: start, seed, three variants, end; plus the shared recipe once.
    expected = initial + 1 + runs * 6
    with Catalog(catalog_url) as catalog:
        head = catalog.verify_chain()
        assert head.size == expected
        assert catalog.verify_rows() == expected
        listed = catalog.runs(limit=1000)
        assert len(listed) == runs and {r.status for r in listed} == {"succeeded"}
        for run in listed:
            assert [s.name for s in catalog.run(run.run_id).stages] == [
                "baseline",
                "distill",
                "int8",
            ]


def test_a_row_that_parses_but_no_longer_holds_a_record_is_an_integrity_error(
    sqlite_catalog: Seeded,
) -> None:
    """The seeded variants' metrics parse as JSON but are not estimates (no interval, no
    method), as a row edited outside compressgate, or one flipped byte in a key, leaves them:
    reading the run (`catalog show`, reports) is exit 3 naming the field, not a traceback
    (bench/hardening.py found one)."""
    with Catalog(sqlite_catalog.url) as catalog, pytest.raises(IntegrityError) as refused:
        catalog.run(RUN)
    assert refused.value.exit_code == EXIT_INTEGRITY
    assert f"catalog rows of run {RUN} no longer form its record" in str(refused.value)
    assert "first metrics.accuracy.ci_low" in str(refused.value)
    assert "compressgate audit verify" in (refused.value.hint or "")


def test_a_review_reads_the_run_head_its_recipe_and_status_not_its_stages(
    sqlite_catalog: Seeded, tmp_path: Path
) -> None:
    """`Catalog.run_head`, what a review reads of a run (`governance.review.status`): its
    recipe and status, without inflating its stages and evaluations. The seeded run's stages
    no longer parse as records (the test above); its head still reads. A run started and not
    ended is running; an unknown run is exit 4, as for every read of a run."""
    with Catalog(sqlite_catalog.url) as catalog:
        head = catalog.run_head(RUN)
        info = catalog.run_info(RUN)
        with pytest.raises(NotFoundError) as unknown:
            catalog.run_head("20991231T000000Z-000000")
    assert (head.run_id, head.status) == (RUN, "succeeded")
    assert (head.recipe.name, head.recipe.version) == (info.recipe, info.version) == ("digits", 1)
    assert head.recipe.sha256 == info.recipe_sha256 == sha("recipe original")
    assert head.recipe.signers == info.signers == ["ml-platform"]
    assert head.recipe.path == "/ws/recipe.yaml"
    assert unknown.value.exit_code == EXIT_NOT_FOUND
    with Catalog(f"sqlite:///{tmp_path / 'started.db'}") as fresh:
        with Catalog(sqlite_catalog.url) as seeded, seeded.engine.connect() as conn:
            recipe = dict(conn.execute(sa.select(schema_table(RecipeRow))).mappings().one())
            run = dict(conn.execute(sa.select(schema_table(RunRow))).mappings().one())
        rows = [(RecipeRow, recipe), (RunRow, run)]
        fresh.append(
            [(model, {k: v for k, v in row.items() if k != "event_seq"}) for model, row in rows]
        )
        started = fresh.run_head(RUN)
    assert (started.status, started.recipe.sha256) == ("running", head.recipe.sha256)
