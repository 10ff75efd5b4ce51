"""The catalog's schema and its export: migrations build exactly the sqlmodel tables, and the
run record read back from the catalog is the one the executor held."""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from compressgate.evaluators.results import AccuracyResult, Estimate
from compressgate.registry.catalog import integrity, migrations
from compressgate.registry.catalog.chain import (
    DEFLATED,
    compact,
    read_json,
    stored,
    unpack_metrics,
)
from compressgate.registry.catalog.records import StageRecord
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
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.recipes import write_recipe
from tests.helpers.workspace import Invoke, Workspace


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


def test_a_v1_catalog_is_refused_read_only_and_migrated_by_a_writing_open(
    catalog_url: str, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = recipe_file(tmp_path / "recipe.yaml")
    # A catalog written by a compressgate that knew only the first migration.
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:1])
        patched.setattr(migrations, "SCHEMA_VERSION", 1)
        with Catalog(catalog_url) as old:
            record_run(catalog_url, OLD_RUN, 0.97, recipe, run_level=False)
            assert old.schema_version() == 1
            assert not sa.inspect(old.engine).has_table("gate_verdicts")
            held, decisions, v1 = old.run(OLD_RUN), old.judgements(run_id=OLD_RUN), old.head()
    assert SCHEMA_VERSION == 7 and len(decisions) == 1
    # Reading commands do not migrate: exit 5, saying what does.
    with pytest.raises(EnvironmentMismatch) as refused:
        Catalog(catalog_url, create=False)
    assert refused.value.exit_code == EXIT_ENVIRONMENT
    assert "has schema version 1, older than this compressgate's 7" in str(refused.value)
    assert "writing command" in str(refused.value.hint)
    listed = cli("catalog", "list", "--catalog", catalog_url)
    assert listed.exit_code == EXIT_ENVIRONMENT, listed.stderr
    assert "schema version 1" in listed.stderr and "hint: any writing command" in listed.stderr
    # A writing command migrates: promoting the old run's variant applies v2 to v7 (one event
    # each on the same chain), judges the old run from its per-seed decisions, then moves the
    # alias.
    promoted = cli(
        "promote", f"{OLD_RUN}/0/int8", "--alias", "production", "--catalog", catalog_url
    )
    assert promoted.exit_code == 0, promoted.stderr
    with Catalog(catalog_url, create=False) as catalog:
        assert catalog.schema_version() == SCHEMA_VERSION
        assert catalog.head().size == v1.size + 7
        assert catalog.event_hash(v1.size) == v1.sha256
        assert catalog.verify_chain() == catalog.head()
        assert catalog.verify_rows() == v1.size + 7
        catalog.verify_triggers()  # gate_verdicts' append-only guards among them
        with catalog.engine.connect() as conn:
            body = conn.exec_driver_sql(
                f"SELECT body FROM events WHERE seq = {v1.size + 1}"
            ).scalar_one()
        assert json.loads(body)["table"] == "schema_migrations"
        assert json.loads(body)["row"]["version"] == 2
        assert catalog.run(OLD_RUN) == held
        assert catalog.judgements(run_id=OLD_RUN) == decisions
        assert catalog.gate_decisions(OLD_RUN) == []
        moved = catalog.alias("production")
        assert moved is not None and moved.variant_id == f"{OLD_RUN}/0/int8"
    shown = json.loads(cli("review", "status", OLD_RUN, "--catalog", catalog_url, "--json").stdout)
    assert shown["status"] == "approved"
    (gate,) = shown["gates"]
    assert gate["decision"]["note"].startswith("recorded before schema v2, per seed: 1/1")
    # The migrated catalog takes run-level decisions, behind the same append-only guards.
    record_run(catalog_url, NEW_RUN, 0.97, recipe)
    with Catalog(catalog_url, create=False) as catalog:
        assert [v.gate for v in catalog.gate_decisions(NEW_RUN)] == ["accuracy"]
        head = catalog.verify_chain()
        assert catalog.verify_rows() == head.size
        assert catalog.schema_version() == SCHEMA_VERSION
        with (
            pytest.raises(sa.exc.IntegrityError, match="gate_verdicts is append-only"),
            catalog.engine.begin() as conn,
        ):
            conn.exec_driver_sql("UPDATE gate_verdicts SET verdict = 'pass'")


