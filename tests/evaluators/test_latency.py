"""Latency: the timing harness, the statistics over its timings, and the evaluator end to end.

- `time_calls`: one timing per repeat, the warm-up calls, ABBA alternation (checked on a log of
  the calls), gc paused while timing and its state restored. No absolute timing is asserted
  anywhere: a clearly slower callable must only come out clearly slower (a 10x sleep against a
  factor of 2), a correctness check with a huge margin.
- `quantile_estimates` against `np.quantile` and `stats.quantile_ci`, with how far the weaker
  end reaches (1 - q^n, in closed form) when there are too few calls for a tail quantile, and
  widened to the t interval over the sessions (scipy's t, recomputed here) where sessions can
  estimate the percentile; `stats.quantile_coverage` and `stats.quantile_reach` against a
  brute-force Monte-Carlo coverage; `throughput` as the inverse of the p50 interval.
- The candidate / baseline ratios and the speedup: the t interval over the sessions' log ratios
  recomputed with scipy, no level claimed where sessions are too short, the circular block
  bootstrap without sessions; validation's `order_statistic_calls` against the smallest n whose
  `stats.quantile_reach` reaches the confidence, and recipes refused (or not) at the right field.
- The `Latency` evaluator on a tiny CNN against its own ONNX export (both in onnxruntime), and
  on a recording torch module (threads pinned and inference mode during every call); the torch
  runner refuses ONNX subjects with a `StageError` naming the stage; `pinned` restores threads.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from compressgate.evaluators import stats
from compressgate.evaluators.base import EvalContext, Subject
from compressgate.evaluators.latency import (
    QUANTILES,
    Latency,
    batch_summary,
    pinned,
    quantile_estimates,
    ratio_estimates,
    session_sizes,
    speedup,
    throughput,
    time_calls,
)
from compressgate.recipes import manifest, onnxio
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.evaluation import (
    SESSION_CALLS,
    LatencySpec,
    comparison,
    order_statistic_calls,
)
from compressgate.recipes.examples import digits
from compressgate.recipes.models import OnnxModel, TorchModel
from compressgate.registry.kernel.errors import StageError

FACTORY = "compressgate.recipes.examples.digits:build_cnn"
ARGS = {"channels": (4, 8), "hidden": 16}


# --------------------------------------------------------------------------- fixtures


def synthetic_splits(n: int = 40, seed: int = 0) -> Splits:
    generator = torch.Generator().manual_seed(seed)
    x = torch.rand((n, 1, 8, 8), generator=generator)
    y = torch.randint(0, 10, (n,), generator=generator)
    split = Split(x, y)
    return Splits(split, split, split, tuple(str(k) for k in range(10)))


class Exported:
    def __init__(self, splits: Splits, module: nn.Module, onnx: OnnxModel) -> None:
        self.splits, self.module, self.onnx = splits, module, onnx


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A tiny untrained CNN and its float32 ONNX export."""
    splits = synthetic_splits()
    torch.manual_seed(0)
    module = digits.build_cnn(**ARGS).eval()
    onnx, _ = onnxio.export(module, splits.test.x, tmp_path_factory.mktemp("onnx"), opset=18)
    return Exported(splits, module, onnx)


def torch_subject(stage: str, module: nn.Module, onnx: OnnxModel | None = None) -> Subject:
    return Subject(
        stage=stage,
        variant=TorchModel(module, FACTORY, dict(ARGS)),
        size_bytes=1000,
        onnx=onnx,
        onnx_size_bytes=None if onnx is None else onnx.path.stat().st_size,
    )


def onnx_subject(stage: str, onnx: OnnxModel) -> Subject:
    size = onnx.path.stat().st_size
    return Subject(stage=stage, variant=onnx, size_bytes=size, onnx=onnx, onnx_size_bytes=size)


# --------------------------------------------------------------------------- time_calls


