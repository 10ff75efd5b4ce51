"""Tampering (issue 8): one changed byte anywhere in what compressgate keeps, and replayed or
expired sign-offs, against the commands that must notice.

One TINY run (two, for the replay cases) is made once; every case then works on a copy of the
file it attacks. A "flip" XORs one byte, at a position drawn from `Options.seed`, with a
non-zero value. The checks run the CLI in this process (click's runner: the same code and exit
codes as the console script, without 1 s of imports per case); a few cases per target also run
the installed console script, to show the two agree.

What "detected" means per target:

- signed files (the recipe): every flip, even one inside a YAML comment that leaves the parsed
  document unchanged, since the signature covers the exact bytes: `recipe verify` exits 3;
- envelopes (the recipe's, a checkpoint): a flip that changes what the envelope says (payload,
  payload type, a signature) is exit 3; one that leaves all three as they were (the key-id hint,
  JSON whitespace) changes nothing a verifier reads, and is counted apart;
- the trust file (unsigned: it is the root of trust): a flip that changes an entry a command
  uses is refused by that command (`recipe verify` for the author, `audit verify
  --checkpoint` for the auditor): exit 3, or exit 2 when the file is no longer a valid trust
  file; a flip that parses to the same trust file is counted apart;
- artifacts: `audit verify` re-hashes every blob (exit 3); `run`, resuming from the stage
  cache, re-hashes what it loads (exit 3);
- stage cache entries: `run` must stop (exit 3) or recompute, never record what a flip made up:
  held if the run's recorded stages equal the clean run's;
- the SQLite catalog: a flip that changes the database's content (a row as SELECT reads it, or
  a structure `PRAGMA integrity_check` checks) must make `audit verify` exit 3, and no command
  may answer with a traceback; a flip in bytes SQLite never reads back (free space, unused page
  tails, or a row's hidden rowid, which only orders rows no query reads in that order), or one
  that only changes white space in a schema entry's SQL (the same trigger), is counted apart.
  Rows edited with the `sqlite3` library (UPDATE, the guard triggers dropped and put back
  exactly) are exit 3, on SQLite and PostgreSQL;
- reports written with `report -o`: `audit verify --report FILE` exits 3;
- sign-offs: an approval for run A presented for run B is exit 3, the same approval presented
  twice is refused (exit 1, nothing recorded), a waiver with an expiry in the past is refused at
  `waive` (exit 2), and a waiver stops counting when it expires.
"""

from __future__ import annotations

import contextlib
import json
import random
import secrets
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from compressgate.recipes.trust import add_owner_key
from compressgate.registry.kernel.keys import generate_keypair

from .common import TINY, Bench, Figure, Options, Outcome, cg, invoke, make_bench

SECTION = "tampering"

# TINY with a comment (flips there leave the parsed recipe unchanged), a gate that passes but
# waits for its owner's approval, and one that fails (to be waived).
RECIPE = (
    "# Tampering bench: this comment is covered by the signature like every other byte.\n"
    + TINY.replace("NAME", "tiny")
    .replace("SEED", "0")
    .replace(
        "rule: bound, min: 0.05}",
        "rule: bound, min: 0.05, approval: required}\n"
        "  - {name: floor, owner: ml-lead, metric: accuracy, rule: bound, min: 0.99}",
    )
)

FULL = {  # flips per target at scale 1.0
    "recipe": 300,
    "envelope": 300,
    "trust": 300,
    "artifact": 300,
    "artifact-run": 10,
    "cache": 30,
    "catalog": 600,
    "catalog-update": 60,
    "report": 200,
    "checkpoint": 300,
}


# --- running the CLI --------------------------------------------------------------------------


def traced(outcome: Outcome) -> bool:
    return "Traceback" in outcome.stdout + outcome.stderr


# --- the scene --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scene:
    """A workspace with two runs of one recipe, a recorded report and a signed checkpoint."""

    bench: Bench
    recipe: Path
    run_a: str
    run_b: str
    report: Path
    checkpoint: Path
    auditor: Path  # the auditor's private key
    folder: Path

    @property
    def workspace(self) -> Path:
        return self.bench.workspace


