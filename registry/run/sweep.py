"""Sweeps: a search over a signed recipe's fields for the variants that pass every gate, and the
Pareto frontier of their objectives (the driver's end; a trial's end is `trial.py`).

The driver verifies the sweep and its base recipe, asks the strategy's sampler (Optuna: grid,
random, TPE for one objective, NSGA-II for several) for trials batch by batch, runs them on a
backend (`local`: worker subprocesses, as many as the machine has cores; `ray`: tasks on a Ray
cluster), and alone writes the catalog: each trial's run (replayed from the messages its worker
returns), the runner's attestation of it, and the trial's row linking it to the sweep. At the
end it records the frontier among the trials that pass every gate and the variant it chooses,
with why; `compressgate sweep propose` turns that into a recipe for people to sign and submit.

Determinism and resumption: batch `b` holds trials `b·k … b·k+k−1` (`k` = `strategy.batch`); its
sampler is seeded by (`strategy.seed`, `b`) and sees exactly the trials of the earlier batches.
So the trials asked never depend on timing or on the number of workers, and a sweep killed and
run again (the same manifest bytes: its open sweep is resumed) asks the same trials again and
runs only those not yet recorded: its frontier is an undisturbed sweep's.

Trials share work through the content-addressed stage cache: trials with the same prefix of
stages have the same cache keys, and a trial computing a stage holds its key
(`StageCache.claim`), so a concurrent trial of the same prefix waits and reuses it.
"""

from __future__ import annotations

import concurrent.futures as futures
import contextlib
import json
import logging
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from compressgate.registry.kernel.errors import CompressgateError, ManifestError

if TYPE_CHECKING:
    from compressgate.recipes.sweep import LoadedSweep, Sweep, VerifiedSweep
    from compressgate.registry.catalog.records import SweepTrialRecord
    from compressgate.registry.catalog.repository import Catalog

log = logging.getLogger(__name__)

TRIAL = "compressgate.registry.run.trial"
RETRIES = 2  # a killed worker's trial is run again this many times before it counts as crashed
SAY = Callable[[str], None]


# --- what the sampler asks ------------------------------------------------------------------------


def _values(sweep: Sweep) -> dict[str, list[Any]]:
    return {path: list(values) for path, values in sweep.axes.items()}


def _sampler(sweep: Sweep, batch: int) -> Any:
    import optuna

    seed = (sweep.strategy.seed * 1_000_003 + batch) % 2**32
    kind = sweep.strategy.kind
    feasible: Callable[[Any], Sequence[float]] = _constraints
    if kind == "grid":
        space = {path: list(range(len(v))) for path, v in sweep.axes.items()}
        return optuna.samplers.GridSampler(space, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if kind == "tpe":
        return optuna.samplers.TPESampler(seed=seed, constraints_func=feasible)
    # One generation a batch: the history's trials carry their generation (`_study`).
    return optuna.samplers.NSGAIISampler(
        seed=seed, constraints_func=feasible, population_size=max(2, sweep.strategy.batch)
    )


def _constraints(trial: Any) -> Sequence[float]:
    """A trial is feasible (≤ 0) when it passed every gate."""
    return tuple(trial.system_attrs.get("constraints", (0.0,)))


def _directions(sweep: Sweep) -> list[Literal["minimize", "maximize"]]:
    return [o.goal for o in sweep.objectives]


def _study(sweep: Sweep, sampler: Any, history: Sequence[SweepTrialRecord]) -> Any:
    """An in-memory study holding `history` (the trials of the earlier batches)."""
    import optuna
    from optuna.distributions import BaseDistribution, CategoricalDistribution
    from optuna.trial import TrialState

    study = optuna.create_study(directions=_directions(sweep), sampler=sampler)
    # NSGA-II groups trials in generations by this attribute: batch b is generation b.
    generation = optuna.samplers.NSGAIISampler._get_generation_key()
    values = _values(sweep)
    distributions: dict[str, BaseDistribution] = {
        p: CategoricalDistribution(list(range(len(v)))) for p, v in values.items()
    }
    for done in history:
        params = {p: _index(values[p], done.params[p]) for p in values}
        metrics = [done.objectives.get(o.metric) for o in sweep.objectives]
        complete = done.status != "crashed" and None not in metrics
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=distributions,
                values=[float(m) for m in metrics if m is not None] if complete else None,
                state=TrialState.COMPLETE if complete else TrialState.FAIL,
                system_attrs={
                    "constraints": (0.0 if done.status == "passed" else 1.0,),
                    generation: done.trial // max(2, sweep.strategy.batch),
                },
                user_attrs={"trial": done.trial},
            )
        )
    return study


