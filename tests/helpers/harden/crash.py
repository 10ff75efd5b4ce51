"""Crash safety: `compressgate run` killed with SIGKILL at random points, on SQLite and on
PostgreSQL. After each kill: the catalog verifies, no partial artifact is visible, no committed
event is lost, and a re-run resumes (the stages the killed run finished come from the cache)
and ends with the artifacts of an uninterrupted run.

How a trial runs. Each trial has its own workspace (store, stage cache, and the SQLite catalog
or a fresh PostgreSQL schema), so every stage of the killed run is fresh work. Most runs start
from a fork server: a process that has imported torch, onnx, sklearn, SQLAlchemy and compressgate
once and forks a child that runs the console script's `main` with the run's arguments. That
saves the ~8 s of imports a cold process spends per run (which would otherwise be most of each
trial) while the child is still a separate process killed with SIGKILL: nothing of it survives
but what it had written. One trial in ten still starts the real console script in a cold
process, so kills also land while it imports. References: one uninterrupted run per recipe seed
through the fork server, which also counts the run's writes (catalog transactions, blobs, cache
entries) and its duration; with `cold`, a cold console-script run as well, which must give the
same artifacts (the fork server changes nothing a run computes).

Where the kill lands:
- `time`: after a delay uniform over the duration of an uninterrupted run (import, data,
  training, each stage, evaluation, catalog writes);
- `catalog` / `blob` / `cache`: at the n-th write of that kind (n uniform over the run's
  writes), with the write half done: inside an open catalog transaction whose rows are inserted
  but not committed; a blob's temporary file written and fsynced but not yet linked to its
  name; a cache entry's temporary file written but not yet renamed. A hook in the child pauses
  there and the child is killed (uniform timing almost never hits these few milliseconds);
- `cold`: a cold console-script process, after a delay uniform over its whole duration.
Where a kill landed is read back from what the killed run recorded (its run start, each
stage's variant, its end).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import multiprocessing
import os
import random
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.catalog.store import Artifact, ArtifactStore
from compressgate.registry.kernel.digests import sha256_file

from .common import EXE, Bench, Figure, Options, make_bench, postgres_schema

SECTION = "crash"
BACKENDS = ("sqlite", "postgres")
STAGES = ("baseline", "prune", "int8", "export")
WRITES = ("catalog", "blob", "cache")
PHASES = ("before the run's start", *STAGES, "after the last stage", "after the run's end")
WRITE_POINTS = {
    "catalog": "inside a catalog transaction",
    "blob": "a blob written, not yet linked",
    "cache": "a cache entry written, not yet renamed",
}
# What a run imports, loaded once by the fork server.
PRELOAD = [
    "torch",
    "torch.onnx",
    "torch._dynamo",
    "torch.export",
    "torch.distributed",
    "torch_pruning",
    "onnx",
    "onnxruntime",
    "onnxruntime.quantization",
    "onnxscript",
    "sklearn.datasets",
    "sklearn.metrics",
    "sklearn.model_selection",
    "scipy.io",
    "sympy",
    "networkx",
    "sqlalchemy",
    "sqlmodel",
    "psycopg",
    "rich.console",
    "rich.progress",
    "rich.table",
    "compressgate.registry.cli",
    "compressgate.registry.workspace",
    "compressgate.registry.run.engine",
    "compressgate.registry.catalog.audit",
    "compressgate.recipes.stages.prune",
    "compressgate.recipes.stages.quantize",
    "compressgate.recipes.stages.export",
    "compressgate.recipes.stages.distill",
    "compressgate.recipes.examples.digits",
]
_HEX64 = re.compile(r"[0-9a-f]{64}")
_PG_ENV = "COMPRESSGATE_TEST_PG_URL"


# --- the child: the console script's main, forked from the server -------------------------------


def _child(
    argv: Sequence[str], out: str, tmp: str, pause: tuple[str, int] | None, marker: str
) -> None:
    """Run `compressgate ARGV` as the console script would, output to `out`.{stdout,stderr}.

    With `pause` = (kind, n), stop for good at the n-th write of that kind, half done, after
    touching `marker` (the parent then kills us). With n = 0, count the writes into `marker`.
    """
    for fd, suffix in ((1, "stdout"), (2, "stderr")):
        handle = os.open(f"{out}.{suffix}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(handle, fd)
        os.close(handle)
    # As a console-script process: its own TMPDIR, wide output. (The repository's root stays on
    # sys.path, as under pytest: compressgate comes from the installed namespace all the same.)
    os.environ.update({"TMPDIR": tmp, "COLUMNS": "200"})
    tempfile.tempdir = tmp
    sys.argv = ["compressgate", *argv]
    counts: Counter[str] = Counter()
    if pause is not None:
        _hook_writes(pause, Path(marker), counts, Path(argv[argv.index("--workspace") + 1]))
    from compressgate.registry.cli import main

    if pause is not None and pause[1] == 0:
        # At exit: `main` ends the process without the interpreter's teardown, but runs these.
        atexit.register(lambda: Path(marker).write_text(json.dumps(counts), encoding="utf-8"))
    main()


def _hook_writes(pause: tuple[str, int], marker: Path, counts: Counter[str], ws: Path) -> None:
    """Patch (in the child only) the three kinds of durable write to count them, or to stop
    for good half-way through the n-th write of `pause`'s kind."""
    from compressgate.registry.catalog.repository import Catalog as ChildCatalog

    kind, nth = pause

    def hit(what: str) -> None:
        counts[what] += 1
        if what == kind and counts[what] == nth:
            marker.write_text(what, encoding="utf-8")
            while True:
                time.sleep(60)

    append = ChildCatalog._append

    def _append(self: Catalog, conn: Any, rows: Any) -> list[int]:
        sequences = append(self, conn, rows)  # inserted, inside the caller's transaction
        hit("catalog")
        return sequences

    link, replace = os.link, os.replace
    objects, cache = ws / "objects" / "sha256", ws / "cache"

    def _link(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).parent.parent == objects:  # the store's put_file: tmp written, not linked
            hit("blob")
        link(src, dst, *args, **kwargs)

    def _replace(src: Any, dst: Any, *args: Any, **kwargs: Any) -> None:
        if Path(dst).parent == cache:  # write_atomic of a cache entry: tmp written, not renamed
            hit("cache")
        replace(src, dst, *args, **kwargs)

    ChildCatalog._append = _append  # type: ignore[method-assign]
    os.link, os.replace = _link, _replace