def prepare(folder: Path) -> Scene:
    """The one real run (and a cached second one) every case reuses."""
    bench = make_bench(folder)
    _, _, public = generate_keypair("auditor", bench.keys)
    add_owner_key(bench.trust, "auditor", public, ("auditor",))
    recipe = bench.recipe("tiny", text=RECIPE)
    runs = []
    for _ in range(2):
        done = cg("run", recipe, "--workspace", bench.workspace, "--json")
        if done.code not in (0, 1) or not done.stdout.strip():  # 1: the floor gate fails
            raise RuntimeError(f"the bench run failed: {done.stderr[-2000:]}")
        runs.append(json.loads(done.stdout)["run_id"])
    report = folder / "report.html"
    checkpoint = folder / "checkpoint.json"
    for outcome in (
        invoke("report", runs[0], "-o", report, "--workspace", bench.workspace),
        invoke(
            "audit",
            "checkpoint",
            "--key",
            bench.key("auditor"),
            "-o",
            checkpoint,
            "--workspace",
            bench.workspace,
        ),
    ):
        if outcome.code != 0:
            raise RuntimeError(f"{outcome.args}: {outcome.stderr}")
    return Scene(bench, recipe, runs[0], runs[1], report, checkpoint, bench.key("auditor"), folder)


def copy_scene(scene: Scene, name: str) -> Scene:
    """The scene's workspace and files copied to `folder/name`, for cases that change them."""
    target = scene.folder / name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(scene.bench.root, target / "ws", symlinks=True)
    shutil.copytree(scene.bench.keys, target / "keys")
    for path in (scene.report, scene.checkpoint):
        shutil.copyfile(path, target / path.name)
    bench = Bench(target / "ws", target / "ws" / "trust.yaml", target / "keys")
    return Scene(
        bench,
        target / "ws" / scene.recipe.name,
        scene.run_a,
        scene.run_b,
        target / scene.report.name,
        target / scene.checkpoint.name,
        bench.key("auditor"),
        target,
    )


# --- flipping bytes ---------------------------------------------------------------------------


@dataclass
class Tally:
    """The cases of one target: how each ended."""

    tried: int = 0
    held: int = 0
    apart: int = 0  # flips counted apart (no change in meaning, or in unused bytes)
    codes: Counter[int] = field(default_factory=Counter)
    notes: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def add(self, held: bool, code: int, miss: str = "") -> None:
        self.tried += 1
        self.held += held
        self.codes[code] += 1
        if not held and len(self.misses) < 5:
            self.misses.append(miss)

    def exits(self) -> str:
        return _exits(self.codes)

    def figure(self, name: str, extra: str = "") -> Figure:
        parts = [self.exits()]
        if extra:
            parts.append(extra)
        if self.misses:
            parts.append("missed: " + " | ".join(self.misses))
        return Figure(SECTION, name, self.tried, self.held, "; ".join(p for p in parts if p))


def _exits(codes: Counter[int]) -> str:
    return ", ".join(f"exit {c} ×{n}" for c, n in sorted(codes.items()))


def flipped(data: bytes, rng: random.Random, span: tuple[int, int] | None = None) -> bytes:
    """`data` with one byte XORed with a non-zero value, at a position drawn from `span`."""
    low, high = span or (0, len(data))
    at = rng.randrange(low, high)
    out = bytearray(data)
    out[at] ^= rng.randrange(1, 256)
    return bytes(out)


@contextlib.contextmanager
def replaced(path: Path, data: bytes) -> Iterator[None]:
    """`path` holds `data` for the block, then its original bytes again."""
    original = path.read_bytes()
    mode = path.stat().st_mode
    path.chmod(0o644)
    path.write_bytes(data)
    try:
        yield
    finally:
        path.write_bytes(original)
        path.chmod(mode)


def position_of(original: bytes, changed: bytes) -> int:
    return next(i for i, (a, b) in enumerate(zip(original, changed, strict=True)) if a != b)


# --- signed and unsigned files ------------------------------------------------------------------


