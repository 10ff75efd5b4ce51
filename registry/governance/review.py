"""Gated review of a run: its status from the recorded gate decisions and sign-offs, and the
recording of owners' approvals and waivers.

Every recorded envelope is checked again whenever a status is computed. Under a catalog's
policy, each against the policy version in force when it was recorded (a sign-off survives its
key's later rotation out of the policy; one recorded before the first version is judged by
version 1, the trust file the catalog adopted), and a recipe's signers may not approve or waive
its gates unless the policy turns `separation` off. Under the unsigned regime (no policy),
against the trust file as it is now. A waiver past its expiry no longer counts.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from compressgate.gates.review import (
    GateDecision,
    ReviewStatus,
    SeedJudgement,
    Signoff,
    decide,
    evidence_digest,
    review,
)
from compressgate.gates.signoff import Kind, check_signoff, counting, signoff_envelope
from compressgate.gates.verdicts import recorded_rule
from compressgate.recipes.load import parse_recipe
from compressgate.recipes.manifest import Recipe
from compressgate.recipes.trust import Trust, load_trust
from compressgate.registry.catalog.records import RunHead, RunRecord
from compressgate.registry.catalog.repository import Catalog, JudgementRecord, SignoffRecord, now
from compressgate.registry.governance.policy import PolicyChain
from compressgate.registry.kernel.dsse import Envelope
from compressgate.registry.kernel.errors import (
    CompressgateError,
    IntegrityError,
    ManifestError,
    NotFoundError,
    Refused,
)
from compressgate.registry.kernel.keys import PrivateKey


def trust_path_for(catalog: Catalog, run_id: str, explicit: Path | None) -> Path:
    """The trust file to judge a run's sign-offs with: `explicit`, else `trust.yaml` beside the
    recipe the run recorded."""
    if explicit is not None:
        return explicit
    return trust_path_of(catalog.run_head(run_id), None)


def trust_path_of(record: RunRecord | RunHead, explicit: Path | None) -> Path:
    """`trust_path_for` of a run record already read."""
    return explicit if explicit is not None else Path(record.recipe.path).parent / "trust.yaml"


TrustSource = Trust | Callable[[], Trust] | PolicyChain


def status(
    catalog: Catalog,
    run_id: str,
    trust: TrustSource,
    *,
    at: datetime | None = None,
    record: RunRecord | RunHead | None = None,
    recipe: Recipe | None = None,
) -> ReviewStatus:
    """The run's review status now (or at `at`). `trust` may be a function that loads it: it
    is called only if the run has sign-offs to check. A caller that holds the run's record or
    its parsed recipe already passes them: they are not read again; else the run's recipe and
    status are read (`Catalog.run_head`), not its stages."""
    if record is None:
        record = catalog.run_head(run_id)
    decisions = catalog.gate_decisions(run_id) or _before_v2(catalog.judgements(run_id=run_id))
    if recipe is None:
        recorded = catalog.recipe(record.recipe.sha256)
        recipe, _ = parse_recipe(recorded.content.encode("utf-8"), f"recipe {recorded.sha256[:12]}")
    parsed = recipe
    signoffs = _signoffs(
        catalog, run_id, decisions, trust, record.recipe.sha256, at, record.recipe.signers
    )
    resumed = catalog.resume_of(run_id)
    if resumed is not None:
        signoffs += _carried(catalog, resumed.resumed_from, resumed.waivers, decisions, trust, at)
    stopped = next(
        (d.stage for d in decisions if d.verdict == "fail" and record.status == "stopped"), None
    )
    return review(
        run_id=run_id,
        recipe=record.recipe.name,
        recipe_version=record.recipe.version,
        recipe_sha256=record.recipe.sha256,
        run_status=record.status,
        stopped_after=stopped,
        decisions=decisions,
        signoffs=signoffs,
        gate_names=[g.name for g in parsed.gates],
    )


def _carried(
    catalog: Catalog,
    stopped: str,
    waivers: list[dict[str, str]],
    decisions: list[GateDecision],
    trust: TrustSource,
    at: datetime | None,
) -> list[Signoff]:
    """The waivers of the stopped run a run resumed, as they count for it: each still counting
    on the stopped run, and the resumed run's decision of its gate the same failure on the
    same evidence (the same variants judged, the same figures)."""
    original = status(catalog, stopped, trust, at=at)
    by_gate = {g.decision.gate: g for g in original.gates}
    mine = {d.gate: d for d in decisions}
    out = []
    for waiver in waivers:
        gate = by_gate.get(waiver["gate"])
        found = next(
            (s for s in (gate.signoffs if gate else []) if s.id == waiver["signoff_id"]), None
        )
        if found is None or gate is None:
            continue
        carried = found.model_copy(update={"carried_from": stopped})
        decision = mine.get(waiver["gate"])
        if decision is None or not _same_failure(gate.decision, decision):
            carried = carried.model_copy(
                update={
                    "counts": False,
                    "problem": f"the gate's evidence differs from run {stopped}'s, which the "
                    "waiver was signed for",
                }
            )
        out.append(carried)
    return out


def _same_failure(before: GateDecision, after: GateDecision) -> bool:
    def seen(d: GateDecision) -> list[tuple[int, str, float | None, str]]:
        return [(s.seed, s.artifact_sha256, s.estimate, s.verdict) for s in d.seeds]

    return (
        before.verdict == after.verdict == "fail"
        and (before.estimate, before.ci_low, before.ci_high, before.threshold)
        == (after.estimate, after.ci_low, after.ci_high, after.threshold)
        and seen(before) == seen(after)
    )


def checked_signoffs(catalog: Catalog, run_id: str, trust: TrustSource) -> list[Signoff]:
    """Every sign-off recorded for a run, each checked (`counts`, `problem`), including any
    for a gate the run has no decision of."""
    info = catalog.run_info(run_id)
    decisions = catalog.gate_decisions(run_id) or _before_v2(catalog.judgements(run_id=run_id))
    return _signoffs(catalog, run_id, decisions, trust, info.recipe_sha256, None, info.signers)


def _before_v2(per_seed: list[JudgementRecord]) -> list[GateDecision]:
    """The decisions of a run recorded before schema v2, which kept per-seed judgements only:
    each gate decided as `every` seed (the only policy then)."""
    gates: dict[str, list[JudgementRecord]] = {}
    for each in per_seed:
        gates.setdefault(each.gate, []).append(each)
    out = []
    for seeds in gates.values():
        first = seeds[0]
        try:
            gate, _ = recorded_rule(first.rule)
        except ValueError as exc:  # pydantic's ValidationError among them
            raise IntegrityError(
                f"gate '{first.gate}' of run {first.run_id}: its recorded rule cannot be read "
                f"({str(exc).splitlines()[0]})",
                hint="`compressgate audit verify` finds a changed record",
            ) from None
        verdicts = [SeedJudgement.model_validate(d.model_dump()) for d in seeds]
        decided = decide(
            gate.model_copy(update={"seeds": "every", "approval": "none"}),
            first.run_id,
            first.stage,
            verdicts,
            [None] * len(seeds),
            [None] * len(seeds),
        )
        decision = decided.model_copy(
            update={
                "note": f"recorded before schema v2, per seed: {decided.note}",
                "decided_at": first.decided_at,
            }
        )
        out.append(decision.model_copy(update={"evidence_sha256": evidence_digest(decision)}))
    return out


def _signoffs(
    catalog: Catalog,
    run_id: str,
    decisions: list[GateDecision],
    trust: TrustSource,
    recipe_sha256: str,
    at: datetime | None,
    recipe_signers: list[str] = [],  # noqa: B006 - read only
) -> list[Signoff]:
    by_gate = {d.gate: d for d in decisions}
    moment = at or datetime.now(UTC)
    out = []
    rows = catalog.signoffs(run_id)
    chain = trust if isinstance(trust, PolicyChain) and trust.current is not None else None
    seqs = catalog.signoff_seqs(run_id) if chain is not None and rows else {}
    if rows and chain is None and not isinstance(trust, Trust):
        trust = trust()  # type: ignore[operator]
    for row in rows:
        source = f"{row.kind} {row.id[:12]} of gate '{row.gate}'"
        decision = by_gate.get(row.gate)
        base = Signoff(
            id=row.id,
            kind=row.kind,  # type: ignore[arg-type]
            gate=row.gate,
            owner=row.owner,
            keyid=row.keyid,
            verdict=row.verdict,  # type: ignore[arg-type]
            reason=row.reason,
            expires=row.expires,
            signed_at="",
            recorded_at=row.recorded_at,
            counts=False,
        )
        if decision is None:
            out.append(base.model_copy(update={"problem": "the run has no such gate decision"}))
            continue
        try:
            envelope = Envelope.from_json(row.envelope.encode("utf-8"), source=source)
            judge, separate = _judge(chain, seqs.get(row.id), trust)
            checked = check_signoff(
                envelope,
                trust=judge,
                decision=decision,
                recipe_sha256=recipe_sha256,
                source=source,
                recipe_signers=recipe_signers if separate else (),
            )
        except CompressgateError as exc:
            out.append(base.model_copy(update={"problem": str(exc)}))
            continue
        out.append(counting(checked.model_copy(update={"recorded_at": row.recorded_at}), moment))
    return out


def _head(catalog: Catalog) -> tuple[int, str]:
    head = catalog.head()
    return head.size, head.sha256


def _judge(chain: PolicyChain | None, seq: int | None, trust: object) -> tuple[Trust, bool]:
    """The trust a recorded sign-off is checked with, and whether duties are separated: under
    a policy, the version in force when it was recorded (version 1 for one recorded before
    it, without separation: the unsigned regime did not ask it)."""
    if chain is None:
        assert isinstance(trust, Trust)
        return trust, False
    assert chain.versions
    at = chain.at(seq) if seq is not None else chain.current
    if at is None:
        return chain.versions[0].trust, False
    return at.trust, at.trust.separation


def sign_off(
    catalog: Catalog,
    run_id: str,
    gate: str,
    *,
    kind: Kind,
    trust: Trust | PolicyChain,
    key: PrivateKey | None = None,
    envelope: Envelope | None = None,
    reason: str | None = None,
    expires: datetime | None = None,
    source: str = "the sign-off",
) -> tuple[Signoff, Envelope]:
    """Sign (with `key`) or take (`envelope`) an approval or waiver of `gate` of `run_id`,
    check it binds to that gate's decision, and record it. Exit 3 for a key or envelope that
    is not the gate owner's or not for this run; exit 1 for a gate in the wrong state."""
    decisions = {d.gate: d for d in catalog.gate_decisions(run_id)}
    if gate not in decisions:
        catalog.run_info(run_id)  # exit 4 for an unknown run
        known = ", ".join(decisions) or "none"
        raise NotFoundError(
            f"run {run_id} has no decision for gate '{gate}'; its gates: {known}",
            hint="a gate the pipeline never reached cannot be signed off",
        )
    decision = decisions[gate]
    if kind == "approval" and decision.approval != "required" and decision.verdict == "pass":
        raise Refused(
            f"gate '{gate}' of run {run_id} passed and needs no approval; nothing recorded",
            hint="only gates with `approval: required` wait for their owner",
        )
    record = catalog.run_head(run_id)
    chain = trust if isinstance(trust, PolicyChain) and trust.current is not None else None
    judge = chain.current.trust if chain is not None and chain.current else trust
    assert isinstance(judge, Trust)
    separate = chain is not None and judge.separation
    if expires is not None and expires <= datetime.now(UTC):
        raise ManifestError(
            f"--expires {expires.isoformat()} is in the past: the waiver would never count",
            hint="give a future date (YYYY-MM-DD, or an ISO 8601 time)",
        )
    if envelope is None:
        assert key is not None
        owner = judge.owner_of(key.public) or "?"
        envelope = signoff_envelope(
            decision,
            key,
            kind=kind,
            recipe_sha256=record.recipe.sha256,
            owner=owner,
            reason=reason,
            expires=expires,
            head=_head(catalog) if chain is not None else None,
        )
        source = f"the {kind} signed with key {key.public.keyid[:16]}…"
    checked = check_signoff(
        envelope,
        trust=judge,
        decision=decision,
        recipe_sha256=record.recipe.sha256,
        source=source,
        recipe_signers=record.recipe.signers if separate else (),
    )
    if checked.kind != kind:
        raise ManifestError(
            f"{source} is a {checked.kind}, not a {kind}",
            hint=f"use `compressgate {'approve' if checked.kind == 'approval' else 'waive'}`",
        )
    counted = [
        s
        for s in _signoffs(
            catalog, run_id, [decision], trust, record.recipe.sha256, None, record.recipe.signers
        )
        if s.counts and s.kind == checked.kind and s.owner == checked.owner
    ]
    if counted:
        raise Refused(
            f"gate '{gate}' of run {run_id} already has {_article(kind)} {kind} by "
            f"'{checked.owner}' "
            f"(signed {counted[0].signed_at}); nothing recorded",
            hint=f"`compressgate review status {run_id}` shows it",
        )
    first = decision.seeds[0]
    catalog.record_signoff(
        SignoffRecord(
            id=checked.id,
            run_id=run_id,
            gate=gate,
            variant_id=first.variant_id,
            artifact_sha256=first.artifact_sha256,
            kind=checked.kind,
            verdict=checked.verdict,
            owner=checked.owner,
            keyid=checked.keyid,
            reason=checked.reason,
            expires=checked.expires,
            envelope=envelope.to_json().decode("utf-8"),
            recorded_at=now(),
        )
    )
    return checked, envelope


