"""The MLflow bridge (`compressgate export mlflow`): a run's records, logged one way to MLflow.

compressgate governs; MLflow is where dashboards are. The bridge copies what the catalog
recorded (read through the `Workspace`, as `report` reads it) into an MLflow tracking server
and model registry. Nothing comes back: the catalog stays the record of truth, and every
MLflow object carries the catalog digests that check it against the catalog.

- one parent MLflow run per compressgate run (`RECIPE vVERSION RUN_ID`): the recipe as
  parameters, each gate's decision and each stage's mean over the seeds as metrics, the review
  and the catalog's identity as tags, and `compressgate/decisions.json`,
  `compressgate/evidence.json` (what `report --format json` prints) and `compressgate/recipe.yaml`
  as artifacts;
- one nested child run per variant (seed, stage): every evaluator metric as `<metric>`,
  `<metric>.ci_low` and `<metric>.ci_high`, the stage's spec as parameters, the variant's digests
  as tags, `compressgate/metrics.json` (each estimate in full), and under `model/` the
  artifact's files, for an ONNX variant and for the one registered, read from the store and
  hashed against the recorded digest first;
- one model version of the registered model (the recipe's name), for the variant the caller
  names or the final stage of the first seed, tagged with its digests, review and catalog head;
  only if compressgate would let that variant be promoted (`allow_unapproved` registers it
  anyway, tagged with its review).

Before anything is written, the review is checked and every artifact to upload is hashed:
a refused export writes nothing to MLflow. An export is idempotent: MLflow runs are found
again by their `compressgate.run_id` tag (`compressgate.export: complete` once all of a run
is logged), the model version by its `compressgate.variant` tag; exporting again refreshes the
tags that can change (review, gate states, catalog head) and logs nothing twice.

MLflow is the optional extra `mlflow` (mlflow-skinny): imported here, on first use, never when
the command line starts. docs/mlflow.md has the mapping table.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import json
import os
import re
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict

from compressgate.registry.kernel.errors import (
    CompressgateError,
    Conflict,
    EnvironmentMismatch,
    IntegrityError,
    ManifestError,
    NotFoundError,
    Refused,
)

if TYPE_CHECKING:
    from compressgate.evaluators.results import Estimate
    from compressgate.recipes.manifest import Recipe
    from compressgate.registry.catalog.records import RunRecord, StageRecord
    from compressgate.registry.catalog.store import Artifact, ArtifactStore
    from compressgate.registry.workspace import Workspace
    from compressgate.reports.model import ReportData

EXTRA_HINT = "pip install 'compressgate[mlflow]'"
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
EXPORT_FORMAT = "1"  # `compressgate.export_format`: bumped if the mapping below changes
COMPLETE = "complete"  # `compressgate.export`, set once all of an MLflow run is logged
MODEL_PATH = "model"  # where a variant's files go in its MLflow run (`runs:/ID/model`)
DOCUMENTS_PATH = "compressgate"

# MLflow's limits (mlflow.utils.validation): a key of 250 characters, a parameter value of 6000,
# a tag value of 8000; a batch of 100 parameters, 100 tags and 1000 metrics.
KEY_LIMIT = 250
PARAM_LIMIT = 6000
TAG_LIMIT = 8000
BATCH_PARAMS = 100
BATCH_TAGS = 100
BATCH_METRICS = 1000
# What a key may hold on every platform MLflow runs on (no colon: Windows refuses it).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.\- ]")
# Tracking URIs whose store is a database: MLflow's SQLAlchemy store, which needs alembic.
_DATABASES = ("sqlite", "postgresql", "mysql", "mssql")
# Tracking and registry URIs that are a word, not a path: Databricks' (its default profile).
_PROFILES = ("databricks", "databricks-uc")


# --- what the export returns (its `--json`) ----------------------------------------------------


class _Result(BaseModel):
    model_config = ConfigDict(frozen=True)


class ExportedRun(_Result):
    """One variant's MLflow run."""

    seed: int
    stage: str
    variant: str
    mlflow_run_id: str
    reused: bool  # found from an earlier export: only its tags were refreshed


class ExportedVersion(_Result):
    """The model version registered for a variant."""

    name: str
    version: int
    variant: str
    review: str
    created: bool  # False: registered by an earlier export; its tags were refreshed


class MlflowExport(_Result):
    """What `export mlflow` did: where, the parent run, each variant's run, the model version."""

    run_id: str
    tracking_uri: str
    registry_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    review: str
    runs: list[ExportedRun]
    model_version: ExportedVersion | None


