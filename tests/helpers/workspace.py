"""The types behind conftest's `cli` and `workspace` fixtures: a CLI result, the runner's
signature, and a folder holding the digits example with every owner's key and a trust file."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.keys import generate_keypair

GATE_OWNERS = ("ml-lead", "responsible-ai", "serving")


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


Invoke = Callable[..., CliResult]


@dataclass(frozen=True)
class Workspace:
    root: Path
    recipe: Path
    trust: Path
    keys: Path

    def key(self, owner: str) -> Path:
        return self.keys / f"{owner}.key"


def make_workspace(folder: Path) -> Workspace:
    """The digits example copied into `folder`/ws, with keys (in `folder`/keys) for the author
    ml-platform and every gate owner, each in the trust file."""
    root = folder / "ws"
    init_example(root, "digits")
    keys = folder / "keys"
    trust = root / "trust.yaml"
    for owner, role in [("ml-platform", "author"), *((o, "approver") for o in GATE_OWNERS)]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    return Workspace(root, root / "recipe.yaml", trust, keys)