def test_a_v2_catalog_is_migrated_by_report_o_which_records_the_report(
    catalog_url: str, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = recipe_file(tmp_path / "recipe.yaml")
    with monkeypatch.context() as patched:
        patched.setattr(migrations, "MIGRATIONS", migrations.MIGRATIONS[:2])
        patched.setattr(migrations, "SCHEMA_VERSION", 2)
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
        assert catalog.schema_version() == SCHEMA_VERSION
        assert catalog.head().size == v2.size + 6  # five migrations, then the report
        assert catalog.event_hash(v2.size) == v2.sha256
        assert catalog.verify_chain() == catalog.head()
        assert catalog.verify_rows() == v2.size + 6
        catalog.verify_triggers()  # the reports table's guards among them
        assert catalog.run(OLD_RUN) == held
        # The report shows the head it was rendered from, reports not counted.
        assert catalog.evidence_head().size == v2.size + 5
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
    assert f"event {v2.size + 6})" in verified.stdout
    with Catalog(catalog_url, create=False) as catalog:
        assert catalog.head().size == v2.size + 6
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
    monkeypatch.setattr(integrity, "_PARALLEL_FROM", 10)
    path = tmp_path / "catalog.db"
    url = _filled(path, 300)
    with Catalog(url, create=False) as catalog:
        whole = catalog.verify_chain(workers=1)
        assert catalog.verify_chain(workers=workers) == whole
        assert whole.size == 300
    _tamper(path, sql)
    with Catalog(url, create=False) as catalog, pytest.raises(IntegrityError, match=says):
        catalog.verify_chain(workers=workers)


# --- a catalog written before schema v4 --------------------------------------------------------
# data/catalog-v3.sql is the SQL dump of a catalog that compressgate wrote at schema v3, before
# v4 left event bodies empty and stored documents compact: two real runs of the bench recipe
# (the second from the stage cache), a rendered report, approvals, waivers and a promotion.
# data/catalog-v3-run.json is `catalog show RUN --json` of its first run, as v3 printed it.

DATA = Path(__file__).parent / "data"
V3_RUN = "run-20261202T033913Z-e7ed8b"


@pytest.fixture
def v3_catalog(tmp_path: Path) -> str:
    path = tmp_path / "catalog.db"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript((DATA / "catalog-v3.sql").read_text(encoding="utf-8"))
    return f"sqlite:///{path}"


def _bodies(url: str) -> list[str]:
    with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
        return [str(r[0]) for r in db.execute("SELECT body FROM events ORDER BY seq")]


def test_a_v3_catalog_is_read_and_audited_as_it_is(v3_catalog: str, cli: Invoke) -> None:
    verified = cli("audit", "verify", "--catalog", v3_catalog, "--skip-artifacts")
    assert verified.exit_code == 0, verified.stderr
    assert "(schema v3) verifies: 46 events, 46 rows" in verified.stdout
    shown = cli("catalog", "show", V3_RUN, "--catalog", v3_catalog, "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout) == json.loads((DATA / "catalog-v3-run.json").read_text())
    with Catalog(v3_catalog, create=False) as catalog:
        assert catalog.schema_version() == 3 and catalog.head().size == 46
        assert [s.kind for s in catalog.signoffs(V3_RUN)] == ["approval", "waiver"]
        assert catalog.alias("production") is not None
    assert all(_bodies(v3_catalog)), "every v3 event stores its body"


def test_a_v3_catalog_migrated_to_the_current_schema_verifies_across_the_change(
    v3_catalog: str, cli: Invoke, tmp_path: Path
) -> None:
    with Catalog(v3_catalog, create=False) as catalog:
        before, held = catalog.head(), catalog.run(V3_RUN)
    record_run(v3_catalog, NEW_RUN, 0.97, recipe_file(tmp_path / "recipe.yaml"))
    with Catalog(v3_catalog, create=False) as catalog:
        assert catalog.schema_version() == SCHEMA_VERSION
        assert catalog.event_hash(before.size) == before.sha256
        head = catalog.verify_chain()
        assert head == catalog.head() and head.size > before.size + 1
        assert catalog.verify_rows() == head.size
        catalog.verify_storage()
        catalog.verify_triggers()
        assert catalog.run(V3_RUN) == held
        assert [s.name for s in catalog.run(NEW_RUN).stages] == ["baseline", "distill", "int8"]
    bodies = _bodies(v3_catalog)
    # The v4 migration's own event is the first without a body.
    assert all(bodies[: before.size]) and not any(bodies[before.size :])
    verified = cli("audit", "verify", "--catalog", v3_catalog, "--skip-artifacts")
    assert verified.exit_code == 0, verified.stderr
    assert f"(schema v7) verifies: {head.size} events" in verified.stdout
    assert "meaning holds under the unsigned regime (no policy)" in verified.stdout


def test_a_body_edited_in_a_v3_event_is_named_by_audit_verify(v3_catalog: str, cli: Invoke) -> None:
    path = Path(v3_catalog.removeprefix("sqlite:///"))
    with contextlib.closing(sqlite3.connect(path)) as db:
        seq, body = db.execute(
            'SELECT seq, body FROM events WHERE body LIKE \'%"table":"runs"%\' ORDER BY seq'
        ).fetchone()
    data = path.read_bytes()
    at = data.index(body.encode()) + body.index('"workspace":"') + len('"workspace":"') + 1
    assert data[at : at + 1].isalpha()
    path.write_bytes(data[:at] + data[at : at + 1].swapcase() + data[at + 1 :])
    result = cli("audit", "verify", "--catalog", v3_catalog, "--skip-artifacts")
    assert result.exit_code == 3, result.stderr
    assert f"event {seq}: its body no longer matches its content hash" in result.stderr


# --- what v4 stores ----------------------------------------------------------------------------


def _column(url: str, sql: str) -> str:
    with Catalog(url, create=False) as catalog, catalog.engine.connect() as conn:
        return str(conn.exec_driver_sql(sql).scalar_one())


def test_v4_stores_a_repeated_figure_once_and_long_documents_deflated(
    catalog_url: str, tmp_path: Path
) -> None:
    record_run(catalog_url, NEW_RUN, 0.97, recipe_file(tmp_path / "recipe.yaml"))
    p50 = Estimate(estimate=1.5, ci_low=1.4, ci_high=1.7, n=200, method="order-statistic")
    accuracy = Estimate(estimate=0.9, ci_low=0.87, ci_high=0.92, n=500, method="wilson")
    stage = StageRecord(
        seed=0,
        name="export",
        kind="export",
        status="done",
        format="onnx",
        artifact_sha256="e" * 64,
        macs=123_456,
        metrics={"accuracy": accuracy, "latency.batch_1.p50_ms": p50, "latency.p50_ms": p50},
        evaluations={
            "accuracy": AccuracyResult(
                accuracy=accuracy, correct=450, predictions=[k % 7 for k in range(500)]
            )
        },
    )
    with Catalog(catalog_url) as catalog:
        catalog.record_stage(NEW_RUN, "a" * 64, stage, {"name": "export", "kind": "export"})
        variant = catalog.variant(f"{NEW_RUN}/0/export")
        back = catalog.run(NEW_RUN).stage(0, "export")
        assert catalog.verify_rows() == catalog.verify_chain().size
    assert variant.metrics == stage.metrics and variant.macs == 123_456
    assert back.metrics == stage.metrics and back.evaluations == stage.evaluations
    metrics = read_json(_column(catalog_url, "SELECT metrics FROM variants WHERE stage = 'export'"))
    # The first batch size's p50 under its second name: the name it repeats.
    assert metrics["latency.p50_ms"] == "latency.batch_1.p50_ms"
    # Estimates without the fields at their default (confidence 0.95, no unit).
    assert metrics["accuracy"] == {
        "ci_high": 0.92, "ci_low": 0.87, "estimate": 0.9, "method": "wilson", "n": 500
    }  # fmt: skip
    result = _column(catalog_url, "SELECT result FROM evaluations WHERE kind = 'accuracy'")
    assert result.startswith(DEFLATED) and len(result) < 600
    assert read_json(result) == {**compact(stage.evaluations["accuracy"]), "kind": "accuracy"}


def test_a_damaged_compact_document_is_an_integrity_error() -> None:
    with pytest.raises(IntegrityError, match="catalog document is damaged"):
        read_json(DEFLATED + "eJzLSM3JyQcABiwCFQ==!")
    with pytest.raises(IntegrityError, match="catalog document is damaged"):
        read_json(DEFLATED + base64.b64encode(b"not deflated").decode())
    with pytest.raises(IntegrityError, match=r"'latency\.p50_ms' repeats a metric it does not"):
        unpack_metrics({"latency.p50_ms": "latency.batch_1.p50_ms"})
    assert read_json(stored({"text": "x" * 1000})) == {"text": "x" * 1000}
    assert stored({"short": 1}) == '{"short":1}'
