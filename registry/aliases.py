"""Aliases (`production`, `staging`): promotion of variants whose gates passed, and rollback.

An alias points to a variant by an event in the catalog; it is never edited. Promotion records
a move to a variant all of whose gates passed: every gate decision recorded for its run and seed
on its own stage or on a stage before it, with at least one gate on its own stage. Rollback
records a move back to the alias's previous known-good variant: the newest earlier target that
was not itself rolled back from and whose gates still all pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from registry.catalog import AliasMove, Catalog, Decision, VariantRecord
from registry.errors import ManifestError, NotFoundError, Refused


@dataclass(frozen=True)
class GateStatus:
    variant: VariantRecord
    decisions: tuple[Decision, ...]
    problem: str | None  # None: every gate passed

    @property
    def passed(self) -> bool:
        return self.problem is None


def gate_status(catalog: Catalog, variant: VariantRecord) -> GateStatus:
    """Whether every gate that judges `variant` or one of its ancestors passed."""
    chain = {v.stage for v in catalog.lineage(variant.id)}
    decisions = tuple(
        d
        for d in catalog.decisions(run_id=variant.run_id)
        if d.seed == variant.seed and d.stage in chain
    )
    failed = [d for d in decisions if d.verdict != "pass"]
    if failed:
        shown = "; ".join(f"gate '{d.gate}' ({d.stage}): {d.note}" for d in failed)
        return GateStatus(variant, decisions, f"gate(s) failed: {shown}")
    if not any(d.stage == variant.stage for d in decisions):
        return GateStatus(
            variant,
            decisions,
            f"no gate judged stage '{variant.stage}' of run {variant.run_id} (seed "
            f"{variant.seed}): only a variant a gate has passed can be promoted",
        )
    return GateStatus(variant, decisions, None)


def promote(
    catalog: Catalog, ref: str, alias: str, *, reason: str, actor: str | None = None
) -> tuple[AliasMove, bool]:
    """Point `alias` at the variant `ref`; returns the move and whether the alias changed."""
    _check_alias(alias)
    status = _best_record(catalog, ref)
    variant = status.variant
    if not status.passed:
        raise Refused(
            f"variant {variant.id} ({variant.artifact_sha256[:12]}) cannot be promoted to "
            f"{alias}: {status.problem}",
            hint="`compressgate catalog show RUN` shows the gate decisions",
        )
    current = catalog.alias(alias)
    if current is not None and current.variant_id == variant.id:
        return current, False
    move = catalog.move_alias(
        alias,
        variant,
        action="promote",
        reason=reason,
        actor=actor,
        expected_previous=current.variant_id if current else None,
    )
    return move, True


def rollback(
    catalog: Catalog,
    alias: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
) -> AliasMove:
    """Move `alias` back to its previous known-good variant, or to `to`."""
    _check_alias(alias)
    history = catalog.alias_history(alias)
    if not history:
        raise NotFoundError(
            f"alias {alias} has never pointed anywhere",
            hint="`compressgate promote VARIANT --alias NAME` sets it",
        )
    current = history[-1].variant_id
    if to is not None:
        target = catalog.variant(to)
        if target.id == current:
            raise ManifestError(f"alias {alias} already points to {target.id}; nothing changed")
        status = gate_status(catalog, target)
        if not status.passed:
            raise Refused(f"cannot roll {alias} back to {target.id}: {status.problem}")
    else:
        target = _known_good(catalog, alias, history)
    return catalog.move_alias(
        alias,
        target,
        action="rollback",
        reason=reason or f"rolled back from {current}",
        actor=actor,
        expected_previous=current,
    )


def _best_record(catalog: Catalog, ref: str) -> GateStatus:
    """The gate status of the variant `ref` names. A sha256 prefix names bytes that several
    records may share (an export repeats int8's bytes; a cached stage repeats an earlier run's):
    the newest record whose gates all passed is taken, else the newest record."""
    variant = catalog.variant(ref)
    if "/" in ref:
        return gate_status(catalog, variant)
    statuses = [
        gate_status(catalog, v) for v in catalog.records_of_artifact(variant.artifact_sha256)
    ]
    return next((s for s in statuses if s.passed), gate_status(catalog, variant))


def _known_good(catalog: Catalog, alias: str, history: list[AliasMove]) -> VariantRecord:
    """The newest earlier target not rolled back from and whose gates all still pass."""
    current = history[-1].variant_id
    rolled_back_from = {m.previous_variant_id for m in history if m.action == "rollback"}
    for move in reversed(history[:-1]):
        if move.variant_id in rolled_back_from or move.variant_id == current:
            continue
        candidate = catalog.variant(move.variant_id)
        if gate_status(catalog, candidate).passed:
            return candidate
    raise NotFoundError(
        f"alias {alias} has no earlier known-good variant to roll back to",
        hint="name one with --to VARIANT",
    )


def _check_alias(alias: str) -> None:
    if not alias or len(alias) > 64 or not all(ch.isalnum() or ch in "-_." for ch in alias):
        raise ManifestError(
            f"alias {alias!r} is not a valid name",
            hint="use letters, digits, '-', '_' or '.', at most 64 characters",
        )
