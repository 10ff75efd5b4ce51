"""The engine: a signed recipe in, a chain of content-addressed variants out, reproducibly.

For each seed: load the data, build (or train) the baseline, then run every stage on the output
of the one before. Each output is stored in the artifact store by sha256, with its parent's
digest and the digest of the stage spec, and evaluated on the test split. A stage whose inputs
(parent artifact, spec, seed, data, code, environment) match an earlier run is not recomputed:
its cached record and artifact are reused (`compressgate.registry.run.cache`), so a run killed
mid-stage resumes from the last stage that finished.

Everything is recorded in the catalog as it happens: the recipe and the run's start (after the
signature and environment checks pass), each seed's data digests, each finished stage's variant
and evaluations, and at the end the gate decisions and the run's outcome. A run killed by
SIGKILL stays recorded up to its last finished stage, with no end. `catalog show RUN --json`
exports the record exactly as the engine held it.

Isolation (`environment.isolate`, `run --isolate`): the stages and evaluators run in a worker
subprocess of a virtual environment built from the recipe's lock, and this process records what
the worker reports (`compressgate.registry.run.isolation`).

Determinism (`compressgate.registry.run.determinism`): every stage runs with deterministic torch
kernels, one intra-op thread in torch and onnxruntime, and every random generator seeded from the
run seed and the stage name. The progress of long steps is shown through the `Progress` the
caller passes in `RunOptions` (the CLI's draws rich bars); the engine draws nothing itself.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressgate import evaluators, recipes
from compressgate.evaluators.base import EvalContext, Evaluator, Subject, evaluate_stage, flatten
from compressgate.gates.power import PowerCheck, SampleSizes, sample_sizes
from compressgate.gates.review import GateDecision
from compressgate.recipes import models, onnxio
from compressgate.recipes.data import Split, Splits, load_splits
from compressgate.recipes.load import LoadedRecipe
from compressgate.recipes.manifest import ImportRef, Recipe, iter_refs
from compressgate.recipes.models import TorchModel, Variant
from compressgate.recipes.plugins import Plugins, code_digests, load_plugins
from compressgate.recipes.signing import verify_recipe
from compressgate.recipes.stages.base import NullProgress, Progress, Stage, StageContext, stage_for
from compressgate.recipes.trust import Trust, load_trust
from compressgate.registry.catalog.records import RecipeRef, RunRecord, StageRecord, Timing
from compressgate.registry.catalog.repository import Catalog, JudgementRecord, catalog_url
from compressgate.registry.catalog.store import Artifact, ArtifactStore
from compressgate.registry.kernel.digests import sha256_bytes, sha256_file
from compressgate.registry.kernel.errors import CompressgateError, IntegrityError, StageError
from compressgate.registry.kernel.plugins import Family
from compressgate.registry.run import cache, environment, variants
from compressgate.registry.run.across import across_seeds
from compressgate.registry.run.determinism import (
    THREADS,
    deterministic,
    digest,
    now,
    seed_everything,
    threads,
)
from compressgate.registry.run.isolation import Outcome, RemoteCatalog, run_isolated
from compressgate.registry.run.judging import judge_for_catalog
from compressgate.registry.run.variants import BASELINE

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from compressgate.registry.run.prepared import PreparedRecipe

# The modules of this package whose code shapes an output or its record: part of every stage's
# cache key, with the recipe's own modules and compressgate's stages, models and evaluators.
_ENGINE_CODE = ("engine.py", "variants.py", "cache.py", "determinism.py", "across.py")


# --- options and entry points -------------------------------------------------------------------


@dataclass
class RunOptions:
    workspace: Path
    trust: Path
    force: bool = False
    progress: Progress | None = None  # shows the long steps; when set, env builds say so too
    on_stage: Callable[[StageRecord], None] | None = None
    run_id: str | None = None
    catalog: str | None = None  # URL; default: SQLite at WORKSPACE/catalog.db
    isolate: bool = False  # run the stages under the recipe's lock even if it does not ask
    envs: Path | None = None  # the environment store; default: $COMPRESSGATE_ENVS, WORKSPACE/envs
    # Under a catalog's trust policy: the runner's key file, which signs the stage cache entries
    # written, and the runner keys (public, hex) whose entries are reused; None: any entry.
    runner_key: Path | None = None
    trusted_runners: tuple[str, ...] | None = None
    # `resume`: gates whose owners waived them on the stopped run being resumed; failing again
    # on the same evidence, they do not stop this run.
    waived: tuple[str, ...] = ()
    trust_sha256: str | None = None  # under a policy: the policy's digest, the trust to run with

    def stage_cache(self, store: ArtifactStore) -> cache.StageCache:
        from compressgate.registry.kernel.keys import PublicKey, load_private_key

        return cache.StageCache(
            self.workspace / "cache",
            store,
            force=self.force,
            signer=None if self.runner_key is None else load_private_key(self.runner_key),
            trusted=None
            if self.trusted_runners is None
            else tuple(PublicKey(k) for k in self.trusted_runners),
        )

    def open_catalog(self, *, create: bool = True) -> Catalog:
        return Catalog(catalog_url(self.workspace, self.catalog), create=create)


def new_run_id() -> str:
    return f"run-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def run_recipe(path: Path, options: RunOptions) -> RunRecord:
    """Verify the recipe at `path` against `options.trust`, then `execute` it in the options'
    catalog; returns the run record. (The workspace prepares a recipe once and calls
    `execute` itself.)"""
    from compressgate.registry.run.prepared import PreparedRecipe

    trust = load_trust(options.trust)
    verified = verify_recipe(path, trust, trust_source=str(options.trust))
    prepared = PreparedRecipe(verified.loaded, trust, str(options.trust), verified)
    with options.open_catalog() as catalog:
        return execute(prepared, catalog, options).record


def execute(
    prepared: PreparedRecipe, catalog: Catalog | Callable[[], Catalog], options: RunOptions
) -> Outcome:
    """Check the environment, run every stage for every seed and judge the gates, recording
    into `catalog`; the outcome as this process holds it (record, per-seed judgements, gate
    decisions), so nobody reads it back from the catalog.

    The recipe comes verified (`prepared.verified`): its data is loaded through `prepared`
    (once per seed) and its gates' power checks are `prepared`'s (computed once). With
    `environment.isolate` (or `options.isolate`) the stages and evaluators run in a subprocess
    of the lock's own environment (`compressgate.registry.run.isolation`); this process keeps
    the catalog and the progress display. `catalog` may be a function that opens it: it is
    called only once the environment and the recipe's references passed their checks, so a
    run refused before it starts writes nothing, not even an empty catalog.
    """
    started = time.perf_counter()
    verified = prepared.verified
    if verified is None:
        raise IntegrityError(f"{prepared.path}: a run needs a recipe whose signature was verified")
    recipe, base = prepared.recipe, prepared.base
    lock = base / recipe.environment.lock
    record = RunRecord(
        run_id=options.run_id or new_run_id(),
        recipe=RecipeRef(
            name=recipe.metadata.name,
            version=recipe.metadata.version,
            sha256=prepared.sha256,
            path=str(prepared.path.resolve()),
            signers=sorted({s.owner for s in verified.signers}),
        ),
        started_at=now(),
        workspace=str(options.workspace.resolve()),
        seeds=list(recipe.seeds),
    )
    log.info(
        "run %s: %s v%s (sha256 %s), seeds %s, signed by %s",
        record.run_id,
        recipe.metadata.name,
        recipe.metadata.version,
        prepared.sha256[:12],
        list(recipe.seeds),
        ", ".join(record.recipe.signers) or "nobody",
    )
    if options.isolate or recipe.environment.isolate:
        log.info("run %s: isolated, in the environment of %s", record.run_id, lock)
        return run_isolated(prepared.path, options, verified, record, lock, catalog)
    mismatches = environment.enforce(lock, strict=recipe.environment.strict)
    sources = verified.sources
    check_references(recipe, base, prepared.modules, sources)
    plugins = load_run_plugins(recipe, prepared.trust, str(prepared.path))
    if callable(catalog):
        catalog = catalog()
    with models.allowed_modules(prepared.modules, sources):
        executor = Executor(
            prepared.loaded,
            base,
            options,
            record,
            started,
            catalog,
            splits=prepared.splits,
            power=prepared.power_of,
            plugins=plugins,
        )
        with deterministic(THREADS):
            record.environment = environment_record(lock, recipe, mismatches, base, plugins)
            catalog.record_run_start(
                record,
                recipe_content=prepared.loaded.data.decode("utf-8"),
                envelope=verified.envelope.read_text(encoding="utf-8"),
                lock_sha256=sha256_file(lock) if lock.is_file() else "",
            )
            try:
                executor.run_stages()
            except BaseException as exc:  # a failed or interrupted run is recorded as failed
                executor.fail(exc)
                raise
        executor.finish()
    return Outcome(record, executor.judgements, executor.decisions)


def check_references(
    recipe: Recipe,
    base: Path,
    modules: tuple[str, ...],
    sources: Mapping[str, models.SignedSource] | None = None,
) -> None:
    """Every factory and loader is imported only from the trust file's allow-listed modules
    (a local one only from its signed bytes, `sources`), and each is resolved before anything
    is recorded: code it may not name is bad input, no row. Checkpoints are read (weights
    only) and an ONNX baseline checked (`onnxio.check_baseline`) before anything is recorded
    too."""
    with models.allowed_modules(modules, sources):
        for loc, ref in iter_refs(recipe):
            if isinstance(ref, ImportRef):
                models.resolve(ref, base)
            elif loc[-1] == "checkpoint":
                models.read_checkpoint(base / ref, what=".".join(map(str, loc)))
            elif loc[-1] == "onnx":  # one onnxruntime runs as it is, reading no other file
                onnxio.check_baseline(base / ref, what=".".join(map(str, loc)))


def load_run_plugins(recipe: Recipe, trust: Trust | None, source: str) -> Plugins:
    """The recipe's plug-ins, each imported only if `trust` (the trust in force for this run)
    allows its distribution, and checked to be a stage or an evaluator whose `Params` take the
    recipe's `params`: before anything is recorded (`compressgate.recipes.plugins`)."""
    bases: dict[Family, type] = {"stage": Stage, "evaluator": Evaluator}
    return load_plugins(recipe, trust, source=source, bases=bases)