@dataclass(frozen=True)
class ExportOptions:
    """Where to export and what to register (`compressgate export mlflow`'s options)."""

    tracking_uri: str
    registry_uri: str | None = None  # default: the tracking URI
    experiment: str | None = None  # default: the recipe's name
    model_name: str | None = None  # default: the recipe's name
    variant: str | None = None  # SEED/STAGE or RUN/SEED/STAGE; default: first seed, last stage
    register: bool = True
    allow_unapproved: bool = False


# --- the plan: everything to log, computed before MLflow is touched -----------------------------


@dataclass(frozen=True)
class Logged:
    """What one MLflow run holds."""

    name: str
    tags: dict[str, str]
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    documents: dict[str, bytes] = field(default_factory=dict)  # compressgate/NAME -> bytes


@dataclass(frozen=True)
class VariantPlan:
    seed: int
    stage: str
    variant: str
    logged: Logged
    artifact: Artifact | None  # its files go under model/, hashed first


@dataclass(frozen=True)
class Registration:
    name: str
    variant: str
    review: str
    tags: dict[str, str]
    description: str


@dataclass(frozen=True)
class Plan:
    run_id: str
    experiment: str
    review: str
    started_ms: int
    finished_ms: int
    status: str  # FINISHED, or FAILED for a failed compressgate run
    parent: Logged
    variants: list[VariantPlan]
    registration: Registration | None


def export_run(ws: Workspace, run_id: str, options: ExportOptions) -> MlflowExport:
    """Log run `run_id` to MLflow (see the module docstring) and return what was done.

    Exit 5 without MLflow installed, or for a database tracking URI without MLflow's database
    store; 1 when the variant may not be registered (its run not approved) unless
    `allow_unapproved`; 3 when an artifact's bytes no longer hash to the recorded digest; 4 for
    an unknown run or variant, or an MLflow that does not answer; 6 when MLflow holds the run
    twice (two exports at once)."""
    mlflow = _mlflow()
    tracking = tracking_uri(options.tracking_uri)
    registry = tracking
    if options.registry_uri:
        registry = tracking_uri(options.registry_uri, option="--registry-uri")
    plan = plan_export(ws, run_id, options)
    _check_artifacts(ws.store, plan)
    with _file_store_allowed(tracking, registry):
        try:
            client = mlflow.MlflowClient(tracking_uri=tracking, registry_uri=registry)
            return _write(mlflow, client, ws.store, plan, tracking, registry)
        except mlflow.MlflowException as exc:
            raise _failed(exc, safe_uri(tracking)) from None
        except OSError as exc:  # a file store's folder that cannot be written
            raise NotFoundError(
                f"MLflow at {safe_uri(tracking)} cannot be written: {exc}",
                hint="check the folder's permissions and free space",
            ) from None


# --- MLflow, imported on first use ------------------------------------------------------------


@dataclass(frozen=True)
class _MLflow:
    """The few MLflow names the bridge uses. Imported by name (`importlib`), so that neither the
    command line nor mypy reads MLflow's thousand modules until an export runs."""

    MlflowClient: Any
    MlflowException: Any
    Metric: Any
    Param: Any
    RunTag: Any


def _mlflow() -> _MLflow:
    try:
        tracking = importlib.import_module("mlflow.tracking")
        exceptions = importlib.import_module("mlflow.exceptions")
        entities = importlib.import_module("mlflow.entities")
    except ImportError as exc:
        raise EnvironmentMismatch(
            f"MLflow is not installed: `export mlflow` needs the optional extra `mlflow` ({exc})",
            hint=EXTRA_HINT,
        ) from None
    return _MLflow(
        MlflowClient=tracking.MlflowClient,
        MlflowException=exceptions.MlflowException,
        Metric=entities.Metric,
        Param=entities.Param,
        RunTag=entities.RunTag,
    )


def tracking_uri(uri: str, *, option: str = "--tracking-uri") -> str:
    """`uri` as MLflow is given it: a plain path becomes a `file:` URI (absolute). A database URI
    is refused up front (exit 5) unless MLflow's database store can load: mlflow-skinny, the
    extra, has no alembic."""
    uri = uri.strip()
    if not uri:
        raise ManifestError(f"{option} is empty: give file:///PATH, http://HOST:PORT, …")
    scheme = urlsplit(uri).scheme.lower()
    if uri in _PROFILES:
        return uri
    if len(scheme) <= 1:  # no scheme (a drive letter is one character): a local folder
        return Path(uri).expanduser().resolve().as_uri()
    if scheme.split("+")[0] in _DATABASES and importlib.util.find_spec("alembic") is None:
        raise EnvironmentMismatch(
            f"{option} {safe_uri(uri)} is a database: MLflow's database store needs the "
            "full `mlflow` package (with alembic), and compressgate's extra installs "
            "mlflow-skinny",
            hint="pip install mlflow (the full package); or use a tracking server "
            "(http://HOST:5000) or a folder (file:///PATH/mlruns)",
        )
    return uri


