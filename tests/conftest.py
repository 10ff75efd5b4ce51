"""Shared fixtures: a CLI runner, a signed-recipe workspace built through the public API, and
empty catalogs (SQLite, and PostgreSQL when $COMPRESSGATE_TEST_PG_URL names a server). Their
types and the helpers tests import live in `tests/helpers/`."""

from __future__ import annotations

import secrets
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Before the helpers are imported: their asserts explain themselves as a test module's do.
pytest.register_assert_rewrite("tests.helpers")

from click.testing import CliRunner  # noqa: E402

from compressgate.registry.cli import cli as cli_group  # noqa: E402
from tests.helpers.postgres import fresh_schema  # noqa: E402
from tests.helpers.workspace import CliResult, Invoke, Workspace, make_workspace  # noqa: E402


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hardening", "tests/hardening/test_guarantees.py (bench/hardening.py)")
    group.addoption(
        "--harden-scale",
        type=float,
        default=0.1,
        help="the guarantees' counts: 1.0 is bench/hardening.py's, the default 0.1 its --quick",
    )
    group.addoption("--harden-seed", type=int, default=0, help="the scenarios' seed (default 0)")
    group.addoption(
        "--harden-figures",
        type=Path,
        default=None,
        help="append each section's figures to FILE, one JSON line per section",
    )
    group = parser.getgroup("statistics", "tests/gates/test_statistics.py (bench/statistics.py)")
    group.addoption(
        "--statsim-scale",
        type=float,
        default=0.1,
        help="simulated datasets: 1.0 is bench/statistics.py's, the default 0.1 its --quick",
    )
    group.addoption("--statsim-seed", type=int, default=0, help="the simulations' seed")
    group.addoption(
        "--statsim-figures",
        type=Path,
        default=None,
        help="append each family's rows to FILE, one JSON line per family",
    )


# The two longest files, measured in a fresh-clone CI run: the docs' console sessions (the
# README tour alone 220 s) and the reference recipe run isolated (245 s). Collected in
# alphabetical order, tests/test_docs.py came after every folder's slow files and ran alone at
# the end for minutes while the other worker idled.
LONGEST = ("test_docs.py", "test_isolation.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The files that hold slow tests first, the longest of them (`LONGEST`, in tests/ and
    tests/e2e/) before the others, each file's tests in their own order. pytest-xdist hands out
    whole files (`--dist loadfile`) in this order, so the long ones start first and the short
    ones fill the gaps, rather than one worker running a long file alone at the end."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    root = Path(__file__).resolve().parent
    longest = [root / LONGEST[0], root / "e2e" / LONGEST[1]]

    def order(item: pytest.Item) -> tuple[int, int]:
        rank = longest.index(item.path) if item.path in longest else len(longest)
        return (item.path not in slow, rank)

    items.sort(key=order)


@pytest.fixture
def cli() -> Invoke:
    """Run `compressgate ARGS...` in-process; stdout and stderr kept apart."""

    def invoke(*args: str | Path) -> CliResult:
        result = CliRunner().invoke(cli_group, [str(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    return invoke


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    """The digits example copied into a folder, with keys for every owner and a trust file."""
    return make_workspace(tmp_path)


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


class _Shadow:
    """A finder that refuses the bare names at the import that asks for one, so the test that
    does it fails there, with its traceback."""

    @staticmethod
    def find_spec(name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in _BARE:
            raise ImportError(f"import compressgate.{name}, not the bare {name!r}", name=name)


sys.meta_path.insert(0, _Shadow())  # type: ignore[arg-type]


_STRAY = pytest.StashKey[list[str]]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """Under pytest-xdist, on the controller: what a worker found imported (the controller
    imports no test module itself, and a worker's exit status is not the session's)."""
    node.config.stash.setdefault(_STRAY, []).extend(node.workeroutput.get("stray", []))


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    from_workers: list[str] = session.config.stash.get(_STRAY, [])
    stray = sorted({name for name in sys.modules if name.split(".")[0] in _BARE} | {*from_workers})
    if hasattr(session.config, "workeroutput"):  # a pytest-xdist worker: tell the controller
        session.config.workeroutput["stray"] = stray
    if stray:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nimported outside the compressgate namespace: {', '.join(stray[:10])}")
