"""The catalog's schema and its export: migrations build exactly the sqlmodel tables, and the
run record read back from the catalog is the one the executor held."""

from __future__ import annotations

import json

import sqlalchemy as sa

from registry import executor
from registry.catalog import (
    SCHEMA_VERSION,
    TABLES,
    Catalog,
    catalog_url,
    expected_triggers,
)
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
