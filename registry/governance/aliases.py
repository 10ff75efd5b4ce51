"""Aliases (`production`, `staging`): promotion of approved variants, and rollback.

An alias points to a variant by an event in the catalog; it is never edited. Promotion records
a move to a variant whose run's review is `approved` (every gate passed, was approved or was
waived by its owner, as checked now against the trust file) and which every gate judged: each
gate's stage is the variant's own or one before it, at least one its own. Rollback records a
move back to the alias's previous known-good variant: the newest earlier target that was not
itself rolled back from and whose run is still approved (a waiver may have expired since).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressgate.gates.review import ReviewStatus
from compressgate.registry.catalog.repository import AliasMove, Catalog, VariantRecord
from compressgate.registry.catalog.views import AliasResult, VariantShow
from compressgate.registry.governance.review import load_trust_for, status
from compressgate.registry.kernel.errors import ManifestError, NotFoundError, Refused


@dataclass(frozen=True)
class GateStatus:
    variant: VariantRecord
    review: ReviewStatus | None
    problem: str | None  # None: the variant may be promoted

    @property
    def passed(self) -> bool:
        return self.problem is None


def gate_status(catalog: Catalog, variant: VariantRecord, trust: Path | None) -> GateStatus:
    """Whether `variant` may be promoted: its run's review is `approved` (every gate passed,
    was approved or waived by its owner), and every gate judged its stage or one before it,
    at least one its own stage."""
    run = variant.run_id
    found = status(catalog, run, load_trust_for(catalog, run, trust))
    if found.status != "approved":
        return GateStatus(
            variant, found, f"run {run} is {found.status}: {'; '.join(found.reasons)}"
        )
    chain = {v.stage for v in catalog.lineage(variant.id)}
    later = [g.decision for g in found.gates if g.decision.stage not in chain]
    if later:
        shown = ", ".join(f"'{d.gate}' (after {d.stage})" for d in later)
        return GateStatus(
            variant,
            found,
            f"gate(s) {shown} judge a stage after '{variant.stage}': promote the variant they "
            "judged, or a later one",
        )
    if not any(g.decision.stage == variant.stage for g in found.gates):
        return GateStatus(
            variant,
            found,
            f"no gate judged stage '{variant.stage}' of run {run}: only a variant a gate has "
            "passed can be promoted",
        )
    return GateStatus(variant, found, None)


def show_variant(catalog: Catalog, ref: str, trust: Path | None) -> VariantShow:
    """A variant with its per-seed judgements, the evaluations recorded for its stage, the
    aliases pointing at it, and whether it may be promoted (and if not, why)."""
    variant = catalog.variant(ref)
    try:
        found = gate_status(catalog, variant, trust)
        promotable, problem = found.passed, found.problem
    except NotFoundError as exc:  # no trust file to check the sign-offs with
        promotable, problem = False, str(exc)
    judgements = catalog.judgements(run_id=variant.run_id)
    run = catalog.run(variant.run_id)
    return VariantShow(
        variant=variant,
        decisions=[j for j in judgements if j.seed == variant.seed],
        evaluations=list(run.stage(variant.seed, variant.stage).evaluations),
        aliases=[name for name, move in catalog.aliases().items() if move.variant_id == variant.id],
        promotable=promotable,
        problem=problem,
    )


def promote(
    catalog: Catalog,
    ref: str,
    alias: str,
    *,
    reason: str,
    actor: str | None = None,
    trust: Path | None = None,
) -> AliasResult:
    """Point `alias` at the variant `ref`: the move, and whether the alias changed."""
    _check_alias(alias)
    best = _best_record(catalog, ref, trust)
    variant = best.variant
    if not best.passed:
        raise Refused(
            f"variant {variant.id} ({variant.artifact_sha256[:12]}) cannot be promoted to "
            f"{alias}: {best.problem}",
            hint=f"`compressgate review status {variant.run_id}` shows each gate and its owner",
        )
    current = catalog.alias(alias)
    if current is not None and current.variant_id == variant.id:
        return AliasResult(alias=alias, changed=False, move=current)
    move = catalog.move_alias(
        alias,
        variant,
        action="promote",
        reason=reason,
        actor=actor,
        expected_previous=current.variant_id if current else None,
    )
    return AliasResult(alias=alias, changed=True, move=move)


def rollback(
    catalog: Catalog,
    alias: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    trust: Path | None = None,
) -> AliasResult:
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
        checked = gate_status(catalog, target, trust)
        if not checked.passed:
            raise Refused(f"cannot roll {alias} back to {target.id}: {checked.problem}")
    else:
        target = _known_good(catalog, alias, history, trust)
    move = catalog.move_alias(
        alias,
        target,
        action="rollback",
        reason=reason or f"rolled back from {current}",
        actor=actor,
        expected_previous=current,
    )
    return AliasResult(alias=alias, changed=True, move=move)


def _best_record(catalog: Catalog, ref: str, trust: Path | None) -> GateStatus:
    """The gate status of the variant `ref` names. A sha256 prefix names bytes that several
    records may share (an export repeats int8's bytes; a cached stage repeats an earlier run's):
    the newest record whose gates all passed is taken, else the newest record."""
    variant = catalog.variant(ref)
    if "/" in ref:
        return gate_status(catalog, variant, trust)
    statuses = [
        gate_status(catalog, v, trust) for v in catalog.records_of_artifact(variant.artifact_sha256)
    ]
    return next((s for s in statuses if s.passed), gate_status(catalog, variant, trust))


def _known_good(
    catalog: Catalog, alias: str, history: list[AliasMove], trust: Path | None
) -> VariantRecord:
    """The newest earlier target not rolled back from and whose gates all still pass."""
    current = history[-1].variant_id
    rolled_back_from = {m.previous_variant_id for m in history if m.action == "rollback"}
    for move in reversed(history[:-1]):
        if move.variant_id in rolled_back_from or move.variant_id == current:
            continue
        candidate = catalog.variant(move.variant_id)
        if gate_status(catalog, candidate, trust).passed:
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
