"""Gated review end to end through the CLI (issue 6): submit, approve, waive, promote.

Every test shares one module-wide workspace, so its `.cg` stage cache makes every submit after
the first one cheap; each test submits its own run and only looks at that run's rows.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from scipy.stats import binomtest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.recipes import DEFAULTS, QUICK
from tests.helpers.workspace import GATE_OWNERS, CliResult, Invoke, Workspace

MARGIN = 0.15  # the good recipe's paired drop is about 0.06, an over-pruned one's about 0.6

GATES = """\
gates:
  - {name: prune-accuracy, owner: ml-lead, after: prune, metric: accuracy, rule: non_inferior,
     margin: MARGIN}
  - {name: final-accuracy, owner: ml-lead, metric: accuracy, rule: non_inferior, margin: MARGIN,
     approval: APPROVAL}
  - {name: floor, owner: serving, metric: accuracy, rule: bound, min: FLOOR}
"""

Document = dict[str, Any]


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    """The digits example with keys and a trust file, as `conftest.workspace` builds it, but
    shared by the module's tests so the stage cache is shared too."""
    tmp = tmp_path_factory.mktemp("review")
    root = tmp / "ws"
    init_example(root, "digits")
    keys = tmp / "keys"
    trust = root / "trust.yaml"
    for owner, role in [("ml-platform", "author"), *((o, "approver") for o in GATE_OWNERS)]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    return Workspace(root, root / "recipe.yaml", trust, keys)


def recipe(
    ws: Workspace,
    name: str,
    *,
    sparsity: str = "0.5",
    rounds: str = "2",
    approval: str = "required",
    floor: str = "0.5",
) -> Path:
    """QUICK with three gates (after prune; final, maybe awaiting approval; an accuracy floor),
    written beside the trust file and signed by the author."""
    text = QUICK
    for key, value in DEFAULTS.items():
        text = text.replace(key, value)
    for old, new in (
        ("sparsity: 0.5", f"sparsity: {sparsity}"),
        ("rounds: 2", f"rounds: {rounds}"),
    ):
        assert text.count(old) == 1
        text = text.replace(old, new)
    text += (
        GATES.replace("MARGIN", str(MARGIN)).replace("APPROVAL", approval).replace("FLOOR", floor)
    )
    path = ws.root / f"{name}.yaml"
    path.write_text(text)
    sign_recipe(path, load_private_key(ws.key("ml-platform")))
    return path


def store(ws: Workspace) -> tuple[str, Path]:
    return "--workspace", ws.root / ".cg"


def submit(cli: Invoke, ws: Workspace, path: Path) -> tuple[int, Document]:
    result = cli("submit", path, *store(ws), "--json")
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def review(cli: Invoke, ws: Workspace, run_id: str) -> tuple[int, Document]:
    result = cli("review", "status", run_id, *store(ws), "--json")
    assert result.stdout, result.stderr
    return result.exit_code, json.loads(result.stdout)


