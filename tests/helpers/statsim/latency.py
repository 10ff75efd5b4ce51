"""Latency: percentile bounds, the speedup and the p50 ratio at their gates' boundary, and the
coverage of the p50 and speedup intervals, under independent, autocorrelated and drifting calls.

Timings are drawn as the evaluator takes them: `calls` interleaved pairs (candidate, baseline)
split into `sessions` in order. The log of a call's time is its model's level, plus a drift
shared by both models (the pair runs at the same moment), plus each model's own noise, both
AR(1) with coefficient phi along the calls (continuous across sessions: the hardest case for
sessions as replicates), plus, with session shifts, a level per session shared by both and a
smaller one each model's own. Every component is a zero-mean Gaussian, so a model's p50 over
all sessions is exp(level) and the true speedup is the ratio of the levels exactly.

The nanoseconds go through `latency.batch_summary`, the function the evaluator applies to its
measured timings, then `LatencyResult.metrics` and `gates.verdicts.judge`. Validation's side
(too few calls refused) is `order_statistic_calls`, checked in tests/evaluators/test_latency.py
against the recipes; here the refused configurations show that the judge fails them too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

from compressgate.evaluators.latency import batch_summary
from compressgate.evaluators.results import Estimate, LatencyResult
from compressgate.gates.verdicts import judge
from compressgate.recipes.evaluation import LatencySpec, order_statistic_calls
from compressgate.recipes.manifest import BoundGate, GateSpec, RelativeGate
from tests.helpers.statsim.common import Options, Row

FAMILY = "latency"
CONFIDENCE = 0.95  # one-sided, the evaluator's default
LEVEL = LatencySpec().interval_level  # the two-sided level of the recorded intervals
SESSIONS = LatencySpec().sessions
BASE_NS = 1e6  # the baseline's median: 1 ms
DRIFT_SD, OWN_SD = 0.05, 0.10  # stationary sd (log scale) of the shared drift and own noise
SHIFT_SD, OWN_SHIFT_SD = 0.10, 0.04  # sd of a session's shared and own level shifts
# The default warm-up (20 pairs) split over the sessions: what runs between two of them.
WARMUP_PAIRS = LatencySpec().warmup // SESSIONS


@dataclass(frozen=True)
class Timing:
    """How the calls of one simulated measurement behave."""

    name: str
    phi: float = 0.0
    shifts: bool = False


CASES = (
    Timing("independent calls"),
    Timing("AR(1) phi 0.5", phi=0.5),
    Timing("AR(1) phi 0.9", phi=0.9),
    Timing("session shifts", shifts=True),
    Timing("AR(1) phi 0.9 and session shifts", phi=0.9, shifts=True),
)


def _ar1(rng: np.random.Generator, reps: int, n: int, phi: float, sd: float) -> np.ndarray:
    """`reps` stationary AR(1) series of length n with marginal sd `sd`."""
    out = np.empty((reps, n))
    out[:, 0] = rng.normal(0, sd, reps)
    innovation = sd * np.sqrt(1 - phi**2)
    for i in range(1, n):
        out[:, i] = phi * out[:, i - 1] + rng.normal(0, innovation, reps)
    return out


def draw(
    rng: np.random.Generator, reps: int, calls: int, timing: Timing, ratio: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(baseline ns, candidate ns, session of each call) for `reps` measurements; the
    candidate's median is `ratio` times the baseline's."""
    sizes = [len(part) for part in np.array_split(np.arange(calls), SESSIONS)]
    session = np.repeat(np.arange(SESSIONS), sizes)
    # Between two sessions of a batch size run what the evaluator runs there: the next
    # session's share of the warm-up and, in the reference recipe (batch sizes 1 and 64), the
    # other batch size's session with its warm-up. The series run on through those steps (one
    # step a pair, which understates a batch-64 pair's time), which are then dropped.
    gap = 2 * WARMUP_PAIRS + calls // SESSIONS
    timed = np.ones(calls + (SESSIONS - 1) * gap, dtype=bool)
    for k, start in enumerate(np.cumsum(sizes)[:-1]):
        at = start + k * gap
        timed[at : at + gap] = False
    steps = len(timed)
    drift = _ar1(rng, reps, steps, timing.phi, DRIFT_SD)[:, timed]
    logs = []
    for level in (np.log(BASE_NS), np.log(BASE_NS * ratio)):
        log = level + drift + _ar1(rng, reps, steps, timing.phi, OWN_SD)[:, timed]
        logs.append(log)
    if timing.shifts:
        shared = rng.normal(0, SHIFT_SD, (reps, SESSIONS))[:, session]
        for log in logs:
            log += shared + rng.normal(0, OWN_SHIFT_SD, (reps, SESSIONS))[:, session]
    base, cand = (np.exp(log).round().astype(np.int64) for log in logs)
    return base, cand, session


