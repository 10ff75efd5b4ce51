"""Fidelity metrics against independent references.

Top-1 agreement against a direct comparison of argmaxes, the KL divergence against
`scipy.special.rel_entr` and `scipy.stats.entropy(pk, qk)` averaged over samples (including
teacher probabilities of exactly 0, which contribute 0·log 0 = 0), and the flip rates against
counts by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from compressgate.evaluators import agreement, flip_rates, kl_divergence


def random_probs(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    logits = rng.normal(0.0, 2.0, size=(n, k))
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_agreement_is_the_fraction_of_equal_argmaxes(seed: int) -> None:
    rng = np.random.default_rng(seed)
    a = random_probs(rng, 300, 5)
    # A perturbed copy: agreement strictly between 0 and 1.
    b = a + rng.normal(0.0, 0.15, size=a.shape).clip(-0.5, 0.5)
    b = np.abs(b) / np.abs(b).sum(axis=1, keepdims=True)
    same = sum(int(np.argmax(ra)) == int(np.argmax(rb)) for ra, rb in zip(a, b, strict=True))
    got = agreement(a, b)
    assert 0 < got < 1
    assert got == pytest.approx(same / 300, abs=1e-15)


def test_agreement_by_hand() -> None:
    a = np.array([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4], [0.2, 0.8]])
    b = np.array([[0.6, 0.4], [0.8, 0.2], [0.55, 0.45], [0.1, 0.9]])
    assert agreement(a, b) == 0.75
    assert agreement(a, a) == 1.0


@pytest.mark.parametrize("seed", range(5))
def test_kl_divergence_is_the_mean_of_scipy_relative_entropy(seed: int) -> None:
    rng = np.random.default_rng(seed)
    teacher = random_probs(rng, 200, 6)
    student = random_probs(rng, 200, 6)
    by_rel_entr = special.rel_entr(teacher, student).sum(axis=1).mean()
    by_entropy = np.mean([stats.entropy(t, s) for t, s in zip(teacher, student, strict=True)])
    got = kl_divergence(teacher, student)
    assert got == pytest.approx(by_rel_entr, rel=1e-12)
    assert got == pytest.approx(by_entropy, rel=1e-12)


def test_kl_divergence_counts_zero_teacher_probabilities_as_zero() -> None:
    rng = np.random.default_rng(8)
    teacher = random_probs(rng, 100, 4)
    teacher[::3, 1] = 0.0  # exact zeros in a third of the rows, and one one-hot row
    teacher[5] = [0.0, 0.0, 1.0, 0.0]
    teacher /= teacher.sum(axis=1, keepdims=True)
    student = random_probs(rng, 100, 4)
    expected = special.rel_entr(teacher, student).sum(axis=1).mean()
    got = kl_divergence(teacher, student)
    assert np.isfinite(got)
    assert got == pytest.approx(expected, rel=1e-12)
    assert got == pytest.approx(
        np.mean([stats.entropy(t, s) for t, s in zip(teacher, student, strict=True)]), rel=1e-12
    )


def test_kl_divergence_by_hand() -> None:
    teacher = np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])
    student = np.array([[0.25, 0.25, 0.5], [0.5, 0.25, 0.25]])
    # Row 1: 0.5 ln 2 + 0.5 ln 2 + 0 = ln 2; row 2: 1 * ln 2 = ln 2.
    assert kl_divergence(teacher, student) == pytest.approx(np.log(2), rel=1e-14)
    assert kl_divergence(student, student) == pytest.approx(0.0, abs=1e-15)


def test_kl_divergence_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="shape"):
        kl_divergence(np.ones((3, 2)) / 2, np.ones((3, 3)) / 3)
    with pytest.raises(ValueError, match="shape"):
        agreement(np.ones(3) / 3, np.ones(3) / 3)


def test_flip_rates_match_counts_by_hand() -> None:
    baseline = np.array([1, 1, 1, 0, 0, 1, 0, 1, 1, 0], dtype=bool)
    candidate = np.array([1, 0, 1, 1, 0, 0, 0, 1, 0, 0], dtype=bool)
    # Negative flips (right before, wrong now): samples 1, 5, 8; positive: sample 3.
    assert flip_rates(baseline, candidate) == pytest.approx((3 / 10, 1 / 10), abs=1e-15)
    assert flip_rates(candidate, baseline) == pytest.approx((1 / 10, 3 / 10), abs=1e-15)
    assert flip_rates(baseline, baseline) == (0.0, 0.0)


@pytest.mark.parametrize("seed", range(3))
def test_flip_rates_match_a_loop_over_samples(seed: int) -> None:
    rng = np.random.default_rng(seed)
    baseline = rng.random(500) < 0.9
    candidate = np.where(rng.random(500) < 0.1, ~baseline, baseline)
    negative = sum(1 for x, y in zip(baseline, candidate, strict=True) if x and not y)
    positive = sum(1 for x, y in zip(baseline, candidate, strict=True) if y and not x)
    assert flip_rates(baseline.astype(int), candidate.astype(int)) == pytest.approx(
        (negative / 500, positive / 500), abs=1e-15
    )


def test_flip_rates_reject_mismatched_vectors() -> None:
    with pytest.raises(ValueError):
        flip_rates(np.array([True, False]), np.array([True]))
