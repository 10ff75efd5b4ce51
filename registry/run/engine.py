"""The executor: a signed recipe in, a chain of content-addressed variants out, reproducibly.

For each seed: load the data, build (or train) the baseline, then run every stage on the output
of the one before. Each output is stored in the artifact store by sha256, with its parent's
digest and the digest of the stage spec, and evaluated on the test split. A stage whose inputs
(parent artifact, spec, seed, data, code, environment) match an earlier run is not recomputed:
its cached record and artifact are reused, so a run killed mid-stage resumes from the last
stage that finished.

Everything is recorded in the catalog as it happens: the recipe and the run's start (after the
signature and environment checks pass), each seed's data digests, each finished stage's variant
and evaluations, and at the end the gate decisions and the run's outcome. A run killed by
SIGKILL stays recorded up to its last finished stage, with no end. `catalog show RUN --json`
exports the record exactly as the executor held it.

Isolation (`environment.isolate`, `run --isolate`): the stages and evaluators run in a worker
subprocess of a virtual environment built from the recipe's lock
(`compressgate.registry.run.envs`), and this
process records what the worker reports; see "isolated runs" below.

Determinism: every stage runs with `torch.use_deterministic_algorithms(True)`, one intra-op
thread in torch and onnxruntime, and every random generator seeded from the run seed and the
stage name. On one machine and one environment the reference recipe reproduces bit for bit.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import random
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compressgate import evaluators, recipes
from compressgate.evaluators import seeds as across_seeds
from compressgate.evaluators.base import EvalContext, Subject, evaluate_stage, flatten
from compressgate.evaluators.results import AccuracyResult, SizeResult
from compressgate.gates.power import SampleSizes, check_gate, sample_sizes
from compressgate.gates.review import GateDecision, SeedVerdict, decide, evidence_digest
from compressgate.gates.verdicts import judge
from compressgate.recipes import models, onnxio
from compressgate.recipes.data import Split, Splits
from compressgate.recipes.load import LoadedRecipe, load_recipe
from compressgate.recipes.manifest import GateSpec, ImportRef, ModelSpec, Recipe, iter_refs
from compressgate.recipes.models import OnnxModel, TorchModel, Variant
from compressgate.recipes.signing import verify_recipe
from compressgate.recipes.stages.base import NullProgress, StageContext, stage_for
from compressgate.recipes.training import Ticker, fit
from compressgate.recipes.trust import load_trust
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord, Timing
from compressgate.registry.catalog.repository import Catalog, Decision, catalog_url, document
from compressgate.registry.catalog.store import Artifact, ArtifactStore, StoredFile
from compressgate.registry.kernel.digests import sha256_bytes, sha256_file
from compressgate.registry.kernel.errors import (
    CompressgateError,
    IntegrityError,
    NotFoundError,
    StageError,
)
from compressgate.registry.kernel.files import write_atomic
from compressgate.registry.run import environment

THREADS = 1
BASELINE = "baseline"
_CACHE_VERSION = 1


# --- progress -----------------------------------------------------------------------------------


class RichProgress:
    """Progress bars on stderr for the long steps (epochs, rounds, calibration)."""

    def __init__(self, enabled: bool) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.enabled = enabled and self.console.is_terminal

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Ticker]:
        if not self.enabled:
            with NullProgress().task(description, total) as ticker:
                yield ticker
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=self.console,
            transient=True,
        ) as bars:
            task_id = bars.add_task(description, total=total)

            class _Ticker:
                def advance(self, steps: int = 1) -> None:
                    bars.advance(task_id, steps)

            yield _Ticker()


# --- options and entry points -------------------------------------------------------------------


@dataclass
class RunOptions:
    workspace: Path
    trust: Path
    force: bool = False
    progress: bool = False
    on_stage: Callable[[StageRecord], None] | None = None
    run_id: str | None = None
    catalog: str | None = None  # URL; default: SQLite at WORKSPACE/catalog.db
    isolate: bool = False  # run the stages under the recipe's lock even if it does not ask
    envs: Path | None = None  # the environment store; default: $COMPRESSGATE_ENVS, WORKSPACE/envs

    def open_catalog(self, *, create: bool = True) -> Catalog:
        return Catalog(catalog_url(self.workspace, self.catalog), create=create)


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_recipe(path: Path, options: RunOptions) -> RunRecord:
    """Verify, check the environment, run every stage for every seed; returns the run record.

    With `environment.isolate` (or `options.isolate`) the stages and evaluators run in a
    subprocess of the lock's own environment (see `_run_isolated`); this process keeps the
    verification, the catalog and the progress display.
    """
    started = time.perf_counter()
    trust = load_trust(options.trust)
    verified = verify_recipe(path, trust, trust_source=str(options.trust))
    loaded = verified.loaded
    recipe = loaded.recipe
    base = path.parent.resolve()
    lock = base / recipe.environment.lock
    record = RunRecord(
        run_id=options.run_id or new_run_id(),
        recipe=RecipeRef(
            name=recipe.metadata.name,
            version=recipe.metadata.version,
            sha256=loaded.sha256,
            path=str(path.resolve()),
            signers=sorted({s.owner for s in verified.signers}),
        ),
        started_at=_now(),
        workspace=str(options.workspace.resolve()),
        seeds=list(recipe.seeds),
    )
    if options.isolate or recipe.environment.isolate:
        return _run_isolated(path, options, verified, record, lock)
    mismatches = environment.enforce(lock, strict=recipe.environment.strict)
    _check_references(recipe, base, trust.modules)
    with options.open_catalog() as catalog, models.allowed_modules(trust.modules):
        executor = _Executor(loaded, base, options, record, started, catalog)
        with deterministic(THREADS):
            record.environment = _environment_record(lock, recipe, mismatches)
            catalog.record_run_start(
                record,
                recipe_content=loaded.data.decode("utf-8"),
                envelope=verified.envelope.read_text(encoding="utf-8"),
                lock_sha256=sha256_file(lock) if lock.is_file() else "",
            )
            try:
                executor.run_stages()
            except BaseException as exc:  # a failed or interrupted run is recorded as failed
                executor.fail(exc)
                raise
        executor.finish()
    return record


def _check_references(recipe: Recipe, base: Path, modules: tuple[str, ...]) -> None:
    """Every factory and loader is imported only from the trust file's allow-listed modules,
    and each is resolved before anything is recorded: code it may not name is bad input, no
    row. Checkpoints are read (weights only) before anything is recorded too."""
    with models.allowed_modules(modules):
        for loc, ref in iter_refs(recipe):
            if isinstance(ref, ImportRef):
                models.resolve(ref, base)
            elif loc[-1] == "checkpoint":
                models.read_checkpoint(base / ref, what=".".join(map(str, loc)))


def _environment_record(
    lock: Path, recipe: Recipe, mismatches: tuple[environment.Mismatch, ...]
) -> dict[str, Any]:
    """The run record's `environment`: the fingerprint of this interpreter (taken under the
    executor's thread settings), where the interpreter is, and the lock's mismatches. Where
    it is stays out of the fingerprint, whose digest says which runs `ci` may reuse."""
    fingerprint = environment.fingerprint(lock, threads=_threads(), seeds=tuple(recipe.seeds))
    return {
        "fingerprint": fingerprint,
        "fingerprint_sha256": _digest(fingerprint),
        "interpreter": {"prefix": sys.prefix, "executable": sys.executable},
        "mismatches": [str(m) for m in mismatches],
        "strict": recipe.environment.strict,
    }


# --- isolated runs: the stages in a subprocess of the lock's environment -------------------------
#
# The parent verifies the recipe, builds (or reuses) the lock's environment and starts
# `ENV/bin/python -I -m compressgate.registry.run.worker`. It sends one JSON line: the request. The
# worker
# verifies the recipe again (same digest, or exit 3), checks its own interpreter against the
# lock, resolves the recipe's references and answers `ready` with the fingerprint it took. Only
# then does the parent record the run's start and answer `go`. From there the worker runs the
# stages and evaluators and sends, one JSON line each, what the in-process executor would have
# written to the catalog (`seed`, `stage`, `end`) or drawn (`task`, `advance`, `done`); a
# failure ends with `error`. The parent writes the catalog, draws the progress and calls
# `on_stage`. Whatever the worker prints goes to stderr: its stdout is the channel.


def _run_isolated(
    path: Path, options: RunOptions, verified: Any, record: RunRecord, lock: Path
) -> RunRecord:
    from compressgate.registry.run import envs

    store = envs.store_dir(options.workspace, options.envs)
    say = _say if options.progress else None
    env = envs.ensure(lock, store, say=say)
    request = {
        "recipe": str(path.resolve()),
        "trust": str(options.trust.resolve()),
        "workspace": str(options.workspace.resolve()),
        "force": options.force,
        "record": record.model_dump(mode="json"),
    }
    with _Worker(env.python, request) as worker:
        ready = worker.expect("ready")
        record.environment = ready["environment"] | {"isolated": env.describe()}
        with options.open_catalog() as catalog:
            catalog.record_run_start(
                record,
                recipe_content=verified.loaded.data.decode("utf-8"),
                envelope=verified.envelope.read_text(encoding="utf-8"),
                lock_sha256=env.digest,
            )
            worker.send({"op": "go", "environment": record.environment})
            return _follow(worker, catalog, record, options)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class _Worker:
    """The worker subprocess and its JSON-lines channel."""

    def __init__(self, python: Path, request: dict[str, Any]) -> None:
        from compressgate.registry.run.envs import child_environ

        self.process = subprocess.Popen(
            [str(python), "-I", "-m", "compressgate.registry.run.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_environ(),
        )
        self.send(request)

    def __enter__(self) -> _Worker:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.process.poll() is None and exc[0] is not None:
            self.process.kill()
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            self.process.stdout.close()
        self.process.wait()

    def send(self, message: dict[str, Any]) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker ended; what it said (or its exit) tells why

    def messages(self) -> Iterator[dict[str, Any]]:
        """The worker's messages up to its `error`, which is raised as the error it was."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message: dict[str, Any] = json.loads(line)
            if message["op"] == "error":
                raise _worker_error(message)
            yield message
        code = self.process.wait()
        raise StageError(
            f"the isolated worker ended without a result (exit {code})",
            hint="its output above says why; a negative exit is the signal that killed it",
        )

    def expect(self, op: str) -> dict[str, Any]:
        message = next(self.messages())
        if message["op"] != op:
            raise IntegrityError(f"the isolated worker said {message['op']!r} before {op!r}")
        return message


