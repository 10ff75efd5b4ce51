"""Acceptance of the reference recipe, end to end, from one `submit` (slow: about two minutes).

The same submit is counted (tests/helpers/counting.py): the manifest read, parsed and verified
once, each seed's data loaded once, each gate's power computed once, the catalog opened once —
tests/registry/test_workspace.py counts the same in the fast suite, on one epoch per stage.
"""

from __future__ import annotations

import pytest

from tests.helpers.counting import Spies, assert_each_done_once, sign, spies, submit, watch_submit
from tests.helpers.workspace import Invoke, Workspace

__all__ = ["spies"]  # the fixture


@pytest.mark.slow
def test_reference_recipe_is_20x_smaller_than_the_float_onnx_within_1_point(
    workspace: Workspace, cli: Invoke, spies: Spies
) -> None:
    sign(cli, workspace)
    watch_submit(spies, workspace.recipe)
    submitted = submit(cli, workspace)
    summary = submitted["run"]
    assert summary["seeds"] == [0, 1, 2]
    assert_each_done_once(spies, submitted)
    spies.monkeypatch.undo()  # the report below is not counted

    for seed in summary["seeds"]:
        stages = {s["name"]: s for s in summary["stages"] if s["seed"] == seed}
        baseline, final = stages["baseline"], stages["export"]
        assert final["kind"] == "export" and final["details"]["opset"] == 18
        ratio = baseline["details"]["onnx_size_bytes"] / final["size_bytes"]
        assert ratio >= 20, f"seed {seed}: only {ratio:.1f}x smaller"
        drop = (
            baseline["metrics"]["accuracy"]["estimate"] - final["metrics"]["accuracy"]["estimate"]
        )
        assert drop <= 0.01, f"seed {seed}: accuracy fell by {drop:.2%}"
        assert baseline["metrics"]["accuracy"]["estimate"] >= 0.97
    assert [d["verdict"] for d in summary["decisions"]] == ["pass"] * 4  # its gates hold

    # The run's audit report: self-contained, and clean in a real browser.
    page = workspace.root / "report.html"
    rendered = cli("report", summary["run_id"], "--workspace", workspace.root / ".cg", "-o", page)
    assert rendered.exit_code == 0, rendered.stderr
    text = page.read_text()
    for plot in ("accuracy_vs_size", "accuracy_vs_latency", "reliability", "groups", "classes"):
        assert f'id="plot-{plot}"' in text, plot
    assert 'id="plot-latency"' in text
    from tests.helpers.browser import find_chromium, open_page

    if find_chromium() is None:
        pytest.skip("no chromium on PATH: the browser check needs Debian's chromium")
    shot = workspace.root / "report.png"
    opened = open_page(page, shot)
    assert opened.console == [] and opened.requests == []
    assert shot.stat().st_size > 50_000
