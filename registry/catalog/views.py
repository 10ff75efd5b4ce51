"""What the catalog commands return: variants with their decisions, lineage, diffs, alias moves."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from compressgate.registry.catalog.records import AnnotationRecord
from compressgate.registry.catalog.repository import (
    AliasMove,
    JudgementRecord,
    RunInfo,
    VariantRecord,
)


class ApiResult(BaseModel):
    model_config = ConfigDict(frozen=True, defer_build=True)


class VariantShow(ApiResult):
    """A variant, the gate decisions over it, its evaluations and the aliases on it, its tags
    (its own; its run's are `catalog show RUN`'s) and description, with their history."""

    variant: VariantRecord
    decisions: list[JudgementRecord]
    evaluations: list[str]
    aliases: list[str]
    promotable: bool
    problem: str | None
    tags: dict[str, str] = {}
    description: str | None = None
    annotations: list[AnnotationRecord] = []


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


def diff(a: VariantRecord, b: VariantRecord) -> Diff:
    """Two variants side by side: identity, stage configuration (flattened) and metrics."""
    identity_fields = (
        *("run_id", "seed", "stage", "kind", "format", "artifact_sha256"),
        *("parent_sha256", "recipe_sha256", "size_bytes", "params", "macs"),
    )
    return Diff(
        a=a.id,
        b=b.id,
        identity=_rows(
            {k: getattr(a, k) for k in identity_fields}, {k: getattr(b, k) for k in identity_fields}
        ),
        config=_rows(_flat(a.spec), _flat(b.spec)),
        metrics=_rows(
            {k: [m.estimate, m.ci_low, m.ci_high] for k, m in a.metrics.items()},
            {k: [m.estimate, m.ci_low, m.ci_high] for k, m in b.metrics.items()},
        ),
    )


def _rows(left: dict[str, Any], right: dict[str, Any]) -> list[DiffRow]:
    return [
        DiffRow(key=k, a=left.get(k), b=right.get(k), same=left.get(k) == right.get(k))
        for k in sorted(set(left) | set(right))
    ]


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}
