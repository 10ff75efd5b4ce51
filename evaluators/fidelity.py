"""Fidelity: does the compressed model behave like its reference, sample by sample?

Accuracy alone hides churn: two models can score the same while disagreeing on many samples.
Top-1 agreement, the KL divergence of the reference's distribution from the candidate's, and
the flip rates (negative: right before, wrong now; positive: the reverse) expose it.
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
    wilson,
)
from compressgate.evaluators.results import FidelityResult
from compressgate.evaluators.stats import Floats
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import FidelitySpec


def _pair(probs_a: np.ndarray, probs_b: np.ndarray) -> tuple[Floats, Floats]:
    a = np.asarray(probs_a, dtype=np.float64)
    b = np.asarray(probs_b, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"expected two (n, classes) arrays of one shape, got {a.shape}, {b.shape}")
    return a, b


def agreement(probs_a: np.ndarray, probs_b: np.ndarray) -> float:
    """Fraction of samples on which the two models' top-1 predictions agree."""
    a, b = _pair(probs_a, probs_b)
    return float(np.mean(a.argmax(axis=1) == b.argmax(axis=1))) if a.size else 0.0


def kl_per_sample(p_teacher: np.ndarray, p_student: np.ndarray) -> Floats:
    """KL(teacher ‖ student) per sample, in nats; 0·log 0 counts as 0.

    A student probability of exactly 0 where the teacher's is not (a softmax underflow) is
    taken as the smallest positive float, so the divergence is large (about 708 nats times the
    teacher's probability) but finite, where the mathematical value is infinite.
    """
    t, s = _pair(p_teacher, p_student)
    tiny = np.finfo(np.float64).tiny
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(t > 0, t * (np.log(np.maximum(t, tiny)) - np.log(np.maximum(s, tiny))), 0)
    result: Floats = terms.sum(axis=1)
    return result


def kl_divergence(p_teacher: np.ndarray, p_student: np.ndarray) -> float:
    """Mean over samples of KL(teacher ‖ student), in nats."""
    return float(np.mean(kl_per_sample(p_teacher, p_student)))


def flips(
    correct_baseline: np.ndarray, correct_candidate: np.ndarray
) -> tuple[NDArray[np.bool_], NDArray[np.bool_]]:
    """Per sample: negative flip (baseline right, candidate wrong) and positive flip."""
    base = np.asarray(correct_baseline).astype(bool)
    cand = np.asarray(correct_candidate).astype(bool)
    if base.shape != cand.shape or base.ndim != 1:
        raise ValueError(f"expected two 1-D vectors of one length, got {base.shape}, {cand.shape}")
    return base & ~cand, cand & ~base


def flip_rates(correct_baseline: np.ndarray, correct_candidate: np.ndarray) -> tuple[float, float]:
    """(negative flip rate, positive flip rate) over all samples."""
    negative, positive = flips(correct_baseline, correct_candidate)
    if negative.size == 0:
        return 0.0, 0.0
    return float(negative.mean()), float(positive.mean())


# --- the evaluator ------------------------------------------------------------------------------


@EVALUATORS.register("fidelity")
class Fidelity(Evaluator[FidelitySpec]):
    kind = "fidelity"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: FidelitySpec,
        ctx: EvalContext,
    ) -> FidelityResult | None:
        reference = baseline if spec.against == "baseline" else ctx.parent
        if baseline is None or reference is None:
            return None
        test = splits.test
        y = test.y.numpy()
        ref = reference.test_probabilities(test, splits.padding)
        cand = candidate.test_probabilities(test, splits.padding)
        n = len(y)
        agree = int(np.sum(ref.argmax(axis=1) == cand.argmax(axis=1)))
        kl = kl_per_sample(ref, cand)
        negative, positive = flips(ref.argmax(axis=1) == y, cand.argmax(axis=1) == y)
        boot = ctx.bootstrap(spec.resamples)
        return FidelityResult(
            against=spec.against,
            reference=reference.stage,
            agreement=wilson(agree, n, spec.interval_level),
            kl_divergence=bootstrapped(
                float(kl.mean()),
                boot.means(kl),
                n,
                spec.interval_level,
                higher_is_better=False,
                unit="nats",
            ),
            negative_flip_rate=wilson(
                int(negative.sum()), n, spec.interval_level, higher_is_better=False
            ),
            positive_flip_rate=wilson(int(positive.sum()), n, spec.interval_level),
        )