def _worker_error(message: dict[str, Any]) -> BaseException:
    """The error the worker raised, as the same class (so the same exit code)."""
    from compressgate.registry.kernel import errors

    kind = getattr(errors, message["type"], None)
    text = message["message"]
    if isinstance(kind, type) and issubclass(kind, CompressgateError):
        if kind is errors.StageError:
            return errors.StageError(
                text, hint=message.get("hint"), stage=message.get("stage") or ""
            )
        return kind(text, hint=message.get("hint"))
    return RuntimeError(f"the isolated worker raised {message['type']}: {text}")


def _follow(worker: _Worker, catalog: Catalog, record: RunRecord, options: RunOptions) -> RunRecord:
    """Record and draw what the worker reports until the run's end."""
    progress = RichProgress(options.progress)
    bars: dict[int, tuple[contextlib.AbstractContextManager[Ticker], Ticker]] = {}
    ended = False
    try:
        for message in worker.messages():
            op = message["op"]
            if op == "seed":
                record.data[str(message["seed"])] = message["data"]
                catalog.record_seed(record.run_id, message["seed"], message["data"])
            elif op == "stage":
                stage = StageRecord.model_validate(message["stage"])
                record.stages.append(stage)
                catalog.record_stage(record.run_id, record.recipe.sha256, stage, message["spec"])
                if options.on_stage is not None:
                    options.on_stage(stage)
            elif op == "task":
                manager = progress.task(message["description"], message["total"])
                bars[message["id"]] = (manager, manager.__enter__())
            elif op == "advance":
                bars[message["id"]][1].advance(message["steps"])
            elif op == "done":
                bars.pop(message["id"])[0].__exit__(None, None, None)
            elif op == "end":
                ended = True
                final = RunRecord.model_validate(message["record"])
                catalog.record_run_end(
                    final,
                    [Decision.model_validate(d) for d in message["decisions"]],
                    [GateDecision.model_validate(v) for v in message["verdicts"]],
                )
                if final.status != "failed":
                    return final
    except BaseException as exc:
        if not ended:  # killed, or the channel broke: the run is recorded as failed here
            record.status, record.error = "failed", str(exc) or type(exc).__name__
            record.finished_at = _now()
            with contextlib.suppress(CompressgateError, OSError):
                catalog.record_run_end(record)
        raise
    finally:
        for still_open, _ in bars.values():
            still_open.__exit__(None, None, None)
    raise AssertionError("unreachable: messages() raises when the worker ends")


