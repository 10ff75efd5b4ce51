"""Owners' approvals and waivers of gate decisions, as DSSE envelopes.

The payload is an in-toto Statement v1 whose subjects are the variants the gate judged (one
per seed, by variant id and artifact sha256) and whose predicate binds the run, the gate, the
gate's verdict and the digest of its evidence:

    predicateType: https://compressgate.dev/gate-signoff/v1
    predicate: {decision: approve | waive, run_id, gate, verdict, evidence_sha256,
                recipe_sha256, owner, reason, expires, signed_at, catalog_head}

`catalog_head` ({size, sha256}: the chain head the signer saw) is bound under a catalog's
policy; `audit verify` checks the chain still passes through it.

An envelope counts for one gate of one run only when a key of the gate's owner, holding the
`approver` role in the trust file, signed it and every bound field matches that run's recorded
decision; so a sign-off copied onto another run, another gate, or a re-decided gate is refused.
A waiver whose `expires` has passed is kept but no longer counts.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Literal

from compressgate.gates.review import GateDecision, Signoff, expired
from compressgate.recipes.trust import Trust
from compressgate.registry.kernel.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    parse_statement,
    sign,
    statement,
    verified_keys,
)
from compressgate.registry.kernel.errors import IntegrityError, Refused
from compressgate.registry.kernel.keys import PrivateKey

PREDICATE_TYPE = "https://compressgate.dev/gate-signoff/v1"
Kind = Literal["approval", "waiver"]
_DECISION: dict[str, Kind] = {"approve": "approval", "waive": "waiver"}


def signoff_envelope(
    decision: GateDecision,
    key: PrivateKey,
    *,
    kind: Kind,
    recipe_sha256: str,
    owner: str,
    reason: str | None = None,
    expires: datetime | None = None,
    signed_at: datetime | None = None,
    head: tuple[int, str] | None = None,
) -> Envelope:
    """Sign an approval (of a passing gate) or a waiver (of a failing one)."""
    if kind == "approval" and decision.verdict != "pass":
        raise Refused(
            f"gate '{decision.gate}' of run {decision.run_id} failed; a failing gate is not "
            "approved",
            hint=f"its owner may waive it: `compressgate waive {decision.run_id} "
            f"--gate {decision.gate} --key KEY --reason TEXT`",
        )
    if kind == "waiver" and decision.verdict != "fail":
        raise Refused(
            f"gate '{decision.gate}' of run {decision.run_id} passed; there is nothing to waive",
            hint="a passing gate that needs approval is approved with `compressgate approve`",
        )
    if kind == "waiver" and not (reason or "").strip():
        raise Refused("a waiver needs a reason", hint="give --reason TEXT")
    when = (signed_at or datetime.now(UTC)).astimezone(UTC)
    predicate: dict[str, Any] = {
        "decision": "approve" if kind == "approval" else "waive",
        "run_id": decision.run_id,
        "gate": decision.gate,
        "verdict": decision.verdict,
        "evidence_sha256": decision.evidence_sha256,
        "recipe_sha256": recipe_sha256,
        "owner": owner,
        "reason": reason,
        "expires": None if expires is None else _iso(expires),
        "signed_at": _iso(when),
    }
    if head is not None:  # the catalog head the signer saw (under a policy)
        predicate["catalog_head"] = {"size": head[0], "sha256": head[1]}
    payload = statement(decision.subjects(), PREDICATE_TYPE, predicate)
    return sign(payload, INTOTO_PAYLOAD_TYPE, [key])


def check_signoff(
    envelope: Envelope,
    *,
    trust: Trust,
    decision: GateDecision,
    recipe_sha256: str,
    source: str,
    recipe_signers: Sequence[str] = (),
) -> Signoff:
    """The sign-off an envelope carries for `decision`; exit 3 if it does not bind to it or
    was not signed by the gate's owner as an approver, or (separation of duties) the owner is
    one of `recipe_signers`. (Expiry is judged by `counting`.)"""
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(
            f"{source}: payloadType is {envelope.payload_type!r}, not {INTOTO_PAYLOAD_TYPE!r}"
        )
    stated = parse_statement(envelope.payload, source=source)
    if stated.predicate_type != PREDICATE_TYPE:
        raise IntegrityError(
            f"{source}: the statement is a {stated.predicate_type!r}, not a gate sign-off"
        )
    predicate = stated.predicate
    signers = verified_keys(envelope, trust.all_keys())
    if not signers:
        raise IntegrityError(
            f"{source}: no signature verifies with a key in the trust file",
            hint="the owner signs with the key registered by `compressgate trust add`",
        )
    owners = {key.keyid: trust.owner_of(key) for key in signers}
    approvers = trust.keys_with_role("approver")
    accepted = [key for key in signers if owners[key.keyid] == decision.owner and key in approvers]
    if not accepted:
        who = ", ".join(sorted({str(o) for o in owners.values()}))
        raise IntegrityError(
            f"{source}: signed by '{who}', but gate '{decision.gate}' belongs to "
            f"'{decision.owner}': only its owner's approver key signs it off",
        )
    if decision.owner in recipe_signers:
        raise IntegrityError(
            f"{source}: '{decision.owner}' signed the recipe of run {decision.run_id} and may "
            f"not also sign off its gate '{decision.gate}' (separation of duties)",
            hint="the policy's `separation: false` allows it; otherwise another owner holds "
            "the gate",
        )
    mismatches = [
        f"{field} is {predicate.get(field)!r}, the decision's is {expected!r}"
        for field, expected in (
            ("run_id", decision.run_id),
            ("gate", decision.gate),
            ("verdict", decision.verdict),
            ("evidence_sha256", decision.evidence_sha256),
            ("recipe_sha256", recipe_sha256),
            ("owner", decision.owner),
        )
        if predicate.get(field) != expected
    ]
    subjects = sorted((name, digest or "") for name, digest in stated.subjects)
    if subjects != sorted(decision.subjects()):
        mismatches.append("its subjects are not the variants this gate judged")
    if mismatches:
        raise IntegrityError(
            f"{source}: this sign-off does not belong to gate '{decision.gate}' of run "
            f"{decision.run_id}: {'; '.join(mismatches)}",
            hint="a sign-off binds one run, gate, verdict and evidence; sign a new one",
        )
    kind = _DECISION.get(str(predicate.get("decision")))
    if kind is None or (kind == "approval") != (decision.verdict == "pass"):
        raise IntegrityError(
            f"{source}: a {predicate.get('decision')!r} does not fit a gate that "
            f"{'passed' if decision.verdict == 'pass' else 'failed'}"
        )
    expires = _instant(predicate.get("expires"), "expires", source, required=False)
    signed_at = _instant(predicate.get("signed_at"), "signed_at", source, required=True)
    reason = predicate.get("reason")
    if reason is not None and not isinstance(reason, str):
        raise IntegrityError(f"{source}: its reason is a {type(reason).__name__}, not text")
    return Signoff(
        id=hashlib.sha256(envelope.to_json()).hexdigest(),
        kind=kind,
        gate=decision.gate,
        owner=decision.owner,
        keyid=accepted[0].keyid,
        verdict=decision.verdict,
        reason=reason,
        expires=expires,
        signed_at=str(signed_at),
    )


def _instant(value: object, field: str, source: str, *, required: bool) -> str | None:
    """A timestamp of the predicate: ISO 8601 text with a time zone (exit 3 otherwise), as
    `signoff_envelope` writes it; a sign-off signed elsewhere is held to the same form, so
    that no reader ever meets an instant it cannot compare."""
    if value is None:
        if required:
            raise IntegrityError(f"{source}: the sign-off has no {field}")
        return None
    if not isinstance(value, str):
        raise IntegrityError(f"{source}: its {field} is a {type(value).__name__}, not a time")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise IntegrityError(f"{source}: its {field} {value!r} is not ISO 8601") from None
    if moment.tzinfo is None:
        raise IntegrityError(
            f"{source}: its {field} {value!r} has no time zone",
            hint="write the instant in UTC, e.g. 2026-12-31T23:59:59Z; `compressgate waive "
            "--expires DATE` does",
        )
    return value


def counting(signoff: Signoff, now: datetime) -> Signoff:
    """The sign-off as it counts at `now`: an expired waiver is kept but does not count, nor
    does one whose expiry cannot be compared (recorded before expiries were checked)."""
    try:
        gone = expired(signoff.expires, now)
    except ValueError as exc:
        return signoff.model_copy(update={"counts": False, "problem": f"unreadable expiry: {exc}"})
    if gone:
        return signoff.model_copy(
            update={"counts": False, "problem": f"expired at {signoff.expires}"}
        )
    return signoff


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
