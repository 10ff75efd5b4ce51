"""Intervals, multiple-testing corrections and the bootstrap, over plain numpy arrays.

Everything here is distribution-free or exact where that is affordable: Wilson intervals for
proportions (scipy), order-statistic intervals for quantiles, Holm's step-down adjustment, the
Student t interval for a mean over a handful of seeds, and a percentile bootstrap whose
resamples are a count matrix, so that any statistic built from per-sample sums costs one matrix
product for all resamples at once.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

Floats = NDArray[np.float64]


def _confidence(confidence: float) -> float:
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    return confidence


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (scipy's implementation).

    With no trials nothing is known: the interval is [0, 1].
    """
    from scipy import stats  # on first use: judging a recorded gate rarely needs it

    _confidence(confidence)
    if n == 0:
        return 0.0, 1.0
    ci = stats.binomtest(int(successes), int(n)).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return float(ci.low), float(ci.high)


@functools.lru_cache(maxsize=4096)
def _quantile_ranks(n: int, q: float, confidence: float) -> tuple[int, int]:
    """0-based order statistics bracketing the `q` quantile with equal tails (clamped); a pure
    function of its arguments, cached (every batch of a run asks the same few)."""
    from scipy import stats  # on first use: judging a recorded gate rarely needs it

    if n == 0:
        raise ValueError("quantile_ci needs at least one sample")
    if not 0 < q < 1:
        raise ValueError(f"q must lie in (0, 1), got {q}")
    tail = (1 - _confidence(confidence)) / 2
    binom = stats.binom
    # With B ~ binomial(n, q) the number of samples below the quantile, the 0-based order
    # statistics x[l] and x[u] bracket it with probability cdf(u) - cdf(l) >= 1 - 2 * tail when
    # l is the largest index with cdf(l) <= tail and u the smallest with cdf(u) >= 1 - tail.
    lower = int(binom.ppf(tail, n, q))
    if binom.cdf(lower, n, q) > tail:
        lower -= 1
    upper = int(binom.ppf(1 - tail, n, q))
    return max(lower, 0), min(upper, n - 1)


