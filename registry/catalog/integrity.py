"""The audit checks over a catalog: its hash chain, its rows against their events, its storage
and its append-only guards, each raising IntegrityError (exit 3) at the first thing that does
not hold; `audit.verify` runs them all (and the artifact store's) for `compressgate audit`.

- `verify_chain`: every event's chain hash, link and (where the event stores one, up to
  schema v3) body against its content hash, in order; a long chain in several processes;
- `verify_rows`: every row's event body, recomputed, against its event's content hash, and
  every event owned by exactly one row;
- `verify_storage`: SQLite's own check of the file, and every table and index as its migration
  created it;
- `verify_triggers`: every append-only trigger present, enabled and unchanged.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import SQLModel

from compressgate.registry.catalog import migrations, schema
from compressgate.registry.catalog.chain import GENESIS, read_json, sha
from compressgate.registry.catalog.connection import DAMAGE, CatalogConnection, safe_url
from compressgate.registry.catalog.migrations import INTRODUCED, PG_BODY, named_guards
from compressgate.registry.catalog.records import Head
from compressgate.registry.catalog.schema import (
    ROW_TABLES,
    TABLES,
    Event,
    ReportRow,
    VariantRow,
    unique_columns,
)
from compressgate.registry.kernel.errors import IntegrityError

T = TypeVar("T")


class CatalogIntegrity(CatalogConnection):
    """The chain's head and the audit checks (a base of `repository.Catalog`)."""

    def head(self) -> Head:
        events = schema.table(Event)
        with self._reading() as conn:
            last = conn.execute(
                sa.select(events.c.seq, events.c.sha256).order_by(events.c.seq.desc()).limit(1)
            ).first()
        return (
            Head(size=int(last[0]), sha256=str(last[1])) if last else Head(size=0, sha256=GENESIS)
        )

    def evidence_head(self) -> Head:
        """The newest event that is not a rendered report's: what a report shows as the chain
        head, so that recording a report does not change the next rendering of it."""
        events, reports = schema.table(Event), schema.table(ReportRow)
        with self._reading() as conn:
            last = conn.execute(
                sa.select(events.c.seq, events.c.sha256)
                .where(~events.c.seq.in_(sa.select(reports.c.event_seq)))
                .order_by(events.c.seq.desc())
                .limit(1)
            ).first()
        return (
            Head(size=int(last[0]), sha256=str(last[1])) if last else Head(size=0, sha256=GENESIS)
        )

    def event_hash(self, seq: int) -> str | None:
        events = schema.table(Event)
        with self._reading() as conn:
            return conn.execute(sa.select(events.c.sha256).where(events.c.seq == seq)).scalar()

    def _present(self, models: Iterable[type[SQLModel]]) -> list[type[SQLModel]]:
        """The tables of `models` this catalog's schema version has (one read as it is, older
        than the code, lacks the later ones)."""
        return [m for m in models if INTRODUCED.get(schema.name(m), 1) <= self.applied]

    def _events(self) -> int:
        events = schema.table(Event)
        with self._reading() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(events)).scalar_one())

    def verify_chain(self, workers: int | None = None, *, since: Head | None = None) -> Head:
        """Recompute every event's chain hash, and its content hash where it stores its body (up
        to schema v4; `verify_rows` recomputes every body from its row), in order; raise at the
        first break.

        With `since` (a signed checkpoint's head): only event `since.size`, which must hash to
        `since.sha256`, and the events after it; what came before is vouched for by that hash.

        A long chain is checked in `workers` processes (default: one per CPU, at most 8), each
        over a contiguous range of events; the links between ranges are checked here."""
        size = self._events()
        first = 1 if since is None or since.size == 0 else since.size
        if since is not None and since.size > size:
            raise IntegrityError(
                f"catalog history rewritten: the checkpoint covers {since.size} events, the "
                f"catalog has only {size}"
            )
        prev: str | None = GENESIS if first == 1 else None
        for span in _over_events(_verify_span, self.url, first, size, workers):
            if prev is not None and span.first_prev is not None and span.first_prev != prev:
                raise IntegrityError(
                    f"catalog chain broken at event {span.start}: it does not link to event "
                    f"{span.start - 1} (prev_sha256 {span.first_prev[:16]}…, expected "
                    f"{prev[:16]}…)"
                )
            if span.error is not None:
                raise IntegrityError(span.error[1], hint=span.error[2])
            if prev is None and since is not None and span.head != since.sha256:
                raise IntegrityError(
                    f"catalog history rewritten: event {since.size} hashes to "
                    f"{(span.head or 'nothing')[:16]}…, the checkpoint says {since.sha256[:16]}…",
                    hint="the catalog was rebuilt since the checkpoint; restore it from a backup",
                )
            prev = span.last or prev
        return Head(size=size, sha256=prev or GENESIS)

    def verify_rows(self, workers: int | None = None, *, since: int = 0) -> int:
        """Every row against its event's body, recomputed in bulk; every event owned by exactly
        one row. Raise at the first row that does not match.

        With `since` (a checkpoint's size): the rows of the events after it are re-hashed and
        every event after it must be owned by one of them; the whole catalog must still hold
        exactly one row per event (counted, not re-hashed: the rows before the checkpoint were
        re-hashed by the audit that signed it).

        A long chain is checked in `workers` processes, as `verify_chain` is: each takes the
        rows whose events fall in its contiguous range of events."""
        events = schema.table(Event)
        size = self._events()
        tables = [schema.name(m) for m in self._present(ROW_TABLES)]
        found = _over_events(_verify_rows_range, self.url, since + 1, size, workers, tables)
        for _, error in found:
            if error is not None:
                raise IntegrityError(error)
        owned = sum(n for n, _ in found)
        total = 0
        with self._reading() as conn:
            for name in tables:
                table = schema.table(schema.BY_NAME[name])
                # Set-based, an anti-join on the events' primary key: `NOT IN (subquery)` runs
                # quadratically on PostgreSQL with its default memory.
                unowned = conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(
                        table.c.event_seq > since,
                        ~sa.exists().where(events.c.seq == table.c.event_seq),
                    )
                ).scalar_one()
                if unowned:
                    raise IntegrityError(
                        f"catalog table {name} has {unowned} row(s) without an event"
                    )
                if since:
                    total += conn.execute(
                        sa.select(sa.func.count()).select_from(table)
                    ).scalar_one()
        if owned != size - since:
            raise IntegrityError(
                f"catalog has {size - since} events"
                + (f" after event {since}" if since else "")
                + f" but {owned} rows point at one: rows were deleted or inserted around the "
                "chain"
            )
        if since and total != size:
            raise IntegrityError(
                f"catalog has {size} events but {total} rows: rows were deleted or inserted "
                "around the chain"
            )
        return total if since else owned

    def verify_storage(self, *, pages: bool = True) -> None:
        """SQLite: the file's pages, indexes and free list as SQLite checks them (`PRAGMA
        integrity_check`; not with `pages=False`, which `--since` passes: it reads the whole
        file): a changed byte that no row shows (an index entry, a page header); and every
        table and index defined exactly as its migration created it."""
        if self.dialect != "sqlite":
            return
        with self._reading() as conn:
            found = (
                [str(r[0]) for r in conn.exec_driver_sql("PRAGMA integrity_check")]
                if pages
                else ["ok"]
            )
            objects = [
                (str(kind), str(name), str(table), sql)
                for kind, name, table, sql in conn.exec_driver_sql(
                    "SELECT type, name, tbl_name, sql FROM sqlite_master"
                )
            ]
            version = self._version(conn)
        defined = {n: " ".join(str(sql).split()) for k, n, _, sql in objects if sql is not None}
        if found != ["ok"]:
            raise IntegrityError(
                f"catalog {safe_url(self.url)} is damaged: {found[0]}"
                + (f" (and {len(found) - 1} more problem(s))" if len(found) > 1 else ""),
                hint="restore it from a backup and run `compressgate audit verify`",
            )
        expected = {
            statement.split()[2]: " ".join(statement.split())
            for migration in migrations.MIGRATIONS
            if migration.version <= version
            for statement in migration.statements(self.dialect)
            if statement.split()[:2] in (["CREATE", "TABLE"], ["CREATE", "INDEX"])
        }
        # Each object of the kind and on the table its name says (the triggers' text is
        # `verify_triggers`'s); SQLite's own indexes for UNIQUE columns named after their table.
        owners = {
            n: (sql.split()[1].lower(), sql.split()[4] if sql.split()[1] == "INDEX" else n)
            for n, sql in expected.items()
        }
        owners.update(
            {
                n: ("trigger", t)
                for t in {o[1] for o in owners.values()}
                for n, _ in named_guards(self.dialect, t)
            }
        )
        altered = sorted(n for n, sql in expected.items() if defined.get(n) != sql)
        for kind, name, table, _ in objects:
            auto = name.startswith("sqlite_autoindex_") and (
                "index",
                name.removeprefix("sqlite_autoindex_").rsplit("_", 1)[0],
            )
            if (kind, table) != (owners.get(name) or auto):
                altered.append(name)
        if altered:
            raise IntegrityError(
                f"catalog {safe_url(self.url)} schema altered: {', '.join(altered)} no longer "
                "defined as its migration created it",
                hint="someone altered the schema; audit the catalog against a checkpoint",
            )

    def verify_triggers(self) -> None:
        """Every append-only trigger present, enabled and exactly as we created it."""
        expected = {
            name: " ".join(sql.split())
            for model in self._present(TABLES)
            for name, sql in named_guards(self.dialect, schema.name(model))
        }
        with self._reading() as conn:
            if self.dialect == "sqlite":
                found = {
                    str(name): " ".join(str(sql).split())
                    for name, sql in conn.exec_driver_sql(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
                    )
                }
                altered = sorted(n for n in expected if n in found and found[n] != expected[n])
                disabled: list[str] = []
                body_ok = True
            else:
                rows = conn.exec_driver_sql(
                    "SELECT t.tgname, t.tgenabled, p.proname, p.prosrc FROM pg_trigger t "
                    "JOIN pg_class c ON c.oid = t.tgrelid "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "JOIN pg_proc p ON p.oid = t.tgfoid "
                    "WHERE NOT t.tgisinternal AND n.nspname = current_schema()"
                ).all()
                found = {str(r[0]): "" for r in rows}
                disabled = sorted(str(r[0]) for r in rows if r[1] not in ("O", "A"))
                altered = sorted(
                    str(r[0])
                    for r in rows
                    if r[0] in expected and r[2] != "compressgate_append_only"
                )
                bodies = {" ".join(str(r[3]).split()) for r in rows if r[0] in expected}
                body_ok = bodies <= {PG_BODY}
        missing = sorted(set(expected) - set(found))
        problems = []
        if missing:
            problems.append(f"trigger(s) {', '.join(missing)} missing")
        if disabled:
            problems.append(f"trigger(s) {', '.join(disabled)} disabled")
        if altered:
            problems.append(f"trigger(s) {', '.join(altered)} altered")
        if not body_ok:
            problems.append("the function compressgate_append_only() was replaced")
        if problems:
            raise IntegrityError(
                f"catalog append-only guard removed: {'; '.join(problems)}",
                hint="someone altered the schema; audit the catalog against a checkpoint",
            )

    def artifacts(
        self, *, since: int = 0
    ) -> Iterable[tuple[str, list[dict[str, Any]], dict[str, Any]]]:
        """(artifact sha256, files, details) of every variant (recorded after event `since`),
        one per distinct artifact."""
        variants = schema.table(VariantRow)
        seen: set[str] = set()
        with self._reading() as conn:
            rows = conn.execute(
                sa.select(variants.c.artifact_sha256, variants.c.files, variants.c.details)
                .where(variants.c.event_seq > since)
                .order_by(variants.c.event_seq)
            ).all()
        for artifact, files, details in rows:
            if artifact in seen:
                continue
            seen.add(artifact)
            yield artifact, read_json(files), read_json(details)