def recipe_flips(scene: Scene, count: int, rng: random.Random) -> Figure:
    """`recipe verify` on the recipe with one byte changed: exit 3, comment bytes included."""
    import yaml

    tally = Tally()
    original = scene.recipe.read_bytes()
    parsed = yaml.safe_load(original)
    comment = 0
    for _ in range(count):
        data = flipped(original, rng)
        try:
            same = yaml.safe_load(data) == parsed
        except (yaml.YAMLError, UnicodeDecodeError, ValueError):
            same = False
        comment += same
        with replaced(scene.recipe, data):
            out = invoke("recipe", "verify", scene.recipe, "--trust", scene.bench.trust)
        at = position_of(original, data)
        tally.add(out.code == 3 and not traced(out), out.code, f"byte {at}: exit {out.code}")
    return tally.figure(
        "recipe: one byte changed, `recipe verify` exits 3",
        f"{comment} of them left the parsed YAML unchanged (a comment) and were caught too",
    )


def _envelope_meaning(data: bytes) -> tuple[Any, ...] | None:
    """What a verifier reads of an envelope: payload, type and signature bytes (not key ids)."""
    from compressgate.registry.kernel.dsse import Envelope
    from compressgate.registry.kernel.errors import CompressgateError

    try:
        envelope = Envelope.from_json(data, source="envelope")
    except CompressgateError:
        return None
    return (envelope.payload, envelope.payload_type, tuple(s.sig for s in envelope.signatures))


def envelope_flips(
    name: str, path: Path, command: Callable[[], Outcome], count: int, rng: random.Random
) -> Figure:
    """Flips in a DSSE envelope: those that change what it says are exit 3; those that leave
    payload, type and signatures as they were are counted apart (and must not fail)."""
    tally = Tally()
    original = path.read_bytes()
    meaning = _envelope_meaning(original)
    harmless = Counter[int]()
    for _ in range(count):
        data = flipped(original, rng)
        with replaced(path, data):
            out = command()
        at = position_of(original, data)
        if _envelope_meaning(data) == meaning:
            tally.apart += 1
            harmless[out.code] += 1
            if out.code != 0 or traced(out):  # changed nothing a verifier reads
                tally.add(False, out.code, f"byte {at} (meaning unchanged): exit {out.code}")
            continue
        tally.add(out.code == 3 and not traced(out), out.code, f"byte {at}: exit {out.code}")
    return tally.figure(
        f"{name}: a byte that changes what it says, exit 3",
        f"{tally.apart} more flips left payload, type and signatures as they were (a key-id "
        f"hint, JSON whitespace): verified as before ({_exits(harmless)})"
        if tally.apart
        else "",
    )


def trust_flips(scene: Scene, count: int, rng: random.Random) -> Figure:
    """The trust file, with only the entries two commands use: the author (`recipe verify`)
    and the auditor (`audit verify --checkpoint`). A flip that changes it must be refused by
    one of them."""
    from compressgate.recipes.trust import load_trust
    from compressgate.registry.kernel.errors import CompressgateError
    from compressgate.registry.kernel.keys import load_public_key

    trust = scene.folder / "trust-used.yaml"
    keys = scene.bench.keys
    add_owner_key(trust, "ml-platform", load_public_key(keys / "ml-platform.pub.json"), ("author",))
    add_owner_key(trust, "auditor", load_public_key(keys / "auditor.pub.json"), ("auditor",))
    original = trust.read_bytes()
    parsed = load_trust(trust)
    tally = Tally()
    same_count = 0
    for _ in range(count):
        data = flipped(original, rng)
        with replaced(trust, data):
            try:
                same = load_trust(trust) == parsed
            except CompressgateError:
                same = False
            verify = invoke("recipe", "verify", scene.recipe, "--trust", trust)
            audit = invoke(
                "audit",
                "verify",
                "--skip-artifacts",
                "--checkpoint",
                scene.checkpoint,
                "--trust",
                trust,
                "--workspace",
                scene.workspace,
            )
        at = position_of(original, data)
        clean = not traced(verify) and not traced(audit)
        if same:
            same_count += 1
            tally.apart += 1
            codes = {verify.code, audit.code}
            if not clean or not codes <= {0, 2, 3}:  # verified as before, or refused cleanly
                tally.add(False, max(codes), f"byte {at} (same trust): {verify.code}/{audit.code}")
            continue
        refused = max(verify.code, audit.code)
        tally.add(refused in (2, 3) and clean, refused, f"byte {at}: {verify.code}/{audit.code}")
    return tally.figure(
        "trust file: a byte that changes it, refused",
        "exit 2: no longer a valid trust file; "
        f"{same_count} more flips parsed to the same trust file (verified as before, or "
        "refused)",
    )


