"""Is a gate underpowered? What its rule can decide at the evaluation set's size.

For the rules built on paired counts (b: only the baseline right, c: only the candidate right):

- `non_inferior` on `accuracy`: passes iff the lower end of Tango's interval at two-sided
  1 - 2α' (`compressgate.evaluators.paired`) is above -margin, where α' <= 1 - c is the
  nominal level that holds the test's exact size at 1 - c (`compressgate.gates.noninferiority`;
  α' = 1 - c wherever the asymptotic test already holds it).
- `relative` with `max_drop` on `accuracy` (an absolute drop): the same test on the same counts,
  a drop of exactly max_drop allowed (the lower end at least -max_drop).
- `bound` with `max` on `fairness.worst_group_accuracy_drop` or `classes.worst_recall_drop`:
  the evaluators report as upper end the largest of every group's (class's) own Tango upper
  bound at two-sided 2c - 1 (no Bonferroni: the largest errs only if the truly worst group's
  does), so the gate passes iff every group's bound is at most `max`. Taking groups as
  independent, the power is the product of the per-group powers; `n` is the smallest group,
  which sets the floor.

The floor is the best case, b = c = 0, where Tango's lower end is -z² / (n + z²). The power is
the chance of passing a candidate truly equal to the baseline that disagrees with it on
`planning.discordance` = d of the samples, evenly both ways: b ~ binomial(n, d/2) (tails under
1e-10 left out) and c | b ~ binomial(n - b, (d/2) / (1 - d/2)). Tango's lower end exceeds -m
iff the score at -m exceeds z, and the score rises with c, so each b needs only its smallest
passing c: exact (to 1e-9) and cheap at any n. `supported`, the smallest margin reaching the
target, is found by bisection (power rises with the margin), rounded up to 3 significant digits.

`bound` with `min` on `accuracy`, `fairness.worst_group_accuracy` or `classes.worst_recall`
(Wilson intervals; the worst group's or class's lower end at 2c - 1, again without Bonferroni)
gets its floor only, the lower end with every sample right: its power would
need the true accuracy. `bound` gates read the evaluator's interval at the evaluator's
confidence (a gate may not ask for another). Other rules and metrics, `basis:
estimate` and `seeds: mean` are not analysed. Powers are per seed:
under `seeds: every` all k seeds must pass, less likely still.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict

from compressgate.evaluators.stats import wilson_interval
from compressgate.recipes.manifest import (
    BoundGate,
    GateSpec,
    NonInferiorGate,
    Planning,
    Recipe,
    RelativeGate,
)

if TYPE_CHECKING:
    from compressgate.recipes.data import Splits

Floats = NDArray[np.float64]
_TAIL = 1e-10  # each binomial tail of b left out: far less than 1e-9 of mass in all
CAP = 10**6  # required_n searches no further


class SampleSizes(BaseModel):
    """How many test samples there are, in all, per fairness group and per class."""

    model_config = ConfigDict(frozen=True)

    test: int
    groups: dict[str, int] = {}
    classes: dict[str, int] = {}


def sample_sizes(splits: Splits) -> SampleSizes:
    """The test split's sizes, groups and classes named as the evaluators name them."""
    test = splits.test
    labels, per_label = np.unique(np.asarray(test.y), return_counts=True)
    names = splits.class_names
    classes = {
        names[k] if 0 <= k < len(names) else str(k): int(m)
        for k, m in zip(labels.tolist(), per_label, strict=True)
    }
    groups: dict[str, int] = {}
    if test.groups is not None:
        values, per_group = np.unique(np.asarray(test.groups), return_counts=True)
        known = splits.group_names
        for value, m in zip(values.tolist(), per_group, strict=True):
            named = isinstance(value, int) and 0 <= value < len(known)
            groups[known[value] if named else str(value)] = int(m)
    return SampleSizes(test=len(test), groups=groups, classes=classes)


