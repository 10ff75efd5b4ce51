"""Sweeps as the catalog stores them (schema v6): each sweep's start (`sweeps`), each trial
linked to the run that tried it (`sweep_trials`, one row per trial number) and its end
(`sweep_ends`). What a sweep searches and how it chooses is `run.sweeps`'s; the catalog keeps
the record and refuses what would contradict it: a trial recorded twice, a trial or an end after
the end, a trial of a run it does not hold.

The start, which records the sweep's base recipe as a run's start records its recipe, is
`repository.Catalog.record_sweep_start`. A catalog read as it is at an older schema (v3 to v5)
has no sweep.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from compressgate.registry.catalog import schema
from compressgate.registry.catalog.chain import document, read_json, stored
from compressgate.registry.catalog.connection import CatalogConnection, safe_url
from compressgate.registry.catalog.queries import _record
from compressgate.registry.catalog.records import (
    SweepEndRecord,
    SweepListing,
    SweepRecord,
    SweepTrialRecord,
)
from compressgate.registry.catalog.schema import RunRow, SweepEndRow, SweepRow, SweepTrialRow
from compressgate.registry.kernel.errors import (
    Conflict,
    EnvironmentMismatch,
    ManifestError,
    NotFoundError,
)

SWEEPS_FROM = 6  # the schema version that added sweeps
_STATUS_HINT = "`compressgate sweep status` lists the recorded sweeps"


def sweep_row(sweep: SweepRecord) -> dict[str, Any]:
    """The `sweeps` row of a sweep's start."""
    return {
        **sweep.model_dump(exclude={"signers", "settings"}),
        "signers": document(sweep.signers),
        "settings": stored(sweep.settings),
    }


def trial_id(sweep_id: str, trial: int) -> str:
    """The key of a trial's row: one row per trial number of a sweep."""
    return f"{sweep_id}/{trial}"


