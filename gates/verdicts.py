"""A recipe's gate rules judged on one variant's recorded evaluations: pass or fail, with evidence.

This is the first, per-seed form of gate judging that promotion relies on: each gate is judged
for every seed of a run on the stage it names (`after:`, else the last stage), from the metrics
and evaluations the executor recorded. Owners' approvals, waivers, seed policies and power
analysis build on these decisions.

Every rule errs on its side at most 1 - `confidence` of the time (one meaning of confidence,
`docs/statistics.md`): it judges one end of an interval, and each end of the intervals the
evaluators report is a one-sided bound at their `confidence` (the interval is two-sided at
2c - 1). An interval whose ends reach less than the gate's confidence (too few latency calls
for a tail percentile) fails the gate, saying so.

- `non_inferior` on `accuracy`: Tango's score interval of accuracy(candidate) - accuracy(baseline)
  at two-sided confidence 2c-1, recomputed from the recorded discordant counts; passes when its
  lower bound is above -margin. On other metrics: the paired interval of the change from the
  baseline (`compressgate.recipes.evaluation.comparison`) must lie above -margin (below +margin
  where lower is better).
- `bound`: the interval's conservative end (or the estimate, with `basis: estimate`) inside
  [min, max].
- `relative`: the change from the baseline, judged on the paired interval of the difference
  (absolute limits) or of the ratio (`relative: true`), within max_drop/max_increase; metrics
  without sampling error (sizes) are compared directly, and `basis: estimate` compares the
  point estimates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from compressgate.evaluators.results import Estimate, EvaluationResult, PairedResult
from compressgate.recipes.evaluation import comparison
from compressgate.recipes.manifest import BoundGate, GateSpec, NonInferiorGate, RelativeGate

Verdict = Literal["pass", "fail"]

# The judging method's version, recorded in each decision's rule (`rule["judging"]`) so that an
# audit re-derives a decision by the method that made it. 1 (absent): before issue 23 — bounds
# read the evaluator's interval as it was, `relative` and `non_inferior` on other metrics than
# accuracy held the candidate's interval against the baseline's estimate. 2: the one meaning of
# confidence (each rule reads a one-sided bound at it), changes judged on paired intervals,
# `seeds: mean` over seeds and test samples crossed. 3: as 2, and Tango's non-inferiority test at
# the nominal level that holds its exact size (`gates.noninferiority`; 2 ran it at 1 - confidence)
# wherever it decides: `non_inferior` and `relative` drops on accuracy (the latter on the paired
# counts, not the reported interval), worst-group and worst-class drop bounds (on each group's
# recorded counts), the same gates on robustness shifts (`_shift_test`), `seeds: mean` on accuracy.
JUDGING = 3


def recording(gate: GateSpec) -> dict[str, object]:
    """The rule as a decision records it: the gate, and the judging method's version."""
    return {**gate.model_dump(mode="json"), "judging": JUDGING}


def recorded_rule(rule: Mapping[str, object]) -> tuple[GateSpec, int]:
    """A recorded rule read back: the gate, and the version of the method that judged it."""
    from pydantic import TypeAdapter

    found = dict(rule)
    version = found.pop("judging", 1)
    known = range(1, JUDGING + 1)
    if not isinstance(version, int) or isinstance(version, bool) or version not in known:
        raise ValueError(f"unknown judging method {version!r} in a recorded rule")
    gate: GateSpec = TypeAdapter(GateSpec).validate_python(found)
    return gate, version


