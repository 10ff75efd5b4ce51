"""The catalog's sweeps (schema v6, issue 25): a sweep's start with its base recipe, each trial
linked to its run, its end; read back exactly as recorded, refused when they would contradict
the record, behind the append-only guards, covered by `audit verify`, and absent (not an
error) from a catalog older than v6 read as it is."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from compressgate.registry.catalog import migrations
from compressgate.registry.catalog.repository import (
    SCHEMA_VERSION,
    Catalog,
    SweepEndRecord,
    SweepListing,
    SweepRecord,
    SweepTrialRecord,
)
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import (
    EXIT_CONFLICT,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    Conflict,
    EnvironmentMismatch,
    IntegrityError,
    ManifestError,
    NotFoundError,
)
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Invoke

SWEEP = "sweep-20261203T150000Z-1a2b3c"
RUN_A, RUN_B = "run-20261203T150100Z-aaaaaa", "run-20261203T150200Z-bbbbbb"
MANIFEST = """\
apiVersion: compressgate/v1
kind: Sweep
metadata: {name: digits-sweep, version: 2, owners: [ml-platform]}
recipe: recipe.yaml
search: {strategy: tpe, trials: 12}
"""


def sweep_record(
    recipe: Path, sweep_id: str = SWEEP, manifest: str = MANIFEST, **changes: Any
) -> SweepRecord:
    fields: dict[str, Any] = {
        "sweep_id": sweep_id,
        "name": "digits-sweep",
        "version": 2,
        "sha256": sha256_bytes(manifest.encode()),
        "content": manifest,
        "envelope": '{"payloadType":"application/vnd.in-toto+json","signatures":[]}',
        "recipe_sha256": sha256_bytes(recipe.read_bytes()),
        "signers": ["ml-platform", "ml-lead"],
        "strategy": "tpe",
        "backend": "local",
        "settings": {
            "workers": 2,
            "trials": 12,
            "selection": {"minimize": "size.bytes", "require": {"accuracy": 0.9}},
        },
        "started_at": "2026-12-03T15:00:00.000000Z",
    }
    return SweepRecord.model_validate({**fields, **changes})


def start(catalog: Catalog, recipe: Path, sweep: SweepRecord | None = None) -> SweepRecord:
    sweep = sweep or sweep_record(recipe)
    catalog.record_sweep_start(
        sweep,
        recipe_content=recipe.read_text(),
        recipe_envelope='{"payload":"base recipe"}',
        recipe_path=str(recipe),
        recipe_signers=["ml-platform"],
    )
    return sweep


def trial_record(
    number: int, run_id: str | None, sweep_id: str = SWEEP, **changes: Any
) -> SweepTrialRecord:
    fields: dict[str, Any] = {
        "sweep_id": sweep_id,
        "trial": number,
        "run_id": run_id,
        "params": {"stages.int8.calibration_samples": 64 * (number + 1), "stages.distill.lr": 3e-3},
        "status": "passed",
        "objectives": {"size.bytes": 1000.0 - 100 * number, "accuracy": 0.93 + number / 1000},
        "failed_gates": [],
        "error": None,
        "attempts": 1,
        "seconds": 12.25 + number,
        "recorded_at": f"2026-12-03T15:0{number}:30.000000Z",
    }
    return SweepTrialRecord.model_validate({**fields, **changes})


def end_record(sweep_id: str = SWEEP, **changes: Any) -> SweepEndRecord:
    fields: dict[str, Any] = {
        "sweep_id": sweep_id,
        "status": "finished",
        "frontier": [0, 1],
        "chosen": 1,
        "why": "smallest size.bytes (900) among 2 frontier trials with accuracy >= 0.9",
        "finished_at": "2026-12-03T15:30:00.000000Z",
    }
    return SweepEndRecord.model_validate({**fields, **changes})


def audited(catalog: Catalog) -> int:
    """`audit verify`'s checks of the catalog's own: its events."""
    catalog.verify_triggers()
    catalog.verify_storage()
    head = catalog.verify_chain()
    assert catalog.verify_rows() == head.size
    return head.size


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return recipe_file(tmp_path / "recipe.yaml")


@pytest.fixture
def swept(catalog_url: str, recipe: Path) -> str:
    """A sweep of two runs (trials 0 and 1) and a crashed trial 2, ended."""
    with Catalog(catalog_url) as catalog:
        start(catalog, recipe)
    record_run(catalog_url, RUN_A, 0.95, recipe)
    record_run(catalog_url, RUN_B, 0.94, recipe)
    with Catalog(catalog_url) as catalog:
        catalog.record_sweep_trial(trial_record(0, RUN_A))
        catalog.record_sweep_trial(trial_record(1, RUN_B))
        catalog.record_sweep_trial(
            trial_record(
                2,
                None,
                status="crashed",
                objectives={},
                error="worker killed (SIGKILL)",
                attempts=2,
            )
        )
        catalog.record_sweep_end(end_record())
    return catalog_url


# --- recording and reading back ----------------------------------------------------------------


def test_a_sweep_its_trials_and_end_read_back_exactly_as_recorded(swept: str, recipe: Path) -> None:
    with Catalog(swept, create=False) as catalog:  # read-only
        assert catalog.sweep(SWEEP) == sweep_record(recipe)
        assert catalog.sweep_trials(SWEEP) == [
            trial_record(0, RUN_A),
            trial_record(1, RUN_B),
            trial_record(
                2,
                None,
                status="crashed",
                objectives={},
                error="worker killed (SIGKILL)",
                attempts=2,
            ),
        ]
        assert catalog.sweep_end(SWEEP) == end_record()
        assert catalog.sweeps() == [
            SweepListing(
                sweep_id=SWEEP,
                name="digits-sweep",
                version=2,
                strategy="tpe",
                backend="local",
                started_at="2026-12-03T15:00:00.000000Z",
                trials=3,
                finished=True,
                chosen=1,
            )
        ]
        assert catalog.sweep_of_run(RUN_A) == (SWEEP, 0)
        assert catalog.sweep_of_run(RUN_B) == (SWEEP, 1)
        assert catalog.sweep_of_run("run-20261203T160000Z-cccccc") is None
        assert catalog.open_sweeps(sweep_record(recipe).sha256) == []  # it ended
        audited(catalog)


def test_the_base_recipe_is_recorded_with_the_sweep_before_any_run_of_it(
    catalog_url: str, recipe: Path
) -> None:
    with Catalog(catalog_url) as catalog:
        before = catalog.head().size
        sweep = start(catalog, recipe)
        assert catalog.head().size == before + 2  # the recipe and the sweep, one transaction
        base = catalog.recipe(sweep.recipe_sha256)
        assert (base.name, base.version, base.path) == ("digits", 1, str(recipe))
        assert (base.content, base.envelope) == (recipe.read_text(), '{"payload":"base recipe"}')
        assert base.signers == ["ml-platform"]
        # A second sweep of the same base records the recipe once (its envelope is known).
        start(catalog, recipe, sweep_record(recipe, "sweep-20261203T160000Z-4d5e6f"))
        assert catalog.head().size == before + 3
        assert catalog.recipe_envelopes(sweep.recipe_sha256) == ['{"payload":"base recipe"}']
    # A run of the base afterwards finds it recorded: only its own envelope is new.
    record_run(catalog_url, RUN_A, 0.95, recipe)
    with Catalog(catalog_url) as catalog:
        assert catalog.recipe_envelopes(sweep.recipe_sha256) == ['{"payload":"base recipe"}', "{}"]
        audited(catalog)


def test_open_sweeps_are_those_of_the_same_bytes_without_an_end_newest_first(
    catalog_url: str, recipe: Path
) -> None:
    older, newer, ended = (
        "sweep-20261203T150000Z-000001",
        "sweep-20261203T150500Z-000002",
        "sweep-20261203T151000Z-000003",
    )
    other = MANIFEST.replace("trials: 12", "trials: 24")
    with Catalog(catalog_url) as catalog:
        for sweep_id in (older, newer, ended):
            start(catalog, recipe, sweep_record(recipe, sweep_id))
        start(catalog, recipe, sweep_record(recipe, "sweep-20261203T152000Z-000004", other))
        catalog.record_sweep_end(end_record(ended, status="stopped", frontier=[], chosen=None))
        opened = catalog.open_sweeps(sha256_bytes(MANIFEST.encode()))
        assert [s.sweep_id for s in opened] == [newer, older]
        assert opened[0] == sweep_record(recipe, newer)
        assert [s.sweep_id for s in catalog.open_sweeps(sha256_bytes(other.encode()))] == [
            "sweep-20261203T152000Z-000004"
        ]
        assert catalog.open_sweeps("0" * 64) == []
        listed = catalog.sweeps()
        assert [s.sweep_id for s in listed] == [
            "sweep-20261203T152000Z-000004",
            ended,
            newer,
            older,
        ]
        assert [(s.finished, s.trials, s.chosen) for s in listed][1] == (True, 0, None)
        assert [s.sweep_id for s in catalog.sweeps(limit=2)] == [
            "sweep-20261203T152000Z-000004",
            ended,
        ]
        assert catalog.sweep_end(newer) is None and catalog.sweep_trials(newer) == []


# --- what the catalog refuses -----------------------------------------------------------------


def test_a_trial_recorded_twice_is_a_conflict_naming_the_sweep_and_the_trial(
    catalog_url: str, recipe: Path
) -> None:
    record_run(catalog_url, RUN_A, 0.95, recipe)
    with Catalog(catalog_url) as catalog:
        start(catalog, recipe)
        catalog.record_sweep_trial(trial_record(0, RUN_A))
        head = catalog.head()
        with pytest.raises(Conflict) as refused:
            catalog.record_sweep_trial(trial_record(0, None, status="crashed", objectives={}))
        assert refused.value.exit_code == EXIT_CONFLICT
        message = str(refused.value)
        assert f"trial 0 of sweep {SWEEP} is already recorded" in message
        assert f"passed, run {RUN_A}" in message and "this one (crashed, run None)" in message
        assert catalog.head() == head
        assert catalog.sweep_trials(SWEEP) == [trial_record(0, RUN_A)]


def test_a_trial_of_an_unknown_sweep_or_run_is_not_found(catalog_url: str, recipe: Path) -> None:
    with Catalog(catalog_url) as catalog:
        with pytest.raises(NotFoundError) as unknown:
            catalog.record_sweep_trial(trial_record(0, None, "sweep-20261203T170000Z-ffffff"))
        assert unknown.value.exit_code == EXIT_NOT_FOUND
        assert "sweep sweep-20261203T170000Z-ffffff is not in the catalog" in str(unknown.value)
        assert "`compressgate sweep status`" in str(unknown.value.hint)
        with pytest.raises(NotFoundError, match="sweep sweep-x is not in the catalog") as read:
            catalog.sweep("sweep-x")
        assert "`compressgate sweep status`" in str(read.value.hint)
        start(catalog, recipe)
        head = catalog.head()
        with pytest.raises(NotFoundError, match=f"run {RUN_A} of trial 0 of sweep {SWEEP} is not"):
            catalog.record_sweep_trial(trial_record(0, RUN_A))
        with pytest.raises(NotFoundError, match="sweep-y is not in the catalog") as ending:
            catalog.record_sweep_end(end_record("sweep-y"))
        assert SWEEP in str(ending.value.hint)  # the recent sweeps
        assert catalog.head() == head


def test_nothing_is_recorded_for_a_sweep_after_its_end(swept: str, recipe: Path) -> None:
    with Catalog(swept) as catalog:
        head = catalog.head()
        with pytest.raises(Conflict, match=f"sweep {SWEEP} ended \\(finished, .*trial 3 was not"):
            catalog.record_sweep_trial(trial_record(3, RUN_A))
        with pytest.raises(Conflict, match=f"sweep {SWEEP} already ended") as again:
            catalog.record_sweep_end(end_record(status="stopped"))
        assert again.value.exit_code == EXIT_CONFLICT
        with pytest.raises(Conflict, match=f"sweep {SWEEP} is already recorded"):
            start(catalog, recipe)
        assert catalog.head() == head


def test_an_end_names_only_recorded_passing_trials(catalog_url: str, recipe: Path) -> None:
    record_run(catalog_url, RUN_A, 0.95, recipe)
    record_run(catalog_url, RUN_B, 0.80, recipe)
    with Catalog(catalog_url) as catalog:
        start(catalog, recipe)
        catalog.record_sweep_trial(trial_record(0, RUN_A))
        catalog.record_sweep_trial(trial_record(1, RUN_B, status="failed", failed_gates=["acc"]))
        head = catalog.head()
        with pytest.raises(ManifestError, match="chosen trial 2 is not on its frontier"):
            catalog.record_sweep_end(end_record(frontier=[0], chosen=2))
        with pytest.raises(ManifestError, match=r"frontier trial\(s\) 1, 5 are not recorded"):
            catalog.record_sweep_end(end_record(frontier=[0, 1, 5], chosen=0))
        assert catalog.head() == head
        catalog.record_sweep_end(end_record(frontier=[0], chosen=0))
        assert catalog.sweep_end(SWEEP) == end_record(frontier=[0], chosen=0)


def test_texts_that_do_not_hash_to_the_recorded_sha256_are_refused(
    catalog_url: str, recipe: Path
) -> None:
    with Catalog(catalog_url) as catalog:
        head = catalog.head()
        changed = sweep_record(recipe, content=MANIFEST + "# edited\n")
        with pytest.raises(IntegrityError, match=f"the manifest of sweep {SWEEP}: its text"):
            start(catalog, recipe, changed)
        with pytest.raises(IntegrityError, match=f"the base recipe of sweep {SWEEP}"):
            start(catalog, recipe, sweep_record(recipe, recipe_sha256="ab" * 32))
        assert catalog.head() == head
    assert IntegrityError.exit_code == EXIT_INTEGRITY


# --- append-only and audited -------------------------------------------------------------------

NEW_TABLES = {"sweeps": "name", "sweep_trials": "status", "sweep_ends": "why"}


@pytest.mark.parametrize("table", sorted(NEW_TABLES))
def test_the_database_refuses_update_and_delete_on_the_sweep_tables(swept: str, table: str) -> None:
    with Catalog(swept) as catalog:
        for sql in (f"UPDATE {table} SET {NEW_TABLES[table]} = 'edited'", f"DELETE FROM {table}"):
            with (
                pytest.raises(sa.exc.IntegrityError, match=f"{table} is append-only"),
                catalog.engine.begin() as conn,
            ):
                conn.exec_driver_sql(sql)
        assert len(catalog.sweep_trials(SWEEP)) == 3
        audited(catalog)


def _edit_behind_the_guards(url: str, dialect: str, table: str, sql: str) -> None:
    """Run `sql` past the table's append-only guards, then put them back exactly as they were,
    as an operator with database access can."""
    if dialect == "sqlite":
        path = sa.engine.make_url(url).database
        assert path is not None
        (guard,) = [
            sql for name, sql in migrations.named_guards("sqlite", table) if "no_update" in name
        ]
        with contextlib.closing(sqlite3.connect(path)) as db:
            db.execute(f"DROP TRIGGER {table}_no_update")
            db.execute(sql)
            db.execute(guard)
            db.commit()
        return
    engine = sa.create_engine(url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER {table}_append_only")
            conn.exec_driver_sql(sql)
            conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER {table}_append_only")
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("table", "sql", "key"),
    [
        ("sweeps", "UPDATE sweeps SET strategy = 'grid'", f"sweep_id={SWEEP}"),
        (
            "sweep_trials",
            "UPDATE sweep_trials SET objectives = '{\"size.bytes\":1.0}' WHERE trial = 1",
            f"id={SWEEP}/1",
        ),
        ("sweep_ends", "UPDATE sweep_ends SET chosen = 0", f"sweep_id={SWEEP}"),
    ],
    ids=["sweeps", "sweep_trials", "sweep_ends"],
)
def test_a_sweep_row_edited_behind_the_guards_is_named_by_audit_verify(
    swept: str, cli: Invoke, table: str, sql: str, key: str
) -> None:
    with Catalog(swept) as catalog:
        dialect = catalog.dialect
        audited(catalog)
        with catalog.engine.connect() as conn:
            seq = conn.exec_driver_sql(f"SELECT min(event_seq) FROM {table}").scalar_one()
            if table == "sweep_trials":
                seq = conn.exec_driver_sql(
                    "SELECT event_seq FROM sweep_trials WHERE trial = 1"
                ).scalar_one()
    verified = cli("audit", "verify", "--catalog", swept, "--skip-artifacts", "--skip-meaning")
    assert verified.exit_code == 0, verified.stderr
    _edit_behind_the_guards(swept, dialect, table, sql)
    with Catalog(swept) as catalog, pytest.raises(IntegrityError) as broken:
        catalog.verify_rows()
    assert f"catalog row {table}({key}) does not match its event {seq}" in str(broken.value)
    result = cli("audit", "verify", "--catalog", swept, "--skip-artifacts", "--skip-meaning")
    assert result.exit_code == EXIT_INTEGRITY, result.stderr
    assert f"catalog row {table}({key}) does not match its event {seq}" in result.stderr


# --- older catalogs ----------------------------------------------------------------------------


def test_a_v5_catalog_reads_without_sweeps_and_a_writing_open_migrates_it_to_v6(
    catalog_url: str, recipe: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A catalog written by a compressgate that knew migrations up to v5.
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:5])
        patched.setattr(migrations, "SCHEMA_VERSION", 5)
        record_run(catalog_url, RUN_A, 0.95, recipe)
        with Catalog(catalog_url) as old:
            assert old.schema_version() == 5
            assert not sa.inspect(old.engine).has_table("sweeps")
            v5, held = old.head(), old.run(RUN_A)
    assert SCHEMA_VERSION == 7
    # Read as it is (no migration): no sweep, and the audit holds.
    with Catalog(catalog_url, create=False) as catalog:
        assert catalog.schema_version() == 5
        assert catalog.sweeps() == [] and catalog.open_sweeps("0" * 64) == []
        assert catalog.sweep_trials(SWEEP) == [] and catalog.sweep_end(SWEEP) is None
        assert catalog.sweep_of_run(RUN_A) is None
        with pytest.raises(NotFoundError, match=f"sweep {SWEEP} is not in the catalog"):
            catalog.sweep(SWEEP)
        with pytest.raises(EnvironmentMismatch, match="records sweeps from version 6"):
            start(catalog, recipe)
        assert audited(catalog) == v5.size
    # A writing open migrates (v6, then v7): one event each on the same chain, the old rows
    # as they were.
    with Catalog(catalog_url, create=False, migrate=True) as catalog:
        assert catalog.schema_version() == 7
        assert catalog.head().size == v5.size + 2
        assert catalog.event_hash(v5.size) == v5.sha256
        assert catalog.run(RUN_A) == held
        start(catalog, recipe)
        catalog.record_sweep_trial(trial_record(0, RUN_A))
        catalog.record_sweep_end(end_record(frontier=[0], chosen=0))
        # The two migrations, the base recipe's new envelope (a run recorded the recipe), the
        # sweep, its trial and its end.
        assert audited(catalog) == v5.size + 6
        assert catalog.sweep_of_run(RUN_A) == (SWEEP, 0)
        with (
            pytest.raises(sa.exc.IntegrityError, match="sweep_trials is append-only"),
            catalog.engine.begin() as conn,
        ):
            conn.exec_driver_sql("DELETE FROM sweep_trials")
