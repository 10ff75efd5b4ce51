"""Intervals, Holm's adjustment and the count-matrix bootstrap against independent references.

- `quantile_ci`: order-statistic ranks against an exact binomial search in rationals (and the
  textbook n = 20 median interval), and brute-force coverage of the true quantile of an
  exponential distribution by seeded simulation.
- `holm`: hand-worked examples, equivalence with Holm's step-down procedure run at many levels,
  and its properties (at least the raw p-value, at most 1, monotone in the sorted order).
- `Bootstrap` + `percentile_interval`: the percentile interval of a mean against
  `scipy.stats.bootstrap(method='percentile')` within Monte-Carlo tolerance, the bootstrap
  variance of the mean against the plug-in formula, and `totals` against an explicit loop.
- `wilson_interval` against the closed-form Wilson formula, `t_interval` against
  `scipy.stats.t.interval`.
"""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from scipy import stats

from compressgate.evaluators import holm, quantile_ci
from compressgate.evaluators.stats import (
    Bootstrap,
    percentile_interval,
    t_interval,
    wilson_interval,
)

# --------------------------------------------------------------------------- quantile_ci


def reference_ranks(n: int, q: Fraction, confidence: Fraction) -> tuple[int, int]:
    """0-based ranks (l, u) of the equal-tailed order-statistic interval, in exact arithmetic.

    With B ~ binomial(n, q) the number of samples below the quantile, x[l] <= quantile iff
    B >= l + 1 and x[u] >= quantile iff B <= u: l is the largest rank with P(B <= l) <= tail,
    u the smallest with P(B <= u) >= 1 - tail (-1 and n when there is none).
    """
    tail = (1 - confidence) / 2
    cdf = []
    total = Fraction(0)
    for k in range(n + 1):
        total += math.comb(n, k) * q**k * (1 - q) ** (n - k)
        cdf.append(total)
    lower = max((k for k in range(n + 1) if cdf[k] <= tail), default=-1)
    upper = min(k for k in range(n + 1) if cdf[k] >= 1 - tail)
    return lower, upper


def test_quantile_ci_of_the_median_of_twenty_is_the_sixth_to_fifteenth_order_statistic() -> None:
    # P(B <= 5) = 21700 / 2^20 = 0.0207 <= 0.025 < P(B <= 6) = 0.0577 for B ~ binomial(20, 1/2).
    samples = np.random.default_rng(0).permutation(np.arange(1.0, 21.0))
    assert quantile_ci(samples, 0.5, 0.95) == (6.0, 15.0)


@pytest.mark.parametrize(
    ("n", "q", "confidence"),
    [
        (10, Fraction(1, 2), Fraction(95, 100)),
        (20, Fraction(1, 2), Fraction(95, 100)),
        (37, Fraction(1, 2), Fraction(90, 100)),
        (30, Fraction(9, 10), Fraction(95, 100)),
        (60, Fraction(9, 10), Fraction(95, 100)),
        (100, Fraction(95, 100), Fraction(95, 100)),
        (101, Fraction(1, 4), Fraction(99, 100)),
        (250, Fraction(99, 100), Fraction(80, 100)),
        (5, Fraction(1, 2), Fraction(95, 100)),
    ],
)
def test_quantile_ci_ranks_match_an_exact_binomial_search(
    n: int, q: Fraction, confidence: Fraction
) -> None:
    lower, upper = reference_ranks(n, q, confidence)
    # Samples 0, 1, ..., n - 1 in random order: the value of an order statistic is its rank.
    samples = np.random.default_rng(n).permutation(np.arange(n, dtype=float))
    got = quantile_ci(samples, float(q), float(confidence))
    # Without enough samples an end falls back to the sample minimum or maximum (documented).
    assert got == (float(max(lower, 0)), float(min(upper, n - 1)))


SUFFICIENT = [
    (q, n)
    for q in (0.5, 0.9, 0.95, 0.99)
    for n in (50, 200, 1000)
    if 1 - q**n >= 0.975  # the sample maximum is above the quantile often enough
]
INSUFFICIENT = [
    (q, n) for q in (0.5, 0.9, 0.95, 0.99) for n in (50, 200, 1000) if (q, n) not in SUFFICIENT
]


@pytest.mark.parametrize(("q", "n"), SUFFICIENT)
def test_quantile_ci_covers_the_true_quantile_at_least_as_often_as_promised(
    q: float, n: int
) -> None:
    rng = np.random.default_rng(int(q * 1000) + n)
    replicates, confidence = 800, 0.95
    truth = -math.log(1 - q)  # quantile of the standard exponential
    samples = rng.exponential(size=(replicates, n))
    covered = 0
    for row in samples:
        lo, hi = quantile_ci(row, q, confidence)
        covered += lo <= truth <= hi
    coverage = covered / replicates
    # At least the confidence, less three Monte-Carlo standard errors (0.023 here).
    assert coverage >= confidence - 3 * math.sqrt(confidence * (1 - confidence) / replicates)