class Recorder:
    """Callables that log their name (and whether gc is on) each time they are called."""

    def __init__(self) -> None:
        self.log: list[str] = []
        self.gc_during: list[bool] = []

    def call(self, name: str) -> Callable[[], None]:
        def run() -> None:
            self.log.append(name)
            self.gc_during.append(gc.isenabled())

        return run


@pytest.mark.parametrize(("warmup", "repeats"), [(0, 1), (3, 6), (5, 7)])
def test_time_calls_gives_one_timing_per_repeat_for_each_callable(
    warmup: int, repeats: int
) -> None:
    recorder = Recorder()
    a, b = time_calls(recorder.call("A"), recorder.call("B"), warmup=warmup, repeats=repeats)
    assert b is not None
    for timings in (a, b):
        assert timings.shape == (repeats,)
        assert timings.dtype == np.int64
        assert np.all(timings >= 0)
    assert recorder.log.count("A") == warmup + repeats
    assert recorder.log.count("B") == warmup + repeats


def test_time_calls_with_one_callable_times_it_alone_after_its_warm_up() -> None:
    recorder = Recorder()
    a, b = time_calls(recorder.call("A"), warmup=4, repeats=9)
    assert b is None
    assert a.shape == (9,)
    assert recorder.log == ["A"] * 13


def test_time_calls_warms_up_both_then_alternates_in_abba_order() -> None:
    recorder = Recorder()
    time_calls(recorder.call("A"), recorder.call("B"), warmup=3, repeats=6)
    warm, timed = recorder.log[:6], recorder.log[6:]
    assert warm == ["A", "B"] * 3
    # Pair i runs A first when i is even and B first when i is odd: AB BA AB BA AB BA.
    assert timed == list("ABBAABBAABBA")


def test_time_calls_pauses_gc_while_timing_and_then_reenables_it() -> None:
    assert gc.isenabled()
    recorder = Recorder()
    time_calls(recorder.call("A"), recorder.call("B"), warmup=2, repeats=4)
    # The 4 warm-up calls run with gc as it was; the 8 timed calls with gc paused.
    assert recorder.gc_during == [True] * 4 + [False] * 8
    assert gc.isenabled()


def test_time_calls_leaves_a_disabled_gc_disabled() -> None:
    gc.disable()
    try:
        time_calls(Recorder().call("A"), Recorder().call("B"), warmup=1, repeats=2)
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_time_calls_restores_gc_when_a_timed_call_raises() -> None:
    calls = 0

    def fails_when_timed() -> None:
        nonlocal calls
        calls += 1
        if calls > 2:
            raise RuntimeError("boom")

    assert gc.isenabled()
    with pytest.raises(RuntimeError, match="boom"):
        time_calls(fails_when_timed, warmup=2, repeats=5)
    assert gc.isenabled()


def test_a_clearly_slower_baseline_gives_a_speedup_above_two_with_its_interval_around_it() -> None:
    # 2 ms against 0.2 ms: a true ratio near 10. Only "clearly above 2" is asserted.
    base_ns, cand_ns = time_calls(
        lambda: time.sleep(0.002), lambda: time.sleep(0.0002), warmup=1, repeats=21
    )
    assert cand_ns is not None
    estimate = speedup(base_ns, cand_ns, 0.95, seed=7)
    assert estimate.estimate > 2
    assert estimate.ci_low <= estimate.estimate <= estimate.ci_high
    assert estimate.estimate == pytest.approx(np.median(base_ns) / np.median(cand_ns), rel=1e-12)
    assert estimate.n == 21
    assert estimate.unit == "x"
    assert estimate.higher_is_better is True


