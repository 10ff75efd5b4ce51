"""A catalog under a signed trust policy, end to end through the CLI (issue 21): an attested
run, approvals, a signed release, a report naming runner, policy and evidence, a key rotated
out of the policy without voiding what it signed, and an audit that checks meaning."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from compressgate.recipes.trust import add_owner_key, set_root_threshold
from compressgate.registry.kernel.keys import generate_keypair
from tests.helpers.harden.common import TINY, Bench, make_bench
from tests.helpers.workspace import Invoke

pytestmark = pytest.mark.slow

GATES = """\
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.05,
     approval: required}
  - {name: strict, owner: ml-lead, metric: accuracy, rule: bound, min: 0.999}
"""


def governed(cli: Invoke, tmp_path: Path) -> tuple[Bench, tuple[str, Path]]:
    """The digits example under a policy of two root owners (threshold 2): ml-platform
    authors, ci runs, ml-lead approves, serving releases."""
    bench = make_bench(tmp_path)  # ml-platform (author), ml-lead (approver), serving (releaser)
    for owner, role in [("ci", "runner"), ("root-a", "root"), ("root-b", "root")]:
        _, _, public = generate_keypair(owner, bench.keys)
        add_owner_key(bench.trust, owner, public, (role,))  # type: ignore[arg-type]
    set_root_threshold(bench.trust, 2)
    ws = ("--workspace", bench.workspace)
    roots = ("--key", bench.key("root-a"), "--key", bench.key("root-b"))
    assert cli("trust", "init", bench.trust, *roots, *ws).exit_code == 0
    return bench, ws


def test_a_governed_run_from_policy_to_report_survives_a_key_rotation(
    cli: Invoke, tmp_path: Path
) -> None:
    bench, ws = governed(cli, tmp_path)

    body = TINY.replace("NAME", "governed").replace("SEED", "0")
    recipe = bench.recipe("governed", text=body.partition("gates:\n")[0] + GATES)
    submitted = cli("submit", recipe, "--key", bench.key("ci"), *ws, "--json")
    assert submitted.exit_code == 1, submitted.stderr  # the strict gate fails: rejected
    run = json.loads(submitted.stdout)["run"]["run_id"]
    approved = cli("approve", run, "--gate", "accuracy", "--key", bench.key("ml-lead"), *ws)
    assert approved.exit_code == 0, approved.stderr
    waived = cli("waive", run, "--gate", "strict", "--key", bench.key("ml-lead"), "--reason",
                 "audit RAI-7 accepts it", "--expires", "2099-01-31", *ws)  # fmt: skip
    assert waived.exit_code == 0, waived.stderr
    promoted = cli("promote", f"{run}/0/export", "--alias", "production",
                   "--key", bench.key("serving"), *ws)  # fmt: skip
    assert promoted.exit_code == 0, promoted.stderr
    assert "by serving (signed, key" in promoted.stdout

    report = json.loads(cli("report", run, "--format", "json", *ws).stdout)
    governance = report["governance"]
    assert (governance["regime"], governance["policy_version"]) == ("policy", 1)
    assert (governance["runner"], governance["attested"]) == ("ci", True)
    assert governance["packages"]["torch"].startswith("2.")
    md = cli("report", run, "--format", "md", *ws).stdout
    assert "Runner: ci (key" in md and "attested by ci under policy v1" in md
    assert "waiver of gate strict by ml-lead" in md
    assert "until 2099-02-01T00:00:00Z: audit RAI-7 accepts it" in md
    evidence = {
        g["decision"]["gate"]: g["decision"]["evidence_sha256"] for g in report["review"]["gates"]
    }
    assert f"binds evidence `{evidence['accuracy'][:16]}…`" in md

    # ml-lead's key leaves the policy (v2 gives ml-lead a new key): what it signed under v1
    # still counts, so the run stays approved and production can be rolled back to it.
    v2 = tmp_path / "v2.yaml"
    shutil.copy(bench.trust, v2)
    data = yaml.safe_load(v2.read_text())
    _, _, fresh = generate_keypair("ml-lead-2026", bench.keys)
    data["owners"]["ml-lead"]["keys"] = [
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": fresh.public_hex}}
    ]
    v2.write_text(yaml.safe_dump(data, sort_keys=False))
    for root in ("root-a", "root-b"):
        assert cli("trust", "sign", v2, "--key", bench.key(root), *ws).exit_code == 0
    assert cli("trust", "apply", v2, *ws).exit_code == 0
    shown = json.loads(cli("review", "status", run, *ws, "--json").stdout)
    assert shown["status"] == "approved"
    again = cli("submit", recipe, "--key", bench.key("ci"), "--force", *ws, "--json")
    second = json.loads(again.stdout)["run"]["run_id"]
    assert cli("approve", second, "--gate", "accuracy", "--key", bench.key("ml-lead-2026"),
               *ws).exit_code == 0  # fmt: skip
    assert cli("waive", second, "--gate", "strict", "--key", bench.key("ml-lead-2026"),
               "--reason", "again", *ws).exit_code == 0  # fmt: skip
    assert cli("promote", f"{second}/0/export", "--alias", "production",
               "--key", bench.key("serving"), *ws).exit_code == 0  # fmt: skip
    rolled = cli("rollback", "production", "--key", bench.key("serving"), *ws)
    assert rolled.exit_code == 0, rolled.stderr
    assert f"-> {run}/0/export" in rolled.stdout

    audited = cli("audit", "verify", *ws, "--json")
    assert audited.exit_code == 0, audited.stderr
    meaning = json.loads(audited.stdout)["meaning"]
    assert (meaning["regime"], meaning["policy_version"], meaning["policies"]) == ("policy", 2, 2)
    assert (meaning["attestations"], meaning["releases"], meaning["signoffs"]) == (2, 3, 4)
    assert meaning["unattested_runs"] == 0


STOPPING = """\
gates:
  - {name: early, owner: ml-lead, metric: accuracy, rule: bound, min: 0.999, after: prune}
  - {name: final, owner: ml-lead, metric: accuracy, rule: bound, min: 0.05}