class Judgement(BaseModel):
    """One gate judged on one variant: the number, its interval, the threshold, the verdict."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    estimate: float | None
    ci_low: float | None
    ci_high: float | None
    n: int | None
    threshold: float | None
    pvalue: float | None = None
    note: str

    @classmethod
    def failed(cls, note: str) -> Judgement:
        """A failing judgement with no evidence to show: `note` says why."""
        return cls(
            verdict="fail",
            estimate=None,
            ci_low=None,
            ci_high=None,
            n=None,
            threshold=None,
            note=note,
        )


def judge(
    gate: GateSpec,
    metrics: Mapping[str, Estimate],
    baseline: Mapping[str, Estimate],
    evaluations: Mapping[str, EvaluationResult],
    *,
    judging: int = JUDGING,
) -> Judgement:
    """Judge `gate` on a candidate's `metrics` (and full `evaluations`) against its baseline's,
    by the judging method `judging` (`JUDGING`; 1 re-derives a decision recorded before it)."""
    found = metrics.get(gate.metric)
    if found is None:
        return Judgement.failed(f"no evidence: '{gate.metric}' was not recorded for this variant")
    if judging == 1:
        from compressgate.gates import legacy

        return legacy.judge_v1(gate, found, baseline, evaluations)
    if judging >= 3 and (shifted := _shift_test(gate, metrics, evaluations)) is not None:
        return shifted
    if isinstance(gate, NonInferiorGate):
        paired = evaluations.get("paired")
        return _non_inferior(gate, found, metrics, baseline, paired, exact=judging >= 3)
    if isinstance(gate, BoundGate):
        counts = _drop_counts(gate, evaluations) if judging >= 3 else None
        if counts is not None:
            return _drop_bound(gate, found, counts)
        return _bound(gate, found)
    assert isinstance(gate, RelativeGate)
    if judging >= 3 and _paired_accuracy_drop(gate, evaluations.get("paired")):
        paired = evaluations["paired"]
        assert isinstance(paired, PairedResult) and gate.max_drop is not None
        margin = NonInferiorGate(
            name=gate.name,
            owner=gate.owner,
            metric="accuracy",
            margin=gate.max_drop,
            confidence=gate.confidence
            if gate.confidence is not None
            else one_sided(paired.difference),
        )
        return _non_inferior(margin, found, metrics, baseline, paired, at_most=True)
    return _relative(gate, found, metrics, baseline)


# The drops a `bound` with `max` reads per group (class), from per-group paired counts.
_DROP_ROWS = {
    "fairness.worst_group_accuracy_drop": ("fairness", "groups", "group"),
    "classes.worst_recall_drop": ("classes", "classes", "class"),
}


def _drop_counts(
    gate: BoundGate, evaluations: Mapping[str, EvaluationResult]
) -> list[tuple[str, int, int, int]] | None:
    """(name, b, c, n) of every group (class) whose drop the gate bounds, when recorded."""
    where = _DROP_ROWS.get(gate.metric)
    if where is None or gate.max is None or gate.basis != "interval":
        return None
    result = evaluations.get(where[0])
    rows = getattr(result, where[1], None) if result is not None else None
    if not rows:
        return None
    counts = [(row.name, row.b, row.c, row.n) for row in rows]
    if any(b is None or c is None for _, b, c, _ in counts):
        return None  # recorded before the counts were: the interval is read
    return counts


def _shift_counts(
    name: str, evaluations: Mapping[str, EvaluationResult]
) -> list[tuple[str, int, int, int]] | None:
    """(shift, b, c, n) behind a robustness difference `name` (one shift and severity, or every
    one for the worst), when recorded; None otherwise."""
    result = evaluations.get("robustness")
    rows = getattr(result, "shifts", None) if result is not None else None
    if not rows:
        return None
    if name != "robustness.worst_accuracy_difference":
        rows = [r for r in rows if name == f"robustness.{r.kind}.s{r.level}.accuracy_difference"]
    counts = [(f"{r.kind}.s{r.level}", r.b, r.c, r.accuracy.n) for r in rows]
    if not counts or any(b is None or c is None for _, b, c, _ in counts):
        return None  # recorded before the counts were: the interval is read
    return counts


def _shift_test(
    gate: GateSpec, metrics: Mapping[str, Estimate], evaluations: Mapping[str, EvaluationResult]
) -> Judgement | None:
    """A gate on a robustness accuracy difference judged on the recorded counts: Tango's test
    that the difference is above -margin, at the level holding its exact size, for every shift
    it covers (the worst: each shift's own, an intersection-union test). `non_inferior` and a
    `relative` absolute drop on `robustness.<shift>.s<k>.accuracy`, and a `bound` with a
    negative `min` on a difference; None for any other gate (judged as before)."""
    metric, strict = gate.metric, True
    if isinstance(gate, NonInferiorGate) and metric.startswith("robustness."):
        name, margin = f"{metric}_difference", gate.margin
    elif (
        isinstance(gate, RelativeGate)
        and metric.startswith("robustness.")
        and gate.max_drop is not None
        and gate.max_increase is None
        and not gate.relative
        and gate.basis == "interval"
    ):
        name, margin, strict = f"{metric}_difference", gate.max_drop, False
    elif (
        isinstance(gate, BoundGate)
        and metric.startswith("robustness.")
        and metric.endswith("accuracy_difference")
        and gate.min is not None
        and gate.min < 0
        and gate.max is None
        and gate.basis == "interval"
    ):
        name, margin, strict = metric, -gate.min, False
    else:
        return None
    found, counts = metrics.get(name), _shift_counts(name, evaluations)
    if found is None or counts is None or not 0 < margin < 1:
        return None
    alpha = 1 - (gate.confidence if gate.confidence is not None else one_sided(found))
    ends = _lower_ends(counts, margin, alpha)
    failures = [
        f"'{label}': lower bound {low:+.6g} vs {-margin:+g}"
        for label, low in ends
        if (low <= -margin if strict else low < -margin)
    ]
    lowest = min(low for _, low in ends)
    note = (
        f"every shift's own lower bound of the difference at least {lowest:+.6g} vs {-margin:+g} "
        f"(Tango, each at the level holding its exact size at {alpha:g})"
    )
    return Judgement(
        verdict="fail" if failures else "pass",
        estimate=found.estimate,
        ci_low=lowest,
        ci_high=None,
        n=found.n,
        threshold=-margin,
        note="; ".join(failures) if failures else note,
    )


def _lower_ends(
    counts: list[tuple[str, int, int, int]], margin: float, alpha: float
) -> list[tuple[str, float]]:
    """Each (label, Tango's lower bound of candidate - baseline) from its counts, at the nominal
    level that holds the test against -margin at exact size `alpha` on its n."""
    from compressgate.evaluators.paired import tango_interval
    from compressgate.gates.noninferiority import exact_alpha

    ends = []
    for label, b, c, n in counts:
        if n == 0:
            continue
        nominal = exact_alpha(n, margin, alpha) if 0 < margin < 1 else alpha
        ends.append((label, tango_interval(b, c, n, 1 - 2 * nominal)[0]))
    return ends


def _paired_accuracy_drop(gate: RelativeGate, paired: EvaluationResult | None) -> bool:
    """A `relative` gate on accuracy's absolute drop, with the paired counts to test it on."""
    return (
        gate.metric == "accuracy"
        and gate.max_drop is not None
        and gate.max_increase is None
        and not gate.relative
        and gate.basis == "interval"
        and isinstance(paired, PairedResult)
    )


def one_sided(estimate: Estimate) -> float:
    """The one-sided confidence of each end of `estimate`'s two-sided interval."""
    return (1 + estimate.confidence) / 2


def _short(estimate: Estimate, confidence: float | None) -> str | None:
    """Why `estimate`'s interval cannot be judged at one-sided `confidence`; None if it can."""
    if confidence is None or estimate.method == "exact":
        return None
    reached = one_sided(estimate)
    if reached >= confidence - 1e-9:
        return None
    return (
        f"its interval's ends reach only {reached:.1%} one-sided confidence "
        f"({estimate.method}); the gate needs {confidence:.1%}"
    )


def _non_inferior(
    gate: NonInferiorGate,
    found: Estimate,
    metrics: Mapping[str, Estimate],
    baseline: Mapping[str, Estimate],
    paired: EvaluationResult | None,
    *,
    exact: bool = True,
    at_most: bool = False,
) -> Judgement:
    if gate.metric == "accuracy" and isinstance(paired, PairedResult):
        # scipy (through paired) only here: reading recorded verdicts must not import it.
        from compressgate.evaluators.paired import non_inferiority_counts
        from compressgate.gates.noninferiority import exact_alpha

        # Tango's interval depends on the discordant counts and n only; its level is the one
        # that holds the test's exact size at 1 - confidence (gates.noninferiority; judging 2
        # ran it at 1 - confidence itself).
        alpha = 1 - gate.confidence
        nominal = exact_alpha(paired.n, gate.margin, alpha) if exact else alpha
        result = non_inferiority_counts(
            paired.b, paired.c, paired.n, margin=gate.margin, alpha=nominal
        )
        # A `relative` gate's drop may reach max_drop (`at_most`); non_inferior's must stay above.
        passed = result.lower_bound >= -gate.margin if at_most else result.passed
        return Judgement(
            verdict="pass" if passed else "fail",
            estimate=paired.difference.estimate,
            ci_low=result.lower_bound,
            ci_high=None,
            n=paired.n,
            threshold=-gate.margin,
            pvalue=result.pvalue,
            note=(
                f"lower bound {result.lower_bound:+.4f} of the paired difference "
                f"({2 * gate.confidence - 1:.0%} Tango interval"
                + (
                    f", at nominal {1 - 2 * nominal:.2%} to hold its exact size at {alpha:g}"
                    if nominal < alpha
                    else ""
                )
                + f") vs -{gate.margin:g}"
            ),
        )
    higher = found.higher_is_better is not False
    how = comparison(gate.metric)
    if how.exact:
        reference = baseline.get(gate.metric)
        if reference is None:
            return _missing(gate.metric, found)
        change = found.estimate - reference.estimate
        worst = change
        evidence = found
    else:
        paired_change = metrics.get(how.difference) if how.difference else None
        if paired_change is None:
            return _missing(gate.metric, found, _no_paired(gate.metric, how.difference))
        short = _short(paired_change, gate.confidence)
        if short is not None:
            return _of(paired_change, [f"'{how.difference}': {short}"], None, "")
        worst = paired_change.ci_low if higher else paired_change.ci_high
        evidence = paired_change
    threshold = -gate.margin if higher else gate.margin
    passed = worst > threshold if higher else worst < threshold
    what = "the change" if how.exact else f"the paired interval of the change ('{how.difference}')"
    end = "" if how.exact else (" lower end" if higher else " upper end")
    note = f"{what}{end} {worst:+.6g} vs {threshold:+g}"
    return _of(evidence, [] if passed else [note], threshold, note)


def _drop_bound(
    gate: BoundGate, found: Estimate, counts: list[tuple[str, int, int, int]]
) -> Judgement:
    """`bound` with `max` on the largest drop in any group (class): passes iff every group's own
    Tango upper bound of its drop is at most `max` (an intersection-union test, no Bonferroni),
    each at the nominal level that holds its exact size at 1 - confidence on that group's n
    (`gates.noninferiority`), not the evaluator's asymptotic interval."""
    assert gate.max is not None
    # the gate's confidence (the engine records the evaluator's), else the interval's own
    alpha = 1 - (gate.confidence if gate.confidence is not None else one_sided(found))
    failures, highest = [], -1.0
    for name, low in _lower_ends(counts, gate.max, alpha):
        upper = -low  # the drop, baseline - candidate, turned around
        highest = max(highest, upper)
        if upper > gate.max:
            failures.append(f"'{name}': drop bound {upper:.6g} > max {gate.max:g}")
    note = (
        f"every one's own upper bound of its drop at most {highest:.6g} vs max {gate.max:g} "
        f"(Tango, each at the level holding its exact size at {alpha:g})"
    )
    return Judgement(
        verdict="fail" if failures else "pass",
        estimate=found.estimate,
        ci_low=found.ci_low,
        ci_high=highest,
        n=found.n,
        threshold=gate.max,
        note="; ".join(failures) if failures else note,
    )


def _bound(gate: BoundGate, found: Estimate) -> Judgement:
    interval = gate.basis == "interval"
    short = _short(found, gate.confidence) if interval else None
    if short is not None:
        return _of(found, [short], gate.max if gate.max is not None else gate.min, "")
    high = found.ci_high if interval else found.estimate
    low = found.ci_low if interval else found.estimate
    failures = []
    if gate.max is not None and high > gate.max:
        failures.append(f"{high:.6g} > max {gate.max:g}")
    if gate.min is not None and low < gate.min:
        failures.append(f"{low:.6g} < min {gate.min:g}")
    threshold = gate.max if gate.max is not None else gate.min
    what = "interval" if interval else "estimate"
    return _of(found, failures, threshold, f"{what} within the bound")


def _relative(
    gate: RelativeGate,
    found: Estimate,
    metrics: Mapping[str, Estimate],
    baseline: Mapping[str, Estimate],
) -> Judgement:
    reference = baseline.get(gate.metric)
    how = comparison(gate.metric)
    threshold = gate.max_drop if gate.max_drop is not None else gate.max_increase
    if gate.basis == "estimate" or how.exact:
        # Point against point: a metric without sampling error, or what `basis: estimate` asks.
        if reference is None:
            return _missing(gate.metric, found)
        scale = abs(reference.estimate) if gate.relative else 1.0
        if scale == 0:
            return _missing(
                gate.metric, found, "the baseline is 0, so a relative change is undefined"
            )
        drop = (reference.estimate - found.estimate) / scale
        rise = (found.estimate - reference.estimate) / scale
        evidence = found
        what = "change"
    else:
        name = how.ratio if gate.relative else how.difference
        paired_change = metrics.get(name) if name else None
        if paired_change is None:
            return _missing(gate.metric, found, _no_paired(gate.metric, name))
        short = _short(paired_change, gate.confidence)
        if short is not None:
            return _of(paired_change, [f"'{name}': {short}"], threshold, "")
        if gate.relative:  # candidate / baseline
            drop, rise = 1 - paired_change.ci_low, paired_change.ci_high - 1
        else:  # candidate - baseline
            drop, rise = -paired_change.ci_low, paired_change.ci_high
        evidence = paired_change
        what = f"paired interval of the change ('{name}')"
    failures = []
    if gate.max_drop is not None and drop > gate.max_drop:
        failures.append(f"drop {drop:.6g} > max_drop {gate.max_drop:g}")
    if gate.max_increase is not None and rise > gate.max_increase:
        failures.append(f"increase {rise:.6g} > max_increase {gate.max_increase:g}")
    return _of(evidence, failures, threshold, f"{what} within the limits")


def _no_paired(metric: str, name: str | None) -> str:
    if name is None:
        return comparison(metric).why or f"'{metric}' has no paired measure of its change"
    return f"'{name}', the paired interval of the change in '{metric}', was not recorded"


def _of(found: Estimate, failures: list[str], threshold: float | None, ok: str) -> Judgement:
    """The judgement of `found`: failed with the reasons given, else passed saying `ok`."""
    return Judgement(
        verdict="fail" if failures else "pass",
        estimate=found.estimate,
        ci_low=found.ci_low,
        ci_high=found.ci_high,
        n=found.n,
        threshold=threshold,
        note="; ".join(failures) if failures else ok,
    )


def _missing(metric: str, found: Estimate, why: str | None = None) -> Judgement:
    return _of(found, [why or f"no baseline value of '{metric}' to compare with"], None, "")
