"""The embedding evaluators as the executor runs them (`cosine`, `retrieval`): their points are
`compressgate.evaluators.embedding`'s on the subjects' embeddings, they skip the baseline itself,
and they
refuse outputs that are not one vector per sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from compressgate.evaluators import embedding
from compressgate.evaluators.base import EvalContext, Subject, evaluate_stage, flatten
from compressgate.recipes import evaluation as ev
from compressgate.recipes.data import Split, Splits
from compressgate.registry.kernel.errors import StageError

N, DIM = 300, 16


def subject(name: str, vectors: np.ndarray) -> Subject:
    holder = Subject(stage=name, variant=None, size_bytes=0)  # type: ignore[arg-type]
    holder.outputs["embeddings:test"] = vectors
    return holder


def setup(noise: float = 0.05) -> tuple[Splits, np.ndarray, np.ndarray, EvalContext]:
    rng = np.random.default_rng(0)
    base = rng.normal(size=(N, DIM))
    cand = base + rng.normal(scale=noise, size=(N, DIM))
    split = Split(torch.zeros(N, 1), torch.zeros(N, dtype=torch.int64), ids=torch.arange(N) + 7)
    splits = Splits(split, split, split, ("embedding",))
    return splits, base, cand, EvalContext(seed=1, stage="int8", splits=splits)


def test_cosine_and_retrieval_give_the_metrics_of_the_embedding_functions() -> None:
    splits, base, cand, ctx = setup()
    specs = [ev.CosineSpec(resamples=300), ev.RetrievalSpec(k=5, resamples=300)]
    results = evaluate_stage(specs, subject("int8", cand), subject("baseline", base), splits, ctx)
    metrics = flatten(results)
    assert set(metrics) == {*specs[0].metric_names(), *specs[1].metric_names()}
    cos = embedding.cosines(cand, base)
    assert metrics["cosine.mean"].estimate == pytest.approx(cos.mean(), abs=1e-12)
    assert metrics["cosine.min"].estimate == pytest.approx(cos.min(), abs=1e-12)
    assert metrics["cosine.p1"].estimate == pytest.approx(embedding.lower_quantile(cos, 0.01))
    for name in ("cosine.mean", "cosine.p1", "cosine.min"):
        estimate = metrics[name]
        assert estimate.ci_low <= estimate.estimate <= estimate.ci_high
    overlap, same = embedding.neighbour_overlap(cand, base, 5)
    assert metrics["retrieval.overlap_at_k"].estimate == pytest.approx(overlap.mean())
    assert metrics["retrieval.top1_agreement"].estimate == pytest.approx(same.mean())
    cosine = results["cosine"]
    assert cosine.worst[0] == int(np.argmin(cos)) + 7  # sample ids, worst first


def test_more_noise_means_lower_cosine_and_fewer_kept_neighbours() -> None:
    scores = []
    for noise in (0.05, 0.5):
        splits, base, cand, ctx = setup(noise)
        specs = [ev.CosineSpec(resamples=200), ev.RetrievalSpec(k=5, resamples=200)]
        found = flatten(
            evaluate_stage(specs, subject("c", cand), subject("baseline", base), splits, ctx)
        )
        scores.append((found["cosine.mean"].estimate, found["retrieval.overlap_at_k"].estimate))
    (near_cos, near_overlap), (far_cos, far_overlap) = scores
    assert near_cos > far_cos and near_overlap > far_overlap


def test_the_baseline_itself_is_not_compared() -> None:
    splits, base, _, ctx = setup()
    specs = [ev.CosineSpec(), ev.RetrievalSpec()]
    assert evaluate_stage(specs, subject("baseline", base), None, splits, ctx) == {}


def test_outputs_of_another_shape_are_a_stage_error_naming_the_evaluator() -> None:
    splits, base, _, ctx = setup()
    with pytest.raises(StageError, match=r"evaluator 'cosine' after stage 'int8'.*one vector"):
        evaluate_stage(
            [ev.CosineSpec()], subject("c", base[:, :8]), subject("b", base), splits, ctx
        )
    with pytest.raises(
        StageError,
        match="k = 100 neighbours need more than 100 test samples; the test split has 100",
    ):
        evaluate_stage(
            [ev.RetrievalSpec(k=100)],
            subject("c", base[:100]),
            subject("b", base[:100]),
            splits,
            ctx,
        )
