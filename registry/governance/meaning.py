"""What `audit verify` checks beyond hashes: that the records still mean what they say.

Someone with write access to the database can append rows and recompute the whole hash chain;
the chain then verifies, so these checks ask what no recomputed hash can fake:

- **policies**: every version signed by the root threshold of the version before it
  (`policy.load_chain`, run when the chain is loaded);
- **decisions**: every gate decision re-derived from the run's recorded metrics and evaluations
  and its rule (`gates.judge.judge_gate`): a verdict flipped in place no longer matches;
- **attestations**: every run a runner attested still holds the variants, metrics and
  decisions the runner signed (`attestation.check_attestation`), against the policy in force
  when it was recorded: evidence rewritten together with its decisions no longer matches;
- **sign-offs** recorded under a policy: each checked against the version in force when it was
  recorded (owner's approver key, separation of duties, bound to the decision), and the chain
  head it names still in the chain;
- **aliases**: every move points at a variant the catalog holds, with that variant's artifact
  digest; under a policy every move has a signed release by a releaser the policy in force let
  move it, and the chain head the releaser saw is still in the chain. So truncating or
  rewriting the chain below the newest signed head is detected without a checkpoint; the
  current target of every alias has its files in the store;
- **annotations** (tags and descriptions): every one names a run or variant the catalog holds;
  under a policy each is signed by a key of an owner of the version in force when it was
  recorded, binds exactly its row (subject and its digest, key, value, actor), and the chain
  head it names is still in the chain (`annotations.check_recorded`).

Records made before the first policy (the unsigned regime) are counted, not judged by it.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from pydantic import BaseModel

from compressgate.registry.governance.policy import PolicyChain
from compressgate.registry.governance.release import check_move
from compressgate.registry.kernel.dsse import Envelope
from compressgate.registry.kernel.errors import CompressgateError, IntegrityError

if TYPE_CHECKING:
    from compressgate.registry.catalog.records import AliasMove
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.catalog.store import ArtifactStore


class MeaningReport(BaseModel):
    """What the meaning checks covered (each count: records checked)."""

    regime: str  # policy | unsigned
    policy_version: int | None = None
    policies: int = 0
    decisions: int = 0
    signoffs: int = 0
    unsigned_signoffs: int = 0  # recorded before the first policy
    moves: int = 0
    releases: int = 0
    unsigned_moves: int = 0  # recorded before the first policy
    signed_heads: int = 0
    attestations: int = 0
    unattested_runs: int = 0  # started under a policy, with no attestation: never released
    annotations: int = 0  # tags and descriptions signed under a policy
    unsigned_annotations: int = 0  # recorded before the first policy


def verify_meaning(
    catalog: Catalog, store: ArtifactStore | None, chain: PolicyChain, *, since: int = 0
) -> MeaningReport:
    """Run every meaning check (see the module docstring); IntegrityError (exit 3) at the
    first record that does not hold. With `since` (a checkpoint's size: `audit verify
    --since`), the records after event `since`: the runs with a decision or attestation after
    it, the sign-offs and alias moves after it, and the heads these name; each count then
    counts those."""
    current = chain.current
    report = MeaningReport(
        regime="unsigned" if current is None else "policy",
        policy_version=None if current is None else current.version,
        policies=len(chain.versions),
    )
    heads: dict[int, tuple[str, str]] = {}  # event number -> (chain hash named, who named it)
    report.decisions, report.attestations, report.unattested_runs = _runs(
        catalog, chain, heads, since
    )
    report.signoffs, report.unsigned_signoffs = _signoffs(catalog, chain, heads, since)
    moves = _moves(catalog, store, chain, heads, since)
    report.moves, report.releases, report.unsigned_moves = moves
    report.annotations, report.unsigned_annotations = _annotations(catalog, chain, heads, since)
    report.signed_heads = _heads(catalog, heads)
    return report


def _runs(
    catalog: Catalog, chain: PolicyChain, heads: dict[int, tuple[str, str]], since: int = 0
) -> tuple[int, int, int]:
    """Re-derive every gate decision from the run's recorded evidence and its rule, and check
    every attestation against what the catalog holds of its run. Many runs are checked in
    several processes (one per CPU, at most 8), each over a contiguous range of runs."""
    import itertools
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    attested = catalog.attestations()
    first = chain.versions[0].seq if chain.versions else None
    unattested = 0
    if first is not None:
        unattested = sum(
            1
            for run, seq in catalog.run_seqs().items()
            if seq > max(first, since) and run not in attested
        )
    new = {run for run, found in attested.items() if found.seq > since}
    runs = sorted({*catalog.decided_runs(since=since), *new})
    count = min(os.cpu_count() or 1, 8)
    forking = "fork" in multiprocessing.get_all_start_methods()
    if len(runs) < _PARALLEL_FROM or count < 2 or not forking:
        found = [_check_runs(catalog.url, runs, catalog, chain)]
    else:
        bounds = [len(runs) * k // count for k in range(count + 1)]
        pages = [runs[lo:hi] for lo, hi in itertools.pairwise(bounds)]
        # fork: each worker opens its own connection and reads the policy chain again.
        context = multiprocessing.get_context("fork")
        with ProcessPoolExecutor(count, mp_context=context) as pool:
            found = list(pool.map(_check_runs, [catalog.url] * count, pages))
    decisions = 0
    for checked, named, error in found:
        if error is not None:
            kind, message, hint = error
            raise kind(message, hint=hint)
        decisions += checked
        heads.update(named)
    return decisions, len(new), unattested


_PARALLEL_FROM = 200  # runs: below this, one process is as fast as starting others
_PAGE = 100  # runs read from the catalog at a time


def _check_runs(
    url: str, runs: list[str], catalog: Catalog | None = None, chain: PolicyChain | None = None
) -> tuple[int, dict[int, tuple[str, str]], tuple[type[CompressgateError], str, str | None] | None]:
    """Check the decisions and attestations of `runs` (in order): the decisions re-derived,
    the chain heads the attestations name, and the first problem's message."""
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.governance.policy import load_chain

    heads: dict[int, tuple[str, str]] = {}
    count = 0
    own = catalog is None
    records = Catalog(url, create=False) if catalog is None else catalog
    try:
        chain = chain or load_chain(records)
        for start in range(0, len(runs), _PAGE):
            page = runs[start : start + _PAGE]
            count += _check_page(records, chain, page, heads)
    except CompressgateError as exc:  # handed back whole: a worker's exception may not pickle
        return count, heads, (type(exc), exc.message, exc.hint)
    finally:
        if own:
            records.close()
    return count, heads, None


def _check_page(
    catalog: Catalog, chain: PolicyChain, runs: list[str], heads: dict[int, tuple[str, str]]
) -> int:
    from compressgate.gates.judge import BASELINE, judge_gate
    from compressgate.gates.power import PowerCheck
    from compressgate.gates.verdicts import recorded_rule
    from compressgate.registry.governance.attestation import check_attestation
    from compressgate.registry.governance.evidence import JUDGED_EVALUATIONS, StoredRun

    attested = catalog.attestations(runs)
    evidence = catalog.run_evidence(runs, JUDGED_EVALUATIONS)
    all_decisions = catalog.gate_decisions_of(runs)
    count = 0
    for run_id in runs:
        decisions = all_decisions.get(run_id, [])
        try:
            record = StoredRun(catalog, evidence[run_id])
        except (CompressgateError, ValueError, KeyError) as exc:
            raise IntegrityError(
                f"run {run_id}: its recorded evidence cannot be read ({exc})"
            ) from None
        for decision in decisions:
            where = f"gate '{decision.gate}' of run {run_id}"
            try:
                gate, judging = recorded_rule(decision.rule)
                power = (
                    None if decision.power is None else PowerCheck.model_validate(decision.power)
                )
                again = judge_gate(
                    gate,
                    record,
                    decision.stage,
                    baseline=BASELINE,
                    decided_at=decision.decided_at,
                    power=power,
                    judging=judging,
                )
            except (CompressgateError, ValueError, KeyError, LookupError) as exc:
                raise IntegrityError(
                    f"{where}: its decision cannot be re-derived from the recorded evidence ({exc})"
                ) from None
            _same_decision(where, decision, again)
            count += 1
        found = attested.get(run_id)
        if found is not None:
            policy = chain.at(found.seq)
            source = f"the attestation of run {run_id}"
            if policy is None or policy.version != found.policy_version:
                raise IntegrityError(f"{source} names policy v{found.policy_version}, not in force")
            done = check_attestation(
                Envelope.from_json(found.envelope.encode("utf-8"), source=source),
                trust=policy.trust,
                policy_version=policy.version,
                record=record,
                decisions=decisions,
                environment_sha256=record.environment_sha256,
                lock_sha256=record.lock_sha256,
                source=source,
            )
            if (done.owner, done.keyid) != (found.owner, found.keyid):
                raise IntegrityError(f"{source}: its row names another runner than its signature")
            if done.head_size >= found.seq:
                raise IntegrityError(f"{source} names a head after itself")
            heads[done.head_size] = (done.head_sha256, source)
    return count


def _same_decision(where: str, recorded: object, again: object) -> None:
    from compressgate.gates.review import GateDecision

    assert isinstance(recorded, GateDecision) and isinstance(again, GateDecision)
    problems = []
    if recorded.verdict != again.verdict:
        problems.append(f"recorded {recorded.verdict}, the evidence says {again.verdict}")
    for field in ("estimate", "ci_low", "ci_high", "threshold"):
        a, b = getattr(recorded, field), getattr(again, field)
        if (a is None) != (b is None) or (
            a is not None and b is not None and not math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
        ):
            problems.append(f"{field} recorded {a}, the evidence gives {b}")
    mine = [(s.seed, s.verdict) for s in recorded.seeds]
    theirs = [(s.seed, s.verdict) for s in again.seeds]
    if mine != theirs:
        problems.append(f"per-seed verdicts recorded {mine}, the evidence gives {theirs}")
    if problems:
        raise IntegrityError(
            f"{where} does not follow from its evidence: {'; '.join(problems)}",
            hint="the decision was changed after it was judged; restore the catalog from a backup",
        )


def _signoffs(
    catalog: Catalog, chain: PolicyChain, heads: dict[int, tuple[str, str]], since: int = 0
) -> tuple[int, int]:
    """Every sign-off recorded under a policy, checked against the version then in force."""
    from compressgate.registry.governance.review import checked_signoffs

    first = chain.versions[0].seq if chain.versions else None
    checked = unsigned = 0
    for run_id, every in catalog.signed_runs().items():
        seqs = [s for s in every if s > since]
        if not seqs:
            continue
        under = [s for s in seqs if first is not None and s > first]
        unsigned += len(seqs) - len(under)
        if not under:
            _readable(catalog, run_id)
            continue
        found = checked_signoffs(catalog, run_id, chain)
        by_id = catalog.signoff_seqs(run_id)
        rows = {r.id: r for r in catalog.signoffs(run_id)}
        for signoff in found:
            seq = by_id.get(signoff.id)
            if seq is None or seq not in under:
                continue
            if not signoff.counts and not (signoff.problem or "").startswith("expired"):
                raise IntegrityError(
                    f"{signoff.kind} {signoff.id[:12]} of gate '{signoff.gate}' of run {run_id} "
                    f"(event {seq}) does not hold under the policy in force when it was "
                    f"recorded: {signoff.problem}",
                    hint="it was written around compressgate; restore the catalog from a backup",
                )
            _named_head(rows[signoff.id].envelope, seq, f"{signoff.kind} at event {seq}", heads)
            checked += 1
    return checked, unsigned


def _readable(catalog: Catalog, run_id: str) -> None:
    """The sign-offs of a run recorded under the unsigned regime, which no policy judges: each
    one's expiry still an instant a reader can compare (a waiver signed elsewhere with a bare
    date was once recorded; the readers carry on past it, the audit names it)."""
    from datetime import datetime

    for row in catalog.signoffs(run_id):
        try:
            if row.expires is not None and datetime.fromisoformat(row.expires).tzinfo is None:
                raise ValueError("no time zone")
        except ValueError as exc:
            raise IntegrityError(
                f"{row.kind} {row.id[:12]} of gate '{row.gate}' of run {run_id}: its expiry "
                f"{row.expires!r} is not an instant ({exc}); it does not count",
                hint="its owner signs it again with `compressgate waive --expires DATE`",
            ) from None


def _moves(
    catalog: Catalog,
    store: ArtifactStore | None,
    chain: PolicyChain,
    heads: dict[int, tuple[str, str]],
    since: int = 0,
) -> tuple[int, int, int]:
    every = catalog.alias_moves()
    moves = [m for m in every if m.seq > since]
    current = {m.alias: m for m in every}.values()  # each alias's newest move
    held = catalog.variant_artifacts(sorted({m.variant_id for m in [*moves, *current]}))
    releases = catalog.releases()
    signers: dict[str, list[str]] = {}
    released = unsigned = 0
    for move in moves:
        what = f"alias move {move.seq} ({move.alias} -> {move.variant_id})"
        if move.variant_id not in held:
            raise IntegrityError(
                f"{what} points at a variant the catalog does not hold",
                hint="the move was written around compressgate; restore the catalog from a backup",
            )
        if held[move.variant_id][0] != move.artifact_sha256:
            raise IntegrityError(
                f"{what} names artifact {move.artifact_sha256[:16]}…, the variant's is "
                f"{held[move.variant_id][0][:16]}…"
            )
        policy = chain.at(move.seq)
        if policy is None and move.seq not in releases:
            unsigned += 1  # the unsigned regime: nothing to check
            continue
        run_id = move.variant_id.split("/")[0]
        if run_id not in signers:
            signers[run_id] = list(catalog.run_info(run_id).signers)
        done = check_move(
            move,
            releases.get(move.seq),
            policy,
            run_id=run_id,
            recipe_sha256=_recipe_of(catalog, move.variant_id),
            recipe_signers=signers[run_id],
            hint="the move was written around compressgate; restore the catalog from a backup",
        )
        assert done is not None  # a policy was in force, or check_move refused the release
        source = f"the release of {what}"
        if done.head_size >= move.seq:
            raise IntegrityError(f"{source} names a head after the move itself")
        heads[done.head_size] = (done.head_sha256, source)
        released += 1
    _targets_present(catalog, store, every, held)
    return len(moves), released, unsigned


def _annotations(
    catalog: Catalog, chain: PolicyChain, heads: dict[int, tuple[str, str]], since: int = 0
) -> tuple[int, int]:
    """Every tag and description (recorded after event `since`): its subject held; under a
    policy, its signature."""
    from compressgate.registry.governance.annotations import check_recorded

    rows = [r for r in catalog.all_annotations() if r.seq > since]
    digests = {
        kind: catalog.subject_digests(
            kind, sorted({r.subject_id for r in rows if r.subject_kind == kind})
        )
        for kind in ("run", "variant")
    }
    signed = unsigned = 0
    for row in rows:
        done = check_recorded(
            row,
            chain.at(row.seq),
            digests.get(row.subject_kind, {}).get(row.subject_id),
            hint="it was written around compressgate; restore the catalog from a backup",
        )
        if done is None:
            unsigned += 1
            continue
        heads[done.head_size] = (done.head_sha256, f"the signature of annotation {row.seq}")
        signed += 1
    return signed, unsigned


def _recipe_of(catalog: Catalog, variant_id: str) -> str:
    return catalog.variant(variant_id).recipe_sha256


def _targets_present(
    catalog: Catalog,
    store: ArtifactStore | None,
    moves: list[AliasMove],
    held: dict[str, tuple[str, str]],
) -> None:
    """Every alias's current target has its files in the store."""
    from compressgate.registry.catalog.chain import read_json

    if store is None:
        return
    current: dict[str, str] = {}
    for move in moves:
        current[move.alias] = move.variant_id
    for alias, variant_id in sorted(current.items()):
        for entry in read_json(held[variant_id][1]):
            if not store.blob_path(entry["sha256"]).is_file():
                raise IntegrityError(
                    f"alias {alias} points at {variant_id}, whose file {entry['name']} "
                    f"(blob {entry['sha256'][:16]}…) is missing from the store",
                    hint="restore the artifact store from a backup",
                )


def _named_head(envelope: str, seq: int, who: str, heads: dict[int, tuple[str, str]]) -> None:
    """Collect the chain head a signed envelope names (if it names one)."""
    import base64

    try:
        payload = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
        head = payload["predicate"].get("catalog_head")
    except (ValueError, KeyError, TypeError):
        return
    if isinstance(head, dict) and isinstance(head.get("size"), int):
        if head["size"] >= seq:
            raise IntegrityError(f"the {who} names a head after itself")
        heads[int(head["size"])] = (str(head.get("sha256")), f"the {who}")


def _heads(catalog: Catalog, heads: dict[int, tuple[str, str]]) -> int:
    """Every chain head a signer saw is still in the chain, with the hash they saw."""
    wanted = sorted(s for s in heads if s > 0)
    found = catalog.event_hashes(wanted)
    for seq in wanted:
        named, who = heads[seq]
        if found.get(seq) != named:
            raise IntegrityError(
                f"catalog history rewritten below a signed head: {who} saw event {seq} as "
                f"{named[:16]}…, the chain now has {(found.get(seq) or 'nothing')[:16]}…",
                hint="the catalog was rebuilt after it was signed; restore it from a backup",
            )
    return len(wanted)