def _index(values: list[Any], value: Any) -> int:
    for index, candidate in enumerate(values):
        if _same(candidate, value):
            return index
    raise ManifestError(f"a recorded trial's value {value!r} is not among the axis' {values!r}")


def _same(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def ask_batch(
    sweep: Sweep, batch: int, history: Sequence[SweepTrialRecord], size: int
) -> list[dict[str, Any]]:
    """The parameters of batch `batch`'s trials (at most `size`; fewer when the search space
    holds no other untried variant): a function of the sweep, the batch number and the
    earlier batches' trials only."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    values = _values(sweep)
    distributions = {p: CategoricalDistribution(list(range(len(v)))) for p, v in values.items()}
    seen = {json.dumps(t.params, sort_keys=True) for t in history}
    asked: list[dict[str, Any]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # optuna's ExperimentalWarning for constraints_func
        study = _study(sweep, _sampler(sweep, batch), history)
        tries = 0
        while len(asked) < size and tries < 50 * size:
            tries += 1
            trial = study.ask(fixed_distributions=distributions)
            params = {p: values[p][trial.params[p]] for p in values}
            key = json.dumps(params, sort_keys=True)
            if key in seen:  # a variant asked before: its result would be the same
                study.tell(trial, state=TrialState.PRUNED)
                if sweep.strategy.kind == "grid" and len(seen) >= sweep.grid_size():
                    break
                continue
            seen.add(key)
            asked.append(params)
    return asked


# --- the frontier and the choice -----------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    frontier: list[int]
    chosen: int | None
    why: str


def frontier(sweep: Sweep, trials: Sequence[SweepTrialRecord]) -> list[int]:
    """The trials on the Pareto frontier of the objectives among those that pass every gate
    (Optuna's `best_trials`), by trial number."""
    import optuna
    from optuna.distributions import FloatDistribution

    passing = [
        t
        for t in trials
        if t.status == "passed" and all(o.metric in t.objectives for o in sweep.objectives)
    ]
    if not passing:
        return []
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=_directions(sweep))
    for t in passing:
        study.add_trial(
            optuna.trial.create_trial(
                params={"trial": float(t.trial)},
                distributions={"trial": FloatDistribution(0, 1e9)},
                values=[float(t.objectives[o.metric]) for o in sweep.objectives],
                user_attrs={"trial": t.trial},
            )
        )
    best = study.best_trials if len(sweep.objectives) > 1 else [study.best_trial]
    if len(sweep.objectives) == 1:  # every trial tied with the best is on the frontier
        top = best[0].values[0]
        best = [s for s in study.trials if s.values[0] == top]
    return sorted(int(s.user_attrs["trial"]) for s in best)


def rule_text(sweep: Sweep) -> str:
    """The choice rule in words: 'smallest size.bytes with … ≥ 3'."""
    objective = _chosen_objective(sweep)
    word = "smallest" if objective.goal == "minimize" else "largest"
    limits = [
        f"{c.metric} {op} {_num(v)}"
        for c in sweep.choose.constraints
        for op, v in ((">=", c.min), ("<=", c.max))
        if v is not None
    ]
    return f"{word} {objective.metric}" + (f" with {' and '.join(limits)}" if limits else "")


def _chosen_objective(sweep: Sweep) -> Any:
    name = sweep.choose.objective or sweep.objectives[0].metric
    return next(o for o in sweep.objectives if o.metric == name)


def _num(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def choose(sweep: Sweep, trials: Sequence[SweepTrialRecord]) -> Choice:
    """The frontier, and the frontier trial the sweep's `choose` rule picks, with why."""
    on = frontier(sweep, trials)
    by_number = {t.trial: t for t in trials}
    rule = rule_text(sweep)
    if not on:
        failed = sum(t.status == "failed" for t in trials)
        crashed = sum(t.status == "crashed" for t in trials)
        return Choice(
            [],
            None,
            f"no trial passed every gate ({failed} failed a gate, {crashed} crashed, of "
            f"{len(trials)})",
        )
    admissible = [
        n
        for n in on
        if all(
            (c.min is None or by_number[n].objectives[c.metric] >= c.min)
            and (c.max is None or by_number[n].objectives[c.metric] <= c.max)
            for c in sweep.choose.constraints
        )
    ]
    if not admissible:
        return Choice(on, None, f"no frontier trial meets the rule: {rule}")
    first = _chosen_objective(sweep)
    order = [first] + [o for o in sweep.objectives if o is not first]

    def rank(n: int) -> tuple[float, ...]:
        values = by_number[n].objectives
        signed = [values[o.metric] * (1 if o.goal == "minimize" else -1) for o in order]
        return (*signed, n)

    chosen = min(admissible, key=rank)
    value = by_number[chosen].objectives[first.metric]
    return Choice(
        on,
        chosen,
        f"{rule}: trial {chosen}, {first.metric} {_num(value)}, among {len(admissible)} of "
        f"{len(on)} frontier trials that meet it",
    )


# --- backends ------------------------------------------------------------------------------------


class Backend:
    """Runs trial tasks; `submit` returns a future of the result (None: the worker died)."""

    name = "local"
    workers = 1

    def submit(self, task: dict[str, Any]) -> futures.Future[dict[str, Any] | None]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class _Worker:
    """One worker process of the local backend (`python -m compressgate.registry.run.trial`),
    kept for trial after trial; its stderr goes to a scratch file, read when it dies."""

    def __init__(self) -> None:
        from compressgate.registry.run.envs import child_environ

        self.log = tempfile.TemporaryFile(prefix="compressgate-worker-")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", TRIAL],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            env=child_environ() | {"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        )

    def run(self, task: dict[str, Any]) -> dict[str, Any] | None:
        """The task's result; None when the worker died on it (it is then ended)."""
        assert self.process.stdin is not None and self.process.stdout is not None
        try:
            self.process.stdin.write(json.dumps(task) + "\n")
            self.process.stdin.flush()
            line = self.process.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        if line:
            result: dict[str, Any] = json.loads(line)
            return result
        code = self.process.wait()
        self.log.seek(0)
        said = self.log.read().decode("utf-8", "replace").strip().splitlines()[-1:]
        log.warning(
            "trial %s: its worker ended with exit %s and no result; %s",
            task["trial"],
            code,
            said[0] if said else "no output",
        )
        self.close()
        return None

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            assert self.process.stdin is not None and self.process.stdout is not None
            self.process.stdin.close()
            self.process.stdout.close()
        self.process.wait()
        self.log.close()


class LocalBackend(Backend):
    """Worker processes of this interpreter, at most `workers` at a time, each kept for trial
    after trial (a dead one is replaced)."""

    name = "local"

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trial")
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.started: list[_Worker] = []
        self.lock = threading.Lock()

    def submit(self, task: dict[str, Any]) -> futures.Future[dict[str, Any] | None]:
        return self.pool.submit(self._run, task)

    def _run(self, task: dict[str, Any]) -> dict[str, Any] | None:
        try:
            worker = self.idle.get_nowait()
        except queue.Empty:
            worker = _Worker()
            with self.lock:
                self.started.append(worker)
        result = worker.run(task)
        if worker.alive:
            self.idle.put(worker)
        return result

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
        for worker in self.started:
            if worker.alive:
                worker.close()


class RayBackend(Backend):
    """Tasks on a Ray cluster: the one at `address`, else a local one started here with
    `workers` CPUs. A task whose worker process dies is retried by Ray (`RETRIES`)."""

    name = "ray"

    def __init__(self, workers: int | None, address: str | None) -> None:
        try:
            import ray
        except ImportError:
            raise ManifestError(
                "--backend ray needs Ray, which is not installed",
                hint="pip install 'compressgate[ray]'",
            ) from None
        self.ray = ray
        self.started = not ray.is_initialized()
        if self.started:
            settings: dict[str, Any] = {
                "include_dashboard": False,
                "log_to_driver": False,
                "configure_logging": False,
            }
            if address is None:
                settings["num_cpus"] = workers or os.cpu_count() or 1
            ray.init(address=address, **settings)
        self.workers = int(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        self.remote = ray.remote(num_cpus=1, max_retries=RETRIES)(_ray_trial)

    def submit(self, task: dict[str, Any]) -> futures.Future[dict[str, Any] | None]:
        ref = self.remote.remote(task)
        outer: futures.Future[dict[str, Any] | None] = futures.Future()

        def done(inner: futures.Future[Any]) -> None:
            try:
                outer.set_result(inner.result())
            except Exception as exc:  # the worker died past its retries: no result
                log.warning("trial %s: its Ray task failed: %s", task["trial"], exc)
                outer.set_result(None)

        ref.future().add_done_callback(done)
        return outer

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def _ray_trial(task: dict[str, Any]) -> dict[str, Any]:
    from compressgate.registry.run.trial import run_trial

    return run_trial(task)


def backend_for(name: str, *, workers: int | None, address: str | None) -> Backend:
    if name == "local":
        return LocalBackend(workers or os.cpu_count() or 1)
    if name == "ray":
        return RayBackend(workers, address)
    raise ManifestError(f"unknown backend {name!r}; known: local, ray")


# --- the driver ----------------------------------------------------------------------------------


@dataclass
class SweepRun:
    """What the driver needs, verified: the sweep, the trust it was verified with and the
    options of its trials' runs."""

    verified: VerifiedSweep
    trust: Path
    trust_sha256: str
    policy_sha256: str | None
    workspace: Path
    runner_key: Path | None = None
    trusted_runners: tuple[str, ...] | None = None
    force: bool = False
    attest: Callable[[Any], None] | None = None  # records the runner's attestation of a trial
    say: SAY = field(default=lambda text: None)

    @property
    def sweep(self) -> Sweep:
        return self.verified.loaded.sweep

    @property
    def loaded(self) -> LoadedSweep:
        return self.verified.loaded


def new_sweep_id() -> str:
    import secrets
    from datetime import UTC, datetime

    return f"sweep-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def drive(run: SweepRun, catalog: Catalog, backend: Backend) -> tuple[str, bool]:
    """Run (or resume) the sweep to its end; its id and whether it resumed one."""
    from compressgate.registry.catalog.records import SweepEndRecord, SweepRecord
    from compressgate.registry.run.determinism import now

    sweep, loaded = run.sweep, run.loaded
    found = catalog.open_sweeps(loaded.sha256)
    resumed = bool(found)
    if found:
        sweep_id = found[0].sweep_id
        run.say(f"sweep {sweep_id}: resumed ({len(catalog.sweep_trials(sweep_id))} trials done)")
    else:
        sweep_id = new_sweep_id()
        base = run.verified.base
        catalog.record_sweep_start(
            SweepRecord(
                sweep_id=sweep_id,
                name=sweep.metadata.name,
                version=sweep.metadata.version,
                sha256=loaded.sha256,
                content=loaded.data.decode("utf-8"),
                envelope=run.verified.envelope.read_text(encoding="utf-8"),
                recipe_sha256=base.loaded.sha256,
                signers=sorted({s.owner for s in run.verified.signers}),
                strategy=sweep.strategy.kind,
                backend=backend.name,
                settings={
                    "workers": backend.workers,
                    "trials": sweep.trials(),
                    "batch": sweep.strategy.batch,
                    "selection": sweep.selection.model_dump(mode="json"),
                },
                started_at=now(),
            ),
            recipe_content=base.loaded.data.decode("utf-8"),
            recipe_envelope=base.envelope.read_text(encoding="utf-8"),
            recipe_path=str(base.loaded.path.resolve()),
            recipe_signers=sorted({s.owner for s in base.signers}),
        )
        run.say(
            f"sweep {sweep_id}: {sweep.trials()} trials, {sweep.strategy.kind}, "
            f"{backend.name} backend with {backend.workers} worker(s)"
        )
    started = time.monotonic()
    status = "finished"
    budget, size = sweep.trials(), sweep.strategy.batch
    for batch in range((budget + size - 1) // size):
        if (
            sweep.budget.wall_time is not None
            and time.monotonic() - started > sweep.budget.wall_time
        ):
            status = "stopped"
            run.say(f"sweep {sweep_id}: wall time of {sweep.budget.wall_time:g} s spent, stopping")
            break
        recorded = {t.trial: t for t in catalog.sweep_trials(sweep_id)}
        first = batch * size
        history = [t for n, t in sorted(recorded.items()) if n < first]
        asked = ask_batch(sweep, batch, history, min(size, budget - first))
        if not asked:
            break
        todo = [(first + i, p) for i, p in enumerate(asked) if first + i not in recorded]
        _run_batch(run, catalog, backend, sweep_id, todo)
        if len(asked) < min(size, budget - first):
            break  # the search space holds no other untried variant
    trials = catalog.sweep_trials(sweep_id)
    picked = choose(sweep, trials)
    catalog.record_sweep_end(
        SweepEndRecord(
            sweep_id=sweep_id,
            status=status,
            frontier=picked.frontier,
            chosen=picked.chosen,
            why=picked.why,
            finished_at=now(),
        )
    )
    run.say(f"sweep {sweep_id}: {picked.why}")
    return sweep_id, resumed


def _task(run: SweepRun, sweep_id: str, trial: int, params: dict[str, Any]) -> dict[str, Any]:
    from compressgate.recipes.sweep import trial_recipe
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.run.engine import new_run_id

    base = run.verified.base.loaded
    data, _ = trial_recipe(run.loaded, base, params, trial=trial, sweep_id=sweep_id)
    return {
        "sweep_id": sweep_id,
        "sweep": str(run.loaded.path.resolve()),
        "sweep_sha256": run.loaded.sha256,
        "trust": str(run.trust.resolve()),
        "trust_sha256": run.trust_sha256,
        "policy_sha256": run.policy_sha256,
        "workspace": str(run.workspace.resolve()),
        "trial": trial,
        "params": params,
        "recipe_sha256": sha256_bytes(data),
        "run_id": new_run_id(),
        "selection": run.sweep.selection.model_dump(mode="json"),
        "runner_key": None if run.runner_key is None else str(run.runner_key.resolve()),
        "trusted_runners": None if run.trusted_runners is None else list(run.trusted_runners),
        "force": run.force,
    }


def _run_batch(
    run: SweepRun,
    catalog: Catalog,
    backend: Backend,
    sweep_id: str,
    todo: Sequence[tuple[int, dict[str, Any]]],
) -> None:
    """Run the trials of one batch, recording each as it ends; a trial whose worker died is
    run again (at most `RETRIES` times) before it counts as crashed."""
    attempts = {trial: 1 for trial, _ in todo}
    params = dict(todo)
    pending = {backend.submit(_task(run, sweep_id, t, p)): t for t, p in todo}
    while pending:
        done, _ = futures.wait(pending, return_when=futures.FIRST_COMPLETED)
        for future in done:
            trial = pending.pop(future)
            result = future.result()
            if result is None and attempts[trial] <= RETRIES and backend.name == "local":
                attempts[trial] += 1
                run.say(f"trial {trial}: its worker died; running it again")
                pending[backend.submit(_task(run, sweep_id, trial, params[trial]))] = trial
                continue
            _record(run, catalog, sweep_id, trial, params[trial], result, attempts[trial])


def _record(
    run: SweepRun,
    catalog: Catalog,
    sweep_id: str,
    trial: int,
    params: dict[str, Any],
    result: Mapping[str, Any] | None,
    attempts: int,
) -> None:
    from compressgate.gates.review import GateDecision
    from compressgate.registry.catalog.records import SweepTrialRecord
    from compressgate.registry.catalog.repository import JudgementRecord
    from compressgate.registry.run.determinism import now
    from compressgate.registry.run.isolation import Outcome
    from compressgate.registry.run.trial import receive_blobs, replay

    run_id = None
    if result is None:
        status, objectives, failed = "crashed", {}, []
        error: str | None = f"its worker died {attempts} time(s)"
        seconds = 0.0
    else:
        if result.get("blobs"):  # a trial that ran away from this workspace: its artifacts
            receive_blobs(result["blobs"], run.workspace)
        record = replay(result["messages"], catalog)
        if record is not None:
            run_id = record.run_id
            end = next(m for m in reversed(result["messages"]) if m["op"] == "end")
            if run.attest is not None:
                run.attest(
                    Outcome(
                        record,
                        [JudgementRecord.model_validate(j) for j in end["judgements"]],
                        [GateDecision.model_validate(d) for d in end["decisions"]],
                    )
                )
        status, objectives = result["status"], result["objectives"]
        failed, error, seconds = result["failed_gates"], result["error"], result["seconds"]
    catalog.record_sweep_trial(
        SweepTrialRecord(
            sweep_id=sweep_id,
            trial=trial,
            run_id=run_id,
            params=params,
            status=status,
            objectives=objectives,
            failed_gates=failed,
            error=error,
            attempts=attempts,
            seconds=seconds,
            recorded_at=now(),
        )
    )
    shown = ", ".join(f"{k}={_num(v)}" for k, v in objectives.items())
    why = f" ({', '.join(failed)})" if failed else (f": {error}" if error else "")
    run.say(f"trial {trial} {status}{why} in {seconds:.0f} s{'; ' + shown if shown else ''}")


def check_workers(value: int | None) -> int | None:
    if value is not None and value < 1:
        raise CompressgateError("--workers must be at least 1")
    return value