@pytest.mark.parametrize(("q", "n"), INSUFFICIENT)
def test_quantile_ci_with_too_few_samples_ends_at_the_sample_maximum(q: float, n: int) -> None:
    samples = np.random.default_rng(n).exponential(size=n)
    _, hi = quantile_ci(samples, q, 0.95)
    assert hi == samples.max()


@pytest.mark.parametrize(
    ("samples", "q", "confidence"),
    [
        (np.array([]), 0.5, 0.95),
        (np.ones(5), 0.0, 0.95),
        (np.ones(5), 1.0, 0.95),
        (np.ones(5), 0.5, 1.0),
        (np.ones(5), 0.5, 0.0),
    ],
)
def test_quantile_ci_rejects_bad_arguments(
    samples: np.ndarray, q: float, confidence: float
) -> None:
    with pytest.raises(ValueError):
        quantile_ci(samples, q, confidence)


# --------------------------------------------------------------------------- holm


@pytest.mark.parametrize(
    ("raw", "adjusted"),
    [
        # Sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> 0.06.
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        # Sorted 0.02 x3 = 0.06, 0.3 x2 = 0.6, 0.5 x1 = 0.5 -> 0.6.
        ([0.5, 0.3, 0.02], [0.6, 0.6, 0.06]),
        # Capped at 1.
        ([0.6, 0.7], [1.0, 1.0]),
        ([0.01, 0.01], [0.02, 0.02]),
        ([0.2], [0.2]),
        ([0.0, 1.0, 0.25], [0.0, 1.0, 0.5]),
        ([], []),
    ],
)
def test_holm_matches_hand_worked_adjustments(raw: list[float], adjusted: list[float]) -> None:
    assert holm(raw).tolist() == pytest.approx(adjusted, abs=1e-15)


def step_down_rejections(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's procedure at level alpha: reject in ascending order while p_(k) <= alpha/(m-k)."""
    m = p.size
    rejected = np.zeros(m, dtype=bool)
    for k, i in enumerate(np.argsort(p, kind="stable")):
        if p[i] > alpha / (m - k):
            break
        rejected[i] = True
    return rejected


@pytest.mark.parametrize("seed", range(20))
def test_holm_adjusted_pvalues_reject_exactly_what_the_step_down_procedure_rejects(
    seed: int,
) -> None:
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 15))
    p = rng.uniform(0, 0.2, size=m) ** rng.uniform(0.5, 2)
    adjusted = holm(p)
    for alpha in rng.uniform(0, 0.5, size=50):
        assert np.array_equal(adjusted <= alpha, step_down_rejections(p, alpha))


