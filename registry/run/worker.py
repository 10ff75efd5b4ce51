"""The worker of an isolated run: `ENV/bin/python -I -m compressgate.registry.run.worker`.

It reads the request (one JSON line) on stdin and answers on its stdout, one JSON line per
message (the protocol is in `compressgate.registry.run.isolation`); `serve` is its end of it.
Everything else the stages print goes to stderr: the real stdout is kept for the channel and
fd 1 is pointed at stderr before any stage code, or anything heavy, is imported.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any


def main() -> int:
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    def send(message: dict[str, Any]) -> None:
        channel.write(json.dumps(message) + "\n")
        channel.flush()

    def receive() -> dict[str, Any] | None:
        line = sys.stdin.readline()
        return json.loads(line) if line else None

    from compressgate.registry.kernel.errors import CompressgateError, StageError

    request = receive()
    if request is None:
        return 2
    try:
        serve(request, send, receive)
    except CompressgateError as exc:
        send(
            {
                "op": "error",
                "type": type(exc).__name__,
                "message": str(exc),
                "hint": exc.hint,
                "stage": exc.stage if isinstance(exc, StageError) else None,
            }
        )
        return exc.exit_code
    except BaseException as exc:
        traceback.print_exc()
        send({"op": "error", "type": type(exc).__name__, "message": str(exc), "hint": None})
        return 1
    return 0


def serve(
    request: dict[str, Any],
    send: Callable[[dict[str, Any]], None],
    receive: Callable[[], dict[str, Any] | None],
) -> None:
    """The worker's end of an isolated run: verify, check, report `ready`, wait for `go`, then
    run the stages with the catalog and the progress bars on the parent's side."""
    from compressgate.recipes import models
    from compressgate.recipes.signing import verify_recipe
    from compressgate.recipes.trust import load_trust
    from compressgate.registry.catalog.records import RunRecord
    from compressgate.registry.kernel.digests import sha256_file
    from compressgate.registry.kernel.errors import IntegrityError
    from compressgate.registry.run import engine, environment
    from compressgate.registry.run.determinism import THREADS, deterministic
    from compressgate.registry.run.isolation import RemoteCatalog, RemoteProgress

    started = time.perf_counter()  # after the imports, as in a run in this process
    path = Path(request["recipe"])
    runners = request.get("trusted_runners")
    options = engine.RunOptions(
        workspace=Path(request["workspace"]),
        trust=Path(request["trust"]),
        force=request["force"],
        runner_key=Path(request["runner_key"]) if request.get("runner_key") else None,
        trusted_runners=None if runners is None else tuple(runners),
        waived=tuple(request.get("waived", ())),
    )
    expected = request.get("trust_sha256")
    if expected is not None and sha256_file(options.trust) != expected:
        raise IntegrityError(
            f"{options.trust} changed after the run verified the recipe against it; the worker "
            "refuses it",
            hint="nothing in the workspace may change the trust while a run starts; run again",
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
    sources = verified.sources
    engine.check_references(recipe, base, trust.modules, sources)
    # The plug-ins this environment holds, under the trust verified here again: the same
    # allow-list as a run in the parent's process.
    plugins = engine.load_run_plugins(recipe, trust, str(path))
    with models.allowed_modules(trust.modules, sources):
        with deterministic(THREADS):
            ready = engine.environment_record(lock, recipe, mismatches, base, plugins)
            send({"op": "ready", "environment": ready})
            go = receive()
            if go is None or go.get("op") != "go":
                return  # the parent stopped before the run's start was recorded
            record.environment = go["environment"]
            executor = engine.Executor(
                verified.loaded,
                base,
                options,
                record,
                started,
                RemoteCatalog(send),
                progress=RemoteProgress(send),
                plugins=plugins,
            )
            try:
                executor.run_stages()
            except BaseException as exc:
                executor.fail(exc)
                raise
        executor.finish()


if __name__ == "__main__":
    sys.exit(main())
