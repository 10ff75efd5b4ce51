"""A lost race is a conflict (exit 6, `conflict: retry`), not bad input and not an integrity
failure: through the CLI, on a catalog of recorded runs, with the race lost deterministically.

- An alias moved by another process between `promote` reading it and writing its own move: the
  other process's connection commits its move in exactly that window.
- A sign-off whose row meets another writer's row under the same key (the approvals table's
  unique key refuses the second): the other row is put in the window between the check and the
  insert. The catalog's write lock (SQLite's BEGIN IMMEDIATE, PostgreSQL's advisory lock) keeps
  that window shut between processes today; the test shows what a user sees if it ever opens.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.kernel.errors import EXIT_CONFLICT
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Invoke, Workspace

FIRST, OTHER, MINE = (
    "run-20261123T100000Z-aaaaaa",
    "run-20261123T110000Z-bbbbbb",
    "run-20261123T120000Z-cccccc",
)


def history(cli: Invoke, url: str) -> list[tuple[str, str, str]]:
    result = cli("alias", "history", "production", "--catalog", url, "--json")
    assert result.exit_code == 0, result.stderr
    return [(m["action"], m["variant_id"], m["actor"]) for m in json.loads(result.stdout)]


def test_promote_that_loses_the_race_for_an_alias_exits_6_and_writes_nothing(
    catalog_url: str, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recipe = recipe_file(tmp_path / "recipe.yaml")
    for run_id in (FIRST, OTHER, MINE):
        record_run(catalog_url, run_id, 0.97, recipe)
    where = ("--catalog", catalog_url, "--workspace", tmp_path / ".cg")
    first = cli("promote", f"{FIRST}/0/int8", "--alias", "production", "--actor", "alice", *where)
    assert first.exit_code == 0, first.stderr

    read_alias = Catalog.alias
    raced: list[str] = []

    def read_then_lose(self: Catalog, alias: str) -> Any:
        # `promote` has read where the alias points; before it writes, another on-call's
        # process moves the alias from its own connection and commits.
        seen = read_alias(self, alias)
        if not raced:
            raced.append(alias)
            with Catalog(catalog_url) as other:
                other.move_alias(
                    alias,
                    other.variant(f"{OTHER}/0/int8"),
                    action="promote",
                    reason="the other on-call",
                    actor="bob",
                    expected_previous=seen.variant_id if seen else None,
                )
        return seen

    monkeypatch.setattr(Catalog, "alias", read_then_lose)
    lost = cli("promote", f"{MINE}/0/int8", "--alias", "production", "--actor", "carol", *where)

    assert raced == ["production"]
    assert lost.exit_code == EXIT_CONFLICT == 6
    assert lost.stdout == ""
    assert lost.stderr.splitlines() == [
        f"Error: alias production moved meanwhile (now {OTHER}/0/int8); nothing changed",
        "hint: conflict: retry; `compressgate alias history production` shows the move that "
        "came first",
    ]
    monkeypatch.undo()
    assert history(cli, catalog_url) == [
        ("promote", f"{FIRST}/0/int8", "alice"),
        ("promote", f"{OTHER}/0/int8", "bob"),
    ]
    # Run again, the same command sees the other move and makes its own.
    again = cli("promote", f"{MINE}/0/int8", "--alias", "production", "--actor", "carol", *where)
    assert again.exit_code == 0, again.stderr
    assert f"(was {OTHER}/0/int8) by carol" in again.stdout


def test_a_sign_off_that_meets_another_write_under_its_key_exits_6_and_records_nothing(
    catalog_url: str,
    cli: Invoke,
    workspace: Workspace,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Recorded beside the workspace's trust file: the one its sign-offs are checked against.
    recipe = recipe_file(workspace.root / "gated.yaml", approval="required")
    run_id = record_run(catalog_url, MINE, 0.97, recipe).run_id
    approve = (
        *("approve", run_id, "--gate", "accuracy", "--key", workspace.key("ml-lead")),
        *("--catalog", catalog_url, "--workspace", workspace.root / ".cg"),
    )

    append = Catalog._append
    raced: list[str] = []

    def other_writer_first(self: Catalog, conn: Any, rows: Sequence[tuple[Any, Any]]) -> Any:
        # The same approval, appended by another writer after the check that its key is free.
        if not raced and rows and rows[0][0].__tablename__ == "approvals":
            raced.append(rows[0][1]["run_id"])
            append(self, conn, rows)
        return append(self, conn, rows)

    monkeypatch.setattr(Catalog, "_append", other_writer_first)
    lost = cli(*approve)

    assert raced == [run_id]
    assert lost.exit_code == EXIT_CONFLICT
    assert lost.stdout == ""
    assert lost.stderr.splitlines() == [
        f"Error: the approval of gate 'accuracy' of run {run_id} met another write to the "
        "catalog at the same moment; nothing recorded",
        "hint: conflict: retry the command, which then sees the other change",
    ]
    monkeypatch.undo()
    review = cli("review", "status", run_id, "--catalog", catalog_url, "--json")
    assert json.loads(review.stdout)["gates"][0]["signoffs"] == []  # the transaction rolled back
    retried = cli(*approve)
    assert retried.exit_code == 0, retried.stderr
    assert f"run {run_id} is now approved" in retried.stdout
