"""Shared fixtures: a CLI runner and a signed-recipe workspace built through the public API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

from recipes.trust import add_owner_key
from registry.api import init_example
from registry.cli import cli as cli_group
from registry.keys import generate_keypair

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
