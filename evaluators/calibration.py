"""Calibration: do the model's confidences mean what they say?

Top-label ECE after Guo et al. (2017): the top-label confidences fall into `n_bins` equal-width
bins closed on the right, ((m-1)/M, m/M] (a confidence of exactly 0, possible only in the
class-wise variant, goes to the first bin); ECE is the sample-weighted mean of |accuracy -
mean confidence| over the bins, MCE their maximum, RMSCE the weighted root mean square.
Class-wise ECE (Kull et al. 2019) bins every class's probability the same way against the
indicator of that class and averages over classes. Brier is the multiclass sum over classes
(range [0, 2]); NLL the mean negative log-probability of the true class, in nats.

What the intervals cover (`docs/statistics.md`, "Calibration"). With d = 1{correct} -
confidence and mu_m = E[d 1{confidence in bin m}], the population ECE with the same bins is
ECE* = sum_m |mu_m|, RMSCE*² = sum_m mu_m² / P(bin m), class-wise ECE* the mean over classes of
the same sum over each class's bins. The plug-in (Guo's figure, published as the estimate) is
biased upwards where a bin's gap is within its noise (|.| is convex), and no unbiased
estimator of such a non-differentiable functional exists (Hirano & Porter 2012, Econometrica
80(4)), so its percentile bootstrap does not cover. Each end is bounded on its own side
instead, through two facts about a convex functional phi of means (each measure is one: a sum
of |mu_m|, or of the perspectives mu_m² / p_m):

- above: phi(mu) <= phi(mu_hat) - <g, mu_hat - mu> for a subgradient g at mu (convexity), and
  the linear term is a mean of per-sample values whose quantiles the paired bootstrap gives;
- below: phi(mu) >= <g, mu> + const for every supporting hyperplane, so a leave-one-out choice
  g^(-i) (fitted without sample i, hence independent of it) gives an estimate whose
  expectation is at most phi(mu), minus the bootstrap quantile of its linear term (a
  cross-fitted estimate as in Chernozhukov et al. 2018, "Double/debiased machine learning",
  with folds of one sample). It is biased low only in bins whose gap's sign is not resolved,
  by at most about a third of that bin's standard error: it is published as `debiased`.

The change from the baseline bounds the candidate from above and the baseline from below (and
the other way round) on the same resamples: ECE's ends are linear, so one paired column each;
RMSCE's square root is not, so both sides hold jointly by a bootstrap sup-t band (Montiel Olea
& Plagborg-Moller 2019, J. Applied Econometrics 34(1)). MCE, a maximum over bins that are
often nearly empty, has no such bound: its range is reported but labelled as no confidence
interval, and gates on it are refused (`compressgate.recipes.evaluation.ungateable`). Brier and
NLL are means of per-sample values: their percentile bootstrap is the ordinary one.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject, bootstrapped
from compressgate.evaluators.results import CalibrationResult, Estimate, ReliabilityBin
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
# The measures whose ends are bounded as described above (the rest: plain bootstrap).
BRACKETED = ("ece", "rmsce", "classwise_ece")


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


def _cells(
    probs: np.ndarray, labels: np.ndarray, n_bins: int, classwise: bool
) -> tuple[NDArray[np.int64], Floats, int]:
    """Each sample's cells and gaps d = outcome - probability: (n, 1) for the top label (its
    confidence's bin), (n, K) class-wise (cell k·M + bin of p_k); and the number of cells."""
    p, y = check_probs(probs, labels)
    n, k = p.shape
    if not classwise:
        confidence = p.max(axis=1)
        correct = (p.argmax(axis=1) == y).astype(np.float64)
        return bin_index(confidence, n_bins)[:, None], (correct - confidence)[:, None], n_bins
    onehot = np.zeros_like(p)
    onehot[np.arange(n), y] = 1.0
    cells = bin_index(p, n_bins) + np.arange(k)[None, :] * n_bins
    return cells, onehot - p, k * n_bins


