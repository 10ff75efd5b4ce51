"""Seeds policies, review states and owners' sign-offs (DSSE), without running a recipe."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from scipy import stats
from securesystemslib.dsse import Envelope as SSlibEnvelope
from securesystemslib.signer import Key  # type: ignore[attr-defined]

from compressgate.evaluators.results import Estimate
from compressgate.gates.review import (
    GateDecision,
    SeedJudgement,
    Signoff,
    decide,
    evidence_digest,
    review,
)
from compressgate.gates.signoff import PREDICATE_TYPE, check_signoff, counting, signoff_envelope
from compressgate.gates.verdicts import judge
from compressgate.recipes.manifest import BoundGate, NonInferiorGate
from compressgate.recipes.trust import Trust, add_owner_key
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.errors import IntegrityError, Refused
from compressgate.registry.kernel.keys import (
    PrivateKey,
    generate_keypair,
    load_private_key,
    public_key_json,
)

RUN = "run-20261123T100000Z-aaaaaa"


def accuracy(value: float, n: int = 450) -> Estimate:
    return Estimate(
        estimate=value,
        ci_low=value - 0.02,
        ci_high=value + 0.015,
        n=n,
        method="wilson",
        higher_is_better=True,
    )


def seeds_of(gate: BoundGate | NonInferiorGate, values: list[float]) -> list[SeedJudgement]:
    out = []
    for seed, value in enumerate(values):
        judged = judge(gate, {gate.metric: accuracy(value)}, {gate.metric: accuracy(0.98)}, {})
        out.append(
            SeedJudgement(
                seed=seed,
                variant_id=f"{RUN}/{seed}/int8",
                artifact_sha256=f"{seed:064x}",
                **judged.model_dump(include=set(SeedJudgement.model_fields) - {"seed"}),
            )
        )
    return out


def bound(policy: str, minimum: float = 0.95, approval: str = "none") -> BoundGate:
    return BoundGate.model_validate(
        {
            "name": "floor",
            "owner": "ml-lead",
            "metric": "accuracy",
            "min": minimum,
            "seeds": policy,
            "approval": approval,
        }
    )


def test_every_seed_must_pass_and_the_failing_seed_is_shown() -> None:
    gate = bound("every")
    values = [0.98, 0.96, 0.97]  # seed 1's lower end 0.94 < 0.95
    decision = decide(gate, RUN, "int8", seeds_of(gate, values), list(map(accuracy, values)), [])
    assert decision.verdict == "fail"
    assert decision.estimate == pytest.approx(0.96)
    assert decision.note.startswith("2/3 seeds pass; seed 1:")
    passing = [0.98, 0.99, 0.975]
    decision = decide(gate, RUN, "int8", seeds_of(gate, passing), list(map(accuracy, passing)), [])
    assert decision.verdict == "pass"
    assert decision.estimate == pytest.approx(0.975)  # the worst seed is the headline


def test_worst_judges_the_seed_with_the_worst_estimate() -> None:
    gate = bound("worst", minimum=0.955)
    values = [0.98, 0.972, 0.99]
    decision = decide(gate, RUN, "int8", seeds_of(gate, values), list(map(accuracy, values)), [])
    assert decision.verdict == "fail"  # 0.972 - 0.02 < 0.955
    assert decision.estimate == pytest.approx(0.972)
    assert "worst seed (1)" in decision.note


def test_mean_judges_the_student_t_interval_of_the_mean() -> None:
    gate = NonInferiorGate(
        name="accuracy", owner="ml-lead", metric="accuracy", margin=0.02, seeds="mean"
    )
    differences = [-0.004, 0.0067, -0.0022]
    per_seed = seeds_of(gate, [0.978, 0.987, 0.978])
    decision = decide(gate, RUN, "int8", per_seed, [None] * 3, [None] * 3, differences)
    values = np.array(differences)
    half = stats.t.ppf(0.95, 2) * values.std(ddof=1) / np.sqrt(3)  # two-sided 90%
    assert decision.ci_low == pytest.approx(values.mean() - half)
    assert decision.ci_high == pytest.approx(values.mean() + half)
    assert decision.verdict == ("pass" if values.mean() - half > -0.02 else "fail")
    assert decision.n == 3
    wide = [-0.03, 0.02, -0.01]
    decision = decide(gate, RUN, "int8", per_seed, [None] * 3, [None] * 3, wide)
    assert decision.verdict == "fail"  # 3 seeds this spread cannot show 2 points


def test_mean_of_a_bound_uses_the_t_interval_at_the_gate_confidence() -> None:
    gate = bound("mean", minimum=0.9)
    values = [0.95, 0.96, 0.97]
    decision = decide(gate, RUN, "int8", seeds_of(gate, values), list(map(accuracy, values)), [])
    # Confidence 0.95 one-sided: the lower end of the two-sided 90% t interval.
    half = stats.t.ppf(0.95, 2) * np.std(values, ddof=1) / np.sqrt(3)
    assert decision.ci_low == pytest.approx(0.96 - half)
    assert decision.verdict == "pass"


def test_the_evidence_digest_covers_the_evidence() -> None:
    gate = bound("every")
    values = [0.98]
    decision = decide(gate, RUN, "int8", seeds_of(gate, values), list(map(accuracy, values)), [])
    assert decision.evidence_sha256 == evidence_digest(decision)
    moved = decision.model_copy(update={"run_id": "run-other"})
    assert evidence_digest(moved) != decision.evidence_sha256
    later = decision.model_copy(update={"decided_at": "2030-01-01T00:00:00Z"})
    assert evidence_digest(later) == decision.evidence_sha256


def a_decision(verdict: str = "pass", approval: str = "none", gate: str = "floor") -> GateDecision:
    minimum = 0.95 if verdict == "pass" else 0.99
    rule = bound("every", minimum=minimum, approval=approval).model_copy(update={"name": gate})
    decision = decide(rule, RUN, "int8", seeds_of(rule, [0.98]), [accuracy(0.98)], [])
    assert decision.verdict == verdict
    return decision


def a_signoff(kind: str, gate: str = "floor", *, counts: bool = True) -> Signoff:
    return Signoff(
        id="e" * 64,
        kind=kind,  # type: ignore[arg-type]
        gate=gate,
        owner="ml-lead",
        keyid="k" * 64,
        verdict="pass" if kind == "approval" else "fail",
        signed_at="2026-11-23T10:00:00Z",
        counts=counts,
    )


@pytest.mark.parametrize(
    ("verdict", "approval", "signoffs", "state", "status"),
    [
        ("pass", "none", [], "passed", "approved"),
        ("pass", "required", [], "awaiting-approval", "awaiting-approval"),
        ("pass", "required", ["approval"], "approved", "approved"),
        ("pass", "required", ["approval-void"], "awaiting-approval", "awaiting-approval"),
        ("fail", "none", [], "failed", "rejected"),
        ("fail", "none", ["waiver"], "waived", "approved"),
        ("fail", "required", ["waiver"], "waived", "approved"),
        ("fail", "none", ["waiver-void"], "failed", "rejected"),
    ],
)
def test_review_states(
    verdict: str, approval: str, signoffs: list[str], state: str, status: str
) -> None:
    made = [a_signoff(s.removesuffix("-void"), counts=not s.endswith("-void")) for s in signoffs]
    found = review(
        run_id=RUN,
        recipe="digits",
        recipe_version=1,
        recipe_sha256="ab" * 32,
        run_status="succeeded",
        stopped_after=None,
        decisions=[a_decision(verdict, approval)],
        signoffs=made,
        gate_names=["floor"],
    )
    assert found.gates[0].state == state
    assert found.status == status
    assert found.exit_code == (1 if status == "rejected" else 0)


def test_a_stopped_or_failed_run_is_rejected_whatever_its_gates_say() -> None:
    common = {
        "run_id": RUN,
        "recipe": "digits",
        "recipe_version": 1,
        "recipe_sha256": "ab" * 32,
        "signoffs": [],
    }
    stopped = review(
        **common,  # type: ignore[arg-type]
        run_status="stopped",
        stopped_after="prune",
        decisions=[a_decision("fail", gate="prune-accuracy")],
        gate_names=["prune-accuracy", "floor"],
    )
    assert stopped.status == "rejected"
    assert stopped.not_reached == ["floor"]
    assert any("stopped after stage 'prune'" in r for r in stopped.reasons)
    failed = review(
        **common,  # type: ignore[arg-type]
        run_status="failed",
        stopped_after=None,
        decisions=[],
        gate_names=["floor"],
    )
    assert failed.status == "rejected"


# --- sign-offs ----------------------------------------------------------------------------------


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Trust, dict[str, PrivateKey]]:
    trust_file = tmp_path / "trust.yaml"
    private = {}
    trust = None
    for owner, role in [
        ("ml-lead", "approver"),
        ("serving", "approver"),
        ("ml-platform", "author"),
    ]:
        path, _, public = generate_keypair(owner, tmp_path / "keys")
        trust = add_owner_key(trust_file, owner, public, (role,))  # type: ignore[arg-type]
        private[owner] = load_private_key(path)
    assert trust is not None
    return trust, private


def test_an_approval_binds_run_gate_verdict_evidence_and_variants(
    keys: tuple[Trust, dict[str, PrivateKey]],
) -> None:
    trust, private = keys
    decision = a_decision("pass", "required")
    envelope = signoff_envelope(
        decision, private["ml-lead"], kind="approval", recipe_sha256="ab" * 32, owner="ml-lead"
    )
    checked = check_signoff(
        envelope, trust=trust, decision=decision, recipe_sha256="ab" * 32, source="a"
    )
    assert (checked.kind, checked.owner, checked.verdict) == ("approval", "ml-lead", "pass")
    assert checked.keyid == private["ml-lead"].public.keyid
    stated = dsse.parse_statement(envelope.payload, source="a")
    assert stated.predicate_type == PREDICATE_TYPE
    assert list(stated.subjects) == decision.subjects()
    assert stated.predicate["run_id"] == RUN
    assert stated.predicate["evidence_sha256"] == decision.evidence_sha256

    other_run = decision.model_copy(update={"run_id": "run-20261124T100000Z-bbbbbb"})
    other_run = other_run.model_copy(update={"evidence_sha256": evidence_digest(other_run)})
    with pytest.raises(IntegrityError, match="does not belong to gate 'floor' of run run-2026112"):
        check_signoff(
            envelope, trust=trust, decision=other_run, recipe_sha256="ab" * 32, source="a"
        )
    redecided = decision.model_copy(update={"evidence_sha256": "0" * 64})
    with pytest.raises(IntegrityError, match="evidence_sha256"):
        check_signoff(
            envelope, trust=trust, decision=redecided, recipe_sha256="ab" * 32, source="a"
        )
    with pytest.raises(IntegrityError, match="recipe_sha256"):
        check_signoff(envelope, trust=trust, decision=decision, recipe_sha256="cd" * 32, source="a")


@pytest.mark.parametrize("signer", ["serving", "ml-platform"])
def test_only_the_gate_owners_approver_key_signs_off(
    keys: tuple[Trust, dict[str, PrivateKey]], signer: str
) -> None:
    trust, private = keys
    decision = a_decision("pass", "required")
    envelope = signoff_envelope(
        decision, private[signer], kind="approval", recipe_sha256="ab" * 32, owner="ml-lead"
    )
    with pytest.raises(IntegrityError, match=f"signed by '{signer}', but gate 'floor' belongs"):
        check_signoff(envelope, trust=trust, decision=decision, recipe_sha256="ab" * 32, source="a")
    stranger = PrivateKey.generate()
    envelope = signoff_envelope(
        decision, stranger, kind="approval", recipe_sha256="ab" * 32, owner="ml-lead"
    )
    with pytest.raises(IntegrityError, match="no signature verifies"):
        check_signoff(envelope, trust=trust, decision=decision, recipe_sha256="ab" * 32, source="a")


def test_a_tampered_signoff_does_not_verify(keys: tuple[Trust, dict[str, PrivateKey]]) -> None:
    trust, private = keys
    decision = a_decision("fail")
    envelope = signoff_envelope(
        decision,
        private["ml-lead"],
        kind="waiver",
        recipe_sha256="ab" * 32,
        owner="ml-lead",
        reason="accepted for the pilot",
    )
    body = json.loads(envelope.payload)
    body["predicate"]["reason"] = "something else"
    forged = dsse.Envelope(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode(),
        envelope.payload_type,
        envelope.signatures,
    )
    with pytest.raises(IntegrityError, match="no signature verifies"):
        check_signoff(forged, trust=trust, decision=decision, recipe_sha256="ab" * 32, source="a")


def test_approving_a_failure_or_waiving_a_pass_is_refused(
    keys: tuple[Trust, dict[str, PrivateKey]],
) -> None:
    _, private = keys
    with pytest.raises(Refused, match="a failing gate is not approved"):
        signoff_envelope(
            a_decision("fail"), private["ml-lead"], kind="approval", recipe_sha256="", owner="x"
        )
    with pytest.raises(Refused, match="nothing to waive"):
        signoff_envelope(
            a_decision("pass"), private["ml-lead"], kind="waiver", recipe_sha256="", owner="x"
        )
    with pytest.raises(Refused, match="needs a reason"):
        signoff_envelope(
            a_decision("fail"), private["ml-lead"], kind="waiver", recipe_sha256="", owner="x"
        )


def test_a_waiver_stops_counting_at_its_expiry(keys: tuple[Trust, dict[str, PrivateKey]]) -> None:
    trust, private = keys
    decision = a_decision("fail")
    now = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
    envelope = signoff_envelope(
        decision,
        private["ml-lead"],
        kind="waiver",
        recipe_sha256="ab" * 32,
        owner="ml-lead",
        reason="pilot",
        expires=now + timedelta(days=7),
        signed_at=now,
    )
    checked = check_signoff(
        envelope, trust=trust, decision=decision, recipe_sha256="ab" * 32, source="a"
    )
    assert checked.expires == "2026-11-30T12:00:00Z"
    assert counting(checked, now + timedelta(days=6, hours=23)).counts
    expired = counting(checked, now + timedelta(days=7))
    assert not expired.counts
    assert expired.problem == "expired at 2026-11-30T12:00:00Z"


def test_an_outsider_verifies_a_signoff_with_securesystemslib(
    keys: tuple[Trust, dict[str, PrivateKey]],
) -> None:
    _, private = keys
    decision = a_decision("pass", "required")
    envelope = signoff_envelope(
        decision, private["ml-lead"], kind="approval", recipe_sha256="ab" * 32, owner="ml-lead"
    )
    data = json.loads(public_key_json(private["ml-lead"].public))
    key = Key.from_dict(data.pop("keyid"), data)
    outside = SSlibEnvelope.from_dict(json.loads(envelope.to_json()))
    assert set(outside.verify([key], 1)) == {key.keyid}
