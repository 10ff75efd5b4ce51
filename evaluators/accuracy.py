"""Top-1 accuracy with a Wilson score interval (never a bare point estimate)."""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy.stats import binomtest


class AccuracyResult(BaseModel):
    """Accuracy on `n` samples, with its `confidence` Wilson interval."""

    model_config = ConfigDict(frozen=True)

    estimate: float
    ci_low: float
    ci_high: float
    n: int
    correct: int
    confidence: float = 0.95
    method: str = "wilson"


def wilson_interval(correct: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion (scipy's implementation)."""
    if n == 0:
        return 0.0, 1.0
    ci = binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
    return float(ci.low), float(ci.high)


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, confidence: float = 0.95) -> AccuracyResult:
    """Accuracy of integer predictions against integer labels, with a Wilson interval."""
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"labels {y_true.shape} and predictions {y_pred.shape} differ in shape")
    n = int(y_true.size)
    correct = int(np.sum(y_true == y_pred))
    low, high = wilson_interval(correct, n, confidence)
    return AccuracyResult(
        estimate=correct / n if n else 0.0,
        ci_low=low,
        ci_high=high,
        n=n,
        correct=correct,
        confidence=confidence,
    )