class PowerCheck(BaseModel):
    """What one gate's rule can decide at these sample sizes (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    gate: str
    metric: str
    rule: str
    n: int
    scope: str
    threshold: float
    floor: float | None
    impossible: bool
    discordance: float
    target_power: float
    power: float | None
    supported: float | None
    required_n: int | None
    underpowered: bool
    message: str
    seeds: int = 1
    power_all_seeds: float | None = None


def _z(two_sided: float) -> float:
    from scipy import special  # scipy.stats.norm.ppf is this ufunc (`_norm_ppf`)

    return float(special.ndtri(0.5 + two_sided / 2))


def tango_floor(n: int, two_sided: float) -> float:
    """-(lower end of Tango's interval at b = c = 0): the smallest margin that can ever pass."""
    z2 = _z(two_sided) ** 2
    return z2 / (n + z2)


def _score(b: Floats, c: Floats, n: int, delta: float) -> Floats:
    """`compressgate.evaluators.paired.tango_score`, vectorised over the counts."""
    bb = -b - c + (2.0 * n - c + b) * delta
    cc = -b * delta * (1.0 - delta)
    q = (np.sqrt(np.maximum(bb * bb - 8.0 * n * cc, 0.0)) - bb) / (4.0 * n)
    numerator = c - b - n * delta
    variance = n * (2.0 * q + delta * (1.0 - delta))
    with np.errstate(divide="ignore", invalid="ignore"):
        score = numerator / np.sqrt(variance)
    edge = np.where(numerator == 0, 0.0, np.copysign(np.inf, numerator))
    result: Floats = np.where(variance > 0, score, edge)
    return result


def pass_probability(n: int, margin: float, two_sided: float, discordance: float) -> float:
    """P(Tango's lower bound > -margin) for a truly equal candidate, (b, c) trinomial."""
    if margin <= 0:
        return 0.0
    if margin >= 1:
        return 1.0
    # Imported here: judging a recorded decision (an audit) reads this module, not scipy.stats.
    from scipy import stats

    z, half = _z(two_sided), discordance / 2
    b = np.arange(stats.binom.ppf(_TAIL, n, half), stats.binom.isf(_TAIL, n, half) + 1)
    rest = n - b
    low, high = np.full_like(b, -1.0), rest + 1  # score(low) <= z < score(high)
    while np.any(high - low > 1):
        mid = np.floor((low + high) / 2)
        ok = _score(b, np.minimum(mid, rest), n, -margin) > z
        high, low = np.where(ok, mid, high), np.where(ok, low, mid)
    passing = stats.binom.sf(high - 1, rest, half / (1 - half))
    return float(np.sum(stats.binom.pmf(b, n, half) * passing))


def _round_up(x: float) -> float:
    """The smallest number of three significant digits above x."""
    digits = 2 - math.floor(math.log10(x))
    return round((math.floor(x * 10.0**digits + 1e-9) + 1) / 10.0**digits, digits)


class _Paired:
    """A paired-count rule: passes iff Tango's bound passes in every one of `sizes`."""

    def __init__(
        self,
        sizes: Sequence[int],
        two_sided: float,
        discordance: float,
        levels: Mapping[int, float] | None = None,
    ) -> None:
        self.sizes, self.two_sided, self.discordance = Counter(sizes), two_sided, discordance
        # Each size's own two-sided level where the judge holds an exact size (at scale 1).
        self.levels = dict(levels or {})

    def power(self, margin: float, scale: float = 1.0) -> float:
        def level(m: int) -> float:
            return self.levels.get(m, self.two_sided) if scale == 1.0 else self.two_sided

        return math.prod(
            pass_probability(max(1, round(m * scale)), margin, level(m), self.discordance) ** count
            for m, count in self.sizes.items()
        )

    def supported(self, target: float) -> float | None:
        low, high = tango_floor(min(self.sizes), self.two_sided), 1.0 - 1e-9
        if self.power(high) < target:
            return None
        while high - low > 1e-7 * high:
            mid = (low + high) / 2
            low, high = (low, mid) if self.power(mid) >= target else (mid, high)
        return _round_up(high)

    def required_n(self, margin: float, target: float) -> int | None:
        """The smallest group's size (others scaled alike) from which `margin` reaches the target.

        Power saw-tooths in n (the counts are discrete): a crossing is found by bisection, and
        kept only if 24 sizes up to 20% above it reach the target too; else the search goes on
        above the dip.
        """
        n0 = min(self.sizes)

        def reaches(m: int) -> bool:
            return self.power(margin, m / n0) >= target

        low, high = 1, 8  # not from n0, so the answer does not depend on the sizes given
        while True:
            while not reaches(high):
                low, high = high, 2 * high
                if high > CAP:
                    return None
            while high - low > 1:
                mid = (low + high) // 2
                low, high = (low, mid) if reaches(mid) else (mid, high)
            probes = np.unique(np.round(np.linspace(high, 1.2 * high, 25)[1:]).astype(int))
            dips = [int(m) for m in probes if not reaches(int(m))]
            if not dips:
                return high
            low, high = dips[-1], round(1.2 * dips[-1]) + 1


# metric -> (evaluator kind, SampleSizes field, what one of them is called)
_DROPS = {
    "fairness.worst_group_accuracy_drop": ("fairness", "groups", "group"),
    "classes.worst_recall_drop": ("classes", "classes", "class"),
}
_RATES = {
    "accuracy": ("accuracy", "", ""),
    "fairness.worst_group_accuracy": ("fairness", "groups", "group"),
    "classes.worst_recall": ("classes", "classes", "class"),
}


def _message(
    what: str,
    threshold: float,
    n: int,
    unit: str,
    strict: bool,
    floor: float,
    power: float,
    target: float,
    fixes: list[str],
    assumed: str,
) -> str:
    """A paired-count gate's power line: impossible, underpowered (with its fixes), or fine."""
    if power == 0.0 and (threshold <= floor if strict else threshold < floor):
        noun = what.split()[-1]
        return (
            f"{what} {threshold:g} can never pass on {n:,} {unit}: even with no disagreement "
            f"the {noun} must {'exceed' if strict else 'be at least'} {floor:.4f}; "
            + ", ".join(fixes)
        )
    if power < target:
        return f"{what} {threshold:g} on {n:,} {unit} has {power:.0%} power {assumed}; " + (
            ", ".join(fixes)
        )
    return f"power {power:.0%} for {what} {threshold:g} on {n:,} {unit} {assumed}"


def _about(n: int) -> str:
    return f"about {int(_round_up(n - 0.5)):,}" if n >= 1000 else f"{n:,}"


def _smallest(sizes: Mapping[str, int], what: str) -> tuple[str, int]:
    name = min(sizes, key=lambda k: sizes[k])
    return f"smallest {what} '{name}'", sizes[name]


def _exact_two_sided(n: int, margin: float, alpha: float) -> float:
    """The two-sided level whose lower end holds Tango's test at exact size `alpha` on n."""
    from compressgate.gates.noninferiority import exact_alpha

    if not 0 < margin < 1:
        return 1 - 2 * alpha
    return 1 - 2 * exact_alpha(n, margin, alpha)


def _exact_required(
    n: int | None, sizes: Sequence[int], margin: float, alpha: float, plan: Planning
) -> int | None:
    """From `n`, the smallest size reaching the target at the nominal level, a size (of the
    smallest group, the others scaled alike) that reaches it at its own exact levels: never
    below `n`, as an exact level is never above the nominal one. Stepped up by 1% until it
    does (each size's exact level is a search of its own; the power saw-tooths in n): a few
    samples less may reach the target too."""
    n0 = min(sizes)
    for _ in range(40):
        if n is None or n > CAP:
            return None
        scaled = [max(1, round(m * n / n0)) for m in sizes]
        levels = {m: _exact_two_sided(m, margin, alpha) for m in set(scaled)}
        if _Paired(scaled, 0.9, plan.discordance, levels).power(margin) >= plan.power:
            return n
        n = max(n + 1, math.ceil(n * 1.01))
    return None


def check_gate(
    gate: GateSpec,
    sizes: SampleSizes,
    *,
    confidence: Mapping[str, float] | None = None,
    seeds: int = 1,
) -> PowerCheck | None:
    """The power check of `gate` at `sizes`; None for what is not analysed (module docstring).

    `confidence` maps evaluator kinds to their declared confidence (default 0.95): `bound`
    gates are judged on the evaluator's interval at that level.
    """
    plan, level = gate.planning, confidence or {}
    if gate.seeds == "mean":
        return _mean_check(gate, sizes, seeds, level.get("paired", 0.95))
    if isinstance(gate, NonInferiorGate) and gate.metric == "accuracy":
        what, threshold, two_sided = "non-inferiority margin", gate.margin, 2 * gate.confidence - 1
        scope, all_sizes, each = "test split", [sizes.test], ""
    elif (
        isinstance(gate, RelativeGate)
        and gate.metric == "accuracy"
        and gate.max_drop is not None
        and gate.max_increase is None
        and not gate.relative
        and gate.basis == "interval"
    ):
        # Judged as non_inferior on the paired counts (a drop may reach max_drop).
        c = gate.confidence if gate.confidence is not None else level.get("paired", 0.95)
        what, threshold, two_sided = "accuracy max_drop", gate.max_drop, 2 * c - 1
        scope, all_sizes, each = "test split", [sizes.test], ""
    elif not isinstance(gate, BoundGate) or gate.basis != "interval":
        return None
    elif gate.max is not None and gate.min is None and gate.metric in _DROPS:
        evaluator, field, word = _DROPS[gate.metric]
        found: dict[str, int] = getattr(sizes, field)
        if not found:
            return None
        what, threshold = f"worst-{word} drop bound", gate.max
        two_sided = 2 * level.get(evaluator, 0.95) - 1  # each group's own bound: no Bonferroni
        scope, all_sizes = _smallest(found, word)[0], list(found.values())
        each = f", every one of {len(found)} {field} passing" if len(found) > 1 else ""
    elif gate.min is not None and gate.metric in _RATES:
        return _wilson_check(gate, gate.min, sizes, level.get(_RATES[gate.metric][0], 0.95))
    else:
        return None
    # The judge holds Tango's test at its exact size in every group (`gates.noninferiority`):
    # the power, the floor and the supported margin are at the judge's levels for these sizes
    # and this threshold; the size needed is one that reaches the target at its own levels.
    alpha = 1 - (gate.confidence if isinstance(gate, NonInferiorGate) else (1 + two_sided) / 2)
    levels = {m: _exact_two_sided(m, threshold, alpha) for m in set(all_sizes)}
    judged = _Paired(all_sizes, two_sided, plan.discordance, levels)
    required = _exact_required(
        judged.required_n(threshold, plan.power), all_sizes, threshold, alpha, plan
    )
    # non_inferior passes iff lower > -margin; a bound iff the drop's upper end <= max.
    strict = isinstance(gate, NonInferiorGate)
    n = min(all_sizes)
    floor = tango_floor(n, levels[n])
    impossible = threshold <= floor if strict else threshold < floor
    power = 0.0 if impossible else judged.power(threshold)
    supported = judged.supported(plan.power)
    unit = "test samples" if scope == "test split" else f"samples in the {scope}"
    noun = what.split()[-1]
    fixes = [f"{noun} {supported:g} has {plan.power:.0%}"] if supported is not None else []
    if required is None:
        fixes.append(f"no n up to {CAP:,} does")
    else:
        fixes.append(f"or use {_about(required)} {unit}")
        if scope != "test split":
            total = _about(math.ceil(sizes.test * required / n))
            fixes[-1] += f" ({total} test samples in the same proportions)"
    assumed = f"(assuming {100 * plan.discordance:.3g}% discordance{each})"
    message = _message(what, threshold, n, unit, strict, floor, power, plan.power, fixes, assumed)
    # Under `every`, all seeds must pass: their verdicts on one shared test split are positively
    # associated (Harris), so the per-seed power to the k-th is a floor of it, and the figure
    # for test splits drawn apart (`every_seed_pass_probability` for a planned overlap).
    all_seeds = power**seeds if gate.seeds == "every" and seeds > 1 and not impossible else None
    if all_seeds is not None:
        message += f"; all {seeds} seeds passing: at least {all_seeds:.0%}"
    return PowerCheck(
        gate=gate.name,
        metric=gate.metric,
        rule=gate.rule,
        n=n,
        scope=scope,
        threshold=threshold,
        floor=floor,
        impossible=impossible,
        power=power,
        supported=supported,
        required_n=required,
        underpowered=impossible or power < plan.power,
        discordance=plan.discordance,
        target_power=plan.power,
        message=message,
        seeds=seeds if gate.seeds == "every" else 1,
        power_all_seeds=all_seeds,
    )


def mean_pass_probability(
    n: int, margin: float, two_sided: float, discordance: float, seeds: int
) -> float | None:
    """The power of a `seeds: mean` gate on accuracy's paired difference for a truly equal
    candidate, k seeds sharing one test split of n samples (the seeds × samples interval,
    `compressgate.evaluators.seeds.crossed_mean`, at two-sided `two_sided`): a floor of it.

    When the seeds agree on every sample the interval is Tango's on one seed's counts, so the
    power is exactly `pass_probability`. When they disagree, the mean is less noisy (it averages
    k seeds' differences) but the seeds' variance is known to k - 1 degrees of freedom only;
    simulated with k = 3 on 450 samples at 2% discordance, less agreement gave more power
    (82% when the seeds agree, 83-88% when they share a sign on half the disagreements or on
    none), so with 3 seeds or more the agreeing case is the least favourable and its power the
    floor given. With 2 seeds a t on 1 degree of freedom can take most of it (61% where the
    seeds agreed gave 85%): None, not known.
    """
    if seeds < 3:
        return None
    return pass_probability(n, margin, two_sided, discordance)


def _mean_check(
    gate: GateSpec, sizes: SampleSizes, seeds: int, confidence: float
) -> PowerCheck | None:
    """The power of `seeds: mean` on accuracy's paired difference (`mean_pass_probability`,
    at the least favourable agreement between seeds)."""
    if seeds < 2 or gate.metric != "accuracy":
        return None
    if isinstance(gate, NonInferiorGate):
        what, threshold, c, strict = "non-inferiority margin", gate.margin, gate.confidence, True
    elif (
        isinstance(gate, RelativeGate)
        and gate.max_drop is not None
        and gate.max_increase is None
        and not gate.relative
        and gate.basis == "interval"
    ):
        c = gate.confidence if gate.confidence is not None else confidence
        what, threshold, strict = "accuracy max_drop", gate.max_drop, False
    else:
        return None
    plan, n, alpha = gate.planning, sizes.test, 1 - c
    level = _exact_two_sided(n, threshold, alpha)  # as the judge (gates.review._mean)
    floor = tango_floor(n, level)  # no disagreement at all: Tango's interval at b = c = 0
    impossible = threshold <= floor if strict else threshold < floor
    unit = f"test samples shared by {seeds} seeds"
    noun = what.split()[-1]
    found = mean_pass_probability(n, threshold, level, plan.discordance, seeds)
    if found is None:
        power: float | None = None
        supported, required = None, None
        message = (
            f"{what} {threshold:g} on the mean of {seeds} seeds: power not known (the seeds' "
            "variance is known to 1 degree of freedom: simulated, the power fell to 61% where "
            "one seed's was 85%); use 3 seeds or more, or 'seeds: every'"
        )
        underpowered = True
    else:
        # The agreeing case is one seed's Tango test at the judge's level: as for one seed.
        single = _Paired([n], level, plan.discordance, {n: level})
        power = 0.0 if impossible else found
        supported = single.supported(plan.power)
        required = _exact_required(
            _Paired([n], 1 - 2 * alpha, plan.discordance).required_n(threshold, plan.power),
            [n],
            threshold,
            alpha,
            plan,
        )
        fixes = [f"{noun} {supported:g} has {plan.power:.0%}"] if supported is not None else []
        fixes.append(
            f"or use {_about(required)} {unit}" if required else f"no n up to {CAP:,} does"
        )
        assumed = (
            f"(mean of {seeds} seeds, assuming {100 * plan.discordance:.3g}% discordance "
            "per seed; at least this whatever the seeds' agreement)"
        )
        message = _message(
            what, threshold, n, unit, strict, floor, power, plan.power, fixes, assumed
        )
        underpowered = impossible or power < plan.power
    return PowerCheck(
        gate=gate.name,
        metric=gate.metric,
        rule=gate.rule,
        n=n,
        scope="test split",
        threshold=threshold,
        floor=floor,
        impossible=impossible,
        power=power,
        supported=supported,
        required_n=required,
        underpowered=underpowered,
        discordance=plan.discordance,
        target_power=plan.power,
        message=message,
        seeds=seeds,
    )


def _wilson_check(
    gate: BoundGate, minimum: float, sizes: SampleSizes, confidence: float
) -> PowerCheck | None:
    """The floor of a `min` bound on a Wilson interval: its lower end with every sample right."""
    _, field, word = _RATES[gate.metric]
    if field:
        found: dict[str, int] = getattr(sizes, field)
        if not found:
            return None
        (scope, n), two_sided = _smallest(found, word), 2 * confidence - 1
    else:
        scope, n, two_sided = "test split", sizes.test, 2 * confidence - 1
    floor = wilson_interval(n, n, two_sided)[0]
    impossible = minimum > floor
    unit = "test samples" if field == "" else f"samples in the {scope}"
    if impossible:
        z2 = _z(two_sided) ** 2
        fix = (
            f"use {_about(math.ceil(z2 * minimum / (1 - minimum)))} {unit}"
            if minimum < 1
            else ("no sample size can show 1")
        )
        message = (
            f"minimum {minimum:g} on {gate.metric} can never pass on {n:,} {unit}: even with "
            f"every sample right the {two_sided:.4g} Wilson lower bound is {floor:.4f}; {fix}"
        )
    else:
        message = (
            f"minimum {minimum:g} on {gate.metric} can pass on {n:,} {unit} (Wilson lower bound "
            f"{floor:.4f} with every sample right); power depends on the true value, not analysed"
        )
    plan = gate.planning
    return PowerCheck(
        gate=gate.name,
        metric=gate.metric,
        rule=gate.rule,
        n=n,
        scope=scope,
        threshold=minimum,
        floor=floor,
        impossible=impossible,
        discordance=plan.discordance,
        target_power=plan.power,
        power=None,
        supported=None,
        required_n=None,
        underpowered=impossible,
        message=message,
    )


def check_gates(recipe: Recipe, sizes: SampleSizes) -> dict[str, PowerCheck | None]:
    """Every gate's power check at `sizes`, with its evaluators' confidences (None: a rule no
    power analysis applies to). The engine records these with each gate's decision."""
    confidence = {spec.kind: spec.confidence for spec in recipe.evaluator_specs()}
    k = len(recipe.seeds)
    return {
        gate.name: check_gate(gate, sizes, confidence=confidence, seeds=k) for gate in recipe.gates
    }


def check_recipe(
    recipe: Recipe,
    sizes: SampleSizes,
    checks: Mapping[str, PowerCheck | None] | None = None,
) -> list[PowerCheck]:
    """The power checks of a recipe's analysable gates, with its evaluators' confidences
    (`checks`: `check_gates`'s, if computed already).

    A `non_inferior` accuracy gate is judged on the paired counts only when the `paired`
    evaluator runs (else on the Wilson interval against the baseline's estimate): without it,
    it is not analysed.
    """
    paired = any(spec.kind == "paired" for spec in recipe.evaluator_specs())
    if checks is None:
        checks = check_gates(recipe, sizes)
    return [
        check
        for gate in recipe.gates
        if (check := checks[gate.name]) is not None
        and (paired or not isinstance(gate, NonInferiorGate))
    ]


def every_seed_pass_probability(
    n: int,
    margin: float,
    two_sided: float,
    discordance: float,
    seeds: int,
    *,
    overlap: float | None = None,
) -> float:
    """P(all `seeds` pass a `non_inferior` accuracy gate) for a truly equal candidate, when the
    seeds share one test split of `n` samples (`seeds: every`).

    The seeds' verdicts are then dependent through the test samples they share. Planning model:
    a test sample is fragile with probability `discordance / overlap`; each seed's candidate
    disagrees with its baseline on a fragile sample with probability `overlap` (independently
    across seeds, either way with probability 1/2), never on another. So each seed disagrees on
    `discordance` of the samples, and a sample one seed disagrees on is disagreed on by another
    with probability `overlap`. Given the number F of fragile samples the seeds' counts are
    independent: P(all pass) = E_F[P(pass | F)^k], computed exactly (binomial tails under 1e-10
    left out). `overlap` = `discordance` (or None) is no sharing: the per-seed power to the
    k-th, which is also what disjoint test splits give; `overlap` = 1 is every seed disagreeing
    on the same samples. By Harris's inequality (the verdicts are increasing functions of
    independent draws) the power is never below the per-seed power to the k-th: that is the
    safe figure when the overlap is not known.
    """
    from scipy import stats

    if seeds < 1:
        raise ValueError("seeds must be at least 1")
    q = discordance if overlap is None else overlap
    if not discordance <= q <= 1:
        raise ValueError(f"overlap must lie in [discordance, 1], got {q}")
    if margin <= 0:
        return 0.0
    if margin >= 1:
        return 1.0
    z = _z(two_sided)
    fragile = discordance / q
    f_low = int(stats.binom.ppf(_TAIL, n, fragile))
    f_high = int(stats.binom.isf(_TAIL, n, fragile)) + 1
    # P(pass | m discordant pairs): passing b (baseline-only) are b <= b*(m), the score at
    # -margin falling as b rises with b + c = m fixed.
    m = np.arange(0, f_high + 1, dtype=np.float64)
    low, high = np.full_like(m, -1.0), m + 1  # passes at b = low (or none), fails at b = high
    while np.any(high - low > 1):
        mid = np.floor((low + high) / 2)
        ok = _score(mid, m - mid, n, -margin) > z
        low, high = np.where(ok, mid, low), np.where(ok, high, mid)
    given_m = np.where(low >= 0, stats.binom.cdf(low, m, 0.5), 0.0)
    total = 0.0
    for f in range(max(f_low, 0), f_high + 1):
        weights = stats.binom.pmf(np.arange(f + 1), f, q)
        each = float(np.sum(weights * given_m[: f + 1]))
        total += float(stats.binom.pmf(f, n, fragile)) * each**seeds
    return min(total, 1.0)
