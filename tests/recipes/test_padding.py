"""Padded data: `trim` and the `Padding` declaration, the MiniLM loader's `padding` argument, an
export with a dynamic sequence axis, evaluation outputs on trimmed batches, and the latency
evaluator cycling the test split's trimmed batches.

Lengths are checked against an independent count: masks here are prefixes of ones, so a batch's
longest sample is the largest row sum of its mask. The exports are of a tiny masked-mean model
(a few seconds each); MiniLM's is slow and marked so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from compressgate.evaluators import runners
from compressgate.evaluators.base import EvalContext, Subject
from compressgate.evaluators.latency import Latency, trimmed_batches
from compressgate.recipes import onnxio
from compressgate.recipes.data import Padding, Split, Splits, longest, trim
from compressgate.recipes.evaluation import LatencySpec
from compressgate.recipes.examples import minilm
from compressgate.recipes.models import TorchModel
from compressgate.registry.kernel.errors import StageError

TEXT = Padding(axis=2, mask_channel=1)
STORED = 12
VOCABULARY = 30


def packed(lengths: list[int], stored: int = STORED, seed: int = 0) -> torch.Tensor:
    """(N, 2, stored) int64: random ids where the mask (channel 1) is a prefix of `lengths[i]`
    ones, zeros after it."""
    generator = torch.Generator().manual_seed(seed)
    n = len(lengths)
    mask = (torch.arange(stored)[None, :] < torch.tensor(lengths)[:, None]).long()
    ids = torch.randint(1, VOCABULARY, (n, stored), generator=generator) * mask
    return torch.stack([ids, mask], dim=1)


class MaskedMean(nn.Module):
    """Token and position embeddings, a linear layer, and a mean over the masked positions:
    what padding must not change, as in a sentence embedder."""

    def __init__(self) -> None:
        super().__init__()
        generator = torch.Generator().manual_seed(1)
        self.tokens = nn.Parameter(torch.randn(VOCABULARY, 8, generator=generator))
        self.positions = nn.Parameter(torch.randn(STORED, 8, generator=generator))
        self.linear = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids, mask = x[:, 0], x[:, 1]
        hidden = torch.tanh(self.linear(self.tokens[ids] + self.positions[: ids.shape[1]]))
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


class LengthRecorder(MaskedMean):
    """`MaskedMean` that logs the length of every batch it is called on."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(int(x.shape[2]))
        return super().forward(x)


# --- trim -------------------------------------------------------------------------------------


def test_trim_cuts_a_batch_to_its_longest_real_sample() -> None:
    x = packed([2, 5, 3])
    got = trim(x, TEXT)
    assert got.shape == (3, 2, 5)
    assert torch.equal(got, x[:, :, :5])
    assert torch.equal(x[:, :, 5:], torch.zeros(3, 2, STORED - 5, dtype=torch.int64))


def test_trim_finds_the_last_non_zero_mask_position_of_any_row() -> None:
    x = torch.zeros(2, 2, 8, dtype=torch.int64)
    x[0, 1, :2] = 1
    x[1, 1, 6] = 1  # a hole before it: the last non-zero position counts, not the row sum
    x[0, 0, 7] = 5  # ids beyond every mask are not real tokens
    assert longest(x, TEXT) == 7
    assert trim(x, TEXT).shape == (2, 2, 7)


def test_trim_keeps_one_position_of_a_batch_of_nothing_but_padding() -> None:
    x = packed([0, 0])
    assert longest(x, TEXT) == 1
    assert trim(x, TEXT).shape == (2, 2, 1)


def test_trim_of_a_full_batch_is_the_batch() -> None:
    x = packed([STORED, 1])
    assert torch.equal(trim(x, TEXT), x)


def test_trim_reads_the_mask_channel_along_another_axis() -> None:
    # (N, channels, L, features): the mask in channel 0, padded along axis 2.
    x = torch.zeros(2, 3, 6, 4)
    x[0, 0, :3] = 1.0
    x[1, 0, :4] = 0.5
    x[:, 1:] = 7.0  # data channels are never read as a mask
    assert trim(x, Padding(axis=2, mask_channel=0)).shape == (2, 3, 4, 4)


def test_padding_refuses_axes_that_leave_no_room_for_the_mask() -> None:
    with pytest.raises(ValueError, match="axis >= 2"):
        Padding(axis=1, mask_channel=0)
    with pytest.raises(ValueError, match="mask_channel >= 0"):
        Padding(axis=2, mask_channel=-1)
    with pytest.raises(ValueError, match="no channel 3"):
        longest(packed([2]), Padding(axis=2, mask_channel=3))


def test_splits_with_padding_refuse_a_padding_key_in_provenance() -> None:
    split = Split(packed([1, 2]), torch.zeros(2, dtype=torch.int64))
    Splits(split, split, split, ("embedding",), provenance={"padding": "mine"})  # undeclared: ok
    with pytest.raises(ValueError, match="'padding'"):
        Splits(split, split, split, ("embedding",), provenance={"padding": "x"}, padding=TEXT)


# --- the MiniLM loader ---------------------------------------------------------------------------