def safe_uri(uri: str) -> str:
    """`uri` with a password in it masked, for messages and results."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username or ''}:***@{host}"))


def _is_file_store(uri: str) -> bool:
    return urlsplit(uri).scheme.lower() == "file"


@contextlib.contextmanager
def _file_store_allowed(*uris: str) -> Iterator[None]:
    """MLflow 3 refuses its file store ("maintenance mode") unless $MLFLOW_ALLOW_FILE_STORE is
    true. A `file:` URI given on purpose is allowed for the export, unless the variable is set
    (then it decides); the variable is put back as it was after."""
    if os.environ.get(FILE_STORE_ENV) is not None or not any(_is_file_store(u) for u in uris):
        yield
        return
    os.environ[FILE_STORE_ENV] = "true"
    try:
        yield
    finally:
        os.environ.pop(FILE_STORE_ENV, None)


def _failed(exc: Any, uri: str) -> CompressgateError:
    """An MLflow error as ours, by its error code: 6 for a lost race, 1 for a refusal, 2 for
    what MLflow found invalid, else 4 (a server that does not answer, a missing resource)."""
    code = str(getattr(exc, "error_code", ""))
    message = " ".join(str(getattr(exc, "message", exc)).split())
    said = f"MLflow at {uri}: {message}"
    if code in ("RESOURCE_ALREADY_EXISTS", "ABORTED"):
        return Conflict(said)
    if code in ("PERMISSION_DENIED", "UNAUTHENTICATED"):
        return Refused(said, hint="check $MLFLOW_TRACKING_TOKEN or the server's permissions")
    if code in ("INVALID_PARAMETER_VALUE", "BAD_REQUEST", "INVALID_STATE"):
        return ManifestError(said)
    return NotFoundError(
        said,
        hint="check the tracking URI and that the server answers (MLflow retries an "
        "unreachable server for minutes: $MLFLOW_HTTP_REQUEST_MAX_RETRIES=0 fails fast)",
    )


# --- the mapping: catalog records -> MLflow keys and values ------------------------------------


def key_part(name: str) -> str:
    """`name` as one part of an MLflow key: letters, digits, `_ . - ` and space kept, anything
    else `_` (`/` too: the bridge's own keys use it to group)."""
    part = _UNSAFE.sub("_", name)
    return "_" if part in ("", ".", "..") else part


def _bounded(key: str) -> str:
    """A key within MLflow's 250 characters: a longer one is cut and given its hash."""
    if len(key) <= KEY_LIMIT:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:12]
    return f"{key[: KEY_LIMIT - 13]}~{digest}"


def metric_values(metrics: Mapping[str, Estimate], prefix: str = "") -> dict[str, float]:
    """Every metric as `<prefix><metric>` (its estimate), `….ci_low` and `….ci_high`."""
    values: dict[str, float] = {}
    for name in sorted(metrics):
        found = metrics[name]
        key = _bounded(prefix + key_part(name))
        values[key] = float(found.estimate)
        values[f"{key}.ci_low"] = float(found.ci_low)
        values[f"{key}.ci_high"] = float(found.ci_high)
    return values


