"""The workspace resolves once: one `submit` reads, parses and verifies the manifest once, loads
each seed's data once, computes each gate's power once and opens the catalog once; one `report`
reads each record once. Counted by spies on the functions that do each of those things, through
the command line as a user runs it."""

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
from compressgate.registry import Workspace
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


def _watch_submit(spies: Spies, recipe: Path) -> None:
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


def _sign(cli: Invoke, ws: Folder) -> None:
    sign = cli("recipe", "sign", ws.recipe, "--key", ws.key("ml-platform"))
    assert sign.exit_code == 0, sign.stderr


def _submit(cli: Invoke, ws: Folder) -> dict[str, Any]:
    result = cli("submit", ws.recipe, "--workspace", ws.root / ".cg", "--json")
    assert result.exit_code in (0, 1), result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _quick(ws: Folder, seeds: str) -> None:
    """The reference recipe, trained for one epoch per stage on `seeds`."""
    text = ws.recipe.read_text()
    text = text.replace("seeds: [0, 1, 2]", f"seeds: {seeds}")
    text = text.replace("epochs: 40", "epochs: 1").replace(
        "finetune_epochs: 3", "finetune_epochs: 1"
    )
    ws.recipe.write_text(text)


@pytest.mark.parametrize(
    "seeds", ["[0, 1]", pytest.param("[0, 1, 2]", marks=pytest.mark.slow, id="reference")]
)
def test_one_submit_reads_parses_verifies_loads_and_opens_once(
    cli: Invoke, workspace: Folder, spies: Spies, seeds: str
) -> None:
    if seeds != "[0, 1, 2]":
        _quick(workspace, seeds)
    _sign(cli, workspace)
    _watch_submit(spies, workspace.recipe)
    submitted = _submit(cli, workspace)
    seed_list = submitted["run"]["seeds"]
    gates = [d["gate"] for d in submitted["run"]["decisions"]]
    assert seed_list == json.loads(seeds) and gates  # the run judged its gates

    assert spies["manifest reads"][None] == 1
    assert spies["manifest parses"][None] == 1
    assert spies["signature checks"][None] == 1
    assert set(spies["trust loads"].values()) == {1}
    assert spies["data loads"] == Counter(dict.fromkeys(seed_list, 1))
    # Every gate's power, once: those `recipe validate` shows and those only the run records.
    shown = {check["gate"] for check in submitted["power"]}
    assert shown and shown <= set(gates) <= set(spies["power checks"])
    assert set(spies["power checks"].values()) == {1}
    assert spies["catalog opens"][None] == 1


def test_one_report_reads_each_record_once(
    cli: Invoke, workspace: Folder, spies: Spies, tmp_path: Path
) -> None:
    _quick(workspace, "[0, 1]")
    _sign(cli, workspace)
    first = _submit(cli, workspace)["run"]["run_id"]
    run_id = _submit(cli, workspace)["run"]["run_id"]  # a second run: history to read
    assert first != run_id
    spies.method("run reads", Catalog, "run", key=lambda run_id, *a, **k: run_id)
    spies.method("recipe reads", Catalog, "recipe", key=lambda sha, *a, **k: sha)
    spies.method("catalog opens", Catalog, "__init__")
    out = tmp_path / "report.html"
    result = cli("report", run_id, "--workspace", workspace.root / ".cg", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert out.stat().st_size > 10_000
    assert spies["run reads"] == Counter({run_id: 1, first: 1})
    assert set(spies["recipe reads"].values()) == {1}
    assert spies["catalog opens"][None] == 1


def test_workspace_is_the_python_api(workspace: Folder) -> None:
    """What a notebook does: open a workspace, submit, read the review and the catalog."""
    _quick(workspace, "[0, 1]")
    from compressgate.recipes.signing import sign_recipe
    from compressgate.registry.kernel.keys import load_private_key

    sign_recipe(
        workspace.recipe,
        load_private_key(workspace.key("ml-platform")),
        trust.load_trust(workspace.trust),
    )
    with Workspace(workspace.root / ".cg") as ws:
        submitted = ws.submit(workspace.recipe)
        listed = ws.runs(limit=5)
        (reviewed,) = ws.review(submitted.run.run_id)
    assert [r.run_id for r in listed] == [submitted.run.run_id]
    assert reviewed.run_id == submitted.run.run_id
    assert reviewed.status in {"awaiting-approval", "approved", "rejected"}
