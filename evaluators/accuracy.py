"""Top-1 accuracy with a Wilson score interval (never a bare point estimate)."""

from __future__ import annotations

import numpy as np

from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject, wilson
from compressgate.evaluators.results import AccuracyResult, Estimate
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import AccuracySpec


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, confidence: float = 0.95) -> Estimate:
    """Accuracy of integer predictions against integer labels, with a Wilson interval."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels {y_true.shape} and predictions {y_pred.shape} differ in shape")
    return wilson(int(np.sum(y_true == y_pred)), int(y_true.size), confidence)


def correctness(subject: Subject, splits: Splits) -> np.ndarray:
    """Per test sample: did the subject predict the label?"""
    predicted = subject.test_probabilities(splits.test, splits.padding).argmax(axis=1)
    result: np.ndarray = predicted == splits.test.y.numpy()
    return result


@EVALUATORS.register("accuracy")
class Accuracy(Evaluator[AccuracySpec]):
    kind = "accuracy"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: AccuracySpec,
        ctx: EvalContext,
    ) -> AccuracyResult:
        predictions = candidate.test_probabilities(splits.test, splits.padding).argmax(axis=1)
        labels = splits.test.y.numpy()
        estimate = accuracy(labels, predictions, spec.interval_level)
        ids = splits.test.ids
        return AccuracyResult(
            accuracy=estimate,
            correct=round(estimate.estimate * estimate.n),
            predictions=[int(p) for p in predictions],
            labels=[int(y) for y in labels],
            ids=None if ids is None else [int(i) for i in ids.tolist()],
        )
