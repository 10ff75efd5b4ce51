"""Per-class recall and its change: compression forgets some classes first.

Overall accuracy can hold while one class collapses. For every class: the candidate's recall,
the baseline's, the paired drop with a Tango interval, and McNemar's exact test within the
class; p-values are adjusted with Holm's method over the classes, and the classes with the
largest drop are named. Each class's row holds simultaneously over the classes (Bonferroni),
because the worst class is picked after looking. The worst recall and the largest drop read
their gated end (the lower end of the worst recall, the upper end of the largest drop) from
each class's own interval: it errs only if the truly worst class's own bound does (`extreme`).
"""

from __future__ import annotations

import numpy as np

from compressgate.evaluators.base import (
    EVALUATORS,
    EvalContext,
    Evaluator,
    Subject,
    extreme,
    wilson,
)
from compressgate.evaluators.paired import discordant, drop_estimate, mcnemar_counts
from compressgate.evaluators.results import ClassesResult, ClassRow, Estimate
from compressgate.evaluators.stats import holm
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import ClassesSpec


@EVALUATORS.register("classes")
class Classes(Evaluator[ClassesSpec]):
    kind = "classes"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: ClassesSpec,
        ctx: EvalContext,
    ) -> ClassesResult:
        test = splits.test
        y = test.y.numpy()
        correct = candidate.test_probabilities(test, splits.padding).argmax(axis=1) == y
        base_correct = (
            None
            if baseline is None
            else baseline.test_probabilities(test, splits.padding).argmax(axis=1) == y
        )
        present = [int(k) for k in np.unique(y)]
        each = 1 - (1 - spec.interval_level) / len(present)
        simultaneous = f"simultaneous over {len(present)} classes (bonferroni)"
        rows: list[ClassRow] = []
        pvalues: list[float] = []
        own_recall: list[Estimate] = []
        own_drops: list[Estimate] = []
        for label in present:
            mask = y == label
            hits, m = int(correct[mask].sum()), int(mask.sum())
            own_recall.append(wilson(hits, m, spec.interval_level))
            row = ClassRow(
                label=label,
                name=_class_name(label, splits.class_names),
                n=m,
                recall=wilson(hits, m, each).model_copy(
                    update={"method": f"wilson, {simultaneous}"}
                ),
            )
            if base_correct is not None:
                b, c, n = discordant(base_correct[mask], correct[mask])
                test_result = mcnemar_counts(b, c, n)
                pvalues.append(test_result.pvalue)
                own_drops.append(drop_estimate(b, c, n, spec.interval_level, "tango"))
                row = row.model_copy(
                    update={
                        "baseline_recall": float(base_correct[mask].mean()),
                        "drop": drop_estimate(b, c, n, each, f"tango, {simultaneous}"),
                        "pvalue": test_result.pvalue,
                        "b": b,
                        "c": c,
                    }
                )
            rows.append(row)
        if pvalues:
            adjusted = holm(pvalues)
            rows = [
                row.model_copy(
                    update={"adjusted_pvalue": float(p), "significant": bool(p < spec.alpha)}
                )
                for row, p in zip(rows, adjusted, strict=True)
            ]
        n = len(y)
        one_sided = f"{spec.confidence:.1%}"
        worst_recall = extreme(
            own_recall,
            lowest=True,
            n=n,
            confidence=spec.interval_level,
            method="minimum of wilson intervals: lower end the lowest of each class's own "
            f"one-sided {one_sided} bound, upper end {simultaneous}",
            simultaneous=[r.recall for r in rows],
        )
        drops = [(r.drop, r) for r in rows if r.drop is not None]
        worst_drop = None
        most_affected: list[str] = []
        if drops:
            worst_drop = extreme(
                own_drops,
                lowest=False,
                n=n,
                confidence=spec.interval_level,
                method="maximum of paired tango intervals: upper end the highest of each "
                f"class's own one-sided {one_sided} bound, lower end {simultaneous}",
                simultaneous=[d for d, _ in drops],
            )
            ranked = sorted(drops, key=lambda item: (-item[0].estimate, item[1].label))
            most_affected = [r.name for d, r in ranked if d.estimate > 0][: spec.top]
        return ClassesResult(
            alpha=spec.alpha,
            classes=rows,
            most_affected=most_affected,
            worst_recall=worst_recall,
            worst_recall_drop=worst_drop,
        )


def _class_name(label: int, names: tuple[str, ...]) -> str:
    return names[label] if 0 <= label < len(names) else str(label)
