"""Latency against the baseline: warmed up, interleaved, threads pinned, percentiles with
distribution-free intervals.

Timing is noisy and drifts (frequency scaling, other processes, caches), so the candidate and
the baseline are timed in alternation, call by call, in ABBA order (which goes first alternates),
after a warm-up: drift then hits both alike, and the pairs it produces are what the speedup's
interval resamples. Garbage collection is paused while timing. Percentiles (p50, p90, p95,
p99) come with order-statistic intervals (`stats.quantile_ci`); the speedup is the ratio of the
medians, with a bootstrap interval over the interleaved pairs; throughput is the batch size over
the median latency.

Runners: torch (`module(x)` under `torch.inference_mode`, `torch.set_num_threads` pinned) and
onnxruntime (a CPU session with pinned intra- and inter-op threads, inputs bound once). With
runner `auto` each variant runs in its own runtime and the baseline in the candidate's: its
torch module against torch candidates, its float32 ONNX export against ONNX candidates.
"""

from __future__ import annotations

import gc
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from compressgate.evaluators import stats
from compressgate.evaluators.base import EVALUATORS, EvalContext, Evaluator, Subject
from compressgate.evaluators.results import Estimate, LatencyBatch, LatencyResult
from compressgate.recipes.data import Splits
from compressgate.recipes.evaluation import LatencySpec
from compressgate.recipes.models import OnnxModel, TorchModel

Call = Callable[[], object]
QUANTILES = {"p50": 0.5, "p90": 0.9, "p95": 0.95, "p99": 0.99}
_SPEEDUP_RESAMPLES = 2000


def _nothing() -> None:
    return None