"""


def test_a_waived_gate_that_stopped_the_pipeline_lets_the_run_resume(
    cli: Invoke, tmp_path: Path
) -> None:
    bench = make_bench(tmp_path)  # the unsigned regime: resume works there too
    ws = ("--workspace", bench.workspace)
    body = TINY.replace("NAME", "stops").replace("SEED", "0")
    recipe = bench.recipe("stops", text=body.partition("gates:\n")[0] + STOPPING)
    first = json.loads(cli("submit", recipe, *ws, "--json").stdout)
    stopped = first["run"]["run_id"]
    assert first["review"]["stopped_after"] == "prune"
    assert first["review"]["not_reached"] == ["final"]
    refused = cli("resume", stopped, *ws)
    assert refused.exit_code == 1
    assert "gate(s) early failed and are not waived" in refused.stderr
    waived = cli("waive", stopped, "--gate", "early", "--key", bench.key("ml-lead"),
                 "--reason", "prune accuracy reviewed by hand", *ws)  # fmt: skip
    assert waived.exit_code == 0, waived.stderr

    resumed = cli("resume", stopped, *ws, "--json")
    assert resumed.exit_code == 0, resumed.stderr
    result = json.loads(resumed.stdout)
    run = result["run"]
    assert run["status"] == "succeeded"
    assert [s["name"] for s in run["stages"]] == ["baseline", "prune", "int8", "export"]
    assert [s["cached"] for s in run["stages"]][:2] == [True, True]  # up to the waived gate
    review = result["review"]
    assert review["status"] == "approved"
    states = {g["decision"]["gate"]: g["state"] for g in review["gates"]}
    assert states == {"early": "waived", "final": "passed"}
    [carried] = next(g for g in review["gates"] if g["decision"]["gate"] == "early")["signoffs"]
    assert (carried["carried_from"], carried["counts"]) == (stopped, True)
    md = cli("report", run["run_id"], "--format", "md", *ws).stdout
    assert f"carried from the stopped run `{stopped}`" in md
    again = cli("resume", run["run_id"], *ws)
    assert again.exit_code == 1 and "not stopped" in again.stderr


def test_run_attestations_bind_the_stored_metrics_and_older_ones_still_verify(
    cli: Invoke, tmp_path: Path
) -> None:
    """A run/v2 attestation binds each variant's metrics document as the catalog stores it (so
    an audit hashes the text and parses none of it); a run/v1 one, which bound the metrics'
    full JSON, still verifies, from the full record and from the stored documents alike."""
    from compressgate.registry import Workspace
    from compressgate.registry.catalog.chain import sha
    from compressgate.registry.governance import attestation as att
    from compressgate.registry.governance.evidence import StoredRun
    from compressgate.registry.kernel.dsse import INTOTO_PAYLOAD_TYPE, Envelope, sign, statement
    from compressgate.registry.kernel.keys import load_private_key

    bench, ws = governed(cli, tmp_path)
    recipe = bench.recipe("attested")
    ran = cli("run", recipe, "--key", bench.key("ci"), *ws, "--json")
    assert ran.exit_code == 0, ran.stderr
    run_id = json.loads(ran.stdout)["run_id"]

    with Workspace(bench.workspace) as workspace:
        catalog = workspace.catalog()
        record, decisions = catalog.run(run_id), catalog.gate_decisions(run_id)
        info, policy = catalog.run_info(run_id), workspace.policy_chain().current
        assert policy is not None
        found = catalog.attestations([run_id])[run_id]
        envelope = Envelope.from_json(found.envelope.encode(), source="attestation")
        signed = json.loads(envelope.payload)
        assert signed["predicateType"] == "https://compressgate.dev/run/v2"
        with catalog.engine.connect() as conn:
            query = "SELECT id, metrics FROM variants WHERE run_id = ?"
            stored = dict(conn.exec_driver_sql(query, (run_id,)).all())
        assert signed["predicate"]["evidence"] == {vid: sha(text) for vid, text in stored.items()}

        light = StoredRun(catalog, catalog.run_evidence([run_id], ("paired",))[run_id])
        for full, read in zip(record.stages, light.stages, strict=True):
            assert read.full_sha256() == att.metrics_digest(full.metrics)
            assert read.stored_sha256 == att.stored_digest(full.metrics)

        subjects, claims = att._claims(
            record, decisions, info.environment_sha256, info.lock_sha256, att.RUN_V1
        )
        head = catalog.head()
        predicate = {
            **claims,
            "runner": "ci",
            "policy": {"version": policy.version, "sha256": policy.sha256},
            "catalog_head": {"size": head.size, "sha256": head.sha256},
        }
        older = sign(
            statement(subjects, att.RUN_V1, predicate),
            INTOTO_PAYLOAD_TYPE,
            [load_private_key(bench.key("ci"))],
        )
        for shown in (record, light):
            done = att.check_attestation(
                older,
                trust=policy.trust,
                policy_version=policy.version,
                record=shown,
                decisions=decisions,
                environment_sha256=info.environment_sha256,
                lock_sha256=info.lock_sha256,
                source="a run/v1 attestation",
            )
            assert (done.owner, done.head_size) == ("ci", head.size)

    # The meaning checks over many runs go to worker processes: the same report there, and an
    # edit written around compressgate (the chain recomputed) found there too, with its class.
    from compressgate.registry.governance import meaning
    from compressgate.registry.kernel.errors import IntegrityError
    from tests.helpers.harden.insider import rewrite

    with Workspace(bench.workspace) as workspace:
        chain, store = workspace.policy_chain(), workspace.store
        inline = meaning.verify_meaning(workspace.catalog(), store, chain)
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(meaning, "_PARALLEL_FROM", 1)
            assert meaning.verify_meaning(workspace.catalog(), store, chain) == inline
        assert inline.decisions == len(decisions) and inline.attestations == 1
    decision = decisions[0]
    rewrite(
        bench.workspace / "catalog.db",
        "gate_verdicts",
        "id",
        f"{run_id}/{decision.gate}",
        {"estimate": decision.estimate + 0.01},
    )
    with Workspace(bench.workspace) as workspace, pytest.MonkeyPatch.context() as patch:
        patch.setattr(meaning, "_PARALLEL_FROM", 1)
        with pytest.raises(IntegrityError, match="does not follow from its evidence"):
            meaning.verify_meaning(workspace.catalog(), workspace.store, workspace.policy_chain())