def test_speedup_without_sessions_block_resamples_pairs_and_is_deterministic_in_its_seed() -> None:
    rng = np.random.default_rng(3)
    base = rng.lognormal(np.log(2e6), 0.1, size=60).astype(np.int64)
    cand = rng.lognormal(np.log(1e6), 0.1, size=60).astype(np.int64)
    first = speedup(base, cand, 0.9, seed=11)
    assert first == speedup(base, cand, 0.9, seed=11)
    assert first.confidence == 0.9
    assert "circular block bootstrap of the pairs, blocks of 4" in first.method  # 60^(1/3)
    # Every resampled ratio of medians lies between the extreme ratios of the raw timings.
    assert base.min() / cand.max() <= first.ci_low <= first.ci_high <= base.max() / cand.min()
    # The true ratio is 2; 60 pairs with 10% spread pin the median ratio down to a few percent.
    assert 1.8 < first.ci_low <= first.estimate <= first.ci_high < 2.2


# --------------------------------------------------------------------------- quantiles


@pytest.fixture(scope="module")
def known_sample() -> np.ndarray:
    rng = np.random.default_rng(42)
    return rng.lognormal(np.log(3e5), 0.3, size=200).astype(np.int64)


def test_quantile_estimates_equal_numpy_quantiles_and_order_statistic_intervals(
    known_sample: np.ndarray,
) -> None:
    ms = known_sample.astype(np.float64) / 1e6
    out = quantile_estimates(known_sample, 0.95)
    assert list(out) == ["p50", "p90", "p95", "p99"]
    for name, q in QUANTILES.items():
        estimate = out[name]
        assert estimate.estimate == pytest.approx(float(np.quantile(ms, q)), rel=1e-12)
        low, high = stats.quantile_ci(ms, q, 0.95)
        assert (estimate.ci_low, estimate.ci_high) == (low, high)
        assert estimate.n == 200
        assert estimate.unit == "ms"
        assert estimate.higher_is_better is False


def test_p99_over_200_calls_reports_how_far_its_upper_end_reaches_and_p50_keeps_its_level(
    known_sample: np.ndarray,
) -> None:
    out = quantile_estimates(known_sample, 0.95)
    # The upper end is the slowest call, above the true p99 with probability 1 - 0.99^200;
    # the recorded level is the two-sided one whose ends reach that far.
    reach = 1 - 0.99**200
    assert out["p99"].confidence == pytest.approx(2 * reach - 1, rel=1e-12)
    assert f"{reach:.1%} one-sided" in out["p99"].method
    assert "200 calls" in out["p99"].method
    # Too few calls: the upper end is the slowest call.
    assert out["p99"].ci_high == pytest.approx(known_sample.max() / 1e6, rel=1e-15)
    assert out["p50"].confidence == 0.95
    assert out["p50"].method == "order statistics (distribution-free)"


@pytest.mark.parametrize(("n", "q"), [(20, 0.5), (50, 0.9), (200, 0.99)])
def test_quantile_coverage_matches_a_brute_force_monte_carlo_coverage(n: int, q: float) -> None:
    rng = np.random.default_rng(n)
    draws = 40_000
    samples = np.sort(rng.exponential(size=(draws, n)), axis=1)
    truth = -np.log1p(-q)  # the q quantile of the standard exponential
    # `quantile_ci` returns order statistics of the sorted sample: on 0..n-1 it returns their
    # ranks. Check that on a few real samples, then apply the ranks to every draw at once.
    low_rank, high_rank = (int(r) for r in stats.quantile_ci(np.arange(n), q, 0.95))
    for row in samples[:5]:
        shuffled = rng.permutation(row)
        assert stats.quantile_ci(shuffled, q, 0.95) == (row[low_rank], row[high_rank])
    covered = (samples[:, low_rank] <= truth) & (truth <= samples[:, high_rank])
    # Monte-Carlo sd is at most 0.0025 here: 0.01 is four of them.
    assert stats.quantile_coverage(n, q, 0.95) == pytest.approx(covered.mean(), abs=0.01)


