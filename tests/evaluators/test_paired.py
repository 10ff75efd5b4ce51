"""Paired comparisons against independent references and by simulation.

- McNemar: the exact two-sided p-value against `scipy.stats.binomtest` and an exact binomial sum
  in rationals, the mid-p value against its hand formula.
- Tango (1998): the score statistic is rebuilt from a restricted maximum likelihood found
  numerically (scipy.optimize on the multinomial likelihood of the paired 2x2 table under the
  constraint p_c - p_b = delta, not the closed form the code uses); `tango_score` must agree with
  it and the ends of `tango_interval` must lie where it crosses ±z. Edge cases by hand.
- Coverage of the 95% Tango interval and the acceptance criterion of non-inferiority (type-I
  error at most alpha when the candidate is worse by exactly the margin), by seeded simulation;
  the power when the two are equally accurate is printed (run with -s) and bounded below.
"""

from __future__ import annotations

import itertools
import math
from fractions import Fraction
from functools import cache

import numpy as np
import pytest
from scipy import optimize, special, stats

from compressgate.evaluators import mcnemar, non_inferiority, paired_difference_ci
from compressgate.evaluators.paired import (
    mcnemar_counts,
    non_inferiority_counts,
    tango_interval,
    tango_score,
)

# --------------------------------------------------------------------------- helpers