# --- catalogs -----------------------------------------------------------------------------------


def _engine(url: str) -> sa.Engine | None:
    """A read-only engine on a catalog (None if a SQLite catalog file does not exist yet)."""
    parsed = sa.engine.make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or not Path(parsed.database).is_file():
            return None
        url = f"sqlite:///file:{parsed.database}?mode=ro&uri=true"
    return sa.create_engine(url, poolclass=NullPool)


def _query(url: str, table: str, sql: str) -> list[tuple[Any, ...]]:
    """Rows of `sql` over `table`, or none if the catalog or the table does not exist yet."""
    engine = _engine(url)
    if engine is None:
        return []
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(table):
                return []
            return [tuple(r) for r in conn.exec_driver_sql(sql)]
    finally:
        engine.dispose()


def events(url: str) -> list[tuple[int, str]]:
    """Every committed event, as (seq, chain hash)."""
    return [
        (int(s), str(h))
        for s, h in _query(url, "events", "SELECT seq, sha256 FROM events ORDER BY seq")
    ]


def phase(url: str) -> str:
    """Where the run in this catalog got to, from what it recorded."""
    if not _query(url, "runs", "SELECT run_id FROM runs"):
        return PHASES[0]
    if _query(url, "run_ends", "SELECT run_id FROM run_ends"):
        return PHASES[-1]
    recorded = {str(r[0]) for r in _query(url, "variants", "SELECT stage FROM variants")}
    return next((s for s in STAGES if s not in recorded), PHASES[-2])


# --- the store ----------------------------------------------------------------------------------


@dataclass
class StoreState:
    """What a reader of the workspace would find: problems, the stages the cache holds, and
    temporary files a kill left (under hidden names no reader asks for)."""

    problems: list[str] = field(default_factory=list)
    cached: set[str] = field(default_factory=set)
    leftovers: int = 0


