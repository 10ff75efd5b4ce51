"""The catalog's schema and its export: migrations build exactly the sqlmodel tables, and the
run record read back from the catalog is the one the executor held."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from compressgate.registry.catalog import repository as catalog_module
from compressgate.registry.catalog.repository import (
    SCHEMA_VERSION,
    TABLES,
    Catalog,
    RecipeRow,
    catalog_url,
    expected_triggers,
)
from compressgate.registry.kernel.errors import (
    EXIT_ENVIRONMENT,
    EnvironmentMismatch,
    IntegrityError,
)
from compressgate.registry.run import engine as executor
from tests.conftest import Invoke, Workspace
from tests.registry.test_aliases import recipe_file, record_run
from tests.registry.test_executor import write_recipe


def test_migrations_build_exactly_the_model_tables_with_their_guards(catalog_url: str) -> None:
    with Catalog(catalog_url) as catalog:
        inspector = sa.inspect(catalog.engine)
        for model in TABLES:
            table = model.__table__  # type: ignore[attr-defined]
            built = {c["name"] for c in inspector.get_columns(table.name)}
            assert built == {c.name for c in table.columns}, table.name
        assert catalog.schema_version() == SCHEMA_VERSION
        catalog.verify_triggers()
        # Opening again applies nothing new: one migration event, the chain intact.
    with Catalog(catalog_url) as again:
        assert again.head().size == SCHEMA_VERSION
        assert again.verify_chain().size == SCHEMA_VERSION
    assert len(expected_triggers("sqlite")) == 3 * len(TABLES)


OLD_RUN, NEW_RUN = "run-20261123T100000Z-aaaaaa", "run-20261123T110000Z-bbbbbb"


def test_a_v1_catalog_is_refused_read_only_and_migrated_to_v2_by_a_writing_open(
    catalog_url: str, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = recipe_file(tmp_path / "recipe.yaml")
    # A catalog written by a compressgate that knew only the first migration.
    with monkeypatch.context() as patched:
        patched.setattr(catalog_module, "MIGRATIONS", catalog_module.MIGRATIONS[:1])
        patched.setattr(catalog_module, "SCHEMA_VERSION", 1)
        with Catalog(catalog_url) as old:
            record_run(catalog_url, OLD_RUN, 0.97, recipe, run_level=False)
            assert old.schema_version() == 1
            assert not sa.inspect(old.engine).has_table("gate_verdicts")
            held, decisions, v1 = old.run(OLD_RUN), old.decisions(run_id=OLD_RUN), old.head()
    assert SCHEMA_VERSION == 3 and len(decisions) == 1
    # Reading commands do not migrate: exit 5, saying what does.
    with pytest.raises(EnvironmentMismatch) as refused:
        Catalog(catalog_url, create=False)
    assert refused.value.exit_code == EXIT_ENVIRONMENT
    assert "has schema version 1, older than this compressgate's 3" in str(refused.value)
    assert "writing command" in str(refused.value.hint)
    listed = cli("catalog", "list", "--catalog", catalog_url)
    assert listed.exit_code == EXIT_ENVIRONMENT, listed.stderr
    assert "schema version 1" in listed.stderr and "hint: any writing command" in listed.stderr
    # A writing command migrates: promoting the old run's variant applies v2 and v3 (one event
    # each on the same chain), judges the old run from its per-seed decisions, then moves the
    # alias.
    promoted = cli(
        "promote", f"{OLD_RUN}/0/int8", "--alias", "production", "--catalog", catalog_url
    )
    assert promoted.exit_code == 0, promoted.stderr
    with Catalog(catalog_url, create=False) as catalog:
        assert catalog.schema_version() == 3
        assert catalog.head().size == v1.size + 3
        assert catalog.event_hash(v1.size) == v1.sha256
        assert catalog.verify_chain() == catalog.head()
        assert catalog.verify_rows() == v1.size + 3
        catalog.verify_triggers()  # gate_verdicts' append-only guards among them
        with catalog.engine.connect() as conn:
            body = conn.exec_driver_sql(
                f"SELECT body FROM events WHERE seq = {v1.size + 1}"
            ).scalar_one()
        assert json.loads(body)["table"] == "schema_migrations"
        assert json.loads(body)["row"]["version"] == 2
        assert catalog.run(OLD_RUN) == held
        assert catalog.decisions(run_id=OLD_RUN) == decisions
        assert catalog.gate_verdicts(OLD_RUN) == []
        moved = catalog.alias("production")
        assert moved is not None and moved.variant_id == f"{OLD_RUN}/0/int8"
    shown = json.loads(cli("review", "status", OLD_RUN, "--catalog", catalog_url, "--json").stdout)
    assert shown["status"] == "approved"
    (gate,) = shown["gates"]
    assert gate["decision"]["note"].startswith("recorded before schema v2, per seed: 1/1")
    # The migrated catalog takes run-level decisions, behind the same append-only guards.
    record_run(catalog_url, NEW_RUN, 0.97, recipe)
    with Catalog(catalog_url, create=False) as catalog:
        assert [v.gate for v in catalog.gate_verdicts(NEW_RUN)] == ["accuracy"]
        head = catalog.verify_chain()
        assert catalog.verify_rows() == head.size
        assert catalog.schema_version() == 3
        with (
            pytest.raises(sa.exc.IntegrityError, match="gate_verdicts is append-only"),
            catalog.engine.begin() as conn,
        ):
            conn.exec_driver_sql("UPDATE gate_verdicts SET verdict = 'pass'")


def test_a_v2_catalog_is_migrated_to_v3_by_report_o_which_records_the_report(
    catalog_url: str, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = recipe_file(tmp_path / "recipe.yaml")
    with monkeypatch.context() as patched:
        patched.setattr(catalog_module, "MIGRATIONS", catalog_module.MIGRATIONS[:2])
        patched.setattr(catalog_module, "SCHEMA_VERSION", 2)
        with Catalog(catalog_url) as old:
            record_run(catalog_url, OLD_RUN, 0.97, recipe)
            assert not sa.inspect(old.engine).has_table("reports")
            held, v2 = old.run(OLD_RUN), old.head()
    # Reading commands refuse it (exit 5) and say that `report -o` migrates.
    printed = cli("report", OLD_RUN, "--format", "md", "--catalog", catalog_url)
    assert printed.exit_code == EXIT_ENVIRONMENT, printed.stderr
    assert "report -o" in printed.stderr
    out = tmp_path / "report.md"
    written = cli(
        "report", OLD_RUN, "--format", "md", "-o", out, "--catalog", catalog_url,
        "--trust", tmp_path / "trust.yaml", "--actor", "auditor-1",
    )  # fmt: skip
    assert written.exit_code == 0, written.stderr
    with Catalog(catalog_url, create=False) as catalog:
        assert catalog.schema_version() == 3
        assert catalog.head().size == v2.size + 2  # the migration, then the report
        assert catalog.event_hash(v2.size) == v2.sha256
        assert catalog.verify_chain() == catalog.head()
        assert catalog.verify_rows() == v2.size + 2
        catalog.verify_triggers()  # the reports table's guards among them
        assert catalog.run(OLD_RUN) == held
        # The report shows the head it was rendered from, reports not counted.
        assert catalog.evidence_head().size == v2.size + 1
        with catalog.engine.connect() as conn:
            row = conn.exec_driver_sql("SELECT * FROM reports").mappings().one()
        assert (row["run_id"], row["format"], row["actor"]) == (OLD_RUN, "md", "auditor-1")
        assert row["size_bytes"] == out.stat().st_size
        with (
            pytest.raises(sa.exc.IntegrityError, match="reports is append-only"),
            catalog.engine.begin() as conn,
        ):
            conn.exec_driver_sql("UPDATE reports SET format = 'html'")
    # Rendering again gives the same bytes and records nothing new.
    again = cli("report", OLD_RUN, "--format", "md", "-o", tmp_path / "again.md",
                "--catalog", catalog_url, "--trust", tmp_path / "trust.yaml")  # fmt: skip
    assert again.exit_code == 0, again.stderr
    assert (tmp_path / "again.md").read_bytes() == out.read_bytes()
    verified = cli("audit", "verify", "--catalog", catalog_url, "--skip-artifacts",
                   "--report", out, "--report", tmp_path / "again.md")  # fmt: skip
    assert verified.exit_code == 0, verified.stderr
    assert f"the md report of {OLD_RUN}" in verified.stdout
    assert f"event {v2.size + 2})" in verified.stdout
    with Catalog(catalog_url, create=False) as catalog:
        assert catalog.head().size == v2.size + 2
    out.write_bytes(out.read_bytes() + b"\n")
    changed = cli("audit", "verify", "--catalog", catalog_url, "--skip-artifacts", "--report", out)
    assert changed.exit_code == 3
    assert "matches no report rendered from this catalog" in changed.stderr


def test_the_exported_run_record_is_the_one_the_executor_held(
    workspace: Workspace, cli: Invoke
) -> None:
    recipe = write_recipe(workspace)
    root = workspace.root / ".cg"
    options = executor.RunOptions(workspace=root, trust=workspace.trust)
    held = executor.run_recipe(recipe, options)
    with Catalog(catalog_url(root)) as catalog:
        assert catalog.run(held.run_id) == held
        assert catalog.recipe(held.recipe.sha256).content == recipe.read_text()
    shown = cli("catalog", "show", held.run_id, "--workspace", root, "--json")
    assert json.loads(shown.stdout) == held.model_dump(mode="json")


def _filled(path: Path, events: int) -> str:
    url = f"sqlite:///{path}"
    with Catalog(url) as catalog:
        catalog.append(
            [
                (
                    RecipeRow,
                    {
                        "sha256": f"{i:064x}",
                        "name": f"recipe-{i}",
                        "version": 1,
                        "path": "/r.yaml",
                        "signers": "[]",
                        "content": f"text {i}",
                        "envelope": "{}",
                        "recorded_at": "2026-11-23T00:00:00Z",
                        "actor": "test",
                    },
                )
                for i in range(events - SCHEMA_VERSION)
            ]
        )
    return url


def _tamper(path: Path, sql: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP TRIGGER events_no_update")
        db.execute(sql)
        db.commit()


@pytest.mark.parametrize("workers", [1, 3])
@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("UPDATE events SET body = body || ' ' WHERE seq = 150", "event 150: its body"),
        # 101 opens the second of three spans of 300 events: a break at the seam.
        ("UPDATE events SET prev_sha256 = sha256 WHERE seq = 101", "event 101: it does not link"),
        (
            "UPDATE events SET sha256 = substr(sha256, 2) || '0' WHERE seq = 299",
            "event 299: its chain",
        ),
    ],
    ids=["body", "seam-link", "chain-hash"],
)
def test_the_chain_is_checked_alike_in_one_process_or_several(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, sql: str, says: str
) -> None:
    monkeypatch.setattr(catalog_module, "_PARALLEL_FROM", 10)
    path = tmp_path / "catalog.db"
    url = _filled(path, 300)
    with Catalog(url, create=False) as catalog:
        whole = catalog.verify_chain(workers=1)
        assert catalog.verify_chain(workers=workers) == whole
        assert whole.size == 300
    _tamper(path, sql)
    with Catalog(url, create=False) as catalog, pytest.raises(IntegrityError, match=says):
        catalog.verify_chain(workers=workers)
