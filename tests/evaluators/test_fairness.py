"""Group fairness metrics against fairlearn.

The demographic parity, equalized odds and equal opportunity differences are compared with
fairlearn's functions of the same names, and per-group accuracy with fairlearn's
`MetricFrame(metrics=accuracy_score).by_group`, on seeded random datasets with two and three
groups whose labels are ints or strings. The rule for a group whose rate is undefined (left
out) is checked by hand, and non-binary or misshapen input must raise ValueError.
"""

from __future__ import annotations

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