def record(cli: Invoke, ws: Workspace, run_id: str) -> Document:
    """The run's full record, as `catalog show RUN --json` exports it."""
    result = cli("catalog", "show", run_id, *store(ws), "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def gates(found: Document) -> dict[str, Document]:
    return {g["decision"]["gate"]: g for g in found["gates"]}


def metric(run: Document, stage: str, name: str) -> Document:
    (found,) = [s for s in run["stages"] if s["name"] == stage and s["seed"] == 0]
    return found["metrics"][name]  # type: ignore[no-any-return]


@contextlib.contextmanager
def catalog_db(ws: Workspace) -> Iterator[sqlite3.Connection]:
    with contextlib.closing(sqlite3.connect(ws.root / ".cg" / "catalog.db")) as db:
        yield db


def signoff_rows(ws: Workspace, run_id: str) -> list[tuple[str, str, str]]:
    with catalog_db(ws) as db:
        rows = db.execute(
            "SELECT gate, kind, owner FROM approvals WHERE run_id = ? ORDER BY event_seq",
            (run_id,),
        )
        return [tuple(r) for r in rows]


def event_count(ws: Workspace) -> int:
    with catalog_db(ws) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def next_second() -> None:
    """Sleep into the next whole second (UTC), so a run started now gets a later run id."""
    time.sleep(1 - datetime.now(UTC).microsecond / 1e6 + 0.01)


def promote(cli: Invoke, ws: Workspace, variant: str, alias: str = "production") -> CliResult:
    return cli("promote", variant, "--alias", alias, *store(ws))


def test_a_good_recipe_is_approved_by_its_owner_then_promoted(ws: Workspace, cli: Invoke) -> None:
    code, submitted = submit(cli, ws, recipe(ws, "good"))
    found = submitted["review"]
    assert code == 0, found["reasons"]
    run_id = submitted["run"]["run_id"]
    assert submitted["run"]["status"] == "succeeded"
    assert [s["name"] for s in submitted["run"]["stages"]] == [
        "baseline",
        "distill",
        "prune",
        "int8",
        "export",
    ]
    assert found["status"] == "awaiting-approval"
    assert found["stopped_after"] is None
    assert found["not_reached"] == []
    assert found["reasons"] == ["gate 'final-accuracy' awaits the signed approval of 'ml-lead'"]
    by_name = gates(found)
    assert {n: (g["decision"]["stage"], g["state"]) for n, g in by_name.items()} == {
        "prune-accuracy": ("prune", "passed"),
        "final-accuracy": ("export", "awaiting-approval"),
        "floor": ("export", "passed"),
    }

    # The decisions are the run record's own numbers: the paired difference of accuracies on
    # the same test split is the difference of the two accuracies, and the floor's interval
    # is the Wilson interval of the final variant's accuracy.
    run = record(cli, ws, run_id)
    baseline = metric(run, "baseline", "accuracy")["estimate"]
    for gate, stage in (("prune-accuracy", "prune"), ("final-accuracy", "export")):
        decision = by_name[gate]["decision"]
        paired = metric(run, stage, "paired.accuracy_difference")["estimate"]
        assert decision["estimate"] == paired
        assert decision["estimate"] == pytest.approx(
            metric(run, stage, "accuracy")["estimate"] - baseline, abs=1e-12
        )
        assert decision["threshold"] == -MARGIN
        assert decision["verdict"] == "pass"
        assert decision["ci_low"] > -MARGIN
        assert decision["seeds"][0]["variant_id"] == f"{run_id}/0/{stage}"
    floor = by_name["floor"]["decision"]
    accuracy = metric(run, "export", "accuracy")
    assert accuracy["n"] == floor["n"] == 450
    assert floor["estimate"] == accuracy["estimate"]
    # The evaluator's interval at 2c - 1 (each end a one-sided bound at confidence 0.95).
    wilson = binomtest(round(accuracy["estimate"] * accuracy["n"]), accuracy["n"]).proportion_ci(
        0.9, method="wilson"
    )
    assert floor["ci_low"] == pytest.approx(wilson.low, abs=1e-9)
    assert floor["ci_high"] == pytest.approx(wilson.high, abs=1e-9)
    assert floor["threshold"] == 0.5 < floor["ci_low"]

    export = f"{run_id}/0/export"
    refused = promote(cli, ws, export)
    assert refused.exit_code == 1
    assert f"run {run_id} is awaiting-approval" in refused.stderr

    approved = cli(
        "approve", run_id, "--gate", "final-accuracy", "--key", ws.key("ml-lead"), *store(ws)
    )
    assert approved.exit_code == 0, approved.stderr
    assert f"run {run_id} is now approved" in approved.stdout
    assert signoff_rows(ws, run_id) == [("final-accuracy", "approval", "ml-lead")]
    again = cli(
        "approve", run_id, "--gate", "final-accuracy", "--key", ws.key("ml-lead"), *store(ws)
    )
    assert again.exit_code == 1
    assert "already has an approval by 'ml-lead'" in again.stderr
    unneeded = cli(
        "approve", run_id, "--gate", "prune-accuracy", "--key", ws.key("ml-lead"), *store(ws)
    )
    assert unneeded.exit_code == 1
    assert "needs no approval" in unneeded.stderr
    assert signoff_rows(ws, run_id) == [("final-accuracy", "approval", "ml-lead")]
    code, found = review(cli, ws, run_id)
    assert code == 0
    assert found["status"] == "approved"
    assert found["reasons"] == []
    final = gates(found)["final-accuracy"]
    assert final["state"] == "approved"
    ((signoff,),) = [final["signoffs"]]
    assert (signoff["kind"], signoff["owner"], signoff["counts"]) == ("approval", "ml-lead", True)

    # Approved, but the prune variant was not judged by the gates on the final stage.
    early = promote(cli, ws, f"{run_id}/0/prune")
    assert early.exit_code == 1
    assert "judge a stage after 'prune'" in early.stderr

    promoted = promote(cli, ws, export)
    assert promoted.exit_code == 0, promoted.stderr
    history = cli("alias", "history", "production", *store(ws), "--json")
    assert history.exit_code == 0, history.stderr
    last = json.loads(history.stdout)[-1]
    (final_stage,) = [s for s in submitted["run"]["stages"] if s["name"] == "export"]
    assert (last["action"], last["variant_id"], last["artifact_sha256"]) == (
        "promote",
        export,
        final_stage["artifact_sha256"],
    )


def test_over_aggressive_pruning_is_rejected_after_prune_and_quantize_never_runs(
    ws: Workspace, cli: Invoke
) -> None:
    code, submitted = submit(cli, ws, recipe(ws, "aggressive", sparsity="0.9", rounds="1"))
    found = submitted["review"]
    run_id = submitted["run"]["run_id"]
    assert code == 1
    assert found["status"] == "rejected"
    assert found["run_status"] == submitted["run"]["status"] == "stopped"
    assert found["stopped_after"] == "prune"
    assert found["not_reached"] == ["final-accuracy", "floor"]
    ((gate,),) = [found["gates"]]
    decision = gate["decision"]
    assert (decision["gate"], decision["stage"], decision["verdict"], gate["state"]) == (
        "prune-accuracy",
        "prune",
        "fail",
        "failed",
    )
    run = record(cli, ws, run_id)
    assert run["status"] == "stopped"
    assert "stopped after stage 'prune'" in run["error"]
    assert [s["name"] for s in run["stages"]] == ["baseline", "distill", "prune"]
    assert decision["estimate"] == metric(run, "prune", "paired.accuracy_difference")["estimate"]
    assert decision["threshold"] == -MARGIN
    assert decision["ci_low"] < decision["estimate"] < -2 * MARGIN  # far below, not borderline
    with catalog_db(ws) as db:
        stages = {
            r[0] for r in db.execute("SELECT stage FROM variants WHERE run_id = ?", (run_id,))
        }
    assert stages == {"baseline", "distill", "prune"}

    code, status = review(cli, ws, run_id)
    assert code == 1
    assert status["status"] == "rejected"
    refused = promote(cli, ws, f"{run_id}/0/prune")
    assert refused.exit_code == 1
    assert f"run {run_id} is rejected" in refused.stderr


def test_an_approval_by_a_key_not_the_gate_owners_is_refused_and_records_nothing(
    ws: Workspace, cli: Invoke
) -> None:
    code, submitted = submit(cli, ws, recipe(ws, "good"))
    run_id = submitted["run"]["run_id"]
    assert (code, submitted["review"]["status"]) == (0, "awaiting-approval")
    before = event_count(ws)
    for owner in ("serving", "ml-platform"):
        result = cli(
            "approve", run_id, "--gate", "final-accuracy", "--key", ws.key(owner), *store(ws)
        )
        assert result.exit_code == 3, (owner, result.stdout, result.stderr)
        assert f"signed by '{owner}', but gate 'final-accuracy' belongs to 'ml-lead'" in (
            result.stderr
        )
    assert signoff_rows(ws, run_id) == []
    assert event_count(ws) == before
    code, found = review(cli, ws, run_id)
    assert (code, found["status"]) == (0, "awaiting-approval")
    assert gates(found)["final-accuracy"]["signoffs"] == []


def test_an_approval_envelope_copied_onto_another_run_or_tampered_is_refused(
    ws: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    path = recipe(ws, "good")
    _, first = submit(cli, ws, path)
    run_a = first["run"]["run_id"]
    envelope = tmp_path / "a.json"
    approved = cli(
        "approve",
        run_a,
        "--gate",
        "final-accuracy",
        "--key",
        ws.key("ml-lead"),
        "--out",
        envelope,
        *store(ws),
    )
    assert approved.exit_code == 0, approved.stderr

    code, second = submit(cli, ws, path)
    run_b = second["run"]["run_id"]
    assert (code, second["review"]["status"]) == (0, "awaiting-approval")
    assert run_b != run_a
    # Same recipe, same cached bytes: only the run id tells the two sign-offs apart.
    assert all(s["cached"] for s in second["run"]["stages"])
    assert [s["artifact_sha256"] for s in second["run"]["stages"]] == [
        s["artifact_sha256"] for s in first["run"]["stages"]
    ]

    copied = cli("approve", run_b, "--gate", "final-accuracy", "--envelope", envelope, *store(ws))
    assert copied.exit_code == 3
    assert f"does not belong to gate 'final-accuracy' of run {run_b}" in copied.stderr
    assert f"run_id is '{run_a}'" in copied.stderr

    signed = json.loads(envelope.read_bytes())
    # One flipped bit in the signature.
    sig = bytearray(base64.b64decode(signed["signatures"][0]["sig"]))
    sig[0] ^= 1
    flipped = {
        **signed,
        "signatures": [{**signed["signatures"][0], "sig": base64.b64encode(sig).decode()}],
    }
    # The statement rewritten to name run B: exactly what the signature must catch.
    statement = json.loads(base64.b64decode(signed["payload"]))
    statement["predicate"]["run_id"] = run_b
    forged = {**signed, "payload": base64.b64encode(json.dumps(statement).encode()).decode()}
    for name, tampered in (("flipped", flipped), ("forged", forged)):
        target = tmp_path / f"{name}.json"
        target.write_text(json.dumps(tampered))
        result = cli("approve", run_b, "--gate", "final-accuracy", "--envelope", target, *store(ws))
        assert result.exit_code == 3, (name, result.stdout, result.stderr)
        assert "no signature verifies" in result.stderr, name

    assert signoff_rows(ws, run_b) == []
    code, found = review(cli, ws, run_b)
    assert (code, found["status"]) == (0, "awaiting-approval")


def test_a_waiver_counts_until_it_expires(ws: Workspace, cli: Invoke) -> None:
    code, submitted = submit(cli, ws, recipe(ws, "strict", approval="none", floor="0.99"))
    run_id = submitted["run"]["run_id"]
    found = submitted["review"]
    assert code == 1
    assert found["status"] == "rejected"
    assert found["run_status"] == "succeeded"  # a gate on the last stage stops nothing
    assert found["stopped_after"] is None
    assert {n: g["state"] for n, g in gates(found).items()} == {
        "prune-accuracy": "passed",
        "final-accuracy": "passed",
        "floor": "failed",
    }
    floor = gates(found)["floor"]["decision"]
    assert floor["ci_low"] < floor["threshold"] == 0.99
    # `run` (no review) exits 1 on the failing gate too, with its JSON summary.
    plain = cli("run", ws.root / "strict.yaml", *store(ws), "--json")
    assert plain.exit_code == 1, plain.stderr
    ran = json.loads(plain.stdout)
    assert {d["gate"]: d["verdict"] for d in ran["decisions"]}["floor"] == "fail"

    def sign(command: str, gate: str, owner: str, *extra: str) -> CliResult:
        return cli(command, run_id, "--gate", gate, "--key", ws.key(owner), *extra, *store(ws))

    assert sign("approve", "floor", "serving").exit_code == 1  # a failing gate is waived
    assert sign("waive", "prune-accuracy", "ml-lead", "--reason", "r").exit_code == 1  # passed
    assert sign("waive", "floor", "ml-lead", "--reason", "r").exit_code == 3  # not the owner
    past = sign("waive", "floor", "serving", "--reason", "r", "--expires", "2020-01-01")
    assert past.exit_code == 2
    assert "in the past" in past.stderr
    assert signoff_rows(ws, run_id) == []

    expires = (datetime.now(UTC) + timedelta(seconds=4)).replace(microsecond=0)
    reason = "edge devices accept 70%"
    waived = sign("waive", "floor", "serving", "--reason", reason, "--expires", expires.isoformat())
    assert waived.exit_code == 0, waived.stderr
    assert f"run {run_id} is now approved" in waived.stdout
    code, found = review(cli, ws, run_id)
    assert (code, found["status"]) == (0, "approved")
    gate = gates(found)["floor"]
    ((signoff,),) = [gate["signoffs"]]
    assert gate["state"] == "waived"
    assert (signoff["kind"], signoff["counts"], signoff["reason"]) == ("waiver", True, reason)
    assert datetime.fromisoformat(signoff["expires"]) == expires
    promoted = promote(cli, ws, f"{run_id}/0/export", alias="staging")
    assert promoted.exit_code == 0, promoted.stderr

    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.5)
    code, found = review(cli, ws, run_id)
    assert (code, found["status"]) == (1, "rejected")
    gate = gates(found)["floor"]
    ((signoff,),) = [gate["signoffs"]]
    assert gate["state"] == "failed"
    assert signoff["counts"] is False
    assert "expired" in signoff["problem"]
    refused = promote(cli, ws, f"{run_id}/0/export", alias="canary")
    assert refused.exit_code == 1
    assert f"run {run_id} is rejected" in refused.stderr


def test_review_status_without_a_run_lists_the_newest_runs(ws: Workspace, cli: Invoke) -> None:
    # Runs are listed by run id, which starts with the second the run started in (then random
    # hex): each run starts in a second of its own, so "newest first" is well defined.
    good_recipe = recipe(ws, "good")
    aggressive_recipe = recipe(ws, "aggressive", sparsity="0.9", rounds="1")
    next_second()
    _, good = submit(cli, ws, good_recipe)
    next_second()
    _, aggressive = submit(cli, ws, aggressive_recipe)
    expected = [
        (aggressive["run"]["run_id"], "rejected"),
        (good["run"]["run_id"], "awaiting-approval"),
    ]
    listed = cli("review", "status", *store(ws), "--json")
    assert listed.exit_code == 0, listed.stderr  # a rejected run in the list is not an error
    runs = json.loads(listed.stdout)
    assert isinstance(runs, list)
    assert len(runs) <= 10
    assert [(r["run_id"], r["status"]) for r in runs[:2]] == expected
    assert [r["run_id"] for r in runs] == sorted((r["run_id"] for r in runs), reverse=True)

    newest = cli("review", "status", *store(ws), "--limit", "1", "--json")
    assert newest.exit_code == 0, newest.stderr
    assert [(r["run_id"], r["status"]) for r in json.loads(newest.stdout)] == expected[:1]


def test_a_waiver_whose_expiry_has_no_time_zone_is_refused_and_an_old_one_breaks_nothing(
    ws: Workspace, cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A waiver signed outside compressgate with `expires: "2099-12-31"` (a date, no time zone)
    is refused when recorded (exit 3, nothing written). One recorded before that rule (the
    strict parse switched off here, as the code of then) no longer counts, and every reader
    carries on (`review status`, `report`); `audit verify` names it (exit 3)."""
    from compressgate.gates import signoff
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.kernel.dsse import INTOTO_PAYLOAD_TYPE, sign

    code, submitted = submit(cli, ws, recipe(ws, "naive", approval="none", floor="0.99"))
    run_id = submitted["run"]["run_id"]
    assert (code, submitted["review"]["status"]) == (1, "rejected")
    with Catalog(f"sqlite:///{ws.root / '.cg' / 'catalog.db'}", create=False) as catalog:
        floor = next(d for d in catalog.gate_decisions(run_id) if d.gate == "floor")
        recipe_sha256 = catalog.run_info(run_id).recipe_sha256
    key = load_private_key(ws.key("serving"))
    good = signoff.signoff_envelope(
        floor, key, kind="waiver", recipe_sha256=recipe_sha256, owner="serving", reason="r",
        expires=datetime(2099, 12, 31, tzinfo=UTC),
    )  # fmt: skip
    statement = json.loads(good.payload)
    assert statement["predicate"]["expires"] == "2099-12-31T00:00:00Z"
    statement["predicate"]["expires"] = "2099-12-31"  # what another tool might write
    naive = tmp_path / "naive.json"
    resigned = sign(json.dumps(statement).encode(), INTOTO_PAYLOAD_TYPE, [key])
    naive.write_bytes(resigned.to_json())
    before = event_count(ws)
    refused = cli(
        "waive", run_id, "--gate", "floor", "--reason", "r", "--envelope", naive, *store(ws)
    )
    assert refused.exit_code == 3, refused.stderr
    assert "its expires '2099-12-31' has no time zone" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert event_count(ws) == before and signoff_rows(ws, run_id) == []

    with monkeypatch.context() as patch:  # the code of before: any ISO 8601 text was taken
        patch.setattr(signoff, "_instant", lambda value, *_, **__: value)
        old = cli(
            "waive", run_id, "--gate", "floor", "--reason", "r", "--envelope", naive, *store(ws)
        )
        assert old.exit_code == 0, old.stderr
    assert signoff_rows(ws, run_id) == [("floor", "waiver", "serving")]

    code, found = review(cli, ws, run_id)
    assert (code, found["status"]) == (1, "rejected")
    ((waiver,),) = [gates(found)["floor"]["signoffs"]]
    assert waiver["counts"] is False
    assert "has no time zone" in waiver["problem"]
    for fmt in ("md", "json", "html"):
        rendered = cli("report", run_id, "--format", fmt, "--output", tmp_path / f"r.{fmt}",
                       *store(ws))  # fmt: skip
        assert rendered.exit_code == 0, rendered.stderr
    audited = cli("audit", "verify", "--skip-artifacts", *store(ws))
    assert audited.exit_code == 3
    assert f"waiver {waiver['id'][:12]} of gate 'floor' of run {run_id}" in audited.stderr
    assert "'2099-12-31' is not an instant" in audited.stderr
