"""Group fairness of predictions, with fairlearn's definitions (between groups, worst case).

For a binary task (labels and predictions in {0, 1}, 1 the positive class):

- demographic parity difference: max - min over groups of the selection rate P(ŷ = 1 | g);
- equal opportunity difference: max - min over groups of the true positive rate;
- equalized odds difference: the larger of the true-positive-rate and false-positive-rate
  differences.

A group whose rate is undefined (no positives for the TPR, no negatives for the FPR) is left
out of that rate's difference; with fewer than two groups left the difference is 0.

The evaluator reports these differences and the accuracy gap with bootstrap intervals, and
their change from the baseline with the interval [-B, B], B an upper bound on the spread of the
groups' paired changes (`change_bounds`): valid at any baseline gap, where a bootstrap of the
change in a max - min is not. The worst group's accuracy and drop read their gated end from
each group's own interval, their other end from intervals simultaneous over the groups.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from compressgate.evaluators.base import (
    EVALUATORS,
    EvalContext,
    Evaluator,
    Subject,
    bootstrapped,
    extreme,
    wilson,
)
from compressgate.evaluators.paired import discordant, drop_estimate, tango_interval
from compressgate.evaluators.results import Estimate, FairnessResult, GroupRow
from compressgate.evaluators.stats import Bootstrap
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import FairnessSpec


def _arrays(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, *, binary: bool
) -> tuple[np.ndarray, np.ndarray, NDArray[np.int64], np.ndarray]:
    """Labels and predictions as given, group codes 0..G-1, the group values in code order."""
    y = np.asarray(y_true)
    p = np.asarray(y_pred)
    g = np.asarray(groups)
    if not (y.ndim == p.ndim == g.ndim == 1) or not (y.size == p.size == g.size):
        raise ValueError(
            f"y_true, y_pred and groups must be 1-D of one length, got {y.shape}, {p.shape}, "
            f"{g.shape}"
        )
    if binary and (not np.isin(y, (0, 1)).all() or not np.isin(p, (0, 1)).all()):
        raise ValueError("labels and predictions must be binary (0 or 1) for this metric")
    values, codes = np.unique(g, return_inverse=True)
    return y, p, codes.astype(np.int64), values


def _spread(rates: np.ndarray) -> float:
    defined = rates[~np.isnan(rates)]
    return float(defined.max() - defined.min()) if defined.size >= 2 else 0.0


def _group_rates(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per group: selection rate, true positive rate, false positive rate (nan if undefined)."""
    y, p, g, values = _arrays(y_true, y_pred, groups, binary=True)
    size = len(values)
    n = np.bincount(g, minlength=size).astype(np.float64)
    p = p.astype(np.float64)
    y = y.astype(np.float64)
    selected = np.bincount(g, weights=p, minlength=size)
    positives = np.bincount(g, weights=y, minlength=size)
    true_pos = np.bincount(g, weights=y * p, minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        selection = selected / n
        tpr = np.where(positives > 0, true_pos / positives, np.nan)
        fpr = np.where(n - positives > 0, (selected - true_pos) / (n - positives), np.nan)
    return selection, tpr, fpr


def demographic_parity_difference(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> float:
    """Largest difference in selection rate P(ŷ = 1) between two groups."""
    selection, _, _ = _group_rates(y_true, y_pred, groups)
    return _spread(selection)


def equal_opportunity_difference(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> float:
    """Largest difference in true positive rate between two groups."""
    _, tpr, _ = _group_rates(y_true, y_pred, groups)
    return _spread(tpr)


def equalized_odds_difference(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray) -> float:
    """The larger of the true- and false-positive-rate differences between groups."""
    _, tpr, fpr = _group_rates(y_true, y_pred, groups)
    return max(_spread(tpr), _spread(fpr))


def group_accuracy(
    y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray
) -> dict[int | str, float]:
    """Accuracy within each group, keyed by the group's value."""
    y, p, g, values = _arrays(y_true, y_pred, groups, binary=False)
    n = np.bincount(g, minlength=len(values))
    correct = np.bincount(g, weights=(y == p).astype(np.float64), minlength=len(values))
    return {
        value.item() if hasattr(value, "item") else value: float(correct[i] / n[i])
        for i, value in enumerate(values)
    }


# --- the evaluator ------------------------------------------------------------------------------


def _one_sided(two_sided: float) -> str:
    return f"{(1 + two_sided) / 2:.1%}"


def group_drops(
    base_correct: np.ndarray, correct: np.ndarray, g: NDArray[np.int64], size: int, level: float
) -> tuple[list[Estimate], Estimate]:
    """Each group's accuracy drop (baseline - candidate, Tango), its interval simultaneous over
    the groups (Bonferroni), and the largest drop: its upper end (what a `bound` gate reads) the
    largest of each group's own one-sided bound at the ends of a two-sided `level` interval,
    its lower end from the simultaneous intervals (`extreme`)."""
    each = 1 - (1 - level) / size
    simultaneous = f"simultaneous over {size} groups (bonferroni)"
    drops, own = [], []
    for code in range(size):
        mask = g == code
        b, c, m = discordant(base_correct[mask], correct[mask])
        drops.append(drop_estimate(b, c, m, each, f"tango, {simultaneous}"))
        own.append(drop_estimate(b, c, m, level, "tango"))
    worst = extreme(
        own,
        lowest=False,
        n=len(correct),
        confidence=level,
        method="maximum of paired tango intervals: upper end the highest of each group's own "
        f"one-sided {_one_sided(level)} bound, lower end {simultaneous}",
        simultaneous=drops,
    )
    return drops, worst


def spread_over_groups(rates: np.ndarray) -> np.ndarray:
    """max - min over the group axis (-2) of (..., groups, classes) rates, ignoring undefined
    (nan) rates; 0 where fewer than two groups have a defined rate."""
    defined = ~np.isnan(rates)
    high = np.max(np.where(defined, rates, -np.inf), axis=-2)
    low = np.min(np.where(defined, rates, np.inf), axis=-2)
    result: np.ndarray = np.where(defined.sum(axis=-2) >= 2, high - low, 0.0)
    return result


def parity_differences(
    selected: np.ndarray, positives: np.ndarray, true_pos: np.ndarray, n: np.ndarray
) -> dict[str, np.ndarray]:
    """The three differences from per-(group, class) counts shaped (..., G, K) and group sizes
    (..., G, 1); the worst over classes (one class for a binary task)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        selection = np.where(n > 0, selected / n, np.nan)
        tpr = np.where(positives > 0, true_pos / positives, np.nan)
        fpr = np.where(n - positives > 0, (selected - true_pos) / (n - positives), np.nan)
    tpr_gap = spread_over_groups(tpr)
    return {
        "demographic_parity_difference": spread_over_groups(selection).max(axis=-1),
        "equal_opportunity_difference": tpr_gap.max(axis=-1),
        "equalized_odds_difference": np.maximum(tpr_gap, spread_over_groups(fpr)).max(axis=-1),
    }


@EVALUATORS.register("fairness")
class Fairness(Evaluator[FairnessSpec]):
    kind = "fairness"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: FairnessSpec,
        ctx: EvalContext,
    ) -> FairnessResult:
        test = splits.test
        if test.groups is None:
            raise ctx.error(
                self.kind,
                "the data loader gives no groups for the test split",
                hint="return Split(x, y, groups) from the loader, or remove the fairness "
                "evaluator from the recipe",
            )
        y = test.y.numpy().astype(np.int64)
        values, g = np.unique(test.groups.numpy(), return_inverse=True)
        size = len(values)
        if size < 2:
            raise ctx.error(self.kind, f"the test split holds only {size} group; need two or more")
        names = [_group_name(v, splits.group_names) for v in values]
        probs = candidate.test_probabilities(test, splits.padding)
        pred = probs.argmax(axis=1)
        correct = pred == y
        n = len(y)
        # Each group's row holds simultaneously over the groups (Bonferroni): the worst group is
        # chosen after looking. The worst value's near end (the one a gate reads) needs only
        # each group's own bound (`extreme`); its far end takes the simultaneous ones.
        each = 1 - (1 - spec.interval_level) / size
        simultaneous = f"simultaneous over {size} groups (bonferroni)"
        base_correct = (
            None
            if baseline is None
            else baseline.test_probabilities(test, splits.padding).argmax(axis=1) == y
        )
        drops: list[Estimate] = []
        worst_drop = None
        if base_correct is not None:
            drops, worst_drop = group_drops(base_correct, correct, g, size, spec.interval_level)
        rows = []
        own_accuracy: list[Estimate] = []
        for code, name in enumerate(names):
            mask = g == code
            hits, m = int(correct[mask].sum()), int(mask.sum())
            own_accuracy.append(wilson(hits, m, spec.interval_level))
            row = GroupRow(
                group=code,
                name=name,
                n=m,
                accuracy=wilson(hits, m, each).model_copy(
                    update={"method": f"wilson, {simultaneous}"}
                ),
            )
            if base_correct is not None:
                b, c, _ = discordant(base_correct[mask], correct[mask])
                row = row.model_copy(
                    update={
                        "baseline_accuracy": float(base_correct[mask].mean()),
                        "drop": drops[code],
                        "b": b,
                        "c": c,
                    }
                )
            rows.append(row)
        worst = min(rows, key=lambda r: r.accuracy.estimate)
        worst_accuracy = extreme(
            own_accuracy,
            lowest=True,
            n=n,
            confidence=spec.interval_level,
            method="minimum of wilson intervals: lower end the lowest of each group's own "
            f"one-sided {_one_sided(spec.interval_level)} bound, upper end {simultaneous}",
            simultaneous=[r.accuracy for r in rows],
        )
        bootstrap = ctx.bootstrap(spec.resamples)
        classes = probs.shape[1]
        gap, parity = self._bootstrap(y, pred, g, size, classes, spec, bootstrap)
        changes: dict[str, Estimate] = {}
        if baseline is not None:
            base_pred = baseline.test_probabilities(test, splits.padding).argmax(axis=1)
            changes = gap_changes(y, base_pred, pred, g, size, classes, spec.interval_level)
        return FairnessResult(
            task="binary" if probs.shape[1] == 2 else "multiclass",
            groups=rows,
            worst_group=worst.name,
            worst_group_accuracy=worst_accuracy,
            worst_group_accuracy_drop=worst_drop,
            accuracy_gap=gap,
            demographic_parity_difference=parity["demographic_parity_difference"],
            equalized_odds_difference=parity["equalized_odds_difference"],
            equal_opportunity_difference=parity["equal_opportunity_difference"],
            accuracy_gap_change=changes.get("accuracy_gap_change"),
            demographic_parity_difference_change=changes.get(
                "demographic_parity_difference_change"
            ),
            equalized_odds_difference_change=changes.get("equalized_odds_difference_change"),
            equal_opportunity_difference_change=changes.get("equal_opportunity_difference_change"),
        )

    def _bootstrap(
        self,
        y: np.ndarray,
        pred: np.ndarray,
        g: np.ndarray,
        size: int,
        classes: int,
        spec: FairnessSpec,
        bootstrap: Bootstrap,
    ) -> tuple[Estimate, dict[str, Estimate]]:
        """Accuracy gap and parity differences with bootstrap intervals, from one matmul."""
        n = len(y)
        matrix = _count_columns(y, pred, g, size, classes)
        point = matrix.sum(axis=0)[None, :]
        statistics = _statistics(np.vstack([point, bootstrap.totals(matrix)]), size, classes)
        gaps = statistics["accuracy_gap"]
        gap = bootstrapped(gaps[0], gaps[1:], n, spec.interval_level, higher_is_better=False)
        parity = {
            name: bootstrapped(
                values[0], values[1:], n, spec.interval_level, higher_is_better=False
            )
            for name, values in statistics.items()
            if name != "accuracy_gap"
        }
        return gap, parity


def _labels(classes: int) -> list[int]:
    """The classes looked at: a binary task's positive class, else every class one-vs-rest."""
    return [1] if classes == 2 else list(range(classes))


def _count_columns(
    y: np.ndarray, pred: np.ndarray, g: np.ndarray, size: int, classes: int
) -> np.ndarray:
    """Per-sample indicator columns whose sums give every statistic (`_statistics`)."""
    n = len(y)
    labels = _labels(classes)
    member = (g[:, None] == np.arange(size)[None, :]).astype(np.float64)  # (n, G)
    hit = (pred == y).astype(np.float64)[:, None]
    sel = np.stack([pred == k for k in labels], axis=1).astype(np.float64)  # (n, K)
    pos = np.stack([y == k for k in labels], axis=1).astype(np.float64)
    per_cell = [(member[:, :, None] * a[:, None, :]).reshape(n, -1) for a in (sel, pos, sel * pos)]
    return np.hstack([member, member * hit, *per_cell])


def _statistics(totals: np.ndarray, size: int, classes: int) -> dict[str, np.ndarray]:
    """The accuracy gap and the parity differences from rows of `_count_columns`' sums."""
    count, correct = totals[:, :size], totals[:, size : 2 * size]
    cells = size * len(_labels(classes))
    shaped = [
        totals[:, 2 * size + i * cells : 2 * size + (i + 1) * cells].reshape(
            -1, size, cells // size
        )
        for i in range(3)
    ]
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(count > 0, correct / count, np.nan)
    gaps = spread_over_groups(accuracy[:, :, None])[:, 0]
    return {
        "accuracy_gap": gaps,
        **parity_differences(shaped[0], shaped[1], shaped[2], count[:, :, None]),
    }


def _points(
    y: np.ndarray, pred: np.ndarray, g: np.ndarray, size: int, classes: int
) -> dict[str, float]:
    totals = _count_columns(y, pred, g, size, classes).sum(axis=0)[None, :]
    return {name: float(v[0]) for name, v in _statistics(totals, size, classes).items()}


# --- changes in the gaps ------------------------------------------------------------------------
#
# A gap is max - min over groups of a rate; its change from the baseline is not smooth where the
# baseline's gap is near 0 (the bootstrap of it is then biased and inconsistent). With δ_g the
# change in group g's rate (candidate - baseline on the same samples of the group), for the pair
# (i, j) realising the candidate's gap, gap_c - gap_b <= (c_i - c_j) - (b_i - b_j) = δ_i - δ_j,
# and alike the other way round: |gap_c - gap_b| <= max_g δ_g - min_g δ_g, at any baseline gap.
# An upper bound on that spread which errs at most α bounds the change both ways at level α.


def group_rate_changes(
    base: np.ndarray,
    cand: np.ndarray,
    g: np.ndarray,
    size: int,
    within: np.ndarray,
    confidence: float,
) -> list[tuple[float, float, float]]:
    """For each group with samples `within`: the change in the rate of True from `base` to
    `cand` over those samples, with Tango's interval at two-sided `confidence` (a paired
    difference of proportions, `compressgate.evaluators.paired`): (δ, low, high)."""
    where = g[within]
    up = np.bincount(where, weights=(cand & ~base)[within], minlength=size)
    down = np.bincount(where, weights=(base & ~cand)[within], minlength=size)
    m = np.bincount(where, minlength=size)
    found = []
    for code in range(size):
        if m[code] > 0:
            b, c, k = int(down[code]), int(up[code]), int(m[code])
            found.append(((c - b) / k, *tango_interval(b, c, k, confidence)))
    return found


def spread_bound(changes: Sequence[tuple[float, float, float]]) -> float:
    """An upper bound, at the one-sided level of the intervals' ends, on max_g δ_g - min_g δ_g.

    The spread is δ_i - δ_j for one fixed (unknown) pair, so the largest over ordered pairs of
    an upper bound on δ_i - δ_j errs only when that pair's does: no correction for the number of
    pairs. Each pair's bound is the MOVER limit from the two groups' own (independent) intervals,
    δ̂_i - δ̂_j + sqrt((u_i - δ̂_i)² + (δ̂_j - l_j)²) (Zou & Donner 2008, Stat Med 27:1693;
    Newcombe 1998, Stat Med 17:873). 0 with fewer than two groups (no gap to change).
    """
    best = 0.0
    for i, (d_i, _, high) in enumerate(changes):
        for j, (d_j, low, _) in enumerate(changes):
            if i != j:
                best = max(best, d_i - d_j + math.hypot(high - d_i, d_j - low))
    return best


def change_bounds(
    y: np.ndarray,
    base_pred: np.ndarray,
    pred: np.ndarray,
    g: np.ndarray,
    size: int,
    classes: int,
    confidence: float,
) -> dict[str, float]:
    """For each gap: B with |change| <= B failing at most (1 - confidence) / 2 of the time.

    Selection rate, true and false positive rates per class looked at (one-vs-rest), accuracy;
    a gap over several rates or classes (equalized odds, the worst class) changes by at most the
    largest of their spreads, whose bound errs only if the true largest one's does.
    """
    everyone = np.ones(len(y), dtype=bool)
    bound = {"selection": 0.0, "tpr": 0.0, "fpr": 0.0}
    for k in _labels(classes):
        base, cand, truth = base_pred == k, pred == k, y == k
        for rate, within in (("selection", everyone), ("tpr", truth), ("fpr", ~truth)):
            changes = group_rate_changes(base, cand, g, size, within, confidence)
            bound[rate] = max(bound[rate], spread_bound(changes))
    accuracy = group_rate_changes(base_pred == y, pred == y, g, size, everyone, confidence)
    return {
        "accuracy_gap": spread_bound(accuracy),
        "demographic_parity_difference": bound["selection"],
        "equalized_odds_difference": max(bound["tpr"], bound["fpr"]),
        "equal_opportunity_difference": bound["tpr"],
    }


def gap_changes(
    y: np.ndarray,
    base_pred: np.ndarray,
    pred: np.ndarray,
    g: np.ndarray,
    size: int,
    classes: int,
    confidence: float,
) -> dict[str, Estimate]:
    """Each gap's change from the baseline (`<gap>_change`): the plain change in the gap, with
    the interval [-B, B] of `change_bounds` (each end one-sided at (1 + confidence) / 2)."""
    base, cand = _points(y, base_pred, g, size, classes), _points(y, pred, g, size, classes)
    bounds = change_bounds(y, base_pred, pred, g, size, classes, confidence)
    changes = {}
    for name, bound in bounds.items():
        change = cand[name] - base[name]
        # |change| <= spread of the sample δ's <= bound, up to rounding in the two computations.
        bound = max(bound, abs(change))
        changes[f"{name}_change"] = Estimate(
            estimate=change,
            ci_low=-bound,
            ci_high=bound,
            n=len(y),
            confidence=confidence,
            method="paired spread bound: |change| <= max - min over groups of each group's "
            "paired change (tango), the largest MOVER limit over group pairs; valid at any "
            "baseline gap, symmetric about 0, conservative where the baseline's gap is large",
            higher_is_better=False,
        )
    return changes


def _group_name(value: object, names: tuple[str, ...]) -> str:
    if isinstance(value, np.integer) and 0 <= int(value) < len(names):
        return names[int(value)]
    return str(value.item() if isinstance(value, np.generic) else value)
