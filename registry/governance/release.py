"""Signed releases: the statement a releaser signs to move an alias, and its check.

    predicateType: https://compressgate.dev/release/v1
    subject: [{name: <variant id>, digest: {sha256: <artifact>}}]
    predicate: {alias, action: promote | rollback, run_id, recipe_sha256, previous_variant_id,
                reason, owner, catalog_head: {size, sha256}, policy: {version, sha256},
                signed_at}

A release counts when a key of an owner holding the `releaser` role in the policy in force
signed it, the alias's rule admits that owner (`aliases.NAME.releasers`), a rule that separates
duties (`production` by default) finds the owner among none of the recipe's signers, and every
bound field matches the move recorded with it. `catalog_head` is the chain head the releaser
saw: `audit verify` checks the chain still passes through it, so history below a signed head
cannot be rewritten unseen.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from compressgate.recipes.trust import Trust
from compressgate.registry.kernel.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    Statement,
    parse_statement,
    sign,
    statement,
    verified_keys,
)
from compressgate.registry.kernel.errors import IntegrityError
from compressgate.registry.kernel.keys import PrivateKey, PublicKey

if TYPE_CHECKING:
    from compressgate.registry.catalog.records import AliasMove, ReleaseRecord
    from compressgate.registry.governance.policy import InForce

RELEASE_PREDICATE_TYPE = "https://compressgate.dev/release/v1"


@dataclass(frozen=True)
class Move:
    """What a release binds: the alias move as it will be (or was) recorded."""

    alias: str
    action: str
    variant_id: str
    artifact_sha256: str
    run_id: str
    recipe_sha256: str
    previous_variant_id: str | None


@dataclass(frozen=True)
class Released:
    owner: str
    keyid: str
    head_size: int
    head_sha256: str
    policy_version: int


def release_envelope(
    move: Move,
    key: PrivateKey,
    *,
    owner: str,
    reason: str,
    head: tuple[int, str],
    policy: tuple[int, str],
) -> Envelope:
    predicate: dict[str, Any] = {
        "alias": move.alias,
        "action": move.action,
        "run_id": move.run_id,
        "recipe_sha256": move.recipe_sha256,
        "previous_variant_id": move.previous_variant_id,
        "reason": reason,
        "owner": owner,
        "catalog_head": {"size": head[0], "sha256": head[1]},
        "policy": {"version": policy[0], "sha256": policy[1]},
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    payload = statement(
        [(move.variant_id, move.artifact_sha256)], RELEASE_PREDICATE_TYPE, predicate
    )
    return sign(payload, INTOTO_PAYLOAD_TYPE, [key])


def authorize(
    signed_by: list[PublicKey],
    trust: Trust,
    policy_version: int,
    alias: str,
    run_id: str,
    recipe_signers: list[str],
    source: str,
) -> tuple[str, PublicKey]:
    """The releaser among the keys `signed_by` and their key, once the policy lets them move
    `alias` for a run whose recipe `recipe_signers` signed; exit 3 otherwise."""
    releasers = trust.keys_with_role("releaser")
    signers = [k for k in signed_by if k in releasers]
    if not signers:
        known = [k for k in signed_by if trust.owner_of(k) is not None]
        who = ", ".join(sorted({trust.owner_of(k) or "?" for k in known}))
        raise IntegrityError(
            f"{source}: "
            + (
                f"signed by {who}, who lack the 'releaser' role in policy v{policy_version}"
                if known
                else f"no signature verifies with a releaser key of policy v{policy_version}"
            ),
            hint="an alias moves only with a releaser's key (`--key`); the policy names them",
        )
    owner = releasers[signers[0]]
    rule = trust.alias_rule(alias)
    if rule.releasers is not None and owner not in rule.releasers:
        raise IntegrityError(
            f"{source}: '{owner}' may not move alias {alias}: policy v{policy_version} "
            f"lets only {', '.join(rule.releasers) or 'nobody'} move it"
        )
    if rule.separate and owner in recipe_signers:
        raise IntegrityError(
            f"{source}: '{owner}' signed the recipe of run {run_id} and may not also "
            f"release it to {alias} (separation of duties, policy v{policy_version})",
            hint="another releaser moves it",
        )
    return owner, signers[0]


def check_release(
    envelope: Envelope,
    *,
    trust: Trust,
    policy_version: int,
    move: Move,
    recipe_signers: list[str],
    source: str,
) -> Released:
    """The releaser and the head a release envelope binds, once it counts for `move` under the
    policy `trust` (version `policy_version`); exit 3 naming what does not hold."""
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(f"{source}: payloadType is {envelope.payload_type!r}, not in-toto")
    stated = parse_statement(envelope.payload, source=source)
    if stated.predicate_type != RELEASE_PREDICATE_TYPE:
        raise IntegrityError(
            f"{source}: the statement is a {stated.predicate_type!r}, not a release"
        )
    owner, signer = authorize(
        verified_keys(envelope, trust.all_keys()),
        trust,
        policy_version,
        move.alias,
        move.run_id,
        recipe_signers,
        source,
    )
    expected = {
        "alias": move.alias,
        "action": move.action,
        "run_id": move.run_id,
        "recipe_sha256": move.recipe_sha256,
        "previous_variant_id": move.previous_variant_id,
        "owner": owner,
    }
    mismatches, head = binding_mismatches(
        stated,
        expected,
        (move.variant_id, move.artifact_sha256),
        policy_version,
        whose="the move's",
        what="the variant moved to",
    )
    if mismatches:
        raise IntegrityError(
            f"{source}: this release does not belong to the move of {move.alias}: "
            + "; ".join(mismatches)
        )
    assert head is not None
    return Released(owner, signer.keyid, *head, policy_version)


def binding_mismatches(
    stated: Statement,
    expected: dict[str, Any],
    subject: tuple[str, str],
    policy_version: int,
    *,
    whose: str,
    what: str,
) -> tuple[list[str], tuple[int, str] | None]:
    """What a signed statement of ours (a release, an annotation) says that its record does
    not: each field of `expected` against its predicate (`whose` the record's value), its one
    subject (`what` it must be: `subject` by digest), a catalog head and the policy version it
    was signed under. The mismatches, and the head (size, sha256) when it names one."""
    predicate = stated.predicate
    mismatches = [
        f"{field} is {predicate.get(field)!r}, {whose} is {value!r}"
        for field, value in expected.items()
        if predicate.get(field) != value
    ]
    if [(n, d) for n, d in stated.subjects] != [subject]:
        mismatches.append(f"its subject is not {what}")
    head, policy = predicate.get("catalog_head"), predicate.get("policy")
    named = (
        isinstance(head, dict)
        and isinstance(head.get("size"), int)
        and isinstance(head.get("sha256"), str)
    )
    if not named:
        mismatches.append("it names no catalog head")
    if not isinstance(policy, dict) or policy.get("version") != policy_version:
        mismatches.append(f"it was not signed under policy v{policy_version}")
    found = (int(head["size"]), str(head["sha256"])) if named and isinstance(head, dict) else None
    return mismatches, found


def check_move(
    move: AliasMove,
    release: ReleaseRecord | None,
    policy: InForce | None,
    *,
    run_id: str,
    recipe_sha256: str,
    recipe_signers: list[str],
    hint: str,
) -> Released | None:
    """The signed release of a recorded alias move, checked against `policy`, the version in
    force when the move was recorded, as `audit verify` and `alias resolve` both check it: exit
    3 (with `hint`) naming what does not hold; None for a move under the unsigned regime."""
    what = f"alias move {move.seq} ({move.alias} -> {move.variant_id})"
    if policy is None:
        if release is not None:
            raise IntegrityError(f"{what}: a release recorded before any policy")
        return None
    if release is None:
        raise IntegrityError(
            f"{what} has no signed release, though policy v{policy.version} was in force",
            hint=hint,
        )
    if release.policy_version != policy.version:
        raise IntegrityError(
            f"{what}: its release names policy v{release.policy_version}, v{policy.version} "
            "was in force"
        )
    source = f"the release of {what}"
    try:
        envelope = Envelope.from_json(release.envelope.encode("utf-8"), source=source)
        done = check_release(
            envelope,
            trust=policy.trust,
            policy_version=policy.version,
            move=Move(
                alias=move.alias,
                action=move.action,
                variant_id=move.variant_id,
                artifact_sha256=move.artifact_sha256,
                run_id=run_id,
                recipe_sha256=recipe_sha256,
                previous_variant_id=move.previous_variant_id,
            ),
            recipe_signers=recipe_signers,
            source=source,
        )
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}", hint=hint) from None
    if done.owner != release.owner or done.owner != move.actor:
        raise IntegrityError(
            f"{what}: recorded as moved by {move.actor!r}, its release is signed by {done.owner!r}"
        )
    return done
