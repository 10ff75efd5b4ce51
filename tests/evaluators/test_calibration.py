"""Calibration metrics against independent references.

Brier and NLL are checked against scikit-learn (`brier_score_loss` with `scale_by_half=False`,
`log_loss`), top-1 accuracy against `accuracy_score`; ECE, MCE, RMSCE and class-wise ECE
against small cases worked by hand, with confidences exactly on the bin edges ((m-1)/M, m/M]
(Guo et al. 2017), and against a loop-based reference that spells the bin rule out; a
synthetic sample drawn from its own probabilities must look calibrated and a sharpened copy
must not; malformed input must raise ValueError.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss

from compressgate.evaluators import brier, classwise_ece, ece, mce, nll, rmsce
from compressgate.evaluators.calibration import bin_index, reliability


def reference_top_label_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int
) -> list[tuple[int, float, float]]:
    """Per bin (count, mean confidence, accuracy) by looping over samples and bins ((lo, hi])."""
    out = []
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        members = []
        for row, label in zip(probs, labels, strict=True):
            conf = float(max(row))
            in_bin = lo < conf <= hi or (m == 0 and conf == 0.0)
            if in_bin:
                members.append((conf, float(int(np.argmax(row)) == int(label))))
        if members:
            count = len(members)
            out.append(
                (
                    count,
                    sum(conf for conf, _ in members) / count,
                    sum(hit for _, hit in members) / count,
                )
            )
        else:
            out.append((0, 0.0, 0.0))
    return out


def reference_ece_mce_rmsce(
    probs: np.ndarray, labels: np.ndarray, n_bins: int
) -> tuple[float, float, float]:
    bins = reference_top_label_bins(probs, labels, n_bins)
    n = len(labels)
    gaps = [(count, abs(acc - conf)) for count, conf, acc in bins if count]
    return (
        sum(count / n * gap for count, gap in gaps),
        max(gap for _, gap in gaps),
        math.sqrt(sum(count / n * gap**2 for count, gap in gaps)),
    )


def random_probs(rng: np.random.Generator, n: int, k: int, scale: float = 2.0) -> np.ndarray:
    logits = rng.normal(0.0, scale, size=(n, k))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


def draw_labels(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One label per row, drawn from that row's distribution."""
    u = rng.random(probs.shape[0])
    labels = (u[:, None] > np.cumsum(probs, axis=1)).sum(axis=1)
    return np.minimum(labels, probs.shape[1] - 1)


# Six samples, five classes, five bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1]:
#   conf 0.2 (right edge of bin 0), correct     conf 0.6 (right edge of bin 2), wrong
#   conf 0.8 (right edge of bin 3), correct     conf 1.0 (right edge of bin 4), correct
#   conf 0.5 (inside bin 2), correct            conf 0.9 (inside bin 4), wrong
EDGE_PROBS = np.array(
    [
        [0.2, 0.2, 0.2, 0.2, 0.2],
        [0.6, 0.1, 0.1, 0.1, 0.1],
        [0.8, 0.05, 0.05, 0.05, 0.05],
        [1.0, 0.0, 0.0, 0.0, 0.0],
        [0.5, 0.2, 0.1, 0.1, 0.1],
        [0.9, 0.025, 0.025, 0.025, 0.025],
    ]
)
EDGE_LABELS = np.array([0, 1, 0, 0, 0, 2])
# Bin 0: {0.2 ok}            acc 1,   conf 0.2,  gap 0.8,  weight 1/6
# Bin 2: {0.6 bad, 0.5 ok}   acc 0.5, conf 0.55, gap 0.05, weight 2/6
# Bin 3: {0.8 ok}            acc 1,   conf 0.8,  gap 0.2,  weight 1/6
# Bin 4: {1.0 ok, 0.9 bad}   acc 0.5, conf 0.95, gap 0.45, weight 2/6
EDGE_ECE = (0.8 + 2 * 0.05 + 0.2 + 2 * 0.45) / 6  # = 1/3
EDGE_MCE = 0.8
EDGE_RMSCE = math.sqrt((0.8**2 + 2 * 0.05**2 + 0.2**2 + 2 * 0.45**2) / 6)


def test_bin_index_puts_a_value_on_an_edge_in_the_bin_it_closes() -> None:
    values = np.array([0.0, 0.1, 0.2, 0.2 + 1e-12, 0.4, 0.6, 0.6 + 1e-12, 0.8, 0.99, 1.0])
    assert bin_index(values, 5).tolist() == [0, 0, 0, 1, 1, 2, 3, 3, 4, 4]