def param_text(value: Any, *, limit: int = PARAM_LIMIT) -> str:
    """A parameter's value as MLflow stores it: a string as is, anything else as JSON; cut to
    `limit` characters with a note of its length and sha256 (the whole recipe is an artifact)."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    if len(text) <= limit:
        return text
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    note = (
        f"… [cut: {len(text)} characters, sha256 {digest}; whole in {DOCUMENTS_PATH}/recipe.yaml]"
    )
    return text[: limit - len(note)] + note


def flatten(prefix: str, value: Any) -> dict[str, str]:
    """A spec as parameters: `prefix.field` (nested mappings dotted), lists as JSON, None left
    out."""
    found: dict[str, str] = {}
    if isinstance(value, Mapping) and value:
        for name, inner in value.items():
            found.update(flatten(f"{prefix}.{key_part(str(name))}", inner))
    elif value is not None:
        found[_bounded(prefix)] = param_text(value)
    return found


def _ms(timestamp: str | None) -> int | None:
    if not timestamp:
        return None
    return int(datetime.fromisoformat(timestamp).timestamp() * 1000)


def _compressgate_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("compressgate")
    except PackageNotFoundError:
        return "unknown"


def plan_export(ws: Workspace, run_id: str, options: ExportOptions) -> Plan:
    """Everything the export logs, from the run's report data (each record read once), and the
    check that the variant may be registered (exit 1 otherwise, before MLflow is touched)."""
    from compressgate.recipes.load import parse_recipe
    from compressgate.registry.catalog.records import RunRecord

    data = ws.report_data(run_id)
    run = RunRecord.model_validate(data.run)
    if run.status == "running" or run.finished_at is None:
        raise Refused(
            f"run {run_id} has not finished (status {run.status}): there is nothing final to "
            "export yet",
            hint="export it once it has finished",
        )
    recipe, _ = parse_recipe(data.recipe.content.encode("utf-8"), f"run {run_id}'s recipe")
    actor = ws.catalog().run_info(run_id).actor
    order = {name: i for i, name in enumerate(["baseline", *(s.name for s in recipe.stages)])}
    done = sorted(
        (s for s in run.stages if s.status == "done" and s.artifact_sha256),
        key=lambda s: (run.seeds.index(s.seed), order.get(s.name, len(order))),
    )
    if not done:
        raise NotFoundError(f"run {run_id} has no finished stage to export")
    identity = _identity(ws, run, data)
    specs = {"baseline": flatten("model", recipe.model.model_dump(mode="json"))}
    for stage in recipe.stages:
        dumped = stage.model_dump(mode="json")
        dumped.pop("name", None)
        specs[stage.name] = flatten(f"stage.{key_part(stage.name)}", dumped)
    chosen = _chosen(run, done, options.variant)
    registration = None
    if options.register:
        registration = _registration(ws, run, data, chosen, identity, options)
    return Plan(
        run_id=run_id,
        experiment=options.experiment or run.recipe.name,
        review=data.review.status,
        started_ms=_ms(run.started_at) or 0,
        finished_ms=_ms(run.finished_at) or 0,
        status="FAILED" if run.status == "failed" else "FINISHED",
        parent=_parent(run, recipe, data, specs, identity, actor),
        variants=[
            _variant_plan(run, stage, specs.get(stage.name, {}), identity, actor, chosen)
            for stage in done
        ],
        registration=registration,
    )


def _identity(ws: Workspace, run: RunRecord, data: ReportData) -> dict[str, str]:
    """The tags every MLflow object of the export carries: enough to find the run in the
    catalog and check it there."""
    from compressgate.registry.catalog.repository import safe_url

    policy = "none"  # the unsigned regime: no policy in force when the run began
    if data.governance is not None and data.governance.policy_version is not None:
        policy = str(data.governance.policy_version)
    return {
        "compressgate.run_id": run.run_id,
        "compressgate.recipe": run.recipe.name,
        "compressgate.recipe_version": str(run.recipe.version),
        "compressgate.recipe_sha256": run.recipe.sha256,
        "compressgate.review": data.review.status,
        "compressgate.policy_version": policy,
        "compressgate.catalog": safe_url(ws.catalog_url),
        "compressgate.catalog_head": data.chain.head_sha256,
        "compressgate.catalog_size": str(data.chain.size),
    }


def _parent(
    run: RunRecord,
    recipe: Recipe,
    data: ReportData,
    specs: dict[str, dict[str, str]],
    identity: dict[str, str],
    actor: str,
) -> Logged:
    """The parent run: the whole recipe as parameters, each stage's mean over the seeds and
    each gate's decision as metrics, the review and the catalog's identity as tags."""
    from compressgate.reports.render import render

    params = {
        "recipe.name": run.recipe.name,
        "recipe.version": str(run.recipe.version),
        "recipe.sha256": run.recipe.sha256,
        "seeds": param_text(list(run.seeds)),
        "lock_sha256": data.lock_sha256,
        "environment_sha256": data.environment_sha256,
        **flatten("data", recipe.data.model_dump(mode="json")),
    }
    for spec in specs.values():
        params.update(spec)
    for evaluator in recipe.evaluator_specs():
        dumped = evaluator.model_dump(mode="json")
        params.update(flatten(f"evaluator.{key_part(str(dumped.pop('kind')))}", dumped))
    for gate in recipe.gates:
        dumped = gate.model_dump(mode="json")
        params.update(flatten(f"gate.{key_part(str(dumped.pop('name')))}", dumped))
    return Logged(
        name=f"{run.recipe.name} v{run.recipe.version} {run.run_id}",
        tags={
            **identity,
            "compressgate.role": "run",
            "compressgate.run_status": run.status,
            "compressgate.lock_sha256": data.lock_sha256,
            "compressgate.environment_sha256": data.environment_sha256,
            "compressgate.signers": ", ".join(s.owner for s in data.recipe.signers),
            "compressgate.version": _compressgate_version(),
            "compressgate.export_format": EXPORT_FORMAT,
            **_gate_tags(data),
            "mlflow.user": actor,
            "mlflow.note.content": _note(data, recipe.metadata.description),
        },
        params=params,
        metrics={**_aggregates(run), **_gate_metrics(data)},
        documents={
            "decisions.json": _json(data.review.model_dump(mode="json")),
            "evidence.json": render(data, "json"),  # what `report RUN --format json` prints
            "recipe.yaml": data.recipe.content.encode("utf-8"),
        },
    )


def _chosen(run: RunRecord, done: Sequence[StageRecord], ref: str | None) -> StageRecord:
    """The variant to register: `ref` (SEED/STAGE or RUN/SEED/STAGE), else the first seed's
    final finished stage."""
    if ref is None:
        first = [s for s in done if s.seed == run.seeds[0]] or list(done)
        return first[-1]
    parts = ref.split("/")
    if len(parts) == 3 and parts[0] != run.run_id:
        raise ManifestError(
            f"--variant {ref} is not a variant of run {run.run_id}",
            hint=f"give SEED/STAGE, or {run.run_id}/SEED/STAGE",
        )
    for stage in done:
        if "/".join(parts[-2:]) == f"{stage.seed}/{stage.name}":
            return stage
    known = ", ".join(f"{s.seed}/{s.name}" for s in done)
    raise NotFoundError(
        f"run {run.run_id} has no finished variant {ref}", hint=f"its variants: {known}"
    )


def _registration(
    ws: Workspace,
    run: RunRecord,
    data: ReportData,
    chosen: StageRecord,
    identity: dict[str, str],
    options: ExportOptions,
) -> Registration:
    """The model version of `chosen`, if compressgate would let it be promoted (its run's review
    approved, its stage judged by every gate, its seed passing): exit 1 otherwise, unless
    `allow_unapproved`, which registers it tagged with its review and why it may not be."""
    variant = f"{run.run_id}/{chosen.seed}/{chosen.name}"
    shown = ws.show_variant(variant)
    review = data.review.status
    if not shown.promotable and not options.allow_unapproved:
        raise Refused(
            f"{variant} is not registered in MLflow: {shown.problem}",
            hint="--allow-unapproved registers it anyway, tagged compressgate.review="
            f"{review}; --no-register exports the runs without a model version",
        )
    tags = {
        **identity,
        "compressgate.variant": variant,
        "compressgate.seed": str(chosen.seed),
        "compressgate.stage": chosen.name,
        "compressgate.format": str(chosen.format),
        "compressgate.artifact_sha256": str(chosen.artifact_sha256),
        "compressgate.promotable": "true" if shown.promotable else "false",
    }
    if shown.problem:
        tags["compressgate.not_promotable_because"] = param_text(shown.problem, limit=TAG_LIMIT)
    description = (
        f"compressgate variant {variant} (recipe {run.recipe.name} v{run.recipe.version}, "
        f"review {review}), artifact sha256 {chosen.artifact_sha256}. Exported one way from "
        f"the compressgate catalog, the record of truth: `compressgate catalog show {variant}` "
        "and `compressgate audit verify` check it there."
    )
    return Registration(
        name=options.model_name or run.recipe.name,
        variant=variant,
        review=review,
        tags=tags,
        description=description,
    )


def _variant_plan(
    run: RunRecord,
    stage: StageRecord,
    spec: dict[str, str],
    identity: dict[str, str],
    actor: str,
    chosen: StageRecord,
) -> VariantPlan:
    from compressgate.registry.catalog.store import Artifact

    variant = f"{run.run_id}/{stage.seed}/{stage.name}"
    tags = {
        **identity,
        "compressgate.role": "variant",
        "compressgate.variant": variant,
        "compressgate.seed": str(stage.seed),
        "compressgate.stage": stage.name,
        "compressgate.kind": stage.kind,
        "compressgate.format": str(stage.format),
        "compressgate.artifact_sha256": str(stage.artifact_sha256),
        "compressgate.parent_sha256": stage.parent_sha256 or "",
        "compressgate.spec_sha256": stage.spec_sha256 or "",
        "compressgate.cached": "true" if stage.cached else "false",
        "compressgate.export_format": EXPORT_FORMAT,
        "mlflow.user": actor,
    }
    if stage.size_bytes is not None:
        tags["compressgate.size_bytes"] = str(stage.size_bytes)
    upload = stage.format == "onnx" or stage is chosen
    artifact = None
    if upload:
        try:
            artifact = Artifact.from_dict({"sha256": stage.artifact_sha256, "files": stage.files})
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError(
                f"variant {variant} names no usable file list ({type(exc).__name__}: {exc})",
                hint="`compressgate audit verify` finds the changed record",
            ) from None
    estimates = {name: e.model_dump(mode="json") for name, e in sorted(stage.metrics.items())}
    return VariantPlan(
        seed=stage.seed,
        stage=stage.name,
        variant=variant,
        logged=Logged(
            name=f"{stage.name} seed {stage.seed}",
            tags=tags,
            params={"seed": str(stage.seed), "stage": stage.name, **spec},
            metrics=metric_values(stage.metrics),
            documents={"metrics.json": _json(estimates)},
        ),
        artifact=artifact,
    )


def _aggregates(run: RunRecord) -> dict[str, float]:
    """Each stage's metrics over the seeds (mean and t interval), as `<stage>/<metric>`."""
    from compressgate.evaluators.results import Estimate

    values: dict[str, float] = {}
    for stage, metrics in run.aggregate.items():
        means = {
            name: Estimate(
                estimate=a.mean, ci_low=a.ci_low, ci_high=a.ci_high, n=a.seeds, method=a.method
            )
            for name, a in metrics.items()
        }
        values.update(metric_values(means, prefix=f"{key_part(stage)}/"))
    return values


