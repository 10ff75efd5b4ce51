"""The catalog's schema and its export: migrations build exactly the sqlmodel tables, and the
run record read back from the catalog is the one the executor held."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from registry import catalog as catalog_module
from registry import executor
from registry.catalog import (
    SCHEMA_VERSION,
    TABLES,
    Catalog,
    RecipeRow,
    catalog_url,
    expected_triggers,
)
from registry.errors import IntegrityError
from tests.conftest import Invoke, Workspace
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