def test_bin_index_rejects_fewer_than_one_bin() -> None:
    with pytest.raises(ValueError, match="n_bins"):
        bin_index(np.array([0.5]), 0)


def test_reliability_counts_edge_confidences_in_the_bin_they_close() -> None:
    count, conf_sum, correct_sum = reliability(EDGE_PROBS, EDGE_LABELS, n_bins=5)
    assert count.tolist() == [1, 0, 2, 1, 2]
    assert conf_sum.tolist() == pytest.approx([0.2, 0.0, 1.1, 0.8, 1.9], abs=1e-12)
    assert correct_sum.tolist() == [1, 0, 1, 1, 1]


def test_ece_puts_a_confidence_on_an_edge_in_the_bin_it_closes() -> None:
    assert pytest.approx(1 / 3, abs=1e-15) == EDGE_ECE  # the hand sum above
    assert ece(EDGE_PROBS, EDGE_LABELS, n_bins=5) == pytest.approx(EDGE_ECE, abs=1e-12)


def test_mce_is_the_largest_gap_with_edges_in_the_bin_they_close() -> None:
    assert mce(EDGE_PROBS, EDGE_LABELS, n_bins=5) == pytest.approx(EDGE_MCE, abs=1e-12)


def test_rmsce_is_the_weighted_root_mean_square_gap_with_edges_binned_right() -> None:
    assert rmsce(EDGE_PROBS, EDGE_LABELS, n_bins=5) == pytest.approx(EDGE_RMSCE, abs=1e-12)


def test_a_confidence_of_exactly_one_goes_to_the_last_bin() -> None:
    # Two certain samples, one right and one wrong: one bin at confidence 1, accuracy 1/2.
    probs = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = np.array([0, 0])
    for n_bins in (1, 2, 10, 15):
        count, _, _ = reliability(probs, labels, n_bins=n_bins)
        assert count[-1] == 2
        assert ece(probs, labels, n_bins=n_bins) == pytest.approx(0.5, abs=1e-12)
        assert mce(probs, labels, n_bins=n_bins) == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("n_bins", [1, 5, 10, 15])
def test_ece_mce_rmsce_match_a_loop_over_half_open_bins(seed: int, n_bins: int) -> None:
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, 300, 4)
    # Put some confidences exactly on edges: rows (e, (1 - e)/3, ...) for edges e >= 0.4.
    edges = np.arange(2, n_bins + 1) / n_bins
    edges = edges[edges >= 0.4]
    for i, e in enumerate(edges):
        probs[i] = [e, (1 - e) / 3, (1 - e) / 3, (1 - e) / 3]
    labels = rng.integers(0, 4, size=300)
    expected = reference_ece_mce_rmsce(probs, labels, n_bins)
    got = (ece(probs, labels, n_bins), mce(probs, labels, n_bins), rmsce(probs, labels, n_bins))
    assert got == pytest.approx(expected, abs=1e-12)


def test_classwise_ece_matches_a_hand_worked_case_with_zero_probabilities() -> None:
    # Two bins: [0, 0.5] (0 goes to the first bin) and (0.5, 1].
    probs = np.array(
        [
            [1.0, 0.0, 0.0],
            [0.5, 0.5, 0.0],
            [0.0, 0.25, 0.75],
            [0.2, 0.0, 0.8],
        ]
    )
    labels = np.array([0, 1, 2, 0])
    # Class 0: probs (1, .5, 0, .2), hits (1, 0, 0, 1).
    #   bin 0 {.5, 0, .2}: freq 1/3, mean prob .7/3, gap .1, weight 3/4; bin 1 {1}: gap 0.
    class0 = 0.75 * abs(1 / 3 - 0.7 / 3)
    # Class 1: probs (0, .5, .25, 0), hits (0, 1, 0, 0): all in bin 0, gap |.25 - .1875|.
    class1 = abs(0.25 - 0.75 / 4)
    # Class 2: probs (0, 0, .75, .8), hits (0, 0, 1, 0).
    #   bin 0 {0, 0}: gap 0, weight 1/2; bin 1 {.75, .8}: freq 1/2, mean .775, weight 1/2.
    class2 = 0.5 * abs(0.5 - 0.775)
    expected = (class0 + class1 + class2) / 3
    assert expected == pytest.approx(0.275 / 3, abs=1e-15)
    assert classwise_ece(probs, labels, n_bins=2) == pytest.approx(expected, abs=1e-12)


