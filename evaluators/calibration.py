"""Calibration: do the model's confidences mean what they say?

Top-label ECE after Guo et al. (2017): the top-label confidences fall into `n_bins` equal-width
bins closed on the right, ((m-1)/M, m/M] (a confidence of exactly 0, possible only in the
class-wise variant, goes to the first bin); ECE is the sample-weighted mean of |accuracy -
mean confidence| over the bins, MCE their maximum, RMSCE the weighted root mean square.
Class-wise ECE (Kull et al. 2019) bins every class's probability the same way against the
indicator of that class and averages over classes. Brier is the multiclass sum over classes
(range [0, 2]); NLL the mean negative log-probability of the true class, in nats.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject, bootstrapped
from compressgate.evaluators.results import CalibrationResult, ReliabilityBin
from compressgate.evaluators.stats import Floats
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import CalibrationSpec


def check_probs(probs: np.ndarray, labels: np.ndarray) -> tuple[Floats, NDArray[np.int64]]:
    """Validate (n, K) probabilities and n integer labels in [0, K); returns float64 / int64."""
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(labels)
    if p.ndim != 2:
        raise ValueError(f"probabilities must be an (n, classes) array, got shape {p.shape}")
    if y.shape != (p.shape[0],):
        raise ValueError(f"expected {p.shape[0]} labels, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError("labels must be integers")
    if y.size and (y.min() < 0 or y.max() >= p.shape[1]):
        raise ValueError(f"labels must lie in [0, {p.shape[1]})")
    if np.any(p < 0) or np.any(~np.isfinite(p)):
        raise ValueError("probabilities must be finite and non-negative")
    if p.size and not np.allclose(p.sum(axis=1), 1.0, atol=1e-4):
        raise ValueError("each row of probabilities must sum to 1 (apply a softmax to logits)")
    return p, y.astype(np.int64)


def bin_index(values: np.ndarray, n_bins: int) -> NDArray[np.int64]:
    """The bin ((m-1)/M, m/M] of each value in [0, 1], as 0-based m - 1 (0 goes to bin 0)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    edges = np.arange(n_bins + 1, dtype=np.float64) / n_bins
    index = np.searchsorted(edges, np.asarray(values, dtype=np.float64), side="left") - 1
    return np.clip(index, 0, n_bins - 1).astype(np.int64)