class _RemoteCatalog:
    """What the worker's executor writes to the catalog, sent to the parent instead."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send = send

    def record_seed(self, run_id: str, seed: int, data: dict[str, str]) -> None:
        self.send({"op": "seed", "seed": seed, "data": data})

    def record_stage(self, run_id: str, recipe_sha256: str, stage: StageRecord, spec: Any) -> None:
        self.send({"op": "stage", "stage": stage.model_dump(mode="json"), "spec": spec})

    def record_run_end(
        self,
        record: RunRecord,
        decisions: Sequence[Decision] = (),
        verdicts: Sequence[GateDecision] = (),
    ) -> None:
        self.send(
            {
                "op": "end",
                "record": record.model_dump(mode="json"),
                "decisions": [d.model_dump(mode="json") for d in decisions],
                "verdicts": [v.model_dump(mode="json") for v in verdicts],
            }
        )


class _RemoteProgress:
    """The worker's progress bars, drawn by the parent."""

    def __init__(self, send: Callable[[dict[str, Any]], None]) -> None:
        self.send = send
        self.next_id = 0

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Ticker]:
        self.next_id += 1
        task_id, send = self.next_id, self.send
        send({"op": "task", "id": task_id, "description": description, "total": total})

        class _Ticker:
            def advance(self, steps: int = 1) -> None:
                send({"op": "advance", "id": task_id, "steps": steps})

        try:
            yield _Ticker()
        finally:
            send({"op": "done", "id": task_id})


def serve(
    request: dict[str, Any],
    send: Callable[[dict[str, Any]], None],
    receive: Callable[[], dict[str, Any] | None],
) -> None:
    """The worker's side of an isolated run (`python -m compressgate.registry.run.worker`)."""
    started = time.perf_counter()
    path = Path(request["recipe"])
    options = RunOptions(
        workspace=Path(request["workspace"]), trust=Path(request["trust"]), force=request["force"]
    )
    trust = load_trust(options.trust)
    verified = verify_recipe(path, trust, trust_source=str(options.trust))
    record = RunRecord.model_validate(request["record"])
    if verified.loaded.sha256 != record.recipe.sha256:
        raise IntegrityError(
            f"{path} changed while the run started: its sha256 is {verified.loaded.sha256}, "
            f"the run verified {record.recipe.sha256}"
        )
    recipe = verified.loaded.recipe
    base = path.parent.resolve()
    lock = base / recipe.environment.lock
    mismatches = environment.enforce(lock, strict=recipe.environment.strict)
    _check_references(recipe, base, trust.modules)
    with models.allowed_modules(trust.modules):
        with deterministic(THREADS):
            send({"op": "ready", "environment": _environment_record(lock, recipe, mismatches)})
            go = receive()
            if go is None or go.get("op") != "go":
                return  # the parent stopped before the run's start was recorded
            record.environment = go["environment"]
            executor = _Executor(
                verified.loaded,
                base,
                options,
                record,
                started,
                _RemoteCatalog(send),
                progress=_RemoteProgress(send),
            )
            try:
                executor.run_stages()
            except BaseException as exc:
                executor.fail(exc)
                raise
        executor.finish()


_ENTRY_DIGEST = "entry_sha256"


def _read_cache_entry(path: Path) -> dict[str, Any] | None:
    """A stage cache entry, checked against the digest written with it: a changed entry is an
    integrity failure (exit 3), never trusted; one from before digests is recomputed."""
    hint = "the cache is only a cache: delete the entry, or run with --force"
    try:
        entry = json.loads(path.read_bytes())
    except ValueError:  # not JSON, or not UTF-8
        raise IntegrityError(f"stage cache entry {path} is damaged: not JSON", hint=hint) from None
    if not isinstance(entry, dict):
        raise IntegrityError(f"stage cache entry {path} is damaged: not an object", hint=hint)
    recorded = entry.pop(_ENTRY_DIGEST, None)
    if recorded is None:
        return None
    if recorded != _digest(entry):
        raise IntegrityError(
            f"stage cache entry {path} changed after it was written (its sha256 does not match)",
            hint=hint,
        )
    return entry