def test_classwise_ece_of_one_hot_correct_predictions_is_zero() -> None:
    probs = np.eye(3)[[0, 1, 2, 1]]
    assert classwise_ece(probs, np.array([0, 1, 2, 1]), n_bins=10) == 0.0


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 10])
def test_brier_is_sklearn_multiclass_brier_without_halving(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, 200, k)
    labels = rng.integers(0, k, size=200)
    expected = brier_score_loss(labels, probs, labels=list(range(k)), scale_by_half=False)
    assert brier(probs, labels) == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_brier_spans_zero_to_two() -> None:
    labels = np.array([0, 1])
    assert brier(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), labels) == 0.0
    assert brier(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]]), labels) == pytest.approx(2.0)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("k", [2, 3, 10])
def test_nll_is_sklearn_log_loss(seed: int, k: int) -> None:
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, 200, k)
    labels = rng.integers(0, k, size=200)
    expected = log_loss(labels, probs, labels=list(range(k)))
    assert nll(probs, labels) == pytest.approx(expected, rel=1e-12)


def test_nll_of_a_zero_probability_on_the_true_class_is_finite_like_sklearn() -> None:
    probs = np.array([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5], [0.1, 0.8, 0.1]])
    labels = np.array([1, 2, 1])
    expected = log_loss(labels, probs, labels=[0, 1, 2])
    got = nll(probs, labels)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_reliability_accuracy_is_sklearn_top1_accuracy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, 500, 6)
    labels = rng.integers(0, 6, size=500)
    count, _, correct_sum = reliability(probs, labels, n_bins=15)
    assert count.sum() == 500
    expected = accuracy_score(labels, probs.argmax(axis=1))
    assert correct_sum.sum() / count.sum() == pytest.approx(expected, abs=1e-12)


def test_a_sample_drawn_from_its_own_probabilities_is_calibrated() -> None:
    rng = np.random.default_rng(20240601)
    probs = random_probs(rng, 20_000, 4)
    labels = draw_labels(rng, probs)
    # With 20 000 samples in 15 bins the finite-sample bias of ECE is about 0.005.
    assert ece(probs, labels) < 0.02
    assert rmsce(probs, labels) < 0.03
    assert classwise_ece(probs, labels) < 0.02


def test_a_sharpened_copy_of_calibrated_probabilities_is_overconfident() -> None:
    rng = np.random.default_rng(20240601)
    probs = random_probs(rng, 20_000, 4)
    labels = draw_labels(rng, probs)
    sharp = probs**3
    sharp /= sharp.sum(axis=1, keepdims=True)
    assert ece(sharp, labels) > 0.1
    # Overconfident: the mean confidence exceeds the accuracy by more than 0.1.
    count, conf_sum, correct_sum = reliability(sharp, labels)
    assert conf_sum.sum() - correct_sum.sum() > 0.1 * count.sum()


GOOD_PROBS = np.array([[0.7, 0.3], [0.4, 0.6]])
GOOD_LABELS = np.array([0, 1])


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([0.7, 0.3]), np.array([0]), "shape"),
        (np.ones((2, 2, 2)) / 2, GOOD_LABELS, "shape"),
        (GOOD_PROBS, np.array([0, 1, 1]), "labels"),
        (GOOD_PROBS, np.array([[0], [1]]), "labels"),
        (GOOD_PROBS, np.array([0.0, 1.0]), "integers"),
        (GOOD_PROBS, np.array([0, 2]), r"\[0, 2\)"),
        (GOOD_PROBS, np.array([-1, 1]), r"\[0, 2\)"),
        (np.array([[0.7, 0.4], [0.4, 0.6]]), GOOD_LABELS, "sum to 1"),
        (np.array([[2.0, 1.0], [0.5, 0.5]]), GOOD_LABELS, "sum to 1"),
        (np.array([[1.2, -0.2], [0.4, 0.6]]), GOOD_LABELS, "non-negative"),
        (np.array([[np.nan, 0.5], [0.4, 0.6]]), GOOD_LABELS, "finite"),
    ],
)
def test_malformed_input_raises_value_error(
    probs: np.ndarray, labels: np.ndarray, match: str
) -> None:
    for metric in (ece, mce, rmsce, classwise_ece, brier, nll):
        with pytest.raises(ValueError, match=match):
            metric(probs, labels)