def test_minilm_fixed_padding_declares_nothing_and_longest_declares_its_mask() -> None:
    default = minilm.load(0, limit=40, max_tokens=24, calibration=5, train=5)
    fixed = minilm.load(0, limit=40, max_tokens=24, calibration=5, train=5, padding="fixed")
    longest_ = minilm.load(0, limit=40, max_tokens=24, calibration=5, train=5, padding="longest")
    # "fixed" is the loader as it was: same tensors, no declaration, the same provenance keys
    # (which the run record's data digest, and so every cache key, is made of).
    assert default.padding is None and fixed.padding is None
    assert set(fixed.provenance) == {"corpus_sha256", "corpus"}
    assert fixed.provenance == default.provenance == longest_.provenance
    assert longest_.padding == Padding(axis=2, mask_channel=1)
    for name in ("train", "calibration", "test"):
        assert torch.equal(getattr(longest_, name).x, getattr(fixed, name).x)  # stored padded
    # The declared mask is the attention mask: trimming keeps every real token of every row.
    x = longest_.test.x
    assert longest(x, longest_.padding) == int(x[:, 1].sum(dim=1).max())


def test_minilm_loader_refuses_an_unknown_padding() -> None:
    refusal = "padding must be one of 'fixed', 'longest', got 'dynamic'"
    with pytest.raises(ValueError, match=refusal):
        minilm.load(0, limit=5, padding="dynamic")


# --- export and evaluation outputs on trimmed batches -----------------------------------------


@pytest.fixture(scope="module")
def model() -> MaskedMean:
    return MaskedMean().eval()


@pytest.fixture(scope="module")
def varied() -> torch.Tensor:
    """40 samples of 1 to 11 real positions of 12 (the longest batch of 8 is shorter)."""
    lengths = [1 + (7 * i) % 11 for i in range(40)]
    return packed(lengths, seed=3)


def test_an_export_with_padding_takes_every_length_and_gives_the_full_inputs_outputs(
    model: MaskedMean, varied: torch.Tensor, tmp_path: Path
) -> None:
    exported, _ = onnxio.export(model, varied, tmp_path / "dynamic", opset=18, padding=TEXT)
    session = onnxio.session(exported)
    shape = session.get_inputs()[0].shape  # type: ignore[attr-defined]
    assert isinstance(shape[0], str) and isinstance(shape[2], str)  # batch and sequence
    assert shape[1] == 2
    with torch.inference_mode():
        full = model(varied).numpy()
    for length in range(1, STORED + 1):  # every length the trimmed batches can take
        rows = varied[varied[:, 1].sum(dim=1) <= length]
        got = session.run(None, {"x": rows[:, :, :length].numpy()})[0]  # type: ignore[attr-defined]
        reference = full[(varied[:, 1].sum(dim=1) <= length).numpy()]
        np.testing.assert_allclose(got, reference, rtol=0, atol=1e-6)
    # `run` trims batch by batch: the same outputs as the full inputs.
    trimmed = onnxio.run(exported, varied, 8, padding=TEXT)
    np.testing.assert_allclose(trimmed.numpy(), full, rtol=0, atol=1e-6)
    # Without the declaration the stored length is fixed, and `run` feeds it untrimmed.
    fixed, _ = onnxio.export(model, varied, tmp_path / "fixed", opset=18)
    fixed_shape = onnxio.session(fixed).get_inputs()[0].shape  # type: ignore[attr-defined]
    assert onnxio.fixes_axis(fixed_shape, 2) and fixed_shape[2] == STORED
    np.testing.assert_allclose(
        onnxio.run(fixed, varied, 8, padding=TEXT).numpy(), full, rtol=0, atol=1e-6
    )


def test_evaluation_outputs_of_a_torch_model_are_computed_on_trimmed_batches(
    varied: torch.Tensor,
) -> None:
    recorder = LengthRecorder().eval()
    with torch.inference_mode():
        full = recorder(varied)
        recorder.seen.clear()
        got = runners.logits(TorchModel(recorder, "x:y"), varied, TEXT)
    torch.testing.assert_close(got, full, rtol=0, atol=1e-6)
    # 40 rows in batches of TRIMMED_BATCH_SIZE (64): one batch, at the longest sample's length.
    assert recorder.seen == [int(varied[:, 1].sum(dim=1).max())]
    big = torch.cat([packed([2] * 64), varied])
    recorder.seen.clear()
    with torch.inference_mode():
        runners.logits(TorchModel(recorder, "x:y"), big, TEXT)
    assert recorder.seen == [2, int(varied[:, 1].sum(dim=1).max())]


@pytest.mark.slow
def test_minilm_export_with_padding_gives_the_padded_embeddings_on_trimmed_batches(
    tmp_path: Path,
) -> None:
    splits = minilm.load(0, limit=64, max_tokens=48, calibration=0, train=2, padding="longest")
    assert splits.padding is not None
    model = minilm.build_minilm()
    x = splits.test.x
    exported, _ = onnxio.export(model, x, tmp_path, opset=18, padding=splits.padding)
    with torch.inference_mode():
        full = model(x).numpy()
    lengths = [longest(x[i : i + 8], splits.padding) for i in range(0, 64, 8)]
    assert max(lengths) <= 48 and min(lengths) < 40  # the batches really are shorter
    trimmed = onnxio.run(exported, x, 8, padding=splits.padding).numpy()
    np.testing.assert_allclose(trimmed, full, rtol=0, atol=1e-5)
    one = onnxio.run(exported, x, 1, padding=splits.padding).numpy()  # each sentence alone
    np.testing.assert_allclose(one, full, rtol=0, atol=1e-5)


