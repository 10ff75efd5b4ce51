"""Each stage over the seeds: its metrics aggregated across the run's seeds, and the exemplars
(test samples whose prediction compression changed on every seed), written onto the run record
once every seed has run (`compressgate.evaluators.seeds` holds the statistics)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from compressgate.evaluators import seeds as seeds_of
from compressgate.evaluators.results import AccuracyResult
from compressgate.recipes.data import Split
from compressgate.recipes.manifest import Recipe
from compressgate.registry.catalog.records import RunRecord
from compressgate.registry.run.variants import BASELINE


def across_seeds(recipe: Recipe, record: RunRecord, tests: Mapping[int, Split]) -> None:
    """Each stage's metrics over the seeds, and the compression-identified exemplars, on
    `record` (`aggregate`, `exemplars`)."""
    specs = recipe.evaluator_specs()
    confidence = specs[0].interval_level
    ran = {r.name for r in record.stages if r.status == "done"}
    names = [n for n in [BASELINE, *(s.name for s in recipe.stages)] if n in ran]
    for name in names:
        per_seed = {r.seed: r.metrics for r in record.stages if r.name == name}
        summary = seeds_of.aggregate(per_seed, confidence)
        if summary:
            record.aggregate[name] = summary
    wanted = next((s for s in specs if s.kind == "exemplars"), None)
    if wanted is None:
        return
    seeds = list(recipe.seeds)
    ids = {seed: _numpy_or_none(tests[seed].ids) for seed in seeds}
    labels = {seed: tests[seed].y.numpy() for seed in seeds}
    baseline = {seed: _predictions(record, seed, BASELINE) for seed in seeds}
    for name in names[1:]:
        record.exemplars[name] = seeds_of.exemplars(
            seeds,
            ids,
            labels,
            baseline,
            {seed: _predictions(record, seed, name) for seed in seeds},
            wanted.interval_level,
        )


def _predictions(record: RunRecord, seed: int, name: str) -> np.ndarray:
    result = record.stage(seed, name).evaluations["accuracy"]
    assert isinstance(result, AccuracyResult)
    return np.asarray(result.predictions, dtype=np.int64)


def _numpy_or_none(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.numpy()
