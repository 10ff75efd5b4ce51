"""Across seeds: each metric's mean, t interval, worst seed and spread, and the
compression-identified exemplars.

One seed is an anecdote. Every metric of a stage is summarised over the recipe's seeds: the
mean with a Student t interval (the seeds as the sample), the spread, and the worst seed (by the
metric's direction), whose own interval is kept beside it.

Compression-identified exemplars (Hooker et al., "What Do Compressed Deep Neural Networks
Forget?", 2019) are the test samples on which the population of compressed models (one per
seed) and the population of baselines disagree: the modal predicted label differs. With ties
the set of modal labels is compared, so no tie is broken arbitrarily. Samples are matched across
seeds by the ids the data loader gives (`Split.ids`), or by position when the test split is the
same for every seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from compressgate.evaluators import stats
from compressgate.evaluators.base import wilson
from compressgate.evaluators.results import Estimate, ExemplarsResult, SeedAggregate


def aggregate(
    per_seed: Mapping[int, Mapping[str, Estimate]], confidence: float = 0.95
) -> dict[str, SeedAggregate]:
    """Every metric present for all seeds, summarised over them (needs two seeds or more)."""
    seeds = sorted(per_seed)
    if len(seeds) < 2:
        return {}
    common = set.intersection(*(set(per_seed[s]) for s in seeds))
    first = per_seed[seeds[0]]
    out = {}
    for name in [m for m in first if m in common]:
        estimates = [per_seed[s][name] for s in seeds]
        values = np.array([e.estimate for e in estimates], dtype=np.float64)
        if not np.all(np.isfinite(values)):
            continue
        low, high = stats.t_interval(values, confidence)
        direction = first[name].higher_is_better
        worst_index = None
        if direction is not None:
            worst_index = int(np.argmin(values) if direction else np.argmax(values))
        worst = estimates[worst_index] if worst_index is not None else None
        out[name] = SeedAggregate(
            mean=float(values.mean()),
            ci_low=low,
            ci_high=high,
            seeds=len(seeds),
            sd=float(values.std(ddof=1)),
            spread=float(values.max() - values.min()),
            worst=None if worst is None else worst.estimate,
            worst_seed=None if worst_index is None else seeds[worst_index],
            worst_ci_low=None if worst is None else worst.ci_low,
            worst_ci_high=None if worst is None else worst.ci_high,
            confidence=confidence,
            unit=first[name].unit,
            higher_is_better=direction,
        )
    return out


def modal_labels(predictions: np.ndarray, classes: int) -> np.ndarray:
    """(models × samples) predictions → (samples × classes) mask of each sample's modal labels."""
    votes = np.zeros((predictions.shape[1], classes), dtype=np.int64)
    for row in predictions:
        votes[np.arange(predictions.shape[1]), row] += 1
    result: np.ndarray = votes == votes.max(axis=1, keepdims=True)
    return result


def compression_identified(
    baseline_predictions: np.ndarray, candidate_predictions: np.ndarray
) -> np.ndarray:
    """Per sample: do the two populations' modal labels differ? Both (models × samples)."""
    base = np.asarray(baseline_predictions, dtype=np.int64)
    cand = np.asarray(candidate_predictions, dtype=np.int64)
    if base.ndim != 2 or cand.ndim != 2 or base.shape[1] != cand.shape[1]:
        raise ValueError("expected two (models × samples) arrays over the same samples")
    classes = int(max(base.max(initial=0), cand.max(initial=0))) + 1
    result: np.ndarray = np.any(modal_labels(base, classes) != modal_labels(cand, classes), axis=1)
    return result


def exemplars(
    seeds: Sequence[int],
    ids: Mapping[int, np.ndarray | None],
    labels: Mapping[int, np.ndarray],
    baseline_predictions: Mapping[int, np.ndarray],
    candidate_predictions: Mapping[int, np.ndarray],
    confidence: float = 0.95,
) -> ExemplarsResult:
    """The compression-identified exemplars of one stage over `seeds`, matched by sample id."""
    order = list(seeds)
    matched = _match(order, ids, labels)
    if isinstance(matched, str):
        return ExemplarsResult(
            seeds=order,
            n=0,
            count=0,
            fraction=wilson(0, 0, confidence, higher_is_better=False),
            ids=[],
            note=matched,
        )
    common, positions = matched
    base = np.stack([baseline_predictions[s][positions[s]] for s in order])
    cand = np.stack([candidate_predictions[s][positions[s]] for s in order])
    truth = labels[order[0]][positions[order[0]]]
    flagged = compression_identified(base, cand)
    n, count = len(common), int(flagged.sum())

    def accuracy(predictions: np.ndarray, where: np.ndarray) -> float | None:
        return float(np.mean(predictions[:, where] == truth[where])) if where.any() else None

    return ExemplarsResult(
        seeds=order,
        n=n,
        count=count,
        fraction=wilson(count, n, confidence, higher_is_better=False),
        ids=[int(i) for i in common[flagged]],
        baseline_accuracy_on_exemplars=accuracy(base, flagged),
        candidate_accuracy_on_exemplars=accuracy(cand, flagged),
        baseline_accuracy_elsewhere=accuracy(base, ~flagged),
    )