class CatalogSweeps(CatalogConnection):
    """Sweeps, their trials and ends (a base of `repository.Catalog`)."""

    def _sweeps_writable(self) -> None:
        if self.applied < SWEEPS_FROM:
            raise EnvironmentMismatch(
                f"catalog {safe_url(self.url)} has schema version {self.applied}: it records "
                f"sweeps from version {SWEEPS_FROM} on",
                hint="open it for writing (any writing command migrates it)",
            )

    def _no_sweep(self, conn: Connection | None, sweep_id: str) -> NotFoundError:
        recent: list[str] = []
        if conn is not None:
            table = schema.table(SweepRow)
            recent = [
                str(r[0])
                for r in conn.execute(
                    sa.select(table.c.sweep_id).order_by(table.c.event_seq.desc()).limit(5)
                )
            ]
        shown = f" (recent: {', '.join(recent)})" if recent else " (none recorded yet)"
        return NotFoundError(
            f"sweep {sweep_id} is not in the catalog {safe_url(self.url)}",
            hint=_STATUS_HINT + shown,
        )

    def _require_sweep(self, conn: Connection, sweep_id: str) -> None:
        table = schema.table(SweepRow)
        query = sa.select(table.c.sweep_id).where(table.c.sweep_id == sweep_id)
        if conn.execute(query).first() is None:
            raise self._no_sweep(conn, sweep_id)

    # -- recording

    def record_sweep_trial(self, trial: SweepTrialRecord) -> None:
        """Append one trial of a started sweep, linked to its run (recorded before it). A
        trial number is recorded once (exit 6 for a second); none after the sweep's end."""
        self._sweeps_writable()
        trials, ends, runs = (
            schema.table(SweepTrialRow),
            schema.table(SweepEndRow),
            schema.table(RunRow),
        )
        key = trial_id(trial.sweep_id, trial.trial)
        with self._writing() as conn:
            self._require_sweep(conn, trial.sweep_id)
            ended = conn.execute(
                sa.select(ends.c.status, ends.c.finished_at).where(
                    ends.c.sweep_id == trial.sweep_id
                )
            ).first()
            if ended is not None:
                raise Conflict(
                    f"sweep {trial.sweep_id} ended ({ended[0]}, {ended[1]}): its trial "
                    f"{trial.trial} was not recorded",
                    hint="a sweep takes no trial after its end; run the sweep again to start "
                    "a new one",
                )
            taken = conn.execute(
                sa.select(trials.c.status, trials.c.run_id, trials.c.event_seq).where(
                    trials.c.id == key
                )
            ).first()
            if taken is not None:
                raise Conflict(
                    f"trial {trial.trial} of sweep {trial.sweep_id} is already recorded (event "
                    f"{taken[2]}: {taken[0]}, run {taken[1]}); this one ({trial.status}, run "
                    f"{trial.run_id}) was not recorded",
                    hint="a trial is recorded once: is another driver of this sweep running? "
                    f"`compressgate sweep status {trial.sweep_id}` shows its trials",
                )
            if trial.run_id is not None and (
                conn.execute(sa.select(runs.c.run_id).where(runs.c.run_id == trial.run_id)).first()
                is None
            ):
                raise NotFoundError(
                    f"run {trial.run_id} of trial {trial.trial} of sweep {trial.sweep_id} is "
                    f"not in the catalog {safe_url(self.url)}",
                    hint="a trial links a run recorded before it",
                )
            row = {
                **trial.model_dump(exclude={"params", "objectives", "failed_gates"}),
                "id": key,
                "params": stored(trial.params),
                "objectives": stored(trial.objectives),
                "failed_gates": stored(trial.failed_gates),
            }
            self._append(conn, [(SweepTrialRow, row)])

    def record_sweep_end(self, end: SweepEndRecord) -> None:
        """Append a sweep's end, once: its frontier (recorded trials that passed) and the
        trial chosen from it."""
        self._sweeps_writable()
        trials, ends = schema.table(SweepTrialRow), schema.table(SweepEndRow)
        with self._writing() as conn:
            self._require_sweep(conn, end.sweep_id)
            ended = conn.execute(
                sa.select(ends.c.status, ends.c.event_seq).where(ends.c.sweep_id == end.sweep_id)
            ).first()
            if ended is not None:
                raise Conflict(
                    f"sweep {end.sweep_id} already ended (event {ended[1]}: {ended[0]}); this "
                    f"end ({end.status}) was not recorded",
                    hint=f"`compressgate sweep status {end.sweep_id}` shows how it ended",
                )
            if end.chosen is not None and end.chosen not in end.frontier:
                raise ManifestError(
                    f"sweep {end.sweep_id}: the chosen trial {end.chosen} is not on its "
                    f"frontier {end.frontier}; nothing recorded"
                )
            passed = {
                int(n)
                for n in conn.execute(
                    sa.select(trials.c.trial).where(
                        trials.c.sweep_id == end.sweep_id, trials.c.status == "passed"
                    )
                ).scalars()
            }
            stray = sorted(set(end.frontier) - passed)
            if stray:
                raise ManifestError(
                    f"sweep {end.sweep_id}: frontier trial(s) {', '.join(map(str, stray))} "
                    "are not recorded trials that passed; nothing recorded"
                )
            row = {**end.model_dump(exclude={"frontier"}), "frontier": stored(end.frontier)}
            self._append(conn, [(SweepEndRow, row)])

    # -- reading

    def sweep(self, sweep_id: str) -> SweepRecord:
        """A sweep's start as recorded."""
        if self.applied < SWEEPS_FROM:
            raise self._no_sweep(None, sweep_id)
        table = schema.table(SweepRow)
        with self._reading() as conn:
            row = (
                conn.execute(sa.select(table).where(table.c.sweep_id == sweep_id))
                .mappings()
                .first()
            )
            if row is None:
                raise self._no_sweep(conn, sweep_id)
        return _sweep_record(dict(row))

    def sweeps(self, *, limit: int = 20) -> list[SweepListing]:
        """The sweeps, newest first: each with its recorded trials and whether it ended."""
        if self.applied < SWEEPS_FROM:
            return []
        sweeps, trials = schema.table(SweepRow), schema.table(SweepTrialRow)
        ends = schema.table(SweepEndRow)
        counted = (
            sa.select(sa.func.count())
            .select_from(trials)
            .where(trials.c.sweep_id == sweeps.c.sweep_id)
            .scalar_subquery()
        )
        query = (
            sa.select(
                sweeps.c.sweep_id,
                sweeps.c.name,
                sweeps.c.version,
                sweeps.c.strategy,
                sweeps.c.backend,
                sweeps.c.started_at,
                counted,
                ends.c.sweep_id,
                ends.c.chosen,
            )
            .select_from(sweeps.outerjoin(ends, ends.c.sweep_id == sweeps.c.sweep_id))
            .order_by(sweeps.c.event_seq.desc())
            .limit(limit)
        )
        with self._reading() as conn:
            return [
                SweepListing(
                    sweep_id=r[0],
                    name=r[1],
                    version=r[2],
                    strategy=r[3],
                    backend=r[4],
                    started_at=r[5],
                    trials=int(r[6]),
                    finished=r[7] is not None,
                    chosen=r[8],
                )
                for r in conn.execute(query)
            ]

    def open_sweeps(self, sha256: str) -> list[SweepRecord]:
        """The sweeps of these manifest bytes that have no end, newest first: a killed sweep
        run again resumes the newest."""
        if self.applied < SWEEPS_FROM:
            return []
        sweeps, ends = schema.table(SweepRow), schema.table(SweepEndRow)
        query = (
            sa.select(sweeps)
            .where(
                sweeps.c.sha256 == sha256,
                ~sa.exists().where(ends.c.sweep_id == sweeps.c.sweep_id),
            )
            .order_by(sweeps.c.event_seq.desc())
        )
        with self._reading() as conn:
            rows = conn.execute(query).mappings().all()
        return [_sweep_record(dict(r)) for r in rows]

    def sweep_trials(self, sweep_id: str) -> list[SweepTrialRecord]:
        """A sweep's recorded trials, by trial number ([] for a sweep not recorded)."""
        if self.applied < SWEEPS_FROM:
            return []
        table = schema.table(SweepTrialRow)
        query = sa.select(table).where(table.c.sweep_id == sweep_id).order_by(table.c.trial)
        with self._reading() as conn:
            rows = conn.execute(query).mappings().all()
        return [_trial_record(dict(r)) for r in rows]

    def sweep_end(self, sweep_id: str) -> SweepEndRecord | None:
        """How the sweep ended, or None while it has no end."""
        if self.applied < SWEEPS_FROM:
            return None
        table = schema.table(SweepEndRow)
        with self._reading() as conn:
            row = (
                conn.execute(sa.select(table).where(table.c.sweep_id == sweep_id))
                .mappings()
                .first()
            )
        if row is None:
            return None
        data = {**row, "frontier": read_json(row["frontier"])}
        return _record(SweepEndRecord, data, f"the end of sweep {sweep_id}")

    def sweep_of_run(self, run_id: str) -> tuple[str, int] | None:
        """(sweep id, trial number) of the trial the run was recorded for (the first, should
        several trials link it), or None."""
        if self.applied < SWEEPS_FROM:
            return None
        table = schema.table(SweepTrialRow)
        query = (
            sa.select(table.c.sweep_id, table.c.trial)
            .where(table.c.run_id == run_id)
            .order_by(table.c.event_seq)
            .limit(1)
        )
        with self._reading() as conn:
            found = conn.execute(query).first()
        return None if found is None else (str(found[0]), int(found[1]))


def _sweep_record(row: dict[str, Any]) -> SweepRecord:
    data = {**row, "signers": read_json(row["signers"]), "settings": read_json(row["settings"])}
    return _record(SweepRecord, data, f"sweep {row['sweep_id']}")


def _trial_record(row: dict[str, Any]) -> SweepTrialRecord:
    data = {
        **row,
        "params": read_json(row["params"]),
        "objectives": read_json(row["objectives"]),
        "failed_gates": read_json(row["failed_gates"]),
    }
    return _record(SweepTrialRecord, data, f"trial {row['id']}")