def test_throughput_is_the_batch_size_over_the_median_with_the_interval_inverted(
    known_sample: np.ndarray,
) -> None:
    p50 = quantile_estimates(known_sample, 0.95)["p50"]
    got = throughput(32, p50)
    assert got.estimate == pytest.approx(32 / (p50.estimate / 1e3), rel=1e-12)
    # A slower median (the interval's high end) is fewer samples per second: the ends swap.
    assert got.ci_low == pytest.approx(32 / (p50.ci_high / 1e3), rel=1e-12)
    assert got.ci_high == pytest.approx(32 / (p50.ci_low / 1e3), rel=1e-12)
    assert got.ci_low <= got.estimate <= got.ci_high
    assert (got.n, got.confidence) == (p50.n, p50.confidence)
    assert got.unit == "samples/s"
    assert got.higher_is_better is True


# --------------------------------------------------------------------------- pinned


def test_pinned_sets_threads_and_inference_mode_and_restores_both() -> None:
    previous = torch.get_num_threads()
    wanted = 2 if previous == 1 else 1
    with pinned(wanted):
        assert torch.get_num_threads() == wanted
        assert torch.is_inference_mode_enabled()
    assert torch.get_num_threads() == previous
    assert not torch.is_inference_mode_enabled()


def test_pinned_restores_threads_when_the_body_raises() -> None:
    previous = torch.get_num_threads()
    wanted = 2 if previous == 1 else 1
    with pytest.raises(RuntimeError, match="inside"), pinned(wanted):
        raise RuntimeError("inside")
    assert torch.get_num_threads() == previous


# --------------------------------------------------------------------------- the evaluator


def spec_for(**kw: object) -> LatencySpec:
    return LatencySpec.model_validate({"batch_sizes": [1, 8], "warmup": 2, "repeats": 20, **kw})


def test_latency_of_an_onnx_candidate_against_its_torch_baseline_runs_both_in_onnxruntime(
    exported: Exported,
) -> None:
    spec = spec_for()
    candidate = onnx_subject("export", exported.onnx)
    baseline = torch_subject("baseline", exported.module, onnx=exported.onnx)
    ctx = EvalContext(seed=0, stage="export", splits=exported.splits)
    previous = torch.get_num_threads()

    result = Latency().evaluate(candidate, baseline, exported.splits, spec, ctx)

    assert torch.get_num_threads() == previous
    assert (result.runner, result.baseline_runner) == ("onnxruntime", "onnxruntime")
    assert result.threads == {
        "torch_intra_op": 1,
        "onnxruntime_intra_op": 1,
        "onnxruntime_inter_op": 1,
    }
    assert (result.warmup, result.repeats) == (2, 20)
    assert np.isfinite(result.timer_overhead_ns)
    assert result.timer_overhead_ns >= 0
    assert [b.batch_size for b in result.batches] == [1, 8]
    for batch in result.batches:
        assert list(batch.quantiles_ms) == ["p50", "p90", "p95", "p99"]
        assert batch.baseline_quantiles_ms is not None
        assert list(batch.baseline_quantiles_ms) == ["p50", "p90", "p95", "p99"]
        assert all(e.n == 20 for e in batch.quantiles_ms.values())
        assert batch.speedup_p50 is not None
        assert batch.speedup_p50.n == 20
        assert batch.speedup_p50.ci_low <= batch.speedup_p50.estimate
        assert batch.speedup_p50.estimate <= batch.speedup_p50.ci_high
        assert batch.throughput == throughput(batch.batch_size, batch.quantiles_ms["p50"])
        estimates = [batch.quantiles_ms[q].estimate for q in QUANTILES]
        assert estimates == sorted(estimates)
        assert batch.sessions == 5
        assert batch.ratios is not None
        assert list(batch.ratios) == ["p50", "p90", "p95", "p99"]
        assert batch.ratios["p50"].estimate == pytest.approx(1 / batch.speedup_p50.estimate)
    assert result.sessions == 5
    # Every ratio names what it is relative to: the baseline's float32 export, in onnxruntime.
    assert result.compared_with == "stage 'baseline' (its float32 ONNX export) in onnxruntime"
    assert result.compared_with in result.batches[0].speedup_p50.method
    metrics = result.metrics()
    assert sorted(metrics) == sorted(spec.metric_names())
    assert len(metrics) == len(spec.metric_names())
    # The unprefixed names are the first (primary) batch size's.
    assert metrics["latency.p50_ms"] == metrics["latency.batch_1.p50_ms"]


