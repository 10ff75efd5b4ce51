"""The tests' layout: test modules stand alone, and tests/ and bench/ stand apart.

A test module imports `compressgate`, third-party packages and `tests.helpers` (conftest turns
helpers into fixtures), never another test module nor a conftest: importing one collects its
tests twice and ties two files' fixtures together. Nothing under tests/ imports `bench`, and
nothing under bench/ imports `tests`: the two share only the installed packages (the bench runs
the tests' hardening scenarios through pytest, in a subprocess). Every import form counts:
`import a.b`, `from a import b`, relative imports, and `importlib.import_module("a.b")`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def imported(source: str, name: str) -> Iterator[tuple[int, str]]:
    """(line, dotted name) of everything `source` (the module `name`) imports, relative imports
    resolved; `from a import b` gives `a`, then `a.b` (b may be a module)."""
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = name.split(".")[: -node.level]
                base = ".".join([*parts, node.module] if node.module else parts)
            else:
                base = node.module or ""
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f"{base}.{alias.name}"
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in {"importlib.import_module", "import_module", "__import__"}
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield node.lineno, node.args[0].value


def crossing(module: str, side: str) -> str | None:
    """Why a file under `side` (tests or bench) may not import `module`, or None."""
    parts = module.split(".")
    if side == "tests" and parts[0] == "bench":
        return "a test imports the bench"
    if side == "tests" and parts[0] == "tests":
        if any(p == "conftest" for p in parts[1:]):
            return "a conftest is imported (its types and helpers are in tests/helpers/)"
        if any(p.startswith("test_") for p in parts[1:]):
            return "a test module is imported (move what it shares into tests/helpers/)"
    if side == "bench" and parts[0] == "tests":
        return "the bench imports the tests (run them through pytest in a subprocess)"
    return None


def violations(root: Path, side: str) -> list[str]:
    """Each forbidden import under `root`/`side`, as 'path:line: module: why' (one a line)."""
    found = []
    for path in sorted((root / side).rglob("*.py")):
        relative = path.relative_to(root)
        name = ".".join(relative.with_suffix("").parts)
        lines: dict[int, str] = {}
        for line, module in imported(path.read_text(encoding="utf-8"), name):
            why = crossing(module, side)
            if why and line not in lines:
                lines[line] = f"{relative}:{line}: {module}: {why}"
        found += [lines[line] for line in sorted(lines)]
    return found


def test_no_test_module_imports_another_or_a_conftest_or_the_bench() -> None:
    assert len(list((REPO / "tests").rglob("test_*.py"))) > 50
    assert violations(REPO, "tests") == []


def test_the_bench_does_not_import_the_tests() -> None:
    assert len(list((REPO / "bench").glob("*.py"))) >= 5
    assert violations(REPO, "bench") == []


def test_helpers_hold_no_tests() -> None:
    helpers = REPO / "tests" / "helpers"
    assert (helpers / "__init__.py").exists()
    assert sorted(p.name for p in helpers.rglob("test_*.py")) == []


def test_every_import_form_is_found(tmp_path: Path) -> None:
    """The control for the tests above: each form is reported, and what is allowed is not."""
    (tmp_path / "tests" / "registry").mkdir(parents=True)
    (tmp_path / "bench").mkdir()
    (tmp_path / "tests" / "registry" / "test_one.py").write_text(
        "from tests.registry.test_executor import run\n"
        "import tests.e2e.test_cli\n"
        "from tests.conftest import Invoke\n"
        "from .test_aliases import record_run\n"
        "from ..e2e import test_review\n"
        "from bench.harden import crash\n"
        "importlib.import_module('tests.gates.test_ci')\n"
        "from tests.helpers.recipes import QUICK\n"
        "from . import helpers_of_mine\n"
        "from compressgate.registry import workspace\n"
        "import pytest\n"
    )
    (tmp_path / "bench" / "some.py").write_text(
        "from tests.helpers.recipes import QUICK\nimport compressgate.registry.workspace\n"
    )
    found = violations(tmp_path, "tests")
    assert [f.split(":")[1] for f in found] == ["1", "2", "3", "4", "5", "6", "7"]
    assert "tests/registry/test_one.py:4: tests.registry.test_aliases:" in found[3]
    assert "tests/registry/test_one.py:5: tests.e2e.test_review:" in found[4]
    assert violations(tmp_path, "bench") == [
        "bench/some.py:1: tests.helpers.recipes: the bench imports the tests "
        "(run them through pytest in a subprocess)"
    ]
