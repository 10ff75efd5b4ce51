"""Run attestations: the runner signs what a run made and measured, as a SLSA build provenance
is signed by its builder.

    predicateType: https://compressgate.dev/run/v2
    subject: [{name: <variant id>, digest: {sha256: <artifact>}}, ...]   every finished stage
    predicate: {run_id, recipe_sha256, status, environment_sha256, lock_sha256, runner,
                evidence: {<variant id>: <sha256 of its metrics document, as the catalog
                                          stores it (`chain.stored`)>},
                decisions: [{gate, stage, verdict, evidence_sha256}],
                policy: {version, sha256}, catalog_head: {size, sha256}}

Under a catalog's policy a run needs a key of an owner holding the `runner` role; the
attestation is recorded with the run. An alias rule may require that a run was attested by
named runners (`attested_by: [ci]`), so that a laptop run cannot reach `production` by itself.
`audit verify` recomputes the subjects, the metrics digests and the decisions from what the
catalog holds and checks them against the signed statement: evidence rewritten in the catalog,
even with its decisions re-derived and its hash chain recomputed, no longer matches.

Version 2 digests each variant's metrics document exactly as the catalog stores it, so an
audit hashes the stored text and parses none of it; version 1 (run/v1, still verified) digested
the metrics' full JSON, which an audit had to rebuild from the stored form.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from compressgate.registry.kernel.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    parse_statement,
    sign,
    statement,
    verified_keys,
)
from compressgate.registry.kernel.errors import IntegrityError

if TYPE_CHECKING:
    from compressgate.gates.review import GateDecision
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.records import RunRecord
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.governance.evidence import StoredRun
    from compressgate.registry.kernel.keys import PrivateKey

RUN_PREDICATE_TYPE = "https://compressgate.dev/run/v2"
RUN_V1 = "https://compressgate.dev/run/v1"  # metrics digested as full JSON (`metrics_digest`)


@dataclass(frozen=True)
class Attested:
    owner: str
    keyid: str
    head_size: int
    head_sha256: str


def metrics_digest(metrics: dict[str, Any]) -> str:
    """sha256 of a stage's metrics as JSON (sorted keys, no spaces): run/v1's evidence."""
    body = {k: v.model_dump(mode="json") for k, v in sorted(metrics.items())}
    return hashlib.sha256(
        json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")
    ).hexdigest()


def stored_digest(metrics: dict[str, Any]) -> str:
    """sha256 of a stage's metrics document as the catalog stores it: run/v2's evidence."""
    from compressgate.registry.catalog.chain import pack_metrics, stored

    return hashlib.sha256(stored(pack_metrics(metrics)).encode("utf-8")).hexdigest()


def _claims(
    record: RunRecord | StoredRun,
    decisions: list[GateDecision],
    environment_sha256: str,
    lock_sha256: str,
    predicate_type: str = RUN_PREDICATE_TYPE,
) -> tuple[list[tuple[str, str]], dict[str, Any]]:
    from compressgate.registry.governance.evidence import StoredStage

    def evidence_of(stage: Any) -> str:
        if isinstance(stage, StoredStage):
            return stage.stored_sha256 if predicate_type != RUN_V1 else stage.full_sha256()
        return (
            stored_digest(stage.metrics)
            if predicate_type != RUN_V1
            else metrics_digest(stage.metrics)
        )

    done = [s for s in record.stages if s.status == "done" and s.artifact_sha256]
    subjects = [(f"{record.run_id}/{s.seed}/{s.name}", str(s.artifact_sha256)) for s in done]
    evidence = {f"{record.run_id}/{s.seed}/{s.name}": evidence_of(s) for s in done}
    claims = {
        "run_id": record.run_id,
        "recipe_sha256": record.recipe.sha256,
        "status": record.status,
        "environment_sha256": environment_sha256,
        "lock_sha256": lock_sha256,
        "evidence": evidence,
        "decisions": [
            {
                "gate": d.gate,
                "stage": d.stage,
                "verdict": d.verdict,
                "evidence_sha256": d.evidence_sha256,
            }
            for d in decisions
        ],
    }
    return subjects, claims


def attest(
    record: RunRecord,
    decisions: list[GateDecision],
    key: PrivateKey,
    *,
    owner: str,
    environment_sha256: str,
    lock_sha256: str,
    policy: tuple[int, str],
    head: tuple[int, str],
) -> Envelope:
    """The runner's signed statement of a finished run."""
    subjects, claims = _claims(record, decisions, environment_sha256, lock_sha256)
    predicate = {
        **claims,
        "runner": owner,
        "policy": {"version": policy[0], "sha256": policy[1]},
        "catalog_head": {"size": head[0], "sha256": head[1]},
    }
    return sign(statement(subjects, RUN_PREDICATE_TYPE, predicate), INTOTO_PAYLOAD_TYPE, [key])


