"""Aliases (`production`, `staging`): promotion of approved variants, and rollback.

An alias points to a variant by an event in the catalog; it is never edited. Promotion records
a move to a variant whose run's review is `approved` (every gate passed, was approved or was
waived by its owner, as checked now against the trust file) and which every gate judged: each
gate's stage is the variant's own or one before it, at least one its own; and whose own seed
passed every gate (with `seeds: mean` or `worst` a run may pass a gate that one of its seeds
failed: that seed's variants are not promoted, unless the gate says `promotion: run`).
Rollback records a move back to the alias's previous known-good variant: the newest earlier
target that was not itself rolled back from and whose run is still approved (a waiver may have
expired since).

Under a catalog's policy every move is signed by a releaser's key (`release`): the actor is the
key's owner, and the signed release is recorded with the move. Under the unsigned regime (no
policy) a move needs no key and `actor` is free text, as before.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressgate.gates.review import ReviewStatus
from compressgate.registry.catalog.repository import AliasMove, Catalog, VariantRecord
from compressgate.registry.catalog.views import AliasResult, VariantShow
from compressgate.registry.governance.policy import PolicyChain
from compressgate.registry.governance.release import (
    Move,
    authorize,
    check_release,
    release_envelope,
)
from compressgate.registry.governance.review import TrustSource, load_trust_for, status
from compressgate.registry.kernel.dsse import Envelope
from compressgate.registry.kernel.errors import (
    IntegrityError,
    ManifestError,
    NotFoundError,
    Refused,
)
from compressgate.registry.kernel.keys import PrivateKey

Judge = Path | PolicyChain | None  # a trust file option (unsigned regime) or the policy chain


@dataclass(frozen=True)
class GateStatus:
    variant: VariantRecord
    review: ReviewStatus | None
    problem: str | None  # None: the variant may be promoted

    @property
    def passed(self) -> bool:
        return self.problem is None


def _source(catalog: Catalog, run: str, trust: Judge) -> TrustSource:
    if isinstance(trust, PolicyChain) and trust.current is not None:
        return trust
    return load_trust_for(catalog, run, trust if isinstance(trust, Path) else None)


def gate_status(catalog: Catalog, variant: VariantRecord, trust: Judge) -> GateStatus:
    """Whether `variant` may be promoted: its run's review is `approved` (every gate passed,
    was approved or waived by its owner), every gate judged its stage or one before it, at
    least one its own stage, and its own seed passed every gate (a gate with `promotion: run`
    takes the decision over the seeds instead; a waived failure is waived for every seed)."""
    run = variant.run_id
    found = status(catalog, run, _source(catalog, run, trust))
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
    failed = _failed_seed(found, variant.seed)
    if failed:
        return GateStatus(
            variant,
            found,
            f"seed {variant.seed} failed gate(s) {failed} on its own (the seeds policy passed "
            "the run): only a variant whose own seed passed may be promoted, unless the gate "
            "says 'promotion: run'",
        )
    return GateStatus(variant, found, None)


def _failed_seed(found: ReviewStatus, seed: int) -> str:
    """The gates (named, with their seeds policy) that `seed` failed on its own, where the gate
    promotes by seed (`promotion: seed`, the default) and its failure was not waived."""
    failed = []
    for g in found.gates:
        decision = g.decision
        if decision.rule.get("promotion", "seed") != "seed" or g.state == "waived":
            continue
        if any(s.seed == seed and s.verdict == "fail" for s in decision.seeds):
            failed.append(f"'{decision.gate}' ({decision.policy})")
    return ", ".join(failed)


def show_variant(catalog: Catalog, ref: str, trust: Judge) -> VariantShow:
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
    trust: Judge = None,
    key: PrivateKey | None = None,
) -> AliasResult:
    """Point `alias` at the variant `ref`: the move, and whether the alias changed."""
    chain = _policy(trust, key, actor)
    _check_alias(alias)
    alias = _scoped(catalog, chain, alias, catalog.variant(ref))
    _authorize(catalog, chain, key, alias, catalog.variant(ref))
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
    previous = current.variant_id if current else None
    release = _release(catalog, chain, key, alias, "promote", variant, previous, reason)
    move = catalog.move_alias(
        alias,
        variant,
        action="promote",
        reason=reason,
        actor=str(release["owner"]) if release else actor,
        expected_previous=previous,
        release=release,
    )
    return AliasResult(alias=alias, changed=True, move=move)


def rollback(
    catalog: Catalog,
    alias: str,
    *,
    to: str | None = None,
    reason: str | None = None,
    actor: str | None = None,
    trust: Judge = None,
    key: PrivateKey | None = None,
) -> AliasResult:
    """Move `alias` back to its previous known-good variant, or to `to`."""
    chain = _policy(trust, key, actor)
    _check_alias(alias)
    alias = resolve_alias(catalog, chain, alias)
    history = catalog.alias_history(alias)
    if not history:
        raise NotFoundError(
            f"alias {alias} has never pointed anywhere",
            hint="`compressgate promote VARIANT --alias NAME` sets it",
        )
    current = history[-1].variant_id
    if to is not None:
        target = catalog.variant(to)
        _authorize(catalog, chain, key, alias, target)
        if target.id == current:
            raise ManifestError(f"alias {alias} already points to {target.id}; nothing changed")
        checked = gate_status(catalog, target, trust)
        if not checked.passed:
            raise Refused(f"cannot roll {alias} back to {target.id}: {checked.problem}")
    else:
        target = _known_good(catalog, alias, history, trust)
        _authorize(catalog, chain, key, alias, target)
    why = reason or f"rolled back from {current}"
    release = _release(catalog, chain, key, alias, "rollback", target, current, why)
    move = catalog.move_alias(
        alias,
        target,
        action="rollback",
        reason=why,
        actor=str(release["owner"]) if release else actor,
        expected_previous=current,
        release=release,
    )
    return AliasResult(alias=alias, changed=True, move=move)


def _policy(trust: Judge, key: PrivateKey | None, actor: str | None) -> PolicyChain | None:
    """The policy chain a move is signed under (None: the unsigned regime); under a policy a
    move without a key is refused and `actor` is not taken."""
    if not isinstance(trust, PolicyChain) or trust.current is None:
        return None
    if key is None:
        raise IntegrityError(
            f"an unsigned alias move is refused: the catalog's policy v{trust.current.version} "
            "is in force",
            hint="sign the move with a releaser's key: --key KEY",
        )
    if actor is not None and actor != trust.current.trust.owner_of(key.public):
        raise ManifestError(
            f"--actor {actor!r} is not taken under a trust policy: the actor is the owner of "
            "the key that signs the move",
            hint="leave out --actor (and $COMPRESSGATE_ACTOR)",
        )
    return trust


def _authorize(
    catalog: Catalog,
    chain: PolicyChain | None,
    key: PrivateKey | None,
    alias: str,
    variant: VariantRecord,
) -> None:
    """Before anything else is judged: the key may move `alias` to a variant of this run under
    the policy in force (exit 3 otherwise); nothing under the unsigned regime."""
    if chain is None or chain.current is None:
        return
    assert key is not None
    policy = chain.current
    authorize(
        [key.public],
        policy.trust,
        policy.version,
        alias,
        variant.run_id,
        list(catalog.run_info(variant.run_id).signers),
        f"the move of {alias} signed with key {key.public.keyid[:16]}…",
    )


def _check_attested(
    catalog: Catalog, chain: PolicyChain, alias: str, variant: VariantRecord
) -> None:
    """Under a policy, the variant's run was attested by a runner the policy trusted when it
    was recorded, and the statement still matches the catalog; a run from before the policy
    (the unsigned regime) passes unless the alias's rule names its runners (`attested_by`)."""
    from compressgate.registry.governance.attestation import check_attestation

    assert chain.current is not None
    rule = chain.current.trust.alias_rule(alias)
    run_id = variant.run_id
    found = catalog.attestations([run_id]).get(run_id)
    started = catalog.run_seq(run_id) or 0
    if found is None:
        if chain.at(started) is None and rule.attested_by is None:
            return  # recorded under the unsigned regime
        raise IntegrityError(
            f"run {run_id} has no runner's attestation: it cannot be released to {alias}",
            hint="a run under the policy is attested with the runner's --key of run/submit/ci",
        )
    policy = chain.at(found.seq)
    assert policy is not None
    envelope = Envelope.from_json(
        found.envelope.encode("utf-8"), source=f"run {run_id}'s attestation"
    )
    info = catalog.run_info(run_id)
    done = check_attestation(
        envelope,
        trust=policy.trust,
        policy_version=policy.version,
        record=catalog.run(run_id),
        decisions=catalog.gate_decisions(run_id),
        environment_sha256=info.environment_sha256,
        lock_sha256=info.lock_sha256,
        source=f"run {run_id}'s attestation",
    )
    if rule.attested_by is not None and done.owner not in rule.attested_by:
        raise IntegrityError(
            f"run {run_id} was attested by '{done.owner}'; alias {alias} takes runs attested by "
            f"{', '.join(rule.attested_by)} only (policy v{chain.current.version})",
            hint="run the recipe where the policy's named runner runs it (e.g. CI)",
        )


