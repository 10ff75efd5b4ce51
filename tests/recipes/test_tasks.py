"""`model.task`: an embedding recipe takes embedding evaluators and label-free stages, a
classifier the others; mixing them is refused at validation with the field and the fix."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from compressgate.recipes.evaluation import CosineSpec, RetrievalSpec, SizeSpec
from compressgate.recipes.load import load_recipe
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.errors import ManifestError


@pytest.fixture
def minilm(tmp_path: Path) -> Path:
    init_example(tmp_path / "ml", "minilm-int8")
    return tmp_path / "ml" / "recipe.yaml"


def _with(recipe: Path, old: str, new: str) -> Path:
    text = recipe.read_text()
    assert old in text
    recipe.write_text(text.replace(old, new, 1))
    return recipe


def test_the_minilm_example_is_an_embedding_recipe_without_accuracy(minilm: Path) -> None:
    recipe = load_recipe(minilm).recipe
    assert recipe.model.task == "embedding" and recipe.model.pretrained
    kinds = [spec.kind for spec in recipe.evaluator_specs()]
    assert kinds == ["cosine", "retrieval", "latency", "size"]  # no accuracy added
    assert "accuracy" not in recipe.metric_names()


def test_an_embedding_recipe_without_evaluators_gets_cosine_retrieval_and_size(
    minilm: Path,
) -> None:
    text = minilm.read_text()
    start, end = text.index("evaluators:"), text.index("gates:")
    minilm.write_text(text[:start] + text[end:].split("  - name: speed")[0])
    recipe = load_recipe(minilm).recipe
    assert recipe.evaluator_specs() == (CosineSpec(), RetrievalSpec(), SizeSpec())


@pytest.mark.parametrize(
    ("old", "new", "where", "says"),
    [
        (
            "  - kind: size\n",
            "  - kind: size\n  - kind: calibration\n",
            r"recipe\.yaml:\d+ evaluators\[4\]\.kind",
            "'calibration' judges predicted classes against labels",
        ),
        (
            "stages:\n",
            "stages:\n  - {name: shrink, kind: quantize, method: qat}\n",
            r"recipe\.yaml:\d+ stages\[0\]\.kind",
            "stage 'shrink' fine-tunes on labels",
        ),
        (
            "stages:\n",
            "stages:\n  - {name: teach, kind: distill, student: {factory: "
            "'compressgate.recipes.examples.minilm:build_minilm'}}\n",
            r"recipe\.yaml:\d+ stages\[0\]\.objective",
            "set 'objective: embedding' to learn the teacher's vectors",
        ),
        (
            "stages:\n",
            "stages:\n  - {name: teach, kind: distill, objective: embedding, cosine: 0, "
            "student: {factory: 'compressgate.recipes.examples.minilm:build_minilm'}}\n",
            r"recipe\.yaml:\d+ stages\[0\]\.cosine",
            "cosine and mse are both 0",
        ),
        (
            "stages:\n",
            "stages:\n  - {name: shrink, kind: prune, method: magnitude, sparsity: 0.2, "
            "heads: 0.5}\n",
            r"recipe\.yaml:\d+ stages\[0\]\.heads",
            "heads needs 'method: structured'",
        ),
        (
            "  pretrained: true",
            "  train: {epochs: 1}",
            r"model\.train",
            "an embedding model has none here",
        ),
        (
            "  pretrained: true",
            "  pretrained: false",
            "model",
            "'pretrained: true' if the factory loads them itself",
        ),
        (
            "  pretrained: true",
            "  pretrained: true\n  checkpoint: requirements.lock",
            "model",
            "drop 'checkpoint' and 'train', or 'pretrained'",
        ),
    ],
)
def test_mixing_tasks_is_refused_at_the_field(
    minilm: Path, old: str, new: str, where: str, says: str
) -> None:
    with pytest.raises(ManifestError) as refused:
        load_recipe(_with(minilm, old, new))
    text = str(refused.value) + "".join(str(i) for i in getattr(refused.value, "issues", ()))
    assert re.search(where, text) and says in text, text


def test_a_classifier_may_not_distil_embeddings(tmp_path: Path) -> None:
    init_example(tmp_path / "d", "digits")
    recipe = _with(
        tmp_path / "d" / "recipe.yaml",
        "    kind: distill\n",
        "    kind: distill\n    objective: embedding\n",
    )
    with pytest.raises(ManifestError) as refused:
        load_recipe(recipe)
    text = str(refused.value) + "".join(str(i) for i in getattr(refused.value, "issues", ()))
    assert "learns embeddings" in text and "objective: logits" in text, text


def test_a_classifier_may_not_ask_for_embedding_evaluators(tmp_path: Path) -> None:
    init_example(tmp_path / "d", "digits")
    recipe = _with(
        tmp_path / "d" / "recipe.yaml",
        "  - kind: exemplars",
        "  - kind: exemplars\n  - kind: cosine",
    )
    with pytest.raises(ManifestError) as refused:
        load_recipe(recipe)
    text = str(refused.value) + "".join(str(i) for i in getattr(refused.value, "issues", ()))
    assert "'cosine' compares embeddings" in text and "task: embedding" in text
