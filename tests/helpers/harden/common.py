"""What every hardening scenario needs: a small signed recipe, the CLI in a subprocess, and
checks that a refusal was clean (one line, no traceback) and left nothing behind."""

from __future__ import annotations

import os
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.keys import generate_keypair, load_private_key

EXE = str(Path(sys.executable).parent / "compressgate")

# One seed, a 4/8-channel CNN trained for one epoch, then prune → int8 → export: about 15 s
# from scratch in a fresh process (most of it imports), about 8 s fully cached.
TINY = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: NAME, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  args: {channels: [4, 8], hidden: 16}
  train: {epochs: 1, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [SEED]
stages:
  - {name: prune, kind: prune, method: structured, scope: layer, sparsity: 0.25, rounds: 1,
     finetune_epochs: 1}
  - {name: int8, kind: quantize, method: dynamic}
  - {name: export, kind: export}
evaluators:
  - kind: accuracy
  - kind: paired
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.05}
"""

OWNERS = (("ml-platform", "author"), ("ml-lead", "approver"), ("serving", "releaser"))


@dataclass(frozen=True)
class Bench:
    """A folder with the digits example, owners' keys, a trust file and a workspace `.cg`."""

    root: Path
    trust: Path
    keys: Path

    @property
    def workspace(self) -> Path:
        return self.root / ".cg"

    @property
    def catalog_file(self) -> Path:
        return self.workspace / "catalog.db"

    def key(self, owner: str) -> Path:
        return self.keys / f"{owner}.key"

    def recipe(self, name: str = "tiny", seed: int = 0, text: str | None = None) -> Path:
        """Write TINY (or `text`) as `<name>.yaml` beside the trust file, signed by the author."""
        path = self.root / f"{name}.yaml"
        body = text if text is not None else TINY.replace("NAME", name).replace("SEED", str(seed))
        path.write_text(body, encoding="utf-8")
        sign_recipe(path, load_private_key(self.key("ml-platform")))
        return path


def make_bench(folder: Path) -> Bench:
    root = folder / "ws"
    init_example(root, "digits")
    keys = folder / "keys"
    trust = root / "trust.yaml"
    for owner, role in OWNERS:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    return Bench(root, trust, keys)


@dataclass(frozen=True)
class Outcome:
    """A finished `compressgate` process."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    @property
    def clean(self) -> bool:
        """A refusal users can read: no traceback, and one line of message on stderr."""
        return "Traceback" not in self.stdout + self.stderr and len(self.message_lines) == 1

    @property
    def message_lines(self) -> list[str]:
        """stderr's lines other than progress output and `hint:` lines."""
        return [
            line
            for line in self.stderr.splitlines()
            if line.strip() and not line.lstrip().startswith("hint:")
        ]


def cg(*args: str | Path, env: dict[str, str] | None = None, timeout: float = 600) -> Outcome:
    """Run the installed `compressgate` console script as a user would."""
    argv = [EXE, *(str(a) for a in args)]
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        timeout=timeout,
        check=False,
    )
    return Outcome(tuple(argv[1:]), done.returncode, done.stdout, done.stderr)


def invoke(
    *args: str | Path, env: dict[str, str | None] | None = None, color: bool = False
) -> Outcome:
    """Run `compressgate ARGS` in this process (click's runner): no start-up cost. The
    COMPRESSGATE_* variables are unset unless `env` sets them. An exception that escapes the
    CLI counts as a traceback, as the console script would print one (exit 1). With `color`,
    as on a terminal: click strips no ANSI sequence from what it echoes."""
    from click.testing import CliRunner

    from compressgate.registry.cli import cli

    argv = tuple(str(a) for a in args)
    isolated: dict[str, str | None] = {
        "COMPRESSGATE_TRUST": None,
        "COMPRESSGATE_WORKSPACE": None,
        "COMPRESSGATE_CATALOG": None,
        "COLUMNS": "200",
        **(env or {}),
    }
    result = CliRunner().invoke(
        cli, argv, prog_name="compressgate", env=isolated, catch_exceptions=True, color=color
    )
    stderr, code = result.stderr, result.exit_code
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += f"\nTraceback: {type(result.exception).__name__}: {result.exception}"[:400]
        code = 1
    return Outcome(argv, code, result.stdout, stderr)