def report_flips(scene: Scene, count: int, rng: random.Random) -> Figure:
    tally = Tally()
    original = scene.report.read_bytes()
    for _ in range(count):
        data = flipped(original, rng)
        with replaced(scene.report, data):
            out = invoke(
                "audit",
                "verify",
                "--skip-artifacts",
                "--report",
                scene.report,
                "--workspace",
                scene.workspace,
            )
        tally.add(out.code == 3 and not traced(out), out.code, f"exit {out.code}")
    return tally.figure("report: one byte changed, `audit verify --report` exits 3")


# --- the artifact store and the stage cache -----------------------------------------------------


def _blobs(workspace: Path) -> list[Path]:
    return sorted(p for p in (workspace / "objects" / "sha256").rglob("*") if p.is_file())


def artifact_flips(scene: Scene, count: int, runs: int, rng: random.Random) -> list[Figure]:
    """A byte changed in a stored blob: `audit verify` re-hashes every blob; `run`, resuming
    from the stage cache, loads (and re-hashes) the models it goes on from."""
    blobs = _blobs(scene.workspace)
    audit, resumed = Tally(), Tally()
    for index in range(count + runs):
        blob = rng.choice(blobs)
        original = blob.read_bytes()
        data = flipped(original, rng)
        with replaced(blob, data):
            if index < count:
                out = invoke("audit", "verify", "--workspace", scene.workspace)
                tally = audit
            else:
                out = invoke("run", scene.recipe, "--workspace", scene.workspace, "--json")
                tally = resumed
        tally.add(out.code == 3 and not traced(out), out.code, f"{blob.name[:12]}: {out.code}")
    return [
        audit.figure(
            "artifact blob: one byte changed, `audit verify` exits 3", f"{len(blobs)} blobs"
        ),
        resumed.figure("artifact blob: one byte changed, `run` (resuming) exits 3"),
    ]


def _recorded(workspace: Path, run_id: str) -> list[tuple[Any, ...]]:
    """A run's recorded stages as they matter: artifact, metrics, evaluation."""
    from compressgate.registry.catalog.repository import Catalog, catalog_url

    with Catalog(catalog_url(workspace), create=False, migrate=True) as catalog:
        run = catalog.run(run_id)
    return [
        (
            s.seed,
            s.name,
            s.status,
            s.artifact_sha256,
            json.dumps({k: v.model_dump(mode="json") for k, v in s.metrics.items()}),
            json.dumps({k: v.model_dump(mode="json") for k, v in s.evaluations.items()}),
        )
        for s in run.stages
    ]


def cache_flips(scene: Scene, count: int, rng: random.Random) -> Figure:
    """A byte changed in a stage cache entry, then `run`: it must stop (exit 3) or recompute;
    held if the run it records is the clean run's, stage for stage."""
    work = copy_scene(scene, "cache")
    clean = _recorded(work.workspace, scene.run_a)
    entries = sorted((work.workspace / "cache").glob("*.json"))
    tally = Tally()
    for _ in range(count):
        entry = rng.choice(entries)
        original = entry.read_bytes()
        data = flipped(original, rng)
        with replaced(entry, data):
            out = invoke("run", work.recipe, "--workspace", work.workspace, "--json")
        at = position_of(original, data)
        if traced(out):
            last = out.stderr.strip().splitlines()[-1][:80]
            tally.add(False, out.code, f"byte {at}: traceback {last}")
            continue
        if out.code == 3:
            tally.add(True, 3)
            continue
        try:
            run_id = json.loads(out.stdout)["run_id"]
            same = _recorded(work.workspace, run_id) == clean
        except (ValueError, KeyError):
            same = False
        what = repr(data[max(0, at - 12) : at + 12])
        tally.add(same, out.code, f"byte {at} {what}: recorded {'as clean' if same else 'changed'}")
    return tally.figure("stage cache entry: one byte changed, `run` stops or recomputes")


# --- the catalog --------------------------------------------------------------------------------


