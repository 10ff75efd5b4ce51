"""Group fairness of predictions, with fairlearn's definitions (between groups, worst case).

For a binary task (labels and predictions in {0, 1}, 1 the positive class):

- demographic parity difference: max - min over groups of the selection rate P(ŷ = 1 | g);
- equal opportunity difference: max - min over groups of the true positive rate;
- equalized odds difference: the larger of the true-positive-rate and false-positive-rate
  differences.

A group whose rate is undefined (no positives for the TPR, no negatives for the FPR) is left
out of that rate's difference; with fewer than two groups left the difference is 0.
"""

from __future__ import annotations

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
from compressgate.evaluators.paired import discordant, drop_estimate
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
        probs = candidate.test_probabilities(test)
        pred = probs.argmax(axis=1)
        correct = pred == y
        n = len(y)
        # Simultaneous intervals over the groups (Bonferroni): the worst group is chosen after
        # looking, and its interval must still hold.
        each = 1 - (1 - spec.interval_level) / size
        simultaneous = f"simultaneous over {size} groups (bonferroni)"
        base_correct = (
            None if baseline is None else baseline.test_probabilities(test).argmax(axis=1) == y
        )
        rows = []
        for code, name in enumerate(names):
            mask = g == code
            accuracy = wilson(int(correct[mask].sum()), int(mask.sum()), each)
            row = GroupRow(
                group=code,
                name=name,
                n=int(mask.sum()),
                accuracy=accuracy.model_copy(update={"method": f"wilson, {simultaneous}"}),
            )
            if base_correct is not None:
                b, c, m = discordant(base_correct[mask], correct[mask])
                row = row.model_copy(
                    update={
                        "baseline_accuracy": float(base_correct[mask].mean()),
                        "drop": drop_estimate(b, c, m, each, f"tango, {simultaneous}"),
                    }
                )
            rows.append(row)
        worst = min(rows, key=lambda r: r.accuracy.estimate)
        worst_accuracy = extreme(
            [r.accuracy for r in rows],
            lowest=True,
            n=n,
            confidence=spec.interval_level,
            method=f"minimum of wilson intervals, {simultaneous}",
        )
        drops = [r.drop for r in rows if r.drop is not None]
        worst_drop = None
        if drops:
            worst_drop = extreme(
                drops,
                lowest=False,
                n=n,
                confidence=spec.interval_level,
                method=f"maximum of paired tango intervals, {simultaneous}",
            )
        bootstrap = ctx.bootstrap(spec.resamples)
        classes = probs.shape[1]
        gap, parity, replicates = self._bootstrap(y, pred, g, size, classes, spec, bootstrap)
        changes: dict[str, Estimate] = {}
        if baseline is not None:
            # The baseline's differences on the same resamples: the change is a paired statistic.
            base_pred = baseline.test_probabilities(test).argmax(axis=1)
            _, _, base_replicates = self._bootstrap(y, base_pred, g, size, classes, spec, bootstrap)
            changes = {
                f"{name}_change": bootstrapped(
                    values[0] - base_replicates[name][0],
                    values[1:] - base_replicates[name][1:],
                    n,
                    spec.interval_level,
                    higher_is_better=False,
                    paired=True,
                )
                for name, values in replicates.items()
            }
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
    ) -> tuple[Estimate, dict[str, Estimate], dict[str, np.ndarray]]:
        """Accuracy gap and parity differences with bootstrap intervals, from one matmul; and
        every statistic's point value followed by its replicates (for paired changes)."""
        n = len(y)
        # A binary task looks at the positive class only; a multiclass one at every class,
        # one-vs-rest, reporting the worst.
        labels = [1] if classes == 2 else list(range(classes))
        member = (g[:, None] == np.arange(size)[None, :]).astype(np.float64)  # (n, G)
        hit = (pred == y).astype(np.float64)[:, None]
        sel = np.stack([pred == k for k in labels], axis=1).astype(np.float64)  # (n, K)
        pos = np.stack([y == k for k in labels], axis=1).astype(np.float64)
        per_cell = [
            (member[:, :, None] * a[:, None, :]).reshape(n, -1) for a in (sel, pos, sel * pos)
        ]
        matrix = np.hstack([member, member * hit, *per_cell])
        point = matrix.sum(axis=0)[None, :]
        totals = np.vstack([point, bootstrap.totals(matrix)])
        count, correct = totals[:, :size], totals[:, size : 2 * size]
        cells = size * len(labels)
        shaped = [
            totals[:, 2 * size + i * cells : 2 * size + (i + 1) * cells].reshape(
                -1, size, len(labels)
            )
            for i in range(3)
        ]
        with np.errstate(invalid="ignore", divide="ignore"):
            accuracy = np.where(count > 0, correct / count, np.nan)
        gaps = spread_over_groups(accuracy[:, :, None])[:, 0]
        differences = parity_differences(shaped[0], shaped[1], shaped[2], count[:, :, None])
        gap = bootstrapped(gaps[0], gaps[1:], n, spec.interval_level, higher_is_better=False)
        parity = {
            name: bootstrapped(
                values[0], values[1:], n, spec.interval_level, higher_is_better=False
            )
            for name, values in differences.items()
        }
        return gap, parity, {"accuracy_gap": gaps, **differences}


def _group_name(value: object, names: tuple[str, ...]) -> str:
    if isinstance(value, np.integer) and 0 <= int(value) < len(names):
        return names[int(value)]
    return str(value.item() if isinstance(value, np.generic) else value)
