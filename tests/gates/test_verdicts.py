"""Gate rules judged on recorded evidence: each rule's pass and fail, at its edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compressgate.evaluators.paired import non_inferiority_counts
from compressgate.evaluators.results import (
    Estimate,
    EvaluationResult,
    PairedResult,
    RobustnessResult,
    ShiftRow,
)
from compressgate.gates.noninferiority import exact_alpha
from compressgate.gates.verdicts import JUDGING, judge, recorded_rule, recording
from compressgate.recipes.manifest import BoundGate, NonInferiorGate, RelativeGate


def est(value: float, low: float, high: float, *, higher: bool | None = None) -> Estimate:
    return Estimate(
        estimate=value, ci_low=low, ci_high=high, n=450, method="t", higher_is_better=higher
    )


def paired(b: int, c: int, n: int = 450) -> PairedResult:
    return PairedResult(
        b=b,
        c=c,
        n=n,
        baseline_accuracy=0.98,
        candidate_accuracy=0.98 + (c - b) / n,
        difference=est((c - b) / n, -0.01, 0.01),
        mcnemar_pvalue=1.0,
        mcnemar_midp=1.0,
    )


@pytest.mark.parametrize(
    ("b", "c", "margin", "verdict"),
    [(0, 0, 0.02, "pass"), (3, 3, 0.02, "pass"), (20, 2, 0.02, "fail"), (0, 0, 0.005, "fail")],
)
def test_non_inferiority_on_accuracy_uses_the_paired_counts(
    b: int, c: int, margin: float, verdict: str
) -> None:
    gate = NonInferiorGate(name="g", owner="o", metric="accuracy", margin=margin)
    judged = judge(gate, {"accuracy": est(0.98, 0.96, 0.99)}, {}, {"paired": paired(b, c)})
    # Tango's test at the nominal level that holds its exact size at 5% (below 5% at 450)
    alpha = exact_alpha(450, margin, 0.05)
    assert alpha < 0.05
    expected = non_inferiority_counts(b, c, 450, margin=margin, alpha=alpha)
    assert judged.verdict == verdict
    assert judged.ci_low == pytest.approx(expected.lower_bound)
    assert judged.pvalue == pytest.approx(expected.pvalue)
    assert judged.threshold == -margin and judged.n == 450
    assert f"at nominal {1 - 2 * alpha:.2%} to hold its exact size at 0.05" in judged.note
    # Judging 2 (a decision recorded before) ran it at the nominal 5%.
    old = judge(gate, {"accuracy": est(0.98, 0.96, 0.99)}, {}, {"paired": paired(b, c)}, judging=2)
    nominal = non_inferiority_counts(b, c, 450, margin=margin, alpha=0.05)
    assert old.ci_low == pytest.approx(nominal.lower_bound) != judged.ci_low


def test_non_inferiority_on_another_metric_reads_the_paired_change_not_the_baseline_estimate() -> (
    None
):
    """The candidate's own interval against the baseline's point estimate leaves out the
    baseline's sampling error: the paired interval of the change is judged instead."""
    gate = NonInferiorGate(name="g", owner="o", metric="calibration.ece", margin=0.02)
    ece = {"calibration.ece": est(0.02, 0.01, 0.03, higher=False)}
    baseline = {"calibration.ece": est(0.02, 0.0, 0.04, higher=False)}
    change = {"calibration.ece_change": est(0.004, -0.01, 0.019, higher=False)}
    judged = judge(gate, ece | change, baseline, {})
    assert judged.verdict == "pass" and judged.ci_high == 0.019 and judged.threshold == 0.02
    assert "'calibration.ece_change'" in judged.note
    wider = {"calibration.ece_change": est(0.004, -0.01, 0.021, higher=False)}
    assert judge(gate, ece | wider, baseline, {}).verdict == "fail"
    # Without the paired change, nothing is judged against the baseline's estimate.
    missing = judge(gate, ece, baseline, {})
    assert missing.verdict == "fail" and "'calibration.ece_change'" in missing.note
    # A gap that widens by more than the margin's worth at the upper end fails.
    gate = NonInferiorGate(name="g", owner="o", metric="fairness.accuracy_gap", margin=0.02)
    gap = {"fairness.accuracy_gap": est(0.05, 0.02, 0.08, higher=False)}
    rising = {"fairness.accuracy_gap_change": est(0.01, -0.005, 0.025, higher=False)}
    assert judge(gate, gap | rising, {}, {}).verdict == "fail"


def test_an_interval_short_of_the_gate_confidence_fails_the_gate() -> None:
    """A p99 over too few calls reaches less than the confidence asked: it cannot pass."""
    gate = BoundGate(name="g", owner="o", metric="latency.p99_ms", max=5.0, confidence=0.95)
    short = est(1.0, 0.9, 1.2, higher=False).model_copy(update={"confidence": 0.733})
    judged = judge(gate, {"latency.p99_ms": short}, {}, {})
    assert judged.verdict == "fail" and "reach only 86.7% one-sided" in judged.note
    enough = short.model_copy(update={"confidence": 0.9})
    assert judge(gate, {"latency.p99_ms": enough}, {}, {}).verdict == "pass"
    # A gate without a confidence of its own (an old record) reads what it is given.
    loose = BoundGate(name="g", owner="o", metric="latency.p99_ms", max=5.0)
    assert judge(loose, {"latency.p99_ms": short}, {}, {}).verdict == "pass"