def _gate_metrics(data: ReportData) -> dict[str, float]:
    """Each gate's decision over the seeds: `gate_decision/<gate>` (the estimate its seeds
    policy judged), its interval and its threshold. A stage's name has no `_`: no stage's
    `<stage>/<metric>` can be one of these."""
    values: dict[str, float] = {}
    for review in data.review.gates:
        decision = review.decision
        key = _bounded(f"gate_decision/{key_part(decision.gate)}")
        for suffix, value in (
            ("", decision.estimate),
            (".ci_low", decision.ci_low),
            (".ci_high", decision.ci_high),
            (".threshold", decision.threshold),
        ):
            if value is not None:
                values[key + suffix] = float(value)
    return values


def _gate_tags(data: ReportData) -> dict[str, str]:
    """Each gate's verdict, state (sign-offs counted), owner and evidence digest."""
    tags: dict[str, str] = {}
    for review in data.review.gates:
        decision = review.decision
        prefix = _bounded(f"compressgate.gate.{key_part(decision.gate)}")
        tags[f"{prefix}.verdict"] = decision.verdict
        tags[f"{prefix}.state"] = review.state
        tags[f"{prefix}.owner"] = decision.owner
        tags[f"{prefix}.evidence_sha256"] = decision.evidence_sha256
    return tags


