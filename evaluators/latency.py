"""Latency against the baseline: warmed up, interleaved, threads pinned, in sessions; percentiles
with distribution-free intervals, speedups and ratios with intervals over the sessions.

Timing is noisy and drifts (frequency scaling, other processes, caches), so the candidate and
the baseline are timed in alternation, call by call, in ABBA order (which goes first alternates),
after a warm-up: drift then hits both alike. Garbage collection is paused while timing.

Consecutive calls are not independent, though (a slow spell lasts many calls), and a process
settles into a level that the next run does not share: an interval that treats the calls as
independent is too narrow (simulated AR(1) timings, phi 0.9: a speedup gate at its threshold
passed 20-26% of the time, declaring 5%). So each batch size's calls are split into `sessions`
(default 5), taken in turn across the batch sizes, each with its inputs copied and its calls
bound afresh, its own warm-up and the other model first every other session. The speedup and the
candidate / baseline ratio of each percentile are estimated in each session, and their interval
is Student's t over the sessions' log ratios: the sessions are the independent replicates, as in
batch means (Schmeiser 1982) and in Kalibera & Jones, "Rigorous benchmarking in reasonable time"
(ISMM 2013), which repeat at the level whose variation dominates and build the interval over
that level's means. Correlation within a session and shifts between sessions both show in the
spread of the session estimates, and so in the interval.

A single model's percentiles (p50, p90, p95, p99) keep their order-statistic interval
(`stats.quantile_ci`), exact for independent calls whatever the distribution; where the
sessions are long enough to estimate the percentile (`SESSION_CALLS`), the interval is widened
to the t interval over the sessions' log percentiles as well, which holds when calls are not
independent. Too few calls for a tail percentile: the interval says how far its ends reach, and
validation refuses a gate it cannot serve (`order_statistic_calls`). Throughput is the batch size
over the median latency.

Inputs: the first rows of the test split, one batch bound per session and run by every call,
unless the splits declare their padding (`compressgate.recipes.data.Padding`). Then each batch
size runs through the test split's consecutive batches (rows [k·b, (k+1)·b)), each trimmed to its
longest sample, one a call, continuing from session to session and wrapping around: the lengths
a server batching real text would run at. The candidate and the baseline are fed the same batch
in each pair of calls, and the lengths timed are recorded (`LatencyBatch.sequence_lengths`).

Runners: torch (`module(x)` under `torch.inference_mode`, `torch.set_num_threads` pinned) and
onnxruntime (a CPU session with pinned intra- and inter-op threads, inputs bound once). With
runner `auto` each variant runs in its own runtime and the baseline in the candidate's: its
torch module against torch candidates, its float32 ONNX export against ONNX candidates. Every
speedup and ratio names that baseline (`LatencyResult.compared_with`).
"""

from __future__ import annotations

import gc
import itertools
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
from compressgate.evaluators.results import (
    Estimate,
    LatencyBatch,
    LatencyResult,
    SequenceLengths,
)
from compressgate.recipes.data import Padding, Splits, trim
from compressgate.recipes.evaluation import LATENCY_QUANTILES, SESSION_CALLS, LatencySpec
from compressgate.recipes.models import OnnxModel, TorchModel

Call = Callable[[], object]
QUANTILES = LATENCY_QUANTILES
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


def trimmed_batches(x: np.ndarray, size: int, padding: Padding) -> list[np.ndarray]:
    """The consecutive batches of `size` rows of `x` (rows [k·size, (k+1)·size), the last
    partial one left out), each trimmed to its longest sample, contiguous; a split smaller than
    `size` gives one batch, its rows repeated as in `batch_of`."""
    count = len(x) // size
    if count == 0:
        return [np.ascontiguousarray(trim(torch.from_numpy(batch_of(x, size)), padding).numpy())]
    return [
        np.ascontiguousarray(trim(torch.from_numpy(x[k * size : (k + 1) * size]), padding).numpy())
        for k in range(count)
    ]


