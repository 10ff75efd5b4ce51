"""Promotion, rollback and alias history through the CLI, on a catalog of recorded runs.

The runs are recorded through the catalog's own API (as the executor records them), with gate
decisions that pass or fail; one test promotes the output of a real run.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluators.results import Estimate
from recipes.signing import sign_recipe
from registry.catalog import Catalog, Decision, catalog_url
from registry.keys import load_private_key
from registry.records import RecipeRef, RunRecord, StageRecord
from tests.conftest import Invoke, Workspace
from tests.registry.test_executor import run as run_recipe
from tests.registry.test_executor import write_recipe

STAGES = ("baseline", "distill", "int8")


def record_run(url: str, run_id: str, accuracy: float, *, passes: bool) -> RunRecord:
    """A finished run of three stages whose 'accuracy' gate on int8 passes or fails."""
    record = RunRecord(
        run_id=run_id,
        recipe=RecipeRef(name="digits", version=1, sha256="ab" * 32, path="/r.yaml", signers=[]),
        status="succeeded",
        started_at="2026-11-23T10:00:00Z",
        finished_at="2026-11-23T10:01:00Z",
        workspace="/ws",
        seeds=[0],
    )
    parent = None
    for index, name in enumerate(STAGES):
        sha = f"{run_id[-6:]}{index:02d}".ljust(64, "0")
        estimate = Estimate(
            estimate=accuracy, ci_low=accuracy - 0.02, ci_high=accuracy + 0.02, n=450, method="w"
        )
        record.stages.append(
            StageRecord(
                seed=0,
                name=name,
                kind=name if index == 0 else "distill" if index == 1 else "quantize",
                status="done",
                format="onnx" if name == "int8" else "torch",
                artifact_sha256=sha,
                parent_sha256=parent,
                size_bytes=1000 - index * 300,
                metrics={"accuracy": estimate},
            )
        )
        parent = sha
    with Catalog(url) as catalog:
        catalog.record_run_start(record, recipe_content="x", envelope="{}", lock_sha256="")
        for stage in record.stages:
            catalog.record_stage(run_id, record.recipe.sha256, stage, {"name": stage.name})
        int8 = record.stages[-1]
        assert int8.artifact_sha256 is not None
        decision = Decision(
            run_id=run_id,
            seed=0,
            gate="accuracy",
            variant_id=f"{run_id}/0/int8",
            stage="int8",
            artifact_sha256=int8.artifact_sha256,
            metric="accuracy",
            rule={"rule": "bound", "min": 0.9},
            estimate=accuracy,
            ci_low=accuracy - 0.02,
            ci_high=accuracy + 0.02,
            n=450,
            threshold=0.9,
            pvalue=None,
            verdict="pass" if passes else "fail",
            owner="ml-lead",
            evidence_sha256="cd" * 32,
            note="interval within the bound" if passes else f"{accuracy - 0.02:.4g} < min 0.9",
            decided_at="2026-11-23T10:01:00Z",
        )
        catalog.record_run_end(record, [decision])
    return record


@pytest.fixture
def catalog(catalog_url: str) -> str:
    record_run(catalog_url, "run-20261123T100000Z-aaaaaa", 0.97, passes=True)
    record_run(catalog_url, "run-20261123T110000Z-bbbbbb", 0.96, passes=True)
    record_run(catalog_url, "run-20261123T120000Z-cccccc", 0.80, passes=False)
    return catalog_url


GOOD, BAD_IN_PROD, FAILING = (
    "run-20261123T100000Z-aaaaaa/0/int8",
    "run-20261123T110000Z-bbbbbb/0/int8",
    "run-20261123T120000Z-cccccc/0/int8",
)


def events(url: str) -> int:
    with Catalog(url) as catalog:
        return catalog.head().size


def test_promote_a_bad_variant_then_rollback_restores_the_known_good_one(
    catalog: str, cli: Invoke
) -> None:
    for variant, who in ((GOOD, "alice"), (BAD_IN_PROD, "bob")):
        result = cli(
            "promote", variant, "--alias", "production", "--catalog", catalog, "--actor", who
        )
        assert result.exit_code == 0, result.stderr
        assert f"promote production -> {variant}" in result.stdout
    # The second one misbehaves in production: one command brings the first back.
    result = cli("rollback", "production", "--catalog", catalog, "--actor", "carol", "--json")
    assert result.exit_code == 0, result.stderr
    move = json.loads(result.stdout)["move"]
    assert (move["variant_id"], move["previous_variant_id"]) == (GOOD, BAD_IN_PROD)
    assert move["action"] == "rollback" and move["actor"] == "carol"
    assert move["reason"] == f"rolled back from {BAD_IN_PROD}"
    history = cli("alias", "history", "production", "--catalog", catalog, "--json")
    moves = json.loads(history.stdout)
    assert [(m["action"], m["variant_id"], m["actor"]) for m in moves] == [
        ("promote", GOOD, "alice"),
        ("promote", BAD_IN_PROD, "bob"),
        ("rollback", GOOD, "carol"),
    ]
    assert all(m["moved_at"].endswith("Z") for m in moves)
    assert [m["seq"] for m in moves] == sorted(m["seq"] for m in moves)
    text = cli("alias", "history", "production", "--catalog", catalog).stdout.splitlines()
    assert len(text) == 3 and "by carol" in text[2] and f"(was {BAD_IN_PROD})" in text[2]
    with Catalog(catalog) as records:
        current = records.alias("production")
        assert current is not None and current.variant_id == GOOD
        records.verify_chain()
        records.verify_rows()


def test_a_variant_whose_gate_failed_is_not_promoted_and_nothing_is_recorded(
    catalog: str, cli: Invoke
) -> None:
    before = events(catalog)
    result = cli("promote", FAILING, "--alias", "production", "--catalog", catalog)
    assert result.exit_code == 1
    assert "gate 'accuracy' (int8): 0.78 < min 0.9" in result.stderr
    assert events(catalog) == before


def test_a_stage_no_gate_judged_is_not_promoted(catalog: str, cli: Invoke) -> None:
    result = cli(
        "promote",
        "run-20261123T100000Z-aaaaaa/0/distill",
        "--alias",
        "staging",
        "--catalog",
        catalog,
    )
    assert result.exit_code == 1
    assert "no gate judged stage 'distill'" in result.stderr


def test_promote_by_sha_prefix_is_idempotent(catalog: str, cli: Invoke) -> None:
    with Catalog(catalog) as records:
        sha = records.variant(GOOD).artifact_sha256
    first = cli("promote", sha[:10], "--alias", "staging", "--catalog", catalog)
    assert first.exit_code == 0, first.stderr
    before = events(catalog)
    again = cli("promote", sha[:10], "--alias", "staging", "--catalog", catalog)
    assert again.exit_code == 0
    assert "already points to" in again.stdout and events(catalog) == before


def test_rollback_skips_what_was_rolled_back_from_and_says_when_nothing_is_left(
    catalog: str, cli: Invoke
) -> None:
    for variant in (GOOD, BAD_IN_PROD):
        assert cli("promote", variant, "--alias", "production", "--catalog", catalog).exit_code == 0
    assert cli("rollback", "production", "--catalog", catalog).exit_code == 0
    # Back on GOOD; the only earlier target is BAD_IN_PROD, which was rolled back from.
    result = cli("rollback", "production", "--catalog", catalog)
    assert result.exit_code == 4
    assert "no earlier known-good variant" in result.stderr
    # Named explicitly, a variant whose gates passed is accepted again.
    result = cli("rollback", "production", "--to", BAD_IN_PROD, "--catalog", catalog)
    assert result.exit_code == 0, result.stderr
    refused = cli("rollback", "production", "--to", FAILING, "--catalog", catalog)
    assert refused.exit_code == 1 and "gate(s) failed" in refused.stderr


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (("promote", "nosuchvariant", "--alias", "p"), 2, "at least 6 hex digits"),
        (("promote", "abcdef0123", "--alias", "p"), 4, "no variant abcdef0123"),
        (("promote", GOOD, "--alias", "prod uction"), 2, "is not a valid name"),
        (("rollback", "never-set"), 4, "alias never-set has never pointed anywhere"),
        (("alias", "history", "never-set"), 4, "never pointed anywhere"),
        (("catalog", "show", "run-20990101T000000Z-000000"), 4, "is not in the catalog"),
    ],
    ids=["bad-ref", "unknown-sha", "bad-alias", "rollback-unset", "history-unset", "no-run"],
)
def test_bad_references_exit_with_their_code_and_record_nothing(
    catalog: str, cli: Invoke, args: tuple[str, ...], code: int, says: str
) -> None:
    before = events(catalog)
    result = cli(*args, "--catalog", catalog)
    assert result.exit_code == code, result.stderr
    assert says in result.stderr and "Traceback" not in result.stderr
    assert events(catalog) == before


def test_catalog_list_show_lineage_and_diff(catalog: str, cli: Invoke) -> None:
    listed = json.loads(cli("catalog", "list", "--catalog", catalog, "--json").stdout)
    assert [r["run_id"][-6:] for r in listed] == ["cccccc", "bbbbbb", "aaaaaa"]
    assert cli("catalog", "list", "--recipe", "other", "--catalog", catalog, "--json").stdout
    page = json.loads(
        cli(
            "catalog", "list", "--limit", "1", "--offset", "1", "--catalog", catalog, "--json"
        ).stdout
    )
    assert [r["run_id"][-6:] for r in page] == ["bbbbbb"]
    lineage = json.loads(cli("catalog", "lineage", GOOD, "--catalog", catalog, "--json").stdout)
    assert [v["stage"] for v in lineage["chain"]] == list(STAGES)
    assert lineage["run"]["recipe"] == "digits"
    shown = json.loads(cli("catalog", "show", FAILING, "--catalog", catalog, "--json").stdout)
    assert shown["promotable"] is False and shown["decisions"][0]["verdict"] == "fail"
    diff = json.loads(cli("catalog", "diff", GOOD, FAILING, "--catalog", catalog, "--json").stdout)
    accuracy = next(r for r in diff["metrics"] if r["key"] == "accuracy")
    assert accuracy["a"][0] == 0.97 and accuracy["b"][0] == 0.80 and not accuracy["same"]
    exported = json.loads(
        cli("catalog", "show", "run-20261123T100000Z-aaaaaa", "--catalog", catalog, "--json").stdout
    )
    assert [s["name"] for s in exported["stages"]] == list(STAGES)


GATED = """
gates:
  - {name: accuracy-floor, owner: ml-lead, metric: accuracy, rule: bound, min: 0.3}
  - {name: no-collapse, owner: ml-lead, after: prune, metric: accuracy, rule: relative,
     max_drop: 0.9}