def inspect_store(workspace: Path) -> StoreState:
    """Every blob matches the sha256 it is named by; every cache entry parses and names blobs
    that are in the store; anything else is a hidden temporary file."""
    state = StoreState()
    store = ArtifactStore(workspace)
    if store.objects.is_dir():
        for path in sorted(store.objects.rglob("*")):
            if path.is_dir():
                continue
            if path.name.startswith("."):
                state.leftovers += 1
                continue
            name = path.parent.name + path.name
            if path.parent.parent != store.objects or not _HEX64.fullmatch(name):
                state.problems.append(f"unexpected file {path.relative_to(workspace)}")
            elif sha256_file(path) != name:
                state.problems.append(f"blob {name[:16]}… does not match its name")
    cache = workspace / "cache"
    if cache.is_dir():
        for path in sorted(cache.iterdir()):
            if path.name.startswith("."):
                state.leftovers += 1
                continue
            if path.suffix == ".lock":  # StageCache.claim's lock beside an entry: empty
                continue
            try:
                entry = json.loads(path.read_bytes())
                artifact = Artifact.from_dict(entry["artifact"])
                name = str(entry["name"])
            except Exception as exc:
                state.problems.append(f"cache entry {path.name} unreadable: {exc}")
                continue
            if not path.name.endswith(".json"):
                state.problems.append(f"unexpected file in the cache: {path.name}")
            elif not store.has(artifact):
                state.problems.append(f"cache entry {path.name} names a blob not in the store")
            state.cached.add(name)
    return state