def _metrics(
    base: np.ndarray, cand: np.ndarray, session: np.ndarray
) -> tuple[dict[str, Estimate], dict[str, Estimate]]:
    """The candidate's metrics and the baseline's, as the evaluator records them."""
    batch = batch_summary(1, cand, base, session, LEVEL)
    result = LatencyResult(
        runner="sim", threads={}, warmup=0, repeats=len(cand), timer_overhead_ns=0, batches=[batch]
    )
    assert batch.baseline_quantiles_ms is not None
    baseline = {f"latency.{q}_ms": e for q, e in batch.baseline_quantiles_ms.items()}
    return result.metrics(), baseline


def _passes(gate: GateSpec, metrics: dict[str, Estimate], baseline: dict[str, Estimate]) -> bool:
    return judge(gate, metrics, baseline, {}).verdict == "pass"


def _covers(estimate: Estimate, truth: float) -> bool:
    return estimate.ci_low <= truth <= estimate.ci_high


def _paired_rows(options: Options, reps: int, calls: int) -> list[Row]:
    """Per timing case: the p50 ratio gate (+5%) and the speedup bound at their boundary, and
    the coverage of the candidate's p50 and of the speedup, on the same measurements."""
    ratio = 1.05
    ratio_gate = RelativeGate(
        name="p50-ratio",
        owner="perf",
        metric="latency.p50_ms",
        relative=True,
        max_increase=ratio - 1,
        confidence=CONFIDENCE,
    )
    speedup_gate = BoundGate(
        name="speedup",
        owner="perf",
        metric="latency.speedup_p50",
        min=1 / ratio,
        confidence=CONFIDENCE,
    )
    true_p50_ms = BASE_NS * ratio / 1e6
    rows = []
    for number, timing in enumerate(CASES):
        rng = np.random.default_rng([options.seed, 1, number])
        base, cand, session = draw(rng, reps, calls, timing, ratio)
        counts = np.zeros(4)
        for r in range(reps):
            metrics, baseline = _metrics(base[r], cand[r], session)
            counts += (
                _passes(ratio_gate, metrics, baseline),
                _passes(speedup_gate, metrics, baseline),
                _covers(metrics["latency.p50_ms"], true_p50_ms),
                _covers(metrics["latency.speedup_p50"], 1 / ratio),
            )
        rate = counts / reps
        where = f"{calls} calls in {SESSIONS} sessions, {timing.name}"
        rows += [
            Row(FAMILY, f"p50 ratio +5% gate at its boundary, {where}", "false pass",
                1 - CONFIDENCE, float(rate[0]), reps, calls),
            Row(FAMILY, f"speedup bound at its boundary, {where}", "false pass",
                1 - CONFIDENCE, float(rate[1]), reps, calls),
            Row(FAMILY, f"p50 interval holds the p50 over sessions, {where}", "coverage",
                LEVEL, float(rate[2]), reps, calls),
            Row(FAMILY, f"speedup interval holds the true speedup, {where}", "coverage",
                LEVEL, float(rate[3]), reps, calls),
        ]  # fmt: skip
    return rows


def _bound_rows(options: Options, reps: int) -> list[Row]:
    """A bound on p95 or p99 at the true percentile, independent calls: at call counts that
    validation accepts (false pass at most 5%), and at counts it refuses (the judge fails them:
    their intervals say how far their ends reach)."""
    sd = np.hypot(DRIFT_SD, OWN_SD)
    rows = []
    for name, q, calls in (("p95", 0.95, 200), ("p99", 0.99, 300), ("p99", 0.99, 200),
                           ("p95", 0.95, 20)):  # fmt: skip
        truth_ms = BASE_NS * float(np.exp(sd * sps.norm.ppf(q))) / 1e6
        gate = BoundGate(
            name="tail", owner="perf", metric=f"latency.{name}_ms", max=truth_ms, confidence=0.95
        )
        needed = order_statistic_calls(q, CONFIDENCE)
        verdict = "accepted" if calls >= needed else "refused"
        count = reps if calls >= needed else max(50, reps // 4)
        rng = np.random.default_rng([options.seed, 2, calls, round(q * 100)])
        base, cand, session = draw(rng, count, calls, Timing("independent"), 1.0)
        passed = sum(_passes(gate, *_metrics(base[r], cand[r], session)) for r in range(count))
        rows.append(
            Row(
                FAMILY,
                f"{name} bound at the true {name}, {calls} independent calls "
                f"({verdict} by validation: needs {needed})",
                "false pass",
                1 - CONFIDENCE,
                float(passed / count),
                count,
                calls,
            )
        )
    return rows


def rows(options: Options) -> list[Row]:
    # The accepted tail bounds sit at their exact error (p99 over 300 calls: 0.99^300 = 4.9%),
    # so they get more datasets at small scales than the rows with room to spare.
    bounds = _bound_rows(options, options.reps(2000, least=600))
    return bounds + _paired_rows(options, options.reps(2000), 200)
