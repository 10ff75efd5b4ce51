"""From per-seed judgements to one decision per gate, and from decisions and sign-offs to a
review status.

A gate is judged on every seed (`compressgate.gates.verdicts.judge`); its seeds policy makes one
verdict of
them:

- `every`: the gate passes when every seed passes; the decision shows the first failing seed,
  else the seed with the worst estimate.
- `worst`: the seed with the worst estimate (by the metric's direction) is judged.
- `mean`: the rule judges the interval of the mean over the seeds, at the gate's confidence.
  On accuracy (`non_inferior`, `bound`, absolute `relative`) it is measured from the recorded
  per-sample evidence (each seed's test labels, the candidate's and the baseline's
  predictions): when the seeds share one test split, seeds and test samples are crossed random
  factors (`compressgate.evaluators.seeds.crossed_mean`), so that the test-sample variance they
  all share is counted. Other splits fail the gate, saying why: disjoint ones (by the loader's
  sample ids) make the seeds' estimates independent, but a t interval over 3-5 of them was
  liberal in simulation (6-7% for 5%); a partial or unknown overlap has no valid interval
  here. Metrics without sampling error (sizes) take the mean over the seeds (a t interval
  where they differ), `basis: estimate` the mean of the estimates. Other metrics record no
  per-sample evidence: validation refuses `mean` on them.

The review status of a run follows from its gate decisions and its owners' sign-offs:

| decision | approval | sign-off | gate state |
|---|---|---|---|
| pass | none | — | passed |
| pass | required | none valid | awaiting-approval |
| pass | required | a valid approval | approved |
| fail | — | a valid, unexpired waiver | waived |
| fail | — | none valid | failed |

A run is `rejected` when it did not finish, was stopped by a gate, or has a failed gate;
`awaiting-approval` when a gate waits for its owner; `approved` otherwise.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from compressgate.evaluators.results import Estimate
from compressgate.gates.verdicts import JUDGING, Judgement, Verdict, judge
from compressgate.recipes.evaluation import comparison
from compressgate.recipes.manifest import (
    BoundGate,
    GateSpec,
    NonInferiorGate,
    RelativeGate,
    mean_supported,
)

GateState = Literal["passed", "failed", "waived", "awaiting-approval", "approved"]
RunReview = Literal["rejected", "awaiting-approval", "approved"]
SignoffKind = Literal["approval", "waiver"]


class SeedJudgement(Judgement):
    """One seed's judgement of a gate, on the variant the gate names for that seed."""

    seed: int
    variant_id: str
    artifact_sha256: str


@dataclass(frozen=True)
class SeedSamples:
    """One seed's per-sample evidence of a stage, what `mean` judges jointly across seeds: the
    test labels, the candidate's and the seed's baseline's predictions, the loader's sample ids
    (None when it gives none)."""

    labels: Sequence[int]
    candidate: Sequence[int]
    baseline: Sequence[int]
    ids: Sequence[int] | None = None


class GateDecision(BaseModel):
    """One gate of one run: the evidence, the rule's threshold and the verdict, with its owner."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    run_id: str
    gate: str
    owner: str
    metric: str
    stage: str
    rule: dict[str, Any] = Field(description="the gate as the recipe declares it")
    policy: str = Field(description="the seeds policy: every, mean or worst")
    approval: Literal["none", "required"]
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    threshold: float | None
    pvalue: float | None = None
    verdict: Verdict
    note: str
    seeds: list[SeedJudgement]
    power: dict[str, Any] | None = Field(
        default=None, description="the power check of the gate at the run's sample sizes"
    )
    evidence_sha256: str = ""
    decided_at: str = ""

    def subjects(self) -> list[tuple[str, str]]:
        """The judged variants as (variant id, artifact sha256): what a sign-off binds."""
        return [(s.variant_id, s.artifact_sha256) for s in self.seeds]

    def interval(self) -> str:
        if self.ci_low is None and self.ci_high is None:
            return ""
        low = "" if self.ci_low is None else f"{self.ci_low:.4g}"
        high = "" if self.ci_high is None else f"{self.ci_high:.4g}"
        return f"[{low}, {high}]"


def evidence_digest(decision: GateDecision) -> str:
    """sha256 of the decision's evidence: everything but the digest and the decision time."""
    body = decision.model_dump(mode="json", exclude={"evidence_sha256", "decided_at"})
    text = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class Signoff(BaseModel):
    """An owner's signed approval or waiver of one gate of one run, as checked now."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    id: str = Field(description="sha256 of the envelope")
    kind: SignoffKind
    gate: str
    owner: str
    keyid: str
    verdict: Verdict = Field(description="the gate verdict the owner signed off")
    reason: str | None = None
    expires: str | None = None
    signed_at: str
    recorded_at: str = ""
    counts: bool = True
    problem: str | None = Field(default=None, description="why it does not count, if it doesn't")
    carried_from: str | None = Field(
        default=None,
        description="the stopped run this waiver was signed for, when this run resumed it",
    )


class GateReview(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)

    decision: GateDecision
    state: GateState
    signoffs: list[Signoff] = Field(default_factory=list)


class ReviewStatus(BaseModel):
    """A run's review: each gate's state and the run's status."""

    model_config = ConfigDict(frozen=True, defer_build=True)

    run_id: str
    recipe: str
    recipe_version: int
    recipe_sha256: str
    run_status: str
    status: RunReview
    stopped_after: str | None = None
    gates: list[GateReview]
    not_reached: list[str] = Field(
        default_factory=list, description="gates never judged: the pipeline stopped before them"
    )
    reasons: list[str] = Field(description="why the run is not approved, one line each")

    @property
    def exit_code(self) -> int:
        return 1 if self.status == "rejected" else 0


