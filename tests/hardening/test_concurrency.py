"""Concurrency end to end through the CLI (issue 8), with the scenario `bench/hardening.py`
measures: submitters started together on one workspace and one catalog, then processes moving
one alias together. Every submitter exits 0 with its run recorded once; `audit verify` passes;
the alias's history holds exactly the moves the processes reported, each following the one
before, and the alias points to the last.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from bench.harden.concurrency import Result, move_alias, run_scenario
from tests.conftest import fresh_schema
from tests.registry.test_aliases import recipe_file, record_run


def held(result: Result) -> None:
    assert result.problems == []
    missed = [f for f in result.figures() if not f.met]
    assert missed == []


@pytest.mark.slow
def test_four_submitters_on_sqlite_record_every_run_and_move_the_alias_consistently(
    tmp_path: Path,
) -> None:
    result = run_scenario(tmp_path, 4, rounds=2)
    held(result)
    assert result.runs_ok == 4 and result.movers == 8


@pytest.mark.slow
@pytest.mark.postgres
def test_sixteen_submitters_on_postgresql_record_every_run_and_move_the_alias_consistently(
    tmp_path: Path,
) -> None:
    with fresh_schema(f"cg_test_{secrets.token_hex(6)}") as url:
        result = run_scenario(tmp_path, 16, url, rounds=2)
    held(result)
    assert result.runs_ok == 16 and result.movers == 32


@pytest.mark.slow  # about 25 s per catalog: kept out of `make test`'s 10 minutes
def test_concurrent_promotes_and_a_rollback_leave_one_linked_history(
    catalog_url: str, tmp_path: Path
) -> None:
    # Recorded runs whose gate passed, as the executor records them: no recipe is run.
    recipe = recipe_file(tmp_path / "recipe.yaml")
    variants = []
    for i in range(4):
        run_id = f"run-20261123T10000{i}Z-abcde{i}"
        record_run(catalog_url, run_id, 0.97, recipe)
        variants.append(f"{run_id}/0/int8")
    result = Result("catalog", 4, with_submits=False)
    where = ("--catalog", catalog_url, "--workspace", tmp_path / ".cg")
    move_alias(result, where, variants, tmp_path, rounds=1, audit=("--skip-artifacts",))
    held(result)
    assert result.movers == 4 and result.endings.get("moved", 0) >= 1, result.endings