def cycled(runner: Runner, batches: list[np.ndarray], order: list[int]) -> Call:
    """A call that runs the model on `batches[order[0]]`, then `batches[order[1]]`, ... (round
    and round): each batch copied and bound once, outside the timing."""
    bound = {j: runner.bind(batches[j].copy()) for j in dict.fromkeys(order)}
    step = itertools.cycle([bound[j] for j in order]).__next__
    return lambda: step()()


def session_sizes(total: int, sessions: int) -> list[int]:
    """`total` calls split into `sessions` as evenly as can be (the first take the remainder)."""
    share, extra = divmod(total, sessions)
    return [share + (index < extra) for index in range(sessions)]


def _groups(session: np.ndarray | None, n: int) -> list[np.ndarray]:
    """The calls of each session (indices), in session order; one group without labels."""
    if session is None:
        return [np.arange(n)]
    labels = np.asarray(session)
    if labels.shape != (n,):
        raise ValueError(f"expected {n} session labels, got {labels.shape}")
    return [np.flatnonzero(labels == value) for value in np.unique(labels)]


def _per_session(values: np.ndarray, groups: list[np.ndarray]) -> np.ndarray:
    """Every percentile of `QUANTILES` in every session (sessions × percentiles)."""
    levels = list(QUANTILES.values())
    return np.array([np.quantile(values[g], levels) for g in groups])


def _estimable(groups: list[np.ndarray], name: str) -> bool:
    """Whether every session is long enough to estimate percentile `name`, and there are two."""
    return len(groups) >= 2 and min(len(g) for g in groups) >= SESSION_CALLS[name]


def quantile_estimates(
    nanoseconds: np.ndarray, confidence: float, session: np.ndarray | None = None
) -> dict[str, Estimate]:
    """p50, p90, p95, p99 in milliseconds with their intervals at two-sided `confidence`.

    The order-statistic interval (exact for independent calls); with `session` labels, widened
    to the t interval over the sessions' log percentiles where each session can estimate it.
    """
    ms = nanoseconds.astype(np.float64) / 1e6
    n = len(ms)
    groups = _groups(session, n)
    one_sided = (1 + confidence) / 2
    levels = list(QUANTILES.values())
    points = np.quantile(ms, levels)
    each = _per_session(ms, groups)
    out = {}
    for index, (name, q) in enumerate(QUANTILES.items()):
        low, high = stats.quantile_ci(ms, q, confidence)
        method = "order statistics (distribution-free)"
        if _estimable(groups, name):
            s_low, s_high = stats.log_t_interval(each[:, index], confidence)
            low, high = min(low, s_low), max(high, s_high)
            method += (
                f", widened to the t interval over {len(groups)} sessions' log {name} "
                "(drift and correlated calls)"
            )
        # Too few calls for a tail quantile: an end is the fastest or slowest call and reaches
        # less than asked. Say how far the weaker end reaches, rather than claim the level.
        reached = min(stats.quantile_reach(n, q, confidence))
        short = reached < one_sided - 1e-12
        out[name] = Estimate(
            estimate=float(points[index]),
            ci_low=low,
            ci_high=high,
            n=n,
            confidence=2 * reached - 1 if short else confidence,
            method=method
            + (
                f"; {n} calls reach only {reached:.1%} one-sided at the tail's end" if short else ""
            ),
            unit="ms",
            higher_is_better=False,
        )
    return out