@pytest.mark.parametrize("seed", range(20))
def test_holm_adjusted_pvalues_are_bounded_and_monotone_in_the_sorted_order(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    p = rng.uniform(size=int(rng.integers(1, 30))) ** 3
    adjusted = holm(p)
    assert np.all(adjusted >= p)
    assert np.all(adjusted <= 1.0)
    order = np.argsort(p, kind="stable")
    assert np.all(np.diff(adjusted[order]) >= 0)
    # The smallest p-value is multiplied by the number of tests.
    assert adjusted[order[0]] == pytest.approx(min(1.0, p.size * p[order[0]]), rel=1e-15)


@pytest.mark.parametrize("bad", [[0.1, 1.5], [-0.01], [0.2, float("nan")]])
def test_holm_rejects_values_that_are_not_pvalues(bad: list[float]) -> None:
    with pytest.raises(ValueError):
        holm(bad)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_percentile_interval_of_a_mean_agrees_with_scipy() -> None:
    data_rng = np.random.default_rng(11)
    x = data_rng.exponential(scale=2.0, size=200)
    resamples = 20_000
    ours = percentile_interval(Bootstrap(x.size, resamples, seed=12).means(x), 0.95)
    theirs = stats.bootstrap(
        (x,),
        np.mean,
        method="percentile",
        n_resamples=resamples,
        confidence_level=0.95,
        rng=np.random.default_rng(13),
    ).confidence_interval
    # Tolerance: an end is the 2.5% or 97.5% quantile of B resampled means, whose Monte-Carlo
    # SD is sqrt(p (1 - p) / B) / density = 2.67 SE / sqrt(B) = 0.019 SE for B = 20 000 (SE the
    # standard error of the mean); the difference of two independent runs has SD 0.027 SE, so
    # 0.1 SE is about 3.7 SD.
    se = x.std(ddof=1) / math.sqrt(x.size)
    assert ours[0] == pytest.approx(theirs.low, abs=0.1 * se)
    assert ours[1] == pytest.approx(theirs.high, abs=0.1 * se)


def test_bootstrap_variance_of_the_mean_is_the_plug_in_variance_over_n() -> None:
    x = np.random.default_rng(21).normal(size=150)
    means = Bootstrap(x.size, 20_000, seed=22).means(x)
    assert means.mean() == pytest.approx(x.mean(), abs=0.05 * x.std() / math.sqrt(x.size))
    # Relative Monte-Carlo SD of a variance from B draws is sqrt(2 / B) = 1%.
    assert means.var() == pytest.approx(x.var(ddof=0) / x.size, rel=0.05)


@pytest.mark.parametrize(("n", "resamples"), [(1, 3), (7, 250), (301, 120)])
def test_bootstrap_count_rows_are_multinomial_draws_of_n_items(n: int, resamples: int) -> None:
    boot = Bootstrap(n, resamples, seed=5)
    assert boot.counts.shape == (resamples, n)
    assert np.all(boot.counts.sum(axis=1) == n)
    assert np.all(boot.counts >= 0)
    assert np.array_equal(boot.counts, np.round(boot.counts))
    assert np.array_equal(boot.counts, Bootstrap(n, resamples, seed=5).counts)


def test_bootstrap_seeds_give_different_resamples() -> None:
    assert not np.array_equal(Bootstrap(50, 10, seed=0).counts, Bootstrap(50, 10, seed=1).counts)


def test_bootstrap_count_cells_have_binomial_n_one_over_n_variance() -> None:
    n = 40
    counts = Bootstrap(n, 5000, seed=9).counts
    # Each cell is binomial(n, 1/n): mean 1, variance 1 - 1/n; 200 000 cells.
    assert counts.var() == pytest.approx(1 - 1 / n, rel=0.02)


def test_bootstrap_totals_equal_an_explicit_loop_over_resampled_indices() -> None:
    rng = np.random.default_rng(3)
    n = 7
    values = rng.normal(size=(n, 3))
    boot = Bootstrap(n, 25, seed=4)
    totals = boot.totals(values)
    assert totals.shape == (25, 3)
    for row in range(25):
        indices = [i for i in range(n) for _ in range(int(boot.counts[row, i]))]
        assert len(indices) == n
        expected = [sum(values[i, k] for i in indices) for k in range(3)]
        assert totals[row].tolist() == pytest.approx(expected, abs=1e-12)
    means = boot.means(values[:, 1])
    assert means.tolist() == pytest.approx((totals[:, 1] / n).tolist(), abs=1e-12)


def test_bootstrap_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError):
        Bootstrap(0, 10)
    with pytest.raises(ValueError):
        Bootstrap(10, 0)
    with pytest.raises(ValueError, match="rows"):
        Bootstrap(10, 5).totals(np.ones((9, 2)))


def test_percentile_interval_interpolates_and_leaves_out_nan() -> None:
    replicates = np.concatenate([np.arange(101.0), [np.nan] * 7])
    assert percentile_interval(replicates, 0.95) == pytest.approx((2.5, 97.5), abs=1e-12)
    assert percentile_interval(replicates, 0.9) == pytest.approx((5.0, 95.0), abs=1e-12)
    low, high = percentile_interval(np.array([np.nan, np.nan]))
    assert math.isnan(low) and math.isnan(high)


# --------------------------------------------------------------------------- wilson and t


def wilson_closed_form(k: int, n: int, confidence: float) -> tuple[float, float]:
    z = stats.norm.ppf(0.5 + confidence / 2)
    p = k / n
    denominator = 1 + z**2 / n
    center = (p + z**2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2))
    return center - half, center + half


@pytest.mark.parametrize(
    ("k", "n"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (45, 50), (912, 1000), (1, 10_000)]
)
@pytest.mark.parametrize("confidence", [0.8, 0.95, 0.99])
def test_wilson_interval_matches_the_closed_form(k: int, n: int, confidence: float) -> None:
    assert wilson_interval(k, n, confidence) == pytest.approx(
        wilson_closed_form(k, n, confidence), abs=1e-12
    )


def test_wilson_interval_of_no_trials_is_everything() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("size", [2, 3, 5, 30])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_t_interval_matches_scipy(size: int, confidence: float) -> None:
    x = np.random.default_rng(size).normal(0.8, 0.02, size=size)
    expected = stats.t.interval(confidence, size - 1, loc=x.mean(), scale=stats.sem(x))
    assert t_interval(x, confidence) == pytest.approx(expected, rel=1e-12)


def test_t_interval_needs_two_values() -> None:
    with pytest.raises(ValueError):
        t_interval([0.9])
    with pytest.raises(ValueError):
        t_interval([0.9, 0.8], confidence=1.5)