def signing_inputs(
    key_path: Path | None, envelope_path: Path | None
) -> tuple[PrivateKey | None, Envelope | None]:
    """What a sign-off is made from: exactly one of a private key file (`--key`) and a signed
    envelope file (`--envelope`), read and parsed."""
    from compressgate.registry.kernel.keys import load_private_key

    if (key_path is None) == (envelope_path is None):
        raise ManifestError("give exactly one of --key KEY and --envelope FILE")
    if key_path is not None:
        return load_private_key(key_path), None
    assert envelope_path is not None
    try:
        data = envelope_path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"envelope {envelope_path} not found") from None
    return None, Envelope.from_json(data, source=str(envelope_path))


def load_trust_for(catalog: Catalog, run_id: str, explicit: Path | None) -> Callable[[], Trust]:
    """A loader of the trust file for a run's sign-offs (read when there are some to check)."""
    return lambda: load_trust(trust_path_for(catalog, run_id, explicit))


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def parse_expiry(text: str) -> datetime:
    """A waiver's `--expires`: a date (the waiver counts through that day, UTC) or an ISO 8601
    time (a time without a zone is taken as UTC)."""
    from datetime import date, timedelta

    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC) + timedelta(days=1)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ManifestError(
            f"--expires {text!r} is not a date",
            hint="give YYYY-MM-DD (counts through that day, UTC) or an ISO 8601 time",
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resumable(catalog: Catalog, run_id: str, trust: TrustSource) -> list[dict[str, str]]:
    """The waivers a stopped run can be resumed past: every gate that failed where it stopped,
    each with its owner's waiver that counts now ({gate, signoff_id}); exit 1 otherwise."""
    found = status(catalog, run_id, trust)
    if found.run_status != "stopped" or found.stopped_after is None:
        raise Refused(
            f"run {run_id} is {found.run_status}, not stopped: there is nothing to resume",
            hint="`compressgate resume` continues a run a failing gate stopped",
        )
    stopping = [g for g in found.gates if g.decision.stage == found.stopped_after]
    unwaived = [g.decision.gate for g in stopping if g.state == "failed"]
    if unwaived:
        raise Refused(
            f"run {run_id} stopped after stage '{found.stopped_after}': gate(s) "
            f"{', '.join(unwaived)} failed and are not waived",
            hint=f"its owner may waive it: `compressgate waive {run_id} --gate GATE --key KEY "
            "--reason TEXT`",
        )
    return [
        {"gate": g.decision.gate, "signoff_id": s.id}
        for g in stopping
        if g.state == "waived"
        for s in g.signoffs
        if s.counts and s.kind == "waiver"
    ][: len(stopping)]