def ratio_estimates(
    baseline_ns: np.ndarray,
    candidate_ns: np.ndarray,
    confidence: float,
    session: np.ndarray,
    *,
    against: str = "the baseline",
) -> dict[str, Estimate]:
    """candidate / baseline of each percentile, from the same interleaved calls, with the t
    interval over the sessions' log ratios (Kalibera & Jones 2013), at two-sided `confidence`.

    A percentile the sessions are too short to estimate (`SESSION_CALLS`) gets no interval at
    any stated level: its `confidence` is 0, so that no gate is judged on it.
    """
    groups = _groups(session, len(candidate_ns))
    base = baseline_ns.astype(np.float64)
    cand = candidate_ns.astype(np.float64)
    levels = list(QUANTILES.values())
    points = np.quantile(cand, levels) / np.quantile(base, levels)
    ratios = _per_session(cand, groups) / _per_session(base, groups)
    out = {}
    for index, name in enumerate(QUANTILES):
        point = float(points[index])
        each = ratios[:, index]
        where = f"candidate / {against} {name}, same interleaved calls"
        if _estimable(groups, name):
            low, high = stats.log_t_interval(each, confidence)
            level = confidence
            method = f"{where}; t interval over {len(groups)} sessions' log ratios"
        else:
            low, high = float(each.min()), float(each.max())
            level = 0.0
            method = (
                f"{where}; no interval at any level: sessions of "
                f"{min(len(g) for g in groups)} calls cannot estimate {name} (each needs "
                f"{SESSION_CALLS[name]}, and two sessions or more); the range of the sessions' "
                "ratios"
            )
        if not low <= point <= high:
            low, high = min(low, point), max(high, point)
            method += ", widened to include the estimate"
        out[name] = Estimate(
            estimate=point,
            ci_low=low,
            ci_high=high,
            n=len(cand),
            confidence=level,
            method=method,
            unit="x",
            higher_is_better=False,
        )
    return out