def decide(
    gate: GateSpec,
    run_id: str,
    stage: str,
    per_seed: Sequence[SeedJudgement],
    candidates: Sequence[Estimate | None],
    baselines: Sequence[Estimate | None],
    differences: Sequence[float] | None = None,
    changes: Mapping[str, Sequence[Estimate | None]] | None = None,
    samples: Sequence[SeedSamples | None] | None = None,
    *,
    judging: int = JUDGING,
) -> GateDecision:
    """One decision for `gate` from its per-seed judgements, by the gate's seeds policy.

    `candidates` and `baselines` are each seed's estimate of the gate's metric (same order as
    `per_seed`); `differences` each seed's paired accuracy difference, for `mean` of a
    `non_inferior` accuracy gate; `changes` each seed's paired change the rule reads (by metric
    name), for `mean` of other `relative` and `non_inferior` gates; `samples` each seed's
    per-sample evidence, for `mean` on accuracy. `judging` 1 re-derives a decision recorded
    before issue 23 (`mean`: a t interval over the seeds' estimates, whatever their split).
    """
    headline: Judgement | SeedJudgement
    if gate.seeds == "mean" and judging == 1:
        headline = _mean_v1(gate, candidates, baselines, differences, changes or {})
    elif gate.seeds == "mean":
        headline = _mean(gate, candidates, baselines, differences, samples, exact=judging >= 3)
    else:
        paired = isinstance(gate, NonInferiorGate) and gate.metric == "accuracy"
        scores: list[float | None] = (
            list(differences) if paired and differences else _scores(candidates)
        )
        worst = _worst_index(per_seed, scores)
        if gate.seeds == "every":
            failing = [s for s in per_seed if s.verdict == "fail"]
            headline = failing[0] if failing else per_seed[worst]
            verdict: Verdict = "fail" if failing else "pass"
        else:
            headline = per_seed[worst]
        if gate.seeds == "worst":
            verdict = headline.verdict
    if gate.seeds == "mean":
        verdict = headline.verdict
    policy_note = {
        "every": f"{sum(s.verdict == 'pass' for s in per_seed)}/{len(per_seed)} seeds pass",
        "worst": f"judged on the worst seed ({getattr(headline, 'seed', '?')})",
        "mean": f"judged on the mean of {len(per_seed)} seeds",
    }[gate.seeds]
    seed_part = f"seed {headline.seed}: " if isinstance(headline, SeedJudgement) else ""
    decision = GateDecision(
        run_id=run_id,
        gate=gate.name,
        owner=gate.owner,
        metric=gate.metric,
        stage=stage,
        rule=gate.model_dump(mode="json"),
        policy=gate.seeds,
        approval=gate.approval,
        estimate=headline.estimate,
        ci_low=headline.ci_low,
        ci_high=headline.ci_high,
        n=headline.n,
        threshold=headline.threshold,
        pvalue=headline.pvalue,
        verdict=verdict,
        note=f"{policy_note}; {seed_part}{headline.note}",
        seeds=list(per_seed),
    )
    return decision.model_copy(update={"evidence_sha256": evidence_digest(decision)})


