"""Group fairness metrics against fairlearn.

The demographic parity, equalized odds and equal opportunity differences are compared with
fairlearn's functions of the same names, and per-group accuracy with fairlearn's
`MetricFrame(metrics=accuracy_score).by_group`, on seeded random datasets with two and three
groups whose labels are ints or strings. The rule for a group whose rate is undefined (left
out) is checked by hand, and non-binary or misshapen input must raise ValueError.

The change in a gap from the baseline is bounded by the spread of the groups' paired changes:
the inequality |gap_c - gap_b| <= max_g δ_g - min_g δ_g, on which its interval rests, is checked
with fairlearn's differences on random and on adversarial data (a fair baseline, where it is
tight); the MOVER bound over group pairs by hand; and a candidate equal to its baseline, or a
rate defined in one group only, by what they must give.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import fairlearn.metrics as flm
import numpy as np
import pytest
from sklearn.metrics import accuracy_score

from compressgate.evaluators import (
    demographic_parity_difference,
    equal_opportunity_difference,
    equalized_odds_difference,
    group_accuracy,
)
from compressgate.evaluators.fairness import gap_changes, spread_bound

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], float]

PAIRS: list[tuple[Metric, Callable[..., float]]] = [
    (demographic_parity_difference, flm.demographic_parity_difference),
    (equalized_odds_difference, flm.equalized_odds_difference),
    (equal_opportunity_difference, flm.equal_opportunity_difference),
]

GROUP_NAMES = {
    ("int", 2): np.array([0, 1]),
    ("int", 3): np.array([3, 7, 11]),
    ("str", 2): np.array(["female", "male"]),
    ("str", 3): np.array(["a", "b", "c"]),
}


def dataset(
    seed: int, kind: str, n_groups: int, n: int = 400, classes: int = 2
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, predictions and groups, with base and error rates that differ between groups."""
    rng = np.random.default_rng(seed)
    names = GROUP_NAMES[(kind, n_groups)]
    codes = rng.integers(0, n_groups, size=n)
    base = rng.uniform(0.2, 0.8, size=n_groups)
    error = rng.uniform(0.05, 0.4, size=n_groups)
    if classes == 2:
        y = (rng.random(n) < base[codes]).astype(np.int64)
        flip = rng.random(n) < error[codes]
        p = np.where(flip, 1 - y, y)
    else:
        y = rng.integers(0, classes, size=n)
        wrong = rng.random(n) < error[codes]
        p = np.where(wrong, (y + rng.integers(1, classes, size=n)) % classes, y)
    groups = names[codes]
    # Every group must have positives and negatives so that every rate is defined; fairlearn
    # and the code under test treat undefined rates differently (tested separately below).
    for g in names:
        assert 0 < (y[groups == g] == 1).sum() < (groups == g).sum()
    return y, p, groups


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda f: getattr(f, "__name__", ""))
def test_differences_match_fairlearn(
    seed: int, kind: str, n_groups: int, ours: Metric, theirs: Callable[..., float]
) -> None:
    y, p, groups = dataset(seed, kind, n_groups)
    expected = theirs(y, p, sensitive_features=groups)
    got = ours(y, p, groups)
    assert isinstance(got, float)
    assert got > 0.0
    assert got == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("kind", ["int", "str"])
@pytest.mark.parametrize("n_groups", [2, 3])
@pytest.mark.parametrize("classes", [2, 4])
def test_group_accuracy_matches_fairlearn_metric_frame(
    seed: int, kind: str, n_groups: int, classes: int
) -> None:
    y, p, groups = dataset(seed, kind, n_groups, classes=classes)
    frame = flm.MetricFrame(metrics=accuracy_score, y_true=y, y_pred=p, sensitive_features=groups)
    expected = {key: float(value) for key, value in frame.by_group.items()}
    got = group_accuracy(y, p, groups)
    assert set(got) == set(expected)
    assert all(type(key) is {"int": int, "str": str}[kind] for key in got)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, abs=1e-12)


def test_differences_are_zero_for_identical_groups() -> None:
    y = np.array([0, 1, 1, 0, 0, 1, 1, 0])
    p = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    groups = np.array(["x"] * 4 + ["y"] * 4)
    for ours, theirs in PAIRS:
        assert ours(y, p, groups) == 0.0
        assert theirs(y, p, sensitive_features=groups) == 0.0


def test_a_group_without_positives_is_left_out_of_the_true_positive_rate() -> None:
    # Group a: TPR 1/2, FPR 1/2; group b: TPR 1, FPR 0; group c: no positives, FPR 1.
    y = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    p = np.array([1, 0, 1, 0, 1, 0, 1, 1])
    groups = np.array(["a", "a", "a", "a", "b", "b", "c", "c"])
    assert equal_opportunity_difference(y, p, groups) == pytest.approx(0.5, abs=1e-12)
    assert equalized_odds_difference(y, p, groups) == pytest.approx(1.0, abs=1e-12)
    # Selection rates 1/2, 1/2, 1.
    assert demographic_parity_difference(y, p, groups) == pytest.approx(0.5, abs=1e-12)


def test_a_single_group_has_no_difference() -> None:
    y = np.array([0, 1, 1, 0])
    p = np.array([1, 1, 0, 0])
    groups = np.zeros(4, dtype=int)
    for ours, _ in PAIRS:
        assert ours(y, p, groups) == 0.0