@pytest.mark.parametrize(
    ("bound", "basis", "interval", "verdict", "says"),
    [
        ({"max": 0.03}, "interval", (0.01, -0.01, 0.029), "pass", "interval within the bound"),
        ({"max": 0.03}, "interval", (0.01, -0.01, 0.0331), "fail", "0.0331 > max 0.03"),
        ({"max": 0.03}, "estimate", (0.01, -0.01, 0.0331), "pass", "estimate within the bound"),
        ({"min": 1.5}, "interval", (1.55, 1.49, 1.6), "fail", "1.49 < min 1.5"),
        ({"min": 1.5, "max": 2.0}, "interval", (1.8, 1.6, 2.1), "fail", "2.1 > max 2"),
    ],
)
def test_bounds_judge_the_conservative_end_of_the_interval(
    bound: dict[str, float],
    basis: str,
    interval: tuple[float, float, float],
    verdict: str,
    says: str,
) -> None:
    gate = BoundGate.model_validate(
        {"name": "g", "owner": "o", "metric": "m.x", "basis": basis, **bound}
    )
    judged = judge(gate, {"m.x": est(*interval)}, {}, {})
    assert (judged.verdict, judged.note) == (verdict, says)


@pytest.mark.parametrize(
    ("limits", "change", "verdict", "says"),
    [
        ({"max_drop": 0.05}, (-0.03, -0.04, -0.02), "pass", "within the limits"),
        ({"max_drop": 0.05}, (-0.03, -0.06, 0.01), "fail", "drop 0.06 > max_drop 0.05"),
        ({"max_increase": 0.01}, (0.005, -0.005, 0.015), "fail", "increase 0.015 > max_increase"),
    ],
)
def test_relative_limits_are_judged_on_the_paired_change(
    limits: dict[str, float], change: tuple[float, float, float], verdict: str, says: str
) -> None:
    gate = RelativeGate.model_validate(
        {"name": "g", "owner": "o", "metric": "fairness.accuracy_gap", **limits}
    )
    judged = judge(
        gate,
        {
            "fairness.accuracy_gap": est(0.5, 0.4, 0.6),
            "fairness.accuracy_gap_change": est(*change),
        },
        {"fairness.accuracy_gap": est(0.98, 0.97, 0.99)},
        {},
    )
    assert judged.verdict == verdict and says in judged.note


@pytest.mark.parametrize(
    ("limits", "candidate", "verdict", "says"),
    [
        ({"max_drop": 5}, 95.0, "pass", "change within the limits"),
        ({"max_drop": 5}, 92.0, "fail", "drop 6 > max_drop 5"),
        # 6 of 98 is 6.12%: within 6.1 units absolute, beyond 6.1% relative.
        ({"max_drop": 6.1}, 92.0, "pass", "within"),
        ({"max_drop": 0.061, "relative": True}, 92.0, "fail", "drop 0.0612245 >"),
        ({"max_increase": 1}, 99.5, "fail", "increase 1.5 > max_increase"),
    ],
)
def test_relative_limits_on_an_exact_metric_compare_the_values(
    limits: dict[str, float], candidate: float, verdict: str, says: str
) -> None:
    gate = RelativeGate.model_validate(
        {"name": "g", "owner": "o", "metric": "size.bytes", **limits}
    )
    exact = {"size.bytes": Estimate.exact(candidate)}
    judged = judge(gate, exact, {"size.bytes": Estimate.exact(98.0)}, {})
    assert judged.verdict == verdict and says in judged.note


def test_missing_evidence_fails_and_says_why() -> None:
    gate = BoundGate(name="g", owner="o", metric="m.x", max=1.0)
    judged = judge(gate, {}, {}, {})
    assert judged.verdict == "fail" and "'m.x' was not recorded" in judged.note
    relative = RelativeGate(name="g", owner="o", metric="size.bytes", max_drop=0.1, relative=True)
    zero = {"size.bytes": Estimate.exact(0.0)}
    judged = judge(relative, {"size.bytes": Estimate.exact(5.0)}, zero, {})
    assert judged.verdict == "fail" and "relative change is undefined" in judged.note
    judged = judge(relative, {"size.bytes": Estimate.exact(5.0)}, {}, {})
    assert judged.verdict == "fail" and "no baseline value" in judged.note
    paired = RelativeGate(name="g", owner="o", metric="calibration.nll", max_increase=0.1)
    judged = judge(paired, {"calibration.nll": est(0.5, 0.4, 0.6)}, {}, {})
    assert judged.verdict == "fail" and "'calibration.nll_change'" in judged.note


