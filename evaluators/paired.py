"""Paired comparison of two classifiers on the same samples: McNemar, Tango, non-inferiority.

The evidence is two boolean vectors over the same samples: was the baseline right, was the
candidate right. Only the discordant pairs carry information about the difference:

    b = baseline right, candidate wrong      c = candidate right, baseline wrong
    accuracy(candidate) - accuracy(baseline) = (c - b) / n

McNemar's exact test conditions on b + c (binomial(b + c, 1/2) under no difference). Tango's
score interval (Tango 1998, Stat Med 17:891) inverts the score test of the difference with the
nuisance parameter at its restricted maximum likelihood, and keeps good coverage down to small
counts. Non-inferiority by a margin m is shown when the lower end of the (1 - 2α) Tango
interval lies above -m: equivalently, the one-sided score test of "difference ≤ -m" rejects at
level α.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict
from scipy import optimize, special

from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject
from compressgate.evaluators.results import Estimate, PairedResult
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import PairedSpec

# Roots are searched strictly inside (-1, 1), where the score statistic is finite.
_EDGE = 1e-12


class McNemarResult(BaseModel):
    """McNemar's exact test: `b` baseline-only correct, `c` candidate-only correct."""

    model_config = ConfigDict(frozen=True)

    b: int
    c: int
    n: int
    pvalue: float
    midp: float
    method: str = "mcnemar exact (binomial), two-sided"


class NonInferiorityResult(BaseModel):
    """Is accuracy(candidate) - accuracy(baseline) shown to be above -margin?"""

    model_config = ConfigDict(frozen=True)

    passed: bool
    difference: float
    lower_bound: float
    pvalue: float
    margin: float
    alpha: float
    b: int
    c: int
    n: int
    method: str = "tango score, one-sided"


def discordant(correct_baseline: np.ndarray, correct_candidate: np.ndarray) -> tuple[int, int, int]:
    """(b, c, n) from two per-sample correctness vectors over the same samples."""
    base = np.asarray(correct_baseline)
    cand = np.asarray(correct_candidate)
    if base.shape != cand.shape or base.ndim != 1:
        raise ValueError(
            f"correctness vectors must be 1-D and of one length, got {base.shape} and {cand.shape}"
        )
    for name, array in (("correct_baseline", base), ("correct_candidate", cand)):
        if array.dtype != np.bool_ and not np.isin(array, (0, 1)).all():
            raise ValueError(f"{name} must hold booleans or 0/1")
    base = base.astype(bool)
    cand = cand.astype(bool)
    return int(np.sum(base & ~cand)), int(np.sum(cand & ~base)), int(base.size)


def mcnemar(correct_baseline: np.ndarray, correct_candidate: np.ndarray) -> McNemarResult:
    """McNemar's exact two-sided test, with the mid-p value (Fagerland et al. 2013)."""
    return mcnemar_counts(*discordant(correct_baseline, correct_candidate))


def mcnemar_counts(b: int, c: int, n: int) -> McNemarResult:
    from scipy import stats  # here: judging a recorded gate needs Tango's interval, not this

    discordant_pairs = b + c
    if discordant_pairs == 0:
        return McNemarResult(b=b, c=c, n=n, pvalue=1.0, midp=1.0)
    low = min(b, c)
    pvalue = stats.binomtest(low, discordant_pairs, 0.5, alternative="two-sided").pvalue
    binom = stats.binom(discordant_pairs, 0.5)
    midp = min(1.0, 2 * (float(binom.cdf(low)) - 0.5 * float(binom.pmf(low))))
    return McNemarResult(b=b, c=c, n=n, pvalue=float(pvalue), midp=midp)


def tango_score(b: int, c: int, n: int, delta: float) -> float:
    """Tango's score statistic for H0: accuracy(candidate) - accuracy(baseline) = delta.

    Decreasing in delta; zero at the observed difference (c - b) / n.
    """
    a = 2.0 * n
    bb = -b - c + (2.0 * n - c + b) * delta
    cc = -b * delta * (1.0 - delta)
    q = (math.sqrt(max(bb * bb - 4.0 * a * cc, 0.0)) - bb) / (2.0 * a)
    numerator = c - b - n * delta
    variance = n * (2.0 * q + delta * (1.0 - delta))
    if variance <= 0.0:
        if numerator == 0:
            return 0.0
        return math.copysign(math.inf, numerator)
    return numerator / math.sqrt(variance)


