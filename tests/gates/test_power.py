"""Power checks of gates: floors, exact powers, supported margins and sample sizes.

The exact powers are checked against the evaluators' own Tango interval (full enumeration and
Monte Carlo through `non_inferiority_counts` and the fairness evaluator's per-group estimates),
the floors against `tango_interval` and scipy's Wilson interval.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from compressgate.evaluators.base import extreme
from compressgate.evaluators.paired import drop_estimate, non_inferiority_counts, tango_interval
from compressgate.evaluators.results import Estimate, FairnessResult, GroupRow
from compressgate.gates.noninferiority import exact_alpha
from compressgate.gates.power import (
    SampleSizes,
    check_gate,
    check_recipe,
    pass_probability,
    sample_sizes,
)
from compressgate.gates.power import tango_floor as floor_of
from compressgate.gates.verdicts import judge
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.manifest import (
    BoundGate,
    GateSpec,
    NonInferiorGate,
    Planning,
    Recipe,
    RelativeGate,
)
from tests.helpers.statsim.accuracy import ACCURACY, paired_result

EXAMPLE = Path(__file__).parents[2] / "recipes" / "examples" / "digits.yaml"


def non_inferior(
    margin: float, *, discordance: float = 0.02, confidence: float = 0.95, **extra: str
) -> NonInferiorGate:
    return NonInferiorGate.model_validate(
        {
            "name": "accuracy",
            "owner": "ml-lead",
            "metric": "accuracy",
            "margin": margin,
            "confidence": confidence,
            "planning": Planning(discordance=discordance),
            **extra,
        }
    )


def bound(metric: str, **limits: float | str) -> BoundGate:
    return BoundGate.model_validate({"name": "b", "owner": "o", "metric": metric, **limits})


def power_of(
    n: int, margin: float, discordance: float = 0.02, confidence: float = 0.95, *, at: float = 0
) -> float:
    """The power of the judge's test: at the level that holds its exact size for `n` samples
    and the margin `at` (`margin` itself by default)."""
    level = 1 - 2 * exact_alpha(n, at or margin, 1 - confidence)
    return pass_probability(n, margin, level, discordance)


# --- floors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "confidence", "expected"),
    [(450, 0.95, 0.0063), (450, 0.975, 0.0085), (400, 0.95, 0.0067)],
)
def test_the_floor_is_tangos_lower_bound_with_no_disagreement(
    n: int, confidence: float, expected: float
) -> None:
    check = check_gate(non_inferior(0.02, confidence=confidence), SampleSizes(test=n))
    assert check is not None and check.floor is not None
    # At the level the judge uses: the one that holds the test's exact size.
    level = 1 - 2 * exact_alpha(n, 0.02, 1 - confidence)
    assert check.floor == pytest.approx(-tango_interval(0, 0, n, level)[0], abs=1e-9)
    assert check.floor == pytest.approx(expected, abs=5e-5)


# --- the facts pinned -------------------------------------------------------------------------


# (n, discordance, margin): power, supported margin, required n
PINNED = {
    # at 450 samples the nominal test passes too often at the boundary: the judge's (and
    # these) run at the level that holds its exact size (gates.noninferiority)
    # The size needed is the one that reaches 80% at its own exact level.
    (450, 0.02, 0.01): (0.3686, 0.0189, 1354),
    (450, 0.02, 0.02): (0.8234, 0.0192, 411),
    (450, 0.01, 0.01): (0.5346, 0.0148, 813),
    (450, 0.01, 0.02): (0.9476, 0.0150, 290),
    (400, 0.02, 0.01): (0.3649, 0.0201, 1354),
    (400, 0.02, 0.02): (0.7992, 0.0201, 411),
    (400, 0.01, 0.01): (0.4839, 0.0157, 813),
    (400, 0.01, 0.02): (0.9476, 0.0156, 290),
}


@pytest.mark.parametrize(("case", "expected"), PINNED.items())
def test_pinned_powers_supported_margins_and_sample_sizes(
    case: tuple[int, float, float], expected: tuple[float, float, int]
) -> None:
    n, discordance, margin = case
    check = check_gate(non_inferior(margin, discordance=discordance), SampleSizes(test=n))
    assert check is not None and check.power is not None
    power, supported, required = expected
    assert check.power == pytest.approx(power, abs=1e-4)
    assert (check.supported, check.required_n) == (supported, required)
    assert not check.impossible
    assert check.underpowered == (check.power < 0.8)


def test_one_point_at_450_is_possible_but_underpowered_and_two_points_are_fine() -> None:
    one = check_gate(non_inferior(0.01), SampleSizes(test=450))
    two = check_gate(non_inferior(0.02), SampleSizes(test=450))
    assert one is not None and two is not None
    assert not one.impossible and one.underpowered
    assert one.message == (
        "non-inferiority margin 0.01 on 450 test samples has 37% power (assuming 2% "
        "discordance); margin 0.0189 has 80%, or use about 1,360 test samples"
    )
    assert not two.underpowered and two.power is not None and 0.8 < two.power < 0.9
    assert two.message.startswith("power 82% for non-inferiority margin 0.02 on 450 test samples")


# --- exactness --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "margin", "confidence", "discordance"), [(60, 0.05, 0.95, 0.2), (40, 0.1, 0.975, 0.3)]
)
def test_exact_power_equals_full_enumeration_with_the_evaluators_interval(
    n: int, margin: float, confidence: float, discordance: float
) -> None:
    half = discordance / 2
    total = 0.0
    alpha = exact_alpha(n, margin, 1 - confidence)  # the judge's level
    for b in range(n + 1):
        for c in range(n - b + 1):
            if non_inferiority_counts(b, c, n, margin=margin, alpha=alpha).passed:
                total += stats.multinomial.pmf([b, c, n - b - c], n, [half, half, 1 - 2 * half])
    assert power_of(n, margin, discordance, confidence) == pytest.approx(total, abs=1e-9)


def _monte_carlo(passes: Callable[[int, int], bool], n: int, d: float, runs: int) -> float:
    rng = np.random.default_rng(20261124)
    counts = rng.multinomial(n, [d / 2, d / 2, 1 - d], size=runs)
    return float(np.mean([passes(int(b), int(c)) for b, c, _ in counts]))


def test_exact_power_agrees_with_monte_carlo_through_the_real_interval() -> None:
    n, margin, runs = 450, 0.01, 4000
    gate = non_inferior(margin)

    @cache
    def passes(b: int, c: int) -> bool:  # through the judge itself
        evidence = {"paired": paired_result(b, c, n)}
        return judge(gate, {"accuracy": ACCURACY}, {}, evidence).verdict == "pass"

    exact = power_of(n, margin)
    simulated = _monte_carlo(passes, n, 0.02, runs)
    assert abs(simulated - exact) < 3 * math.sqrt(exact * (1 - exact) / runs)


def test_group_power_agrees_with_monte_carlo_through_the_fairness_estimates_and_judge() -> None:
    """Two groups (200 and 300 samples): drops as the fairness evaluator computes them, the
    worst as it reports it, judged by `judge`."""
    gate = bound("fairness.worst_group_accuracy_drop", max=0.04)
    sizes = SampleSizes(test=500, groups={"a": 200, "b": 300})
    check = check_gate(gate, sizes)
    assert check is not None and check.power is not None and check.n == 200
    each = 2 * 0.95 - 1  # each group's own interval at 2c - 1 (the upper end needs no Bonferroni)

    @cache
    def drop(b: int, c: int, m: int) -> Estimate:
        return drop_estimate(b, c, m, each, "tango")

    def passes(counts_a: tuple[int, int], counts_b: tuple[int, int]) -> bool:
        drops = [drop(*counts_a, 200), drop(*counts_b, 300)]
        worst = extreme(drops, lowest=False, n=500, confidence=0.9, method="max")
        metrics = {gate.metric: worst}
        # the judge reads each group's counts, as the fairness evaluator records them
        rows = [
            GroupRow.model_construct(name=name, n=m, b=counts[0], c=counts[1])
            for name, m, counts in (("a", 200, counts_a), ("b", 300, counts_b))
        ]
        fairness = FairnessResult.model_construct(groups=rows)
        return judge(gate, metrics, {}, {"fairness": fairness}).verdict == "pass"

    rng = np.random.default_rng(7)
    runs = 2000
    a = rng.multinomial(200, [0.01, 0.01, 0.98], size=runs)
    b = rng.multinomial(300, [0.01, 0.01, 0.98], size=runs)
    rate = np.mean([passes((x[0], x[1]), (y[0], y[1])) for x, y in zip(a, b, strict=True)])
    assert abs(rate - check.power) < 3 * math.sqrt(check.power * (1 - check.power) / runs)
    alone = [
        pass_probability(m, 0.04, 1 - 2 * exact_alpha(m, 0.04, 0.05), 0.02) for m in (200, 300)
    ]
    assert check.power == pytest.approx(alone[0] * alone[1], rel=1e-12)
    own = 1 - 2 * exact_alpha(200, 0.04, 0.05)
    assert check.floor == pytest.approx(-tango_interval(0, 0, 200, own)[0], abs=1e-9)


# --- supported margins, required sizes, monotonicity ------------------------------------------


@pytest.mark.parametrize("n", [200, 450, 2000])
def test_the_supported_margin_reaches_the_target_and_a_slightly_smaller_one_does_not(
    n: int,
) -> None:
    check = check_gate(non_inferior(0.01), SampleSizes(test=n))
    assert check is not None and check.supported is not None
    step = 10 ** (math.floor(math.log10(check.supported)) - 2)
    # searched at the judge's level for this n and the gate's margin
    supported = check.supported
    assert power_of(n, supported, at=0.01) >= 0.8 > power_of(n, supported - step, at=0.01)


@pytest.mark.parametrize(("margin", "discordance"), [(0.01, 0.02), (0.02, 0.05), (0.005, 0.01)])
def test_the_required_size_reaches_the_target_and_two_percent_less_does_not(
    margin: float, discordance: float
) -> None:
    check = check_gate(non_inferior(margin, discordance=discordance), SampleSizes(test=300))
    assert check is not None and check.required_n is not None
    # each at its own exact level; the search is at the nominal level then at the exact level
    # of the size found (not at every size), so a few samples less may reach it too, 2% not
    assert power_of(check.required_n, margin, discordance) >= 0.8
    assert power_of(round(0.98 * check.required_n), margin, discordance) < 0.8
    # It does not depend on the sample size checked.
    again = check_gate(non_inferior(margin, discordance=discordance), SampleSizes(test=9000))
    assert again is not None and again.required_n == check.required_n


def test_more_samples_give_more_power_and_a_smaller_floor() -> None:
    checks = [check_gate(non_inferior(0.015), SampleSizes(test=n)) for n in (100, 200, 400, 800)]
    powers = [c.power for c in checks if c is not None and c.power is not None]
    floors = [c.floor for c in checks if c is not None and c.floor is not None]
    assert powers == sorted(powers) and len(set(powers)) == 4
    assert floors == sorted(floors, reverse=True) and len(set(floors)) == 4


def test_more_discordance_gives_less_power() -> None:
    powers = [power_of(450, 0.02, d) for d in (0.005, 0.01, 0.02, 0.05)]
    assert powers == sorted(powers, reverse=True)


# --- impossible gates -------------------------------------------------------------------------


def test_a_margin_below_the_floor_can_never_pass() -> None:
    check = check_gate(non_inferior(0.01, confidence=0.995), SampleSizes(test=200))
    assert check is not None and check.floor is not None
    assert check.impossible and check.underpowered and check.power == 0.0
    assert check.floor == pytest.approx(-tango_interval(0, 0, 200, 0.99)[0], abs=1e-9)
    assert "can never pass on 200 test samples" in check.message
    assert check.supported is not None and check.supported > check.floor
    assert check.required_n is not None and check.required_n > 200
    # No dataset of that size passes it, not even one without disagreement.
    assert not non_inferiority_counts(0, 0, 200, margin=0.01, alpha=0.005).passed


def test_a_worst_class_drop_bound_below_the_smallest_class_floor_is_impossible() -> None:
    sizes = SampleSizes(test=1000, classes={str(k): 100 for k in range(10)} | {"8": 40})
    check = check_gate(bound("classes.worst_recall_drop", max=0.05), sizes)
    assert check is not None and check.impossible and check.n == 40
    assert check.scope == "smallest class '8'"
    # the class's own bound (no Bonferroni), at the level holding its exact size on 40 samples
    each = 1 - 2 * exact_alpha(40, 0.05, 0.05)
    assert check.floor == pytest.approx(-tango_interval(0, 0, 40, each)[0], abs=1e-9)
    assert "in the smallest class '8'" in check.message


@pytest.mark.parametrize(("minimum", "impossible"), [(0.995, True), (0.99, False)])
def test_a_minimum_accuracy_above_the_all_correct_wilson_bound_is_impossible(
    minimum: float, impossible: bool
) -> None:
    check = check_gate(bound("accuracy", min=minimum), SampleSizes(test=450))
    # The evaluator's interval at 2c - 1: each end a one-sided 95% bound.
    reference = stats.binomtest(450, 450).proportion_ci(0.9, method="wilson").low
    assert check is not None and check.floor == pytest.approx(reference, abs=1e-12)
    assert (check.impossible, check.underpowered) == (impossible, impossible)
    assert check.power is None and check.supported is None


def test_a_minimum_worst_group_accuracy_uses_the_smallest_group_s_own_bound() -> None:
    sizes = SampleSizes(test=600, groups={"female": 150, "male": 450})
    check = check_gate(bound("fairness.worst_group_accuracy", min=0.99), sizes)
    # The lower end of the worst group's accuracy: each group's own 2c - 1 interval (0.982 at
    # 150 of 150 right; the former Bonferroni level gave 0.975).
    reference = stats.binomtest(150, 150).proportion_ci(0.9, method="wilson").low
    assert check is not None and check.impossible and check.floor == pytest.approx(reference)
    assert check.scope == "smallest group 'female'"


# --- what is not analysed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "gate",
    [
        bound("latency.speedup_p50", min=1.5),
        bound("calibration.ece", max=0.05),
        bound("size.ratio", max=0.5),
        bound("fairness.worst_group_accuracy_drop", max=0.03, basis="estimate"),
        RelativeGate(name="r", owner="o", metric="accuracy", max_drop=0.02, relative=True),
        RelativeGate(name="r", owner="o", metric="accuracy", max_increase=0.02),
        NonInferiorGate(name="f", owner="o", metric="fidelity.agreement", margin=0.02),
        non_inferior(0.02, seeds="mean"),  # one seed: no mean to analyse
    ],
)
def test_unanalysable_gates_and_seeds_mean_give_none(gate: GateSpec) -> None:
    assert check_gate(gate, SampleSizes(test=450, groups={"a": 200}, classes={"0": 45})) is None


def test_a_relative_accuracy_drop_is_the_non_inferiority_test_and_may_reach_its_limit() -> None:
    sizes = SampleSizes(test=450)
    drop = check_gate(RelativeGate(name="r", owner="o", metric="accuracy", max_drop=0.02), sizes)
    same = check_gate(non_inferior(0.02), sizes)
    assert drop is not None and same is not None
    assert (drop.power, drop.floor, drop.supported) == (same.power, same.floor, same.supported)
    assert drop.message.startswith("power 82% for accuracy max_drop 0.02 on 450 test samples")
    assert not drop.impossible and drop.required_n == same.required_n


def test_seeds_mean_has_the_agreeing_seeds_power_with_three_seeds_and_none_with_two() -> None:
    """With the seeds agreeing on every sample the mean's interval is one seed's Tango interval;
    with 3 seeds or more that is the least favourable case (tests/helpers/statsim/seeds.py)."""
    gate = non_inferior(0.02, seeds="mean")
    three = check_gate(gate, SampleSizes(test=450), seeds=3)
    one = check_gate(non_inferior(0.02), SampleSizes(test=450))
    assert three is not None and one is not None and three.power is not None
    assert three.power == pytest.approx(one.power, abs=1e-12) and three.seeds == 3
    assert (three.required_n, three.supported) == (one.required_n, one.supported)
    assert "whatever the seeds' agreement" in three.message and not three.underpowered
    two = check_gate(gate, SampleSizes(test=450), seeds=2)
    assert two is not None and two.power is None and two.underpowered
    assert "use 3 seeds or more" in two.message


def test_group_gates_without_group_sizes_give_none() -> None:
    assert (
        check_gate(bound("fairness.worst_group_accuracy_drop", max=0.03), SampleSizes(test=9))
        is None
    )
    assert check_gate(bound("classes.worst_recall_drop", max=0.03), SampleSizes(test=9)) is None


# --- recipes and splits -----------------------------------------------------------------------


def test_sample_sizes_name_groups_and_classes_as_the_evaluators_do() -> None:
    import torch  # here, not at collection: it takes seconds to import

    y = torch.tensor([0, 1, 1, 2, 2, 2])
    split = Split(x=torch.zeros(6, 1), y=y, groups=torch.tensor([0, 0, 1, 1, 1, 7]))
    splits = Splits(split, split, split, class_names=("zero", "one"), group_names=("f", "m"))
    assert sample_sizes(splits) == SampleSizes(
        test=6, groups={"f": 2, "m": 3, "7": 1}, classes={"zero": 1, "one": 2, "2": 3}
    )


def test_the_reference_recipe_gates_have_their_planned_power_and_0_03_would_not() -> None:
    recipe = Recipe.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    sizes = SampleSizes(test=450, groups={"first-half": 203, "second-half": 247})
    checks = {check.gate: check for check in check_recipe(recipe, sizes)}
    assert set(checks) == {"prune-accuracy", "accuracy", "fairness"}
    assert not any(check.underpowered for check in checks.values())
    # 85% at the nominal level; 82% at the one that holds the test's exact size at 450
    assert checks["accuracy"].power == pytest.approx(0.8234, abs=1e-4)
    assert (checks["fairness"].power or 0) >= 0.8
    # The fairness bound it had before: ~200 samples per group cannot show 3 points.
    gates = tuple(
        g.model_copy(update={"max": 0.03}) if g.name == "fairness" else g for g in recipe.gates
    )
    fairness = check_gate(recipe.model_copy(update={"gates": gates}).gates[2], sizes)
    assert fairness is not None
    assert fairness.underpowered and not fairness.impossible and fairness.n == 203
    # Each group's own bound (no Bonferroni over the 2 groups, which gave 46% and 0.0396), at
    # the level holding its exact size (70% and 0.034 at the nominal level).
    assert fairness.power == pytest.approx(0.6505, abs=1e-4)
    assert fairness.supported == pytest.approx(0.0346, abs=1e-4)
    # The evaluator's confidence sets a bound's interval, not the gate's.
    stricter = [
        spec.model_copy(update={"confidence": 0.99}) if spec.kind == "fairness" else spec
        for spec in recipe.evaluators
    ]
    worse = check_recipe(recipe.model_copy(update={"evaluators": tuple(stricter)}), sizes)
    assert next(c.power or 0 for c in worse if c.gate == "fairness") < (
        checks["fairness"].power or 0
    )


def test_without_a_declared_paired_evaluator_a_non_inferior_accuracy_gate_is_still_analysed() -> (
    None
):
    """A classifier's evaluators always include the paired comparison (accuracy gates are
    judged on its counts), declared or not."""
    recipe = Recipe.model_validate(yaml.safe_load(EXAMPLE.read_text()))
    unpaired = tuple(spec for spec in recipe.evaluators if spec.kind != "paired")
    checks = check_recipe(recipe.model_copy(update={"evaluators": unpaired}), SampleSizes(test=450))
    assert [c.gate for c in checks] == ["prune-accuracy", "accuracy"]


def test_a_check_works_at_any_size() -> None:
    supported = []
    for n in (450, 10_000, 200_000):
        check = check_gate(non_inferior(0.01), SampleSizes(test=n))
        assert check is not None and check.supported is not None
        supported.append(check.supported)
    assert supported == sorted(supported, reverse=True)  # more samples show smaller margins


def test_floor_formula_matches_tango_over_a_range() -> None:
    for n in (1, 10, 57, 1000, 10**6):
        for level in (0.8, 0.9, 0.99):
            assert floor_of(n, level) == pytest.approx(-tango_interval(0, 0, n, level)[0], abs=1e-9)