"""


def test_a_real_run_records_gate_decisions_and_its_final_variant_can_be_promoted(
    workspace: Workspace, cli: Invoke
) -> None:
    recipe = write_recipe(workspace)
    recipe.write_text(recipe.read_text() + GATED)
    sign_recipe(recipe, load_private_key(workspace.key("ml-platform")))
    code, summary, stderr = run_recipe(cli, workspace)
    assert code == 0, stderr
    root = workspace.root / ".cg"
    url = catalog_url(root)
    with Catalog(url) as records:
        decisions = records.decisions(run_id=summary["run_id"])
    assert [(d.gate, d.stage, d.verdict) for d in decisions] == [
        ("accuracy-floor", "export", "pass"),
        ("no-collapse", "prune", "pass"),
    ]
    export = summary["stages"][-1]
    result = cli(
        "promote", export["artifact_sha256"][:12], "--alias", "production", "--workspace", root
    )
    assert result.exit_code == 0, result.stderr
    # int8 made these bytes first, but the gate judged them as export's: that record is taken.
    assert f"{summary['run_id']}/0/export" in result.stdout
    audit = cli("audit", "verify", "--workspace", root, "--json")
    assert audit.exit_code == 0, audit.stderr
    report = json.loads(audit.stdout)
    assert report["artifacts"] == len({s["artifact_sha256"] for s in summary["stages"]}) + 1
    assert report["events"] == report["rows"]
    # The store keeps every blob a record names; remove one and the audit names it.
    blob = Path(root / "objects" / "sha256" / export["artifact_sha256"][:2])
    target = blob / export["artifact_sha256"][2:]
    target.chmod(0o644)
    target.unlink()
    missing = cli("audit", "verify", "--workspace", root)
    assert missing.exit_code == 3
    assert f"blob {export['artifact_sha256']} is missing" in missing.stderr