def _match(
    seeds: list[int], ids: Mapping[int, np.ndarray | None], labels: Mapping[int, np.ndarray]
) -> tuple[np.ndarray, dict[int, np.ndarray]] | str:
    """The sample ids in every seed's test split and where each sits; or why there are none."""
    if any(ids[s] is None for s in seeds):
        sizes = {len(labels[s]) for s in seeds}
        same = len(sizes) == 1 and all(np.array_equal(labels[s], labels[seeds[0]]) for s in seeds)
        if not same:
            return (
                "the test splits differ across seeds and the loader gives no sample ids "
                "(Split.ids) to match them"
            )
        every = np.arange(len(labels[seeds[0]]))
        return every, dict.fromkeys(seeds, every)
    keyed = {s: np.asarray(ids[s], dtype=np.int64) for s in seeds}
    common = keyed[seeds[0]]
    for s in seeds[1:]:
        common = np.intersect1d(common, keyed[s])
    if common.size == 0:
        return "no test sample is in every seed's test split"
    positions = {}
    for s in seeds:
        index = {int(v): i for i, v in enumerate(keyed[s])}
        positions[s] = np.array([index[int(v)] for v in common], dtype=np.int64)
    first = labels[seeds[0]][positions[seeds[0]]]
    if any(not np.array_equal(labels[s][positions[s]], first) for s in seeds):
        return "a sample id carries different labels in different seeds; ids must name samples"
    return common, positions


# --- the mean over seeds that share one test split ----------------------------------------------


@dataclass(frozen=True)
class CrossedMean:
    """The mean of a per-sample value over seeds × shared test samples, with its interval.

    `seed_ms`, `sample_ms` and `residual_ms` are the two-way ANOVA mean squares (seeds, test
    samples, their interaction); `seed_term` whether the seeds' own variance was counted with
    its k - 1 degrees of freedom (False: the seeds differ no more than their interaction with
    the samples explains)."""

    estimate: float
    ci_low: float
    ci_high: float
    seeds: int
    n: int
    confidence: float
    seed_ms: float
    sample_ms: float
    residual_ms: float
    seed_term: bool