def judge_gate(
    gate: GateSpec,
    record: RunRecord,
    name: str,
    sizes: SampleSizes | None = None,
    decided_at: str | None = None,
) -> tuple[list[Decision], GateDecision]:
    """`gate` judged on stage `name` of every seed of `record` against that seed's baseline:
    each seed's judgement, and the gate's decision over the seeds by its seeds policy (with
    its power check at `sizes`)."""
    when = decided_at or _now()
    decisions: list[Decision] = []
    per_seed: list[SeedVerdict] = []
    candidates, baselines, differences = [], [], []
    for seed in record.seeds:
        stage = record.stage(seed, name)
        baseline = record.stage(seed, BASELINE)
        judged = judge(gate, stage.metrics, baseline.metrics, stage.evaluations)
        assert stage.artifact_sha256 is not None
        variant_id = f"{record.run_id}/{seed}/{name}"
        metrics = {k: v.model_dump(mode="json") for k, v in stage.metrics.items()}
        decisions.append(
            Decision(
                run_id=record.run_id,
                seed=seed,
                gate=gate.name,
                variant_id=variant_id,
                stage=name,
                artifact_sha256=stage.artifact_sha256,
                metric=gate.metric,
                rule=gate.model_dump(mode="json"),
                owner=gate.owner,
                # the digest of the variant's recorded metrics, as the catalog holds it
                evidence_sha256=sha256_bytes(document(metrics).encode("utf-8")),
                decided_at=when,
                **judged.model_dump(),
            )
        )
        per_seed.append(
            SeedVerdict(
                seed=seed,
                variant_id=variant_id,
                artifact_sha256=stage.artifact_sha256,
                **judged.model_dump(),
            )
        )
        candidates.append(stage.metrics.get(gate.metric))
        baselines.append(baseline.metrics.get(gate.metric))
        paired = stage.metrics.get("paired.accuracy_difference")
        if paired is not None:
            differences.append(paired.estimate)
    decision = decide(
        gate,
        record.run_id,
        name,
        per_seed,
        candidates,
        baselines,
        differences if len(differences) == len(per_seed) else None,
    )
    check = check_gate(gate, sizes) if sizes is not None else None
    if check is not None:
        decision = decision.model_copy(update={"power": check.model_dump(mode="json")})
    decision = decision.model_copy(update={"decided_at": when})
    return decisions, decision.model_copy(update={"evidence_sha256": evidence_digest(decision)})


def environment_sha256(recipe: Recipe, base: Path) -> str:
    """The digest of the environment fingerprint a run of `recipe` would record here: runs
    with the same recipe digest and this digest may be reused (`compressgate ci`)."""
    lock = base / recipe.environment.lock
    with deterministic(THREADS):
        fingerprint = environment.fingerprint(lock, threads=_threads(), seeds=tuple(recipe.seeds))
    return _digest(fingerprint)


def load_run(options: RunOptions, run_id: str) -> RunRecord:
    """A run's record, exported from the catalog."""
    with options.open_catalog(create=False) as catalog:
        return catalog.run(run_id)


@dataclass
class Comparison:
    seed: int
    name: str
    recorded: str | None
    reproduced: str | None

    @property
    def identical(self) -> bool:
        return self.recorded is not None and self.recorded == self.reproduced


def recorded_recipe(run: RunRecord) -> Path:
    """The recipe a run ran; exit 3 if its bytes changed since."""
    path = Path(run.recipe.path)
    current = sha256_file(path) if path.is_file() else None
    if current != run.recipe.sha256:
        raise IntegrityError(
            f"{path} is not the recipe run {run.run_id} ran: its sha256 is "
            f"{current or 'missing'}, the run recorded {run.recipe.sha256}"
        )
    return path


def reproduce(run_id: str, options: RunOptions) -> tuple[RunRecord, RunRecord, list[Comparison]]:
    """Re-run a recorded run from scratch in a temporary workspace; compare every digest.

    Raises IntegrityError (exit 3) naming the first stage whose artifact differs.
    """
    original = load_run(options, run_id)
    if original.status != "succeeded":
        raise NotFoundError(f"run {run_id} did not succeed ({original.status}); nothing to compare")
    path = recorded_recipe(original)
    isolated = original.environment.get("isolated")
    envs_store = options.envs
    if isolated is not None:
        from compressgate.registry.run import envs

        # The same environment: the lock must be the one the run used, and its store the same.
        lock = (
            path.parent / load_recipe(path, trust=load_trust(options.trust)).recipe.environment.lock
        )
        if not lock.is_file() or sha256_file(lock) != isolated["lock_sha256"]:
            raise IntegrityError(
                f"{lock} is not the lock run {run_id} ran under: its sha256 is "
                f"{sha256_file(lock) if lock.is_file() else 'missing'}, the run recorded "
                f"{isolated['lock_sha256']}"
            )
        # The environment it ran in, where it still is; else one built from the same lock.
        recorded = Path(isolated["path"])
        if envs.is_built(recorded) or envs_store is None:
            envs_store = recorded.parent
    with tempfile.TemporaryDirectory(prefix="compressgate-reproduce-") as scratch:
        again = run_recipe(
            path,
            RunOptions(
                workspace=Path(scratch),
                trust=options.trust,
                force=True,
                progress=options.progress,
                on_stage=options.on_stage,
                isolate=isolated is not None,
                envs=envs_store,
            ),
        )
    comparisons = [
        Comparison(
            r.seed,
            r.name,
            r.artifact_sha256,
            next(
                (a.artifact_sha256 for a in again.stages if (a.seed, a.name) == (r.seed, r.name)),
                None,
            ),
        )
        for r in original.stages
    ]
    return original, again, comparisons