def test_a_non_inferiority_gate_rarely_passes_a_candidate_worse_by_exactly_the_margin() -> None:
    """Over 1,000 simulated paired datasets of 450 samples where the candidate is truly worse
    by the margin (3% of samples right only for the baseline, 1% only for the candidate), the
    gate at confidence 0.95 passes at most 5% of the time, plus three Monte-Carlo errors."""
    rng = np.random.default_rng(20261123)
    n, margin, datasets = 450, 0.02, 1000
    gate = NonInferiorGate(name="g", owner="o", metric="accuracy", margin=margin)
    counts = rng.multinomial(n, [0.03, 0.01, 0.96], size=datasets)
    passed = sum(
        judge(gate, {"accuracy": est(0.97, 0.95, 0.98)}, {}, {"paired": paired(b, c)}).verdict
        == "pass"
        for b, c, _ in counts
    )
    rate = passed / datasets
    assert rate <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / datasets)
    # And it is not a gate that never passes: truly equal models pass most of the time.
    equal = rng.multinomial(n, [0.02, 0.02, 0.96], size=200)
    passes = sum(
        judge(gate, {"accuracy": est(0.97, 0.95, 0.98)}, {}, {"paired": paired(b, c)}).verdict
        == "pass"
        for b, c, _ in equal
    )
    assert passes / 200 > 0.5


def test_a_decision_records_its_judging_method_and_an_old_one_is_judged_by_its_own() -> None:
    """An audit re-derives every recorded decision: one made before the paired-change rules
    (no `judging` in its rule) is re-derived by the method of then, a new one by today's."""
    gate = RelativeGate(name="g", owner="o", metric="accuracy", max_drop=0.05)
    recorded = recording(gate)
    assert recorded["judging"] == JUDGING == 3
    assert recorded_rule(recorded) == (gate, 3)
    assert recorded_rule({**recorded, "judging": 2}) == (gate, 2)
    old = gate.model_dump(mode="json")
    assert recorded_rule(old) == (gate, 1)
    with pytest.raises(ValueError, match="unknown judging method 7"):
        recorded_rule({**old, "judging": 7})
    candidate = {"accuracy": est(0.95, 0.94, 0.96, higher=True)}
    baseline = {"accuracy": est(0.98, 0.97, 0.99, higher=True)}
    # Then: the candidate's lower end against the baseline's estimate (a drop of 0.04).
    then = judge(gate, candidate, baseline, {}, judging=1)
    assert then.verdict == "pass" and then.note == "change within the limits"
    # Now: the paired interval of the change, which this evidence lacks.
    now = judge(gate, candidate, baseline, {})
    assert now.verdict == "fail" and "'paired.accuracy_difference'" in now.note


def _shifts(*counts: tuple[int, int]) -> dict[str, EvaluationResult]:
    rows = [
        ShiftRow.model_construct(
            kind="gaussian_noise",
            level=level,
            accuracy=est(0.9, 0.88, 0.92),
            b=b,
            c=c,
        )
        for level, (b, c) in enumerate(counts, start=1)
    ]
    return {"robustness": RobustnessResult.model_construct(shifts=rows)}


def test_a_robustness_accuracy_gate_tests_the_shifts_counts_at_exact_size() -> None:
    """Tango's interval the evaluator reports is asymptotic; the gate tests the recorded counts
    at the level holding the test's exact size, as for accuracy itself."""
    gate = NonInferiorGate(
        name="g", owner="o", metric="robustness.gaussian_noise.s1.accuracy", margin=0.02
    )
    reported = {
        "robustness.gaussian_noise.s1.accuracy": est(0.9, 0.88, 0.92),
        # an interval the judge must not read: its lower end passes
        "robustness.gaussian_noise.s1.accuracy_difference": est(-0.0133, -0.0199, 0.0),
    }
    judged = judge(gate, reported, {}, _shifts((9, 3)))
    level = 1 - 2 * exact_alpha(450, 0.02, 0.05)
    expected = non_inferiority_counts(9, 3, 450, margin=0.02, alpha=(1 - level) / 2)
    assert judged.ci_low == pytest.approx(expected.lower_bound)
    assert judged.verdict == ("pass" if expected.passed else "fail") == "fail"
    assert judged.threshold == -0.02 and "gaussian_noise.s1" in judged.note
    # Judging 2 read the reported interval.
    assert judge(gate, reported, {}, _shifts((9, 3)), judging=2).verdict == "pass"


def test_a_worst_shift_floor_passes_only_if_every_shift_does() -> None:
    gate = BoundGate(name="g", owner="o", metric="robustness.worst_accuracy_difference", min=-0.05)
    worst = {"robustness.worst_accuracy_difference": est(-0.01, -0.03, 0.01)}
    assert judge(gate, worst, {}, _shifts((3, 3), (4, 2))).verdict == "pass"
    failing = judge(gate, worst, {}, _shifts((3, 3), (40, 2)))
    assert failing.verdict == "fail" and "'gaussian_noise.s2'" in failing.note
    assert failing.ci_low is not None and failing.ci_low < -0.05