def _scores(candidates: Sequence[Estimate | None]) -> list[float | None]:
    """Each estimate signed so that lower is worse (None without a direction)."""
    return [
        None
        if e is None or e.higher_is_better is None
        else (e.estimate if e.higher_is_better else -e.estimate)
        for e in candidates
    ]


def _worst_index(per_seed: Sequence[SeedJudgement], scores: Sequence[float | None]) -> int:
    """The seed with the lowest score (the first failing seed, or the first, without scores)."""
    scored = [(score, i) for i, score in enumerate(scores) if score is not None]
    if not scored:
        fails = [i for i, s in enumerate(per_seed) if s.verdict == "fail"]
        return fails[0] if fails else 0
    return min(scored)[1]


def _mean(
    gate: GateSpec,
    candidates: Sequence[Estimate | None],
    baselines: Sequence[Estimate | None],
    differences: Sequence[float] | None,
    samples: Sequence[SeedSamples | None] | None,
    *,
    exact: bool = True,
) -> Judgement:
    """The gate judged on the interval of the mean over the seeds (module docstring)."""
    import numpy as np

    confidence = gate.confidence or 0.95
    level = round(2 * confidence - 1, 12)
    why = mean_supported(gate)
    if why is not None:
        return _refused(gate, why)
    estimated = isinstance(gate, BoundGate | RelativeGate) and gate.basis == "estimate"
    if estimated or comparison(gate.metric).exact:
        return _mean_v1(gate, candidates, baselines, None, {})
    if any(c is None for c in candidates):
        return judge(gate, {}, {}, {})  # "no evidence"
    found = [c for c in candidates if c is not None]
    split = _split(samples)
    if isinstance(split, str):
        return _refused(gate, split)
    paired = not isinstance(gate, BoundGate)
    metric = "paired.accuracy_difference" if paired else "accuracy"
    if split is None:
        return _refused(gate, DISJOINT)
    from compressgate.evaluators.seeds import crossed_mean

    candidate, baseline = split
    per_sample = candidate - baseline if paired else candidate
    low, high = (-1.0, 1.0) if paired else (0.0, 1.0)
    margin = _accuracy_margin(gate)
    if exact and paired and margin is not None:
        # When the seeds agree on every sample the interval is Tango's on one seed's counts,
        # whose asymptotic level passes too often where few pairs are discordant: held at the
        # level that keeps Tango's exact size on n samples (gates.noninferiority), as a single
        # seed's is (judging 2 used 2c - 1).
        from compressgate.gates.noninferiority import exact_alpha

        level = round(1 - 2 * exact_alpha(per_sample.shape[1], margin, 1 - confidence), 12)
    crossed = crossed_mean(per_sample, level, lowest=low, highest=high)
    degrees = (
        f"the seeds' variance with {crossed.seeds - 1} df"
        if crossed.seed_term
        else "the seeds differ no more than the samples explain"
    )
    interval = Estimate(
        estimate=crossed.estimate,
        ci_low=crossed.ci_low,
        ci_high=crossed.ci_high,
        n=crossed.n,
        confidence=level,
        method=(
            f"seeds × samples score interval ({crossed.seeds} seeds crossed with "
            f"{crossed.n} shared test samples, {degrees})"
        ),
        higher_is_better=True,
    )
    metrics = {metric: interval}
    if metric != gate.metric:
        metrics[gate.metric] = found[0].model_copy(
            update={"estimate": float(np.mean([c.estimate for c in found]))}
        )
    judged = judge(gate, metrics, {}, {})
    return judged.model_copy(update={"note": f"{judged.note} ({interval.method})"})


def _accuracy_margin(gate: GateSpec) -> float | None:
    """The margin of a gate on accuracy's paired difference (non_inferior, or relative with an
    absolute max_drop); None for others."""
    if gate.metric != "accuracy":
        return None
    if isinstance(gate, NonInferiorGate):
        return gate.margin
    if isinstance(gate, RelativeGate) and not gate.relative and gate.max_increase is None:
        return gate.max_drop
    return None


