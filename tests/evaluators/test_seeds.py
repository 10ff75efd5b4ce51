"""Across seeds: the per-metric summary and the compression-identified exemplars.

- `aggregate` against numpy (mean, sd, spread) and `scipy.stats.t.interval` (the interval), the
  worst seed picked by the metric's direction (none without one), and what is left out: fewer
  than two seeds, metrics missing in a seed, non-finite values.
- `modal_labels` / `compression_identified` on hand-worked populations, ties included (ties are
  compared as sets of modal labels, never broken).
- `exemplars` on hand-worked cases: samples matched by id across differing (shuffled,
  overlapping) test splits, by position when the splits are identical and there are no ids, and
  the notes when they cannot be matched; the accuracy fields and the Wilson fraction by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from compressgate.evaluators.results import Estimate
from compressgate.evaluators.seeds import aggregate, compression_identified, exemplars, modal_labels


def est(value: float, half: float = 0.01, hib: bool | None = True, unit: str = "") -> Estimate:
    return Estimate(
        estimate=value,
        ci_low=value - half,
        ci_high=value + half,
        n=100,
        method="test",
        unit=unit,
        higher_is_better=hib,
    )


# --------------------------------------------------------------------------- aggregate


@pytest.fixture
def per_seed() -> dict[int, dict[str, Estimate]]:
    # Seeds out of order on purpose; each seed's estimates have their own interval width.
    return {
        7: {
            "accuracy": est(0.91, 0.03),
            "latency.p50_ms": est(2.5, 0.2, hib=False, unit="ms"),
            "fidelity.kl_divergence": est(0.020, 0.004, hib=None),
        },
        1: {
            "accuracy": est(0.88, 0.01),
            "latency.p50_ms": est(2.1, 0.1, hib=False, unit="ms"),
            "fidelity.kl_divergence": est(0.031, 0.005, hib=None),
        },
        4: {
            "accuracy": est(0.93, 0.02),
            "latency.p50_ms": est(2.2, 0.3, hib=False, unit="ms"),
            "fidelity.kl_divergence": est(0.012, 0.002, hib=None),
        },
    }


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_aggregate_mean_sd_spread_and_t_interval_match_numpy_and_scipy(
    per_seed: dict[int, dict[str, Estimate]], confidence: float
) -> None:
    out = aggregate(per_seed, confidence)
    assert list(out) == ["accuracy", "latency.p50_ms", "fidelity.kl_divergence"]
    for name, summary in out.items():
        values = np.array([per_seed[s][name].estimate for s in (1, 4, 7)])
        assert summary.mean == pytest.approx(values.mean(), rel=1e-14)
        assert summary.sd == pytest.approx(np.std(values, ddof=1), rel=1e-12)
        assert summary.spread == pytest.approx(values.max() - values.min(), rel=1e-12)
        low, high = stats.t.interval(
            confidence, df=2, loc=values.mean(), scale=stats.sem(values, ddof=1)
        )
        assert summary.ci_low == pytest.approx(low, rel=1e-10)
        assert summary.ci_high == pytest.approx(high, rel=1e-10)
        assert summary.seeds == 3
        assert summary.confidence == confidence
        assert summary.higher_is_better is per_seed[7][name].higher_is_better
    assert out["latency.p50_ms"].unit == "ms"


def test_the_worst_seed_is_the_lowest_when_higher_is_better(
    per_seed: dict[int, dict[str, Estimate]],
) -> None:
    accuracy = aggregate(per_seed)["accuracy"]
    assert (accuracy.worst, accuracy.worst_seed) == (0.88, 1)
    # The worst seed's own interval travels with it.
    assert accuracy.worst_ci_low == pytest.approx(0.87, abs=1e-12)
    assert accuracy.worst_ci_high == pytest.approx(0.89, abs=1e-12)


def test_the_worst_seed_is_the_highest_when_lower_is_better(
    per_seed: dict[int, dict[str, Estimate]],
) -> None:
    latency = aggregate(per_seed)["latency.p50_ms"]
    assert (latency.worst, latency.worst_seed) == (2.5, 7)
    assert latency.worst_ci_low == pytest.approx(2.3, abs=1e-12)
    assert latency.worst_ci_high == pytest.approx(2.7, abs=1e-12)


def test_a_metric_without_a_direction_has_no_worst_seed(
    per_seed: dict[int, dict[str, Estimate]],
) -> None:
    kl = aggregate(per_seed)["fidelity.kl_divergence"]
    assert (kl.worst, kl.worst_seed, kl.worst_ci_low, kl.worst_ci_high) == (None,) * 4
    assert kl.spread == pytest.approx(0.031 - 0.012, abs=1e-15)


def test_fewer_than_two_seeds_give_no_summary(per_seed: dict[int, dict[str, Estimate]]) -> None:
    assert aggregate({}) == {}
    assert aggregate({4: per_seed[4]}) == {}
    assert set(aggregate({4: per_seed[4], 7: per_seed[7]})) == set(per_seed[4])


def test_a_metric_missing_in_one_seed_is_left_out(
    per_seed: dict[int, dict[str, Estimate]],
) -> None:
    per_seed[1]["size.bytes"] = est(100.0, 0.0, hib=False)
    per_seed[7]["size.bytes"] = est(100.0, 0.0, hib=False)
    del per_seed[4]["latency.p50_ms"]
    out = aggregate(per_seed)
    assert list(out) == ["accuracy", "fidelity.kl_divergence"]


def test_a_metric_with_a_non_finite_seed_value_is_left_out(
    per_seed: dict[int, dict[str, Estimate]],
) -> None:
    per_seed[4]["accuracy"] = est(float("nan"))
    assert "accuracy" not in aggregate(per_seed)
    assert "latency.p50_ms" in aggregate(per_seed)


def test_identical_seed_values_give_a_zero_width_interval_at_the_value() -> None:
    same = {s: {"accuracy": est(0.9)} for s in (0, 1, 2)}
    summary = aggregate(same)["accuracy"]
    assert summary.mean == pytest.approx(0.9, abs=1e-15)
    assert summary.sd == pytest.approx(0.0, abs=1e-15)
    assert summary.ci_low == pytest.approx(0.9, abs=1e-15)
    assert summary.ci_high == pytest.approx(0.9, abs=1e-15)
    assert summary.spread == 0.0


# --------------------------------------------------------------------------- modal labels


def test_modal_labels_mark_every_label_tied_for_the_most_votes() -> None:
    # Three models (rows) over four samples (columns).
    predictions = np.array([[1, 0, 2, 0], [1, 1, 2, 1], [2, 2, 2, 0]])
    expected = np.array(
        [
            [False, True, False],  # 1, 1, 2 -> {1}
            [True, True, True],  # 0, 1, 2 -> a three-way tie
            [False, False, True],  # 2, 2, 2 -> {2}
            [True, False, False],  # 0, 1, 0 -> {0}
        ]
    )
    np.testing.assert_array_equal(modal_labels(predictions, 3), expected)


def test_compression_identified_by_hand_including_ties() -> None:
    # Columns are samples; the comments give each population's votes and modal label set.
    baseline = np.array(
        [
            [1, 1, 0, 0, 3, 0],
            [1, 2, 0, 1, 3, 1],
            [2, 3, 1, 1, 3, 2],
        ]
    )
    candidate = np.array(
        [
            [1, 3, 1, 0, 3, 0],
            [2, 2, 1, 1, 3, 0],
            [2, 1, 0, 1, 0, 1],
        ]
    )
    # 0: {1,1,2} -> {1}      vs {1,2,2} -> {2}          differ
    # 1: {1,2,3} -> {1,2,3}  vs {3,2,1} -> {1,2,3}      same set: not flagged
    # 2: {0,0,1} -> {0}      vs {1,1,0} -> {1}          differ
    # 3: {0,1,1} -> {1}      vs {0,1,1} -> {1}          same
    # 4: {3,3,3} -> {3}      vs {3,3,0} -> {3}          same modal label, fewer votes
    # 5: {0,1,2} -> {0,1,2}  vs {0,0,1} -> {0}          a tie against a subset of it: differ
    got = compression_identified(baseline, candidate)
    np.testing.assert_array_equal(got, [True, False, True, False, False, True])


def test_two_against_two_ties_are_compared_as_sets() -> None:
    baseline = np.array([[0], [0], [1], [1]])  # {0, 1}
    assert not compression_identified(baseline, np.array([[1], [1], [0], [0]]))[0]  # {0, 1}
    assert compression_identified(baseline, np.array([[0], [0], [2], [2]]))[0]  # {0, 2}
    assert compression_identified(baseline, np.array([[0], [0], [1], [2]]))[0]  # {0}


def test_populations_of_different_sizes_over_the_same_samples_are_compared() -> None:
    baseline = np.array([[4, 0], [4, 0], [3, 1]])  # {4}, {0}
    candidate = np.array([[4, 1], [3, 1]])  # {3, 4}, {1}
    np.testing.assert_array_equal(compression_identified(baseline, candidate), [True, True])
    np.testing.assert_array_equal(compression_identified(baseline, baseline), [False, False])


def test_compression_identified_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="same samples"):
        compression_identified(np.zeros((3, 4), dtype=int), np.zeros((3, 5), dtype=int))
    with pytest.raises(ValueError, match="same samples"):
        compression_identified(np.zeros(4, dtype=int), np.zeros((3, 4), dtype=int))


# --------------------------------------------------------------------------- exemplars


def wilson_by_scipy(successes: int, n: int) -> tuple[float, float]:
    ci = stats.binomtest(successes, n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def by_position(ids: list[int], per_id: dict[int, int], other: int = 7) -> np.ndarray:
    """The array a seed would hold: the value of each id at its position (`other` if none)."""
    return np.array([per_id.get(i, other) for i in ids], dtype=np.int64)


def test_exemplars_match_samples_by_id_across_differing_test_splits() -> None:
    ids = {0: [10, 11, 12, 13], 1: [13, 12, 14, 10]}  # shuffled; 11 and 14 in one seed only
    truth = {10: 0, 11: 1, 12: 2, 13: 1, 14: 0}
    base = {0: {10: 0, 12: 2, 13: 1}, 1: {10: 0, 12: 2, 13: 0}}
    cand = {0: {10: 1, 12: 2, 13: 0}, 1: {10: 1, 12: 1, 13: 1}}
    # id 10: baseline {0}     candidate {1}      -> exemplar
    # id 12: baseline {2}     candidate {1, 2}   -> exemplar (a tie is not broken)
    # id 13: baseline {0, 1}  candidate {0, 1}   -> not
    result = exemplars(
        [0, 1],
        {s: np.array(i) for s, i in ids.items()},
        {s: by_position(i, truth) for s, i in ids.items()},
        {s: by_position(ids[s], base[s]) for s in ids},
        {s: by_position(ids[s], cand[s]) for s in ids},
    )
    assert result.note is None
    assert result.seeds == [0, 1]
    assert (result.n, result.count, result.ids) == (3, 2, [10, 12])
    # On ids 10 and 12 (truth 0 and 2): the baselines are 4/4 right; the candidates predict
    # 1, 2 (seed 0) and 1, 1 (seed 1): 1/4. Elsewhere (id 13, truth 1): baselines 1, 0: 1/2.
    assert result.baseline_accuracy_on_exemplars == 1.0
    assert result.candidate_accuracy_on_exemplars == 0.25
    assert result.baseline_accuracy_elsewhere == 0.5
    assert result.fraction.estimate == pytest.approx(2 / 3, abs=1e-15)
    low, high = wilson_by_scipy(2, 3)
    assert result.fraction.ci_low == pytest.approx(low, abs=1e-12)
    assert result.fraction.ci_high == pytest.approx(high, abs=1e-12)
    assert result.fraction.n == 3
    assert result.fraction.higher_is_better is False


def test_exemplars_match_by_position_when_identical_splits_have_no_ids() -> None:
    labels = np.array([0, 1, 2, 1])
    base = {
        0: np.array([0, 1, 2, 1]),
        1: np.array([0, 1, 2, 0]),
        2: np.array([0, 1, 2, 1]),
    }
    cand = {
        0: np.array([0, 2, 2, 0]),
        1: np.array([0, 2, 2, 0]),
        2: np.array([0, 1, 2, 1]),
    }
    # Position 1: baseline {1} vs candidate {2}; position 3: baseline {1} vs candidate {0}.
    result = exemplars(
        [0, 1, 2], dict.fromkeys([0, 1, 2]), dict.fromkeys([0, 1, 2], labels), base, cand
    )
    assert result.note is None
    assert (result.n, result.count, result.ids) == (4, 2, [1, 3])
    # Positions 1 and 3 (truth 1, 1): baselines 1,1 / 1,0 / 1,1 -> 5/6; candidates 2,0 / 2,0 /
    # 1,1 -> 2/6. Elsewhere (positions 0 and 2): every baseline right.
    assert result.baseline_accuracy_on_exemplars == pytest.approx(5 / 6, abs=1e-15)
    assert result.candidate_accuracy_on_exemplars == pytest.approx(1 / 3, abs=1e-15)
    assert result.baseline_accuracy_elsewhere == 1.0


def test_without_exemplars_the_accuracy_on_them_is_absent() -> None:
    labels = np.array([0, 1, 1])
    same = {0: np.array([0, 1, 0]), 1: np.array([0, 1, 0])}
    result = exemplars([0, 1], {0: None, 1: None}, {0: labels, 1: labels}, same, same)
    assert (result.n, result.count, result.ids) == (3, 0, [])
    assert result.baseline_accuracy_on_exemplars is None
    assert result.candidate_accuracy_on_exemplars is None
    assert result.baseline_accuracy_elsewhere == pytest.approx(2 / 3, abs=1e-15)
    assert result.fraction.estimate == 0.0


@pytest.mark.parametrize(
    "second_labels",
    [np.array([0, 1, 2, 2]), np.array([0, 1, 2])],
    ids=["same size, other labels", "other size"],
)
def test_exemplars_note_that_differing_splits_without_ids_cannot_be_matched(
    second_labels: np.ndarray,
) -> None:
    labels = {0: np.array([0, 1, 2, 1]), 1: second_labels}
    predictions = {s: labels[s].copy() for s in labels}
    result = exemplars([0, 1], {0: np.arange(4), 1: None}, labels, predictions, predictions)
    assert result.note is not None
    assert "no sample ids" in result.note
    assert (result.n, result.count, result.ids) == (0, 0, [])
    assert (result.fraction.ci_low, result.fraction.ci_high) == (0.0, 1.0)
    assert result.baseline_accuracy_on_exemplars is None


def test_exemplars_note_an_id_that_carries_different_labels_in_different_seeds() -> None:
    ids = {0: np.array([1, 2, 3]), 1: np.array([3, 2, 1])}
    labels = {0: np.array([0, 1, 2]), 1: np.array([2, 0, 0])}  # id 2 is 1 in seed 0, 0 in seed 1
    predictions = {s: labels[s].copy() for s in labels}
    result = exemplars([0, 1], ids, labels, predictions, predictions)
    assert result.note is not None
    assert "different labels" in result.note
    assert result.n == 0


def test_exemplars_note_when_no_sample_is_in_every_seeds_split() -> None:
    ids = {0: np.array([1, 2]), 1: np.array([3, 4])}
    labels = {0: np.array([0, 1]), 1: np.array([0, 1])}
    result = exemplars([0, 1], ids, labels, labels, labels)
    assert result.note == "no test sample is in every seed's test split"
    assert result.n == 0
