"""The catalog: append-only, hash-chained records of recipes, runs, variants, evaluations,
gate decisions, approvals, alias moves, reports, sweeps and tags, in SQLite (default) or
PostgreSQL.

`Catalog` is the one door to it: it takes and gives back pydantic records (`records`), never
sessions or rows. This module holds its write verbs; the rest of it is in the modules it is
built from (the package's docstring maps them). UPDATE and DELETE are refused on every table by
triggers (`migrations`), every row is appended with its chained event (`chain`), and `audit
verify` names the first row or event that no longer matches (`integrity`).

The names other packages import from here (records, tables, URL helpers) stay importable from
here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

from compressgate.registry.catalog import schema
from compressgate.registry.catalog.chain import (
    GENESIS,
    chain_hash,
    coerced,
    compact,
    default_actor,
    document,
    event_body,
    now,
    pack_metrics,
    stored,
)
from compressgate.registry.catalog.connection import (
    CATALOG_ENV,
    CATALOG_FILE,
    catalog_url,
    safe_url,
)
from compressgate.registry.catalog.integrity import CatalogIntegrity
from compressgate.registry.catalog.migrations import MIGRATIONS, SCHEMA_VERSION, expected_triggers
from compressgate.registry.catalog.policies import CatalogPolicies
from compressgate.registry.catalog.queries import CatalogQueries, recorded_report
from compressgate.registry.catalog.records import (
    AliasMove,
    AuditReport,
    Head,
    JudgementRecord,
    RecipeRecord,
    RecordedReport,
    ReleaseRecord,
    ReportEntry,
    RunHead,
    RunInfo,
    RunListing,
    RunRecord,
    SignoffRecord,
    StageRecord,
    SweepEndRecord,
    SweepListing,
    SweepRecord,
    SweepTrialRecord,
    VariantRecord,
)
from compressgate.registry.catalog.schema import (
    DOCUMENTS,
    ROW_TABLES,
    TABLES,
    AliasMoveRow,
    AnnotationRow,
    ApprovalRow,
    AttestationRow,
    EvaluationRow,
    Event,
    GateDecisionRow,
    GateJudgementRow,
    PolicyRow,
    RecipeEnvelopeRow,
    RecipeRow,
    ReleaseRow,
    ReportRow,
    ResumeRow,
    RunEndRow,
    RunRow,
    RunSeedRow,
    SchemaMigration,
    StageFields,
    SweepEndRow,
    SweepRow,
    SweepTrialRow,
    VariantRow,
)
from compressgate.registry.catalog.search import CatalogSearch
from compressgate.registry.catalog.sweeps import CatalogSweeps, sweep_row
from compressgate.registry.kernel.errors import Conflict, IntegrityError, Refused

__all__ = [
    "CATALOG_ENV",
    "CATALOG_FILE",
    "DOCUMENTS",
    "GENESIS",
    "MIGRATIONS",
    "ROW_TABLES",
    "SCHEMA_VERSION",
    "TABLES",
    "AliasMove",
    "AliasMoveRow",
    "AnnotationRow",
    "ApprovalRow",
    "AttestationRow",
    "AuditReport",
    "Catalog",
    "EvaluationRow",
    "Event",
    "GateDecisionRow",
    "GateJudgementRow",
    "Head",
    "JudgementRecord",
    "PolicyRow",
    "RecipeEnvelopeRow",
    "RecipeRecord",
    "RecipeRow",
    "RecordedReport",
    "ReleaseRow",
    "ReportEntry",
    "ReportRow",
    "ResumeRow",
    "RunEndRow",
    "RunHead",
    "RunInfo",
    "RunListing",
    "RunRow",
    "RunSeedRow",
    "SchemaMigration",
    "SignoffRecord",
    "SweepEndRecord",
    "SweepEndRow",
    "SweepListing",
    "SweepRecord",
    "SweepRow",
    "SweepTrialRecord",
    "SweepTrialRow",
    "VariantRecord",
    "VariantRow",
    "catalog_url",
    "chain_hash",
    "default_actor",
    "document",
    "event_body",
    "expected_triggers",
    "now",
    "safe_url",
]

Rows = list[tuple[type[SQLModel], dict[str, Any]]]


if TYPE_CHECKING:
    from compressgate.gates.review import GateDecision


class Catalog(CatalogQueries, CatalogPolicies, CatalogSweeps, CatalogSearch, CatalogIntegrity):
    """The one door to the catalog database: appends records, reads them back, verifies."""

    # -- recording a run

    def record_run_start(
        self,
        record: RunRecord,
        *,
        recipe_content: str,
        envelope: str,
        lock_sha256: str,
        actor: str | None = None,
    ) -> None:
        """The recipe (once per exact bytes) and the run's start, in one transaction."""
        who = actor or default_actor()
        at = now()
        recipe = record.recipe
        with self._writing() as conn:
            rows = self._recipe_rows(
                conn,
                recipe.sha256,
                envelope,
                at,
                lambda: {
                    "sha256": recipe.sha256,
                    "name": recipe.name,
                    "version": recipe.version,
                    "path": recipe.path,
                    "signers": document(recipe.signers),
                    "content": recipe_content,
                    "envelope": envelope,
                    "recorded_at": at,
                    "actor": who,
                },
            )
            rows.append(
                (
                    RunRow,
                    {
                        "run_id": record.run_id,
                        "recipe_sha256": record.recipe.sha256,
                        "recipe_name": record.recipe.name,
                        "recipe_version": record.recipe.version,
                        "recipe_path": record.recipe.path,
                        "signers": document(record.recipe.signers),
                        "seeds": document(record.seeds),
                        "workspace": record.workspace,
                        "started_at": record.started_at,
                        "environment": stored(record.environment),
                        "environment_sha256": record.environment.get("fingerprint_sha256", ""),
                        "lock_sha256": lock_sha256,
                        "actor": who,
                    },
                )
            )
            self._append(conn, rows)

    def _recipe_rows(
        self,
        conn: Connection,
        recipe_sha256: str,
        envelope: str,
        at: str,
        recipe_row: Callable[[], dict[str, Any]],
    ) -> Rows:
        """The recipe's row (`recipe_row()`) if its bytes are not recorded yet, else the row
        of `envelope` if the recipe has not been recorded with it yet."""
        recipes = schema.table(RecipeRow)
        known = conn.execute(
            sa.select(recipes.c.sha256).where(recipes.c.sha256 == recipe_sha256)
        ).first()
        if known is not None:
            return self._new_envelope(conn, recipe_sha256, envelope, at)
        return [(RecipeRow, recipe_row())]

    def _new_envelope(self, conn: Connection, recipe_sha256: str, envelope: str, at: str) -> Rows:
        """The row for `envelope` if the recipe has not been recorded with it yet."""
        if envelope in self._envelopes(conn, recipe_sha256):
            return []
        return [
            (
                RecipeEnvelopeRow,
                {
                    "sha256": hashlib.sha256(envelope.encode("utf-8")).hexdigest(),
                    "recipe_sha256": recipe_sha256,
                    "envelope": envelope,
                    "recorded_at": at,
                },
            )
        ]

    def record_seed(self, run_id: str, seed: int, data: dict[str, str]) -> None:
        """The digests of one seed's data splits, as the run loaded them."""
        row = {"id": f"{run_id}/{seed}", "run_id": run_id, "seed": seed, "data": stored(data)}
        self.append([(RunSeedRow, row)])

    def record_stage(self, run_id: str, recipe_sha256: str, stage: StageRecord, spec: Any) -> None:
        """A finished stage: its variant row and one evaluation row per evaluator."""
        assert stage.artifact_sha256 is not None
        variant_id = f"{run_id}/{stage.seed}/{stage.name}"
        row = {
            **stage.model_dump(include=set(StageFields.model_fields)),
            "id": variant_id,
            "run_id": run_id,
            "stage": stage.name,
            "artifact_sha256": stage.artifact_sha256,
            "recipe_sha256": recipe_sha256,
            "recorded_at": now(),
            "spec": stored(spec),
            "files": stored(stage.files),
            "metrics": stored(pack_metrics(stage.metrics)),
            "details": stored(stage.details),
            "warnings": document(stage.warnings),
        }
        rows: Rows = [(VariantRow, row)]
        for kind, result in stage.evaluations.items():
            rows.append(
                (
                    EvaluationRow,
                    {
                        "id": f"{variant_id}/{kind}",
                        "variant_id": variant_id,
                        "kind": kind,
                        "result": stored(compact(result)),
                    },
                )
            )
        self.append(rows)

    def record_run_end(
        self,
        record: RunRecord,
        judgements: Sequence[JudgementRecord] = (),
        decisions: Sequence[GateDecision] = (),
    ) -> None:
        """The run's outcome, its per-seed gate judgements and its gate decisions, in one
        transaction."""
        failed = [s.model_dump(mode="json") for s in record.stages if s.status == "failed"]
        rows: Rows = [
            (
                GateJudgementRow,
                {
                    **j.model_dump(exclude={"rule"}),
                    "id": f"{j.run_id}/{j.seed}/{j.gate}",
                    "rule": stored(j.rule),
                },
            )
            for j in judgements
        ]
        rows += [
            (
                GateDecisionRow,
                {
                    **v.model_dump(mode="json", exclude={"rule", "seeds", "power"}),
                    "id": f"{v.run_id}/{v.gate}",
                    "rule": stored(v.rule),
                    "seeds": stored([s.model_dump(mode="json") for s in v.seeds]),
                    "power": stored(v.power),
                },
            )
            for v in decisions
        ]
        rows.append(
            (
                RunEndRow,
                {
                    "run_id": record.run_id,
                    "status": record.status,
                    "finished_at": record.finished_at or now(),
                    "error": record.error,
                    "timing": stored(record.timing.model_dump(mode="json")),
                    "aggregate": stored(
                        {stage: pack_metrics(values) for stage, values in record.aggregate.items()}
                    ),
                    "exemplars": stored({k: compact(v) for k, v in record.exemplars.items()}),
                    "failed_stages": stored(failed),
                },
            )
        )
        self.append(rows)

    # -- sweeps (the rest of them: `sweeps`)

    def record_sweep_start(
        self,
        sweep: SweepRecord,
        *,
        recipe_content: str,
        recipe_envelope: str,
        recipe_path: str,
        recipe_signers: list[str],
    ) -> None:
        """The sweep's start and its base recipe (once per exact bytes, as a run's start
        records its recipe), in one transaction: the base is in the catalog before any run of
        it. Each text must hash to the sha256 the sweep names (exit 3)."""
        self._sweeps_writable()
        _hashes_to(sweep.content, sweep.sha256, f"the manifest of sweep {sweep.sweep_id}")
        _hashes_to(
            recipe_content, sweep.recipe_sha256, f"the base recipe of sweep {sweep.sweep_id}"
        )
        who = default_actor()
        at = now()

        def base_row() -> dict[str, Any]:
            # The recipe language is loaded only when the base is new to the catalog.
            from compressgate.recipes.load import parse_recipe

            parsed, _ = parse_recipe(recipe_content.encode("utf-8"), recipe_path)
            return {
                "sha256": sweep.recipe_sha256,
                "name": parsed.metadata.name,
                "version": parsed.metadata.version,
                "path": recipe_path,
                "signers": document(recipe_signers),
                "content": recipe_content,
                "envelope": recipe_envelope,
                "recorded_at": at,
                "actor": who,
            }

        sweeps = schema.table(SweepRow)
        with self._writing() as conn:
            taken = conn.execute(
                sa.select(sweeps.c.started_at).where(sweeps.c.sweep_id == sweep.sweep_id)
            ).scalar()
            if taken is not None:
                raise Conflict(
                    f"sweep {sweep.sweep_id} is already recorded (started {taken}); nothing "
                    "recorded",
                    hint="each start of a sweep has its own id",
                )
            rows = self._recipe_rows(conn, sweep.recipe_sha256, recipe_envelope, at, base_row)
            rows.append((SweepRow, sweep_row(sweep)))
            self._append(conn, rows)

    # -- gates' sign-offs and reports

    def record_signoff(self, signoff: SignoffRecord) -> int:
        """Record an approval or a waiver (the caller has checked its envelope); its id is the
        envelope's sha256, so the same envelope is recorded once. Its event number."""
        table = schema.table(ApprovalRow)
        with self._writing() as conn:
            taken = conn.execute(sa.select(table.c.id).where(table.c.id == signoff.id)).first()
            if taken is not None:
                raise Refused(
                    f"this {signoff.kind} is already recorded for run {signoff.run_id}",
                    hint="`compressgate review status` shows it",
                )
            try:
                (seq,) = self._append(conn, [(ApprovalRow, signoff.model_dump())])
            except sa.exc.IntegrityError:  # a key taken since the check: another writer won
                raise Conflict(
                    f"the {signoff.kind} of gate '{signoff.gate}' of run {signoff.run_id} met "
                    "another write to the catalog at the same moment; nothing recorded"
                ) from None
            return seq

    def record_report(self, report: ReportEntry) -> RecordedReport:
        """Record a rendered report (a new event), unless its exact bytes are recorded already:
        then the first record stands and nothing is appended."""
        table = schema.table(ReportRow)
        with self._writing() as conn:
            taken = (
                conn.execute(sa.select(table).where(table.c.sha256 == report.sha256))
                .mappings()
                .first()
            )
            if taken is not None:
                return recorded_report(dict(taken))
            row = report.model_dump()
            (seq,) = self._append(conn, [(ReportRow, row)])
        return recorded_report({**coerced(ReportRow, row), "event_seq": seq})

    # -- aliases

    def move_alias(
        self,
        alias: str,
        variant: VariantRecord,
        *,
        action: Literal["promote", "rollback"],
        reason: str,
        actor: str | None = None,
        expected_previous: str | Literal[False] | None = False,
        release: dict[str, Any] | None = None,
    ) -> AliasMove:
        """Point `alias` at `variant` (a new event). With `expected_previous`, refuse if the
        alias moved meanwhile (another on-call got there first). `release` (owner, keyid,
        policy_version, envelope): the signed release, recorded with the move."""
        moves = schema.table(AliasMoveRow)
        with self._writing() as conn:
            current = conn.execute(
                sa.select(moves.c.variant_id)
                .where(moves.c.alias == alias)
                .order_by(moves.c.event_seq.desc())
                .limit(1)
            ).scalar()
            if expected_previous is not False and current != expected_previous:
                raise Conflict(
                    f"alias {alias} moved meanwhile (now {current}); nothing changed",
                    hint=f"conflict: retry; `compressgate alias history {alias}` shows the move "
                    "that came first",
                )
            move = AliasMove(
                seq=0,  # the event's number, known once appended
                alias=alias,
                variant_id=variant.id,
                artifact_sha256=variant.artifact_sha256,
                previous_variant_id=current,
                action=action,
                actor=actor or default_actor(),
                reason=reason,
                moved_at=now(),
            )
            row = move.model_dump(exclude={"seq", "release"})
            (seq,) = self._append(conn, [(AliasMoveRow, row)])
            signed = None
            if release is not None:
                (at,) = self._append(conn, [(ReleaseRow, {**release, "move_seq": seq})])
                signed = ReleaseRecord.model_validate({**release, "move_seq": seq, "seq": at})
        return move.model_copy(update={"seq": seq, "release": signed})


def _hashes_to(text: str, sha256: str, what: str) -> None:
    """`text`, encoded as UTF-8, has this sha256: the exact bytes the caller verified."""
    found = hashlib.sha256(text.encode("utf-8")).hexdigest()
    if found != sha256:
        raise IntegrityError(
            f"{what}: its text hashes to {found[:16]}…, not to the recorded {sha256[:16]}…; "
            "nothing recorded",
            hint="record the exact bytes that were verified",
        )