# Disjoint splits make the seeds' estimates independent, and the Student t interval over them the
# textbook answer; simulated with 3-5 seeds whose variance grows with their loss it passed 6-7%
# at the boundary of a 5% gate (docs/statistics.md): refused rather than quietly liberal.
DISJOINT = (
    "the seeds' test splits are disjoint, and a t interval over a few independent seeds' "
    "estimates passes more often than its confidence when a seed's variance grows with its "
    "loss; draw one test split for every seed (e.g. the loader's test_seed), or use 'every' "
    "or 'worst'"
)


def _refused(gate: GateSpec, why: str) -> Judgement:
    return Judgement.failed(f"'{gate.metric}' cannot be judged on the mean of the seeds: {why}")


def _split(
    samples: Sequence[SeedSamples | None] | None,
) -> tuple[Any, Any] | str | None:
    """Each seed's per-sample correctness of the candidate and of its baseline (two seeds ×
    samples arrays) when the seeds share one test split; None when their splits are disjoint;
    else why neither holds."""
    import numpy as np

    missing = (
        "the per-sample evidence (each seed's test labels and the candidate's and baseline's "
        "predictions, `AccuracyResult.labels`) was not recorded for every seed"
    )
    if not samples or any(s is None for s in samples):
        return missing
    found = [s for s in samples if s is not None]
    for s in found:
        if not len(s.labels) == len(s.candidate) == len(s.baseline) or len(s.labels) < 2:
            return "a seed's labels and predictions differ in length"
    orders: list[Any]
    if all(s.ids is not None for s in found):
        keyed = [np.asarray(s.ids, dtype=np.int64) for s in found]
        sets = [np.unique(k) for k in keyed]
        if any(len(u) != len(k) for u, k in zip(sets, keyed, strict=True)):
            return "a seed's test split repeats a sample id"
        if all(np.array_equal(sets[0], u) for u in sets[1:]):
            orders = [np.argsort(k, kind="stable") for k in keyed]
        elif all(np.intersect1d(a, b).size == 0 for i, a in enumerate(sets) for b in sets[i + 1 :]):
            return None
        else:
            return (
                "the seeds' test splits overlap in part: their estimates are neither independent "
                "nor on one shared split; draw one test split for every seed (e.g. the loader's "
                "test_seed) or disjoint ones, or use 'every' or 'worst'"
            )
    elif any(s.ids is not None for s in found):
        return "the loader gave sample ids for some seeds only"
    else:
        first = np.asarray(found[0].labels)
        if any(not np.array_equal(np.asarray(s.labels), first) for s in found[1:]):
            return (
                "the seeds' test splits differ and the loader gives no sample ids (Split.ids) "
                "to tell whether they overlap: give ids, or draw one test split for every seed "
                "(e.g. the loader's test_seed), or use 'every' or 'worst'"
            )
        orders = [np.arange(len(first))] * len(found)
    labels = [np.asarray(s.labels)[o] for s, o in zip(found, orders, strict=True)]
    if any(not np.array_equal(y, labels[0]) for y in labels[1:]):
        return "a sample id carries different labels in different seeds; ids must name samples"
    candidate = np.stack(
        [np.asarray(s.candidate)[o] == y for s, o, y in zip(found, orders, labels, strict=True)]
    ).astype(np.float64)
    baseline = np.stack(
        [np.asarray(s.baseline)[o] == y for s, o, y in zip(found, orders, labels, strict=True)]
    ).astype(np.float64)
    return candidate, baseline