_PARALLEL_FROM = 20_000  # events: below this, one process is as fast as starting others


def _over_events(
    work: Callable[..., T], url: str, first: int, last: int, workers: int | None, *extra: Any
) -> list[T]:
    """`work(url, start, end, *extra)` over events first..last, in order: in this process below
    `_PARALLEL_FROM` events (or with one CPU, or without fork), else in `workers` processes
    (default: one per CPU, at most 8), each over a contiguous range."""
    count = workers or min(os.cpu_count() or 1, 8)
    forking = "fork" in multiprocessing.get_all_start_methods()
    if last - first + 1 < _PARALLEL_FROM or count < 2 or not forking:
        return [work(url, first, last, *extra)]
    bounds = [first + (last - first + 1) * k // count for k in range(count + 1)]
    # fork: the workers open their own connections and never touch the parent's; spawn would
    # re-import a caller's __main__.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(count, mp_context=context) as pool:
        ranges = zip(
            *[(url, lo, hi - 1, *extra) for lo, hi in itertools.pairwise(bounds)], strict=True
        )
        return list(pool.map(work, *ranges))


@dataclass(frozen=True)
class _Span:
    """What one worker found over events start..end."""

    start: int
    first_prev: str | None  # the prev_sha256 stored in event `start`
    last: str | None  # the chain hash of event `end`
    error: tuple[int, str, str | None] | None  # (seq, message, hint) of the first break
    head: str | None = None  # the chain hash of event `start`, recomputed


def _body_hasher(name: str, columns: list[str]) -> Any:
    """A function from a row as the database gives it back (its `columns` in order) to the
    sha256 of its event body: `event_body(name, coerced(model, row))`, with each column's
    coercion looked up once per table instead of once per value."""
    model = schema.BY_NAME[name]
    types = schema.table(model).columns
    documents = schema.DOCUMENTS.get(name, frozenset())
    late = schema.LATE_COLUMNS.get(name, frozenset())
    convert: list[Any] = []
    for column in columns:
        kind: Any = None
        if column in types and column not in documents:
            try:
                kind = types[column].type.python_type
            except NotImplementedError:
                kind = None
        convert.append(
            sha
            if column in documents
            else float
            if kind is float
            else bool
            if kind is bool
            else int
            if kind is int
            else None
        )
    plan = [
        (i, column, fn, column in late)
        for i, (column, fn) in enumerate(zip(columns, convert, strict=True))
        if column != "event_seq"
    ]
    encode = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode
    digest_of = hashlib.sha256

    def body_sha(row: tuple[Any, ...]) -> str:
        shown: dict[str, Any] = {}
        for i, column, fn, is_late in plan:
            value = row[i]
            if value is None:
                if not is_late:
                    shown[column] = None
                continue
            if fn is not None and not (fn is int and isinstance(value, bool)):
                value = fn(value)
            shown[column] = value
        text = encode({"table": name, "row": shown})
        return digest_of(text.encode("utf-8")).hexdigest()

    return body_sha


def _verify_rows_range(url: str, start: int, end: int, tables: list[str]) -> tuple[int, str | None]:
    """Every row of `tables` whose event is in start..end against its event's content hash:
    the rows owned, and the first mismatch's message."""
    engine = sa.create_engine(url)
    events = schema.table(Event)
    owned = 0
    try:
        with engine.connect() as conn:
            for name in tables:
                table = schema.table(schema.BY_NAME[name])
                columns = [c.name for c in table.columns]
                query = (
                    sa.select(*table.columns, events.c.content_sha256)
                    .join(events, events.c.seq == table.c.event_seq)
                    .where(table.c.event_seq >= start, table.c.event_seq <= end)
                )
                body_sha = _body_hasher(name, columns)
                # Closed even when a row breaks off the loop: PostgreSQL streams through a
                # server-side cursor.
                streamed = conn.execution_options(stream_results=True, yield_per=5000)
                with closing(streamed.execute(query)) as result:
                    for row in result:
                        try:
                            same = body_sha(row) == row[-1]
                        except (ValueError, TypeError):  # a value no longer of its column's type
                            same = False
                        if not same:
                            values = dict(zip(columns, row, strict=False))
                            key = ", ".join(f"{c}={values[c]}" for c in unique_columns(name)[:1])
                            return owned, (
                                f"catalog row {name}({key}) does not match its event "
                                f"{values['event_seq']}: the row was edited after it was recorded"
                            )
                        owned += 1
    except (sa.exc.DatabaseError, UnicodeDecodeError) as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if isinstance(exc, sa.exc.DatabaseError) and not any(m in text for m in DAMAGE):
            raise
        return owned, f"catalog {safe_url(url)} is damaged: {text}"
    finally:
        engine.dispose()
    return owned, None


def _verify_span(url: str, start: int, end: int) -> _Span:
    """Check events start..end: numbering, content hashes, links and chain hashes."""
    engine = sa.create_engine(url)
    digest_of = hashlib.sha256
    first_prev: str | None = None
    prev: str | None = None
    head: str | None = None
    expected = start
    body_sql = "CAST(body AS BLOB)" if engine.dialect.name == "sqlite" else "body"
    rows = None
    try:
        with engine.connect() as conn:
            rows = conn.execution_options(stream_results=True, yield_per=20_000).exec_driver_sql(
                f"SELECT seq, content_sha256, prev_sha256, sha256, {body_sql} FROM events "
                f"WHERE seq >= {int(start)} AND seq <= {int(end)} ORDER BY seq"
            )
            for seq, content, stored_prev, digest, body in rows:
                if seq != expected:
                    what = "it is missing" if seq > expected else f"found event {seq} instead"
                    return _Span(
                        start,
                        first_prev,
                        prev,
                        (
                            expected,
                            f"catalog chain broken at event {expected}: {what}",
                            "events were deleted or renumbered; restore from a backup",
                        ),
                    )
                if first_prev is None:
                    first_prev = prev = stored_prev
                data = body if isinstance(body, bytes) else str(body).encode()
                # Empty from schema v4 on: the row states the body (`verify_rows`).
                if data and digest_of(data).hexdigest() != content:
                    message = (
                        f"catalog chain broken at event {seq}: its body no longer matches its "
                        "content hash (the event was edited)"
                    )
                    return _Span(start, first_prev, prev, (seq, message, None))
                if stored_prev != prev:
                    message = (
                        f"catalog chain broken at event {seq}: it does not link to event "
                        f"{seq - 1} (prev_sha256 {stored_prev[:16]}…, expected {str(prev)[:16]}…)"
                    )
                    return _Span(start, first_prev, prev, (seq, message, None))
                if digest_of(f"{seq}\n{prev}\n{content}".encode()).hexdigest() != digest:
                    message = f"catalog chain broken at event {seq}: its chain hash does not match"
                    return _Span(start, first_prev, prev, (seq, message, None))
                if seq == start:
                    head = digest  # recomputed above: what a checkpoint of `start` names
                prev = digest
                expected += 1
    except (sa.exc.DatabaseError, UnicodeDecodeError) as exc:
        text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        if isinstance(exc, sa.exc.DatabaseError) and not any(m in text for m in DAMAGE):
            raise
        message = f"catalog {safe_url(url)} is damaged at event {expected}: {text}"
        hint = "restore it from a backup and audit it against a checkpoint"
        return _Span(start, first_prev, prev, (expected, message, hint))
    finally:
        if rows is not None:
            rows.close()  # a break returns mid-stream: PostgreSQL's server-side cursor
        engine.dispose()
    if expected <= end:
        return _Span(
            start,
            first_prev,
            prev,
            (
                expected,
                f"catalog chain broken at event {expected}: it is missing",
                "events were deleted or renumbered; restore from a backup",
            ),
        )
    return _Span(start, first_prev, prev, None, head)