def _dump(path: Path) -> tuple[list[Any], str]:
    """Every row of every table as SELECT reads them, and `PRAGMA integrity_check`'s answer.
    Raises sqlite3.DatabaseError (or UnicodeDecodeError, for SQLite's message quoting a damaged
    schema) if SQLite cannot read the file."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro&immutable=1", uri=True)) as db:
        db.text_factory = bytes  # as stored: a flip may leave text that is not UTF-8
        # A schema entry's SQL up to white space: `CREATE\tTRIGGER …` is the same trigger (and
        # `audit verify` compares triggers so, since migrations may format their SQL anew).
        schema = [
            (kind, name, None if sql is None else b" ".join(sql.split()))
            for kind, name, sql in db.execute(
                "SELECT type, name, sql FROM sqlite_master ORDER BY rowid"
            )
        ]
        rows: list[Any] = [schema]
        for kind, name, _ in schema:
            if kind == b"table":
                quoted = name.replace(b'"', b'""').decode("utf-8", "replace")
                # As a set: a flip in a row's hidden rowid reorders rows but changes no value
                # any read sees (every query orders by its own columns), so it is not content.
                rows.append(sorted(repr(r) for r in db.execute(f'SELECT * FROM "{quoted}"')))
        check = b" ".join(r[0] for r in db.execute("PRAGMA integrity_check")).decode("latin-1")
    return rows, check


def catalog_flips(scene: Scene, count: int, rng: random.Random) -> list[Figure]:
    """One byte changed in the (closed) SQLite catalog: content flips are exit 3 from `audit
    verify`; flips that change no content (unused space, a hidden rowid, white space in a
    schema entry's SQL) are counted apart; no command tracebacks."""
    work = copy_scene(scene, "catalog")
    db = work.workspace / "catalog.db"
    for leftover in (db.with_name("catalog.db-wal"), db.with_name("catalog.db-shm")):
        assert not leftover.exists(), f"{leftover}: the catalog was not closed"
    original = db.read_bytes()
    clean = _dump(db)
    content, unused, readers = Tally(), Tally(), Tally()
    kinds = Counter[str]()
    for _ in range(count):
        data = flipped(original, rng)
        at = position_of(original, data)
        db.write_bytes(data)
        try:
            rows, check = _dump(db)
            kind = "row" if rows != clean[0] else "structure" if check != clean[1] else "unused"
        except (sqlite3.DatabaseError, UnicodeDecodeError):  # the schema is damaged
            kind = "unreadable"
        kinds[kind] += 1
        out = invoke("audit", "verify", "--skip-artifacts", "--workspace", work.workspace)
        listed = invoke("catalog", "show", scene.run_a, "--workspace", work.workspace)
        for leftover in (db.with_name("catalog.db-wal"), db.with_name("catalog.db-shm")):
            leftover.unlink(missing_ok=True)
        readers.add(
            not traced(listed) and (listed.code in (0, 3)),
            listed.code,
            f"byte {at} ({kind}): catalog show exit {listed.code}",
        )
        if kind == "unused":
            unused.add(out.code == 0 and not traced(out), out.code, f"byte {at}: {out.code}")
            continue
        content.add(out.code == 3 and not traced(out), out.code, f"byte {at} ({kind}): {out.code}")
    db.write_bytes(original)
    shown = ", ".join(f"{k} ×{n}" for k, n in sorted(kinds.items()))
    return [
        content.figure(
            "catalog.db: a byte that changes its content, `audit verify` exits 3",
            f"of {count} flips: {shown} (row: a SELECT reads another value; structure: "
            "PRAGMA integrity_check objects; unreadable: SQLite reports corruption)",
        ),
        unused.figure(
            "catalog.db: a byte that changes no content SQLite reads back, verifies (by design)"
        ),
        readers.figure("catalog.db: any flipped byte, `catalog show` answers without traceback"),
    ]


# The columns a smarter attacker edits: every column but the keys and event_seq.
def _editable(table: str) -> list[tuple[str, str]]:
    from sqlmodel import AutoString

    from compressgate.registry.catalog.repository import TABLES

    model = next(m for m in TABLES if m.__tablename__ == table)
    out = []
    for column in model.__table__.columns:  # type: ignore[attr-defined]
        if column.primary_key or column.unique or column.name == "event_seq":
            continue
        if isinstance(column.type, AutoString):
            out.append((column.name, "str"))
        elif column.type.python_type in (int, float):
            out.append((column.name, column.type.python_type.__name__))
    return out


def _changed(value: Any, kind: str) -> Any:
    if value is None:
        return "tampered" if kind == "str" else 1
    if kind == "str":
        text = str(value)
        return (text[:-1] + ("x" if text[-1:] != "x" else "y")) if text else "x"
    if kind == "float":
        return float(value) + 0.001
    return int(value) + 1


def row_updates(
    url: str,
    count: int,
    rng: random.Random,
    audit: Callable[[], Outcome],
    restore: Callable[[], None],
) -> Tally:
    """UPDATE one column of one row, past the append-only guards (dropped or disabled, then put
    back exactly as they were), `count` times on fresh copies: `audit verify` exits 3 each
    time (`audit` runs the check, `restore` puts the catalog back after each case)."""
    import sqlalchemy as sa

    from compressgate.registry.catalog.repository import ROW_TABLES, Catalog

    tally = Tally()
    with Catalog(url, create=False, migrate=True) as catalog:
        dialect = catalog.dialect
        with catalog.engine.connect() as conn:
            tables = [
                m.__tablename__
                for m in ROW_TABLES
                if conn.execute(
                    sa.text(f"SELECT count(*) FROM {m.__tablename__}")  # type: ignore[attr-defined]
                ).scalar_one()
            ]
    engine = sa.create_engine(url)
    try:
        for _ in range(count):
            while True:  # a value a foreign key refuses is drawn again
                table = str(rng.choice(tables))
                column, kind = rng.choice(_editable(table))
                if _update(engine, dialect, table, column, kind, rng):
                    break
            out = audit()
            tally.add(out.code == 3 and not traced(out), out.code, f"{table}.{column}: {out.code}")
            tally.notes[table] += 1
            restore()
    finally:
        engine.dispose()
    return tally


def _update(
    engine: Any, dialect: str, table: str, column: str, kind: str, rng: random.Random
) -> bool:
    """One row's column changed with the table's guards out of the way and then put back."""
    import sqlalchemy as sa

    try:
        with engine.begin() as conn:
            keys = conn.execute(sa.text(f"SELECT event_seq FROM {table}")).scalars().all()
            seq = rng.choice(list(keys))
            value = conn.execute(
                sa.text(f"SELECT {column} FROM {table} WHERE event_seq = :s"), {"s": seq}
            ).scalar()
            if dialect == "sqlite":
                triggers = conn.execute(
                    sa.text(
                        "SELECT name, sql FROM sqlite_master WHERE tbl_name = :t "
                        "AND type = 'trigger'"
                    ),
                    {"t": table},
                ).all()
                for name, _ in triggers:
                    conn.exec_driver_sql(f"DROP TRIGGER {name}")
            else:
                conn.exec_driver_sql(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            conn.execute(
                sa.text(f"UPDATE {table} SET {column} = :v WHERE event_seq = :s"),
                {"v": _changed(value, kind), "s": seq},
            )
            if dialect == "sqlite":
                for _, sql in triggers:
                    conn.exec_driver_sql(sql)
            else:
                conn.exec_driver_sql(f"ALTER TABLE {table} ENABLE TRIGGER USER")
    except sa.exc.IntegrityError:
        return False
    finally:
        engine.dispose()  # SQLite: the change checkpointed into the file before it is audited
    return True


def sqlite_updates(scene: Scene, count: int, rng: random.Random) -> Figure:
    work = copy_scene(scene, "catalog-update")
    db = work.workspace / "catalog.db"
    original = db.read_bytes()

    def audit() -> Outcome:
        return invoke("audit", "verify", "--skip-artifacts", "--workspace", work.workspace)

    def restore() -> None:
        for leftover in (db.with_name("catalog.db-wal"), db.with_name("catalog.db-shm")):
            leftover.unlink(missing_ok=True)
        db.write_bytes(original)

    tally = row_updates(f"sqlite:///{db}", count, rng, audit, restore)
    return tally.figure(
        "catalog.db: a row UPDATEd past the dropped-and-restored guards, exit 3",
        f"{len(tally.notes)} tables",
    )


def postgres_updates(scene: Scene, url: str, count: int, rng: random.Random) -> Figure:
    """The same, in a fresh PostgreSQL schema holding a run of the recipe (stages cached)."""
    import sqlalchemy as sa

    schema = f"cg_tamper_{secrets.token_hex(5)}"
    admin = sa.create_engine(url)
    separator = "&" if "?" in url else "?"
    scoped = f"{url}{separator}options=-csearch_path%3D{schema}"
    work = copy_scene(scene, "catalog-pg")
    try:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        ran = invoke("run", work.recipe, "--workspace", work.workspace, "--catalog", scoped)
        if ran.code not in (0, 1):
            raise RuntimeError(f"the PostgreSQL run failed: {ran.stderr[-2000:]}")
        run_id = invoke("catalog", "list", "--catalog", scoped, "--json")
        first = json.loads(run_id.stdout)[0]["run_id"]
        written = invoke("report", first, "-o", work.folder / "pg.html", "--catalog", scoped)
        if written.code != 0:
            raise RuntimeError(written.stderr)
        dump = _pg_snapshot(admin, schema)

        def audit() -> Outcome:
            return invoke("audit", "verify", "--skip-artifacts", "--catalog", scoped)

        def restore() -> None:
            _pg_restore(admin, schema, dump)

        clean = audit()
        if clean.code != 0:
            raise RuntimeError(f"the PostgreSQL catalog does not verify: {clean.stderr}")
        tally = row_updates(scoped, count, rng, audit, restore)
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()
    return tally.figure(
        "PostgreSQL catalog: a row UPDATEd with its guards disabled, exit 3",
        f"{len(tally.notes)} tables",
    )


def _pg_snapshot(engine: Any, schema: str) -> dict[str, list[dict[str, Any]]]:
    from compressgate.registry.catalog.repository import ROW_TABLES

    out = {}
    with engine.connect() as conn:
        for model in ROW_TABLES:
            name = model.__tablename__
            out[name] = [
                dict(r) for r in conn.exec_driver_sql(f"SELECT * FROM {schema}.{name}").mappings()
            ]
    return out


def _pg_restore(engine: Any, schema: str, dump: dict[str, list[dict[str, Any]]]) -> None:
    """Put every row back as it was (the guards off for the time it takes)."""
    import sqlalchemy as sa

    with engine.begin() as conn:
        for name, rows in dump.items():
            conn.exec_driver_sql(f"ALTER TABLE {schema}.{name} DISABLE TRIGGER USER")
            for row in rows:
                sets = ", ".join(f"{k} = :{k}" for k in row if k != "event_seq")
                if sets:
                    conn.execute(
                        sa.text(f"UPDATE {schema}.{name} SET {sets} WHERE event_seq = :event_seq"),
                        row,
                    )
            conn.exec_driver_sql(f"ALTER TABLE {schema}.{name} ENABLE TRIGGER USER")


# --- sign-offs ---------------------------------------------------------------------------------


def _events(workspace: Path) -> int:
    with contextlib.closing(
        sqlite3.connect(f"file:{workspace / 'catalog.db'}?mode=ro", uri=True)
    ) as db:
        return int(db.execute("SELECT count(*) FROM events").fetchone()[0])


def signoffs(scene: Scene, expiry_seconds: float = 3.0) -> list[Figure]:
    """Replayed approvals and expired waivers, on a copy of the scene."""
    work = copy_scene(scene, "signoffs")
    ws = ("--workspace", work.workspace)
    key = work.bench.key("ml-lead")
    envelope = work.folder / "approval-a.json"
    cases: list[tuple[str, bool, str]] = []

    def case(name: str, out: Outcome, code: int, before: int | None = None) -> None:
        unchanged = before is None or _events(work.workspace) == before
        held = out.code == code and not traced(out) and unchanged
        cases.append((name, held, f"{name}: exit {out.code}{'' if unchanged else ', recorded'}"))

    approved = invoke(
        "approve", work.run_a, "--gate", "accuracy", "--key", key, "--out", envelope, *ws
    )
    if approved.code != 0:
        raise RuntimeError(f"approving run A failed: {approved.stderr}")
    before = _events(work.workspace)
    case(
        "run A's approval presented for run B",
        invoke("approve", work.run_b, "--gate", "accuracy", "--envelope", envelope, *ws),
        3,
        before,
    )
    case(
        "run A's approval presented again for run A",
        invoke("approve", work.run_a, "--gate", "accuracy", "--envelope", envelope, *ws),
        1,
        before,
    )
    case(
        "a second approval of run A's gate by its owner",
        invoke("approve", work.run_a, "--gate", "accuracy", "--key", key, *ws),
        1,
        before,
    )
    replay = Tally()
    for _name, held, note in cases:
        replay.add(held, 0 if held else 1, note)
    replay.codes.clear()
    figures = [replay.figure("approvals replayed across runs or twice: refused, nothing recorded")]

    expiry = Tally()
    past = invoke(
        "waive",
        work.run_a,
        "--gate",
        "floor",
        "--key",
        key,
        "--reason",
        "r",
        "--expires",
        "2020-01-01",
        *ws,
    )
    expiry.add(past.code == 2 and not traced(past), past.code, f"expired at waive: {past.code}")
    until = (datetime.now(UTC) + timedelta(seconds=expiry_seconds)).replace(microsecond=0)
    waived = invoke(
        "waive",
        work.run_a,
        "--gate",
        "floor",
        "--key",
        key,
        "--reason",
        "edge devices",
        "--expires",
        until.isoformat(),
        *ws,
    )
    status = invoke("review", "status", work.run_a, "--json", *ws)
    counting = waived.code == 0 and json.loads(status.stdout or "{}").get("status") == "approved"
    expiry.add(counting, waived.code, f"waiver before expiry counts: {waived.code}/{status.code}")
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 0.5)
    after = invoke("review", "status", work.run_a, "--json", *ws)
    gone = after.code == 1 and json.loads(after.stdout or "{}").get("status") == "rejected"
    expiry.add(gone, after.code, f"after expiry, review status: {after.code}")
    promoted = invoke("promote", f"{work.run_a}/0/export", "--alias", "production", *ws)
    expiry.add(promoted.code == 1, promoted.code, f"after expiry, promote: {promoted.code}")
    figures.append(
        expiry.figure("waivers: past expiry refused at `waive`, an expired one no longer counts")
    )
    return figures


# --- the console script agrees --------------------------------------------------------------


def console_agrees(scene: Scene, rng: random.Random) -> Figure:
    """A few flips through the installed `compressgate` script, as a user would run it."""
    tally = Tally()
    checks: Sequence[tuple[Path, tuple[str | Path, ...]]] = (
        (scene.recipe, ("recipe", "verify", scene.recipe, "--trust", scene.bench.trust)),
        (
            scene.report,
            (
                "audit",
                "verify",
                "--skip-artifacts",
                "--report",
                scene.report,
                "--workspace",
                scene.workspace,
            ),
        ),
        (_blobs(scene.workspace)[0], ("audit", "verify", "--workspace", scene.workspace)),
    )
    for path, args in checks:
        original = path.read_bytes()
        data = flipped(original, rng, (len(original) // 4, len(original) * 3 // 4))
        with replaced(path, data):
            out = cg(*args)
        tally.add(out.code == 3 and out.clean, out.code, f"{path.name}: {out.code} {out.stderr}")
    return tally.figure("the console script: the same flips, exit 3 and one line")


# --- the section ------------------------------------------------------------------------------


def figures(options: Options) -> list[Figure]:
    rng = random.Random(options.seed)
    scene = prepare(options.folder)
    n = {name: options.count(full) for name, full in FULL.items()}
    ws = ("--workspace", scene.workspace)
    found = [
        recipe_flips(scene, n["recipe"], rng),
        envelope_flips(
            "recipe envelope",
            scene.recipe.with_name(scene.recipe.name + ".dsse.json"),
            lambda: invoke("recipe", "verify", scene.recipe, "--trust", scene.bench.trust),
            n["envelope"],
            rng,
        ),
        trust_flips(scene, n["trust"], rng),
        *artifact_flips(copy_scene(scene, "artifacts"), n["artifact"], n["artifact-run"], rng),
        cache_flips(scene, n["cache"], rng),
        *catalog_flips(scene, n["catalog"], rng),
        sqlite_updates(scene, n["catalog-update"], rng),
        report_flips(scene, n["report"], rng),
        envelope_flips(
            "catalog checkpoint",
            scene.checkpoint,
            lambda: invoke(
                "audit",
                "verify",
                "--skip-artifacts",
                "--checkpoint",
                scene.checkpoint,
                "--trust",
                scene.bench.trust,
                *ws,
            ),
            n["checkpoint"],
            rng,
        ),
        *signoffs(scene),
        console_agrees(scene, rng),
    ]
    if options.postgres:
        found.append(postgres_updates(scene, options.postgres, n["catalog-update"], rng))
    return found
