"""Tango's non-inferiority test on paired accuracy, with its size held at every nuisance value.

The test (`compressgate.evaluators.paired.non_inferiority_counts`) rejects H0: accuracy(candidate)
- accuracy(baseline) <= -m when Tango's score at -m exceeds z(1 - α'). Its level is asymptotic:
the counts are discrete, and on the boundary of H0 (the candidate truly worse by exactly m) the
chance of a pass depends on the nuisance parameter, how often the two models disagree. Where
the candidate fixes none of the baseline's errors (c = 0 always) and the expected number of
discordant pairs is small, the pass rate at nominal α = 5% reached 6.63% (n = 270, m = 0.01)
and 5.33% (n = 450, m = 0.02) in simulation (issue 23).

`exact_alpha` returns the largest nominal α' <= α whose exact size — the largest pass
probability on the boundary p_b - p_c = m, over a grid of the nuisance p_c from 0 (no error
fixed) to its maximum (1 - m) / 2 — is at most α: the approach of exact unconditional tests
(Berger & Boos 1994; for paired proportions, Hsueh, Liu & Chen 2001, "Sample size calculations
for tests of equivalence and non-inferiority of paired proportions"), with Tango's statistic
kept as the ordering. The probabilities are exact trinomial sums (b ~ binomial(n, p_b), c | b ~
binomial(n - b, p_c / (1 - p_b))); the supremum is taken over the grid, which is dense near 0,
where the size peaks. Where the nominal test already holds its size, α' = α and nothing changes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from compressgate.gates.power import _TAIL, _score, _z

# The nuisance grid: p_c = 0 (the candidate fixes none of the baseline's errors), then
# geometric steps up to the largest p_c the boundary allows, dense where the size peaks.
_GRID = 32
_STEPS = 14  # bisection steps on α' (α' resolved to α · 2^-14)


def _critical(n: int, margin: float, z: float, b: np.ndarray) -> np.ndarray:
    """For each count b (only the baseline right), the smallest c (only the candidate right)
    whose Tango score at -margin exceeds z; n - b + 1 where none does. The score rises with c,
    so a bisection per b, vectorised; it does not depend on the nuisance."""
    rest = n - b
    low, high = np.full_like(b, -1.0), rest + 1.0  # score(low) <= z < score(high)
    while np.any(high - low > 1):
        mid = np.floor((low + high) / 2)
        ok = _score(b, np.minimum(mid, rest), n, -margin) > z
        high, low = np.where(ok, mid, high), np.where(ok, low, mid)
    return high


def _pass_probabilities(n: int, margin: float, z: float, p_c: np.ndarray) -> np.ndarray:
    """P(Tango's score at -margin > z) at each nuisance p_c, with p_b = p_c + margin (the
    boundary of H0): exact trinomial sums, b ~ binomial(n, p_b) and c | b ~ binomial(n - b,
    p_c / (1 - p_b)), b's tails under 1e-10 left out."""
    from scipy import stats  # here: reading a recorded decision does not need scipy.stats

    p_b = p_c + margin
    top = int(stats.binom.isf(_TAIL, n, float(np.max(p_b)))) + 1
    b = np.arange(0.0, min(top, n) + 1.0)
    critical = _critical(n, margin, z, b)
    q = np.minimum(p_c / (1 - p_b), 1.0)[:, None]
    passing = stats.binom.sf(critical[None, :] - 1, (n - b)[None, :], q)
    weights = stats.binom.pmf(b[None, :], n, p_b[:, None])
    result: np.ndarray = np.sum(weights * passing, axis=1)
    return result


def boundary_pass_probability(n: int, margin: float, z: float, p_c: float) -> float:
    """P(Tango's score at -margin > z) when p_b = p_c + margin (the boundary of H0), exact."""
    return float(_pass_probabilities(n, margin, z, np.array([p_c]))[0])


def _nuisance(margin: float) -> np.ndarray:
    top = (1 - margin) / 2
    return np.concatenate([[0.0], np.geomspace(min(1e-4, top), top, _GRID - 1)])


def exact_size(n: int, margin: float, alpha: float) -> float:
    """The largest pass probability on the boundary of H0 at nominal one-sided level `alpha`."""
    return float(np.max(_pass_probabilities(n, margin, _z(1 - 2 * alpha), _nuisance(margin))))


@lru_cache(maxsize=4096)
def _exact_alpha(n: int, margin: float, alpha: float) -> float:
    if exact_size(n, margin, alpha) <= alpha:
        return alpha
    low, high = 0.0, alpha  # size(low) <= alpha < size(high)
    for _ in range(_STEPS):
        mid = (low + high) / 2
        low, high = (mid, high) if exact_size(n, margin, mid) <= alpha else (low, mid)
    return low


def exact_alpha(n: int, margin: float, alpha: float) -> float:
    """The nominal one-sided level α' <= `alpha` at which Tango's non-inferiority test on `n`
    paired samples passes a candidate worse by exactly `margin` at most `alpha` of the time,
    whatever the discordance (module docstring); `alpha` itself where that already holds."""
    if n < 1 or not 0 < margin < 1 or not 0 < alpha < 0.5:
        raise ValueError(
            f"need n >= 1, 0 < margin < 1, 0 < alpha < 0.5; got {n}, {margin}, {alpha}"
        )
    return _exact_alpha(int(n), round(float(margin), 12), round(float(alpha), 12))