def test_latency_of_the_baseline_itself_has_no_speedup(exported: Exported) -> None:
    spec = spec_for(batch_sizes=[4])
    baseline = torch_subject("baseline", exported.module, onnx=exported.onnx)
    ctx = EvalContext(seed=0, stage="baseline", splits=exported.splits)
    result = Latency().evaluate(baseline, None, exported.splits, spec, ctx)
    assert (result.runner, result.baseline_runner) == ("torch", None)
    assert result.batches[0].baseline_quantiles_ms is None
    assert result.batches[0].speedup_p50 is None
    expected = {m for m in spec.metric_names() if not m.endswith(("speedup_p50", "_ratio"))}
    assert set(result.metrics()) == expected


class ThreadRecorder(nn.Module):
    """A linear classifier that records torch's thread count and inference mode per call."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.seen: list[tuple[int, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append((torch.get_num_threads(), torch.is_inference_mode_enabled()))
        return self.linear(x.flatten(1))


def test_torch_candidates_are_timed_with_threads_pinned_in_inference_mode_and_restored() -> None:
    splits = synthetic_splits()
    previous = torch.get_num_threads()
    threads = previous + 1  # differs from the current count and from the default of 1
    spec = spec_for(threads=threads, runner="torch")
    candidate_module, baseline_module = ThreadRecorder(), ThreadRecorder()
    candidate = Subject("prune", TorchModel(candidate_module, "x:y"), size_bytes=10)
    baseline = Subject("baseline", TorchModel(baseline_module, "x:y"), size_bytes=10)
    ctx = EvalContext(seed=1, stage="prune", splits=splits)

    result = Latency().evaluate(candidate, baseline, splits, spec, ctx)

    assert torch.get_num_threads() == previous
    assert (result.runner, result.baseline_runner) == ("torch", "torch")
    assert result.threads["torch_intra_op"] == threads
    assert result.threads["onnxruntime_intra_op"] == threads
    # Two batch sizes, each warmed up twice and timed 20 times, for both models.
    for module in (candidate_module, baseline_module):
        assert len(module.seen) == 2 * (2 + 20)
        assert set(module.seen) == {(threads, True)}


def test_the_torch_runner_refuses_an_onnx_candidate_with_a_stage_error_naming_it(
    exported: Exported,
) -> None:
    candidate = onnx_subject("quantize", exported.onnx)
    baseline = torch_subject("baseline", exported.module, onnx=exported.onnx)
    ctx = EvalContext(seed=5, stage="quantize", splits=exported.splits)
    with pytest.raises(StageError) as raised:
        Latency().evaluate(candidate, baseline, exported.splits, spec_for(runner="torch"), ctx)
    assert raised.value.stage == "quantize"
    assert "stage 'quantize' is ONNX" in str(raised.value)
    assert "latency" in str(raised.value)
    assert raised.value.hint is not None
    assert "auto" in raised.value.hint


def test_the_torch_runner_refuses_an_onnx_baseline_under_a_torch_candidate(
    exported: Exported,
) -> None:
    candidate = torch_subject("prune", exported.module)
    baseline = onnx_subject("baseline", exported.onnx)
    ctx = EvalContext(seed=5, stage="prune", splits=exported.splits)
    with pytest.raises(StageError, match="stage 'baseline' is ONNX") as raised:
        Latency().evaluate(candidate, baseline, exported.splits, spec_for(runner="auto"), ctx)
    assert raised.value.stage == "prune"


def test_the_onnxruntime_runner_exports_a_torch_candidate_without_an_onnx_form(
    exported: Exported,
) -> None:
    candidate = torch_subject("prune", exported.module)
    ctx = EvalContext(seed=0, stage="prune", splits=exported.splits)
    spec = spec_for(batch_sizes=[2], runner="onnxruntime")
    result = Latency().evaluate(candidate, None, exported.splits, spec, ctx)
    assert result.runner == "onnxruntime"
    assert candidate.onnx is None  # the export lives in a scratch directory, not on the subject
    assert result.batches[0].quantiles_ms["p50"].n == 20


# --------------------------------------------------------------------------- sessions and ratios


@pytest.mark.parametrize(("total", "sessions"), [(200, 5), (23, 5), (20, 10), (7, 7)])
def test_session_sizes_split_the_calls_evenly_and_keep_their_total(
    total: int, sessions: int
) -> None:
    sizes = session_sizes(total, sessions)
    assert len(sizes) == sessions
    assert sum(sizes) == total
    assert max(sizes) - min(sizes) <= 1
    assert sizes == sorted(sizes, reverse=True)


def drifting(
    seed: int, ratio: float, sessions: int = 5, calls: int = 200
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Interleaved (baseline, candidate) nanoseconds with a level per session, and the labels."""
    rng = np.random.default_rng(seed)
    session = np.repeat(np.arange(sessions), calls // sessions)
    shift = rng.normal(0, 0.2, sessions)[session]
    base = np.exp(np.log(1e6) + shift + rng.normal(0, 0.1, calls))
    cand = np.exp(np.log(1e6 * ratio) + shift + rng.normal(0, 0.1, calls))
    return base.astype(np.int64), cand.astype(np.int64), session


def t_oracle(values: list[float], confidence: float) -> tuple[float, float]:
    """The t interval of the mean of log(values), mapped back (scipy, written out here)."""
    from scipy import stats as sps

    logs = np.log(values)
    half = sps.t.ppf((1 + confidence) / 2, len(logs) - 1) * logs.std(ddof=1) / np.sqrt(len(logs))
    return float(np.exp(logs.mean() - half)), float(np.exp(logs.mean() + half))


def test_ratios_take_the_t_interval_over_the_sessions_log_ratios() -> None:
    base, cand, session = drifting(5, ratio=0.8)
    out = ratio_estimates(base, cand, 0.9, session, against="stage 'baseline' in torch")
    for name, q in QUANTILES.items():
        got = out[name]
        assert got.estimate == pytest.approx(np.quantile(cand, q) / np.quantile(base, q))
        if name == "p99":  # 40 calls a session cannot estimate p99: no level is claimed
            assert got.confidence == 0.0
            assert "each needs 100" in got.method
            continue
        each = [
            np.quantile(cand[session == k], q) / np.quantile(base[session == k], q)
            for k in range(5)
        ]
        low, high = t_oracle(each, 0.9)
        assert got.confidence == 0.9
        assert got.ci_low == pytest.approx(min(low, got.estimate), rel=1e-9)
        assert got.ci_high == pytest.approx(max(high, got.estimate), rel=1e-9)
        assert "candidate / stage 'baseline' in torch" in got.method
        assert got.higher_is_better is False
    # The session shifts (sd 0.2) cancel in the ratio: the true 0.8 is pinned to a few percent.
    assert 0.75 < out["p50"].ci_low < 0.8 < out["p50"].ci_high < 0.85


def test_speedup_with_sessions_is_the_inverse_of_the_p50_ratio_interval() -> None:
    base, cand, session = drifting(6, ratio=0.5)
    got = speedup(base, cand, 0.9, session=session)
    each = [np.median(base[session == k]) / np.median(cand[session == k]) for k in range(5)]
    low, high = t_oracle(each, 0.9)
    assert got.estimate == pytest.approx(np.median(base) / np.median(cand), rel=1e-12)
    assert got.ci_low == pytest.approx(min(low, got.estimate), rel=1e-9)
    assert got.ci_high == pytest.approx(max(high, got.estimate), rel=1e-9)
    ratio = ratio_estimates(base, cand, 0.9, session)["p50"]
    assert got.ci_low == pytest.approx(1 / ratio.ci_high, rel=1e-9)
    assert got.ci_high == pytest.approx(1 / ratio.ci_low, rel=1e-9)


def test_session_shifts_widen_the_p50_interval_to_the_t_interval_over_sessions() -> None:
    _, cand, session = drifting(7, ratio=1.0)
    ms = cand / 1e6
    got = quantile_estimates(cand, 0.9, session)["p50"]
    order_low, order_high = stats.quantile_ci(ms, 0.5, 0.9)
    t_low, t_high = t_oracle([np.median(ms[session == k]) for k in range(5)], 0.9)
    assert got.ci_low == pytest.approx(min(order_low, t_low), rel=1e-12)
    assert got.ci_high == pytest.approx(max(order_high, t_high), rel=1e-12)
    # With shifts of sd 0.2 between sessions the calls are not independent: the sessions'
    # spread is the wider, so the t interval is the one reported.
    assert (got.ci_low, got.ci_high) == pytest.approx((t_low, t_high), rel=1e-12)
    assert "5 sessions' log p50" in got.method
    # p99 cannot be estimated in 40-call sessions: order statistics alone.
    p99 = quantile_estimates(cand, 0.9, session)["p99"]
    assert (p99.ci_low, p99.ci_high) == stats.quantile_ci(ms, 0.99, 0.9)


def test_batch_summary_records_every_statistic_of_one_batch_size() -> None:
    base, cand, session = drifting(8, ratio=0.7)
    batch = batch_summary(4, cand, base, session, 0.9, against="the float baseline")
    assert batch.quantiles_ms == quantile_estimates(cand, 0.9, session)
    assert batch.baseline_quantiles_ms == quantile_estimates(base, 0.9, session)
    assert batch.speedup_p50 == speedup(base, cand, 0.9, 0, session, against="the float baseline")
    assert batch.throughput == throughput(4, batch.quantiles_ms["p50"])
    assert (batch.repeats, batch.sessions) == (200, 5)
    alone = batch_summary(4, cand, None, session, 0.9)
    assert (alone.speedup_p50, alone.ratios, alone.baseline_quantiles_ms) == (None, None, None)


@pytest.mark.parametrize(("n", "q"), [(30, 0.9), (100, 0.95)])
def test_quantile_reach_matches_a_brute_force_monte_carlo_for_each_end(n: int, q: float) -> None:
    rng = np.random.default_rng(n)
    samples = np.sort(rng.exponential(size=(40_000, n)), axis=1)
    truth = -np.log1p(-q)
    low_rank, high_rank = (int(r) for r in stats.quantile_ci(np.arange(n), q, 0.9))
    lower, upper = stats.quantile_reach(n, q, 0.9)
    assert lower == pytest.approx((samples[:, low_rank] <= truth).mean(), abs=0.01)
    assert upper == pytest.approx((samples[:, high_rank] >= truth).mean(), abs=0.01)


@pytest.mark.parametrize("q", [0.5, 0.9, 0.95, 0.99])
@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
def test_order_statistic_calls_is_the_fewest_whose_upper_end_reaches_the_confidence(
    q: float, confidence: float
) -> None:
    needed = order_statistic_calls(q, confidence)
    level = 2 * confidence - 1  # the evaluator's two-sided interval
    assert stats.quantile_reach(needed, q, level)[1] >= confidence
    assert stats.quantile_reach(needed - 1, q, level)[1] < confidence
    lower = order_statistic_calls(q, confidence, upper=False)
    assert stats.quantile_reach(lower, q, level)[0] >= confidence
    assert lower == 1 or stats.quantile_reach(lower - 1, q, level)[0] < confidence


def test_order_statistic_calls_for_the_tail_percentiles_at_95_percent() -> None:
    # 1 - q^n >= 0.95: n >= log(0.05) / log(q), worked by hand.
    assert order_statistic_calls(0.99, 0.95) == 299  # 298.07
    assert order_statistic_calls(0.95, 0.95) == 59  # 58.40
    assert order_statistic_calls(0.9, 0.95) == 29  # 28.43


def test_latency_percentiles_compare_through_their_paired_ratio() -> None:
    assert comparison("latency.p50_ms").ratio == "latency.p50_ratio"
    assert comparison("latency.batch_64.p99_ms").ratio == "latency.batch_64.p99_ratio"
    assert comparison("latency.p50_ms").difference is None
    assert comparison("latency.p95_ratio").why
    assert comparison("latency.throughput").why


RECIPE = {
    "apiVersion": "compressgate/v1",
    "kind": "Recipe",
    "metadata": {"name": "lat", "version": 1, "owners": ["perf"]},
    "environment": {"lock": "requirements.lock"},
    "model": {"factory": FACTORY, "pretrained": True},
    "data": {"loader": "compressgate.recipes.examples.digits:load"},
    "stages": [{"name": "export", "kind": "export"}],
}


def latency_issues(evaluator: dict[str, object], *gates: dict[str, object]) -> list[tuple]:
    recipe = manifest.Recipe.model_validate(
        {
            **RECIPE,
            "evaluators": [{"kind": "accuracy"}, {"kind": "latency", **evaluator}],
            "gates": [{"name": f"g{i}", "owner": "perf", **g} for i, g in enumerate(gates)],
        }
    )
    return [
        (loc, text)
        for loc, text in manifest.recipe_issues(recipe)
        if loc[:2] == ("evaluators", 1) or loc[0] == "gates"
    ]


def test_a_p99_bound_over_200_calls_is_refused_naming_the_calls_it_needs() -> None:
    gate = {"rule": "bound", "metric": "latency.p99_ms", "max": 2.0}
    [(loc, text)] = latency_issues({"batch_sizes": [1, 64]}, gate)
    assert loc == ("evaluators", 1, "repeats")
    assert "299" in text and "evaluators[1].repeats is 200" in text
    assert latency_issues({"batch_sizes": [1, 64], "repeats": 299}, gate) == []


def test_a_p95_bound_at_a_batch_with_20_calls_is_refused_at_batch_repeats() -> None:
    gate = {"rule": "bound", "metric": "latency.batch_64.p95_ms", "max": 9.0, "confidence": 0.95}
    spec = {"batch_sizes": [1, 64], "batch_repeats": {64: 20}, "sessions": 2}
    [(loc, text)] = latency_issues(spec, gate)
    assert loc == ("evaluators", 1, "batch_repeats")
    assert "59" in text and "evaluators[1].batch_repeats[64] is 20" in text
    # The lower end of p95 needs only 1 - 0.05^n >= 0.95: two calls.
    assert latency_issues(spec, {**gate, "max": None, "min": 0.1}) == []


def test_relative_gates_on_latency_percentiles_need_calls_enough_in_every_session() -> None:
    p50 = {"rule": "relative", "metric": "latency.p50_ms", "relative": True, "max_increase": 0.05}
    assert latency_issues({}, p50) == []
    p99 = {**p50, "metric": "latency.p99_ms"}
    [(loc, text)] = latency_issues({}, p99)
    assert loc == ("evaluators", 1, "repeats")
    assert f"needs {SESSION_CALLS['p99']} calls" in text and "500" in text
    assert latency_issues({"repeats": 500}, p99) == []
    assert latency_issues({"repeats": 200, "sessions": 2}, p99) == []


def test_an_absolute_change_in_milliseconds_is_refused_for_the_ratio() -> None:
    gate = {"rule": "relative", "metric": "latency.p50_ms", "max_increase": 0.01}
    [(loc, text)] = latency_issues({}, gate)
    assert loc == ("gates", 0, "rule")
    assert "latency.p50_ratio" in text and "relative: true" in text


def test_sessions_need_two_calls_each_at_every_batch_size() -> None:
    with pytest.raises(ValueError, match="at least 40 timed calls"):
        LatencySpec(repeats=30, sessions=20)
