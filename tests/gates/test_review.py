"""Seeds policies, review states and owners' sign-offs (DSSE), without running a recipe."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydantic import TypeAdapter
from scipy import optimize, stats
from securesystemslib.dsse import Envelope as SSlibEnvelope
from securesystemslib.signer import Key  # type: ignore[attr-defined]

from compressgate.evaluators.paired import tango_interval
from compressgate.evaluators.results import Estimate
from compressgate.evaluators.seeds import _null_variance, crossed_mean
from compressgate.gates.noninferiority import exact_alpha
from compressgate.gates.review import (
    GateDecision,
    ReviewStatus,
    SeedJudgement,
    SeedSamples,
    Signoff,
    decide,
    evidence_digest,
    review,
)
from compressgate.gates.signoff import PREDICATE_TYPE, check_signoff, counting, signoff_envelope
from compressgate.gates.verdicts import judge
from compressgate.recipes.manifest import BoundGate, GateSpec, NonInferiorGate, mean_supported
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


def test_judging_1_mean_judges_the_student_t_interval_of_the_mean() -> None:
    gate = NonInferiorGate(
        name="accuracy", owner="ml-lead", metric="accuracy", margin=0.02, seeds="mean"
    )
    differences = [-0.004, 0.0067, -0.0022]
    per_seed = seeds_of(gate, [0.978, 0.987, 0.978])
    decision = decide(gate, RUN, "int8", per_seed, [None] * 3, [None] * 3, differences, judging=1)
    values = np.array(differences)
    half = stats.t.ppf(0.95, 2) * values.std(ddof=1) / np.sqrt(3)  # two-sided 90%
    assert decision.ci_low == pytest.approx(values.mean() - half)
    assert decision.ci_high == pytest.approx(values.mean() + half)
    assert decision.verdict == ("pass" if values.mean() - half > -0.02 else "fail")
    assert decision.n == 3
    wide = [-0.03, 0.02, -0.01]
    decision = decide(gate, RUN, "int8", per_seed, [None] * 3, [None] * 3, wide, judging=1)
    assert decision.verdict == "fail"  # 3 seeds this spread cannot show 2 points


def test_judging_1_mean_of_a_bound_uses_the_t_interval_at_the_gate_confidence() -> None:
    gate = bound("mean", minimum=0.9)
    values = [0.95, 0.96, 0.97]
    per_seed = seeds_of(gate, values)
    decision = decide(gate, RUN, "int8", per_seed, list(map(accuracy, values)), [], judging=1)
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


# --- `mean` on per-sample evidence (issue 23) ----------------------------------------------------


def non_inferior_mean(margin: float = 0.02) -> NonInferiorGate:
    return NonInferiorGate(
        name="accuracy", owner="ml-lead", metric="accuracy", margin=margin, seeds="mean"
    )


def samples_of(
    baseline: np.ndarray, candidate: np.ndarray, ids: np.ndarray | None = None
) -> SeedSamples:
    """One seed's evidence from its correctness vectors: labels 0, right predicts the label."""
    labels = [0] * len(baseline)
    return SeedSamples(
        labels=labels,
        candidate=[0 if right else 1 for right in candidate],
        baseline=[0 if right else 1 for right in baseline],
        ids=None if ids is None else [int(i) for i in ids],
    )


