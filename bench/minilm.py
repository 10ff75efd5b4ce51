"""all-MiniLM-L6-v2 in int8: size, latency and embedding fidelity of dynamic quantization.

Exports the packaged model (`compressgate.recipes.examples.minilm`) to float32 ONNX through the
export
stage's path (`compressgate.recipes.onnxio.export`, opset 18), checks onnxruntime against torch,
then
quantizes it with `onnxruntime.quantization.quantize_dynamic` (int8 weights, activations
quantized at run time), per output channel and per tensor. For each int8 model: file size and
the ratio to float32; latency at batch 1 and 32 with one intra-op thread, timed interleaved with
the float32 model (`compressgate.evaluators.latency.time_calls`, ABBA order, after a warm-up),
medians and
the speedup of the medians with its bootstrap interval; and the embeddings' fidelity to the
float32 model's on the corpus (`compressgate.evaluators.embedding`): cosine mean, 1st percentile
and minimum,
and top-5 neighbour agreement. Inputs are 1,000 sentences of the standard library's docstrings
at 48 tokens, as `recipes/examples/minilm-int8.yaml` gives them.

Then fixed against per-batch longest padding (the loader's `padding: longest`): the float32
export and its per-channel int8 as the fixed recipe ships them, every call at 48 tokens on the
first rows of the corpus, against both exported with a dynamic sequence axis and fed the corpus's
consecutive batches, each trimmed to its longest sentence and cycled, as the latency evaluator
does with declared padding. Each pair is timed interleaved at batch 1 and 32: p50 of each, the
ratio fixed / longest, the tokens per batch actually run, and int8's speedup over float32 at
per-batch longest padding. `--quick` (CI) takes 200 sentences, 100 calls at batch 1 (10 at 32
in the padding comparison) and leaves out per-tensor int8.

Targets (per-channel): ≥ 3.5× smaller, ≥ 1.8× faster at batch 1 on one thread, mean cosine
≥ 0.99 and 1st percentile ≥ 0.98 (point estimates). Exits 1 when one is missed.

    python bench/minilm.py [--limit N] [--max-tokens L] [--repeats R] [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

# Run as a script, this file's folder comes first on sys.path and bench/evaluators.py would
# hide the `evaluators` package: look it up where it is installed instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

TARGETS = {"ratio": 3.5, "speedup_batch_1": 1.8, "cosine_mean": 0.99, "cosine_p1": 0.98}
CONFIDENCE, RESAMPLES, K = 0.95, 2000, 5
BATCHES = (1, 32)
PARITY_SAMPLES = 200


def quantize(source: Path, directory: Path, *, per_channel: bool, dynamic: bool = False) -> Any:
    """int8 weights, dynamic activations, prepared as the quantize stage prepares its input (a
    model with a `dynamic` sequence axis: its symbolic dimensions merged, as with padding)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compressgate.recipes.models import ONNX_FILE, OnnxModel

    directory.mkdir(parents=True, exist_ok=True)
    prepared = directory / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_optimization=True, auto_merge=dynamic)
    quantize_dynamic(
        prepared, directory / ONNX_FILE, weight_type=QuantType.QInt8, per_channel=per_channel
    )
    prepared.unlink()
    return OnnxModel(directory)


def embed(model: Any, x: np.ndarray, batch_size: int) -> np.ndarray:
    """Embeddings through onnxruntime in batches of `batch_size` (a few threads: only the
    values matter here, and they do not depend on the thread count)."""
    from compressgate.recipes import onnxio

    session: Any = onnxio.session(model, threads=min(4, os.cpu_count() or 1))
    name = session.get_inputs()[0].name
    return np.concatenate(
        [session.run(None, {name: x[i : i + batch_size]})[0] for i in range(0, len(x), batch_size)]
    )


