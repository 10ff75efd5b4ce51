"""Per-class recall and its change: compression forgets some classes first.

Overall accuracy can hold while one class collapses. For every class: the candidate's recall,
the baseline's, the paired drop with a Tango interval, and McNemar's exact test within the
class; p-values are adjusted with Holm's method over the classes, and the classes with the
largest drop are named. The worst class's recall and the largest drop are reported with
simultaneous (Bonferroni) intervals, because the worst class is picked after looking.
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
from compressgate.evaluators.results import ClassesResult, ClassRow
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
        correct = candidate.test_probabilities(test).argmax(axis=1) == y
        base_correct = (
            None if baseline is None else baseline.test_probabilities(test).argmax(axis=1) == y
        )
        present = [int(k) for k in np.unique(y)]
        each = 1 - (1 - spec.interval_level) / len(present)
        simultaneous = f"simultaneous over {len(present)} classes (bonferroni)"
        rows: list[ClassRow] = []
        pvalues: list[float] = []
        for label in present:
            mask = y == label
            recall = wilson(int(correct[mask].sum()), int(mask.sum()), each)
            row = ClassRow(
                label=label,
                name=_class_name(label, splits.class_names),
                n=int(mask.sum()),
                recall=recall.model_copy(update={"method": f"wilson, {simultaneous}"}),
            )
            if base_correct is not None:
                b, c, n = discordant(base_correct[mask], correct[mask])
                test_result = mcnemar_counts(b, c, n)
                pvalues.append(test_result.pvalue)
                row = row.model_copy(
                    update={
                        "baseline_recall": float(base_correct[mask].mean()),
                        "drop": drop_estimate(b, c, n, each, f"tango, {simultaneous}"),
                        "pvalue": test_result.pvalue,
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
        worst_recall = extreme(
            [r.recall for r in rows],
            lowest=True,
            n=n,
            confidence=spec.interval_level,
            method=f"minimum of wilson intervals, {simultaneous}",
        )
        drops = [(r.drop, r) for r in rows if r.drop is not None]
        worst_drop = None
        most_affected: list[str] = []
        if drops:
            worst_drop = extreme(
                [d for d, _ in drops],
                lowest=False,
                n=n,
                confidence=spec.interval_level,
                method=f"maximum of paired tango intervals, {simultaneous}",
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
