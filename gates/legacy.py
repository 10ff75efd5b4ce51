"""Gates judged by the method of before issue 23 (judging version 1), kept so that an audit
re-derives a decision recorded then by the method that made it (`gates.verdicts.JUDGING`).

Not used for new decisions: bounds read the evaluator's two-sided interval as it was, whatever
its level; `relative` and `non_inferior` on metrics other than accuracy held the candidate's
interval against the baseline's point estimate; `seeds: mean` took a t interval over the
seeds' estimates. (Judging version 2 differs from today's, 3, only in running Tango's
non-inferiority test at its nominal level: `gates.verdicts.judge(..., judging=2)`.)
"""

from __future__ import annotations

from collections.abc import Mapping

from compressgate.evaluators.results import Estimate, EvaluationResult, PairedResult
from compressgate.gates.verdicts import Judgement, _missing, _of
from compressgate.recipes.manifest import BoundGate, GateSpec, NonInferiorGate, RelativeGate


def judge_v1(
    gate: GateSpec,
    found: Estimate,
    baseline: Mapping[str, Estimate],
    evaluations: Mapping[str, EvaluationResult],
) -> Judgement:
    """`gate` judged on `found` as judging version 1 did."""
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
