"""Embedding fidelity metrics against brute force and independent references.

Cosines against `scipy.spatial.distance.cosine` row by row; nearest neighbours against a
pairwise double loop with Python's `sorted`; the bootstrap replicates of the 1st percentile and
the minimum against numpy on each resample expanded from its counts; identical embeddings give
cosine 1 and full neighbour agreement.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import distance

from compressgate.evaluators.embedding import (
    cosine_summary,
    cosines,
    lower_quantile,
    nearest_neighbours,
    neighbour_overlap,
    topk_agreement,
)
from compressgate.evaluators.results import Estimate
from compressgate.evaluators.stats import Bootstrap


def embeddings(
    seed: int, n: int = 120, dim: int = 16, noise: float = 0.3
) -> tuple[np.ndarray, ...]:
    """A baseline and a perturbed candidate, rows of varied length (not unit vectors)."""
    rng = np.random.default_rng(seed)
    baseline = rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, size=(n, 1))
    candidate = baseline + rng.normal(scale=noise, size=baseline.shape)
    return candidate, baseline


def inside(e: Estimate) -> bool:
    return e.ci_low <= e.estimate <= e.ci_high


@pytest.mark.parametrize("seed", range(3))
def test_cosines_match_scipy_row_by_row(seed: int) -> None:
    candidate, baseline = embeddings(seed)
    expected = [1 - distance.cosine(a, b) for a, b in zip(candidate, baseline, strict=True)]
    np.testing.assert_allclose(cosines(candidate, baseline), expected, rtol=0, atol=1e-12)


def test_cosines_ignore_length_and_handle_zero_rows() -> None:
    base = np.array([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    cand = np.array([[5.0, 0.0], [0.0, -1.0], [0.0, 0.0], [1.0, 1.0], [-3.0, -4.0]])
    np.testing.assert_array_equal(cosines(cand, base), [1.0, -1.0, 1.0, 0.0, -1.0])


def test_cosines_reject_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="one shape"):
        cosines(np.ones((3, 2)), np.ones((3, 3)))


@pytest.mark.parametrize(("n", "q"), [(200, 0.01), (57, 0.05), (1000, 0.01), (30, 0.01)])
def test_lower_quantile_is_the_order_statistic(n: int, q: float) -> None:
    x = np.random.default_rng(n).normal(size=n)
    rank = int(np.ceil(q * n))  # the smallest value with at least q·n values at or below it
    assert lower_quantile(x, q) == np.sort(x)[max(rank, 1) - 1]


def test_cosine_summary_point_estimates_and_replicates_by_brute_force() -> None:
    candidate, baseline = embeddings(4, n=250)
    cos = cosines(candidate, baseline)
    boot = Bootstrap(len(cos), resamples=300, seed=9)
    got = cosine_summary(cos, 0.9, boot)
    assert got.mean.estimate == pytest.approx(cos.mean(), abs=1e-15)
    assert got.p1.estimate == np.sort(cos)[2]  # ceil(0.01 · 250) = 3rd smallest
    assert got.minimum.estimate == cos.min()
    # Every resample expanded from its counts, then numpy on the expanded sample.
    resamples = [np.repeat(cos, row.astype(np.int64)) for row in boot.counts]
    means = [r.mean() for r in resamples]
    p1s = [np.quantile(r, 0.01, method="inverted_cdf") for r in resamples]
    minima = [r.min() for r in resamples]
    for estimate, replicates in ((got.mean, means), (got.p1, p1s), (got.minimum, minima)):
        low, high = np.quantile(replicates, [0.05, 0.95])
        assert estimate.ci_low == pytest.approx(min(low, estimate.estimate), abs=1e-12)
        assert estimate.ci_high == pytest.approx(max(high, estimate.estimate), abs=1e-12)
        assert inside(estimate)
        assert estimate.n == 250 and estimate.confidence == 0.9
    # The bootstrap never goes below the sample minimum: its lower end is the minimum itself.
    assert got.minimum.ci_low == cos.min()
    assert "at most" in got.minimum.method


def test_cosine_summary_of_identical_embeddings_is_one() -> None:
    _, baseline = embeddings(5)
    cos = cosines(baseline, baseline)
    got = cosine_summary(cos, 0.95, Bootstrap(len(cos), resamples=200, seed=0))
    for estimate in (got.mean, got.p1, got.minimum):
        assert estimate.estimate == pytest.approx(1.0, abs=1e-12)
        assert estimate.ci_low == pytest.approx(1.0, abs=1e-12)
        assert estimate.ci_high == pytest.approx(1.0, abs=1e-12)


def test_cosine_summary_refuses_a_bootstrap_over_other_samples() -> None:
    with pytest.raises(ValueError, match="bootstrap"):
        cosine_summary(np.ones(10), 0.95, Bootstrap(11, resamples=10))


def brute_force_neighbours(x: np.ndarray, k: int) -> list[list[int]]:
    n = len(x)
    out = []
    for i in range(n):
        sims = [(1 - distance.cosine(x[i], x[j]), j) for j in range(n) if j != i]
        # Most similar first; ties to the lower index.
        out.append([j for _, j in sorted(sims, key=lambda t: (-t[0], t[1]))[:k]])
    return out


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (1, 5), (2, 10)])
def test_nearest_neighbours_match_brute_force(seed: int, k: int) -> None:
    _, baseline = embeddings(seed, n=60)
    got = nearest_neighbours(baseline, k)
    assert got.tolist() == brute_force_neighbours(baseline, k)


def test_nearest_neighbours_search_in_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    from compressgate.evaluators import embedding

    _, baseline = embeddings(3, n=50)
    whole = nearest_neighbours(baseline, 4)
    monkeypatch.setattr(embedding, "_ROWS_PER_BLOCK", 7)
    np.testing.assert_array_equal(nearest_neighbours(baseline, 4), whole)


def test_nearest_neighbours_break_ties_by_index() -> None:
    x = np.array([[1.0, 0.0], [1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    assert nearest_neighbours(x, 2).tolist() == [[1, 2], [0, 2], [0, 1], [0, 1]]


@pytest.mark.parametrize("k", [0, 60])
def test_nearest_neighbours_need_k_in_range(k: int) -> None:
    with pytest.raises(ValueError, match="k must lie"):
        nearest_neighbours(np.ones((60, 3)), k)


@pytest.mark.parametrize(("seed", "k"), [(0, 1), (1, 3), (2, 5)])
def test_neighbour_overlap_matches_sets_by_brute_force(seed: int, k: int) -> None:
    candidate, baseline = embeddings(seed, n=80, noise=0.8)
    ours = brute_force_neighbours(candidate, k)
    theirs = brute_force_neighbours(baseline, k)
    expected = [len(set(a) & set(b)) / k for a, b in zip(ours, theirs, strict=True)]
    overlap, same_first = neighbour_overlap(candidate, baseline, k)
    np.testing.assert_allclose(overlap, expected, rtol=0, atol=1e-15)
    assert same_first.tolist() == [a[0] == b[0] for a, b in zip(ours, theirs, strict=True)]
    assert 0 < overlap.mean() < 1  # the noise moves some neighbours, not all


def test_topk_agreement_intervals() -> None:
    candidate, baseline = embeddings(7, n=150, noise=0.8)
    boot = Bootstrap(150, resamples=400, seed=1)
    got = topk_agreement(candidate, baseline, 5, 0.95, boot)
    overlap, same_first = neighbour_overlap(candidate, baseline, 5)
    assert got.k == 5
    assert got.overlap.estimate == pytest.approx(overlap.mean(), abs=1e-15)
    assert got.top1.estimate == same_first.mean()
    assert got.top1.method == "wilson"
    assert "bootstrap" in got.overlap.method
    assert inside(got.overlap) and inside(got.top1)
    assert 0 <= got.overlap.ci_low < got.overlap.ci_high <= 1


def test_identical_embeddings_agree_fully() -> None:
    _, baseline = embeddings(8, n=100)
    got = topk_agreement(baseline, baseline.copy(), 5, 0.95, Bootstrap(100, resamples=100))
    assert got.overlap.estimate == 1.0 and got.overlap.ci_low == 1.0
    assert got.top1.estimate == 1.0 and got.top1.ci_high == 1.0


def test_agreement_ignores_vector_lengths() -> None:
    _, baseline = embeddings(9, n=70)
    scaled = baseline * np.random.default_rng(0).uniform(0.1, 10.0, size=(70, 1))
    overlap, same_first = neighbour_overlap(scaled, baseline, 5)
    assert overlap.min() == 1.0 and same_first.all()
