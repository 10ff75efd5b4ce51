"""The workspace resolves once: one `submit` reads, parses and verifies the manifest once, loads
each seed's data once, computes each gate's power once and opens the catalog once; one `report`
reads each record once. Counted by spies on the functions that do each of those things, through
the command line as a user runs it. Here on the reference recipe trained for one epoch per
stage; tests/e2e/test_reference.py counts the same on the reference recipe as it is (slow)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from compressgate.recipes import trust
from compressgate.registry import Workspace
from compressgate.registry.catalog.repository import Catalog
from tests.helpers.counting import Spies, assert_each_done_once, sign, spies, submit, watch_submit
from tests.helpers.workspace import Invoke
from tests.helpers.workspace import Workspace as Folder

__all__ = ["spies"]  # the fixture


def _quick(ws: Folder, seeds: str) -> None:
    """The reference recipe, trained for one epoch per stage on `seeds`."""
    text = ws.recipe.read_text()
    text = text.replace("seeds: [0, 1, 2]", f"seeds: {seeds}")
    text = text.replace("epochs: 40", "epochs: 1").replace(
        "finetune_epochs: 3", "finetune_epochs: 1"
    )
    ws.recipe.write_text(text)


def test_one_submit_reads_parses_verifies_loads_and_opens_once(
    cli: Invoke, workspace: Folder, spies: Spies
) -> None:
    _quick(workspace, "[0, 1]")
    sign(cli, workspace)
    watch_submit(spies, workspace.recipe)
    submitted = submit(cli, workspace)
    assert submitted["run"]["seeds"] == [0, 1]
    assert_each_done_once(spies, submitted)


def test_one_report_reads_each_record_once(
    cli: Invoke, workspace: Folder, spies: Spies, tmp_path: Path
) -> None:
    _quick(workspace, "[0, 1]")
    sign(cli, workspace)
    first = submit(cli, workspace)["run"]["run_id"]
    run_id = submit(cli, workspace)["run"]["run_id"]  # a second run: history to read
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
