"""Embedding fidelity: does the compressed model place every sample where the baseline does?

Embedding models have no labels, so they are judged against the baseline's vectors, sample by
sample: the cosine similarity of the candidate's embedding of a sample to the baseline's (its
mean, a low percentile and the worst case), and whether each sample keeps its nearest
neighbours among the other samples (what retrieval and clustering actually use). Pure numpy;
intervals come from the stage's shared bootstrap over the test samples, or Wilson's for rates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from compressgate.evaluators.base import bootstrapped, wilson
from compressgate.evaluators.results import Estimate
from compressgate.evaluators.stats import Bootstrap, Floats

_ROWS_PER_BLOCK = 1024  # similarity rows held at once by the neighbour search
_RESAMPLES_PER_BLOCK = 200  # bootstrap rows held at once by the order statistics


@dataclass(frozen=True)
class CosineSummary:
    """Per-sample cosine similarity to the baseline: mean, low percentile, minimum."""

    mean: Estimate
    p1: Estimate
    minimum: Estimate


@dataclass(frozen=True)
class NeighbourAgreement:
    """Do samples keep their k nearest neighbours (by cosine, among the other samples)?"""

    k: int
    overlap: Estimate  # mean of |baseline's k nearest ∩ candidate's k nearest| / k
    top1: Estimate  # fraction of samples whose nearest neighbour is unchanged


def _pair(candidate: np.ndarray, baseline: np.ndarray) -> tuple[Floats, Floats]:
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(baseline, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (n, dim) arrays of one shape, got {a.shape}, {b.shape}")
    return a, b


def _unit_rows(x: Floats) -> Floats:
    """Rows scaled to unit length; all-zero rows stay zero (they have no direction)."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    result: Floats = np.divide(x, norms, out=np.zeros_like(x), where=norms > 0)
    return result


def cosines(candidate: np.ndarray, baseline: np.ndarray) -> Floats:
    """Cosine similarity of each candidate row to the same baseline row, in [-1, 1].

    Rows need not be unit vectors. A zero row has no direction: against a non-zero row its
    cosine is taken as 0; two zero rows count as identical (1).
    """
    a, b = _pair(candidate, baseline)
    ua, ub = _unit_rows(a), _unit_rows(b)
    cos = np.clip(np.einsum("ij,ij->i", ua, ub), -1.0, 1.0)
    both_zero = ~ua.any(axis=1) & ~ub.any(axis=1)
    result: Floats = np.where(both_zero, 1.0, cos)
    return result


def lower_quantile(values: np.ndarray, q: float) -> float:
    """The `q` quantile as an order statistic: the smallest value with at least a fraction `q`
    of the values at or below it (numpy's "inverted_cdf"); no interpolation."""
    x = np.asarray(values, dtype=np.float64).ravel()
    return float(np.quantile(x, q, method="inverted_cdf"))