def correctness(
    both: int, b: int, c: int, neither: int, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample correctness vectors with the given cells (shuffled if rng is given)."""
    base = np.array([True] * both + [True] * b + [False] * c + [False] * neither)
    cand = np.array([True] * both + [False] * b + [True] * c + [False] * neither)
    if rng is not None:
        order = rng.permutation(base.size)
        base, cand = base[order], cand[order]
    return base, cand


def neg_loglik(cells: np.ndarray, counts: tuple[int, int, int, int]) -> float:
    """Minus the multinomial log-likelihood (without the constant) of (both, b, c, neither)."""
    return -float(np.sum(special.xlogy(np.asarray(counts, dtype=float), cells)))


def restricted_mle(b: int, c: int, n: int, delta: float) -> tuple[float, float]:
    """(p_b, p_c) maximising the likelihood of the paired table subject to p_c - p_b = delta.

    For fixed p_b (so p_c = p_b + delta) the two concordant cells share 1 - 2 p_b - delta and
    their likelihood is largest when they split it in proportion to their counts; what is left
    is maximised over p_b numerically, on the whole feasible range.
    """
    concordant = n - b - c
    low = max(0.0, -delta)
    high = (1.0 - delta) / 2.0

    def profile(p_b: float) -> float:
        rest = 1.0 - 2.0 * p_b - delta
        return -float(
            special.xlogy(b, p_b) + special.xlogy(c, p_b + delta) + special.xlogy(concordant, rest)
        )

    result = optimize.minimize_scalar(
        profile, bounds=(low, high), method="bounded", options={"xatol": 1e-14, "maxiter": 500}
    )
    assert result.success
    # The maximum may sit on an end of the range (e.g. no concordant pairs), where a bounded
    # scalar search stops about sqrt(machine epsilon) short: compare with the ends themselves.
    p_b = min((float(result.x), low, high), key=profile)
    return p_b, p_b + delta


def reference_score(b: int, c: int, n: int, delta: float) -> float:
    """Score statistic for H0: p_c - p_b = delta, with the variance of c - b,
    n (p_b + p_c - (p_c - p_b)^2), evaluated at the restricted MLE."""
    p_b, p_c = restricted_mle(b, c, n, delta)
    variance = n * (p_b + p_c - delta**2)
    numerator = c - b - n * delta
    if numerator == 0:
        return 0.0
    return numerator / math.sqrt(variance)


def reference_interval(b: int, c: int, n: int, confidence: float) -> tuple[float, float]:
    """Where the reference score crosses +z (below the estimate) and -z (above it)."""
    z = stats.norm.ppf(0.5 + confidence / 2)
    estimate = (c - b) / n
    edge = 1e-4  # the ends of these tables' intervals are far from ±1
    lo = optimize.brentq(lambda d: reference_score(b, c, n, d) - z, -1 + edge, estimate, xtol=1e-13)
    hi = optimize.brentq(lambda d: reference_score(b, c, n, d) + z, estimate, 1 - edge, xtol=1e-13)
    return lo, hi


def exact_binomial_two_sided(k: int, m: int) -> Fraction:
    """2 P(X <= min(k, m - k)) for X ~ binomial(m, 1/2), capped at 1, in exact rationals."""
    low = min(k, m - k)
    tail = Fraction(sum(math.comb(m, i) for i in range(low + 1)), 2**m)
    return min(Fraction(1), 2 * tail)


# --------------------------------------------------------------------------- McNemar


def random_tables(seed: int, count: int) -> list[tuple[int, int, int]]:
    """(b, c, n) tables of assorted sizes and discordance."""
    rng = np.random.default_rng(seed)
    tables = []
    for _ in range(count):
        n = int(rng.integers(1, 2000))
        b = int(rng.integers(0, n + 1))
        c = int(rng.integers(0, n - b + 1))
        if rng.random() < 0.7:  # mostly few discordant pairs, as between close models
            b, c = int(rng.integers(0, 40)), int(rng.integers(0, 40))
            n = max(n, b + c, 1)
        tables.append((b, c, n))
    return tables


def test_mcnemar_counts_discordant_pairs_in_the_documented_orientation() -> None:
    base, cand = correctness(both=50, b=7, c=3, neither=10, rng=np.random.default_rng(0))
    result = mcnemar(base, cand)
    assert (result.b, result.c, result.n) == (7, 3, 70)
    ni = non_inferiority(base, cand, margin=0.1)
    assert (ni.b, ni.c, ni.n) == (7, 3, 70)
    assert ni.difference == pytest.approx(-4 / 70, abs=1e-15)


@pytest.mark.parametrize(("b", "c", "n"), random_tables(seed=1, count=200))
def test_mcnemar_pvalue_is_the_exact_binomial_test(b: int, c: int, n: int) -> None:
    result = mcnemar_counts(b, c, n)
    if b + c == 0:
        assert result.pvalue == 1.0
        return
    assert result.pvalue == pytest.approx(stats.binomtest(min(b, c), b + c, 0.5).pvalue, rel=1e-9)
    assert result.pvalue == pytest.approx(float(exact_binomial_two_sided(b, b + c)), rel=1e-9)


@pytest.mark.parametrize(("b", "c", "n"), random_tables(seed=2, count=100))
def test_mcnemar_midp_is_the_exact_pvalue_less_the_observed_point(b: int, c: int, n: int) -> None:
    result = mcnemar_counts(b, c, n)
    m = b + c
    if m == 0:
        assert result.midp == 1.0
        return
    low = min(b, c)
    below = Fraction(sum(math.comb(m, i) for i in range(low)), 2**m)
    point = Fraction(math.comb(m, low), 2**m)
    expected = min(Fraction(1), 2 * below + point)  # 2 (P(X < low) + P(X = low) / 2)
    assert result.midp == pytest.approx(float(expected), rel=1e-9, abs=1e-15)
    assert result.midp <= result.pvalue


def test_mcnemar_with_no_discordant_pairs_has_pvalue_one() -> None:
    base, cand = correctness(both=30, b=0, c=0, neither=5)
    result = mcnemar(base, cand)
    assert (result.b, result.c, result.pvalue, result.midp) == (0, 0, 1.0, 1.0)


def test_mcnemar_hand_example() -> None:
    # b = 0, c = 6: p = 2 / 2^6 = 1/32; mid-p = 2 * (1/2) * (1/64) = 1/64.
    result = mcnemar_counts(0, 6, 100)
    assert result.pvalue == pytest.approx(1 / 32, rel=1e-12)
    assert result.midp == pytest.approx(1 / 64, rel=1e-12)


def test_discordant_rejects_mismatched_or_non_boolean_vectors() -> None:
    with pytest.raises(ValueError, match="one length"):
        mcnemar(np.array([1, 0, 1]), np.array([1, 0]))
    with pytest.raises(ValueError, match="0/1"):
        mcnemar(np.array([1, 0, 2]), np.array([1, 0, 1]))


# --------------------------------------------------------------------------- Tango


TABLES = [
    (13, 9, 450),
    (9, 13, 450),
    (0, 0, 100),
    (5, 0, 50),
    (0, 3, 40),
    (30, 70, 1000),
    (1, 1, 10),
    (40, 2, 60),
    (3, 17, 25),
    (0, 1, 2000),
    (3, 2, 5),  # no concordant pairs
    (0, 0, 1),
    (50, 20, 100_000),
]


def test_restricted_mle_profile_agrees_with_a_full_four_cell_maximisation() -> None:
    # The profile used by the reference, checked against SLSQP on all four cells.
    for b, c, n, delta in [(13, 9, 450, -0.03), (13, 9, 450, 0.02), (30, 70, 1000, 0.0)]:
        counts = (n - b - c - 10, b, c, 10)
        constraints = [
            {"type": "eq", "fun": lambda p: np.sum(p) - 1.0},
            {"type": "eq", "fun": lambda p, d=delta: p[2] - p[1] - d},
        ]
        rest = 1.0 - 0.1 - delta
        start = np.array([0.9 * rest, 0.05, 0.05 + delta, 0.1 * rest])
        full = optimize.minimize(
            neg_loglik,
            start,
            args=(counts,),
            method="SLSQP",
            bounds=[(1e-9, 1.0)] * 4,
            constraints=constraints,
            options={"ftol": 1e-14, "maxiter": 1000},
        )
        assert full.success
        p_b, p_c = restricted_mle(b, c, n, delta)
        assert full.x[1] == pytest.approx(p_b, abs=1e-5)
        assert full.x[2] == pytest.approx(p_c, abs=1e-5)


@pytest.mark.parametrize(("b", "c", "n"), TABLES)
def test_tango_score_matches_the_score_at_a_numerical_restricted_mle(
    b: int, c: int, n: int
) -> None:
    estimate = (c - b) / n
    deltas = [-0.9, -0.3, -0.05, -0.01, 0.0, 0.004, 0.02, 0.1, 0.5, 0.95, estimate - 0.01]
    for delta in deltas:
        if b + c == 0 and delta == 0.0:
            continue  # 0/0: the score is defined as 0 there, checked below
        expected = reference_score(b, c, n, delta)
        assert tango_score(b, c, n, delta) == pytest.approx(expected, rel=1e-6, abs=1e-9), delta


@pytest.mark.parametrize(("b", "c", "n"), TABLES)
def test_tango_score_is_zero_at_the_estimate_and_decreasing(b: int, c: int, n: int) -> None:
    estimate = (c - b) / n
    assert tango_score(b, c, n, estimate) == pytest.approx(0.0, abs=1e-9)
    grid = np.linspace(-0.999, 0.999, 401)
    scores = np.array([tango_score(b, c, n, float(d)) for d in grid])
    assert np.all(np.diff(scores) < 0)


@pytest.mark.parametrize(("b", "c", "n"), [t for t in TABLES if t[0] != t[2] and t[1] != t[2]])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_tango_interval_ends_are_where_the_reference_score_crosses_z(
    b: int, c: int, n: int, confidence: float
) -> None:
    lo, hi = tango_interval(b, c, n, confidence)
    ref_lo, ref_hi = reference_interval(b, c, n, confidence)
    assert lo == pytest.approx(ref_lo, abs=1e-8)
    assert hi == pytest.approx(ref_hi, abs=1e-8)
    # And the reference score brackets z there: the end is a crossing, not just close to one.
    z = stats.norm.ppf(0.5 + confidence / 2)
    h = 1e-6
    assert reference_score(b, c, n, lo - h) > z > reference_score(b, c, n, lo + h)
    assert reference_score(b, c, n, hi - h) > -z > reference_score(b, c, n, hi + h)


@pytest.mark.parametrize("n", [1, 10, 100, 450, 10_000])
def test_tango_interval_with_no_discordant_pairs_is_symmetric_about_zero(n: int) -> None:
    # With b = c = 0 the score is -n d / sqrt(n |d| (1 - |d|)), which is z at |d| = z² / (n + z²).
    z = stats.norm.ppf(0.975)
    lo, hi = tango_interval(0, 0, n)
    assert lo == pytest.approx(-hi, abs=1e-12)
    assert hi == pytest.approx(z**2 / (n + z**2), rel=1e-9)


@pytest.mark.parametrize("n", [1, 5, 40, 450])
def test_tango_interval_reaches_plus_or_minus_one_when_every_pair_is_discordant_one_way(
    n: int,
) -> None:
    z = stats.norm.ppf(0.975)
    edge = 1e-4
    lo, hi = tango_interval(n, 0, n)
    assert lo == -1.0
    # By hand: with b = n the score is -sqrt(n (1 + d) / (1 - d)), which is -z at this d.
    assert hi == pytest.approx((z**2 - n) / (z**2 + n), abs=1e-9)
    ref_hi = optimize.brentq(lambda d: reference_score(n, 0, n, d) + z, -1 + edge, 1 - edge)
    assert hi == pytest.approx(ref_hi, abs=1e-8)
    lo, hi = tango_interval(0, n, n)
    assert hi == 1.0
    assert lo == pytest.approx((n - z**2) / (z**2 + n), abs=1e-9)
    ref_lo = optimize.brentq(lambda d: reference_score(0, n, n, d) - z, -1 + edge, 1 - edge)
    assert lo == pytest.approx(ref_lo, abs=1e-8)


@pytest.mark.parametrize(("b", "c", "n"), random_tables(seed=3, count=150))
def test_tango_interval_contains_the_estimate_and_lies_in_minus_one_one(
    b: int, c: int, n: int
) -> None:
    estimate = (c - b) / n
    for confidence in (0.8, 0.95, 0.999):
        lo, hi = tango_interval(b, c, n, confidence)
        assert -1.0 <= lo <= estimate <= hi <= 1.0
        assert lo < hi


def test_tango_interval_narrows_as_n_grows_with_the_same_proportions() -> None:
    widths = []
    for scale in (1, 2, 4, 8, 16, 64):
        lo, hi = tango_interval(3 * scale, 2 * scale, 100 * scale)
        widths.append(hi - lo)
    assert all(later < earlier for earlier, later in itertools.pairwise(widths))
    # Roughly 1/sqrt(n) once the counts are large.
    assert widths[-1] / widths[-2] == pytest.approx(0.5, rel=0.02)


def test_tango_interval_widens_with_confidence() -> None:
    ends = [tango_interval(13, 9, 450, conf) for conf in (0.8, 0.9, 0.95, 0.99)]
    for (lo1, hi1), (lo2, hi2) in itertools.pairwise(ends):
        assert lo2 < lo1 and hi2 > hi1


@pytest.mark.parametrize(
    ("b", "c", "n", "confidence"),
    [(-1, 0, 10, 0.95), (6, 5, 10, 0.95), (0, 0, 0, 0.95), (1, 1, 10, 1.0), (1, 1, 10, 0.0)],
)
def test_tango_interval_rejects_impossible_tables(
    b: int, c: int, n: int, confidence: float
) -> None:
    with pytest.raises(ValueError):
        tango_interval(b, c, n, confidence)


def test_paired_difference_ci_is_tango_on_the_discordant_counts_of_the_vectors() -> None:
    base, cand = correctness(both=400, b=13, c=9, neither=28, rng=np.random.default_rng(5))
    lo, hi = paired_difference_ci(base, cand)
    ref_lo, ref_hi = reference_interval(13, 9, 450, 0.95)
    assert (lo, hi) == pytest.approx((ref_lo, ref_hi), abs=1e-8)


# --------------------------------------------------------------------------- non-inferiority


@pytest.mark.parametrize(("b", "c", "n"), random_tables(seed=4, count=300))
def test_non_inferiority_passes_exactly_when_the_pvalue_is_below_alpha(
    b: int, c: int, n: int
) -> None:
    rng = np.random.default_rng(b * 7919 + c * 104_729 + n)
    margin = float(rng.choice([0.005, 0.01, 0.02, 0.05, 0.1, 0.3]))
    alpha = float(rng.choice([0.01, 0.025, 0.05, 0.1]))
    result = non_inferiority_counts(b, c, n, margin=margin, alpha=alpha)
    assert result.passed == (result.pvalue < alpha)
    assert result.passed == (result.lower_bound > -margin)


@pytest.mark.parametrize(("b", "c", "n"), [t for t in TABLES if t[0] != t[2]])
@pytest.mark.parametrize("alpha", [0.025, 0.05])
def test_non_inferiority_bound_and_pvalue_come_from_the_one_sided_score_test(
    b: int, c: int, n: int, alpha: float
) -> None:
    margin = 0.02
    result = non_inferiority_counts(b, c, n, margin=margin, alpha=alpha)
    # The lower bound is where the reference score equals z_{1-alpha}.
    z = stats.norm.ppf(1 - alpha)
    assert reference_score(b, c, n, result.lower_bound) == pytest.approx(z, rel=1e-6)
    # The p-value is the upper tail of the reference score at -margin.
    expected = stats.norm.sf(reference_score(b, c, n, -margin))
    assert result.pvalue == pytest.approx(expected, rel=1e-6, abs=1e-15)
    assert result.difference == pytest.approx((c - b) / n, abs=1e-15)


@pytest.mark.parametrize(("margin", "alpha"), [(0.0, 0.05), (1.0, 0.05), (0.02, 0.0), (0.02, 0.5)])
def test_non_inferiority_rejects_a_margin_or_alpha_out_of_range(
    margin: float, alpha: float
) -> None:
    base, cand = correctness(both=90, b=5, c=5, neither=0)
    with pytest.raises(ValueError):
        non_inferiority(base, cand, margin=margin, alpha=alpha)


# --------------------------------------------------------------------------- simulations


def simulate_tables(
    rng: np.random.Generator, n: int, p_both: float, p_b: float, p_c: float, datasets: int
) -> np.ndarray:
    """`datasets` paired tables (both, b, c, neither) drawn from one multinomial."""
    probs = [p_both, p_b, p_c, 1.0 - p_both - p_b - p_c]
    return rng.multinomial(n, probs, size=datasets)


def test_tango_95_interval_covers_the_true_difference_about_95_percent_of_the_time() -> None:
    # n = 450; baseline-only correct 3%, candidate-only 2%: true difference -0.01.
    rng = np.random.default_rng(1998)
    n, p_b, p_c, datasets = 450, 0.03, 0.02, 2000
    truth = p_c - p_b
    tables = simulate_tables(rng, n, 0.9, p_b, p_c, datasets)
    covered = 0
    for both, b, c, neither in tables:
        lo, hi = paired_difference_ci(*correctness(both, b, c, neither, rng))
        covered += lo <= truth <= hi
    coverage = covered / datasets
    print(f"\nTango 95% coverage at n={n}, true difference {truth:+.3f}: {coverage:.4f}")
    # Monte-Carlo standard error sqrt(.95 * .05 / 2000) = 0.0049; 93%-97% is about ±4 SE.
    assert 0.93 <= coverage <= 0.97


def test_non_inferiority_type_one_error_at_the_margin_is_at_most_alpha() -> None:
    # Acceptance criterion: a candidate worse by exactly the margin passes at most alpha of
    # the time. Baseline 0.98, candidate 0.96 (difference -0.02 = -margin), with the errors
    # correlated: both right 0.955, baseline only 0.025, candidate only 0.005, both wrong 0.015.
    rng = np.random.default_rng(20_240_615)
    n, margin, alpha, datasets = 450, 0.02, 0.05, 4000
    p_both, p_b, p_c = 0.955, 0.025, 0.005
    assert (p_both + p_b) - (p_both + p_c) == pytest.approx(margin, abs=1e-15)
    tables = simulate_tables(rng, n, p_both, p_b, p_c, datasets)
    passes = sum(
        non_inferiority(*correctness(*map(int, row), rng), margin=margin, alpha=alpha).passed
        for row in tables
    )
    rate = passes / datasets
    bound = alpha + 3 * math.sqrt(alpha * (1 - alpha) / datasets)
    print(
        f"\nnon-inferiority type-I error at the margin (n={n}, margin={margin}, "
        f"{datasets} datasets): {rate:.4f} (bound {bound:.4f})"
    )
    # alpha plus three binomial standard errors of the Monte-Carlo estimate.
    assert rate <= bound


def test_non_inferiority_has_power_when_the_models_are_equally_accurate() -> None:
    # Equal accuracy, 2% of the samples discordant each way, n = 450, margin 0.02: the
    # standard error of the difference is sqrt(0.04 / 450) = 0.0094, so the margin is 2.1 SE
    # and the normal approximation gives power Phi(2.12 - 1.645) = 0.68.
    rng = np.random.default_rng(31_415)
    n, margin, alpha, datasets = 450, 0.02, 0.05, 2000
    tables = simulate_tables(rng, n, 0.93, 0.02, 0.02, datasets)
    passes = sum(
        non_inferiority(*correctness(*map(int, row), rng), margin=margin, alpha=alpha).passed
        for row in tables
    )
    power = passes / datasets
    normal_power = stats.norm.cdf(margin / math.sqrt(0.04 / n) - stats.norm.ppf(1 - alpha))
    print(
        f"\nnon-inferiority power with equal accuracy (n={n}, 2% discordant each way, "
        f"margin={margin}, {datasets} datasets): {power:.4f} (normal approx. {normal_power:.3f})"
    )
    # Well above alpha. Summing the pass indicator over the exact trinomial distribution of
    # (b, c) gives 0.638 for these parameters (the normal approximation, 0.683, ignores the
    # small counts); the Monte-Carlo standard error is about 0.011, so 0.55-0.75 is a loose
    # sanity band around both.
    assert power > 10 * alpha
    assert 0.55 <= power <= 0.75


@cache
def _passes(b: int, c: int, n: int, margin: float) -> bool:
    return non_inferiority_counts(b, c, n, margin=margin).passed


def test_non_inferiority_rejection_rate_grows_with_the_margin() -> None:
    # Same simulated data, wider margins: the pass rate must not fall.
    rng = np.random.default_rng(7)
    tables = simulate_tables(rng, 450, 0.93, 0.02, 0.02, 500)
    rates = [
        np.mean([_passes(int(b), int(c), 450, margin) for _, b, c, _ in tables])
        for margin in (0.005, 0.01, 0.02, 0.03, 0.05)
    ]
    assert all(later >= earlier for earlier, later in itertools.pairwise(rates))
    assert rates[0] < 0.2
    assert rates[-1] > 0.95
