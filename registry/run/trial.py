"""One trial of a sweep, where it runs: `run_trial(task) -> result`, both plain JSON.

A worker (a subprocess of the local backend, `python -m compressgate.registry.run.trial`, or a
Ray task) trusts nothing the driver derived but the trial's parameters: it verifies the sweep
and its base recipe against the trust file again (the same digests, or exit 3), derives the
trial's concrete recipe from them and checks its digest against the driver's, and only then
runs it, in this process, through the ordinary engine. The engine's catalog writes are kept as
messages (`CollectingCatalog`) and returned: the driver alone writes the catalog, replaying them
(`replay`). A failing gate is a result ("failed"); an exception is a crashed trial, whose run
is still recorded as failed; a worker killed mid-trial returns nothing, and the driver retries.

The trial's data are the recipe's, with the **selection split** carved from the training split
(`carve`): the trial is trained on the rest and judged on the selection split, and the recipe's
test split is never evaluated, so the search cannot pick its winner by the data that judges it.

A local worker (`main`) is one process that runs trial after trial: tasks in on stdin, results
out on stdout, one JSON object a line (anything the stages print goes to stderr), so that the
imports and the engine's one-off set-up are paid once per worker, not once per trial.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressgate.registry.run.prepared import PreparedRecipe

if TYPE_CHECKING:
    from compressgate.gates.review import GateDecision
    from compressgate.recipes.data import Split, Splits
    from compressgate.recipes.sweep import Sweep
    from compressgate.registry.catalog.records import RunRecord, StageRecord
    from compressgate.registry.catalog.repository import Catalog, JudgementRecord

Task = dict[str, Any]
Result = dict[str, Any]


@dataclass(frozen=True)
class Selection:
    fraction: float
    seed: int


def carve(splits: Splits, selection: Selection, trial_seed: int) -> Splits:
    """The trial's data: `selection.fraction` of the training split, stratified by label and
    drawn with `selection.seed` (and the run's seed), becomes the split the trial is judged on,
    in the place of the test split; the rest stays the training split. The test split is left
    out: no trial sees it."""
    import numpy as np
    import torch

    from compressgate.recipes.data import Split, Splits

    train = splits.train
    labels = train.y.numpy()
    rng = np.random.default_rng([selection.seed, trial_seed, 0x5E1EC7])
    chosen: list[int] = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        rng.shuffle(members)
        take = round(len(members) * selection.fraction)
        chosen += members[:take].tolist()
    picked = np.zeros(len(labels), dtype=bool)
    picked[chosen] = True
    if picked.all() or not picked.any():
        raise ValueError(
            f"a selection fraction of {selection.fraction} of {len(labels)} training samples "
            "leaves no samples on one side"
        )

    def part(mask: np.ndarray) -> Split:
        index = torch.from_numpy(np.flatnonzero(mask))
        return Split(
            x=train.x[index],
            y=train.y[index],
            groups=None if train.groups is None else train.groups[index],
            ids=None if train.ids is None else train.ids[index],
            class_weights=train.class_weights,
        )

    return Splits(
        train=part(~picked),
        calibration=splits.calibration,
        test=part(picked),
        class_names=splits.class_names,
        group_names=splits.group_names,
        provenance={
            **splits.provenance,
            "selection": f"{selection.fraction} of train, seed {selection.seed}",
        },
        padding=splits.padding,
    )


# --- the engine's catalog writes, kept as messages ----------------------------------------------


@dataclass
class CollectingCatalog:
    """What the engine writes to the catalog, kept in order as JSON messages."""

    messages: list[dict[str, Any]] = field(default_factory=list)

    def record_run_start(
        self, record: RunRecord, *, recipe_content: str, envelope: str, lock_sha256: str
    ) -> None:
        self.messages.append(
            {
                "op": "start",
                "record": record.model_dump(mode="json"),
                "recipe_content": recipe_content,
                "envelope": envelope,
                "lock_sha256": lock_sha256,
            }
        )

    def record_seed(self, run_id: str, seed: int, data: dict[str, str]) -> None:
        self.messages.append({"op": "seed", "seed": seed, "data": data})

    def record_stage(self, run_id: str, recipe_sha256: str, stage: StageRecord, spec: Any) -> None:
        self.messages.append({"op": "stage", "stage": stage.model_dump(mode="json"), "spec": spec})

    def record_run_end(
        self,
        record: RunRecord,
        judgements: Sequence[JudgementRecord] = (),
        decisions: Sequence[GateDecision] = (),
    ) -> None:
        self.messages.append(
            {
                "op": "end",
                "record": record.model_dump(mode="json"),
                "judgements": [j.model_dump(mode="json") for j in judgements],
                "decisions": [d.model_dump(mode="json") for d in decisions],
            }
        )


def replay(messages: Sequence[Mapping[str, Any]], catalog: Catalog) -> RunRecord | None:
    """Write a trial's run into the driver's catalog, as the worker's engine would have; the
    run's record as it ended (None: the trial never started its run)."""
    from compressgate.gates.review import GateDecision
    from compressgate.registry.catalog.records import RunRecord, StageRecord
    from compressgate.registry.catalog.repository import JudgementRecord

    run_id: str | None = None
    final: RunRecord | None = None
    for message in messages:
        op = message["op"]
        if op == "start":
            started = RunRecord.model_validate(message["record"])
            run_id = started.run_id
            catalog.record_run_start(
                started,
                recipe_content=message["recipe_content"],
                envelope=message["envelope"],
                lock_sha256=message["lock_sha256"],
            )
        elif op == "seed":
            assert run_id is not None
            catalog.record_seed(run_id, message["seed"], message["data"])
        elif op == "stage":
            assert run_id is not None
            stage = StageRecord.model_validate(message["stage"])
            catalog.record_stage(run_id, started.recipe.sha256, stage, message["spec"])
        elif op == "end":
            final = RunRecord.model_validate(message["record"])
            catalog.record_run_end(
                final,
                [JudgementRecord.model_validate(j) for j in message["judgements"]],
                [GateDecision.model_validate(d) for d in message["decisions"]],
            )
    return final


def objective_values(record: RunRecord, sweep: Sweep) -> dict[str, float]:
    """Each objective's value: its metric at its stage, the mean over the trial's seeds
    (missing where the trial stopped before that stage)."""
    values: dict[str, float] = {}
    for objective in sweep.objectives:
        found = []
        for seed in record.seeds:
            try:
                stage = record.stage(seed, objective.stage)
            except (KeyError, LookupError):
                break
            estimate = stage.metrics.get(objective.metric)
            if estimate is None:
                break
            found.append(estimate.estimate)
        else:
            if found:
                values[objective.metric] = sum(found) / len(found)
    return values


# --- the worker's end ----------------------------------------------------------------------------


def run_trial(task: Task) -> Result:
    """Verify, derive and run one trial; its result (never raises for a trial's own failure:
    a crash is a result too, so that the sweep goes on).

    Where the driver's workspace is not on this node (a Ray worker on another machine), the
    trial runs in a scratch workspace of its own and the result carries every blob it stored
    (`blobs`: sha256 to base64), which the driver stores by digest (`receive_blobs`)."""
    started = time.perf_counter()
    collected = CollectingCatalog()
    with contextlib.ExitStack() as stack:
        ship = not Path(task["workspace"]).is_dir()
        if ship:
            local = stack.enter_context(tempfile.TemporaryDirectory(prefix="compressgate-trial-"))
            task = task | {"workspace": local}
        try:
            status, objectives, failed = _run(task, collected)
            error = None
        except Exception as exc:  # every failure of a trial is its result: the sweep goes on
            traceback.print_exc(file=sys.stderr)
            status, objectives, failed = "crashed", {}, []
            error = f"{type(exc).__name__}: {exc}"
        blobs = _blobs(Path(task["workspace"])) if ship else {}
    return {
        "blobs": blobs,
        "trial": task["trial"],
        "status": status,
        "objectives": objectives,
        "failed_gates": failed,
        "error": error,
        "messages": collected.messages,
        "seconds": round(time.perf_counter() - started, 3),
        "pid": os.getpid(),
    }


def _blobs(workspace: Path) -> dict[str, str]:
    """Every blob of `workspace`'s store (a scratch store: all of it is this trial's, the
    stages' files and what their evaluations stored, such as a baseline's ONNX export), each
    read and verified, as base64 by sha256."""
    from compressgate.registry.catalog.store import ArtifactStore, StoredFile

    store = ArtifactStore(workspace)
    blobs: dict[str, str] = {}
    if not store.objects.is_dir():
        return blobs
    for path in sorted(store.objects.glob("??/*")):
        if path.name.startswith("."):
            continue  # a temporary file
        sha256 = path.parent.name + path.name
        data = store.read_bytes(StoredFile(path.name, sha256, path.stat().st_size))
        blobs[sha256] = base64.b64encode(data).decode("ascii")
    return blobs


def receive_blobs(blobs: Mapping[str, str], workspace: Path) -> int:
    """Store a remote trial's blobs in `workspace`'s store, each by its digest (a blob whose
    bytes are not its digest is an integrity failure, exit 3); how many were new."""
    from compressgate.registry.catalog.store import ArtifactStore
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.kernel.errors import IntegrityError

    store = ArtifactStore(workspace)
    new = 0
    for sha256, text in blobs.items():
        if store.blob_path(sha256).is_file():
            continue
        data = base64.b64decode(text)
        if sha256_bytes(data) != sha256:
            raise IntegrityError(f"a trial's blob named {sha256} holds other bytes")
        with tempfile.TemporaryDirectory(prefix="compressgate-blob-") as scratch:
            path = Path(scratch) / "blob"
            path.write_bytes(data)
            store.put_file(path)
        new += 1
    return new


def _run(task: Task, collected: CollectingCatalog) -> tuple[str, dict[str, float], list[str]]:
    from compressgate.recipes.load import LoadedRecipe
    from compressgate.recipes.signing import VerifiedRecipe
    from compressgate.recipes.sweep import trial_recipe, verify_sweep
    from compressgate.recipes.trust import load_trust
    from compressgate.registry.kernel.digests import sha256_bytes, sha256_file
    from compressgate.registry.kernel.errors import IntegrityError
    from compressgate.registry.run import engine

    trust_path = Path(task["trust"])
    if sha256_file(trust_path) != task["trust_sha256"] and task.get("policy_sha256") is None:
        raise IntegrityError(f"{trust_path} changed after the sweep verified its recipe with it")
    trust = load_trust(trust_path)
    verified = verify_sweep(Path(task["sweep"]), trust, trust_source=str(trust_path))
    if verified.loaded.sha256 != task["sweep_sha256"]:
        raise IntegrityError(
            f"{task['sweep']} changed while the sweep ran: sha256 {verified.loaded.sha256}, "
            f"the sweep verified {task['sweep_sha256']}"
        )
    base = verified.base.loaded
    data, recipe = trial_recipe(
        verified.loaded, base, task["params"], trial=task["trial"], sweep_id=task["sweep_id"]
    )
    if sha256_bytes(data) != task["recipe_sha256"]:
        raise IntegrityError(
            f"trial {task['trial']}: the recipe derived here (sha256 {sha256_bytes(data)}) is "
            f"not the driver's ({task['recipe_sha256']})"
        )
    path = base.path.with_name(f"{base.path.stem}.trial-{task['trial']}{base.path.suffix}")
    loaded = LoadedRecipe(path, recipe, data)
    trial_verified = VerifiedRecipe(
        loaded, verified.envelope, verified.signers, dict(verified.base.subjects)
    )
    selection = Selection(**task["selection"])
    prepared = _TrialRecipe(loaded, trust, str(trust_path), trial_verified, selection=selection)
    runners = task.get("trusted_runners")
    options = engine.RunOptions(
        workspace=Path(task["workspace"]),
        trust=trust_path,
        force=bool(task.get("force")),
        run_id=task["run_id"],
        runner_key=Path(task["runner_key"]) if task.get("runner_key") else None,
        trusted_runners=None if runners is None else tuple(runners),
        trust_sha256=task.get("policy_sha256"),
    )
    outcome = engine.execute(prepared, collected, options)  # type: ignore[arg-type]
    failed = [d.gate for d in outcome.decisions if d.verdict == "fail"]
    values = objective_values(outcome.record, verified.loaded.sweep)
    missing = [o.metric for o in verified.loaded.sweep.objectives if o.metric not in values]
    if missing and not failed:
        raise ValueError(
            f"the trial measured no {', '.join(missing)}: its recipe's evaluators must measure "
            "every objective at its stage"
        )
    return ("failed" if failed else "passed"), values, failed


@dataclass
class _TrialRecipe(PreparedRecipe):
    """A trial's recipe: the recipe's data with the selection split in place of the test
    split (`carve`), loaded once per seed."""

    selection: Selection = field(default=Selection(0.2, 0), kw_only=True)

    def splits(self, seed: int) -> Splits:
        if seed not in self._splits:
            self._splits[seed] = carve(super().splits(seed), self.selection, seed)
        return self._splits[seed]


def main() -> int:
    """`python -m compressgate.registry.run.trial`: a worker of the local backend. It reads
    tasks, one JSON object a line, on stdin, and answers each with its result, one JSON line on
    stdout, until its input ends; anything the stages print goes to stderr."""
    channel = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    for line in sys.stdin:
        result = run_trial(json.loads(line))
        channel.write(json.dumps(result) + "\n")
        channel.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
