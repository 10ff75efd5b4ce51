"""The catalog's connection: the URL, the engine, one transaction per read or write, the
errors a database gives translated into ours, the schema version and its migrations, and the
append of rows with their chained events (`chain`).

Appends are serialised: SQLite by `BEGIN IMMEDIATE`, PostgreSQL by a transaction-scoped advisory
lock, so concurrent writers never fork or lose the chain. `CatalogConnection` is the base of
`repository.Catalog`; `queries` and `integrity` add the read verbs and the audit checks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlmodel import SQLModel

from compressgate.registry.catalog import migrations, schema
from compressgate.registry.catalog.chain import GENESIS, chain_hash, coerced, event_body, now, sha
from compressgate.registry.catalog.schema import ROW_TABLES, Event, SchemaMigration
from compressgate.registry.kernel.errors import (
    CompressgateError,
    EnvironmentMismatch,
    IntegrityError,
    ManifestError,
    NotFoundError,
)

CATALOG_ENV = "COMPRESSGATE_CATALOG"
CATALOG_FILE = "catalog.db"
BODILESS_FROM = 4  # the schema version from which events leave their body empty


def catalog_url(workspace: Path, explicit: str | None = None) -> str:
    """`--catalog URL`, else $COMPRESSGATE_CATALOG, else SQLite at WORKSPACE/catalog.db.

    Only `--catalog` and $COMPRESSGATE_CATALOG may be URLs: the workspace is always a path,
    whatever it holds (`ws?x=1`, `ws%2e%2e`, `x://y`). A `--catalog` without `://` is a path
    too, taken as a SQLite file (`sqlite_url`).
    """
    value = explicit or os.environ.get(CATALOG_ENV)
    if not value:
        return sqlite_url(workspace / CATALOG_FILE)
    if "://" not in value:
        return sqlite_url(Path(value))
    return value


def sqlite_url(path: Path) -> str:
    """The URL of the SQLite file at `path` (made absolute), which names exactly that file.

    A URL's path is percent-decoded and ends at `?`, so `sqlite:///ws?x=1/catalog.db` would
    open `ws` (and `ws%2f..` a file above it). A path holding `%` or `?` is quoted as URLs
    quote it, and its URL names the driver (`sqlite+pysqlite`, SQLite's default) so that no
    reader takes what follows a literal `sqlite:///` for the path; any other path is written
    as it is, `sqlite:///PATH`.
    """
    absolute = str(path.resolve())
    if "%" not in absolute and "?" not in absolute:
        return f"sqlite:///{absolute}"
    url = sa.engine.URL.create("sqlite+pysqlite", database=absolute)
    return url.render_as_string(hide_password=False)


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages."""
    try:
        return sa.engine.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<unparseable catalog URL>"


# --- the repository ----------------------------------------------------------------------------

# What SQLite says of a file it can open but not read: damage (exit 3), not an unreachable
# catalog (exit 4). A flipped byte in a row's text, or in the schema's own SQL, says the last.
DAMAGE = (
    "malformed",
    "not a database",
    "Could not decode to UTF-8",
    "no such table",
    "no such column",
    "unsupported file format",
)


class CatalogConnection:
    """An open catalog: its engine, transactions, schema version and the chained append."""

    def __init__(self, url: str, *, create: bool = True, migrate: bool = False) -> None:
        """Open the catalog at `url`. With `create` (the commands that record runs), create it
        or apply pending migrations; with `migrate` (the other writing commands), open an
        existing catalog and apply pending migrations; with neither, only open an existing
        catalog of the current schema."""
        self.url = url
        try:
            parsed = sa.engine.make_url(url)
        except (sa.exc.ArgumentError, ValueError) as exc:  # ValueError: a port not a number
            raise ManifestError(
                f"catalog URL {safe_url(url)!r} cannot be parsed: {exc}",
                hint="use a path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            ) from None
        self.dialect = parsed.get_backend_name()
        if self.dialect not in ("sqlite", "postgresql"):
            raise ManifestError(
                f"catalog URL {safe_url(url)!r}: only SQLite and PostgreSQL are supported",
                hint="use a path, sqlite:///PATH or postgresql+psycopg://USER@HOST/DB",
            )
        if self.dialect == "sqlite" and parsed.database:
            if not create and not Path(parsed.database).is_file():
                raise NotFoundError(
                    f"no catalog at {parsed.database}",
                    hint="`compressgate run` creates it; or pass --catalog URL",
                )
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self.engine = self._engine(url)
        self.applied = migrations.SCHEMA_VERSION  # the schema version the appends write
        try:
            if create:
                self.migrate()
            elif migrate:
                with self._reading() as conn:
                    if self._version(conn) == 0:
                        raise NotFoundError(
                            f"no catalog at {safe_url(self.url)}: the database has no catalog "
                            "tables",
                            hint="`compressgate run` creates it",
                        )
                self.migrate()
            else:
                self._check_schema()
        except BaseException:
            self.engine.dispose()
            raise

    # -- connection handling

    def _engine(self, url: str) -> Engine:
        if self.dialect == "sqlite":
            engine = sa.create_engine(url, connect_args={"timeout": 120})

            @sa.event.listens_for(engine, "connect")
            def _connect(dbapi: Any, _record: Any) -> None:
                dbapi.isolation_level = None  # we issue BEGIN ourselves
                cursor = dbapi.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")
                cursor.execute("PRAGMA synchronous=FULL")
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute("PRAGMA busy_timeout=120000")
                # 64 MiB of page cache: index lookups in a catalog of millions of events stay
                # in memory (SQLite's default is 2 MiB).
                cursor.execute("PRAGMA cache_size=-65536")
                cursor.close()

            @sa.event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                # Writers take the write lock at once: no two read the same chain head.
                write = conn.get_execution_options().get("compressgate_write", False)
                conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

            return engine
        return sa.create_engine(url, pool_pre_ping=True)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        try:
            with (
                self.engine.connect().execution_options(compressgate_write=True) as conn,
                conn.begin(),
            ):
                if self.dialect == "postgresql":
                    conn.exec_driver_sql(
                        "SELECT pg_advisory_xact_lock(hashtext(current_schema() || "
                        "'.compressgate-events'))"
                    )
                yield conn
        except sa.exc.OperationalError as exc:
            raise self._unavailable(exc) from None
        except sa.exc.IntegrityError as exc:
            text = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
            raise IntegrityError(
                f"catalog {safe_url(self.url)} refused the write: {text}"
            ) from None
        except sa.exc.DatabaseError as exc:
            raise self._damaged(exc) from None
        except UnicodeDecodeError as exc:
            raise self._undecodable(exc) from None

    @contextmanager
    def _reading(self) -> Iterator[Connection]:
        try:
            with self.engine.connect() as conn:
                yield conn
        except sa.exc.OperationalError as exc:
            raise self._unavailable(exc) from None
        except sa.exc.DatabaseError as exc:
            raise self._damaged(exc) from None
        except UnicodeDecodeError as exc:  # SQLite quoting bytes of a damaged file
            raise self._undecodable(exc) from None

    def _undecodable(self, exc: UnicodeDecodeError) -> IntegrityError:
        return IntegrityError(
            f"catalog {safe_url(self.url)} is damaged: it holds bytes that are not UTF-8 "
            f"({exc.reason} at {exc.start})",
            hint="restore it from a backup and run `compressgate audit verify`",
        )

    def _damaged(self, exc: sa.exc.DatabaseError) -> IntegrityError:
        text = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        return IntegrityError(
            f"catalog {safe_url(self.url)} is damaged: {text}",
            hint="restore it from a backup and run `compressgate audit verify`",
        )

    def _unavailable(self, exc: sa.exc.OperationalError) -> CompressgateError:
        text = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        if any(sign in text for sign in DAMAGE):
            return IntegrityError(
                f"catalog {safe_url(self.url)} is damaged: {text}",
                hint="restore it from a backup and run `compressgate audit verify`",
            )
        return NotFoundError(
            f"catalog {safe_url(self.url)} is not reachable: {text}",
            hint="check --catalog / $COMPRESSGATE_CATALOG",
        )

    # -- schema

    def _version(self, conn: Connection) -> int:
        """The applied schema version (0: an empty database); exit 5 if newer than ours."""
        inspector = sa.inspect(conn)
        current = 0
        if inspector.has_table("schema_migrations"):
            current = (
                conn.execute(
                    sa.select(sa.func.max(schema.table(SchemaMigration).c.version))
                ).scalar_one()
                or 0
            )
        if current == 0 and inspector.has_table("events"):
            raise IntegrityError(
                f"catalog {safe_url(self.url)} has an event log but no applied migration: "
                "its schema history was deleted",
                hint="restore it from a backup and audit it against a checkpoint",
            )
        if current > migrations.SCHEMA_VERSION:
            raise EnvironmentMismatch(
                f"catalog {safe_url(self.url)} has schema version {current}; this "
                f"compressgate knows versions up to {migrations.SCHEMA_VERSION}",
                hint="upgrade compressgate to read this catalog",
            )
        return int(current)

    def _check_schema(self) -> None:
        with self._reading() as conn:
            current = self._version(conn)
        self.applied = current
        if current == 0:
            raise NotFoundError(
                f"no catalog at {safe_url(self.url)}: the database has no catalog tables",
                hint="`compressgate run` creates it",
            )
        # A schema older than READABLE_FROM lacks tables the reads need: a writing command
        # migrates it first. From there on a migration changes only what is written.
        if current < min(migrations.READABLE_FROM, migrations.SCHEMA_VERSION):
            raise EnvironmentMismatch(
                f"catalog {safe_url(self.url)} has schema version {current}, older than this "
                f"compressgate's {migrations.SCHEMA_VERSION}",
                hint="any writing command (run, submit, ci, promote, rollback, approve, waive, "
                "report -o) migrates it",
            )

    def migrate(self) -> None:
        """Apply every migration the database has not seen, each with its own event."""
        with self._writing() as conn:
            self.applied = self._version(conn)
            for migration in migrations.MIGRATIONS:
                if migration.version <= self.applied:
                    continue
                for statement in migration.statements(self.dialect):
                    conn.exec_driver_sql(statement)
                self.applied = migration.version
                self._append(
                    conn,
                    [
                        (
                            SchemaMigration,
                            {
                                "version": migration.version,
                                "name": migration.name,
                                "applied_at": now(),
                            },
                        )
                    ],
                )

    def schema_version(self) -> int:
        with self._reading() as conn:
            return int(
                conn.execute(
                    sa.select(sa.func.max(schema.table(SchemaMigration).c.version))
                ).scalar_one()
            )

    # -- appending

    def _append(
        self, conn: Connection, rows: Sequence[tuple[type[SQLModel], dict[str, Any]]]
    ) -> list[int]:
        """Append rows, each with its chained event, inside the caller's write transaction.
        From schema v4 on the event's body is left empty: the row states it."""
        keep_body = self.applied < BODILESS_FROM
        events = schema.table(Event)
        last = conn.execute(
            sa.select(events.c.seq, events.c.sha256).order_by(events.c.seq.desc()).limit(1)
        ).first()
        seq, prev = (int(last[0]), str(last[1])) if last else (0, GENESIS)
        new_events, sequences = [], []
        by_table: dict[type[SQLModel], list[dict[str, Any]]] = {}
        for model, given in rows:
            seq += 1
            row = coerced(model, given)
            body = event_body(schema.name(model), row)
            content = sha(body)
            digest = chain_hash(seq, prev, content)
            new_events.append(
                {
                    "seq": seq,
                    "content_sha256": content,
                    "prev_sha256": prev,
                    "sha256": digest,
                    "body": body if keep_body else "",
                }
            )
            by_table.setdefault(model, []).append({**row, "event_seq": seq})
            sequences.append(seq)
            prev = digest
        conn.execute(events.insert(), new_events)
        for model in ROW_TABLES:  # parents before children (foreign keys)
            if model in by_table:
                conn.execute(schema.table(model).insert(), by_table[model])
        return sequences

    def append(self, rows: Sequence[tuple[type[SQLModel], dict[str, Any]]]) -> list[int]:
        """Append rows (each with its event) in one transaction; returns their event numbers."""
        with self._writing() as conn:
            return self._append(conn, rows)