def environment_record(
    lock: Path,
    recipe: Recipe,
    mismatches: tuple[environment.Mismatch, ...],
    base: Path,
    plugins: Plugins | None = None,
) -> dict[str, Any]:
    """The run record's `environment`: the fingerprint of this interpreter (taken under the
    engine's thread settings), where the interpreter is, the lock's mismatches, the digest
    of the code the stages run (`code_digest`) and, when the recipe uses plug-ins, which
    distribution, version and code digest each came from. Where the interpreter is stays out
    of the fingerprint, whose digest (with the code's, the lock's and the data's) says which
    runs `ci` may reuse."""
    fingerprint = environment.fingerprint(lock, threads=threads(), seeds=tuple(recipe.seeds))
    found = {
        "fingerprint": fingerprint,
        "fingerprint_sha256": digest(fingerprint),
        "interpreter": {"prefix": sys.prefix, "executable": sys.executable},
        "mismatches": [str(m) for m in mismatches],
        "strict": recipe.environment.strict,
        "code_sha256": code_digest(recipe, base),
    }
    if plugins is not None and plugins.record():
        found["plugins"] = plugins.record()
    return found


def code_digest(recipe: Recipe, base: Path) -> str:
    """Digest of the code a stage's output depends on: every module the recipe imports
    (factories, loaders: the file each is loaded from), the plug-ins it names (distribution,
    version, code sha256) and our own engine, stages, models and evaluators."""
    from compressgate.recipes.subjects import installed, local_module

    sources: dict[str, Any] = {"compressgate": _own_code_digest()}
    plugged = code_digests(recipe)
    if plugged:  # absent from the digests of recipes without plug-ins, which stay as they were
        sources["plugins"] = plugged
    for _, ref in iter_refs(recipe):
        if not isinstance(ref, ImportRef):
            continue
        module = ref.partition(":")[0]
        if installed(module):
            spec = importlib.util.find_spec(module)  # imports the module's parent packages
            origin = spec.origin if spec is not None else None
            if origin and Path(origin).is_file():
                sources[module] = sha256_file(Path(origin))
        elif (found := local_module(module, base)) is not None:
            files = [base / file for file in found.files]
            sources[module] = digest([sha256_file(f) for f in files if f.is_file()])
    return digest(sources)