# --- latency at realistic lengths ----------------------------------------------------------------


def test_latency_with_padding_cycles_the_test_splits_trimmed_batches() -> None:
    lengths = [1 + (5 * i) % 12 for i in range(30)]  # 1 to 12 real positions of 12
    x = packed(lengths, seed=5)
    split = Split(x, torch.zeros(30, dtype=torch.int64))
    splits = Splits(split, split, split, ("embedding",), padding=TEXT)
    spec = LatencySpec(
        runner="torch", batch_sizes=(1, 4), warmup=4, repeats=40, batch_repeats={4: 20}, sessions=2
    )
    candidate_module, baseline_module = LengthRecorder(), LengthRecorder()
    candidate = Subject("int8", TorchModel(candidate_module, "x:y"), size_bytes=10)
    baseline = Subject("baseline", TorchModel(baseline_module, "x:y"), size_bytes=10)
    ctx = EvalContext(seed=0, stage="int8", splits=splits)

    result = Latency().evaluate(candidate, baseline, splits, spec, ctx)

    # Both models ran the same inputs, pair by pair.
    assert candidate_module.seen == baseline_module.seen

    # The expected calls, from the lengths alone: sessions in turn across the batch sizes, each
    # with 2 warm-up calls and its timed calls, every batch size going through its consecutive
    # batches from where its previous session stopped.
    def batch_length(size: int, k: int) -> int:
        return max(lengths[k * size : (k + 1) * size])

    batches = {1: 30, 4: 7}  # the 2 rows after 7 batches of 4 are left out
    expected: list[int] = []
    timed: dict[int, list[int]] = {1: [], 4: []}
    calls = dict.fromkeys(batches, 0)
    for _ in range(2):
        for size, repeats in ((1, 20), (4, 10)):
            run = [
                batch_length(size, (calls[size] + i) % batches[size]) for i in range(2 + repeats)
            ]
            calls[size] += 2 + repeats
            expected += run
            timed[size] += run[2:]
    assert candidate_module.seen == expected
    by_size = {b.batch_size: b for b in result.batches}
    for size, want in timed.items():
        got = by_size[size].sequence_lengths
        assert got is not None
        assert (got.axis, got.stored, got.batches) == (2, STORED, batches[size])
        assert got.mean == pytest.approx(np.mean(want))
        assert (got.min, got.max) == (min(want), max(want))
    assert by_size[4].sequence_lengths is not None and by_size[4].sequence_lengths.max == STORED
    # Trimmed batches at batch 1 average the mean sentence, well under the stored length.
    assert by_size[1].sequence_lengths is not None
    assert by_size[1].sequence_lengths.mean < STORED / 2 + 1


def test_latency_without_padding_runs_the_first_rows_at_the_stored_length() -> None:
    x = packed([1 + i % 5 for i in range(10)])
    split = Split(x, torch.zeros(10, dtype=torch.int64))
    splits = Splits(split, split, split, ("embedding",))
    spec = LatencySpec(runner="torch", batch_sizes=(2,), warmup=2, repeats=20, sessions=2)
    module = LengthRecorder()
    subject = Subject("int8", TorchModel(module, "x:y"), size_bytes=10)
    result = Latency().evaluate(
        subject, None, splits, spec, EvalContext(seed=0, stage="int8", splits=splits)
    )
    assert set(module.seen) == {STORED}
    assert result.batches[0].sequence_lengths is None


def test_latency_with_padding_refuses_an_onnx_model_of_fixed_length(
    model: MaskedMean, varied: torch.Tensor, tmp_path: Path
) -> None:
    fixed, _ = onnxio.export(model, varied, tmp_path, opset=18)
    split = Split(varied, torch.zeros(len(varied), dtype=torch.int64))
    splits = Splits(split, split, split, ("embedding",), padding=TEXT)
    subject = Subject("export", fixed, size_bytes=1, onnx=fixed, onnx_size_bytes=1)
    spec = LatencySpec(batch_sizes=(1,), warmup=0, repeats=20, sessions=2)
    with pytest.raises(StageError, match="takes only length 12 on that axis") as raised:
        Latency().evaluate(
            subject, None, splits, spec, EvalContext(seed=0, stage="export", splits=splits)
        )
    assert "dynamic sequence axis" in (raised.value.hint or "")


def test_trimmed_batches_of_a_split_smaller_than_the_batch_repeat_its_rows() -> None:
    x = packed([3, 1, 2]).numpy()
    (batch,) = trimmed_batches(x, 5, TEXT)
    assert batch.shape == (5, 2, 3)
    np.testing.assert_array_equal(batch, x[[0, 1, 2, 0, 1], :, :3])
    assert batch.flags.c_contiguous
