"""A recipe's gate rules judged on one variant's recorded evaluations: pass or fail, with evidence.

This is the first, per-seed form of gate judging that promotion relies on: each gate is judged
for every seed of a run on the stage it names (`after:`, else the last stage), from the metrics
and evaluations the executor recorded. Owners' approvals, waivers, seed policies and power
analysis build on these decisions.

- `non_inferior` on `accuracy`: Tango's score interval of accuracy(candidate) - accuracy(baseline)
  at two-sided confidence 2c-1, recomputed from the recorded discordant counts; passes when its
  lower bound is above -margin. On other metrics: the candidate's conservative interval end
  against the baseline's estimate minus the margin.
- `bound`: the interval's conservative end (or the estimate, with `basis: estimate`) inside
  [min, max].
- `relative`: the change from the baseline's estimate (as a fraction of it with
  `relative: true`), judged at the interval's conservative end, within max_drop/max_increase.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict

from compressgate.evaluators.results import Estimate, EvaluationResult, PairedResult
from compressgate.recipes.manifest import BoundGate, GateSpec, NonInferiorGate, RelativeGate

Verdict = Literal["pass", "fail"]


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


def judge(
    gate: GateSpec,
    metrics: Mapping[str, Estimate],
    baseline: Mapping[str, Estimate],
    evaluations: Mapping[str, EvaluationResult],
) -> Judgement:
    """Judge `gate` on a candidate's `metrics` (and full `evaluations`) against its baseline's."""
    found = metrics.get(gate.metric)
    if found is None:
        return Judgement(
            verdict="fail",
            estimate=None,
            ci_low=None,
            ci_high=None,
            n=None,
            threshold=None,
            note=f"no evidence: '{gate.metric}' was not recorded for this variant",
        )
    if isinstance(gate, NonInferiorGate):
        return _non_inferior(gate, found, baseline.get(gate.metric), evaluations.get("paired"))
    if isinstance(gate, BoundGate):
        return _bound(gate, found)
    assert isinstance(gate, RelativeGate)
    return _relative(gate, found, baseline.get(gate.metric))


def _non_inferior(
    gate: NonInferiorGate,
    found: Estimate,
    reference: Estimate | None,
    paired: EvaluationResult | None,
) -> Judgement:
    if gate.metric == "accuracy" and isinstance(paired, PairedResult):
        # scipy (through paired) only here: reading recorded verdicts must not import it.
        from compressgate.evaluators.paired import non_inferiority_counts

        # Tango's interval depends on the discordant counts and n only.
        result = non_inferiority_counts(
            paired.b, paired.c, paired.n, margin=gate.margin, alpha=1 - gate.confidence
        )
        return Judgement(
            verdict="pass" if result.passed else "fail",
            estimate=paired.difference.estimate,
            ci_low=result.lower_bound,
            ci_high=None,
            n=paired.n,
            threshold=-gate.margin,
            pvalue=result.pvalue,
            note=(
                f"lower bound {result.lower_bound:+.4f} of the paired difference "
                f"({2 * gate.confidence - 1:.0%} Tango interval) vs -{gate.margin:g}"
            ),
        )
    if reference is None:
        return _missing(gate.metric, found)
    higher = found.higher_is_better is not False
    worst = found.ci_low if higher else found.ci_high
    threshold = reference.estimate - gate.margin if higher else reference.estimate + gate.margin
    passed = worst > threshold if higher else worst < threshold
    note = f"conservative interval end {worst:.6g} vs {threshold:.6g}"
    return _of(found, [] if passed else [note], threshold, note)


def _bound(gate: BoundGate, found: Estimate) -> Judgement:
    interval = gate.basis == "interval"
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


def _relative(gate: RelativeGate, found: Estimate, reference: Estimate | None) -> Judgement:
    if reference is None:
        return _missing(gate.metric, found)
    interval = gate.basis == "interval"
    scale = abs(reference.estimate) if gate.relative else 1.0
    if scale == 0:
        return _missing(gate.metric, found, "the baseline is 0, so a relative change is undefined")
    low = found.ci_low if interval else found.estimate
    high = found.ci_high if interval else found.estimate
    drop = (reference.estimate - low) / scale
    rise = (high - reference.estimate) / scale
    failures = []
    if gate.max_drop is not None and drop > gate.max_drop:
        failures.append(f"drop {drop:.6g} > max_drop {gate.max_drop:g}")
    if gate.max_increase is not None and rise > gate.max_increase:
        failures.append(f"increase {rise:.6g} > max_increase {gate.max_increase:g}")
    threshold = gate.max_drop if gate.max_drop is not None else gate.max_increase
    return _of(found, failures, threshold, "change within the limits")


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
