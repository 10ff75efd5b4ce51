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

from collections.abc import Mapping, Sequence

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
