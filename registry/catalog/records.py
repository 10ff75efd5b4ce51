"""What a run leaves behind, as pydantic records: the run, each stage of each seed, timing.

The executor fills these in; the catalog stores them row by row and gives them back, so that
`compressgate catalog show RUN --json` exports exactly the record the executor held.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from compressgate.evaluators.results import (
    Estimate,
    EvaluationResult,
    ExemplarsResult,
    SeedAggregate,
)


class StageRecord(BaseModel):
    """One stage of one seed: what came out, from what, by which spec, and how good it is."""

    seed: int
    name: str
    kind: str
    status: Literal["running", "done", "failed"] = "running"
    cached: bool = False
    format: Literal["torch", "onnx"] | None = None
    artifact_sha256: str | None = None
    parent_sha256: str | None = None
    spec_sha256: str | None = None
    cache_key: str | None = None
    size_bytes: int | None = None
    files: list[dict[str, Any]] = Field(default_factory=list)
    params: int | None = None
    nonzero_params: int | None = None
    macs: int | None = None
    metrics: dict[str, Estimate] = Field(
        default_factory=dict, description="every evaluator's metrics under their dotted names"
    )
    evaluations: dict[str, EvaluationResult] = Field(
        default_factory=dict, description="each evaluator's full result, by kind"
    )
    evaluation_key: str | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    warnings: list[str] = Field(default_factory=list)
    seconds: float = 0.0
    eval_seconds: float = 0.0
    error: str | None = None


class RecipeRef(BaseModel):
    name: str
    version: int
    sha256: str
    path: str
    signers: list[str]


class Timing(BaseModel):
    total_seconds: float = 0.0
    compute_seconds: float = 0.0
    overhead_seconds: float = 0.0
    overhead_fraction: float = 0.0


class RunRecord(BaseModel):
    """The run: recipe, environment, data digests, every stage record, status and timing."""

    run_id: str
    recipe: RecipeRef
    status: Literal["running", "succeeded", "stopped", "failed"] = Field(
        default="running", description="stopped: a gate failed after an intermediate stage"
    )
    started_at: str
    finished_at: str | None = None
    workspace: str
    seeds: list[int]
    environment: dict[str, Any] = Field(default_factory=dict)
    data: dict[str, dict[str, str]] = Field(default_factory=dict)
    stages: list[StageRecord] = Field(default_factory=list)
    aggregate: dict[str, dict[str, SeedAggregate]] = Field(
        default_factory=dict, description="per stage, each metric over the seeds"
    )
    exemplars: dict[str, ExemplarsResult] = Field(
        default_factory=dict, description="per compressed stage, across the seeds"
    )
    timing: Timing = Field(default_factory=Timing)
    error: str | None = None

    def stage(self, seed: int, name: str) -> StageRecord:
        for record in self.stages:
            if record.seed == seed and record.name == name:
                return record
        raise KeyError((seed, name))