# --- the engine ---------------------------------------------------------------------------------


@contextmanager
def deterministic(threads: int) -> Iterator[None]:
    """Deterministic torch kernels and a fixed thread count, restored afterwards."""
    previous = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled())
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.set_num_threads(previous[0])
        torch.use_deterministic_algorithms(previous[1])


def _threads() -> dict[str, int]:
    return {
        "torch_intra_op": torch.get_num_threads(),
        "torch_inter_op": torch.get_num_interop_threads(),
        "onnxruntime_intra_op": THREADS,
        "onnxruntime_inter_op": 1,
    }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _digest(value: Any) -> str:
    return sha256_bytes(json.dumps(value, sort_keys=True, separators=(",", ":")).encode())


def split_digest(split: Split) -> str:
    parts = [split.x, split.y] + [t for t in (split.groups, split.ids) if t is not None]
    digest = [sha256_bytes(t.contiguous().numpy().tobytes()) for t in parts]
    described: list[object] = [list(t.shape) for t in parts] + [str(t.dtype) for t in parts]
    if split.class_weights is not None:  # absent from older digests, which stay as they were
        described.append({"class_weights": list(split.class_weights)})
    return _digest(described + digest)


@dataclass
class _SeedState:
    """What the stages of one seed share while they are evaluated."""

    seed: int
    splits: Splits
    data: str  # digest of the seed's data splits
    baseline: Subject | None = None
    parent: Subject | None = None


