"""Crash safety (issue 8): `compressgate run` killed with SIGKILL, on SQLite and PostgreSQL.

The scenarios are tests/helpers/harden/crash.py's: each trial kills a run (after a random delay, or
half-way through a catalog transaction, a blob or a cache entry), then checks that `audit
verify` passes, that the store and the cache hold no partial artifact, that every event
committed before the kill is still there, and that a re-run reuses what the killed run finished
and ends with an uninterrupted run's artifacts. `python bench/hardening.py --only crash` runs
50 trials per backend (5 with `--quick`, in CI).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tests.helpers.harden import crash

PG_ENV = "COMPRESSGATE_TEST_PG_URL"
SEED = 3


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> crash.Lab:
    """A fork server and one uninterrupted reference run, shared by the module's tests."""
    made = crash.Lab(tmp_path_factory.mktemp("crash"), [SEED])
    made.reference(SEED)
    return made


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> tuple[str, str | None]:
    """A backend's name and, for PostgreSQL, the server (each trial gets a fresh schema)."""
    if request.param == "sqlite":
        return "sqlite", None
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"${PG_ENV} is not set: no PostgreSQL server to test against")
    return "postgres", url


def kill_and_check(lab: crash.Lab, backend: tuple[str, str | None], count: int) -> None:
    name, url = backend
    trials = lab.trials(name, count, random.Random(f"test/{name}/{count}"), url)
    assert len([t for t in trials if t.killed]) == count, [str(t.plan) for t in trials]
    problems = [(t.index, str(t.plan), t.phase, t.problems) for t in trials if t.problems]
    assert problems == []
    assert all(f.met for f in crash.trial_figures(name, trials))


def test_a_run_killed_at_random_and_inside_a_catalog_write_resumes_cleanly(
    lab: crash.Lab, backend: tuple[str, str | None]
) -> None:
    # Trial 0 is killed after a random delay, trial 1 inside an open catalog transaction.
    kill_and_check(lab, backend, 2)


def test_a_killed_run_with_nothing_recorded_yet_leaves_an_empty_store(tmp_path: Path) -> None:
    state = crash.inspect_store(tmp_path / ".cg")
    assert (state.problems, state.cached, state.leftovers) == ([], set(), 0)


def test_a_blob_that_does_not_match_its_name_is_a_partial_artifact(tmp_path: Path) -> None:
    blob = tmp_path / ".cg" / "objects" / "sha256" / "ab" / ("c" * 62)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"half a model")
    (blob.parent / ".blob.x.tmp").write_bytes(b"half")
    (tmp_path / ".cg" / "cache").mkdir()
    (tmp_path / ".cg" / "cache" / "key.json").write_text('{"name": "prune"')
    state = crash.inspect_store(tmp_path / ".cg")
    assert len(state.problems) == 2 and state.leftovers == 1, state