def _release(
    catalog: Catalog,
    chain: PolicyChain | None,
    key: PrivateKey | None,
    alias: str,
    action: str,
    variant: VariantRecord,
    previous: str | None,
    reason: str,
) -> dict[str, object] | None:
    """The signed release of a move under the policy in force (checked as `audit verify`
    checks it), as the catalog records it; None under the unsigned regime."""
    if chain is None or chain.current is None:
        return None
    assert key is not None
    policy = chain.current
    run = catalog.run_info(variant.run_id)
    _check_attested(catalog, chain, alias, variant)
    move = Move(
        alias=alias,
        action=action,
        variant_id=variant.id,
        artifact_sha256=variant.artifact_sha256,
        run_id=variant.run_id,
        recipe_sha256=variant.recipe_sha256,
        previous_variant_id=previous,
    )
    head = catalog.head()
    owner = policy.trust.owner_of(key.public) or "?"
    envelope = release_envelope(
        move,
        key,
        owner=owner,
        reason=reason,
        head=(head.size, head.sha256),
        policy=(policy.version, policy.sha256),
    )
    released = check_release(
        envelope,
        trust=policy.trust,
        policy_version=policy.version,
        move=move,
        recipe_signers=list(run.signers),
        source=f"the {action} of {alias} signed with key {key.public.keyid[:16]}…",
    )
    return {
        "owner": released.owner,
        "keyid": released.keyid,
        "policy_version": policy.version,
        "envelope": envelope.to_json().decode("utf-8"),
    }


