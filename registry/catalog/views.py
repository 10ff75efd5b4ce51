"""What the catalog commands return: variants with their decisions, lineage, diffs, alias moves."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from compressgate.registry.catalog.repository import AliasMove, Decision, RunInfo, VariantRecord


class ApiResult(BaseModel):
    model_config = ConfigDict(frozen=True)


class VariantShow(ApiResult):
    """A variant, the gate decisions over it, its evaluations and the aliases on it."""

    variant: VariantRecord
    decisions: list[Decision]
    evaluations: list[str]
    aliases: list[str]
    promotable: bool
    problem: str | None


class Lineage(ApiResult):
    """A variant's ancestry within its run and seed, with the run's recipe and environment."""

    run: RunInfo
    chain: list[VariantRecord]


class DiffRow(ApiResult):
    key: str
    a: Any
    b: Any
    same: bool


class Diff(ApiResult):
    """Two variants side by side: identity, stage configuration and metrics."""

    a: str
    b: str
    identity: list[DiffRow]
    config: list[DiffRow]
    metrics: list[DiffRow]


class AliasResult(ApiResult):
    alias: str
    changed: bool
    move: AliasMove