def speedup(
    baseline_ns: np.ndarray,
    candidate_ns: np.ndarray,
    confidence: float,
    seed: int = 0,
    session: np.ndarray | None = None,
    *,
    against: str = "the baseline",
) -> Estimate:
    """median(baseline) / median(candidate) from the same interleaved calls.

    With two sessions or more: the t interval over the sessions' log ratios (the inverse of
    `ratio_estimates`' p50). Without sessions (one run of pairs): a circular block bootstrap
    of the pairs (Politis & Romano 1992), blocks of n^(1/3) pairs (Hall, Horowitz & Jing 1995),
    which keeps short-range correlation between consecutive calls, not shifts between runs.
    """
    groups = _groups(session, len(baseline_ns))
    base = baseline_ns.astype(np.float64)
    cand = candidate_ns.astype(np.float64)
    point = float(np.median(base) / np.median(cand))
    where = f"{against} p50 / candidate p50, same interleaved calls"
    if _estimable(groups, "p50"):
        ratios = [float(np.median(base[g]) / np.median(cand[g])) for g in groups]
        low, high = stats.log_t_interval(ratios, confidence)
        method = f"{where}; t interval over {len(groups)} sessions' log ratios"
    else:
        n = len(base)
        block = max(1, round(n ** (1 / 3)))
        rng = np.random.default_rng(seed)
        starts = rng.integers(0, n, size=(_SPEEDUP_RESAMPLES, -(-n // block)))
        rows = ((starts[:, :, None] + np.arange(block)) % n).reshape(_SPEEDUP_RESAMPLES, -1)[:, :n]
        replicates = np.median(base[rows], axis=1) / np.median(cand[rows], axis=1)
        low, high = stats.percentile_interval(replicates, confidence)
        method = (
            f"{where}; circular block bootstrap of the pairs, blocks of {block} "
            f"({_SPEEDUP_RESAMPLES} resamples)"
        )
    if not low <= point <= high:
        low, high = min(low, point), max(high, point)
        method += ", widened to include the estimate"
    return Estimate(
        estimate=point,
        ci_low=low,
        ci_high=high,
        n=len(base),
        confidence=confidence,
        method=method,
        unit="x",
        higher_is_better=True,
    )


def batch_summary(
    size: int,
    candidate_ns: np.ndarray,
    baseline_ns: np.ndarray | None,
    session: np.ndarray,
    confidence: float,
    *,
    seed: int = 0,
    against: str = "the baseline",
) -> LatencyBatch:
    """Every statistic of one batch size from its timings (nanoseconds per call, the session of
    each call): what the evaluator records, and what the simulations drive."""
    quantiles = quantile_estimates(candidate_ns, confidence, session)
    return LatencyBatch(
        batch_size=size,
        quantiles_ms=quantiles,
        baseline_quantiles_ms=None
        if baseline_ns is None
        else quantile_estimates(baseline_ns, confidence, session),
        speedup_p50=None
        if baseline_ns is None
        else speedup(baseline_ns, candidate_ns, confidence, seed, session, against=against),
        ratios=None
        if baseline_ns is None
        else ratio_estimates(baseline_ns, candidate_ns, confidence, session, against=against),
        throughput=throughput(size, quantiles["p50"]),
        repeats=len(candidate_ns),
        sessions=len(_groups(session, len(candidate_ns))),
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


def _named(baseline: Subject, runner: Runner) -> str:
    """What a speedup or ratio is relative to: the baseline's stage, in the runtime that timed it
    (interleaved with the candidate), and in which form."""
    exported = runner.name == "onnxruntime" and isinstance(baseline.variant, TorchModel)
    form = " (its float32 ONNX export)" if exported else ""
    return f"stage '{baseline.stage}'{form} in {runner.name}"


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
            padding = splits.padding
            if padding is not None:
                for runner, subject in ((cand, candidate), (base, baseline)):
                    self._check_trimmable(runner, subject, padding, ctx)
            lengths: dict[int, list[int]] = {size: [] for size in spec.batch_sizes}
            timings = self._time(cand, base, x, spec, padding, lengths)
            against = None if baseline is None or base is None else _named(baseline, base)
            batches = [
                batch_summary(
                    size,
                    cand_ns,
                    base_ns,
                    session,
                    spec.interval_level,
                    seed=ctx.seed_for(f"latency-{size}"),
                    against=against or "the baseline",
                )
                for size, (cand_ns, base_ns, session) in timings.items()
            ]
            if padding is not None:
                batches = [
                    batch.model_copy(
                        update={
                            "sequence_lengths": _lengths(
                                lengths[batch.batch_size], x, batch.batch_size, padding
                            )
                        }
                    )
                    for batch in batches
                ]
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
            sessions=spec.sessions,
            compared_with=against,
        )

    def _check_trimmable(
        self, runner: Runner | None, subject: Subject | None, padding: Padding, ctx: EvalContext
    ) -> None:
        """Refuse an ONNX model whose padded axis is fixed: it cannot run trimmed batches."""
        if not isinstance(runner, OnnxRunner) or subject is None:
            return
        from compressgate.recipes import onnxio

        shape = runner.session.get_inputs()[0].shape
        if onnxio.fixes_axis(shape, padding.axis):
            raise ctx.error(
                self.kind,
                f"the data declares its padding ({padding.describe()}), but the ONNX form of "
                f"stage '{subject.stage}' takes only length {shape[padding.axis]} on that axis "
                f"(input shape {shape}), not trimmed batches",
                hint="export it with a dynamic sequence axis (the export and quantize stages do "
                "when the data declares its padding), or drop the declaration",
            )

    def _time(
        self,
        cand: Runner,
        base: Runner | None,
        x: np.ndarray,
        spec: LatencySpec,
        padding: Padding | None = None,
        lengths: dict[int, list[int]] | None = None,
    ) -> dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray]]:
        """Each batch size's timings of the candidate (and baseline), and the session of each
        call: the sessions taken in turn across the batch sizes, each with fresh inputs and calls
        bound anew, its share of the warm-up, and the baseline first every other session. With
        `padding`, the timed calls' input lengths are appended to `lengths` by batch size."""
        warm = session_sizes(spec.warmup, spec.sessions)
        parts: dict[int, list[tuple[np.ndarray, np.ndarray | None]]] = {
            size: [] for size in spec.batch_sizes
        }
        # The heap as it is now (the process' modules, the models) is frozen for the timing:
        # the collection before each session then walks only what was made since, not the
        # whole heap (a third of a second each in a process that has imported torch's exporter,
        # paid ten times an evaluation), and is given back to the collector when the timing ends.
        gc.freeze()
        try:
            if padding is None:
                self._sessions(cand, base, x, spec, warm, parts)
            else:
                self._trimmed_sessions(
                    cand, base, x, spec, warm, parts, padding, {} if lengths is None else lengths
                )
        finally:
            gc.unfreeze()
        out: dict[int, tuple[np.ndarray, np.ndarray | None, np.ndarray]] = {}
        for size, runs in parts.items():
            cand_ns = np.concatenate([a for a, _ in runs])
            base_ns = (
                None if base is None else np.concatenate([b for _, b in runs if b is not None])
            )
            session = np.repeat(np.arange(len(runs)), [len(a) for a, _ in runs])
            out[size] = (cand_ns, base_ns, session)
        return out

    @staticmethod
    def _sessions(
        cand: Runner,
        base: Runner | None,
        x: np.ndarray,
        spec: LatencySpec,
        warm: list[int],
        parts: dict[int, list[tuple[np.ndarray, np.ndarray | None]]],
    ) -> None:
        """Time every session of every batch size into `parts`."""
        with pinned(spec.threads):
            for index in range(spec.sessions):
                for size in spec.batch_sizes:
                    repeats = session_sizes(spec.repeats_at(size), spec.sessions)[index]
                    gc.collect()  # not during the timing (paused there), nor carried over
                    batch = batch_of(x, size)
                    first, second = cand.bind(batch), None if base is None else base.bind(batch)
                    if second is not None and index % 2:
                        led, followed = time_calls(
                            second, first, warmup=warm[index], repeats=repeats
                        )
                        assert followed is not None
                        parts[size].append((followed, led))
                    else:
                        parts[size].append(
                            time_calls(first, second, warmup=warm[index], repeats=repeats)
                        )

    @staticmethod
    def _trimmed_sessions(
        cand: Runner,
        base: Runner | None,
        x: np.ndarray,
        spec: LatencySpec,
        warm: list[int],
        parts: dict[int, list[tuple[np.ndarray, np.ndarray | None]]],
        padding: Padding,
        lengths: dict[int, list[int]],
    ) -> None:
        """`_sessions` on padded data: each batch size's calls go through its trimmed batches
        (`trimmed_batches`) in order, one a call, warm-up included, from where the previous
        session stopped; the candidate and the baseline take the same batch in each pair."""
        inputs = {size: trimmed_batches(x, size, padding) for size in spec.batch_sizes}
        start = dict.fromkeys(spec.batch_sizes, 0)
        with pinned(spec.threads):
            for index in range(spec.sessions):
                for size in spec.batch_sizes:
                    repeats = session_sizes(spec.repeats_at(size), spec.sessions)[index]
                    batches = inputs[size]
                    calls = warm[index] + repeats
                    order = [(start[size] + i) % len(batches) for i in range(calls)]
                    start[size] = (start[size] + calls) % len(batches)
                    lengths.setdefault(size, []).extend(
                        batches[j].shape[padding.axis] for j in order[warm[index] :]
                    )
                    gc.collect()
                    first = cycled(cand, batches, order)
                    second = None if base is None else cycled(base, batches, order)
                    if second is not None and index % 2:
                        led, followed = time_calls(
                            second, first, warmup=warm[index], repeats=repeats
                        )
                        assert followed is not None
                        parts[size].append((followed, led))
                    else:
                        parts[size].append(
                            time_calls(first, second, warmup=warm[index], repeats=repeats)
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
                subject.variant.module,
                ctx.splits.test.x,
                scratch / subject.stage,
                opset=18,
                padding=ctx.splits.padding,
            )
            return OnnxRunner(exported, spec.threads)
        return OnnxRunner(subject.variant, spec.threads)


def _lengths(timed: list[int], x: np.ndarray, size: int, padding: Padding) -> SequenceLengths:
    """What the timed calls of batch size `size` ran at (`timed`: each call's length)."""
    return SequenceLengths(
        axis=padding.axis,
        stored=int(x.shape[padding.axis]),
        batches=max(1, len(x) // size),
        mean=float(np.mean(timed)),
        min=min(timed),
        max=max(timed),
    )
