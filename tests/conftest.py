"""Shared fixtures: a CLI runner and a signed-recipe workspace built through the public API."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from compressgate.recipes.trust import add_owner_key
from compressgate.registry.api import init_example
from compressgate.registry.cli import cli as cli_group
from compressgate.registry.kernel.keys import generate_keypair

GATE_OWNERS = ("ml-lead", "responsible-ai", "serving")


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


Invoke = Callable[..., CliResult]


@pytest.fixture
def cli() -> Invoke:
    """Run `compressgate ARGS...` in-process; stdout and stderr kept apart."""

    def invoke(*args: str | Path) -> CliResult:
        result = CliRunner().invoke(cli_group, [str(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


@dataclass(frozen=True)
class Workspace:
    root: Path
    recipe: Path
    trust: Path
    keys: Path

    def key(self, owner: str) -> Path:
        return self.keys / f"{owner}.key"


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """The digits example copied into a folder, with keys for every owner and a trust file."""
    root = tmp_path / "ws"
    init_example(root, "digits")
    keys = tmp_path / "keys"
    trust = root / "trust.yaml"
    for owner, role in [("ml-platform", "author"), *((o, "approver") for o in GATE_OWNERS)]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    return Workspace(root, root / "recipe.yaml", trust, keys)


# --- catalogs -----------------------------------------------------------------------------------

PG_ENV = "COMPRESSGATE_TEST_PG_URL"


def postgres_url(schema: str) -> str:
    """$COMPRESSGATE_TEST_PG_URL with its search_path set to `schema` (skips without it)."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"${PG_ENV} is not set: no PostgreSQL server to test against")
    separator = "&" if "?" in base else "?"
    return f"{base}{separator}options=-csearch_path%3D{schema}"


@contextmanager
def fresh_schema(schema: str) -> Iterator[str]:
    """A new, empty PostgreSQL schema for one test, dropped afterwards; yields its URL."""
    import sqlalchemy as sa

    url = postgres_url(schema)
    engine = sa.create_engine(os.environ[PG_ENV])
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    try:
        yield url
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def catalog_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty catalog's URL: a SQLite file, or a fresh schema on $COMPRESSGATE_TEST_PG_URL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'catalog.db'}"
        return
    with fresh_schema(f"cg_test_{secrets.token_hex(6)}") as url:
        yield url


# The repository's root is on sys.path while the tests run, so `import registry` would quietly
# load a second copy of a package beside `compressgate.registry` (two plug-in registries, two
# exception trees). Everything must go through the installed namespace.
_BARE = ("registry", "recipes", "gates", "evaluators", "reports")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import sys

    stray = sorted(name for name in sys.modules if name.split(".")[0] in _BARE)
    if stray:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nimported outside the compressgate namespace: {', '.join(stray[:10])}")