def counts_vectors(b: int, c: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of a baseline and a candidate with b baseline-only, c candidate-only right."""
    base = np.ones(n, dtype=bool)
    cand = np.ones(n, dtype=bool)
    cand[:b] = False
    base[b : b + c] = False
    return base, cand


def mean_decision(
    gate: NonInferiorGate | BoundGate,
    samples: list[SeedSamples],
    judging: int | None = None,
) -> GateDecision:
    per_sample = [
        (np.mean(np.equal(s.candidate, s.labels)), np.mean(np.equal(s.baseline, s.labels)))
        for s in samples
    ]
    differences = [float(c - b) for c, b in per_sample]
    per_seed = seeds_of(gate, [float(c) for c, _ in per_sample])
    candidates = [accuracy(float(c)) for c, _ in per_sample]
    extra = {} if judging is None else {"judging": judging}
    return decide(
        gate, RUN, "int8", per_seed, candidates, candidates, differences, None, samples, **extra
    )


def test_mean_of_seeds_that_agree_on_one_split_is_tangos_interval_not_zero_width() -> None:
    # Three seeds giving the same model: a t interval over them has zero width and passed
    # whenever the estimate did; the test samples they share still vary.
    base, cand = counts_vectors(9, 3, 450)  # difference -6/450 = -0.0133
    samples = [samples_of(base, cand)] * 3
    decision = mean_decision(non_inferior_mean(), samples)
    # at the level holding Tango's exact size on 450 samples (gates.noninferiority)
    low, high = tango_interval(9, 3, 450, 1 - 2 * exact_alpha(450, 0.02, 0.05))
    assert decision.ci_low == pytest.approx(low, abs=1e-9)
    assert decision.ci_high == pytest.approx(high, abs=1e-9)
    assert decision.estimate == pytest.approx(-6 / 450)
    assert decision.verdict == "fail"  # Tango's lower end -0.028 < -0.02
    before = mean_decision(non_inferior_mean(), samples, judging=1)
    assert before.ci_low == before.ci_high == pytest.approx(-6 / 450)
    assert before.verdict == "pass"


def test_mean_on_one_split_counts_both_the_seeds_and_the_shared_samples() -> None:
    # Hand-worked two-way layout: the bound's half-width at the bound solves
    # (estimate - δ)² = (t²_{k-1} MS_seeds + z² max(k Var_δ - MS_residual, 0)) / (n k).
    rng = np.random.default_rng(3)
    n, k = 300, 4
    kind = rng.choice(3, size=n, p=[0.9, 0.07, 0.03])
    rows = []
    for rho in (0.3, 0.5, 0.6, 0.8):
        flip = rng.random(n) < rho
        base = kind != 2
        cand = np.where(kind == 1, ~flip, np.where(kind == 2, flip, True))
        rows.append((base, cand))
    x = np.stack([c.astype(float) - b.astype(float) for b, c in rows])
    result = crossed_mean(x, 0.9, lowest=-1.0, highest=1.0)
    seed_means, sample_means, grand = x.mean(axis=1), x.mean(axis=0), x.mean()
    ss_seeds = n * np.sum((seed_means - grand) ** 2)
    ss_samples = k * np.sum((sample_means - grand) ** 2)
    ss_residual = np.sum((x - grand) ** 2) - ss_seeds - ss_samples  # SS_total's decomposition
    assert result.seed_ms == pytest.approx(ss_seeds / (k - 1))
    assert result.residual_ms == pytest.approx(ss_residual / ((k - 1) * (n - 1)))
    assert result.seed_term  # these seeds differ (ρ from 0.3 to 0.8)
    delta = result.ci_low
    values, counts = np.unique(sample_means, return_counts=True)
    variance = constrained_variance(values, counts, delta)
    t, z = stats.t.ppf(0.95, k - 1), stats.norm.ppf(0.95)
    half2 = (t**2 * result.seed_ms + z**2 * max(k * variance - result.residual_ms, 0)) / (n * k)
    assert (grand - delta) ** 2 == pytest.approx(half2, rel=1e-6)
    samples = [samples_of(b, c) for b, c in rows]
    decision = mean_decision(non_inferior_mean(0.05), samples)
    # judged at the level holding Tango's exact size on 300 samples at margin 0.05
    judged = crossed_mean(x, 1 - 2 * exact_alpha(n, 0.05, 0.05), lowest=-1.0, highest=1.0)
    assert decision.ci_low == pytest.approx(judged.ci_low)
    assert decision.verdict == ("pass" if judged.ci_low > -0.05 else "fail")
    assert "4 seeds crossed with 300 shared test samples" in decision.note


def constrained_variance(values: np.ndarray, counts: np.ndarray, mean: float) -> float:
    """The variance of the maximum-likelihood multinomial on `values` and the ends -1 and 1
    (counts 0 there) whose mean is `mean`: by a general constrained optimiser (scipy's
    trust-constr), not the dual solution `crossed_mean` uses."""
    support = np.union1d(values, [-1.0, 1.0])
    seen = np.zeros(len(support))
    seen[np.searchsorted(support, values)] = counts

    def loss(p: np.ndarray) -> float:
        return -float(seen @ np.log(np.maximum(p, 1e-300)))

    # trust-constr's quasi-Newton update warns where the objective is flat (a count of 0).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        found = optimize.minimize(
            loss,
            (seen + 1) / (seen.sum() + len(seen)),
            method="trust-constr",
            bounds=optimize.Bounds(1e-12, 1.0),
            constraints=[
                optimize.LinearConstraint(
                    np.stack([np.ones_like(support), support]), [1.0, mean], [1.0, mean]
                )
            ],
            options={"gtol": 1e-12, "xtol": 1e-14, "maxiter": 5000},
        )
    return float(found.x @ (support - mean) ** 2)


@pytest.mark.parametrize("delta", [-0.2, -0.05, -0.01, 0.0, 0.3])
def test_the_samples_score_variance_is_the_constrained_maximum_likelihood(delta: float) -> None:
    values = np.array([-1.0, -1 / 3, 0.0, 1 / 3, 2 / 3])
    counts = np.array([3, 5, 400, 9, 2])
    expected = constrained_variance(values, counts, delta)
    found = _null_variance(values, counts.astype(float), delta, -1.0, 1.0)
    assert found == pytest.approx(expected, rel=1e-5)


def test_where_the_values_cannot_reach_the_mean_the_rest_sits_at_the_end() -> None:
    # Every per-sample value 0: a mean δ < 0 needs mass -δ at -1 (Tango's b = c = 0 case).
    found = _null_variance(np.array([0.0]), np.array([450.0]), -0.01, -1.0, 1.0)
    assert found == pytest.approx(0.01 - 0.01**2)


def test_mean_on_disjoint_splits_fails_saying_why() -> None:
    # Disjoint test splits (by the loader's ids): independent estimates, but too few for a t
    # interval to keep its level when a seed's variance grows with its loss.
    layouts = [(12, 3), (8, 6), (10, 2)]
    samples = []
    for seed, (b, c) in enumerate(layouts):
        base, cand = counts_vectors(b, c, 450)
        samples.append(samples_of(base, cand, np.arange(seed * 450, (seed + 1) * 450)))
    decision = mean_decision(non_inferior_mean(), samples)
    assert decision.verdict == "fail"
    assert "disjoint" in decision.note and "test_seed" in decision.note


@pytest.mark.parametrize(
    ("ids", "why"),
    [
        ([np.arange(0, 450), np.arange(200, 650)], "overlap in part"),
        ([np.arange(0, 450), None], "some seeds only"),
    ],
)
def test_mean_on_splits_that_overlap_in_part_fails_saying_so(
    ids: list[np.ndarray | None], why: str
) -> None:
    base, cand = counts_vectors(3, 3, 450)
    samples = [samples_of(base, cand, i) for i in ids]
    decision = mean_decision(non_inferior_mean(), samples)
    assert decision.verdict == "fail"
    assert why in decision.note


def test_mean_on_differing_splits_without_ids_fails_saying_so() -> None:
    base, cand = counts_vectors(3, 3, 450)
    other = samples_of(base, cand)
    other = SeedSamples(
        labels=[1, *other.labels[1:]], candidate=other.candidate, baseline=other.baseline
    )
    decision = mean_decision(non_inferior_mean(), [samples_of(base, cand), other])
    assert decision.verdict == "fail"
    assert "no sample ids" in decision.note


def test_mean_without_per_sample_evidence_fails_saying_so() -> None:
    gate = non_inferior_mean()
    per_seed = seeds_of(gate, [0.98, 0.98])
    candidates = [accuracy(0.98)] * 2
    decision = decide(gate, RUN, "int8", per_seed, candidates, candidates, [0.0, 0.0])
    assert decision.verdict == "fail"
    assert "per-sample evidence" in decision.note


def test_mean_of_a_bound_on_accuracy_reads_the_crossed_interval_of_the_accuracy() -> None:
    rng = np.random.default_rng(8)
    right = [rng.random(450) < p for p in (0.93, 0.95, 0.96)]
    samples = [samples_of(np.ones(450, dtype=bool), r) for r in right]
    gate = bound("mean", minimum=0.9)
    decision = mean_decision(gate, samples)
    x = np.stack([r.astype(float) for r in right])
    expected = crossed_mean(x, 0.9, lowest=0.0, highest=1.0)
    assert decision.ci_low == pytest.approx(expected.ci_low)
    assert decision.ci_high == pytest.approx(expected.ci_high)
    assert decision.verdict == ("pass" if expected.ci_low >= 0.9 else "fail")


def test_mean_of_sizes_needs_no_samples() -> None:
    gate = BoundGate.model_validate(
        {"name": "small", "owner": "o", "metric": "size.bytes", "max": 1e6, "seeds": "mean"}
    )
    sizes = [Estimate.exact(5e5, unit="B", higher_is_better=False)] * 3
    per_seed = [
        SeedJudgement(
            seed=s,
            variant_id=f"{RUN}/{s}/int8",
            artifact_sha256=f"{s:064x}",
            **judge(gate, {"size.bytes": sizes[s]}, {}, {}).model_dump(),
        )
        for s in range(3)
    ]
    decision = decide(gate, RUN, "int8", per_seed, sizes, sizes)
    assert decision.verdict == "pass"
    assert decision.ci_low == decision.ci_high == 5e5


@pytest.mark.parametrize(
    ("metric", "rule", "refused"),
    [
        ("accuracy", {"rule": "non_inferior", "margin": 0.02}, False),
        ("accuracy", {"rule": "bound", "min": 0.9}, False),
        ("size.bytes", {"rule": "bound", "max": 1e6}, False),
        ("calibration.ece", {"rule": "bound", "max": 0.05}, True),
        ("calibration.ece", {"rule": "bound", "max": 0.05, "basis": "estimate"}, False),
        ("fairness.worst_group_accuracy_drop", {"rule": "bound", "max": 0.05}, True),
    ],
)
def test_validation_refuses_mean_where_no_per_sample_evidence_is_recorded(
    metric: str, rule: dict[str, object], refused: bool
) -> None:
    gate = TypeAdapter(GateSpec).validate_python(
        {"name": "g", "owner": "o", "metric": metric, "seeds": "mean", **rule}
    )
    why = mean_supported(gate)
    assert (why is not None) == refused
    if refused:
        assert "use 'every' or 'worst'" in str(why)


# --- promotion by seed ---------------------------------------------------------------------------


def status_of(gate: BoundGate, values: list[float], state_signoffs: list[Signoff]) -> ReviewStatus:
    decision = decide(gate, RUN, "int8", seeds_of(gate, values), list(map(accuracy, values)), [])
    return review(
        run_id=RUN,
        recipe="r",
        recipe_version=1,
        recipe_sha256="0" * 64,
        run_status="succeeded",
        stopped_after=None,
        decisions=[decision],
        signoffs=state_signoffs,
    )


def test_a_seed_that_failed_on_its_own_is_not_promoted_unless_the_gate_says_run() -> None:
    from compressgate.registry.governance.aliases import _failed_seed

    values = [0.99, 0.95, 0.99]  # seed 1 under 0.955 on its own; their mean 0.977 is not

    def floor(**more: object) -> BoundGate:
        rule = {"basis": "estimate", "seeds": "mean", **more}
        return BoundGate.model_validate({**bound("mean", minimum=0.955).model_dump(), **rule})

    seeded = status_of(floor(), values, [])
    assert seeded.status == "approved"
    assert [s.verdict for s in seeded.gates[0].decision.seeds] == ["pass", "fail", "pass"]
    assert _failed_seed(seeded, 1) == "'floor' (mean)"
    assert _failed_seed(seeded, 0) == _failed_seed(seeded, 2) == ""
    assert _failed_seed(status_of(floor(promotion="run"), values, []), 1) == ""
    every = status_of(floor(seeds="every"), values, [])
    assert every.status == "rejected"  # `every` fails the run itself