def _mean_v1(
    gate: GateSpec,
    candidates: Sequence[Estimate | None],
    baselines: Sequence[Estimate | None],
    differences: Sequence[float] | None,
    changes: Mapping[str, Sequence[Estimate | None]],
) -> Judgement:
    """The gate judged on the Student t interval of the mean of the seeds' estimates: judging
    version 1's `mean`, and still the interval where the seeds' values have no sampling error
    (sizes) or only the estimates are compared (`basis: estimate`)."""
    # numpy and scipy (through stats) only here: reading a review must not import them.
    import numpy as np

    from compressgate.evaluators import stats

    confidence = gate.confidence or 0.95
    if isinstance(gate, NonInferiorGate) and gate.metric == "accuracy" and differences:
        values = np.asarray(differences, dtype=np.float64)
        low, high = stats.t_interval(values, 2 * confidence - 1)
        passed = low > -gate.margin
        return Judgement(
            verdict="pass" if passed else "fail",
            estimate=float(values.mean()),
            ci_low=low,
            ci_high=high,
            n=len(values),
            threshold=-gate.margin,
            note=(
                f"lower bound {low:+.4f} of the mean paired difference "
                f"({2 * confidence - 1:.0%} t interval over {len(values)} seeds) "
                f"vs -{gate.margin:g}"
            ),
        )
    if any(c is None for c in candidates):
        return judge(gate, {}, {}, {})  # "no evidence"
    level = 2 * confidence - 1

    def mean_of(estimates: Sequence[Estimate]) -> Estimate:
        values = np.asarray([e.estimate for e in estimates], dtype=np.float64)
        if estimates[0].method == "exact" and np.all(values == values[0]):
            return estimates[0]
        low, high = stats.t_interval(values, level)
        return estimates[0].model_copy(
            update={
                "estimate": float(values.mean()),
                "ci_low": low,
                "ci_high": high,
                "n": len(values),
                "confidence": level,
                "method": f"student t over {len(values)} seeds",
            }
        )

    metrics = {gate.metric: mean_of([c for c in candidates if c is not None])}
    for name, per_seed in changes.items():
        found = [e for e in per_seed if e is not None]
        if found and len(found) == len(per_seed):
            metrics[name] = mean_of(found)
    reference: dict[str, Estimate] = {}
    present = [b for b in baselines if b is not None]
    if len(present) == len(baselines) and present:
        reference[gate.metric] = present[0].model_copy(
            update={"estimate": float(np.mean([b.estimate for b in present]))}
        )
    return judge(gate, metrics, reference, {})


def gate_state(decision: GateDecision, signoffs: Sequence[Signoff]) -> GateState:
    counting = [s for s in signoffs if s.counts and s.gate == decision.gate]
    if decision.verdict == "fail":
        return "waived" if any(s.kind == "waiver" for s in counting) else "failed"
    if decision.approval == "required":
        return "approved" if any(s.kind == "approval" for s in counting) else "awaiting-approval"
    return "passed"


def review(
    *,
    run_id: str,
    recipe: str,
    recipe_version: int,
    recipe_sha256: str,
    run_status: str,
    stopped_after: str | None,
    decisions: Sequence[GateDecision],
    signoffs: Sequence[Signoff],
    gate_names: Sequence[str] = (),
) -> ReviewStatus:
    """The run's review status from its decisions and the sign-offs as checked now."""
    gates = [
        GateReview(
            decision=d,
            state=gate_state(d, signoffs),
            signoffs=[s for s in signoffs if s.gate == d.gate],
        )
        for d in decisions
    ]
    judged = {d.gate for d in decisions}
    not_reached = [name for name in gate_names if name not in judged]
    reasons = []
    if run_status == "failed":
        reasons.append("the run failed before its gates were judged")
    if stopped_after is not None:
        reasons.append(f"the pipeline stopped after stage '{stopped_after}': a gate failed there")
    for g in gates:
        d = g.decision
        if g.state == "failed":
            reasons.append(f"gate '{d.gate}' failed ({d.note}); its owner '{d.owner}' may waive it")
        elif g.state == "awaiting-approval":
            reasons.append(f"gate '{d.gate}' awaits the signed approval of '{d.owner}'")
    if not_reached and run_status != "failed":
        reasons.append(f"not judged, the pipeline stopped first: {', '.join(not_reached)}")
    status: RunReview
    if (
        run_status != "succeeded"
        or stopped_after is not None
        or not_reached
        or any(g.state == "failed" for g in gates)
    ):
        status = "rejected"
    elif any(g.state == "awaiting-approval" for g in gates):
        status = "awaiting-approval"
    else:
        status = "approved"
    return ReviewStatus(
        run_id=run_id,
        recipe=recipe,
        recipe_version=recipe_version,
        recipe_sha256=recipe_sha256,
        run_status=run_status,
        status=status,
        stopped_after=stopped_after,
        gates=gates,
        not_reached=not_reached,
        reasons=reasons,
    )


def expired(expires: str | None, now: datetime) -> bool:
    """Whether a waiver's expiry (an ISO 8601 instant) has passed at `now`; ValueError for one
    that is not an instant (no time zone), which cannot be compared."""
    if expires is None:
        return False
    moment = datetime.fromisoformat(expires)
    if moment.tzinfo is None:
        raise ValueError(f"{expires!r} has no time zone")
    return moment <= now


def by_gate(decisions: Sequence[GateDecision]) -> Mapping[str, GateDecision]:
    return {d.gate: d for d in decisions}