def _best_record(catalog: Catalog, ref: str, trust: Judge) -> GateStatus:
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
    catalog: Catalog, alias: str, history: list[AliasMove], trust: Judge
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
    scope, _, name = alias.rpartition(":")
    if (
        not name
        or len(alias) > 130
        or len(name) > 64
        or not all(ch.isalnum() or ch in "-_." for ch in name + scope)
        or (":" in alias and not scope)
    ):
        raise ManifestError(
            f"alias {alias!r} is not a valid name",
            hint="use letters, digits, '-', '_' or '.', at most 64 characters, optionally "
            "after the recipe's name and ':' (digits-cnn:production)",
        )


def _scoped(catalog: Catalog, chain: PolicyChain | None, alias: str, variant: VariantRecord) -> str:
    """Under a policy an alias belongs to one recipe: NAME becomes RECIPE:NAME (the variant's
    recipe), unless the policy shares NAME across recipes; a RECIPE:NAME given must be the
    variant's recipe's. Under the unsigned regime, as given."""
    if chain is None or chain.current is None:
        return alias
    recipe = catalog.run_info(variant.run_id).recipe
    scope, _, name = alias.rpartition(":")
    if chain.current.trust.alias_rule(name).shared:
        if scope:
            raise ManifestError(f"alias {name} is shared across recipes by the policy: give {name}")
        return name
    if scope and scope != recipe:
        raise IntegrityError(
            f"alias {alias} belongs to recipe {scope}; {variant.id} is a variant of {recipe}",
            hint=f"an alias moves only between variants of its recipe: {recipe}:{name}",
        )
    return f"{recipe}:{name}"


def resolve_alias(catalog: Catalog, chain: PolicyChain | None, alias: str) -> str:
    """The alias a name means under a policy: RECIPE:NAME as given; NAME shared by the policy
    as is; else the one recipe's NAME there is (several: exit 2, naming them)."""
    if chain is None or chain.current is None or ":" in alias:
        return alias
    if chain.current.trust.alias_rule(alias).shared:
        return alias
    scoped = sorted(a for a in catalog.aliases() if a.endswith(f":{alias}"))
    if len(scoped) == 1:
        return scoped[0]
    if scoped:
        raise ManifestError(
            f"alias {alias} is one per recipe here: {', '.join(scoped)}; name one",
            hint="give RECIPE:NAME",
        )
    return alias