def l1_columns(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15, *, classwise: bool = False
) -> tuple[Floats, Floats]:
    """ECE's two per-sample columns (class-wise ECE's with `classwise`), each of mean:

    - `upper`: sum over the sample's cells of sign(S_cell) d, S the cell's sum of gaps: its mean
      is the plug-in ECE, and its expectation with the true signs is ECE*;
    - `lower`: the same with the leave-one-out sign, sign(S_cell - d): its mean is the
      leave-one-out (debiased) ECE, whose expectation is at most ECE*.

    Class-wise, both are divided by the number of classes (the mean over classes).
    """
    cells, d, size = _cells(probs, labels, n_bins, classwise)
    sums = np.bincount(cells.ravel(), weights=d.ravel(), minlength=size)[cells]
    scale = d.shape[1]
    upper = np.sum(np.sign(sums) * d, axis=1) / scale
    lower = np.sum(np.sign(sums - d) * d, axis=1) / scale
    return np.asarray(upper, np.float64), np.asarray(lower, np.float64)


def squared_columns(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> tuple[Floats, Floats]:
    """RMSCE²'s two per-sample columns: 2 g d - g² with g the gap (mean d) of the sample's bin,
    plug-in (`upper`, mean RMSCE²) or fitted without the sample (`lower`, the leave-one-out
    estimate: its expectation is at most RMSCE*², since sum_m mu_m²/p_m >= 2 g_m mu_m - g_m² p_m
    for any g, and g is independent of the sample it weighs)."""
    cells, d, size = _cells(probs, labels, n_bins, classwise=False)
    cell, gap = cells[:, 0], d[:, 0]
    count = np.bincount(cell, minlength=size)[cell].astype(np.float64)
    total = np.bincount(cell, weights=gap, minlength=size)[cell]
    g = total / count
    with np.errstate(invalid="ignore", divide="ignore"):
        loo = np.where(count > 1, (total - gap) / (count - 1), 0.0)
    return 2 * g * gap - g**2, 2 * loo * gap - loo**2


def debiased(probs: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> dict[str, float]:
    """The leave-one-out estimates of ECE, RMSCE and class-wise ECE: never biased upwards, and
    unbiased wherever every bin's gap is clearly resolved (floored at 0)."""
    ece_low = l1_columns(probs, labels, n_bins)[1].mean()
    rms_low = squared_columns(probs, labels, n_bins)[1].mean()
    cw_low = l1_columns(probs, labels, n_bins, classwise=True)[1].mean()
    return {
        "ece": max(0.0, float(ece_low)),
        "rmsce": float(np.sqrt(max(0.0, float(rms_low)))),
        "classwise_ece": max(0.0, float(cw_low)),
    }


def _folds(n: int, seed: int) -> Floats:
    """1 for the samples of the first of two seeded random halves, 0 for the other's."""
    first = np.zeros(n)
    first[np.random.default_rng(seed).permutation(n)[: n // 2]] = 1.0
    return first


def cross_fitted(
    sums: tuple[Floats, Floats], n: int, counts: tuple[Floats, Floats] | None = None
) -> Floats:
    """The two-fold cross-fitted lower estimate from each half's per-cell sums of gaps (rows ×
    cells): each half's cells weighed by the sign of the other half's sum (ECE-like), or with
    `counts`, by the other half's mean gap g as 2 g S - g² N (RMSCE²). Its expectation is at
    most the population value, since one half is independent of the weights the other gives."""
    a, b = sums
    if counts is None:
        value = np.sign(a) * b + np.sign(b) * a
    else:
        na, nb = counts
        with np.errstate(invalid="ignore", divide="ignore"):
            ga = np.where(na > 0, a / na, 0.0)
            gb = np.where(nb > 0, b / nb, 0.0)
        value = 2 * ga * b - ga**2 * nb + 2 * gb * a - gb**2 * na
    result: Floats = np.sum(value, axis=-1) / n
    return result


class _Columns:
    """Per-sample columns of one model whose resampled sums give every interval: the plug-in's
    linear columns of ECE, RMSCE² and class-wise ECE, each half's per-cell sums of gaps (and
    counts) for the cross-fitted lower ends, Brier, NLL, and the top-label bins (MCE's range)."""

    def __init__(self, probs: Floats, labels: NDArray[np.int64], n_bins: int, seed: int) -> None:
        n, k = probs.shape
        self.n, self.k, self.bins = n, k, n_bins
        self.upper = {
            "ece": l1_columns(probs, labels, n_bins)[0],
            "rmsce": squared_columns(probs, labels, n_bins)[0],
            "classwise_ece": l1_columns(probs, labels, n_bins, classwise=True)[0],
        }
        first = _folds(n, seed)
        halves = (first, 1.0 - first)
        cells, d, _ = _cells(probs, labels, n_bins, classwise=False)
        top = np.zeros((n, n_bins))
        top[np.arange(n), cells[:, 0]] = 1.0
        cw_cells, cw_d, size = _cells(probs, labels, n_bins, classwise=True)
        cw = np.zeros((n, size))
        np.put_along_axis(cw, cw_cells, cw_d, axis=1)
        blocks = [
            np.column_stack([*self.upper.values(), brier_per_sample(probs, labels)]),
            nll_per_sample(probs, labels)[:, None],
            *(top * (d * h[:, None]) for h in halves),
            *(top * h[:, None] for h in halves),
            *(cw * h[:, None] for h in halves),
            top_label_columns(probs, labels, n_bins),
        ]
        self.widths = np.cumsum([0] + [b.shape[1] for b in blocks])
        self.matrix = np.hstack(blocks)
        whole = self.statistics(self.matrix.sum(axis=0)[None, :])
        self.lower = {m: float(whole[f"{m}.lower"][0]) for m in self.upper}

    def statistics(self, totals: Floats) -> dict[str, Floats]:
        """Per row of `totals` (sums of each column): the plug-in's linear means
        ("ece.upper", …), the cross-fitted lower estimates ("ece.lower", …), Brier, NLL, MCE."""
        block = [
            totals[:, self.widths[i] : self.widths[i + 1]] for i in range(len(self.widths) - 1)
        ]
        n = self.n
        values = {f"{m}.upper": block[0][:, i] / n for i, m in enumerate(self.upper)}
        values["brier"], values["nll"] = block[0][:, 3] / n, block[1][:, 0] / n
        values["ece.lower"] = cross_fitted((block[2], block[3]), n)
        values["rmsce.lower"] = cross_fitted((block[2], block[3]), n, (block[4], block[5]))
        values["classwise_ece.lower"] = cross_fitted((block[6], block[7]), n) / self.k
        values["mce"] = top_label_measures(block[8], self.bins)["mce"]
        return values

    def mean(self, name: str) -> float:
        measure, side = name.split(".")
        if side == "lower":
            return self.lower[measure]
        return float(self.upper[measure].mean())


def _quantile(values: Floats, q: float) -> float:
    return float(np.quantile(values, q))


def _ends(
    measure: str, upper: float, upper_reps: Floats, lower: float, lower_reps: Floats, c: float
) -> tuple[float, float]:
    """One model's interval: the plug-in plus how far the bootstrap falls below its centre, and
    the cross-fitted estimate minus how far it rises above (RMSCE: on the square, then rooted)."""
    high = upper + (float(upper_reps.mean()) - _quantile(upper_reps, 1 - c))
    low = lower - (_quantile(lower_reps, c) - float(lower_reps.mean()))
    if measure == "rmsce":
        return float(np.sqrt(max(low, 0.0))), float(np.sqrt(max(high, 0.0)))
    return max(low, 0.0), high


def _estimate(point: float, low: float, high: float, n: int, level: float, method: str) -> Estimate:
    if not low <= point <= high:  # the plug-in is an upper estimate; widened only if it is not
        low, high = min(low, point), max(high, point)
    return Estimate(
        estimate=float(point),
        ci_low=float(low),
        ci_high=float(high),
        n=n,
        confidence=level,
        method=method,
        higher_is_better=False,
    )


def _bracketed(
    measure: str, point: float, model: _Columns, reps: dict[str, Floats], spec: CalibrationSpec
) -> Estimate:
    low, high = _ends(
        measure,
        model.mean(f"{measure}.upper"),
        reps[f"{measure}.upper"],
        model.mean(f"{measure}.lower"),
        reps[f"{measure}.lower"],
        spec.confidence,
    )
    method = (
        f"plug-in estimate; interval bounding the population value from each side: the plug-in "
        f"above, a two-fold cross-fitted estimate below, each with the bootstrap of its "
        f"fluctuation ({len(reps[f'{measure}.upper'])} resamples)"
    )
    return _estimate(point, low, high, model.n, spec.interval_level, method)


def _l1_change(
    a: _Columns, b: _Columns, ra: dict[str, Floats], rb: dict[str, Floats], measure: str, c: float
) -> float:
    """An upper bound at one-sided `c` on measure(a) - measure(b) for ECE-like (linear) ends:
    a's plug-in above, b's cross-fitted estimate below, on the paired resamples of the two."""
    up, low = f"{measure}.upper", f"{measure}.lower"
    paired = ra[up] - rb[low]
    return a.mean(up) - b.mean(low) + float(paired.mean()) - _quantile(paired, 1 - c)


def _rms_change(
    a: _Columns, b: _Columns, ra: dict[str, Floats], rb: dict[str, Floats], c: float
) -> float:
    """An upper bound at one-sided `c` on RMSCE(a) - RMSCE(b): a's RMSCE² from above and b's
    from below hold together on the event a bootstrap sup-t band gives (both fluctuations within
    k of their standard errors)."""
    fall = ra["rmsce.upper"].mean() - ra["rmsce.upper"]
    rise = rb["rmsce.lower"] - rb["rmsce.lower"].mean()
    scale = [float(np.std(x)) for x in (fall, rise)]
    standard = [
        x / s if s > 0 else np.zeros_like(x) for x, s in zip((fall, rise), scale, strict=True)
    ]
    k = _quantile(np.maximum(*standard), c)
    high = a.mean("rmsce.upper") + k * scale[0]
    low = b.mean("rmsce.lower") - k * scale[1]
    return float(np.sqrt(max(high, 0.0)) - np.sqrt(max(low, 0.0)))


def _change(
    measure: str,
    point: float,
    cand: _Columns,
    base: _Columns,
    rc: dict[str, Floats],
    rb: dict[str, Floats],
    spec: CalibrationSpec,
) -> Estimate:
    c = spec.confidence
    if measure == "rmsce":
        high = _rms_change(cand, base, rc, rb, c)
        low = -_rms_change(base, cand, rb, rc, c)
        how = "jointly by a bootstrap sup-t band"
    else:
        high = _l1_change(cand, base, rc, rb, measure, c)
        low = -_l1_change(base, cand, rb, rc, measure, c)
        how = "on their paired difference"
    method = (
        f"paired: the candidate's plug-in against the baseline's cross-fitted estimate for "
        f"the upper end (and the other way round for the lower), {how} "
        f"({len(rc[f'{measure}.upper'])} resamples)"
    )
    return _estimate(point, low, high, cand.n, spec.interval_level, method)


MCE_METHOD = (
    "bootstrap percentile range of the binned maximum ({} resamples): not a confidence "
    "interval, its coverage is unknown (a maximum over nearly empty bins); not gateable"
)


def _plain(
    measure: str, point: float, replicates: Floats, n: int, spec: CalibrationSpec, paired: bool
) -> Estimate:
    estimate = bootstrapped(
        point, replicates, n, spec.interval_level, higher_is_better=False, paired=paired
    )
    if measure == "mce":
        return estimate.model_copy(update={"method": MCE_METHOD.format(len(replicates))})
    return estimate


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
        probs = candidate.test_probabilities(splits.test, splits.padding)
        n = len(labels)
        boot = ctx.bootstrap(spec.resamples)
        subjects = (
            [probs]
            if baseline is None
            else [probs, baseline.test_probabilities(splits.test, splits.padding)]
        )
        seed = ctx.seed_for("calibration-folds")
        columns = [_Columns(*check_probs(p, labels), spec.bins, seed) for p in subjects]
        totals = boot.totals(np.hstack([c.matrix for c in columns]))
        widths = np.cumsum([0] + [c.matrix.shape[1] for c in columns])
        reps = [c.statistics(totals[:, widths[i] : widths[i + 1]]) for i, c in enumerate(columns)]
        points = [point_measures(p, labels, spec.bins) for p in subjects]
        measures = {
            m: _bracketed(m, points[0][m], columns[0], reps[0], spec)
            if m in BRACKETED
            else _plain(m, points[0][m], reps[0][m], n, spec, paired=False)
            for m in MEASURES
        }
        debiased_now = debiased(probs, labels, spec.bins)
        if baseline is None:
            return CalibrationResult(
                bins=spec.bins,
                measures=measures,
                debiased=debiased_now,
                reliability=reliability_diagram(probs, labels, spec.bins),
            )
        changes = {
            m: _change(
                m, points[0][m] - points[1][m], columns[0], columns[1], reps[0], reps[1], spec
            )
            if m in BRACKETED
            else _plain(m, points[0][m] - points[1][m], reps[0][m] - reps[1][m], n, spec, True)
            for m in MEASURES
        }
        return CalibrationResult(
            bins=spec.bins,
            measures=measures,
            changes=changes,
            baseline_measures=points[1],
            debiased=debiased_now,
            baseline_debiased=debiased(subjects[1], labels, spec.bins),
            reliability=reliability_diagram(probs, labels, spec.bins),
            baseline_reliability=reliability_diagram(subjects[1], labels, spec.bins),
        )