def quantile_ci(samples: np.ndarray, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval for the `q` quantile from order statistics.

    The ranks come from the binomial(n, q) distribution of the number of samples below the true
    quantile: the interval [x_(l), x_(u)] covers it with probability at least `confidence`
    (equal tails, the usual conservative choice). With too few samples for the requested
    confidence, the corresponding end is the sample minimum or maximum and the interval covers
    less often than asked: `quantile_coverage` says how often.
    """
    x = np.sort(np.asarray(samples, dtype=np.float64).ravel())
    lower, upper = _quantile_ranks(x.size, q, confidence)
    return float(x[lower]), float(x[upper])


def quantile_coverage(n: int, q: float, confidence: float = 0.95) -> float:
    """The probability that `quantile_ci` over `n` samples covers the `q` quantile (for a
    continuous distribution): `confidence` or more, unless n is too small for it."""
    from scipy import stats  # on first use: judging a recorded gate rarely needs it

    lower, upper = _quantile_ranks(n, q, confidence)
    binom = stats.binom(n, q)
    return float(binom.cdf(upper) - binom.cdf(lower))


@functools.lru_cache(maxsize=4096)
def quantile_reach(n: int, q: float, confidence: float = 0.95) -> tuple[float, float]:
    """The one-sided coverage of each end of `quantile_ci` over `n` independent samples (for a
    continuous distribution): P(lower end <= the `q` quantile), P(upper end >= it). Each is at
    least (1 + confidence) / 2 unless n is too small for that end, which is then the sample
    minimum or maximum: the upper end reaches 1 - q^n, the lower 1 - (1 - q)^n."""
    from scipy import stats  # on first use: judging a recorded gate rarely needs it

    lower, upper = _quantile_ranks(n, q, confidence)
    # x_(k) (0-based) lies at or below the quantile exactly when more than k samples do.
    return float(stats.binom.sf(lower, n, q)), float(stats.binom.cdf(upper, n, q))


def log_t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """A Student t interval on the logarithms of positive values, mapped back: the interval of
    the geometric mean of a few independent estimates (sessions' ratios or percentiles)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    if np.any(~(x > 0)):
        raise ValueError("log_t_interval needs positive values")
    if x.size < 2:
        raise ValueError("a t interval needs at least two values")
    logs = np.log(x)
    half = _student(0.5 + _confidence(confidence) / 2, x.size - 1) * float(
        logs.std(ddof=1) / np.sqrt(x.size)
    )
    mean = float(logs.mean())
    return float(np.exp(mean - half)), float(np.exp(mean + half))


@functools.lru_cache(maxsize=1024)
def _student(p: float, df: int) -> float:
    """The `p` quantile of Student's t with `df` degrees of freedom (scipy), cached."""
    from scipy import stats  # on first use: judging a recorded gate rarely needs it

    return float(stats.t.ppf(p, df))


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order (family-wise error control).

    The i-th smallest p-value is multiplied by (m - i + 1), made non-decreasing along the
    sorted order, and capped at 1.
    """
    p = np.asarray(pvalues, dtype=np.float64).ravel()
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * (m - np.arange(m))
    adjusted = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out = np.empty(m, dtype=np.float64)
    out[order] = adjusted
    return out


def t_interval(
    values: Sequence[float] | np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """Student t interval for the mean of a few values (seeds); needs at least two."""
    from scipy import stats  # on first use: judging a recorded gate rarely needs it

    x = np.asarray(values, dtype=np.float64).ravel()
    if x.size < 2:
        raise ValueError("a t interval needs at least two values")
    mean = float(x.mean())
    half = float(stats.t.ppf(0.5 + _confidence(confidence) / 2, x.size - 1)) * float(
        x.std(ddof=1) / np.sqrt(x.size)
    )
    return mean - half, mean + half


def percentile_interval(replicates: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """The percentile bootstrap interval; replicates where the statistic is undefined (nan,
    e.g. a group absent from a resample) are left out."""
    r = np.asarray(replicates, dtype=np.float64).ravel()
    r = r[~np.isnan(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    tail = (1 - _confidence(confidence)) / 2
    low, high = np.quantile(r, [tail, 1 - tail])
    return float(low), float(high)


class Bootstrap:
    """`resamples` bootstrap resamples of `n` items, held as a (resamples × n) count matrix.

    Row b says how often each item was drawn in resample b (a multinomial draw of n items with
    replacement, as in the ordinary nonparametric bootstrap). A statistic that is a function of
    per-item sums is then computed for every resample by one matrix product: `totals(V)` gives
    the sums of the columns of V in every resample. Evaluators share one `Bootstrap` per stage,
    so every statistic of a stage is computed on the same resamples.
    """

    _CHUNK = 100

    def __init__(self, n: int, resamples: int = 2000, seed: int = 0) -> None:
        if n < 1:
            raise ValueError("the bootstrap needs at least one item")
        if resamples < 1:
            raise ValueError("the bootstrap needs at least one resample")
        self.n = n
        self.resamples = resamples
        self.seed = seed
        rng = np.random.default_rng(seed)
        counts = np.empty((resamples, n), dtype=np.float64)
        # Row by row bincounts stay in cache; one flat bincount over resamples × n does not.
        for start in range(0, resamples, self._CHUNK):
            rows = rng.integers(0, n, size=(min(self._CHUNK, resamples - start), n))
            for offset, row in enumerate(rows):
                counts[start + offset] = np.bincount(row, minlength=n)
        self.counts = counts

    def totals(self, columns: np.ndarray) -> np.ndarray:
        """Per-resample sums of each column of `columns` (n × k → resamples × k)."""
        values = np.asarray(columns, dtype=np.float64)
        if values.shape[0] != self.n:
            raise ValueError(f"expected {self.n} rows, got {values.shape[0]}")
        result: np.ndarray = self.counts @ values
        return result

    def means(self, values: np.ndarray) -> np.ndarray:
        """Per-resample means of a per-item value (n → resamples)."""
        result: np.ndarray = self.totals(np.asarray(values, dtype=np.float64)[:, None])[:, 0]
        return result / self.n