def op_counts(path: Path) -> Counter[str]:
    """Node counts by op type; weight tables (Gather from a float initializer) as "table"."""
    import onnx

    graph = onnx.load(str(path)).graph
    floats = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.FLOAT}
    counts = Counter(node.op_type for node in graph.node)
    counts["table"] = sum(n.op_type == "Gather" and n.input[0] in floats for n in graph.node)
    return counts


def padding_comparison(
    fixed: dict[str, Any],
    longest: dict[str, Any],
    inputs: np.ndarray,
    repeats_at_1: int,
    *,
    least: int = 20,
) -> tuple[dict[str, dict[int, float]], dict[int, float]]:
    """Fixed against per-batch longest padding for each model (float32, int8): timed
    interleaved, fixed on the first rows at the stored length, longest on the consecutive trimmed
    batches, cycled; then int8 against float32, both at longest padding. Prints a line each;
    returns each p50 at longest padding (ms), by model and batch size, and int8's speedup."""
    import torch

    from compressgate.evaluators import latency
    from compressgate.recipes.data import longest as real_length
    from compressgate.recipes.examples import minilm

    padding = minilm.PADDING
    stored = inputs.shape[padding.axis]
    p50: dict[str, dict[int, float]] = {name: {} for name in fixed}
    speedups: dict[int, float] = {}
    with latency.pinned(1):
        for batch_size in BATCHES:
            repeats = max(least, repeats_at_1 // batch_size)
            warmup = max(5, repeats // 10)
            batches = latency.trimmed_batches(inputs, batch_size, padding)
            order = [i % len(batches) for i in range(warmup + repeats)]
            timed = [batches[j].shape[padding.axis] for j in order[warmup:]]
            first = latency.batch_of(inputs, batch_size)
            at_first = real_length(torch.from_numpy(first), padding)
            for name in fixed:
                short = latency.cycled(longest[name], batches, order)
                full = fixed[name].bind(first)
                short_ns, full_ns = latency.time_calls(short, full, warmup=warmup, repeats=repeats)
                assert full_ns is not None
                faster = latency.speedup(full_ns, short_ns, CONFIDENCE, seed=batch_size)
                p50[name][batch_size] = float(np.median(short_ns)) / 1e6
                print(
                    f"  {name:>7} batch {batch_size:>2}, {repeats} interleaved calls: fixed "
                    f"({stored} tokens; the first rows' longest is {at_first}) p50 "
                    f"{np.median(full_ns) / 1e6:.2f} ms, longest (mean {np.mean(timed):.1f}, max "
                    f"{max(timed)} tokens over {len(batches)} batches) p50 "
                    f"{p50[name][batch_size]:.2f} ms: fixed / longest {faster.estimate:.2f}× "
                    f"[{faster.ci_low:.2f}, {faster.ci_high:.2f}]"
                )
            int8_ns, float_ns = latency.time_calls(
                latency.cycled(longest["int8"], batches, order),
                latency.cycled(longest["float32"], batches, order),
                warmup=warmup,
                repeats=repeats,
            )
            assert float_ns is not None
            faster = latency.speedup(float_ns, int8_ns, CONFIDENCE, seed=batch_size)
            speedups[batch_size] = faster.estimate
            print(
                f"     int8 / float32 batch {batch_size:>2}, both at longest padding, interleaved: "
                f"p50 {np.median(int8_ns) / 1e6:.2f} ms against {np.median(float_ns) / 1e6:.2f} "
                f"ms, {faster.estimate:.2f}× faster [{faster.ci_low:.2f}, {faster.ci_high:.2f}]"
            )
    return p50, speedups


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument(
        "--repeats", type=int, default=400, help="timed calls at batch 1 (at 32: 1/32 of it)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="200 sentences, 100 calls at batch 1, per-channel int8 only (CI)",
    )
    options = parser.parse_args()
    if options.quick:
        options.limit, options.repeats = min(options.limit, 200), min(options.repeats, 100)

    begin = time.perf_counter()
    import torch

    from compressgate.evaluators import latency
    from compressgate.evaluators.embedding import cosine_summary, cosines, topk_agreement
    from compressgate.evaluators.stats import Bootstrap
    from compressgate.recipes import onnxio
    from compressgate.recipes.examples import minilm
    from compressgate.recipes.models import OnnxModel

    model = minilm.build_minilm()
    print(f"imports and model load (once per process): {time.perf_counter() - begin:.1f} s")
    text = minilm.corpus(options.limit)
    x = minilm.tokenize(text.sentences, options.max_tokens)
    real = x[:, 1].sum(dim=1).float()
    print(f"corpus: {len(text)} sentences, sha256 {text.sha256[:16]}…: {text.source}")
    print(
        f"tokens: {options.max_tokens} per sentence, {real.mean():.1f} real on average, "
        f"{int((real == options.max_tokens).sum())} sentences truncated"
    )
    with torch.inference_mode():
        reference = model(x[:PARITY_SAMPLES]).numpy()

    inputs = x.numpy()

    def parity(embeddings: np.ndarray) -> float:
        return float(np.abs(embeddings[:PARITY_SAMPLES] - reference).max())

    boot = Bootstrap(len(x), RESAMPLES, seed=0)
    misses: list[str] = []
    with tempfile.TemporaryDirectory(prefix="compressgate-minilm-") as scratch:
        start = time.perf_counter()
        fp32, _ = onnxio.export(model, x, Path(scratch) / "fp32", opset=18)
        exported = time.perf_counter() - start
        baseline = {size: embed(fp32, inputs, size) for size in (1, len(inputs))}
        print(
            f"float32 ONNX (opset 18, exported in {exported:.1f} s): max |onnxruntime - torch| "
            f"on {PARITY_SAMPLES} sentences {parity(baseline[1]):.2e} at batch 1, "
            f"{parity(baseline[len(inputs)]):.2e} in one batch"
        )
        fp32_bytes = fp32.path.stat().st_size
        float_ops = op_counts(fp32.path)
        base_runner = latency.OnnxRunner(fp32, threads=1)
        variants = (("per-channel", True), ("per-tensor", False))
        for label, per_channel in variants[:1] if options.quick else variants:
            int8 = quantize(fp32.path, Path(scratch) / label, per_channel=per_channel)
            ops = op_counts(int8.path)
            size = int8.path.stat().st_size
            ratio = fp32_bytes / size
            print(f"\nint8 {label}: quantize_dynamic, int8 weights, activations uint8 at run time")
            print(
                f"  quantized: {ops['MatMulInteger']} of {float_ops['MatMul']} MatMul (the other "
                f"{ops['MatMul']} multiply two activations in attention), "
                f"{float_ops['table'] - ops['table']} of {float_ops['table']} embedding tables "
                "(Gather)"
            )
            print(f"  size: {fp32_bytes / 1e6:.1f} MB → {size / 1e6:.1f} MB, {ratio:.2f}× smaller")
            cand_runner = latency.OnnxRunner(int8, threads=1)
            speedups = {}
            with latency.pinned(1):
                for batch_size in BATCHES:
                    batch = latency.batch_of(inputs, batch_size)
                    repeats = max(20, options.repeats // batch_size)
                    cand_ns, base_ns = latency.time_calls(
                        cand_runner.bind(batch),
                        base_runner.bind(batch),
                        warmup=max(5, repeats // 10),
                        repeats=repeats,
                    )
                    assert base_ns is not None
                    faster = latency.speedup(base_ns, cand_ns, CONFIDENCE, seed=batch_size)
                    speedups[batch_size] = faster.estimate
                    print(
                        f"  latency batch {batch_size:>2}, 1 thread, {repeats} interleaved calls: "
                        f"median float32 {np.median(base_ns) / 1e6:.2f} ms, int8 "
                        f"{np.median(cand_ns) / 1e6:.2f} ms, {faster.estimate:.2f}× faster "
                        f"[{faster.ci_low:.2f}, {faster.ci_high:.2f}]"
                    )
            for size, where in ((1, "one sentence per call"), (len(inputs), "all in one call")):
                got = embed(int8, inputs, size)
                summary = cosine_summary(cosines(got, baseline[size]), CONFIDENCE, boot)
                agreement = topk_agreement(got, baseline[size], K, CONFIDENCE, boot)
                print(f"  fidelity to float32, batch {size} ({where}):")
                print(
                    "    cosine "
                    + ", ".join(
                        f"{name} {e.estimate:.5f} [{e.ci_low:.5f}, {e.ci_high:.5f}]"
                        for name, e in (
                            ("mean", summary.mean),
                            ("p1", summary.p1),
                            ("min", summary.minimum),
                        )
                    )
                )
                print(
                    f"    top-{K} overlap {agreement.overlap.estimate:.4f} "
                    f"[{agreement.overlap.ci_low:.4f}, {agreement.overlap.ci_high:.4f}], "
                    f"same nearest neighbour {agreement.top1.estimate:.4f} "
                    f"[{agreement.top1.ci_low:.4f}, {agreement.top1.ci_high:.4f}]"
                )
                if per_channel and size == 1:
                    measured = {
                        "ratio": ratio,
                        "speedup_batch_1": speedups[1],
                        "cosine_mean": summary.mean.estimate,
                        "cosine_p1": summary.p1.estimate,
                    }
                    misses = [
                        f"{name} {measured[name]:.4g} < {target:g}"
                        for name, target in TARGETS.items()
                        if measured[name] < target
                    ]

        print(
            f"\nfixed against per-batch longest padding ({options.max_tokens} tokens stored), "
            "1 thread; longest: exported with a dynamic sequence axis, per-channel int8"
        )
        dynamic = Path(scratch) / "fp32-dynamic"
        fp32_dynamic, _ = onnxio.export(model, x, dynamic, opset=18, padding=minilm.PADDING)
        int8_dynamic = quantize(
            fp32_dynamic.path, Path(scratch) / "int8-dynamic", per_channel=True, dynamic=True
        )
        int8_fixed = OnnxModel(Path(scratch) / "per-channel")
        trimmed = onnxio.run(fp32_dynamic, x, 32, padding=minilm.PADDING).numpy()
        print(
            "  float32, batches of 32 trimmed: max |onnxruntime - torch at "
            f"{options.max_tokens} tokens| on {PARITY_SAMPLES} sentences {parity(trimmed):.2e}"
        )
        got = onnxio.run(int8_dynamic, x, 32, padding=minilm.PADDING).numpy()
        summary = cosine_summary(cosines(got, trimmed), CONFIDENCE, boot)
        print(
            f"  int8, batches of 32 trimmed, against float32 likewise: cosine mean "
            f"{summary.mean.estimate:.5f}, p1 {summary.p1.estimate:.5f}, min "
            f"{summary.minimum.estimate:.5f}"
        )
        padding_comparison(
            {"float32": base_runner, "int8": latency.OnnxRunner(int8_fixed, threads=1)},
            {
                "float32": latency.OnnxRunner(fp32_dynamic, threads=1),
                "int8": latency.OnnxRunner(int8_dynamic, threads=1),
            },
            inputs,
            options.repeats,
            least=10 if options.quick else 20,
        )
    verdict = "ok" if not misses else "MISSED: " + "; ".join(misses)
    print(
        f"\nper-channel targets (≥ {TARGETS['ratio']:g}× smaller, ≥ "
        f"{TARGETS['speedup_batch_1']:g}× faster at batch 1, cosine mean ≥ "
        f"{TARGETS['cosine_mean']:g} and p1 ≥ {TARGETS['cosine_p1']:g} at batch 1): {verdict}"
    )
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
