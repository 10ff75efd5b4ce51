"""Promotion, rollback and alias history through the CLI, on a catalog of recorded runs.

The runs are recorded through the catalog's own API as the executor records them: the recipe's
exact bytes, each stage's variant, each seed's judgement of every gate and the run-level gate
decision its seeds policy makes of them. Their gates pass or fail on the recorded accuracy;
owners approve and waive them with their keys. One test promotes the output of a real run.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import Trust, add_owner_key, load_trust
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.governance.review import sign_off, status
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.catalog import STAGES, recipe_file, record_run
from tests.helpers.recipes import run as run_recipe
from tests.helpers.recipes import write_recipe
from tests.helpers.workspace import Invoke, Workspace

GOOD_RUN, BAD_RUN, FAILING_RUN = (
    "run-20261123T100000Z-aaaaaa",
    "run-20261123T110000Z-bbbbbb",
    "run-20261123T120000Z-cccccc",
)
GOOD, BAD_IN_PROD, FAILING = (f"{run}/0/int8" for run in (GOOD_RUN, BAD_RUN, FAILING_RUN))


@pytest.fixture
def catalog(catalog_url: str, tmp_path: Path) -> str:
    """Three runs of one recipe: two whose gate passes, then one whose gate fails."""
    recipe = recipe_file(tmp_path / "recipe.yaml")
    record_run(catalog_url, GOOD_RUN, 0.97, recipe)
    record_run(catalog_url, BAD_RUN, 0.96, recipe)
    record_run(catalog_url, FAILING_RUN, 0.80, recipe)
    return catalog_url


def events(url: str) -> int:
    with Catalog(url) as catalog:
        return catalog.head().size


def no_trust_needed() -> Trust:
    pytest.fail("the trust file was read for a run without sign-offs")


def test_recorded_runs_are_reviewed_from_their_gate_decisions_without_a_trust_file(
    catalog: str,
) -> None:
    with Catalog(catalog) as records:
        passed = status(records, GOOD_RUN, no_trust_needed)
        failed = status(records, FAILING_RUN, no_trust_needed)
        per_seed = records.judgements(run_id=FAILING_RUN)
    assert passed.status == "approved" and not passed.reasons
    assert [(g.decision.gate, g.decision.stage, g.state) for g in passed.gates] == [
        ("accuracy", "int8", "passed")
    ]
    assert failed.status == "rejected" and failed.gates[0].state == "failed"
    assert failed.gates[0].decision.subjects() == [(FAILING, per_seed[0].artifact_sha256)]
    assert [(d.gate, d.variant_id, d.verdict) for d in per_seed] == [("accuracy", FAILING, "fail")]


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
    assert f"run {FAILING_RUN} is rejected" in result.stderr
    assert (
        "gate 'accuracy' failed (0/1 seeds pass; seed 0: 0.78 < min 0.9); "
        "its owner 'ml-lead' may waive it"
    ) in result.stderr
    assert events(catalog) == before


def test_a_stage_no_gate_judged_is_not_promoted(catalog: str, cli: Invoke, tmp_path: Path) -> None:
    # Before the judged stage: the gate's verdict on int8 says nothing of distill.
    result = cli("promote", f"{GOOD_RUN}/0/distill", "--alias", "staging", "--catalog", catalog)
    assert result.exit_code == 1
    assert "gate(s) 'accuracy' (after int8) judge a stage after 'distill'" in result.stderr
    # After it: a run whose only gate judged distill has no gate on int8.
    early = recipe_file(tmp_path / "early.yaml", after="distill")
    run_id = record_run(catalog, "run-20261123T130000Z-dddddd", 0.97, early).run_id
    result = cli("promote", f"{run_id}/0/int8", "--alias", "staging", "--catalog", catalog)
    assert result.exit_code == 1
    assert f"no gate judged stage 'int8' of run {run_id}" in result.stderr
    judged_one = cli("promote", f"{run_id}/0/distill", "--alias", "staging", "--catalog", catalog)
    assert judged_one.exit_code == 0, judged_one.stderr


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
    # Named explicitly, a variant of an approved run is accepted again.
    result = cli("rollback", "production", "--to", BAD_IN_PROD, "--catalog", catalog)
    assert result.exit_code == 0, result.stderr
    refused = cli("rollback", "production", "--to", FAILING, "--catalog", catalog)
    assert refused.exit_code == 1 and f"run {FAILING_RUN} is rejected" in refused.stderr


def test_a_gate_that_requires_approval_is_promoted_only_once_its_owner_approves(
    catalog_url: str, cli: Invoke, workspace: Workspace, tmp_path: Path
) -> None:
    # Recorded beside the workspace's trust file: the one its sign-offs are checked against.
    recipe = recipe_file(workspace.root / "gated.yaml", approval="required")
    run_id = record_run(catalog_url, "run-20261123T130000Z-eeeeee", 0.97, recipe).run_id
    variant = f"{run_id}/0/int8"
    promote = ("promote", variant, "--alias", "production", "--catalog", catalog_url)
    before = events(catalog_url)
    waiting = cli(*promote)
    assert waiting.exit_code == 1
    assert f"run {run_id} is awaiting-approval" in waiting.stderr
    assert "gate 'accuracy' awaits the signed approval of 'ml-lead'" in waiting.stderr
    assert events(catalog_url) == before
    approve = ("approve", run_id, "--gate", "accuracy", "--catalog", catalog_url, "--key")
    other = cli(*approve, workspace.key("serving"))
    assert other.exit_code == 3 and "belongs to 'ml-lead'" in other.stderr
    approved = cli(*approve, workspace.key("ml-lead"))
    assert approved.exit_code == 0, approved.stderr
    assert f"run {run_id} is now approved" in approved.stdout
    result = cli(*promote)
    assert result.exit_code == 0, result.stderr
    assert f"promote production -> {variant}" in result.stdout
    review = json.loads(cli("review", "status", run_id, "--catalog", catalog_url, "--json").stdout)
    assert review["status"] == "approved"
    assert [(s["kind"], s["owner"], s["counts"]) for s in review["gates"][0]["signoffs"]] == [
        ("approval", "ml-lead", True)
    ]
    # Checked again at every promotion: once ml-lead's key is rotated out, it approves nothing.
    _, _, public = generate_keypair("ml-lead", tmp_path / "rotated")
    rotated = tmp_path / "rotated" / "trust.yaml"
    add_owner_key(rotated, "ml-lead", public, ("approver",))
    again = cli(
        "promote", variant, "--alias", "staging", "--catalog", catalog_url, "--trust", rotated
    )
    assert again.exit_code == 1 and "is awaiting-approval" in again.stderr


def test_rollback_skips_a_promoted_variant_whose_waiver_has_since_expired(
    catalog: str, cli: Invoke, workspace: Workspace
) -> None:
    trust = load_trust(workspace.trust)
    trusted = ("--catalog", catalog, "--trust", workspace.trust)
    # Expiry is signed to the second: 2 to 3 seconds from now.
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    with Catalog(catalog) as records:
        waiver, _ = sign_off(
            records,
            FAILING_RUN,
            "accuracy",
            kind="waiver",
            trust=trust,
            key=load_private_key(workspace.key("ml-lead")),
            reason="the int8 regression is fixed by the next release",
            expires=expires,
        )
    assert waiver.counts and waiver.expires is not None
    for variant in (GOOD, FAILING, BAD_IN_PROD):
        result = cli("promote", variant, "--alias", "production", *trusted)
        assert result.exit_code == 0, result.stderr
    with Catalog(catalog) as records:
        valid = status(records, FAILING_RUN, trust, at=expires - timedelta(seconds=1))
        lapsed = status(records, FAILING_RUN, trust, at=expires)
    assert (valid.status, valid.gates[0].state) == ("approved", "waived")
    assert (lapsed.status, lapsed.gates[0].state) == ("rejected", "failed")
    assert lapsed.gates[0].signoffs[0].problem == f"expired at {waiver.expires}"
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    # BAD_IN_PROD goes; FAILING was promoted under a waiver that no longer counts: GOOD it is.
    result = cli("rollback", "production", "--json", *trusted)
    assert result.exit_code == 0, result.stderr
    move = json.loads(result.stdout)["move"]
    assert (move["variant_id"], move["previous_variant_id"]) == (GOOD, BAD_IN_PROD)
    refused = cli("rollback", "production", "--to", FAILING, *trusted)
    assert refused.exit_code == 1 and f"run {FAILING_RUN} is rejected" in refused.stderr


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
        decisions = records.judgements(run_id=summary["run_id"])
        verdicts = records.gate_decisions(summary["run_id"])
        review = status(records, summary["run_id"], no_trust_needed)
    # Each gate is judged when its stage is done: prune's before export's.
    judged = [("no-collapse", "prune", "pass"), ("accuracy-floor", "export", "pass")]
    assert [(d.gate, d.stage, d.verdict) for d in decisions] == judged
    assert [(v.gate, v.stage, v.verdict) for v in verdicts] == judged
    assert review.status == "approved"
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