def _resampled_order_statistics(values: Floats, draws: float, bootstrap: Bootstrap) -> Floats:
    """In every bootstrap resample, the smallest value with at least `draws` of the resample's
    draws at or below it (from the count matrix, a block of resamples at a time)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    out = np.empty(bootstrap.resamples, dtype=np.float64)
    for start in range(0, bootstrap.resamples, _RESAMPLES_PER_BLOCK):
        stop = min(start + _RESAMPLES_PER_BLOCK, bootstrap.resamples)
        cumulative = np.cumsum(bootstrap.counts[start:stop, order], axis=1)
        # Counts are whole numbers held as floats: compare with a hair of slack.
        out[start:stop] = ordered[np.argmax(cumulative >= draws - 1e-9, axis=1)]
    return out


def cosine_summary(
    cos: np.ndarray, confidence: float, bootstrap: Bootstrap, *, q: float = 0.01
) -> CosineSummary:
    """Mean, `q` quantile (p1) and minimum of per-sample cosines, each with an interval.

    - mean: percentile bootstrap over the samples.
    - p1: the order-statistic quantile (`lower_quantile`) with a percentile bootstrap interval
      (each resample's own order statistic, from the count matrix).
    - minimum: the worst sample of this test set. No finite sample bounds the worst case of the
      population from below without assumptions, and the bootstrap of an extreme is degenerate:
      its resamples never fall below the sample minimum (about 63% of them contain it). The
      interval given is that percentile bootstrap: the lower end is the sample minimum itself
      (the end gates judge, so a gate on it reads "no test sample below the threshold") and the
      upper end shows how much the worst case would move had other samples been drawn. What the
      sample minimum says distribution-free about unseen samples is a tail bound, stated in the
      method: with probability c = (1 + `confidence`) / 2 (the one-sided level of each end of the
      two-sided intervals), at most a fraction 1 - (1 - c)^(1/n) of
      the population lies below it (the population fraction below the minimum of n draws is
      Beta(1, n)); for a bounded tail with a two-sided interval, gate on p1.

    `bootstrap` is the stage's shared bootstrap over the same samples.
    """
    x = np.asarray(cos, dtype=np.float64).ravel()
    n = x.size
    if n != bootstrap.n:
        raise ValueError(f"{n} cosines but the bootstrap is over {bootstrap.n} samples")
    mean = bootstrapped(float(x.mean()), bootstrap.means(x), n, confidence, higher_is_better=True)
    p1 = bootstrapped(
        lower_quantile(x, q),
        _resampled_order_statistics(x, q * n, bootstrap),
        n,
        confidence,
        higher_is_better=True,
    )
    minimum = bootstrapped(
        float(x.min()),
        _resampled_order_statistics(x, 1, bootstrap),
        n,
        confidence,
        higher_is_better=True,
    )
    one_sided = (1 + confidence) / 2  # `confidence` is the intervals' two-sided level
    tail = 1 - (1 - one_sided) ** (1 / n)
    minimum = minimum.model_copy(
        update={
            "method": f"sample minimum; {minimum.method}; distribution-free: with probability "
            f"{one_sided:g}, at most {tail:.3%} of the population lies below it"
        }
    )
    return CosineSummary(mean=mean, p1=p1, minimum=minimum)


def nearest_neighbours(embeddings: np.ndarray, k: int) -> NDArray[np.int64]:
    """Each row's `k` most cosine-similar other rows, most similar first (n × k indices).

    Ties go to the lower index, so equal embeddings give equal neighbour lists.
    """
    x = _unit_rows(np.asarray(embeddings, dtype=np.float64))
    n = len(x)
    if not 1 <= k < n:
        raise ValueError(f"k must lie in [1, {n - 1}] for {n} samples, got {k}")
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, _ROWS_PER_BLOCK):
        rows = np.arange(start, min(start + _ROWS_PER_BLOCK, n))
        similarity = x[rows] @ x.T
        similarity[np.arange(len(rows)), rows] = -np.inf  # a sample is not its own neighbour
        out[rows] = np.argsort(-similarity, axis=1, kind="stable")[:, :k]
    return out


def neighbour_overlap(
    candidate: np.ndarray, baseline: np.ndarray, k: int
) -> tuple[Floats, NDArray[np.bool_]]:
    """Per sample: |k nearest under the baseline ∩ k nearest under the candidate| / k, and
    whether the nearest neighbour is the same."""
    a, b = _pair(candidate, baseline)
    ours, theirs = nearest_neighbours(a, k), nearest_neighbours(b, k)
    shared = (ours[:, :, None] == theirs[:, None, :]).any(axis=2).sum(axis=1)
    return shared / k, ours[:, 0] == theirs[:, 0]


def topk_agreement(
    candidate: np.ndarray,
    baseline: np.ndarray,
    k: int,
    confidence: float,
    bootstrap: Bootstrap,
) -> NeighbourAgreement:
    """Mean overlap@k of the nearest-neighbour sets (bootstrap interval) and the top-1
    neighbour agreement rate (Wilson interval).

    Neighbours are searched among the test samples themselves, so the intervals are conditional
    on that set: they resample which samples are asked about, not the set searched.
    """
    overlap, same_first = neighbour_overlap(candidate, baseline, k)
    n = len(overlap)
    if n != bootstrap.n:
        raise ValueError(f"{n} samples but the bootstrap is over {bootstrap.n} samples")
    return NeighbourAgreement(
        k=k,
        overlap=bootstrapped(
            float(overlap.mean()), bootstrap.means(overlap), n, confidence, higher_is_better=True
        ),
        top1=wilson(int(same_first.sum()), n, confidence),
    )