def time_calls(
    first: Call, second: Call | None = None, *, warmup: int, repeats: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Nanoseconds per call of `first` (and of `second`, interleaved in ABBA order)."""
    clock = time.perf_counter_ns
    for _ in range(warmup):
        first()
        if second is not None:
            second()
    a = np.empty(repeats, dtype=np.int64)
    b = np.empty(repeats, dtype=np.int64) if second is not None else None
    collecting = gc.isenabled()
    gc.disable()
    try:
        if second is None or b is None:
            for i in range(repeats):
                t0 = clock()
                first()
                a[i] = clock() - t0
        else:
            for i in range(repeats):
                if i & 1:
                    t0 = clock()
                    second()
                    t1 = clock()
                    first()
                    t2 = clock()
                    b[i], a[i] = t1 - t0, t2 - t1
                else:
                    t0 = clock()
                    first()
                    t1 = clock()
                    second()
                    t2 = clock()
                    a[i], b[i] = t1 - t0, t2 - t1
    finally:
        if collecting:
            gc.enable()
    return a, b


def timer_overhead(repeats: int = 5000) -> float:
    """Median nanoseconds the harness adds to one timed call (timing a call that does nothing)."""
    a, b = time_calls(_nothing, _nothing, warmup=100, repeats=repeats)
    assert b is not None
    return float(np.median(np.concatenate([a, b])))


class Runner(Protocol):
    name: str

    def bind(self, batch: np.ndarray) -> Call:
        """A call that runs the model on `batch` (inputs prepared once, outside the timing)."""
        ...


class TorchRunner:
    name = "torch"

    def __init__(self, module: torch.nn.Module) -> None:
        self.module = module.eval()

    def bind(self, batch: np.ndarray) -> Call:
        module, tensor = self.module, torch.from_numpy(batch)
        return lambda: module(tensor)


class OnnxRunner:
    name = "onnxruntime"

    def __init__(self, model: OnnxModel, threads: int) -> None:
        from compressgate.recipes import onnxio

        session: Any = onnxio.session(model, threads)
        self.session = session
        self.input: str = session.get_inputs()[0].name

    def bind(self, batch: np.ndarray) -> Call:
        run, feed = self.session.run, {self.input: batch}
        return lambda: run(None, feed)


@contextmanager
def pinned(threads: int) -> Iterator[None]:
    """torch's intra-op threads set for the measurement, and inference mode; restored after."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.inference_mode():
            yield
    finally:
        torch.set_num_threads(previous)


def batch_of(x: np.ndarray, size: int) -> np.ndarray:
    """The first `size` inputs (repeated when the split is smaller), contiguous."""
    rows = np.resize(np.arange(len(x)), size)
    return np.ascontiguousarray(x[rows])


def quantile_estimates(nanoseconds: np.ndarray, confidence: float) -> dict[str, Estimate]:
    ms = nanoseconds.astype(np.float64) / 1e6
    out = {}
    for name, q in QUANTILES.items():
        low, high = stats.quantile_ci(ms, q, confidence)
        # Too few calls for a tail quantile: the interval ends at the slowest call and covers
        # less often than asked. Say how often, rather than claim the requested level.
        achieved = stats.quantile_coverage(len(ms), q, confidence)
        short = achieved < confidence
        out[name] = Estimate(
            estimate=float(np.quantile(ms, q)),
            ci_low=low,
            ci_high=high,
            n=len(ms),
            confidence=achieved if short else confidence,
            method="order statistics (distribution-free)"
            + (f"; {len(ms)} calls reach only {achieved:.1%} coverage" if short else ""),
            unit="ms",
            higher_is_better=False,
        )
    return out


def speedup(
    baseline_ns: np.ndarray, candidate_ns: np.ndarray, confidence: float, seed: int
) -> Estimate:
    """median(baseline) / median(candidate), with a bootstrap interval over the pairs."""
    rng = np.random.default_rng(seed)
    n = len(baseline_ns)
    rows = rng.integers(0, n, size=(_SPEEDUP_RESAMPLES, n))
    ratios = np.median(baseline_ns[rows], axis=1) / np.median(candidate_ns[rows], axis=1)
    low, high = stats.percentile_interval(ratios, confidence)
    return Estimate(
        estimate=float(np.median(baseline_ns) / np.median(candidate_ns)),
        ci_low=low,
        ci_high=high,
        n=n,
        confidence=confidence,
        method=f"ratio of medians, paired bootstrap percentile ({_SPEEDUP_RESAMPLES} resamples)",
        unit="x",
        higher_is_better=True,
    )


def throughput(batch_size: int, p50: Estimate) -> Estimate:
    """Samples per second at the median latency (the interval follows the median's)."""
    return Estimate(
        estimate=batch_size / (p50.estimate / 1e3),
        ci_low=batch_size / (p50.ci_high / 1e3),
        ci_high=batch_size / (p50.ci_low / 1e3),
        n=p50.n,
        confidence=p50.confidence,
        method="batch size / p50 latency",
        unit="samples/s",
        higher_is_better=True,
    )


@EVALUATORS.register("latency")
class Latency(Evaluator[LatencySpec]):
    kind = "latency"

    def evaluate(
        self,
        candidate: Subject,
        baseline: Subject | None,
        splits: Splits,
        spec: LatencySpec,
        ctx: EvalContext,
    ) -> LatencyResult:
        with tempfile.TemporaryDirectory(prefix="compressgate-latency-") as scratch:
            cand = self._runner(candidate, spec, ctx, Path(scratch), like=None)
            base = (
                None
                if baseline is None
                else self._runner(baseline, spec, ctx, Path(scratch), like=cand.name)
            )
            x = splits.test.x.numpy()
            batches = []
            with pinned(spec.threads):
                for size in spec.batch_sizes:
                    batch = batch_of(x, size)
                    cand_ns, base_ns = time_calls(
                        cand.bind(batch),
                        None if base is None else base.bind(batch),
                        warmup=spec.warmup,
                        repeats=spec.repeats_at(size),
                    )
                    quantiles = quantile_estimates(cand_ns, spec.interval_level)
                    batches.append(
                        LatencyBatch(
                            batch_size=size,
                            quantiles_ms=quantiles,
                            baseline_quantiles_ms=None
                            if base_ns is None
                            else quantile_estimates(base_ns, spec.interval_level),
                            speedup_p50=None
                            if base_ns is None
                            else speedup(
                                base_ns,
                                cand_ns,
                                spec.interval_level,
                                ctx.seed_for(f"latency-{size}"),
                            ),
                            throughput=throughput(size, quantiles["p50"]),
                            repeats=spec.repeats_at(size),
                        )
                    )
        return LatencyResult(
            runner=cand.name,
            baseline_runner=None if base is None else base.name,
            threads={
                "torch_intra_op": spec.threads,
                "onnxruntime_intra_op": spec.threads,
                "onnxruntime_inter_op": 1,
            },
            warmup=spec.warmup,
            repeats=spec.repeats,
            timer_overhead_ns=timer_overhead(),
            batches=batches,
        )

    def _runner(
        self,
        subject: Subject,
        spec: LatencySpec,
        ctx: EvalContext,
        scratch: Path,
        *,
        like: str | None,
    ) -> Runner:
        """The runner for `subject`: its own runtime, or `like` (the candidate's) for the
        baseline."""
        wanted = (
            like
            or {
                "auto": "torch" if isinstance(subject.variant, TorchModel) else "onnxruntime",
                "onnxruntime": "onnxruntime",
                "torch": "torch",
            }[spec.runner]
        )
        if wanted == "torch":
            if not isinstance(subject.variant, TorchModel):
                raise ctx.error(
                    self.kind,
                    f"stage '{subject.stage}' is ONNX; the torch runner cannot time it",
                    hint="use runner 'auto' or 'onnxruntime'",
                )
            return TorchRunner(subject.variant.module)
        if subject.onnx is not None:
            return OnnxRunner(subject.onnx, spec.threads)
        if isinstance(subject.variant, TorchModel):
            # A torch variant timed in onnxruntime: export it to float ONNX first.
            from compressgate.recipes import onnxio

            exported, _ = onnxio.export(
                subject.variant.module, ctx.splits.test.x, scratch / subject.stage, opset=18
            )
            return OnnxRunner(exported, spec.threads)
        return OnnxRunner(subject.variant, spec.threads)