@pytest.mark.parametrize(
    ("y", "p"),
    [
        (np.array([0, 1, 2, 1]), np.array([0, 1, 1, 1])),
        (np.array([0, 1, 1, 1]), np.array([0, 1, -1, 1])),
        (np.array([0.0, 1.0, 0.5, 1.0]), np.array([0, 1, 1, 1])),
        (np.array([True, False, True, True]), np.array([0, 1, 1, 3])),
    ],
)
def test_non_binary_labels_or_predictions_raise_value_error(y: np.ndarray, p: np.ndarray) -> None:
    groups = np.array([0, 0, 1, 1])
    for ours, _ in PAIRS:
        with pytest.raises(ValueError, match="binary"):
            ours(y, p, groups)


@pytest.mark.parametrize(
    ("y", "p", "groups"),
    [
        (np.array([0, 1, 1]), np.array([0, 1, 1, 0]), np.array([0, 0, 1, 1])),
        (np.array([0, 1, 1, 0]), np.array([0, 1, 1, 0]), np.array([0, 0, 1])),
        (np.array([[0, 1], [1, 0]]), np.array([[0, 1], [1, 0]]), np.array([[0, 0], [1, 1]])),
    ],
)
def test_misshapen_input_raises_value_error(
    y: np.ndarray, p: np.ndarray, groups: np.ndarray
) -> None:
    for metric in (*(ours for ours, _ in PAIRS), group_accuracy):
        with pytest.raises(ValueError, match="1-D"):
            metric(y, p, groups)


# --- changes in the gaps ----------------------------------------------------------------------


def group_changes(base: np.ndarray, cand: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Each group's rate of 1 in `cand` minus that in `base` (the same samples)."""
    return np.array(
        [cand[groups == v].mean() - base[groups == v].mean() for v in np.unique(groups)]
    )


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("n_groups", [2, 3])
def test_a_gap_changes_by_at_most_the_spread_of_the_groups_changes(
    seed: int, n_groups: int
) -> None:
    y, base, groups = dataset(seed, "int", n_groups)
    rng = np.random.default_rng(100 + seed)
    cand = np.where(rng.random(y.size) < rng.uniform(0.02, 0.3), 1 - base, base)
    dp = flm.demographic_parity_difference
    change = dp(y, cand, sensitive_features=groups) - dp(y, base, sensitive_features=groups)
    spread = np.ptp(group_changes(base, cand, groups))
    assert abs(change) <= spread + 1e-12
    # Equalized odds: by at most the larger of the TPR and FPR spreads.
    eo = flm.equalized_odds_difference
    change = eo(y, cand, sensitive_features=groups) - eo(y, base, sensitive_features=groups)
    spreads = [
        np.ptp(group_changes(base[y == label], cand[y == label], groups[y == label]))
        for label in (0, 1)
    ]
    assert abs(change) <= max(spreads) + 1e-12


def test_with_a_fair_baseline_the_change_is_the_spread() -> None:
    # Every group selects 1 in 2; the candidate selects 3 in 4 in group a, 1 in 4 in group b.
    groups = np.array(["a"] * 4 + ["b"] * 4)
    y = np.zeros(8, dtype=int)
    base = np.array([1, 1, 0, 0, 1, 1, 0, 0])
    cand = np.array([1, 1, 1, 0, 1, 0, 0, 0])
    change = demographic_parity_difference(y, cand, groups) - demographic_parity_difference(
        y, base, groups
    )
    assert change == pytest.approx(0.5) == np.ptp(group_changes(base, cand, groups))


def test_the_spread_bound_is_the_largest_mover_limit_over_group_pairs() -> None:
    # δ_a = 0.02 in [-0.01, 0.05], δ_b = -0.01 in [-0.03, 0.02]: the limit of δ_a - δ_b is
    # 0.03 + sqrt(0.03² + 0.02²), that of δ_b - δ_a -0.03 + sqrt(0.03² + 0.03²).
    changes = [(0.02, -0.01, 0.05), (-0.01, -0.03, 0.02)]
    assert spread_bound(changes) == pytest.approx(0.03 + math.sqrt(0.03**2 + 0.02**2), abs=1e-15)
    assert spread_bound(changes[:1]) == 0.0
    assert spread_bound([]) == 0.0


def test_a_candidate_equal_to_its_baseline_changes_nothing_within_a_symmetric_interval() -> None:
    y, base, groups = dataset(0, "int", 3)
    codes = np.unique(groups, return_inverse=True)[1]
    changes = gap_changes(y, base, base.copy(), codes, 3, 2, 0.9)
    assert set(changes) == {
        f"{m}_change"
        for m in (
            "accuracy_gap",
            "demographic_parity_difference",
            "equalized_odds_difference",
            "equal_opportunity_difference",
        )
    }
    for change in changes.values():
        assert change.estimate == 0.0
        assert change.ci_low == -change.ci_high < 0
        assert change.confidence == 0.9 and change.higher_is_better is False


def test_a_rate_defined_in_one_group_only_has_no_gap_to_change() -> None:
    # Only group 0 has positives: the TPR gap is 0 for both, and so is its bound.
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0])
    base = np.array([1, 0, 0, 1, 0, 0, 1, 0])
    cand = np.array([0, 0, 1, 1, 1, 0, 0, 0])
    codes = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    changes = gap_changes(y, base, cand, codes, 2, 2, 0.9)
    opportunity = changes["equal_opportunity_difference_change"]
    assert (opportunity.estimate, opportunity.ci_low, opportunity.ci_high) == (0.0, 0.0, 0.0)
    assert changes["demographic_parity_difference_change"].ci_high > 0