def tango_interval(b: int, c: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Tango's score interval for (c - b) / n from the discordant counts."""
    if n < 1:
        raise ValueError("a paired interval needs at least one sample")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if b < 0 or c < 0 or b + c > n:
        raise ValueError(f"need 0 <= b, c and b + c <= n, got b={b}, c={c}, n={n}")
    # scipy.stats.norm.ppf and .sf are these ufuncs (`_norm_ppf`, `_norm_sf`), without the
    # generic distribution's argument checks: a hundred times faster, bit for bit the same.
    z = float(special.ndtri(0.5 + confidence / 2))
    estimate = (c - b) / n

    def lower(delta: float) -> float:
        return tango_score(b, c, n, delta) - z

    def upper(delta: float) -> float:
        return tango_score(b, c, n, delta) + z

    # The score is +z somewhere below the estimate and -z somewhere above it, unless the
    # estimate sits at an end of [-1, 1] (every pair discordant the same way).
    low_end, high_end = -1.0 + _EDGE, 1.0 - _EDGE
    if estimate <= low_end or lower(low_end) <= 0:
        lo = -1.0
    else:
        lo = float(optimize.brentq(lower, low_end, estimate, xtol=1e-12, rtol=1e-12))
    if estimate >= high_end or upper(high_end) >= 0:
        hi = 1.0
    else:
        hi = float(optimize.brentq(upper, estimate, high_end, xtol=1e-12, rtol=1e-12))
    return lo, hi


def paired_difference_ci(
    correct_baseline: np.ndarray, correct_candidate: np.ndarray, confidence: float = 0.95
) -> tuple[float, float]:
    """Tango's score interval for accuracy(candidate) - accuracy(baseline) on paired samples."""
    return tango_interval(*discordant(correct_baseline, correct_candidate), confidence)


def non_inferiority(
    correct_baseline: np.ndarray,
    correct_candidate: np.ndarray,
    margin: float,
    alpha: float = 0.05,
) -> NonInferiorityResult:
    """Is the candidate shown no worse than the baseline by more than `margin`, at level α?

    `lower_bound` is the lower end of the (1 - 2α) Tango interval of the difference; `passed`
    means it lies above -margin; `pvalue` is the one-sided score test of H0: difference ≤
    -margin (below α exactly when `passed`).
    """
    return non_inferiority_counts(
        *discordant(correct_baseline, correct_candidate), margin=margin, alpha=alpha
    )


def non_inferiority_counts(
    b: int, c: int, n: int, *, margin: float, alpha: float = 0.05
) -> NonInferiorityResult:
    if not 0 < margin < 1:
        raise ValueError(f"margin must lie in (0, 1), got {margin}")
    if not 0 < alpha < 0.5:
        raise ValueError(f"alpha must lie in (0, 0.5), got {alpha}")
    lower_bound, _ = tango_interval(b, c, n, confidence=1 - 2 * alpha)
    pvalue = float(special.ndtr(-tango_score(b, c, n, -margin)))
    return NonInferiorityResult(
        passed=lower_bound > -margin,
        difference=(c - b) / n,
        lower_bound=lower_bound,
        pvalue=pvalue,
        margin=margin,
        alpha=alpha,
        b=b,
        c=c,
        n=n,
    )


# --- the evaluator ------------------------------------------------------------------------------


def tango_estimate(b: int, c: int, n: int, confidence: float) -> Estimate:
    """(c - b) / n with its Tango interval, as an Estimate."""
    low, high = tango_interval(b, c, n, confidence)
    return Estimate(
        estimate=(c - b) / n,
        ci_low=low,
        ci_high=high,
        n=n,
        confidence=confidence,
        method="tango score (paired)",
        higher_is_better=True,
    )


def drop_estimate(b: int, c: int, n: int, confidence: float, method: str) -> Estimate:
    """(b - c) / n, the accuracy lost, with the Tango interval turned around."""
    low, high = tango_interval(b, c, n, confidence)
    return Estimate(
        estimate=(b - c) / n,
        ci_low=-high,
        ci_high=-low,
        n=n,
        confidence=confidence,
        method=method,
        higher_is_better=False,
    )


@EVALUATORS.register("paired")
class Paired(Evaluator[PairedSpec]):
    kind = "paired"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: PairedSpec,
        ctx: EvalContext,
    ) -> PairedResult | None:
        if baseline is None:
            return None
        from compressgate.evaluators.accuracy import correctness

        base = correctness(baseline, splits)
        cand = correctness(candidate, splits)
        b, c, n = discordant(base, cand)
        test = mcnemar_counts(b, c, n)
        return PairedResult(
            b=b,
            c=c,
            n=n,
            baseline_accuracy=float(base.mean()),
            candidate_accuracy=float(cand.mean()),
            difference=tango_estimate(b, c, n, spec.interval_level),
            mcnemar_pvalue=test.pvalue,
            mcnemar_midp=test.midp,
        )