def traceback_of(outcome: Outcome) -> str:
    """The traceback line an outcome printed, or ''."""
    text = outcome.stdout + outcome.stderr
    return next((line for line in text.splitlines() if "Traceback" in line), "")


def sign_bytes(bench: Bench, path: Path, name: str) -> None:
    """Sign a manifest's bytes as they are, without validating them first (as a holder of an
    author key could), so that what is refused is the content, not a missing signature: with
    the files it references as subjects where it parses far enough to name them."""
    from compressgate.recipes.load import parse_recipe
    from compressgate.recipes.signing import RECIPE_PREDICATE_TYPE, envelope_path
    from compressgate.recipes.subjects import digests, referenced
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.kernel.errors import CompressgateError

    data = path.read_bytes()
    subjects: list[tuple[str, str]] = []
    try:
        recipe = parse_recipe(data, str(path))[0]
        found = digests(referenced(recipe, path.parent), path.parent)
        subjects = [(n, sha) for n, sha in found.items() if sha is not None]
    except (CompressgateError, OSError):
        pass  # it does not parse: the verifier refuses it before it looks for subjects
    payload = dsse.statement(
        [(path.name, sha256_bytes(data)), *subjects],
        RECIPE_PREDICATE_TYPE,
        {"recipe": {"name": name, "version": 1}},
    )
    key = load_private_key(bench.key("ml-platform"))
    envelope_path(path).write_bytes(dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [key]).to_json())


@contextmanager
def postgres_schema(base: str, prefix: str = "cg_harden") -> Iterator[str]:
    """A fresh schema on the server at `base`, dropped afterwards; yields the catalog URL."""
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    schema = f"{prefix}_{secrets.token_hex(5)}"
    engine = sa.create_engine(base, poolclass=NullPool)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in base else "?"
    try:
        yield f"{base}{separator}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        engine.dispose()


@dataclass(frozen=True)
class Footprint:
    """What a command may have left behind: catalog rows per table, and workspace files."""

    rows: dict[str, int] = field(default_factory=dict)
    files: frozenset[str] = frozenset()


def footprint(workspace: Path, extra: Sequence[Path] = ()) -> Footprint:
    """Rows in every table of `workspace/catalog.db` and every file under the workspace (and
    under each `extra` folder), so a refused command can be shown to have written nothing."""
    rows: dict[str, int] = {}
    db = workspace / "catalog.db"
    if db.exists():
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            tables = [
                r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ]
            rows = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables}
    files = frozenset(
        str(p) for folder in (workspace, *extra) if folder.exists() for p in folder.rglob("*")
    )
    return Footprint(rows, files)


# --- figures ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Options:
    """What a section's `figures` is given (by tests/hardening/test_guarantees.py, which
    `bench/hardening.py` runs): its scale and the catalogs to use."""

    scale: float = 1.0  # 1.0 is the scale; `--quick` runs a fraction of it
    seed: int = 0
    postgres: str | None = None  # a PostgreSQL URL, or None to skip the PostgreSQL cases
    folder: Path = Path()  # a scratch folder the section may fill

    def count(self, full: int, least: int = 1) -> int:
        """`full` cases at scale 1.0; never fewer than `least`."""
        return max(least, round(full * self.scale))


@dataclass(frozen=True)
class Figure:
    """One measured guarantee: what was tried, what held, and the bar it is judged against."""

    section: str
    name: str
    tried: int  # cases, runs or processes
    held: int  # how many of them kept the guarantee
    detail: str = ""  # e.g. "exit 2 ×480, exit 3 ×20" or timings

    @property
    def met(self) -> bool:
        return self.tried > 0 and self.held == self.tried
