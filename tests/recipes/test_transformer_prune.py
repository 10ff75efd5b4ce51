"""Transformer compression on MiniLM: a layer-dropped student, embedding distillation, heads and
feed-forward channels removed, the token table trimmed; and the stored variant loads back.

Building MiniLM takes a few seconds, so the module shares one 2-layer student and keeps the
training runs tiny (a few dozen sentences): what is asserted is what each step promises (shapes,
counts, exact removals, round trips, a loss that falls), not the quality the recipe reaches.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from compressgate.recipes import models, training
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.examples import minilm
from compressgate.recipes.manifest import DistillSpec, PruneSpec
from compressgate.recipes.models import RemappedEmbedding, TorchModel
from compressgate.recipes.stages import transformer_prune as tp_
from compressgate.recipes.stages.base import StageContext, stage_for
from compressgate.registry.kernel.errors import ManifestError, StageError

FACTORY = "compressgate.recipes.examples.minilm:build_minilm"


@pytest.fixture(scope="module")
def splits() -> Splits:
    return minilm.load(0, limit=24, max_tokens=32, calibration=0, train=48, padding="longest")


def student(layers: list[int]) -> TorchModel:
    return models.build(FACTORY, {"layers": layers}, what="test student")


def context(splits: Splits, tmp_path: Path, stage: str) -> StageContext:
    workdir = tmp_path / stage
    workdir.mkdir()
    return StageContext(stage=stage, seed=0, splits=splits, workdir=workdir, task="embedding")


@pytest.mark.slow
def test_build_minilm_keeps_the_layers_asked_for_with_their_weights() -> None:
    full = minilm.build_minilm()
    kept = minilm.build_minilm(layers=[0, 5])
    layers = kept.encoder.encoder.layer  # type: ignore[union-attr]
    assert len(layers) == 2
    originals = full.encoder.encoder.layer  # type: ignore[union-attr]
    for mine, theirs in zip(layers, (originals[0], originals[5]), strict=True):
        assert torch.equal(mine.output.dense.weight, theirs.output.dense.weight)
    with pytest.raises(ValueError, match=r"distinct layers among 0\.\.5"):
        minilm.build_minilm(layers=[0, 6])
    with pytest.raises(ValueError, match="distinct layers"):
        minilm.build_minilm(layers=[1, 1])


@pytest.mark.slow
def test_blocks_finds_every_bert_layer_and_nothing_in_a_cnn() -> None:
    found = tp_.blocks(student([0, 2, 5]).module)
    assert [b.name for b in found] == [f"encoder.encoder.layer.{i}" for i in range(3)]
    assert {(b.heads, b.channels, b.head_size) for b in found} == {(12, 1536, 32)}
    cnn = models.build("compressgate.recipes.examples.digits:build_cnn", {}, what="cnn").module
    assert tp_.blocks(cnn) == []


@pytest.mark.slow
def test_removing_heads_and_channels_shrinks_the_tensors_exactly(splits: Splits) -> None:
    model = student([0]).module
    block = tp_.blocks(model)[0]
    before = models.parameter_count(model)
    tp_.remove_heads(block, [1, 4, 7])
    tp_.remove_channels(block, list(range(0, 1536, 3)))
    assert (block.heads, block.channels) == (9, 1024)
    assert block.attention.query.out_features == 9 * 32  # type: ignore[union-attr]
    assert block.projection.in_features == 9 * 32 and block.contract.in_features == 1024
    # 3 heads: q, k, v rows and bias (3 · (384 + 1) · 96) and projection columns (384 · 96);
    # 512 channels: rows and biases in, columns out.
    removed = 3 * 385 * 96 + 384 * 96 + 512 * 385 + 512 * 384
    assert before - models.parameter_count(model) == removed
    out = training.predict(model, splits.test.x, padding=splits.padding)
    assert out.shape == (24, 384) and torch.isfinite(out).all()


def test_lowest_breaks_ties_by_index() -> None:
    assert tp_.lowest(torch.tensor([3.0, 1.0, 1.0, 0.5, 9.0]), 3) == [1, 2, 3]
    assert tp_.lowest(torch.tensor([1.0, 2.0]), 0) == []


@pytest.mark.slow
def test_activation_scores_count_only_real_tokens(splits: Splits) -> None:
    model = student([0]).module
    found = tp_.blocks(model)
    trimmed = tp_.activation_scores(model, found, splits.train.x, splits.padding, 16)
    # The same text padded further gives the same scores: padding never counts.
    wider = torch.nn.functional.pad(splits.train.x, (0, 8))
    padded = tp_.activation_scores(model, found, wider, splits.padding, 16)
    for (h1, c1), (h2, c2) in zip(trimmed, padded, strict=True):
        assert h1.shape == (12,) and c1.shape == (1536,)
        assert (h1 > 0).all()
        torch.testing.assert_close(h1, h2, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(c1, c2, rtol=1e-4, atol=1e-6)


def test_a_trimmed_vocabulary_keeps_its_rows_and_maps_the_rest_to_unknown() -> None:
    table = torch.nn.Embedding(10, 4)
    keep = torch.tensor([0, 3, 7])
    trimmed = RemappedEmbedding.trim(table, torch.tensor([0, 3, 7, 9]), unknown=9)
    del keep
    ids = torch.tensor([[0, 3, 7, 9, 1, 5]])
    got = trimmed(ids)
    assert trimmed.num_embeddings == 4
    torch.testing.assert_close(got[0, :4], table.weight[[0, 3, 7, 9]], rtol=0, atol=0)
    torch.testing.assert_close(got[0, 4:], table.weight[[9, 9]], rtol=0, atol=0)


@pytest.mark.slow
def test_prune_stage_removes_heads_channels_and_rows_and_the_variant_loads_back(
    splits: Splits, tmp_path: Path
) -> None:
    incoming = student([0, 5])
    spec = PruneSpec(
        name="prune",
        method="structured",
        heads=0.5,
        sparsity=0.25,
        importance="activation",
        vocabulary={
            "layer": "encoder.embeddings.word_embeddings",
            "unknown_id": 100,
            "first_rows": 200,
        },
        finetune_epochs=1,
        batch_size=16,
        lr=1e-4,
    )
    ctx = context(splits, tmp_path, "prune")
    out = stage_for("prune").apply(incoming, spec, ctx)
    assert isinstance(out, TorchModel)
    assert out.swaps == {"encoder.embeddings.word_embeddings": "remapped-embedding"}
    d = ctx.details
    assert d["heads_before"] == [12, 12] and d["heads_after"] == [6, 6]
    assert d["channels_before"] == [1536, 1536] and d["channels_after"] == [1152, 1152]
    used = torch.unique(splits.train.x[:, 0])
    kept = set(used.tolist()) | set(range(200)) | {100}
    assert d["vocabulary_rows_after"] == len(kept) and d["vocabulary_train_tokens"] == len(used)
    assert d["vocabulary_rows_before"] == 30522
    tested = set(torch.unique(splits.test.x[:, 0]).tolist())
    assert d["vocabulary_test_tokens"] == len(tested)
    assert d["vocabulary_test_tokens_dropped"] == len(tested - kept)
    assert d["params_after"] < d["params_before"] and 0 < d["train_mean_cosine"] <= 1
    # Stored and loaded back: the architecture is rebuilt, swapped and resized, bit for bit.
    models.save_torch(out, tmp_path / "stored")
    back = models.load_torch(tmp_path / "stored" / models.TORCH_FILE)
    assert back.swaps == out.swaps
    x = splits.test.x
    assert torch.equal(
        training.predict(out.module, x, padding=splits.padding),
        training.predict(back.module, x, padding=splits.padding),
    )


@pytest.mark.slow
def test_a_stored_variant_naming_an_unknown_swap_is_refused(tmp_path: Path) -> None:
    model = student([0])
    model.swaps = {"encoder.embeddings.word_embeddings": "os.system"}
    models.save_torch(model, tmp_path / "bad")
    with pytest.raises(ManifestError, match=r"unknown module swap 'os\.system'"):
        models.load_torch(tmp_path / "bad" / models.TORCH_FILE)


@pytest.mark.slow
def test_heads_on_a_model_without_transformer_layers_is_a_stage_error(
    splits: Splits, tmp_path: Path
) -> None:
    from compressgate.recipes.examples import digits

    cnn = models.build("compressgate.recipes.examples.digits:build_cnn", {}, what="cnn")
    spec = PruneSpec(name="prune", method="structured", heads=0.5, sparsity=0.2)
    digit_splits = digits.load(0)
    with pytest.raises(StageError, match="no BERT-style layer"):
        stage_for("prune").apply(cnn, spec, context(digit_splits, tmp_path, "prune"))


@pytest.mark.slow
def test_embedding_distillation_learns_the_teachers_vectors(splits: Splits, tmp_path: Path) -> None:
    teacher = models.build(FACTORY, {}, what="teacher")
    spec = DistillSpec(
        name="distill",
        objective="embedding",
        student={"factory": FACTORY, "args": {"layers": [0, 5]}},
        epochs=2,
        lr=5e-4,
        batch_size=16,
    )
    targets = training.predict(teacher.module, splits.train.x, padding=splits.padding)
    before = 1 - training.cosine_distance(
        student([0, 5]).module, splits.train.x, targets, splits.padding
    )
    ctx = context(splits, tmp_path, "distill")
    out = stage_for("distill").apply(teacher, spec, ctx)
    assert isinstance(out, TorchModel) and out.args == {"layers": [0, 5]}
    after = ctx.details["train_mean_cosine"]
    assert ctx.details["objective"] == "embedding" and ctx.details["dimension"] == 384
    assert ctx.details["train_samples"] == 48
    assert after > before + 0.02, (before, after)
    split = Split(splits.train.x, targets)
    assert (
        abs(after - (1 - training.cosine_distance(out.module, split.x, split.y, splits.padding)))
        < 1e-5
    )


def test_grouped_batches_cover_every_row_once_in_runs_of_similar_length() -> None:
    lengths = torch.tensor([5, 1, 9, 3, 7, 2, 8, 4, 6, 10] * 4)
    order = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    batches = training._batches(order, 4, lengths, torch.Generator().manual_seed(1))
    rows = torch.cat(batches)
    assert sorted(rows.tolist()) == list(range(40))
    assert all(len(b) == 4 for b in batches)
    # Each batch is a slice of a length-sorted run: its lengths do not decrease.
    assert all(torch.equal(lengths[b], lengths[b].sort().values) for b in batches)
    again = training._batches(order, 4, lengths, torch.Generator().manual_seed(1))
    assert [b.tolist() for b in again] == [b.tolist() for b in batches]


@pytest.mark.slow
def test_embedding_distillation_can_match_hidden_states_of_chosen_layers(
    splits: Splits, tmp_path: Path
) -> None:
    teacher = models.build(FACTORY, {}, what="teacher")
    spec = DistillSpec(
        name="distill",
        objective="embedding",
        student={"factory": FACTORY, "args": {"layers": [0, 5]}},
        hints=[
            {"student_layer": "encoder.encoder.layer.0", "teacher_layer": "encoder.encoder.layer.2"}
        ],
        epochs=1,
        lr=5e-4,
        batch_size=16,
    )
    ctx = context(splits, tmp_path, "distill")
    out = stage_for("distill").apply(teacher, spec, ctx)
    assert isinstance(out, TorchModel) and ctx.details["hints"] == 1
    # The adapter is trained and discarded: the student keeps its own parameters only.
    assert set(out.module.state_dict()) == set(student([0, 5]).module.state_dict())
