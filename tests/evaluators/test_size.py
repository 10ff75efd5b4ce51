"""Size: bytes and their ratio, parameter and MAC counts, and the peak memory of a session.

- `peak_session_memory` on a tiny exported CNN: positive, and the same within a small tolerance
  when measured twice (each measurement is a fresh subprocess, so there are few of them).
- The `Size` evaluator: bytes and ratio exact (the ratio divides by the reference's float32
  ONNX export, or its artifact when it has none), parameters / non-zero parameters / MACs equal
  `compressgate.recipes.models`' counts of `counts_from` (and say when they are an ancestor's),
  memory only
  for subjects with an ONNX form (a note otherwise), none at all with `memory: false`, each
  subject measured once and kept, and the metric names its spec declares.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from compressgate.evaluators.base import EvalContext, Subject
from compressgate.evaluators.results import SizeResult
from compressgate.evaluators.size import Size, memory_of, peak_session_memory
from compressgate.recipes import models, onnxio
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.evaluation import SizeSpec
from compressgate.recipes.examples import digits
from compressgate.recipes.models import OnnxModel, TorchModel

FACTORY = "compressgate.recipes.examples.digits:build_cnn"
ARGS = {"channels": (4, 8), "hidden": 16}
MEMORY_KEY = "peak-memory:32"  # the evaluator measures one batch of 32


class Exported:
    def __init__(self, splits: Splits, module: nn.Module, onnx: OnnxModel) -> None:
        self.splits, self.module, self.onnx = splits, module, onnx
        self.onnx_bytes = onnx.path.stat().st_size


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """A tiny untrained CNN, its float32 ONNX export, and 20 synthetic test images."""
    generator = torch.Generator().manual_seed(0)
    split = Split(
        torch.rand((20, 1, 8, 8), generator=generator),
        torch.randint(0, 10, (20,), generator=generator),
    )
    splits = Splits(split, split, split, tuple(str(k) for k in range(10)))
    torch.manual_seed(0)
    module = digits.build_cnn(**ARGS).eval()
    onnx, _ = onnxio.export(module, split.x, tmp_path_factory.mktemp("onnx"), opset=18)
    return Exported(splits, module, onnx)


def baseline_of(exported: Exported, size_bytes: int = 9_000) -> Subject:
    """The torch baseline, with its float32 export as its ONNX form (as the executor builds it)."""
    variant = TorchModel(exported.module, FACTORY, dict(ARGS))
    return Subject(
        stage="baseline",
        variant=variant,
        size_bytes=size_bytes,
        onnx=exported.onnx,
        onnx_size_bytes=exported.onnx_bytes,
        counts_from=variant,
    )


def onnx_candidate(exported: Exported, size_bytes: int, counts_from: TorchModel | None) -> Subject:
    return Subject(
        stage="quantize",
        variant=exported.onnx,
        size_bytes=size_bytes,
        onnx=exported.onnx,
        onnx_size_bytes=size_bytes,
        counts_from=counts_from,
    )


def evaluate(
    candidate: Subject, baseline: Subject | None, exported: Exported, spec: SizeSpec
) -> SizeResult:
    ctx = EvalContext(seed=0, stage=candidate.stage, splits=exported.splits)
    return Size().evaluate(candidate, baseline, exported.splits, spec, ctx)


# --------------------------------------------------------------------------- peak memory


def test_peak_session_memory_is_positive_and_repeatable(exported: Exported) -> None:
    batch = np.ascontiguousarray(exported.splits.test.x.numpy())
    first = peak_session_memory(exported.onnx, batch)
    second = peak_session_memory(exported.onnx, batch)
    assert first > 0
    assert first % 1024 == 0  # read in KiB from /proc
    # The same session on the same batch in a fresh process: the same cost within 20%.
    assert second == pytest.approx(first, rel=0.2)


def test_the_evaluator_measures_the_candidate_and_the_baseline_once_each(
    exported: Exported,
) -> None:
    candidate = onnx_candidate(exported, 4_000, counts_from=None)
    baseline = baseline_of(exported)
    result = evaluate(candidate, baseline, exported, SizeSpec())
    assert result.peak_memory_bytes is not None
    assert result.peak_memory_bytes.estimate > 0
    assert result.peak_memory_bytes.estimate == candidate.measurements[MEMORY_KEY]
    assert result.peak_memory_bytes.ci_low == result.peak_memory_bytes.ci_high
    assert result.peak_memory_bytes.unit == "bytes"
    assert MEMORY_KEY in baseline.measurements
    assert result.peak_memory_ratio is not None
    assert result.peak_memory_ratio.estimate == pytest.approx(
        candidate.measurements[MEMORY_KEY] / baseline.measurements[MEMORY_KEY], rel=1e-12
    )
    # The same ONNX file under both: the same cost within 20%.
    assert result.peak_memory_ratio.estimate == pytest.approx(1.0, rel=0.2)
    assert result.memory_note == "batch of 32, one intra-op thread"


def test_memory_of_keeps_a_measurement_and_does_not_measure_again(exported: Exported) -> None:
    subject = onnx_candidate(exported, 4_000, counts_from=None)
    subject.measurements[MEMORY_KEY] = 12_345.0
    batch = np.zeros((32, 1, 8, 8), dtype=np.float32)
    assert memory_of(subject, batch) == 12_345


# --------------------------------------------------------------------------- bytes and counts


def test_bytes_are_exact_and_the_ratio_divides_by_the_baselines_onnx_export(
    exported: Exported,
) -> None:
    candidate = onnx_candidate(exported, 3_210, counts_from=None)
    baseline = baseline_of(exported)
    result = evaluate(candidate, baseline, exported, SizeSpec(memory=False))
    assert result.bytes.estimate == 3_210
    assert (result.bytes.ci_low, result.bytes.ci_high) == (3_210, 3_210)
    assert result.bytes.method == "exact"
    assert result.bytes.unit == "bytes"
    assert result.ratio is not None
    assert result.ratio.estimate == 3_210 / exported.onnx_bytes  # not the 9,000 torch bytes
    assert result.ratio.ci_low == result.ratio.ci_high == result.ratio.estimate
    assert result.reference == f"the baseline's float32 ONNX export ({exported.onnx_bytes} bytes)"


def test_without_an_onnx_export_the_ratio_divides_by_the_baselines_artifact(
    exported: Exported,
) -> None:
    candidate = onnx_candidate(exported, 3_000, counts_from=None)
    baseline = Subject("baseline", TorchModel(exported.module, FACTORY), size_bytes=12_000)
    result = evaluate(candidate, baseline, exported, SizeSpec(memory=False))
    assert result.ratio is not None
    assert result.ratio.estimate == 0.25
    assert result.reference == "the baseline's artifact (12000 bytes)"


def test_the_baseline_itself_is_measured_against_its_own_onnx_export(exported: Exported) -> None:
    baseline = baseline_of(exported, size_bytes=9_000)
    result = evaluate(baseline, None, exported, SizeSpec(memory=False))
    assert result.ratio is not None
    assert result.ratio.estimate == 9_000 / exported.onnx_bytes


def test_counts_of_the_variant_itself_equal_the_model_counters(exported: Exported) -> None:
    torch.manual_seed(1)
    module = digits.build_cnn(**ARGS).eval()
    with torch.no_grad():
        module[0].weight[:2] = 0.0  # 2 of 4 first-layer filters pruned to zero
    variant = TorchModel(module, FACTORY, dict(ARGS))
    candidate = Subject("prune", variant, size_bytes=5_000, counts_from=variant)
    result = evaluate(candidate, baseline_of(exported), exported, SizeSpec(memory=False))

    params = models.parameter_count(module)
    assert result.params is not None
    assert result.nonzero_params is not None
    assert result.macs is not None
    assert result.params.estimate == params
    assert result.nonzero_params.estimate == models.nonzero_parameter_count(module)
    assert result.nonzero_params.estimate == params - 2 * 9  # two 1x3x3 filters
    assert result.macs.estimate == models.macs(module, exported.splits.test.x)
    assert result.counts_from == "the variant"
    for count in (result.params, result.nonzero_params, result.macs):
        assert count.method == "exact"
        assert count.ci_low == count.ci_high == count.estimate


def test_counts_of_an_onnx_variant_come_from_its_float_ancestor_and_say_so(
    exported: Exported,
) -> None:
    ancestor = TorchModel(exported.module, FACTORY, dict(ARGS))
    candidate = onnx_candidate(exported, 4_000, counts_from=ancestor)
    result = evaluate(candidate, baseline_of(exported), exported, SizeSpec(memory=False))
    assert result.params is not None
    assert result.params.estimate == models.parameter_count(exported.module)
    assert result.macs is not None
    assert result.macs.estimate == models.macs(exported.module, exported.splits.test.x)
    assert result.counts_from is not None
    assert "ancestor" in result.counts_from


def test_without_counts_from_there_are_no_counts(exported: Exported) -> None:
    candidate = onnx_candidate(exported, 4_000, counts_from=None)
    result = evaluate(candidate, baseline_of(exported), exported, SizeSpec(memory=False))
    assert (result.params, result.nonzero_params, result.macs, result.counts_from) == (
        None,
        None,
        None,
        None,
    )


# --------------------------------------------------------------------------- memory and names


def test_a_torch_subject_without_an_onnx_form_gets_a_note_instead_of_memory(
    exported: Exported,
) -> None:
    variant = TorchModel(exported.module, FACTORY, dict(ARGS))
    candidate = Subject("prune", variant, size_bytes=5_000, counts_from=variant)
    result = evaluate(candidate, baseline_of(exported), exported, SizeSpec())
    assert result.peak_memory_bytes is None
    assert result.peak_memory_ratio is None
    assert result.memory_note == "measured for ONNX variants only (this one is torch)"
    assert candidate.measurements == {}


def test_a_torch_baseline_is_measured_through_its_float32_export(exported: Exported) -> None:
    baseline = baseline_of(exported)
    baseline.measurements[MEMORY_KEY] = 2_000_000.0  # kept from an earlier measurement
    result = evaluate(baseline, None, exported, SizeSpec())
    assert result.peak_memory_bytes is not None
    assert result.peak_memory_bytes.estimate == 2_000_000
    assert result.peak_memory_ratio is None  # it is its own reference
    assert result.memory_note == "batch of 32, one intra-op thread, of its float32 ONNX export"


def test_memory_false_skips_the_measurement_and_the_note(exported: Exported) -> None:
    candidate = onnx_candidate(exported, 4_000, counts_from=None)
    result = evaluate(candidate, baseline_of(exported), exported, SizeSpec(memory=False))
    assert result.peak_memory_bytes is None
    assert result.peak_memory_ratio is None
    assert result.memory_note is None
    assert candidate.measurements == {}


@pytest.mark.parametrize("memory", [True, False])
def test_an_onnx_candidate_with_a_baseline_gives_exactly_the_declared_metrics(
    exported: Exported, memory: bool
) -> None:
    ancestor = TorchModel(exported.module, FACTORY, dict(ARGS))
    candidate = onnx_candidate(exported, 4_000, counts_from=ancestor)
    baseline = baseline_of(exported)
    # Kept measurements (no subprocess): the ratio is then exactly theirs.
    candidate.measurements[MEMORY_KEY] = 3_000_000.0
    baseline.measurements[MEMORY_KEY] = 4_000_000.0
    spec = SizeSpec(memory=memory)
    result = evaluate(candidate, baseline, exported, spec)
    assert list(result.metrics()) == list(spec.metric_names())
    if memory:
        assert result.peak_memory_ratio is not None
        assert result.peak_memory_ratio.estimate == 0.75
        assert result.peak_memory_ratio.method == "ratio of two single measurements"
