"""Spies that count what a command does: how often the manifest is read and parsed, its
signature checked, a trust file loaded, a seed's data loaded, a gate's power computed and the
catalog opened (tests/registry/test_workspace.py, tests/e2e/test_reference.py)."""

from __future__ import annotations

import functools
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from compressgate.gates import power
from compressgate.recipes import load as recipe_load
from compressgate.recipes import signing, trust
from compressgate.recipes.examples import digits
from compressgate.registry.catalog.repository import Catalog
from tests.helpers.workspace import Invoke
from tests.helpers.workspace import Workspace as Folder


class Spies:
    """Counts calls of module-level functions and methods, keyed by what `key` makes of the
    arguments. A function is replaced wherever a compressgate module holds it by name."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.counts: dict[str, Counter[Any]] = {}

    def function(
        self, name: str, target: Callable[..., Any], key: Callable[..., Any] = lambda *a, **k: None
    ) -> None:
        counter = self.counts.setdefault(name, Counter())

        @functools.wraps(target)
        def spy(*args: Any, **kwargs: Any) -> Any:
            counter[key(*args, **kwargs)] += 1
            return target(*args, **kwargs)

        for module_name, module in list(sys.modules.items()):
            if module_name.startswith("compressgate.") and module is not None:
                for attr, value in list(vars(module).items()):
                    if value is target:
                        self.monkeypatch.setattr(module, attr, spy)

    def method(
        self, name: str, owner: type, attr: str, key: Callable[..., Any] = lambda *a, **k: None
    ) -> None:
        counter = self.counts.setdefault(name, Counter())
        target = getattr(owner, attr)

        @functools.wraps(target)
        def spy(self_: Any, *args: Any, **kwargs: Any) -> Any:
            counter[key(*args, **kwargs)] += 1
            return target(self_, *args, **kwargs)

        self.monkeypatch.setattr(owner, attr, spy)

    def __getitem__(self, name: str) -> Counter[Any]:
        return self.counts[name]


@pytest.fixture
def spies(monkeypatch: pytest.MonkeyPatch) -> Iterator[Spies]:
    yield Spies(monkeypatch)


def watch_submit(spies: Spies, recipe: Path) -> None:
    manifest = recipe.resolve()
    original = Path.read_bytes

    def read_bytes(self: Path) -> bytes:
        if self.resolve() == manifest:
            spies["manifest reads"][None] += 1
        return original(self)

    spies.counts["manifest reads"] = Counter()
    spies.monkeypatch.setattr(Path, "read_bytes", read_bytes)
    spies.function("manifest parses", recipe_load.parse_recipe)
    spies.function("signature checks", signing.check_signature)
    spies.function("trust loads", trust.load_trust, key=lambda path, *a, **k: str(path))
    spies.function("data loads", digits.load, key=lambda seed, *a, **k: seed)
    spies.function("power checks", power.check_gate, key=lambda gate, *a, **k: gate.name)
    spies.method("catalog opens", Catalog, "__init__")


def sign(cli: Invoke, ws: Folder) -> None:
    sign = cli("recipe", "sign", ws.recipe, "--key", ws.key("ml-platform"))
    assert sign.exit_code == 0, sign.stderr


def submit(cli: Invoke, ws: Folder) -> dict[str, Any]:
    result = cli("submit", ws.recipe, "--workspace", ws.root / ".cg", "--json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def assert_each_done_once(spies: Spies, submitted: dict[str, Any]) -> None:
    """What `watch_submit` counted over one `submit` (its `--json` output given): the manifest
    read, parsed and its signature checked once, each trust file loaded once, each seed's data
    loaded once, each gate's power computed once, the catalog opened once."""
    seeds = submitted["run"]["seeds"]
    gates = [d["gate"] for d in submitted["run"]["decisions"]]
    assert seeds and gates  # the run judged its gates
    assert spies["manifest reads"][None] == 1
    assert spies["manifest parses"][None] == 1
    assert spies["signature checks"][None] == 1
    assert set(spies["trust loads"].values()) == {1}
    assert spies["data loads"] == Counter(dict.fromkeys(seeds, 1))
    # Every gate's power, once: those `recipe validate` shows and those only the run records.
    shown = {check["gate"] for check in submitted["power"]}
    assert shown and shown <= set(gates) <= set(spies["power checks"])
    assert set(spies["power checks"].values()) == {1}
    assert spies["catalog opens"][None] == 1