def reliability(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> tuple[Floats, Floats, Floats]:
    """Per bin: sample count, sum of top-label confidences, number correct (the diagram's data)."""
    p, y = check_probs(probs, labels)
    confidence = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    index = bin_index(confidence, n_bins)
    count = np.bincount(index, minlength=n_bins).astype(np.float64)
    conf_sum = np.asarray(np.bincount(index, weights=confidence, minlength=n_bins), np.float64)
    correct_sum = np.asarray(np.bincount(index, weights=correct, minlength=n_bins), np.float64)
    return count, conf_sum, correct_sum


def _gaps(count: Floats, conf_sum: Floats, correct_sum: Floats) -> tuple[Floats, Floats]:
    """|accuracy - confidence| per bin (0 where empty) and the bins' sample weights."""
    total = count.sum(axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        gap = np.where(count > 0, np.abs(correct_sum - conf_sum) / count, 0.0)
        weight = np.where(total > 0, count / total, 0.0)
    return gap, weight


def ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Top-label expected calibration error (Guo et al. 2017)."""
    gap, weight = _gaps(*reliability(probs, labels, n_bins))
    return float(np.sum(weight * gap))


def mce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Maximum calibration error: the largest gap over non-empty bins."""
    gap, _ = _gaps(*reliability(probs, labels, n_bins))
    return float(gap.max()) if gap.size else 0.0


def rmsce(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Root-mean-square calibration error: sqrt(sum of weight × gap²)."""
    gap, weight = _gaps(*reliability(probs, labels, n_bins))
    return float(np.sqrt(np.sum(weight * gap**2)))


def classwise_bins(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> tuple[Floats, Floats, Floats]:
    """Per class and bin (K × M): count, sum of that class's probability, count of that class."""
    p, y = check_probs(probs, labels)
    n, k = p.shape
    index = bin_index(p, n_bins) + np.arange(k)[None, :] * n_bins  # (n, K) flat (class, bin)
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    size = k * n_bins
    flat = index.ravel()

    def sums(weights: Floats | None) -> Floats:
        totals = np.bincount(flat, weights=weights, minlength=size)
        return np.asarray(totals, dtype=np.float64).reshape(k, n_bins)

    return sums(None), sums(p.ravel()), sums(onehot.ravel())


def classwise_ece(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Class-wise ECE (Kull et al. 2019): the mean over classes of each class's binned ECE."""
    gap, weight = _gaps(*classwise_bins(probs, labels, n_bins))
    return float(np.mean(np.sum(weight * gap, axis=-1)))


def brier_per_sample(probs: np.ndarray, labels: np.ndarray) -> Floats:
    p, y = check_probs(probs, labels)
    onehot = np.zeros_like(p)
    onehot[np.arange(p.shape[0]), y] = 1.0
    result: Floats = np.sum((p - onehot) ** 2, axis=1)
    return result


def brier(probs: np.ndarray, labels: np.ndarray) -> float:
    """Multiclass Brier score: mean over samples of the sum over classes of (p - onehot)²."""
    return float(np.mean(brier_per_sample(probs, labels)))


def nll_per_sample(probs: np.ndarray, labels: np.ndarray) -> Floats:
    p, y = check_probs(probs, labels)
    # Clipped like scikit-learn's log_loss, so that a zero probability costs a finite amount.
    eps = np.finfo(np.float64).eps
    result: Floats = -np.log(np.clip(p[np.arange(p.shape[0]), y], eps, 1.0))
    return result


def nll(probs: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the true class (log loss), in nats."""
    return float(np.mean(nll_per_sample(probs, labels)))


# --- the evaluator ------------------------------------------------------------------------------

MEASURES = ("ece", "mce", "rmsce", "classwise_ece", "brier", "nll")


def _top_label(count: Floats, conf_sum: Floats, correct_sum: Floats) -> dict[str, Floats]:
    gap, weight = _gaps(count, conf_sum, correct_sum)
    return {
        "ece": np.sum(weight * gap, axis=-1),
        "mce": gap.max(axis=-1),
        "rmsce": np.sqrt(np.sum(weight * gap**2, axis=-1)),
    }


def top_label_columns(probs: Floats, labels: NDArray[np.int64], n_bins: int) -> Floats:
    """Per-sample columns (n × 3M) whose sums are each bin's count, confidence and hits."""
    n = probs.shape[0]
    confidence = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == labels).astype(np.float64)
    top = np.zeros((n, n_bins))
    top[np.arange(n), bin_index(confidence, n_bins)] = 1.0
    return np.hstack([top, top * confidence[:, None], top * correct[:, None]])


def top_label_measures(totals: Floats, n_bins: int) -> dict[str, Floats]:
    """ECE, MCE and RMSCE per row of `totals` (rows × 3M) from `top_label_columns`."""
    count, conf_sum, correct_sum = (totals[:, i * n_bins : (i + 1) * n_bins] for i in range(3))
    return _top_label(count, conf_sum, correct_sum)


class _Columns:
    """Per-sample columns whose resampled sums give every calibration measure of one model."""

    def __init__(self, probs: Floats, labels: NDArray[np.int64], n_bins: int) -> None:
        n, k = probs.shape
        self.n, self.k, self.bins = n, k, n_bins
        rows = np.arange(n)
        cells = bin_index(probs, n_bins) + np.arange(k)[None, :] * n_bins
        onehot = np.zeros_like(probs)
        onehot[rows, labels] = 1.0
        per_class = np.zeros((3, n, k * n_bins))
        per_class[0][rows[:, None], cells] = 1.0
        per_class[1][rows[:, None], cells] = probs
        per_class[2][rows[:, None], cells] = onehot
        self.matrix = np.hstack(
            [
                top_label_columns(probs, labels, n_bins),
                *per_class,
                brier_per_sample(probs, labels)[:, None],
                nll_per_sample(probs, labels)[:, None],
            ]
        )

    def measures(self, totals: Floats) -> dict[str, Floats]:
        """Each measure per resample, from `totals` (resamples × columns)."""
        cells = self.k * self.bins
        values = top_label_measures(totals, self.bins)
        start = 3 * self.bins
        shape = (-1, self.k, self.bins)
        c_count, c_prob, c_hit = (
            totals[:, start + i * cells : start + (i + 1) * cells].reshape(shape) for i in range(3)
        )
        gap, weight = _gaps(c_count, c_prob, c_hit)
        values["classwise_ece"] = np.mean(np.sum(weight * gap, axis=-1), axis=-1)
        values["brier"] = totals[:, -2] / self.n
        values["nll"] = totals[:, -1] / self.n
        return values


def point_measures(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    """Every calibration measure of one model, by the functions above."""
    return {
        "ece": ece(probs, labels, n_bins),
        "mce": mce(probs, labels, n_bins),
        "rmsce": rmsce(probs, labels, n_bins),
        "classwise_ece": classwise_ece(probs, labels, n_bins),
        "brier": brier(probs, labels),
        "nll": nll(probs, labels),
    }


def reliability_diagram(probs: np.ndarray, labels: np.ndarray, n_bins: int) -> list[ReliabilityBin]:
    count, conf_sum, correct_sum = reliability(probs, labels, n_bins)
    return [
        ReliabilityBin(
            lower=m / n_bins,
            upper=(m + 1) / n_bins,
            count=int(count[m]),
            confidence=float(conf_sum[m] / count[m]) if count[m] else None,
            accuracy=float(correct_sum[m] / count[m]) if count[m] else None,
        )
        for m in range(n_bins)
    ]


@EVALUATORS.register("calibration")
class Calibration(Evaluator[CalibrationSpec]):
    kind = "calibration"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: CalibrationSpec,
        ctx: EvalContext,
    ) -> CalibrationResult:
        labels = splits.test.y.numpy()
        probs = candidate.test_probabilities(splits.test)
        n = len(labels)
        boot = ctx.bootstrap(spec.resamples)
        subjects = (
            [probs] if baseline is None else [probs, baseline.test_probabilities(splits.test)]
        )
        columns = [_Columns(*check_probs(p, labels), spec.bins) for p in subjects]
        totals = boot.totals(np.hstack([c.matrix for c in columns]))
        widths = np.cumsum([0] + [c.matrix.shape[1] for c in columns])
        replicates = [
            c.measures(totals[:, widths[i] : widths[i + 1]]) for i, c in enumerate(columns)
        ]
        points = [point_measures(p, labels, spec.bins) for p in subjects]
        measures = {
            m: bootstrapped(
                points[0][m], replicates[0][m], n, spec.interval_level, higher_is_better=False
            )
            for m in MEASURES
        }
        if baseline is None:
            return CalibrationResult(
                bins=spec.bins,
                measures=measures,
                reliability=reliability_diagram(probs, labels, spec.bins),
            )
        changes = {
            m: bootstrapped(
                points[0][m] - points[1][m],
                replicates[0][m] - replicates[1][m],
                n,
                spec.interval_level,
                higher_is_better=False,
                paired=True,
            )
            for m in MEASURES
        }
        return CalibrationResult(
            bins=spec.bins,
            measures=measures,
            changes=changes,
            baseline_measures=points[1],
            reliability=reliability_diagram(probs, labels, spec.bins),
            baseline_reliability=reliability_diagram(subjects[1], labels, spec.bins),
        )