def record_attested(
    catalog: Catalog,
    record: RunRecord,
    decisions: list[GateDecision],
    key: PrivateKey,
    *,
    owner: str,
    policy: tuple[int, str],
) -> None:
    """Attest a run the catalog holds, at its current head, and record the attestation."""
    info = catalog.run_info(record.run_id)
    head = catalog.head()
    envelope = attest(
        record,
        decisions,
        key,
        owner=owner,
        environment_sha256=info.environment_sha256,
        lock_sha256=info.lock_sha256,
        policy=policy,
        head=(head.size, head.sha256),
    )
    catalog.record_attestation(
        run_id=record.run_id,
        owner=owner,
        keyid=key.public.keyid,
        policy_version=policy[0],
        envelope=envelope.to_json().decode("utf-8"),
    )


def runner_of(envelope: Envelope, trust: Trust, policy_version: int, source: str) -> str:
    """The owner of the runner key that signed `envelope`; exit 3 if none of the policy's."""
    runners = trust.keys_with_role("runner")
    signers = verified_keys(envelope, runners)
    if not signers:
        raise IntegrityError(
            f"{source}: no signature verifies with a runner key of policy v{policy_version}",
            hint="a run is attested with the key of an owner holding the 'runner' role",
        )
    return runners[signers[0]]


def check_attestation(
    envelope: Envelope,
    *,
    trust: Trust,
    policy_version: int,
    record: RunRecord | StoredRun,
    decisions: list[GateDecision],
    environment_sha256: str,
    lock_sha256: str,
    source: str,
) -> Attested:
    """Who attested the run, once the statement matches what the catalog holds of it (every
    variant, every metrics digest, every decision); exit 3 naming the first difference."""
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(f"{source}: payloadType is {envelope.payload_type!r}, not in-toto")
    stated = parse_statement(envelope.payload, source=source)
    if stated.predicate_type not in (RUN_PREDICATE_TYPE, RUN_V1):
        raise IntegrityError(f"{source}: the statement is a {stated.predicate_type!r}, not a run")
    owner = runner_of(envelope, trust, policy_version, source)
    runners = trust.keys_with_role("runner")
    keyid = next(k.keyid for k in verified_keys(envelope, runners))
    subjects, claims = _claims(
        record, decisions, environment_sha256, lock_sha256, stated.predicate_type
    )
    predicate = stated.predicate
    problems = [
        f"{field} differs"
        for field, value in claims.items()
        if predicate.get(field) != value and field != "evidence"
    ]
    signed_evidence = predicate.get("evidence") or {}
    changed = sorted(v for v, sha in claims["evidence"].items() if signed_evidence.get(v) != sha)
    if changed or set(signed_evidence) != set(claims["evidence"]):
        problems.append(f"the metrics of {', '.join(changed) or 'its variants'} differ")
    if sorted((n, d or "") for n, d in stated.subjects) != sorted(subjects):
        problems.append("its variants or their artifacts differ")
    if predicate.get("runner") != owner:
        problems.append(f"it names runner {predicate.get('runner')!r}, signed by {owner!r}")
    policy = predicate.get("policy")
    if not isinstance(policy, dict) or policy.get("version") != policy_version:
        problems.append(f"it was not signed under policy v{policy_version}")
    head = predicate.get("catalog_head")
    if not isinstance(head, dict) or not isinstance(head.get("size"), int):
        problems.append("it names no catalog head")
    if problems:
        raise IntegrityError(
            f"{source}: the catalog no longer holds what the runner attested: "
            + "; ".join(problems),
            hint="the run's records were changed after it ran; restore the catalog from a backup",
        )
    assert isinstance(head, dict)
    return Attested(owner, keyid, int(head["size"]), str(head.get("sha256")))
