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

Targets (per-channel): ≥ 3.5× smaller, ≥ 1.8× faster at batch 1 on one thread, mean cosine
≥ 0.99 and 1st percentile ≥ 0.98 (point estimates). Exits 1 when one is missed.

    python bench/minilm.py [--limit N] [--max-tokens L] [--repeats R]
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


def quantize(source: Path, directory: Path, *, per_channel: bool) -> Any:
    """int8 weights, dynamic activations, prepared as the quantize stage prepares its input."""
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compressgate.recipes.models import ONNX_FILE, OnnxModel

    directory.mkdir(parents=True, exist_ok=True)
    prepared = directory / "prepared.onnx"
    quant_pre_process(str(source), str(prepared), skip_optimization=True)
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument(
        "--repeats", type=int, default=400, help="timed calls at batch 1 (at 32: 1/32 of it)"
    )
    options = parser.parse_args()

    begin = time.perf_counter()
    import torch

    from compressgate.evaluators import latency
    from compressgate.evaluators.embedding import cosine_summary, cosines, topk_agreement
    from compressgate.evaluators.stats import Bootstrap
    from compressgate.recipes import onnxio
    from compressgate.recipes.examples import minilm

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
        for label, per_channel in (("per-channel", True), ("per-tensor", False)):
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
    verdict = "ok" if not misses else "MISSED: " + "; ".join(misses)
    print(
        f"\nper-channel targets (≥ {TARGETS['ratio']:g}× smaller, ≥ "
        f"{TARGETS['speedup_batch_1']:g}× faster at batch 1, cosine mean ≥ "
        f"{TARGETS['cosine_mean']:g} and p1 ≥ {TARGETS['cosine_p1']:g} at batch 1): {verdict}"
    )
    return 0 if not misses else 1


if __name__ == "__main__":
    sys.exit(main())