class _Executor:
    def __init__(
        self,
        loaded: LoadedRecipe,
        base: Path,
        options: RunOptions,
        record: RunRecord,
        started: float,
        catalog: Catalog | _RemoteCatalog,
        progress: RichProgress | _RemoteProgress | None = None,
    ) -> None:
        self.recipe: Recipe = loaded.recipe
        self.base = base
        self.options = options
        self.record = record
        self.started = started
        self.store = ArtifactStore(options.workspace)
        self.cache_dir = options.workspace / "cache"
        self.catalog = catalog
        self.progress = progress or RichProgress(options.progress)
        self.compute = 0.0
        self.code = self._code_digest()
        # ONNX variants read back from the store live here for the run's duration.
        self._scratch = tempfile.TemporaryDirectory(prefix="compressgate-run-")
        self.variants = Path(self._scratch.name)
        # Each seed's test split, for the comparisons across seeds at the end.
        self.tests: dict[int, Split] = {}
        self.decisions: list[Decision] = []  # each gate judged on each seed
        self.verdicts: list[GateDecision] = []  # each gate decided over the seeds
        self.stopped_after: str | None = None
        self.sizes: SampleSizes | None = None  # the test split's, for the gates' power checks

    # -- bookkeeping

    def fail(self, exc: BaseException) -> None:
        self.record.status = "failed"
        self.record.error = str(exc) or type(exc).__name__
        for stage in self.record.stages:
            if stage.status == "running":
                stage.status = "failed"
                stage.error = self.record.error
        self._close()
        # The run's end is recorded if the catalog can take it; the original error goes on.
        with contextlib.suppress(CompressgateError, OSError):
            self.catalog.record_run_end(self.record)

    def finish(self) -> None:
        start = time.perf_counter()
        self._across_seeds()
        self.compute += time.perf_counter() - start
        self.record.status = "stopped" if self.stopped_after is not None else "succeeded"
        self._close()
        self.catalog.record_run_end(self.record, self.decisions, self.verdicts)

    def _across_seeds(self) -> None:
        """Each stage's metrics over the seeds, and the compression-identified exemplars."""
        specs = self.recipe.evaluator_specs()
        confidence = specs[0].confidence
        ran = {r.name for r in self.record.stages if r.status == "done"}
        names = [n for n in [BASELINE, *(s.name for s in self.recipe.stages)] if n in ran]
        for name in names:
            per_seed = {r.seed: r.metrics for r in self.record.stages if r.name == name}
            summary = across_seeds.aggregate(per_seed, confidence)
            if summary:
                self.record.aggregate[name] = summary
        wanted = next((s for s in specs if s.kind == "exemplars"), None)
        if wanted is None:
            return
        seeds = list(self.recipe.seeds)
        ids = {seed: _numpy_or_none(self.tests[seed].ids) for seed in seeds}
        labels = {seed: self.tests[seed].y.numpy() for seed in seeds}
        baseline = {seed: self._predictions(seed, BASELINE) for seed in seeds}
        for name in names[1:]:
            self.record.exemplars[name] = across_seeds.exemplars(
                seeds,
                ids,
                labels,
                baseline,
                {seed: self._predictions(seed, name) for seed in seeds},
                wanted.confidence,
            )

    def _predictions(self, seed: int, name: str) -> np.ndarray:
        result = self.record.stage(seed, name).evaluations["accuracy"]
        assert isinstance(result, AccuracyResult)
        return np.asarray(result.predictions, dtype=np.int64)

    def _close(self) -> None:
        self._scratch.cleanup()
        total = time.perf_counter() - self.started
        self.record.finished_at = _now()
        self.record.timing = Timing(
            total_seconds=round(total, 4),
            compute_seconds=round(self.compute, 4),
            overhead_seconds=round(total - self.compute, 4),
            overhead_fraction=round((total - self.compute) / total, 6) if total else 0.0,
        )

    @contextmanager
    def _timed(self, stage: StageRecord, attr: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            self.compute += elapsed
            setattr(stage, attr, round(getattr(stage, attr) + elapsed, 4))

    def _code_digest(self) -> str:
        """Digest of the code a stage's output depends on: every module the recipe imports
        (factories, loaders) and our own stages, models and evaluators."""
        sources = {"compressgate": _own_code_digest()}
        with models.importable_from(self.base):
            for _, ref in iter_refs(self.recipe):
                if not isinstance(ref, str) or ":" not in ref:
                    continue
                module = ref.partition(":")[0]
                spec = importlib.util.find_spec(module)
                origin = spec.origin if spec is not None else None
                if origin and Path(origin).is_file():
                    sources[module] = sha256_file(Path(origin))
        return _digest(sources)

    # -- one seed

    def run_stages(self) -> None:
        """Every stage for every seed, stage by stage across the seeds (each seed's stages in
        order), judging each stage's gates when all seeds have run it: a gate that fails after
        an intermediate stage stops the pipeline there."""
        seeds = list(self.recipe.seeds)
        steps = {seed: self.seed_steps(seed) for seed in seeds}
        try:
            for name in [BASELINE, *(s.name for s in self.recipe.stages)]:
                for seed in seeds:
                    done = next(steps[seed])
                    assert done == name, (done, name)
                failed = self._judge_stage(name)
                if failed and name != self.recipe.stages[-1].name:
                    self.stopped_after = name
                    self.record.error = (
                        f"stopped after stage '{name}': gate {', '.join(map(repr, failed))} "
                        "failed; the later stages were not run"
                    )
                    return
        finally:
            for generator in steps.values():
                generator.close()

    def _judge_stage(self, name: str) -> list[str]:
        """Judge every gate on stage `name` for every seed; the names of the gates that fail."""
        last = self.recipe.stages[-1].name
        failed = []
        for gate in self.recipe.gates:
            if (gate.after or last) != name:
                continue
            decisions, decision = judge_gate(gate, self.record, name, self.sizes)
            self.decisions += decisions
            self.verdicts.append(decision)
            if decision.verdict == "fail":
                failed.append(gate.name)
        return failed

    def seed_steps(self, seed: int) -> Generator[str]:
        """Run one seed's baseline and stages in order, yielding each one's name when done."""
        splits = self._load_data(seed)
        self.record.data[str(seed)] = {
            "train": split_digest(splits.train),
            "calibration": split_digest(splits.calibration),
            "test": split_digest(splits.test),
            **{key: str(value) for key, value in splits.provenance.items()},
        }
        self.catalog.record_seed(self.record.run_id, seed, self.record.data[str(seed)])
        data = _digest(self.record.data[str(seed)])
        self.tests[seed] = splits.test
        if seed == self.recipe.seeds[0]:
            self.sizes = sample_sizes(splits)
        state = _SeedState(seed, splits, data)
        current, parent = self._baseline(state)
        yield BASELINE
        reference, reference_sha = (
            (current, parent) if isinstance(current, TorchModel) else (None, None)
        )
        for spec in self.recipe.stages:
            stage = StageRecord(seed=seed, name=spec.name, kind=spec.kind)
            stage.parent_sha256 = parent
            stage.spec_sha256 = _digest(spec.model_dump(mode="json", by_alias=True))
            stage.cache_key = _digest(
                {
                    "v": _CACHE_VERSION,
                    "kind": spec.kind,
                    "parent": stage.parent_sha256,
                    "spec": stage.spec_sha256,
                    "seed": seed,
                    "data": data,
                    "code": self.code,
                    "reference": reference_sha,
                    "env": self._env_key(),
                }
            )
            self._begin(stage)
            cached = self._cached(stage, state, reference)
            if cached is not None:
                current = cached
            else:
                with tempfile.TemporaryDirectory(prefix="compressgate-stage-") as scratch:
                    ctx = StageContext(
                        stage=spec.name,
                        seed=seed,
                        splits=splits,
                        workdir=Path(scratch),
                        base=self.base,
                        progress=self.progress,
                        reference=reference,
                    )
                    _seed_everything(ctx.seed_for("global"))
                    implementation = stage_for(spec.kind)
                    with self._timed(stage, "seconds"):
                        current = _call_stage(implementation, current, spec, ctx)
                    stage.details = ctx.details
                    stage.warnings = ctx.warnings
                    current = self._keep(stage, current, state, reference, Path(scratch))
            parent = stage.artifact_sha256
            if isinstance(current, TorchModel):
                reference, reference_sha = current, parent
            self._end(stage, spec)
            yield spec.name

    def _load_data(self, seed: int) -> Splits:
        return load_splits(self.recipe, self.base, seed)

    def _baseline(self, state: _SeedState) -> tuple[Variant, str | None]:
        seed, splits, data = state.seed, state.splits, state.data
        spec = self.recipe.model
        stage = StageRecord(seed=seed, name=BASELINE, kind=BASELINE)
        stage.spec_sha256 = _digest(spec.model_dump(mode="json", by_alias=True))
        files = {
            name: sha256_file(self.base / name)
            for name in (spec.checkpoint, spec.onnx)
            if name is not None
        }
        stage.cache_key = _digest(
            {
                "v": _CACHE_VERSION,
                "kind": BASELINE,
                "spec": stage.spec_sha256,
                "files": files,
                "seed": seed,
                "data": data,
                "code": self.code,
                "env": self._env_key(),
            }
        )
        self._begin(stage)
        cached = self._cached(stage, state, None)
        if cached is None:
            with tempfile.TemporaryDirectory(prefix="compressgate-baseline-") as scratch:
                with self._timed(stage, "seconds"):
                    try:
                        model = self._build_baseline(spec, seed, splits, stage, Path(scratch))
                    except CompressgateError:
                        raise
                    except Exception as exc:
                        raise StageError(
                            f"baseline (seed {seed}): {type(exc).__name__}: {exc}",
                            stage=BASELINE,
                        ) from exc
                cached = self._keep(stage, model, state, None, Path(scratch))
        self._end(stage, spec)
        return cached, stage.artifact_sha256

    def _build_baseline(
        self, spec: ModelSpec, seed: int, splits: Splits, stage: StageRecord, scratch: Path
    ) -> Variant:
        if spec.onnx is not None:
            target = scratch / "baseline"
            target.mkdir()
            shutil.copyfile(self.base / spec.onnx, target / models.ONNX_FILE)
            return OnnxModel(target)
        assert spec.factory is not None
        seeds = StageContext(stage=BASELINE, seed=seed, splits=splits, workdir=scratch)
        torch.manual_seed(seeds.seed_for("init"))
        _seed_everything(seeds.seed_for("global"))
        model = models.build(
            spec.factory,
            dict(spec.args),
            what=f"baseline (seed {seed})",
            base=self.base,
            checkpoint=self.base / spec.checkpoint if spec.checkpoint else None,
        )
        if spec.train is not None:
            train = spec.train
            with self.progress.task(f"train baseline (seed {seed})", train.epochs) as tick:
                try:
                    fit(
                        model.module,
                        splits.train,
                        epochs=train.epochs,
                        lr=train.lr,
                        batch_size=train.batch_size,
                        seed=seeds.seed_for("batches"),
                        ticker=tick,
                    )
                except RuntimeError as exc:
                    raise StageError(
                        f"baseline (seed {seed}): training failed: {exc}",
                        hint="check that the model fits the data's shapes and classes",
                    ) from exc
            stage.details["trained"] = {"epochs": train.epochs, "lr": train.lr}
        # The float32 baseline as ONNX: the yardstick the compressed sizes are measured by.
        exported, _ = onnxio.export(model.module, splits.train.x, scratch / "onnx", opset=18)
        onnx_artifact = self.store.put_tree(exported.directory, exported.files)
        stage.details["onnx_sha256"] = onnx_artifact.sha256
        stage.details["onnx_size_bytes"] = onnx_artifact.size_bytes
        return model

    # -- storing, caching, evaluating

    def _keep(
        self,
        stage: StageRecord,
        model: Variant,
        state: _SeedState,
        reference: Variant | None,
        scratch: Path,
    ) -> Variant:
        """Store the stage's output, evaluate the stored copy, write its cache entry (last)."""
        if isinstance(model, TorchModel):
            directory = scratch / "stored-torch"
            names = models.save_torch(model, directory)
        else:
            directory, names = model.directory, model.files
        artifact = self.store.put_tree(directory, names)
        stage.format = model.format  # type: ignore[assignment]
        stage.artifact_sha256 = artifact.sha256
        stage.files = artifact.to_dict()["files"]
        stage.size_bytes = artifact.size_bytes
        # Go on from the stored copy, exactly as a resumed run would, and measure that.
        variant = self._load(artifact, model.format)
        self._evaluate(stage, variant, state, reference)
        self._write_cache(stage, artifact)
        return variant

    def _cached(
        self, stage: StageRecord, state: _SeedState, reference: Variant | None
    ) -> Variant | None:
        """The stage's output from an earlier run, re-evaluated if the evaluation changed."""
        if self.options.force:
            return None
        entry_path = self.cache_dir / f"{stage.cache_key}.json"
        if not entry_path.is_file():
            return None
        entry = _read_cache_entry(entry_path)
        if entry is None:
            return None
        artifact = Artifact.from_dict(entry.pop("artifact"))
        if not self.store.has(artifact):
            return None
        previous = StageRecord.model_validate(entry)
        for name in (
            "format",
            "artifact_sha256",
            "files",
            "size_bytes",
            "params",
            "nonzero_params",
            "macs",
            "metrics",
            "evaluations",
            "evaluation_key",
            "details",
            "warnings",
        ):
            setattr(stage, name, getattr(previous, name))
        stage.cached = True
        assert stage.format is not None
        variant = self._load(artifact, stage.format)
        if self._evaluate(stage, variant, state, reference):
            self._write_cache(stage, artifact)
        return variant

    def _write_cache(self, stage: StageRecord, artifact: Artifact) -> None:
        entry = stage.model_dump(mode="json", exclude={"cached", "seconds", "eval_seconds"})
        entry["artifact"] = artifact.to_dict()
        entry[_ENTRY_DIGEST] = _digest(entry)
        write_atomic(self.cache_dir / f"{stage.cache_key}.json", json.dumps(entry).encode())

    def _evaluate(
        self, stage: StageRecord, variant: Variant, state: _SeedState, reference: Variant | None
    ) -> bool:
        """Run the recipe's evaluators on a stored variant unless its evaluation (same variant,
        baseline, parent, evaluators, data, code, environment) is already recorded. The variant
        then becomes the parent of the next stage, and the first one the seed's baseline.
        Returns whether it evaluated."""
        subject = self._subject(stage, variant, reference)
        key = _digest(
            {
                "v": _CACHE_VERSION,
                "artifact": stage.artifact_sha256,
                "baseline": state.baseline.sha256 if state.baseline else None,
                "parent": state.parent.sha256 if state.parent else None,
                "evaluators": [s.model_dump(mode="json") for s in self.recipe.evaluator_specs()],
                "data": state.data,
                "code": self.code,
                "env": self._env_key(),
            }
        )
        fresh = stage.evaluation_key != key
        if fresh:
            ctx = EvalContext(
                seed=state.seed, stage=stage.name, splits=state.splits, parent=state.parent
            )
            with self._timed(stage, "eval_seconds"):
                results = evaluate_stage(
                    self.recipe.evaluator_specs(), subject, state.baseline, state.splits, ctx
                )
                stage.evaluations = results
                stage.metrics = flatten(results)
                stage.evaluation_key = key
                self._counts(stage, subject, results.get("size"))
        if state.baseline is None:
            state.baseline = subject
        state.parent = subject
        return fresh

    def _subject(self, stage: StageRecord, variant: Variant, reference: Variant | None) -> Subject:
        return subject_of(self.store, stage, variant, reference, self.variants)

    def _counts(self, stage: StageRecord, subject: Subject, size: Any) -> None:
        """Parameters, non-zero parameters and MACs on the record (from the size evaluator when
        the recipe declares it, else counted here)."""
        module = subject.counts_from
        if module is None:
            return
        if isinstance(size, SizeResult) and size.params is not None:
            assert size.nonzero_params is not None and size.macs is not None
            counts = (size.params.estimate, size.nonzero_params.estimate, size.macs.estimate)
            stage.params, stage.nonzero_params, stage.macs = (int(c) for c in counts)
        else:
            stage.params = models.parameter_count(module.module)
            stage.nonzero_params = models.nonzero_parameter_count(module.module)
            stage.macs = models.macs(module.module, self.tests[stage.seed].x)
        if module is not subject.variant:
            # Quantization and export keep the architecture: counts are the float ancestor's.
            stage.details.setdefault("counts_from", "nearest float torch ancestor")

    def _load(self, artifact: Artifact, fmt: str) -> Variant:
        return load_variant(self.store, artifact, fmt, self.base, self.variants)

    def _env_key(self) -> str:
        fingerprint = self.record.environment.get("fingerprint", {})
        return _digest(
            {
                key: fingerprint.get(key)
                for key in ("python", "implementation", "machine", "threads", "packages")
            }
        )

    def _begin(self, stage: StageRecord) -> None:
        self.record.stages.append(stage)

    def _end(self, stage: StageRecord, spec: Any) -> None:
        """The stage is done: its variant and evaluations go into the catalog."""
        stage.status = "done"
        self.catalog.record_stage(
            self.record.run_id,
            self.record.recipe.sha256,
            stage,
            spec.model_dump(mode="json", by_alias=True),
        )
        if self.options.on_stage is not None:
            self.options.on_stage(stage)


def _numpy_or_none(tensor: torch.Tensor | None) -> np.ndarray | None:
    return None if tensor is None else tensor.numpy()


def load_splits(recipe: Recipe, base: Path, seed: int) -> Splits:
    """The recipe's data for one seed, from its loader; a failing loader is a stage error."""
    spec = recipe.data
    loader = models.resolve(spec.loader, base)
    try:
        splits = loader(seed, **spec.args)
    except Exception as exc:
        raise StageError(
            f"data (seed {seed}): the loader {spec.loader} raised {type(exc).__name__}: {exc}",
            hint="fix the loader or its args in the recipe",
        ) from exc
    if not isinstance(splits, Splits):
        raise StageError(
            f"data (seed {seed}): the loader {spec.loader} returned "
            f"{type(splits).__name__}, not compressgate.recipes.data.Splits"
        )
    if len(splits.train) == 0 or len(splits.test) == 0:
        raise StageError(f"data (seed {seed}): the train and test splits must not be empty")
    return splits


def load_variant(
    store: ArtifactStore, artifact: Artifact, fmt: str, base: Path, scratch: Path
) -> Variant:
    """A stored variant, read back with its digest checked (ONNX files go under `scratch`)."""
    if fmt == "torch":
        return models.load_torch(store.read_bytes(artifact.files[0]), base=base)
    directory = scratch / artifact.sha256
    if not (directory / artifact.primary).is_file():
        store.materialize(artifact, directory)
    return OnnxModel(directory)


def subject_of(
    store: ArtifactStore,
    stage: StageRecord,
    variant: Variant,
    reference: Variant | None,
    scratch: Path,
) -> Subject:
    """What the evaluators see of a stored stage output. `reference` is its nearest float torch
    ancestor (whose counts an ONNX variant shares)."""
    onnx = variant if isinstance(variant, OnnxModel) else None
    onnx_size = stage.size_bytes if onnx is not None else None
    if stage.kind == BASELINE and "onnx_sha256" in stage.details:
        # The float32 ONNX export of a torch baseline: the yardstick of sizes and of
        # onnxruntime latencies.
        sha, size = stage.details["onnx_sha256"], stage.details["onnx_size_bytes"]
        yardstick = Artifact.of((StoredFile(models.ONNX_FILE, sha, size),))
        directory = scratch / sha
        if not (directory / models.ONNX_FILE).is_file():
            store.materialize(yardstick, directory)
        onnx, onnx_size = OnnxModel(directory), size
    torch_form = variant if isinstance(variant, TorchModel) else reference
    return Subject(
        stage=stage.name,
        variant=variant,
        size_bytes=stage.size_bytes or 0,
        sha256=stage.artifact_sha256,
        onnx=onnx,
        onnx_size_bytes=onnx_size,
        counts_from=torch_form if isinstance(torch_form, TorchModel) else None,
    )


def _own_code_digest() -> str:
    """sha256 over the source of the packages whose code shapes an artifact or its metrics."""

    files: dict[str, str] = {}
    for package in (recipes, evaluators):
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*.py")):
            name = package.__name__.removeprefix("compressgate.")
            files[f"{name}/{path.relative_to(root)}"] = sha256_file(path)
    files["registry/executor.py"] = sha256_file(Path(__file__))
    return _digest(files)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _call_stage(implementation: Any, model: Variant, spec: Any, ctx: StageContext) -> Variant:
    try:
        result: Variant = implementation.apply(model, spec, ctx)
    except CompressgateError:
        raise
    except Exception as exc:
        raise ctx.error(f"{type(exc).__name__}: {exc}") from exc
    return result