def stale_inputs(prepared: PreparedRecipe, run: RunRecord, lock_sha256: str) -> list[str]:
    """What differs between the inputs a recorded run of this recipe had and the ones a run
    would have now: the lock file, the code of its factories and loaders (and ours), each
    seed's data splits (recomputed, as a run loads them). Empty: the run may stand for a run
    now (`ci`)."""
    recipe, base = prepared.recipe, prepared.base
    lock = base / recipe.environment.lock
    found = []
    if not lock.is_file() or sha256_file(lock) != lock_sha256:
        found.append(f"the lock {recipe.environment.lock}")
    if run.environment.get("code_sha256") != code_digest(recipe, base):
        found.append("the code of the recipe's factories and loaders, or compressgate's")
    for seed in recipe.seeds:
        recorded = run.data.get(str(seed), {})
        splits = prepared.splits(seed)
        now = {
            "train": split_digest(splits.train),
            "calibration": split_digest(splits.calibration),
            "test": split_digest(splits.test),
        }
        changed = sorted(name for name, value in now.items() if recorded.get(name) != value)
        if changed:
            found.append(f"the {', '.join(changed)} data of seed {seed}")
    return found


# --- data ---------------------------------------------------------------------------------------


def split_digest(split: Split) -> str:
    """The digest of a data split: its tensors' bytes, shapes and dtypes (and class weights)."""
    parts = [split.x, split.y] + [t for t in (split.groups, split.ids) if t is not None]
    digests = [sha256_bytes(t.contiguous().numpy().tobytes()) for t in parts]
    described: list[object] = [list(t.shape) for t in parts] + [str(t.dtype) for t in parts]
    if split.class_weights is not None:  # absent from older digests, which stay as they were
        described.append({"class_weights": list(split.class_weights)})
    return digest(described + digests)


