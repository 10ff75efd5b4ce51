"""The catalog's read verbs: runs, recipes, variants and their lineage, gate decisions,
sign-offs, reports and aliases, each read in one transaction and handed out as records
(`records`), rows turned into records by the field declarations they share (`schema`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from pydantic import BaseModel, ValidationError
from sqlalchemy.engine import Connection

from compressgate.evaluators.results import ExemplarsResult, SeedAggregate
from compressgate.registry.catalog import schema
from compressgate.registry.catalog.chain import read_json, unpack_metrics
from compressgate.registry.catalog.connection import CatalogConnection, safe_url
from compressgate.registry.catalog.records import (
    AliasMove,
    JudgementRecord,
    RecipeRecord,
    RecipeRef,
    RecordedReport,
    RunHead,
    RunInfo,
    RunListing,
    RunRecord,
    SignoffRecord,
    StageRecord,
    Timing,
    VariantRecord,
)
from compressgate.registry.catalog.schema import (
    AliasMoveRow,
    ApprovalRow,
    EvaluationRow,
    GateDecisionRow,
    GateJudgementRow,
    RecipeEnvelopeRow,
    RecipeRow,
    ReportRow,
    RunEndRow,
    RunRow,
    RunSeedRow,
    VariantRow,
)
from compressgate.registry.kernel.errors import IntegrityError, ManifestError, NotFoundError

R = TypeVar("R", bound=BaseModel)


if TYPE_CHECKING:
    from compressgate.gates.review import GateDecision


class CatalogQueries(CatalogConnection):
    """Reading the catalog (a base of `repository.Catalog`)."""

    def _envelopes(self, conn: Connection, recipe_sha256: str) -> list[str]:
        recipes, later = schema.table(RecipeRow), schema.table(RecipeEnvelopeRow)
        first = conn.execute(
            sa.select(recipes.c.envelope).where(recipes.c.sha256 == recipe_sha256)
        ).scalar()
        rest = conn.execute(
            sa.select(later.c.envelope)
            .where(later.c.recipe_sha256 == recipe_sha256)
            .order_by(later.c.event_seq)
        ).scalars()
        return ([first] if first is not None else []) + list(rest)

    def recipe_envelopes(self, recipe_sha256: str) -> list[str]:
        """Every signature envelope the recipe was run with, oldest first."""
        with self._reading() as conn:
            return self._envelopes(conn, recipe_sha256)

    # -- reading runs

    def run(self, run_id: str) -> RunRecord:
        """The full run record, as the executor held it (the JSON export of a run)."""
        with self._reading() as conn:
            runs, ends = schema.table(RunRow), schema.table(RunEndRow)
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                raise self._no_run(conn, run_id)
            end = conn.execute(sa.select(ends).where(ends.c.run_id == run_id)).mappings().first()
            seeds = schema.table(RunSeedRow)
            data = {
                str(seed): read_json(text)
                for seed, text in conn.execute(
                    sa.select(seeds.c.seed, seeds.c.data)
                    .where(seeds.c.run_id == run_id)
                    .order_by(seeds.c.event_seq)
                )
            }
            variants, evaluations = schema.table(VariantRow), schema.table(EvaluationRow)
            stage_rows = (
                conn.execute(
                    sa.select(variants)
                    .where(variants.c.run_id == run_id)
                    .order_by(variants.c.event_seq)
                )
                .mappings()
                .all()
            )
            results: dict[str, dict[str, Any]] = {}
            for evaluation in conn.execute(
                sa.select(evaluations.c.variant_id, evaluations.c.kind, evaluations.c.result)
                .join(variants, variants.c.id == evaluations.c.variant_id)
                .where(variants.c.run_id == run_id)
                .order_by(evaluations.c.event_seq)
            ):
                results.setdefault(evaluation[0], {})[evaluation[1]] = read_json(evaluation[2])
        try:
            stages = [_stage_record(dict(s), results.get(s["id"], {})) for s in stage_rows]
            if end is not None:
                stages += [StageRecord.model_validate(s) for s in read_json(end["failed_stages"])]
            return RunRecord(
                run_id=row["run_id"],
                recipe=_recipe_ref(row),
                status=end["status"] if end is not None else "running",
                started_at=row["started_at"],
                finished_at=end["finished_at"] if end is not None else None,
                workspace=row["workspace"],
                seeds=read_json(row["seeds"]),
                environment=read_json(row["environment"]),
                data=data,
                stages=stages,
                aggregate=(
                    {
                        stage: {
                            m: SeedAggregate.model_validate(v)
                            for m, v in unpack_metrics(metrics).items()
                        }
                        for stage, metrics in read_json(end["aggregate"]).items()
                    }
                    if end is not None
                    else {}
                ),
                exemplars=(
                    {
                        k: ExemplarsResult.model_validate(v)
                        for k, v in read_json(end["exemplars"]).items()
                    }
                    if end is not None
                    else {}
                ),
                timing=Timing.model_validate_json(end["timing"]) if end is not None else Timing(),
                error=end["error"] if end is not None else None,
            )
        except ValidationError as exc:
            # A JSON document that still parses but no longer holds what was written (a flipped
            # byte in a key, say): changed outside compressgate, like one that does not parse.
            where = ".".join(map(str, exc.errors()[0]["loc"]))
            raise IntegrityError(
                f"catalog rows of run {run_id} no longer form its record: "
                f"{exc.error_count()} field(s) invalid, first {where}",
                hint="run `compressgate audit verify` to find the changed row",
            ) from None

    def _no_run(self, conn: Connection, run_id: str) -> NotFoundError:
        runs = schema.table(RunRow)
        recent = [
            r[0]
            for r in conn.execute(sa.select(runs.c.run_id).order_by(runs.c.run_id.desc()).limit(5))
        ]
        return NotFoundError(
            f"run {run_id} is not in the catalog {safe_url(self.url)}",
            hint=f"recent runs: {', '.join(recent)}" if recent else "no run has been recorded yet",
        )

    def run_head(self, run_id: str) -> RunHead:
        """The run's recipe and status: what its review reads (`governance.review.status`),
        in one indexed read, without the stages and evaluations `run` inflates."""
        runs, ends = schema.table(RunRow), schema.table(RunEndRow)
        query = (
            sa.select(runs, ends.c.status)
            .select_from(runs.outerjoin(ends, ends.c.run_id == runs.c.run_id))
            .where(runs.c.run_id == run_id)
        )
        with self._reading() as conn:
            row = conn.execute(query).mappings().first()
            if row is None:
                raise self._no_run(conn, run_id)
        return RunHead(
            run_id=row["run_id"],
            recipe=_recipe_ref(row),
            status=row["status"] or "running",
        )

    def run_info(self, run_id: str) -> RunInfo:
        runs = schema.table(RunRow)
        with self._reading() as conn:
            row = conn.execute(sa.select(runs).where(runs.c.run_id == run_id)).mappings().first()
            if row is None:
                raise self._no_run(conn, run_id)
        fingerprint = read_json(row["environment"]).get("fingerprint", {})
        return RunInfo(
            run_id=row["run_id"],
            recipe=row["recipe_name"],
            version=row["recipe_version"],
            recipe_sha256=row["recipe_sha256"],
            signers=read_json(row["signers"]),
            environment_sha256=row["environment_sha256"],
            lock_sha256=row["lock_sha256"],
            python=fingerprint.get("python"),
            started_at=row["started_at"],
            actor=row["actor"],
        )

    def runs(
        self, *, recipe: str | None = None, limit: int = 50, offset: int = 0
    ) -> list[RunListing]:
        """Runs, newest first (run ids start with their UTC time), optionally of one recipe."""
        runs, ends = schema.table(RunRow), schema.table(RunEndRow)
        query = (
            sa.select(
                runs.c.run_id,
                runs.c.recipe_name,
                runs.c.recipe_version,
                runs.c.recipe_sha256,
                ends.c.status,
                runs.c.started_at,
                ends.c.finished_at,
                runs.c.seeds,
                runs.c.signers,
            )
            .select_from(runs.outerjoin(ends, ends.c.run_id == runs.c.run_id))
            .order_by(runs.c.run_id.desc())
        )
        # Page the keys from the index alone (OFFSET skips index entries, not joined rows),
        # then join only the page's runs.
        keys = sa.select(runs.c.run_id).order_by(runs.c.run_id.desc()).limit(limit).offset(offset)
        if recipe is not None:
            keys = keys.where(runs.c.recipe_name == recipe)
        query = query.where(runs.c.run_id.in_(keys))
        with self._reading() as conn:
            return [
                RunListing(
                    run_id=r[0],
                    recipe=r[1],
                    version=r[2],
                    recipe_sha256=r[3],
                    status=r[4] or "running",
                    started_at=r[5],
                    finished_at=r[6],
                    seeds=read_json(r[7]),
                    signers=read_json(r[8]),
                )
                for r in conn.execute(query)
            ]

    def recipe(self, sha256: str) -> RecipeRecord:
        with self._reading() as conn:
            table = schema.table(RecipeRow)
            row = conn.execute(sa.select(table).where(table.c.sha256 == sha256)).mappings().first()
        if row is None:
            raise NotFoundError(f"recipe {sha256} is not in the catalog")
        data = {**row, "signers": read_json(row["signers"])}
        return _record(RecipeRecord, data, f"recipe {sha256}")

    # -- variants

    def variant(self, ref: str) -> VariantRecord:
        """A variant by id (RUN/SEED/STAGE) or by a prefix of its artifact sha256 (at least 6
        hex digits; when several records share the artifact: the newest run's first)."""
        variants = schema.table(VariantRow)
        with self._reading() as conn:
            if "/" in ref:
                query = sa.select(variants).where(variants.c.id == ref)
            else:
                if len(ref) < 6 or any(ch not in "0123456789abcdef" for ch in ref):
                    raise ManifestError(
                        f"variant {ref!r}: give RUN/SEED/STAGE or at least 6 hex digits of its "
                        "artifact sha256"
                    )
                query = (
                    sa.select(variants)
                    # A range the index serves (LIKE is not indexed in SQLite), then the prefix.
                    .where(
                        variants.c.artifact_sha256 >= ref,
                        variants.c.artifact_sha256 < ref + "g",
                        variants.c.artifact_sha256.startswith(ref),
                    )
                    .order_by(variants.c.event_seq.desc())
                )
            rows = conn.execute(query.limit(50)).mappings().all()
        if not rows:
            raise NotFoundError(
                f"no variant {ref} in the catalog {safe_url(self.url)}",
                hint="`compressgate catalog show RUN` lists a run's variants",
            )
        artifacts = {r["artifact_sha256"]: r["stage"] for r in rows}
        if len(artifacts) > 1:
            shown = ", ".join(f"{sha[:16]}… ({name})" for sha, name in sorted(artifacts.items()))
            raise ManifestError(
                f"variant '{ref}' is ambiguous: it starts {len(artifacts)} variants: {shown}",
                hint="give more hex digits",
            )
        # The newest run that made it; within that run, the stage that made it first (an
        # export of an ONNX model repeats its parent's bytes).
        newest = rows[0]["run_id"]
        first = min((r for r in rows if r["run_id"] == newest), key=lambda r: r["event_seq"])
        return _variant_record(dict(first))

    def records_of_artifact(self, sha256: str) -> list[VariantRecord]:
        variants = schema.table(VariantRow)
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(variants)
                .where(variants.c.artifact_sha256 == sha256)
                .order_by(variants.c.event_seq.desc())
            ).mappings()
            return [_variant_record(dict(r)) for r in rows]

    def lineage(self, ref: str) -> list[VariantRecord]:
        """The variant and its ancestors within its run and seed, baseline first."""
        variant = self.variant(ref)
        chain = [variant]
        variants = schema.table(VariantRow)
        with self._reading() as conn:
            while chain[-1].parent_sha256 is not None and len(chain) < 1000:
                row = (
                    conn.execute(
                        sa.select(variants)
                        .where(
                            variants.c.run_id == variant.run_id,
                            variants.c.seed == variant.seed,
                            variants.c.artifact_sha256 == chain[-1].parent_sha256,
                        )
                        .order_by(variants.c.event_seq)
                        .limit(1)
                    )
                    .mappings()
                    .first()
                )
                if row is None:
                    break
                chain.append(_variant_record(dict(row)))
        return chain[::-1]

    def judgements(
        self, variant_id: str | None = None, run_id: str | None = None
    ) -> list[JudgementRecord]:
        table = schema.table(GateJudgementRow)
        query = sa.select(table).order_by(table.c.event_seq)
        if variant_id is not None:
            query = query.where(table.c.variant_id == variant_id)
        if run_id is not None:
            query = query.where(table.c.run_id == run_id)
        with self._reading() as conn:
            return [
                _record(
                    JudgementRecord, {**r, "rule": read_json(r["rule"])}, f"gate decision {r['id']}"
                )
                for r in conn.execute(query).mappings()
            ]

    def gate_decisions(self, run_id: str) -> list[GateDecision]:
        """The run's gate decisions (one per gate, by its seeds policy), in recipe order."""
        return self.gate_decisions_of([run_id]).get(run_id, [])

    def gate_decisions_of(self, run_ids: Sequence[str]) -> dict[str, list[GateDecision]]:
        """The gate decisions of each of `run_ids` that has any, each run's in recipe order."""
        # The gates' models load the recipe language: only commands that judge pay for it.
        from compressgate.gates.review import GateDecision, SeedJudgement

        table = schema.table(GateDecisionRow)
        found: dict[str, list[GateDecision]] = {}
        with self._reading() as conn:
            for start in range(0, len(run_ids), 500):
                query = (
                    sa.select(table)
                    .where(table.c.run_id.in_(run_ids[start : start + 500]))
                    .order_by(table.c.event_seq)
                )
                for r in conn.execute(query).mappings():
                    found.setdefault(str(r["run_id"]), []).append(
                        GateDecision(
                            **{
                                k: v
                                for k, v in r.items()
                                if k not in ("id", "rule", "seeds", "power", "event_seq")
                            },
                            rule=read_json(r["rule"]),
                            seeds=[SeedJudgement.model_validate(s) for s in read_json(r["seeds"])],
                            power=read_json(r["power"]),
                        )
                    )
        return found

    def signoffs(self, run_id: str) -> list[SignoffRecord]:
        """The approvals and waivers recorded for a run, oldest first, as stored."""
        table = schema.table(ApprovalRow)
        query = sa.select(table).where(table.c.run_id == run_id).order_by(table.c.event_seq)
        with self._reading() as conn:
            return [
                _record(SignoffRecord, dict(r), f"sign-off {r['id']}")
                for r in conn.execute(query).mappings()
            ]

    def reusable_run(self, recipe_sha256: str, environment_sha256: str) -> str | None:
        """The newest finished run of this exact recipe in this exact environment, if any."""
        runs, ends = schema.table(RunRow), schema.table(RunEndRow)
        query = (
            sa.select(runs.c.run_id)
            .select_from(runs.join(ends, ends.c.run_id == runs.c.run_id))
            .where(
                runs.c.recipe_sha256 == recipe_sha256,
                runs.c.environment_sha256 == environment_sha256,
                ends.c.status.in_(("succeeded", "stopped")),
            )
            .order_by(runs.c.run_id.desc())
            .limit(1)
        )
        with self._reading() as conn:
            found = conn.execute(query).scalar()
        return None if found is None else str(found)

    # -- reports

    def report_by_sha256(self, sha256: str) -> RecordedReport | None:
        """The recorded report whose bytes have this sha256, or None."""
        table = schema.table(ReportRow)
        with self._reading() as conn:
            found = (
                conn.execute(sa.select(table).where(table.c.sha256 == sha256)).mappings().first()
            )
        return None if found is None else recorded_report(dict(found))

    # -- aliases

    def alias_history(self, alias: str) -> list[AliasMove]:
        """Every move of the alias, oldest first."""
        moves = schema.table(AliasMoveRow)
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(moves).where(moves.c.alias == alias).order_by(moves.c.event_seq)
            ).mappings()
            return [_alias_move(dict(r)) for r in rows]

    def alias(self, alias: str) -> AliasMove | None:
        """Where the alias points now (its last move), or None."""
        moves = schema.table(AliasMoveRow)
        with self._reading() as conn:
            r = (
                conn.execute(
                    sa.select(moves)
                    .where(moves.c.alias == alias)
                    .order_by(moves.c.event_seq.desc())
                    .limit(1)
                )
                .mappings()
                .first()
            )
        if r is None:
            return None
        return _alias_move(dict(r))

    def aliases(self) -> dict[str, AliasMove]:
        moves = schema.table(AliasMoveRow)
        with self._reading() as conn:
            names = [r[0] for r in conn.execute(sa.select(moves.c.alias).distinct())]
        found = {name: self.alias(name) for name in sorted(names)}
        return {k: v for k, v in found.items() if v is not None}


