"""The trust policy's versions and the signed releases behind alias moves (schema v5), as the
catalog stores them; what makes a version or a release count is `governance.policy`'s to judge.

A catalog read as it is at an older schema (v3, v4) has neither table: it has no policy.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import sqlalchemy as sa

from compressgate.registry.catalog import schema
from compressgate.registry.catalog.chain import document, now
from compressgate.registry.catalog.connection import CatalogConnection
from compressgate.registry.catalog.records import (
    AliasMove,
    AttestationRecord,
    PolicyRecord,
    ReleaseRecord,
    ResumeRecord,
)
from compressgate.registry.catalog.schema import (
    AliasMoveRow,
    ApprovalRow,
    AttestationRow,
    EvaluationRow,
    Event,
    GateDecisionRow,
    PolicyRow,
    ReleaseRow,
    ResumeRow,
    RunEndRow,
    RunRow,
    VariantRow,
)
from compressgate.registry.kernel.errors import Conflict

POLICY_FROM = 5  # the schema version that added policies and releases
_PAGE = 500  # keys per IN (...) list


@dataclass
class RunEvidence:
    """What a run's attestation and its gate decisions are checked against, as stored: read
    in bulk for many runs by `run_evidence`, parsed by whoever checks it."""

    run_id: str
    recipe_sha256: str
    seeds: list[int]
    environment_sha256: str
    lock_sha256: str
    status: str = "running"
    # (variant id, seed, stage, artifact sha256, stored metrics document), in recording order
    variants: list[tuple[str, int, str, str, str]] = field(default_factory=list)
    # "<variant id>/<kind>" -> the stored result document, for the kinds asked for
    evaluations: dict[str, str] = field(default_factory=dict)


class CatalogPolicies(CatalogConnection):
    """Policy versions and releases (a base of `repository.Catalog`)."""

    def record_policy(
        self, *, version: int, sha256: str, content: str, envelope: str, signers: list[str]
    ) -> PolicyRecord:
        """Append policy `version` (the caller checked its signatures against the version
        before it); exit 6 if another version was recorded meanwhile."""
        table = schema.table(PolicyRow)
        row = {
            "version": version,
            "sha256": sha256,
            "content": content,
            "envelope": envelope,
            "recorded_at": now(),
            "signers": document(signers),
        }
        with self._writing() as conn:
            current = conn.execute(sa.select(sa.func.max(table.c.version))).scalar() or 0
            if current != version - 1:
                raise Conflict(
                    f"policy version {version} cannot follow version {current}: another policy "
                    "was recorded meanwhile; nothing recorded",
                    hint="`compressgate trust show` shows the version in force; sign again for it",
                )
            (seq,) = self._append(conn, [(PolicyRow, row)])
        return PolicyRecord.model_validate({**row, "signers": signers, "seq": seq})

    def policies(self) -> list[PolicyRecord]:
        """Every recorded policy version, oldest first."""
        if self.applied < POLICY_FROM:
            return []
        table = schema.table(PolicyRow)
        with self._reading() as conn:
            rows = conn.execute(sa.select(table).order_by(table.c.version)).mappings().all()
        return [
            PolicyRecord.model_validate(
                {**dict(r), "signers": json.loads(r["signers"]), "seq": r["event_seq"]}
            )
            for r in rows
        ]

    def releases(self, move_seqs: list[int] | None = None) -> dict[int, ReleaseRecord]:
        """The signed release of each alias move (all, or those of `move_seqs`), by move."""
        if self.applied < POLICY_FROM:
            return {}
        table = schema.table(ReleaseRow)
        query = sa.select(table)
        if move_seqs is not None:
            query = query.where(table.c.move_seq.in_(move_seqs))
        with self._reading() as conn:
            rows = conn.execute(query).mappings().all()
        return {
            int(r["move_seq"]): ReleaseRecord.model_validate({**dict(r), "seq": r["event_seq"]})
            for r in rows
        }

    def signoff_seqs(self, run_id: str) -> dict[str, int]:
        """The event number of each sign-off of a run, by its id."""
        table = schema.table(ApprovalRow)
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(table.c.id, table.c.event_seq).where(table.c.run_id == run_id)
            ).all()
        return {str(i): int(s) for i, s in rows}

    def count_runs(self) -> int:
        table = schema.table(RunRow)
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())

    def alias_moves(self) -> list[AliasMove]:
        """Every move of every alias, oldest first."""
        moves = schema.table(AliasMoveRow)
        with self._reading() as conn:
            rows = conn.execute(sa.select(moves).order_by(moves.c.event_seq)).mappings().all()
        return [AliasMove.model_validate({**dict(r), "seq": r["event_seq"]}) for r in rows]

    def variant_artifacts(self, ids: list[str]) -> dict[str, tuple[str, str]]:
        """(artifact sha256, files document) of each of the variants `ids` the catalog holds."""
        variants = schema.table(VariantRow)
        out: dict[str, tuple[str, str]] = {}
        with self._reading() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                query = sa.select(
                    variants.c.id, variants.c.artifact_sha256, variants.c.files
                ).where(variants.c.id.in_(chunk))
                out.update({str(i): (str(a), str(f)) for i, a, f in conn.execute(query)})
        return out

    def signed_runs(self) -> dict[str, list[int]]:
        """The runs with sign-offs, each with its sign-offs' event numbers."""
        table = schema.table(ApprovalRow)
        out: dict[str, list[int]] = {}
        with self._reading() as conn:
            for run_id, seq in conn.execute(sa.select(table.c.run_id, table.c.event_seq)):
                out.setdefault(str(run_id), []).append(int(seq))
        return out

    def decided_runs(self, *, since: int = 0) -> list[str]:
        """The runs with gate decisions (schema v2 on; with `since`, one recorded after event
        `since`), by run id."""
        table = schema.table(GateDecisionRow)
        query = sa.select(table.c.run_id).group_by(table.c.run_id).order_by(table.c.run_id)
        if since:
            query = query.where(table.c.event_seq > since)
        with self._reading() as conn:
            return [str(r[0]) for r in conn.execute(query)]

    def run_evidence(self, run_ids: Sequence[str], kinds: Sequence[str]) -> dict[str, RunEvidence]:
        """Each run of `run_ids` the catalog holds, with its variants and their evaluations of
        `kinds`, in a few queries per page of runs (a variant's id is `RUN/SEED/STAGE`, an
        evaluation's `VARIANT/KIND`: both read by primary key)."""
        runs, ends = schema.table(RunRow), schema.table(RunEndRow)
        variants, evaluations = schema.table(VariantRow), schema.table(EvaluationRow)
        found: dict[str, RunEvidence] = {}
        with self._reading() as conn:
            for start in range(0, len(run_ids), _PAGE):
                page = sorted(run_ids[start : start + _PAGE])
                query = sa.select(
                    runs.c.run_id,
                    runs.c.recipe_sha256,
                    runs.c.seeds,
                    runs.c.environment_sha256,
                    runs.c.lock_sha256,
                ).where(runs.c.run_id.in_(page))
                for run_id, recipe, seeds, environment, lock in conn.execute(query):
                    found[str(run_id)] = RunEvidence(
                        str(run_id), str(recipe), json.loads(seeds), str(environment), str(lock)
                    )
                ended = sa.select(ends.c.run_id, ends.c.status).where(ends.c.run_id.in_(page))
                for run_id, status in conn.execute(ended):
                    if run_id in found:
                        found[run_id].status = str(status)
                # The page's runs are a contiguous range of ids: so are their variants'.
                stored = (
                    sa.select(
                        variants.c.id,
                        variants.c.run_id,
                        variants.c.seed,
                        variants.c.stage,
                        variants.c.artifact_sha256,
                        variants.c.metrics,
                    )
                    .where(variants.c.id >= f"{page[0]}/", variants.c.id < f"{page[-1]}0")
                    .order_by(variants.c.event_seq)
                )
                wanted: list[str] = []
                for vid, run_id, seed, stage, artifact, metrics in conn.execute(stored):
                    evidence = found.get(run_id)
                    if evidence is not None:
                        evidence.variants.append(
                            (str(vid), int(seed), str(stage), str(artifact), str(metrics))
                        )
                        wanted += [f"{vid}/{kind}" for kind in kinds]
                for first in range(0, len(wanted), _PAGE):
                    ids = wanted[first : first + _PAGE]
                    results = sa.select(
                        evaluations.c.id, evaluations.c.variant_id, evaluations.c.result
                    ).where(evaluations.c.id.in_(ids))
                    for eid, vid, result in conn.execute(results):
                        found[str(vid).split("/", 1)[0]].evaluations[str(eid)] = str(result)
        return found

    def evaluation_documents(self, variant_id: str) -> dict[str, str]:
        """Every evaluation of a variant, its stored result document by kind."""
        table = schema.table(EvaluationRow)
        query = sa.select(table.c.kind, table.c.result).where(table.c.variant_id == variant_id)
        with self._reading() as conn:
            return {str(kind): str(result) for kind, result in conn.execute(query)}

    def event_hashes(self, seqs: list[int]) -> dict[int, str]:
        """The chain hash of each event of `seqs` the catalog holds."""
        events = schema.table(Event)
        out: dict[int, str] = {}
        with self._reading() as conn:
            for start in range(0, len(seqs), 500):
                chunk = seqs[start : start + 500]
                query = sa.select(events.c.seq, events.c.sha256).where(events.c.seq.in_(chunk))
                out.update({int(s): str(h) for s, h in conn.execute(query)})
        return out

    def record_attestation(
        self, *, run_id: str, owner: str, keyid: str, policy_version: int, envelope: str
    ) -> AttestationRecord:
        """Append a run's attestation (the caller checked it); one per run."""
        row = {
            "run_id": run_id,
            "owner": owner,
            "keyid": keyid,
            "policy_version": policy_version,
            "envelope": envelope,
        }
        (seq,) = self.append([(AttestationRow, row)])
        return AttestationRecord.model_validate({**row, "seq": seq})

    def attestations(self, run_ids: list[str] | None = None) -> dict[str, AttestationRecord]:
        """The attestation of each run (all, or those of `run_ids`) that has one, by run."""
        if self.applied < POLICY_FROM:
            return {}
        table = schema.table(AttestationRow)
        query = sa.select(table)
        if run_ids is not None:
            query = query.where(table.c.run_id.in_(run_ids))
        with self._reading() as conn:
            rows = conn.execute(query).mappings().all()
        return {
            str(r["run_id"]): AttestationRecord.model_validate({**dict(r), "seq": r["event_seq"]})
            for r in rows
        }

    def run_seq(self, run_id: str) -> int | None:
        """The event number of a run's start (None: no such run)."""
        table = schema.table(RunRow)
        with self._reading() as conn:
            seq = conn.execute(
                sa.select(table.c.event_seq).where(table.c.run_id == run_id)
            ).scalar()
        return None if seq is None else int(seq)

    def run_seqs(self) -> dict[str, int]:
        """The event number of each run's start, by run."""
        table = schema.table(RunRow)
        with self._reading() as conn:
            return {
                str(r): int(s)
                for r, s in conn.execute(sa.select(table.c.run_id, table.c.event_seq))
            }

    def record_resume(
        self, *, run_id: str, resumed_from: str, waivers: list[dict[str, str]]
    ) -> ResumeRecord:
        """Append that `run_id` resumed the stopped run `resumed_from` past `waivers`."""
        row = {"run_id": run_id, "resumed_from": resumed_from, "waivers": document(waivers)}
        (seq,) = self.append([(ResumeRow, row)])
        return ResumeRecord.model_validate({**row, "waivers": waivers, "seq": seq})

    def resume_of(self, run_id: str) -> ResumeRecord | None:
        """The stopped run `run_id` resumed, if it resumed one."""
        if self.applied < POLICY_FROM:
            return None
        table = schema.table(ResumeRow)
        with self._reading() as conn:
            row = conn.execute(sa.select(table).where(table.c.run_id == run_id)).mappings().first()
        if row is None:
            return None
        return ResumeRecord.model_validate(
            {**dict(row), "waivers": json.loads(row["waivers"]), "seq": row["event_seq"]}
        )