# --- the engine ---------------------------------------------------------------------------------


@dataclass
class _SeedState:
    """What the stages of one seed share while they are evaluated."""

    seed: int
    splits: Splits
    data: str  # digest of the seed's data splits
    baseline: Subject | None = None
    parent: Subject | None = None


class Executor:
    """One run of a recipe: its seeds' baselines and stages in order, each output stored,
    evaluated and recorded (in the catalog, or through the worker's channel), its gates judged
    as soon as every seed has run the stage they name."""

    def __init__(
        self,
        loaded: LoadedRecipe,
        base: Path,
        options: RunOptions,
        record: RunRecord,
        started: float,
        catalog: Catalog | RemoteCatalog,
        progress: Progress | None = None,
        *,
        splits: Callable[[int], Splits] | None = None,
        power: Callable[[str], PowerCheck | None] | None = None,
        plugins: Plugins | None = None,
    ) -> None:
        self.recipe: Recipe = loaded.recipe
        self.plugins = plugins or Plugins()
        self.base = base
        self.options = options
        self.record = record
        self.started = started
        self.store = ArtifactStore(options.workspace)
        self.cache = options.stage_cache(self.store)
        self.catalog = catalog
        self.progress: Progress = progress or options.progress or NullProgress()
        self.compute = 0.0
        self.code = code_digest(self.recipe, self.base)
        # ONNX variants read back from the store live here for the run's duration.
        self._scratch = tempfile.TemporaryDirectory(prefix="compressgate-run-")
        self.variants = Path(self._scratch.name)
        # Each seed's test split, for the comparisons across seeds at the end.
        self.tests: dict[int, Split] = {}
        self.judgements: list[JudgementRecord] = []  # each gate judged on each seed
        self.decisions: list[GateDecision] = []  # each gate decided over the seeds
        self.stopped_after: str | None = None
        self.sizes: SampleSizes | None = None  # the test split's, for the gates' power checks
        # A seed's data, and a gate's power check computed once by whoever prepared the recipe
        # (the workspace); without them the loader runs here and the power is computed here.
        self.load_splits = splits or (lambda seed: load_splits(self.recipe, self.base, seed))
        self.power = power
        self._power_checks: Mapping[str, PowerCheck | None] | None = None

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
        across_seeds(self.recipe, self.record, self.tests)
        self.compute += time.perf_counter() - start
        self.record.status = "stopped" if self.stopped_after is not None else "succeeded"
        self._close()
        self.catalog.record_run_end(self.record, self.judgements, self.decisions)

    def _close(self) -> None:
        self._scratch.cleanup()
        total = time.perf_counter() - self.started
        self.record.finished_at = now()
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

    def _env_key(self) -> str:
        return cache.environment_key(self.record.environment.get("fingerprint", {}))

    # -- the stages, seed by seed

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
                failed = [g for g in self._judge_stage(name) if g not in self.options.waived]
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

    def _checks(self) -> Mapping[str, PowerCheck | None]:
        """Every gate's power check at this run's sizes and the evaluators' declared
        confidences, as `validate` computes it (once)."""
        if self._power_checks is None:
            from compressgate.gates.power import check_gates

            self._power_checks = {} if self.sizes is None else check_gates(self.recipe, self.sizes)
        return self._power_checks

    def _judge_stage(self, name: str) -> list[str]:
        """Judge every gate on stage `name` for every seed; the names of the gates that fail."""
        last = self.recipe.stages[-1].name
        failed = []
        for declared in self.recipe.gates:
            if (declared.after or last) != name:
                continue
            gate = self.recipe.judged(declared)
            if self.power is None:  # computed here, at this run's sizes
                judgements, decision = judge_for_catalog(
                    gate, self.record, name, power=self._checks().get(gate.name)
                )
            else:  # computed once by whoever prepared the recipe
                judgements, decision = judge_for_catalog(
                    gate, self.record, name, power=self.power(gate.name)
                )
            self.judgements += judgements
            self.decisions.append(decision)
            if decision.verdict == "fail":
                failed.append(gate.name)
        return failed

    def seed_steps(self, seed: int) -> Generator[str]:
        """Run one seed's baseline and stages in order, yielding each one's name when done."""
        splits = self.load_splits(seed)
        self.record.data[str(seed)] = {
            "train": split_digest(splits.train),
            "calibration": split_digest(splits.calibration),
            "test": split_digest(splits.test),
            **{key: str(value) for key, value in splits.provenance.items()},
            **({} if splits.padding is None else {"padding": splits.padding.describe()}),
        }
        self.catalog.record_seed(self.record.run_id, seed, self.record.data[str(seed)])
        data = digest(self.record.data[str(seed)])
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
            stage.spec_sha256 = digest(spec.model_dump(mode="json", by_alias=True))
            stage.cache_key = cache.key(
                kind=spec.kind,
                parent=stage.parent_sha256,
                spec=stage.spec_sha256,
                seed=seed,
                data=data,
                code=self.code,
                reference=reference_sha,
                env=self._env_key(),
                # An embedding model's stages fine-tune on vectors, not labels: a part of the
                # key (a classifier's keys stay as they were).
                **(
                    {"task": self.recipe.model.task}
                    if self.recipe.model.task != "classification"
                    else {}
                ),
            )
            self._begin(stage)
            log.debug("seed %s %s: cache key %s", seed, spec.name, stage.cache_key)
            with self.cache.claim(stage):  # a concurrent trial of the same prefix waits
                current = self._stage(stage, spec, state, current, reference)
            parent = stage.artifact_sha256
            if isinstance(current, TorchModel):
                reference, reference_sha = current, parent
            self._end(stage, spec)
            yield spec.name

    def _stage(
        self,
        stage: StageRecord,
        spec: Any,
        state: _SeedState,
        current: Variant,
        reference: TorchModel | None,
    ) -> Variant:
        """One stage's output: from the stage cache, else computed, stored and evaluated."""
        seed, splits = state.seed, state.splits
        cached = self._cached(stage, state, reference)
        if cached is not None:
            log.info("seed %s %s: reused from the stage cache", seed, spec.name)
            return cached
        log.info("seed %s %s [%s]: running", seed, spec.name, spec.kind)
        with tempfile.TemporaryDirectory(prefix="compressgate-stage-") as scratch:
            ctx = StageContext(
                stage=spec.name,
                seed=seed,
                splits=splits,
                workdir=Path(scratch),
                base=self.base,
                progress=self.progress,
                reference=reference,
                task=self.recipe.model.task,
            )
            seed_everything(ctx.seed_for("global"))
            implementation = stage_for(spec.kind, self.plugins)
            bound = implementation.bind(spec)
            with self._timed(stage, "seconds"):
                current = variants.apply_stage(implementation, current, bound, ctx)
            if spec.kind in self.plugins.stages:  # which plug-in code made it
                ctx.details["plugin"] = self.plugins.stages[spec.kind].record()
            stage.details = ctx.details
            stage.warnings = ctx.warnings
            return self._keep(stage, current, state, reference, Path(scratch))

    def _baseline(self, state: _SeedState) -> tuple[Variant, str | None]:
        seed = state.seed
        spec = self.recipe.model
        stage = StageRecord(seed=seed, name=BASELINE, kind=BASELINE)
        stage.spec_sha256 = digest(spec.model_dump(mode="json", by_alias=True))
        files = {
            name: sha256_file(self.base / name)
            for name in (spec.checkpoint, spec.onnx)
            if name is not None
        }
        stage.cache_key = cache.key(
            kind=BASELINE,
            spec=stage.spec_sha256,
            files=files,
            seed=seed,
            data=state.data,
            code=self.code,
            env=self._env_key(),
        )
        self._begin(stage)
        with self.cache.claim(stage):
            cached = self._build_baseline(stage, state)
        self._end(stage, spec)
        return cached, stage.artifact_sha256

    def _build_baseline(self, stage: StageRecord, state: _SeedState) -> Variant:
        """The baseline's output: from the stage cache, else built, stored and evaluated."""
        seed, splits, spec = state.seed, state.splits, self.recipe.model
        cached = self._cached(stage, state, None)
        if cached is None:
            with tempfile.TemporaryDirectory(prefix="compressgate-baseline-") as scratch:
                with self._timed(stage, "seconds"):
                    try:
                        model = variants.build_baseline(
                            spec,
                            seed,
                            splits,
                            stage,
                            Path(scratch),
                            base=self.base,
                            store=self.store,
                            progress=self.progress,
                        )
                    except CompressgateError:
                        raise
                    except Exception as exc:
                        raise StageError(
                            f"baseline (seed {seed}): {type(exc).__name__}: {exc}",
                            stage=BASELINE,
                        ) from exc
                cached = self._keep(stage, model, state, None, Path(scratch))
        return cached

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
        self.cache.write(stage, artifact)
        return variant

    def _cached(
        self, stage: StageRecord, state: _SeedState, reference: Variant | None
    ) -> Variant | None:
        """The stage's output from an earlier run, re-evaluated if the evaluation changed."""
        artifact = self.cache.restore(stage)
        if artifact is None:
            return None
        assert stage.format is not None
        variant = self._load(artifact, stage.format)
        if self._evaluate(stage, variant, state, reference):
            self.cache.write(stage, artifact)
        return variant

    def _evaluate(
        self, stage: StageRecord, variant: Variant, state: _SeedState, reference: Variant | None
    ) -> bool:
        """Run the recipe's evaluators on a stored variant unless its evaluation (same variant,
        baseline, parent, evaluators, data, code, environment) is already recorded. The variant
        then becomes the parent of the next stage, and the first one the seed's baseline.
        Returns whether it evaluated."""
        subject = variants.subject_of(self.store, stage, variant, reference, self.variants)
        key = cache.key(
            artifact=stage.artifact_sha256,
            baseline=state.baseline.sha256 if state.baseline else None,
            parent=state.parent.sha256 if state.parent else None,
            evaluators=[s.model_dump(mode="json") for s in self.recipe.evaluator_specs()],
            data=state.data,
            code=self.code,
            env=self._env_key(),
        )
        fresh = stage.evaluation_key != key
        if fresh:
            ctx = EvalContext(
                seed=state.seed, stage=stage.name, splits=state.splits, parent=state.parent
            )
            with self._timed(stage, "eval_seconds"):
                results = evaluate_stage(
                    self.recipe.evaluator_specs(),
                    subject,
                    state.baseline,
                    state.splits,
                    ctx,
                    self.plugins,
                )
                stage.evaluations = results
                stage.metrics = flatten(results)
                stage.evaluation_key = key
                variants.record_counts(
                    stage, subject, results.get("size"), self.tests[stage.seed].x
                )
        if state.baseline is None:
            state.baseline = subject
        state.parent = subject
        return fresh

    def _load(self, artifact: Artifact, fmt: str) -> Variant:
        return variants.load_variant(self.store, artifact, fmt, self.base, self.variants)

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


def _own_code_digest() -> str:
    """sha256 over the source of the packages whose code shapes an artifact or its metrics."""

    files: dict[str, str] = {}
    for package in (recipes, evaluators):
        root = Path(str(package.__file__)).parent
        for path in sorted(root.rglob("*.py")):
            name = package.__name__.removeprefix("compressgate.")
            files[f"{name}/{path.relative_to(root)}"] = sha256_file(path)
    here = Path(__file__).parent
    for module in _ENGINE_CODE:
        files[f"registry/run/{module}"] = sha256_file(here / module)
    return digest(files)