def _record(model: type[R], data: dict[str, Any], what: str) -> R:
    """A record from a row's columns (its documents parsed); a row whose documents parse but no
    longer form the record was changed outside compressgate (exit 3)."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        where = ".".join(map(str, exc.errors()[0]["loc"]))
        raise IntegrityError(
            f"catalog row of {what} no longer forms its record: {exc.error_count()} field(s) "
            f"invalid, first {where}",
            hint="run `compressgate audit verify` to find the changed row",
        ) from None


def _stage_documents(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "files": read_json(row["files"]),
        "metrics": unpack_metrics(read_json(row["metrics"])),
        "details": read_json(row["details"]),
        "warnings": read_json(row["warnings"]),
    }


def _recipe_ref(row: sa.RowMapping) -> RecipeRef:
    """The recipe a `runs` row names."""
    return RecipeRef(
        name=row["recipe_name"],
        version=row["recipe_version"],
        sha256=row["recipe_sha256"],
        path=row["recipe_path"],
        signers=read_json(row["signers"]),
    )


def _stage_record(row: dict[str, Any], evaluations: dict[str, Any]) -> StageRecord:
    """A finished stage as the executor held it: its variant row and its evaluations."""
    return StageRecord.model_validate(
        {
            **row,
            **_stage_documents(row),
            "name": row["stage"],
            "status": "done",
            "evaluations": evaluations,
        }
    )


def _variant_record(row: dict[str, Any]) -> VariantRecord:
    data = {**row, **_stage_documents(row), "spec": read_json(row["spec"])}
    return _record(VariantRecord, data, f"variant {row['id']}")


def _alias_move(row: dict[str, Any]) -> AliasMove:
    return _record(AliasMove, {**row, "seq": row["event_seq"]}, f"alias move {row['event_seq']}")


def recorded_report(row: dict[str, Any]) -> RecordedReport:
    return _record(RecordedReport, {**row, "seq": row["event_seq"]}, f"report {row['sha256']}")