# --- trials -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """Where a trial's kill lands: after `delay` seconds (`time`, `cold`), or half-way through
    the `nth` write of kind `mode` (`catalog`, `blob`, `cache`)."""

    mode: str
    delay: float = 0.0
    nth: int = 0

    def __str__(self) -> str:
        if self.mode in WRITES:
            return f"{WRITE_POINTS[self.mode]} (#{self.nth})"
        return f"{self.mode} kill after {self.delay:.2f} s"


@dataclass
class Reference:
    """An uninterrupted run of one recipe: its artifacts, duration and writes."""

    seed: int
    recipe: Path
    artifacts: dict[str, str]
    code: int
    seconds: float
    writes: dict[str, int]
    cold_seconds: float | None = None
    cold_artifacts: dict[str, str] | None = None
    window: float = 0.0  # `time` kills land uniformly in [0, window): `seconds`, or less if
    # runs got faster since (a run that finished before its kill shortens it)


@dataclass
class Trial:
    backend: str
    index: int
    plan: Plan
    killed: bool = False  # SIGKILL ended it (else it finished first and the trial is re-drawn)
    phase: str = ""
    chain: list[str] = field(default_factory=list)  # problems, per guarantee
    store: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    resume: list[str] = field(default_factory=list)
    no_catalog_yet: bool = False
    leftovers: int = 0
    seconds: dict[str, float] = field(default_factory=dict)  # kill, checks, audit, rerun

    @property
    def problems(self) -> list[str]:
        return self.chain + self.store + self.events + self.resume


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


class Lab:
    """A bench, a fork server and one reference run per seed; runs crash trials."""

    def __init__(self, folder: Path, seeds: Sequence[int], *, cold: bool = False) -> None:
        self.folder = folder
        self.bench: Bench = make_bench(folder / "bench")
        self.context: ForkServerContext = multiprocessing.get_context("forkserver")
        self.context.set_forkserver_preload(PRELOAD)
        self.cold = cold
        self.references: dict[int, Reference] = {}
        self.recipes = {s: self.bench.recipe(f"crash-{s}", s) for s in seeds}
        self._lock = threading.Lock()
        # Start the server (its imports take seconds) before anything is timed.
        code, _, err = self.call(["--version"], folder / "server" / "version")
        if code != 0:
            raise RuntimeError(f"the fork server cannot run compressgate: {err[-2000:]}")

    # -- running compressgate

    def fork(
        self, argv: Sequence[str | Path], out: Path, pause: tuple[str, int] | None = None
    ) -> tuple[multiprocessing.process.BaseProcess, Path]:
        """Start `compressgate ARGV` forked from the server; returns it and its pause marker."""
        tmp = out.parent / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        marker = out.parent / f"{out.name}.paused"
        process = self.context.Process(
            target=_child,
            args=([str(a) for a in argv], str(out), str(tmp), pause, str(marker)),
            daemon=True,
        )
        process.start()
        return process, marker

    def call(self, argv: Sequence[str | Path], out: Path) -> tuple[int, str, str]:
        """`compressgate ARGV` to the end: exit code, stdout, stderr."""
        process, _ = self.fork(argv, out)
        process.join()
        return (
            int(process.exitcode or 0),
            Path(f"{out}.stdout").read_text(encoding="utf-8"),
            Path(f"{out}.stderr").read_text(encoding="utf-8"),
        )

    def cold_process(self, argv: Sequence[str | Path], out: Path) -> subprocess.Popen[bytes]:
        """`compressgate ARGV` as a new console-script process."""
        tmp = out.parent / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "COLUMNS": "200", "TMPDIR": str(tmp)}
        with Path(f"{out}.stdout").open("wb") as stdout, Path(f"{out}.stderr").open("wb") as err:
            return subprocess.Popen(
                [EXE, *(str(a) for a in argv)], stdout=stdout, stderr=err, env=env
            )

    # -- references

    def reference(self, seed: int) -> Reference:
        """An uninterrupted run of the seed's recipe (forked; and cold, with `cold`)."""
        folder = self.folder / f"reference-{seed}"
        recipe = self.recipes[seed]
        start = time.perf_counter()
        process, counts = self.fork(
            ["run", recipe, "--workspace", folder / ".cg", "--json"], folder / "run", ("", 0)
        )
        process.join()
        seconds = time.perf_counter() - start
        summary = _json(Path(f"{folder / 'run'}.stdout").read_text(encoding="utf-8"))
        if summary is None:
            error = Path(f"{folder / 'run'}.stderr").read_text(encoding="utf-8")
            raise RuntimeError(f"the reference run of seed {seed} failed: {error[-2000:]}")
        found = Reference(
            seed,
            recipe,
            {s["name"]: s["artifact_sha256"] for s in summary["stages"]},
            int(process.exitcode or 0),
            seconds,
            json.loads(counts.read_text(encoding="utf-8")),
        )
        if self.cold:
            start = time.perf_counter()
            cold = self.cold_process(
                ["run", recipe, "--workspace", folder / "cold", "--json"], folder / "cold"
            )
            cold.wait()
            found.cold_seconds = time.perf_counter() - start
            again = _json(Path(f"{folder / 'cold'}.stdout").read_text(encoding="utf-8")) or {}
            found.cold_artifacts = {
                s["name"]: s["artifact_sha256"] for s in again.get("stages", [])
            }
        with self._lock:
            self.references[seed] = found
        return found

    def plan(self, index: int, rng: random.Random, reference: Reference) -> Plan:
        """Trial `index`'s kill: one in ten cold (with `cold`), one in three at a write (the
        three kinds in turn), the rest after a uniform delay."""
        if self.cold and index % 10 == 9 and reference.cold_seconds:
            return Plan("cold", delay=rng.uniform(0, reference.cold_seconds))
        if index % 3 == 1:
            kind = WRITES[(index // 3) % len(WRITES)]
            return Plan(kind, nth=rng.randint(1, max(1, reference.writes.get(kind, 1))))
        return Plan("time", delay=rng.uniform(0, reference.window or reference.seconds))

    # -- one trial

    def trial(self, backend: str, index: int, plan: Plan, seed: int, url: str | None) -> Trial:
        """Kill a run as `plan` says, check what it left, re-run it and check the re-run."""
        reference = self.references[seed]
        folder = self.folder / f"{backend}-{index:03d}-{secrets.token_hex(2)}"
        workspace = folder / ".cg"
        catalog = ["--catalog", url] if url else []
        url = url or catalog_url(workspace)
        argv = ["run", reference.recipe, "--workspace", workspace, *catalog, "--json"]
        trial = Trial(backend, index, plan)
        clock = time.perf_counter()

        def lap(name: str) -> None:
            nonlocal clock
            trial.seconds[name] = round(time.perf_counter() - clock, 2)
            clock = time.perf_counter()

        trial.killed, ended = self._kill(plan, argv, folder / "killed")
        lap("kill")
        if not trial.killed:
            if ended != reference.code:
                stderr = Path(f"{folder / 'killed'}.stderr").read_text(encoding="utf-8")
                trial.resume.append(f"the run ended by itself with exit {ended}: {stderr[-500:]}")
            else:
                shutil.rmtree(folder, ignore_errors=True)
            if plan.mode == "time":
                with self._lock:
                    reference.window = min(reference.window or plan.delay, trial.seconds["kill"])
            return trial
        trial.phase = phase(url)
        before = events(url)
        # (b) no partial artifact: the store and the cache as a reader finds them.
        state = inspect_store(workspace)
        trial.store += state.problems
        trial.leftovers = state.leftovers
        lap("checks")
        # (a) the chain verifies: `audit verify` (which also re-hashes every recorded artifact).
        code, _, err = self.call(
            ["audit", "verify", "--workspace", workspace, *catalog], folder / "audit"
        )
        if code == 4 and not before and "no catalog" in err:
            trial.no_catalog_yet = True  # killed before the catalog's first commit
        elif code != 0:
            trial.chain.append(f"audit verify after the kill exit {code}: {err.strip()[-500:]}")
        lap("audit")
        # (d) the re-run resumes and ends with the reference's artifacts.
        code, out, err = self.call(argv, folder / "rerun")
        lap("rerun")
        summary = _json(out)
        if code != reference.code or summary is None:
            trial.resume.append(f"the re-run exit {code}: {err.strip()[-500:]}")
        else:
            stages = {s["name"]: s for s in summary["stages"]}
            artifacts = {name: s["artifact_sha256"] for name, s in stages.items()}
            if artifacts != reference.artifacts:
                trial.resume.append(f"re-run artifacts differ from the reference: {artifacts}")
            cached = {name for name, s in stages.items() if s["cached"]}
            if cached != state.cached:
                trial.resume.append(
                    f"re-run cached {sorted(cached)}; the killed run had finished "
                    f"{sorted(state.cached)}"
                )
            done = recorded_stages(trial)
            if not set(done) <= cached:
                trial.resume.append(f"stages {done} were recorded but not reused: {cached}")
        # (c) no event lost: every event committed before the kill is still there, unchanged.
        after = events(url)
        if after[: len(before)] != before:
            lost = sorted(set(before) - set(after))
            trial.events.append(f"{len(lost)} event(s) committed before the kill changed: {lost}")
        # (a) and the chain still verifies after the re-run.
        try:
            with Catalog(url, create=False) as records:
                records.verify_chain(workers=1)
                records.verify_rows()
        except Exception as exc:
            trial.chain.append(f"after the re-run: {exc}")
        lap("checks")
        if not trial.problems:
            shutil.rmtree(folder, ignore_errors=True)
        return trial

    def _kill(self, plan: Plan, argv: Sequence[str | Path], out: Path) -> tuple[bool, int]:
        """Start the run and SIGKILL it as `plan` says: (killed, exit code if it ended first)."""
        if plan.mode == "cold":
            process = self.cold_process(argv, out)
            try:
                return False, process.wait(timeout=plan.delay)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                return True, -9
        pause = (plan.mode, plan.nth) if plan.mode in WRITES else None
        child, marker = self.fork(argv, out, pause)
        if pause is None:
            child.join(timeout=plan.delay)
        else:
            deadline = time.monotonic() + 600
            while not marker.exists() and child.is_alive() and time.monotonic() < deadline:
                time.sleep(0.005)
        if child.is_alive():
            child.kill()
            child.join()
            return True, -9
        child.join()
        return False, int(child.exitcode or 0)

    def trials(
        self, backend: str, count: int, rng: random.Random, postgres: str | None = None
    ) -> list[Trial]:
        """`count` trials that killed a run (a run that finished before its kill is re-drawn,
        at most `count` times in all)."""
        done: list[Trial] = []
        attempts = 0
        seeds = sorted(self.references)
        while len([t for t in done if t.killed]) < count and attempts < 2 * count:
            index = len([t for t in done if t.killed])
            seed = seeds[index % len(seeds)]
            plan = self.plan(index, rng, self.references[seed])
            attempts += 1
            with (
                postgres_schema(postgres, "cg_crash")
                if postgres
                else contextlib.nullcontext() as url
            ):
                done.append(self.trial(backend, index, plan, seed, url))
        return done


# --- figures ------------------------------------------------------------------------------------


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2] if ordered else 0.0


def _tally(values: Sequence[str], order: Sequence[str]) -> str:
    counted = Counter(values)
    return ", ".join(f"{k} ×{counted[k]}" for k in order if counted[k])


def trial_figures(backend: str, trials: Sequence[Trial]) -> list[Figure]:
    """The four guarantees over `trials` (runs that finished before their kill not counted)."""
    killed = [t for t in trials if t.killed]
    redrawn = [t for t in trials if not t.killed]
    bad_redrawn = [t for t in redrawn if t.problems]

    def figure(name: str, check: Callable[[Trial], list[str]], detail: str) -> Figure:
        failed = [t for t in killed if check(t)] + [t for t in bad_redrawn if check(t)]
        first = next((f"; #{t.index} {t.plan}: {check(t)[0][:300]}" for t in failed), "")
        held = len(killed) - len(failed)
        return Figure(SECTION, f"{backend}: {name}", len(killed), held, detail + first)

    landed = _tally([t.phase for t in killed], PHASES)
    kinds = _tally(
        [WRITE_POINTS.get(t.plan.mode, t.plan.mode) for t in killed],
        [*WRITE_POINTS.values(), "time", "cold"],
    )
    no_catalog = sum(t.no_catalog_yet for t in killed)
    return [
        Figure(
            SECTION,
            f"{backend}: runs killed with SIGKILL (where they landed)",
            len(killed),
            len(killed),
            f"{landed}; kills: {kinds}; finished before the kill (re-drawn) ×{len(redrawn)}; "
            f"median trial {_median([sum(t.seconds.values()) for t in killed]):.1f} s",
        ),
        figure(
            "catalog chain verifies after the kill and re-run",
            lambda t: t.chain,
            f"killed before the catalog existed ×{no_catalog}",
        ),
        figure(
            "no partial artifact visible (blobs, cache entries)",
            lambda t: t.store,
            f"hidden temp files left by kills ×{sum(t.leftovers for t in killed)}",
        ),
        figure("no event committed before the kill lost", lambda t: t.events, ""),
        figure(
            "re-run resumes: finished stages cached, same artifacts",
            lambda t: t.resume,
            f"{sum(len(recorded_stages(t)) for t in killed)} finished stages reused",
        ),
    ]


def recorded_stages(trial: Trial) -> tuple[str, ...]:
    """The stages the killed run had recorded in the catalog."""
    if trial.phase in PHASES[-2:]:
        return STAGES
    return STAGES[: STAGES.index(trial.phase)] if trial.phase in STAGES else ()


def figures(options: Options) -> list[Figure]:
    count = options.count(50, least=2)
    postgres = options.postgres
    seeds = options.count(4, least=2)  # recipe seeds: each one's uninterrupted runs come first
    lab = Lab(options.folder, [1000 + options.seed * 10 + k for k in range(seeds)], cold=True)
    with _lanes(2) as pool:
        list(pool.map(lab.reference, sorted(lab.recipes)))
    found: list[Figure] = []
    forked = list(lab.references.values())
    same = [r for r in forked if r.cold_artifacts == r.artifacts]
    found.append(
        Figure(
            SECTION,
            "fork-server run equals a console-script run (artifacts)",
            len(forked),
            len(same),
            "uninterrupted runs: forked "
            + ", ".join(f"{r.seconds:.1f} s" for r in forked)
            + "; cold "
            + ", ".join(f"{r.cold_seconds or 0:.1f} s" for r in forked),
        )
    )
    backends = [("sqlite", None)] + ([("postgres", postgres)] if postgres else [])
    with _lanes(len(backends)) as pool:
        results = list(
            pool.map(
                lambda b: (
                    b[0],
                    lab.trials(b[0], count, random.Random(f"{options.seed}/{b[0]}"), b[1]),
                ),
                backends,
            )
        )
    for backend, trials in results:
        found += trial_figures(backend, trials)
    return found


@contextlib.contextmanager
def _lanes(count: int) -> Iterator[Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(count) as pool:
        yield pool