def _note(data: ReportData, description: str) -> str:
    """The parent run's description in MLflow (Markdown)."""
    reasons = "".join(f"\n- {r}" for r in data.review.reasons)
    return param_text(
        f"compressgate run `{data.review.run_id}` of recipe `{data.recipe.name}` "
        f"v{data.recipe.version}: review **{data.review.status}**.{reasons}\n\n"
        f"{' '.join(description.split())}\n\n"
        "Exported one way from the compressgate catalog, the record of truth (chain head "
        f"`{data.chain.head_sha256}` at size {data.chain.size}): `compressgate report "
        f"{data.review.run_id}` shows it there.",
        limit=TAG_LIMIT,
    )


def _json(value: Any) -> bytes:
    return (json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8")


# --- before anything is written: every artifact's bytes ------------------------------------------


def _check_artifacts(store: ArtifactStore, plan: Plan) -> None:
    """Hash every file to upload against its recorded digest (exit 3 on the first that does not
    match, or is missing), before MLflow is touched; they are hashed again as they are copied
    for upload."""
    from compressgate.registry.kernel.digests import sha256_file

    for variant in plan.variants:
        if variant.artifact is None:
            continue
        for stored in variant.artifact.files:
            path = store.blob_path(stored.sha256)
            what = f"variant {variant.variant}'s file {stored.name} ({path})"
            if not path.is_file():
                raise IntegrityError(
                    f"{what} is missing from the artifact store: nothing was exported",
                    hint="restore it from a backup; `compressgate audit verify` checks every "
                    "artifact",
                )
            if sha256_file(path) != stored.sha256:
                raise IntegrityError(
                    f"{what} no longer hashes to its recorded digest {stored.sha256[:16]}…: its "
                    "bytes changed; nothing was exported",
                    hint="restore it from a backup; `compressgate audit verify` checks every "
                    "artifact",
                )


# --- writing to MLflow ---------------------------------------------------------------------------


def _write(
    mlflow: _MLflow,
    client: Any,
    store: ArtifactStore,
    plan: Plan,
    tracking: str,
    registry: str,
) -> MlflowExport:
    experiment_id = _experiment(client, plan.experiment)
    found = _earlier(client, experiment_id, plan.run_id)
    logged = plan.parent
    earlier = found.get(None)
    if earlier is None:
        parent = _new_run(client, experiment_id, plan.started_ms, logged)
    else:
        parent = str(earlier.info.run_id)
    parent_done = earlier is not None and _complete(earlier)
    runs = []
    for variant in plan.variants:
        child, reused = _variant_run(
            mlflow, client, store, experiment_id, parent, plan, variant, found.get(variant.variant)
        )
        runs.append(
            ExportedRun(
                seed=variant.seed,
                stage=variant.stage,
                variant=variant.variant,
                mlflow_run_id=child,
                reused=reused,
            )
        )
    if parent_done:  # its tags only: the review, the gates' states and the head move on
        _log(mlflow, client, parent, tags=logged.tags)
    else:
        _log(
            mlflow,
            client,
            parent,
            metrics=logged.metrics,
            params=logged.params,
            tags=logged.tags,
            timestamp=plan.finished_ms,
        )
    # The review (decisions, sign-offs) and the evidence change as owners sign: refreshed.
    _documents(client, parent, logged.documents)
    if not parent_done:
        client.set_terminated(parent, status=plan.status, end_time=plan.finished_ms)
        client.set_tag(parent, "compressgate.export", COMPLETE)
    version = None
    if plan.registration is not None:
        child = next(r.mlflow_run_id for r in runs if r.variant == plan.registration.variant)
        version = _register(mlflow, client, plan.registration, child)
    return MlflowExport(
        run_id=plan.run_id,
        tracking_uri=safe_uri(tracking),
        registry_uri=safe_uri(registry),
        experiment=plan.experiment,
        experiment_id=experiment_id,
        parent_run_id=parent,
        review=plan.review,
        runs=runs,
        model_version=version,
    )


def _complete(run: Any) -> bool:
    return bool(run.data.tags.get("compressgate.export") == COMPLETE)


def _new_run(client: Any, experiment_id: str, started_ms: int, logged: Logged) -> str:
    tags = {k: param_text(v, limit=TAG_LIMIT) for k, v in logged.tags.items()}
    created = client.create_run(
        experiment_id, start_time=started_ms, tags=tags, run_name=logged.name
    )
    return str(created.info.run_id)


def _variant_run(
    mlflow: _MLflow,
    client: Any,
    store: ArtifactStore,
    experiment_id: str,
    parent: str,
    plan: Plan,
    variant: VariantPlan,
    earlier: Any,
) -> tuple[str, bool]:
    """The variant's MLflow run and whether an earlier export made it. Found complete, its tags
    are refreshed (and its model files uploaded if a registration now needs them); found
    incomplete (an interrupted export), it is deleted and logged again."""
    if earlier is not None and _complete(earlier):
        child = str(earlier.info.run_id)
        _log(mlflow, client, child, tags=variant.logged.tags)
        if variant.artifact is not None and not client.list_artifacts(child, MODEL_PATH):
            _upload_model(client, store, child, variant)
        return child, True
    if earlier is not None:
        client.delete_run(earlier.info.run_id)
    logged = variant.logged
    tags = {**logged.tags, "mlflow.parentRunId": parent}
    child = _new_run(client, experiment_id, plan.started_ms, Logged(logged.name, tags))
    _log(
        mlflow,
        client,
        child,
        metrics=logged.metrics,
        params=logged.params,
        timestamp=plan.finished_ms,
    )
    _documents(client, child, logged.documents)
    if variant.artifact is not None:
        _upload_model(client, store, child, variant)
    client.set_terminated(child, status="FINISHED", end_time=plan.finished_ms)
    client.set_tag(child, "compressgate.export", COMPLETE)
    return child, False


def _experiment(client: Any, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return str(client.create_experiment(name, tags={"compressgate.managed": "true"}))
    if found.lifecycle_stage != "active":
        raise NotFoundError(
            f"MLflow's experiment {name!r} is deleted",
            hint="restore it in MLflow, or give another --experiment",
        )
    return str(found.experiment_id)


def _earlier(client: Any, experiment_id: str, run_id: str) -> dict[str | None, Any]:
    """The MLflow runs an earlier export of `run_id` made in the experiment, by variant (None:
    the parent). Two of one (two exports raced) is a conflict for a person to settle."""
    query = f"tags.`compressgate.run_id` = '{run_id}'"
    found: dict[str | None, Any] = {}
    token = None
    while True:
        page = client.search_runs([experiment_id], filter_string=query, page_token=token)
        for run in page:
            tags = run.data.tags
            what = (
                tags.get("compressgate.variant")
                if tags.get("compressgate.role") == "variant"
                else None
            )
            if what in found:
                raise Conflict(
                    f"MLflow holds run {run_id} twice (MLflow runs {found[what].info.run_id} and "
                    f"{run.info.run_id}{'' if what is None else ', variant ' + what}): two exports "
                    "ran at once",
                    hint="delete one of them in MLflow (with its nested runs), then export again",
                )
            found[what] = run
        token = page.token
        if not token:
            return found


def _log(
    mlflow: _MLflow,
    client: Any,
    run: str,
    *,
    metrics: Mapping[str, float] | None = None,
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
    timestamp: int = 0,
) -> None:
    """Log in batches within MLflow's limits; metrics at step 0."""
    metric = [mlflow.Metric(k, v, timestamp, 0) for k, v in (metrics or {}).items()]
    param = [mlflow.Param(k, v) for k, v in (params or {}).items()]
    tag = [mlflow.RunTag(k, param_text(v, limit=TAG_LIMIT)) for k, v in (tags or {}).items()]
    for start in range(0, len(metric), BATCH_METRICS):
        client.log_batch(run, metrics=metric[start : start + BATCH_METRICS])
    for start in range(0, len(param), BATCH_PARAMS):
        client.log_batch(run, params=param[start : start + BATCH_PARAMS])
    for start in range(0, len(tag), BATCH_TAGS):
        client.log_batch(run, tags=tag[start : start + BATCH_TAGS])


def _documents(client: Any, run: str, documents: Mapping[str, bytes]) -> None:
    with tempfile.TemporaryDirectory(prefix="cg-mlflow-") as tmp:
        folder = Path(tmp) / DOCUMENTS_PATH
        folder.mkdir()
        for name, body in documents.items():
            (folder / name).write_bytes(body)
        client.log_artifacts(run, str(folder), DOCUMENTS_PATH)


def _upload_model(client: Any, store: ArtifactStore, run: str, variant: VariantPlan) -> None:
    """The variant's files under `model/`, each hashed again as it is copied out of the store
    (exit 3 if it changed since the check)."""
    assert variant.artifact is not None
    with tempfile.TemporaryDirectory(prefix="cg-mlflow-") as tmp:
        folder = Path(tmp) / MODEL_PATH
        store.materialize(variant.artifact, folder)
        client.log_artifacts(run, str(folder), MODEL_PATH)


def _register(
    mlflow: _MLflow, client: Any, registration: Registration, run: str
) -> ExportedVersion:
    """The model version of the variant: found again by its `compressgate.variant` tag (its tags
    refreshed), else created from `runs:/RUN/model`."""
    name = registration.name
    try:
        client.create_registered_model(
            name,
            tags={"compressgate.recipe": registration.tags["compressgate.recipe"]},
            description="Registered by compressgate (`compressgate export mlflow`); the "
            "compressgate catalog is the record of truth.",
        )
    except mlflow.MlflowException as exc:
        if str(getattr(exc, "error_code", "")) != "RESOURCE_ALREADY_EXISTS":
            raise
    escaped = name.replace("'", "\\'")
    query = f"name = '{escaped}' and tags.`compressgate.variant` = '{registration.variant}'"
    earlier = sorted(client.search_model_versions(query), key=lambda v: int(v.version))
    if earlier:
        version = earlier[0]
        recorded = version.tags.get("compressgate.artifact_sha256")
        wanted = registration.tags["compressgate.artifact_sha256"]
        if recorded != wanted:
            raise IntegrityError(
                f"MLflow's {name} version {version.version} says {registration.variant} is "
                f"artifact {recorded}, and the catalog says {wanted}",
                hint="the catalog is the record of truth: delete that version in MLflow, then "
                "export again",
            )
        for key, value in registration.tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        for key in version.tags:  # what no longer holds (`not_promotable_because`, once approved)
            if key.startswith("compressgate.") and key not in registration.tags:
                client.delete_model_version_tag(name, version.version, key)
        client.update_model_version(name, version.version, description=registration.description)
        created = False
    else:
        version = client.create_model_version(
            name,
            f"runs:/{run}/{MODEL_PATH}",
            run_id=run,
            tags=registration.tags,
            description=registration.description,
        )
        created = True
    return ExportedVersion(
        name=name,
        version=int(version.version),
        variant=registration.variant,
        review=registration.review,
        created=created,
    )
