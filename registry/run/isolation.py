"""Isolated runs: the channel between this process and a worker in the lock's own environment.

With `environment.isolate` (or `run --isolate`) the stages and evaluators run in a subprocess of
a virtual environment built from the recipe's lock (`compressgate.registry.run.envs`), and this
process keeps the verification, the catalog and the progress display. `run_isolated` is the
parent's end; the worker's end is `compressgate.registry.run.worker`, which speaks through
`RemoteCatalog` and `RemoteProgress`. The protocol, one JSON object a line (the parent writes
to the worker's stdin, the worker answers on its stdout; whatever else the worker prints goes
to stderr):

1. The parent verifies the recipe, builds (or reuses) the lock's environment, starts
   `ENV/bin/python -I -m compressgate.registry.run.worker` and sends the request:
   `{"recipe", "trust", "workspace", "force", "record"}` (the run record as started).
2. The worker verifies the recipe again (the same digest, or exit 3), checks its own
   interpreter against the lock, resolves the recipe's references and answers
   `{"op": "ready", "environment"}` with the fingerprint it took.
3. Only then does the parent record the run's start, and answer `{"op": "go", "environment"}`
   (the worker's fingerprint plus where the isolated environment is). A worker that reads the
   end of its input instead stops without running anything.
4. The worker runs the stages and evaluators and sends what the in-process engine would have
   written to the catalog (`seed`, `stage`, `end`) or drawn (`task`, `advance`, `done`). A
   failure ends with `{"op": "error", "type", "message", "hint", "stage"}`, raised here as the
   same error class (so with the same exit code).
5. The parent writes the catalog, draws the progress and calls `on_stage`. A worker that ends
   without `end` or `error`, or a channel that breaks, is recorded here as a failed run.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from compressgate.gates.review import GateDecision
from compressgate.recipes.signing import VerifiedRecipe
from compressgate.recipes.stages.base import NullProgress, Progress
from compressgate.recipes.training import Ticker
from compressgate.registry.catalog.records import RunRecord, StageRecord
from compressgate.registry.catalog.repository import Catalog, JudgementRecord
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import CompressgateError, IntegrityError, StageError
from compressgate.registry.run import envs
from compressgate.registry.run.determinism import now

WORKER = "compressgate.registry.run.worker"

Message = dict[str, Any]


class ParentOptions(Protocol):
    """What the parent's end reads of a run's options (`engine.RunOptions`)."""

    workspace: Path
    trust: Path
    force: bool
    envs: Path | None
    runner_key: Path | None
    trusted_runners: tuple[str, ...] | None
    waived: tuple[str, ...]
    trust_sha256: str | None
    progress: Progress | None
    on_stage: Callable[[StageRecord], None] | None

    def open_catalog(self, *, create: bool = True) -> Catalog: ...


@dataclass(frozen=True)
class Outcome:
    """What a run produced: its record as finished, each gate judged on each seed (the
    catalog's per-seed rows) and each gate decided over the seeds."""

    record: RunRecord
    judgements: list[JudgementRecord] = field(default_factory=list)  # each gate on each seed
    decisions: list[GateDecision] = field(default_factory=list)  # each gate over the seeds


def run_isolated(
    path: Path,
    options: ParentOptions,
    verified: VerifiedRecipe,
    record: RunRecord,
    lock: Path,
    catalog: Catalog | Callable[[], Catalog] | None = None,
) -> Outcome:
    """Run the verified recipe at `path` in a worker of `lock`'s environment, recording into
    `catalog` (else the options' catalog, opened here); the outcome as the worker finished it."""
    store = envs.store_dir(options.workspace, options.envs)
    say = _say if options.progress is not None else None
    env = envs.ensure(lock, store, say=say)
    request = {
        "recipe": str(path.resolve()),
        "trust": str(options.trust.resolve()),
        # what the parent verified the recipe against: the worker refuses any other trust file
        # (one swapped in the workspace between the two would allow other modules)
        "trust_sha256": options.trust_sha256 or sha256_file(options.trust),
        "workspace": str(options.workspace.resolve()),
        "force": options.force,
        "record": record.model_dump(mode="json"),
        "runner_key": str(options.runner_key.resolve()) if options.runner_key else None,
        "trusted_runners": None
        if options.trusted_runners is None
        else list(options.trusted_runners),
        "waived": list(options.waived),
    }
    with _Worker(env.python, request) as worker:
        ready = worker.expect("ready")
        record.environment = ready["environment"] | {"isolated": env.describe()}
        with contextlib.ExitStack() as opened:
            if catalog is None:
                catalog = opened.enter_context(options.open_catalog())
            elif callable(catalog):
                catalog = catalog()
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

    def __init__(self, python: Path, request: Message) -> None:
        self.process = subprocess.Popen(
            [str(python), "-I", "-m", WORKER],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=envs.child_environ(),
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

    def send(self, message: Message) -> None:
        assert self.process.stdin is not None
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except BrokenPipeError:
            pass  # the worker ended; what it said (or its exit) tells why

    def messages(self) -> Iterator[Message]:
        """The worker's messages up to its `error`, which is raised as the error it was."""
        assert self.process.stdout is not None
        for line in self.process.stdout:
            message: Message = json.loads(line)
            if message["op"] == "error":
                raise _worker_error(message)
            yield message
        code = self.process.wait()
        raise StageError(
            f"the isolated worker ended without a result (exit {code})",
            hint="its output above says why; a negative exit is the signal that killed it",
        )

    def expect(self, op: str) -> Message:
        message = next(self.messages())
        if message["op"] != op:
            raise IntegrityError(f"the isolated worker said {message['op']!r} before {op!r}")
        return message


def _worker_error(message: Message) -> BaseException:
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


def _follow(
    worker: _Worker, catalog: Catalog, record: RunRecord, options: ParentOptions
) -> Outcome:
    """Record and draw what the worker reports until the run's end."""
    progress = options.progress or NullProgress()
    bars: dict[int, tuple[AbstractContextManager[Ticker], Ticker]] = {}
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
                outcome = Outcome(
                    final,
                    [JudgementRecord.model_validate(j) for j in message["judgements"]],
                    [GateDecision.model_validate(d) for d in message["decisions"]],
                )
                catalog.record_run_end(final, outcome.judgements, outcome.decisions)
                if final.status != "failed":
                    return outcome
    except BaseException as exc:
        if not ended:  # killed, or the channel broke: the run is recorded as failed here
            record.status, record.error = "failed", str(exc) or type(exc).__name__
            record.finished_at = now()
            with contextlib.suppress(CompressgateError, OSError):
                catalog.record_run_end(record)
        raise
    finally:
        for still_open, _ in bars.values():
            still_open.__exit__(None, None, None)
    raise AssertionError("unreachable: messages() raises when the worker ends")


class RemoteCatalog:
    """The worker's end: what its engine writes to the catalog, sent to the parent instead."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self.send = send

    def record_seed(self, run_id: str, seed: int, data: dict[str, str]) -> None:
        self.send({"op": "seed", "seed": seed, "data": data})

    def record_stage(self, run_id: str, recipe_sha256: str, stage: StageRecord, spec: Any) -> None:
        self.send({"op": "stage", "stage": stage.model_dump(mode="json"), "spec": spec})

    def record_run_end(
        self,
        record: RunRecord,
        judgements: Sequence[JudgementRecord] = (),
        decisions: Sequence[GateDecision] = (),
    ) -> None:
        self.send(
            {
                "op": "end",
                "record": record.model_dump(mode="json"),
                "judgements": [j.model_dump(mode="json") for j in judgements],
                "decisions": [d.model_dump(mode="json") for d in decisions],
            }
        )


class RemoteProgress:
    """The worker's end: its engine's progress bars, drawn by the parent."""

    def __init__(self, send: Callable[[Message], None]) -> None:
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
