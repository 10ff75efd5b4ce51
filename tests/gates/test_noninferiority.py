"""Tango's non-inferiority test held at its exact size (`compressgate.gates.noninferiority`)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from compressgate.evaluators.paired import non_inferiority_counts
from compressgate.gates.noninferiority import boundary_pass_probability, exact_alpha, exact_size
from compressgate.gates.power import _z


@pytest.mark.parametrize(("n", "margin", "p_c"), [(40, 0.1, 0.0), (40, 0.1, 0.05), (60, 0.05, 0.2)])
def test_the_boundary_pass_probability_is_the_full_trinomial_sum(
    n: int, margin: float, p_c: float
) -> None:
    """Every (b, c) enumerated, each judged by the evaluator's own test, weighted exactly."""
    alpha = 0.05
    p_b = p_c + margin
    total = 0.0
    for b in range(n + 1):
        for c in range(n - b + 1):
            if non_inferiority_counts(b, c, n, margin=margin, alpha=alpha).passed:
                total += stats.multinomial.pmf([b, c, n - b - c], n, [p_b, p_c, 1 - p_b - p_c])
    found = boundary_pass_probability(n, margin, _z(1 - 2 * alpha), p_c)
    assert found == pytest.approx(total, abs=1e-9)


@pytest.mark.parametrize(("n", "margin"), [(270, 0.01), (450, 0.02), (112, 0.05)])
def test_the_nominal_test_errs_too_often_there_and_the_level_found_holds_it(
    n: int, margin: float
) -> None:
    assert exact_size(n, margin, 0.05) > 0.05  # what issue 23 measured (6.63% at 270, 0.01)
    level = exact_alpha(n, margin, 0.05)
    assert level < 0.05
    assert exact_size(n, margin, level) <= 0.05
    # and not needlessly low: a little above it errs too often again
    assert exact_size(n, margin, min(0.05, level * 1.02)) > 0.05 or level * 1.02 >= 0.05


def test_where_the_nominal_test_errs_barely_the_level_barely_moves() -> None:
    n, margin = 1000, 0.02
    assert 0.05 < exact_size(n, margin, 0.05) < 0.0501
    assert 0.049 < exact_alpha(n, margin, 0.05) < 0.05


def test_a_level_that_already_holds_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    from compressgate.gates import noninferiority

    monkeypatch.setattr(noninferiority, "exact_size", lambda n, margin, alpha: alpha * 0.99)
    noninferiority._exact_alpha.cache_clear()
    try:
        assert noninferiority.exact_alpha(123, 0.0345, 0.05) == 0.05
    finally:
        noninferiority._exact_alpha.cache_clear()


def test_the_size_peaks_where_the_candidate_fixes_none_of_the_baselines_errors() -> None:
    """The nuisance grid starts at p_c = 0, where the discordant pairs are fewest."""
    n, margin, z = 270, 0.01, _z(0.9)
    corner = boundary_pass_probability(n, margin, z, 0.0)
    inside = [boundary_pass_probability(n, margin, z, p) for p in (0.02, 0.1, 0.3)]
    assert corner == pytest.approx(0.0663, abs=5e-4)  # issue 23's simulated 6.63%
    assert corner > max(inside)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="need n >= 1"):
        exact_alpha(0, 0.02, 0.05)
    with pytest.raises(ValueError, match="0 < margin < 1"):
        exact_alpha(450, 0.0, 0.05)
    assert np.isfinite(exact_alpha(450, 0.02, 0.025))