def crossed_mean(
    values: np.ndarray, confidence: float, *, lowest: float, highest: float
) -> CrossedMean:
    """The interval of the mean of `values` (seeds × test samples, each in [lowest, highest]) over
    the population of seeds and of test samples, when every seed is evaluated on the same test
    samples; two-sided at `confidence`, each end a one-sided bound at (1 + confidence) / 2.

    A t interval over the seeds' estimates leaves out the test-sample variance every seed
    shares (it is zero-width when the seeds agree). Here the seeds and the samples are crossed
    random factors, as readers and cases in a multi-reader multi-case study (Dorfman, Berbaum
    & Metz, Invest Radiol 27:723, 1992; Obuchowski & Rockette, Commun Stat Simul 24:285, 1995):
    with mean squares MS_seeds (k - 1 degrees of freedom), MS_samples and MS_residual, the
    variance of the grand mean is (n σ²_seed + k σ²_sample + σ²_residual) / (n k), in two parts:
    the seeds' MS_seeds, known to k - 1 degrees of freedom only, and the samples' max(MS_samples -
    MS_residual, 0), known to about n (when MS_seeds < MS_residual the seeds differ no more than
    their interaction with the samples explains, and MS_residual, known to (k - 1)(n - 1),
    stands for them). Each part gets its own quantile and the half-widths are combined as for a
    sum of independent estimates (MOVER: Zou & Donner, Stat Med 27:1693, 2008; Graybill & Wang,
    JASA 75:869, 1980): half² = (t_{k-1}² MS_seeds + z² max(MS_samples - MS_res, 0)) / (n k).
    Simulated, this holds its level where the Satterthwaite degrees of freedom of the sum
    (Hillis, Stat Med 26:596, 2007) do not: with 3 to 5 seeds, a t with a few degrees of
    freedom is a poor approximation of the sum's spread.

    The samples' part is a score variance, not a Wald one: for each candidate value δ of the
    mean, the per-sample means over the seeds are given their maximum-likelihood distribution
    with mean δ (a multinomial on the values seen, plus the end of [lowest, highest] when δ
    needs it: empirical likelihood, Owen, Biometrika 75:237, 1988), and δ is in the interval
    when |estimate - δ| is within the half-width at δ. When the seeds agree on every sample and
    the values are in {-1, 0, 1}, this is Tango's score interval of a paired difference (Tango,
    Stat Med 17:891, 1998), which keeps its level with few discordant pairs where a Wald
    interval does not. The seeds' own variance is taken as normal: with a handful of seeds no
    method can check that.
    """
    from scipy import optimize, special

    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 2:
        raise ValueError("crossed_mean needs seeds × samples values, two of each or more")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if x.min() < lowest or x.max() > highest:
        raise ValueError(f"values must lie in [{lowest:g}, {highest:g}]")
    k, n = x.shape
    grand = float(x.mean())
    by_seed = x.mean(axis=1)
    by_sample = x.mean(axis=0)
    seed_ms = float(n * np.sum((by_seed - grand) ** 2) / (k - 1))
    residual = x - by_seed[:, None] - by_sample[None, :] + grand
    residual_ms = float(np.sum(residual**2) / ((k - 1) * (n - 1)))
    # Mean squares below 1e-12 of the values' range are rounding, not variance.
    tiny = 1e-12 * (highest - lowest) ** 2
    seed_term = seed_ms >= residual_ms and seed_ms > tiny
    one_sided = 0.5 + confidence / 2
    z2 = float(special.ndtri(one_sided)) ** 2
    t2 = float(special.stdtrit(k - 1, one_sided)) ** 2
    fixed = t2 * seed_ms if seed_term else z2 * residual_ms * (residual_ms > tiny)
    support, counts = np.unique(np.round(by_sample, 12), return_counts=True)
    weights = counts.astype(np.float64)

    def excess(delta: float) -> float:
        """How far δ is past the half-width at δ (positive: δ is outside the interval)."""
        sample = k * _null_variance(support, weights, delta, lowest, highest)
        half2 = (fixed + z2 * max(sample - residual_ms, 0.0)) / (n * k)
        if half2 <= 0:  # at the estimate itself, or δ at an end all the values sit at
            return math.inf if delta != grand else -1.0
        return abs(grand - delta) - math.sqrt(half2)

    def end(limit: float) -> float:
        if abs(limit - grand) < 1e-15 or excess(limit) <= 0:
            return limit
        edge = limit + (grand - limit) * 1e-12
        if excess(edge) <= 0:
            return limit
        return float(optimize.brentq(excess, edge, grand, xtol=1e-12, rtol=1e-12))

    return CrossedMean(
        estimate=grand,
        ci_low=end(lowest),
        ci_high=end(highest),
        seeds=k,
        n=n,
        confidence=confidence,
        seed_ms=seed_ms,
        sample_ms=float(k * np.var(by_sample, ddof=1)),
        residual_ms=residual_ms,
        seed_term=seed_term,
    )


def _null_variance(
    support: np.ndarray, counts: np.ndarray, delta: float, lowest: float, highest: float
) -> float:
    """The variance of the maximum-likelihood distribution of values seen `counts` times at
    `support`, among distributions on [lowest, highest] with mean `delta`: the empirical
    likelihood weights, with mass at the end of the range toward δ when they cannot reach it."""
    from scipy import optimize

    u = support - delta
    n = float(counts.sum())
    mean = float(counts @ u) / n
    if abs(mean) <= 1e-13:
        return float(counts @ u**2) / n
    if mean < 0:  # δ above the values' mean: the mirror image, -u seen around -δ
        u, lowest = -u, -highest
        delta = -delta
    gap = delta - lowest  # > 0: δ lies above the lowest possible value
    if gap <= 0:
        return 0.0
    top = 1.0 / gap  # weights n_j / (n (1 + t u_j)) stay positive at the lowest value up to t

    def balance(t: float) -> float:
        return float(counts @ (u / (1 + t * u)))

    near = top * (1 - 1e-12)
    if balance(near) >= 0:  # the values seen cannot reach δ: the rest of the mass at `lowest`
        weights = counts / (n * (1 + top * u))
        extra = max(1.0 - float(weights.sum()), 0.0)
        return float(weights @ u**2) + extra * gap**2
    t = float(optimize.brentq(balance, 0.0, near, xtol=1e-14, rtol=1e-14))
    weights = counts / (n * (1 + t * u))
    return float(weights @ u**2) / float(weights.sum())
