"""`compressgate export TARGET RUN`: a run's records, logged one way to another tool.

`export mlflow` (the optional extra `mlflow`) logs the run to an MLflow tracking server and
registers its approved variant: `compressgate.registry.mlflow_bridge`, imported when the
command runs, so that MLflow costs nothing to the other commands' start-up.
"""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    JSON_OPTION,
    RUN_TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit, say


@click.group("export")
def export_group() -> None:
    """Log a run's records to another tool, one way: the catalog stays the record of truth."""


@export_group.command("mlflow")
@click.argument("run_id", metavar="RUN")
@click.option(
    "--tracking-uri",
    required=True,
    envvar="MLFLOW_TRACKING_URI",
    show_envvar=True,
    metavar="URI",
    help="The MLflow tracking server: http(s)://HOST:PORT, databricks, or a folder "
    "(file:///PATH/mlruns or a path).",
)
@click.option(
    "--registry-uri",
    envvar="MLFLOW_REGISTRY_URI",
    show_envvar=True,
    metavar="URI",
    help="The MLflow model registry [default: the tracking URI].",
)
@click.option("--experiment", help="The MLflow experiment [default: the recipe's name].")
@click.option(
    "--model-name", help="The registered model to add a version to [default: the recipe's name]."
)
@click.option(
    "--variant",
    metavar="SEED/STAGE",
    help="The variant to register (SEED/STAGE or RUN/SEED/STAGE) [default: the final stage of "
    "the first seed].",
)
@click.option(
    "--register/--no-register",
    default=True,
    show_default=True,
    help="Register the variant as a model version (--no-register: the runs only, for a run "
    "of any review).",
)
@click.option(
    "--allow-unapproved",
    is_flag=True,
    help="Register the variant even if it may not be promoted (its run not approved), tagged "
    "with its review.",
)
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def export_mlflow(
    run_id: str,
    tracking_uri: str,
    registry_uri: str | None,
    experiment: str | None,
    model_name: str | None,
    variant: str | None,
    register: bool,
    allow_unapproved: bool,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Log RUN to MLflow: a parent run (recipe parameters, gate decisions, review, catalog
    digests) with a nested run per seed and stage (every metric with its interval as
    METRIC.ci_low and METRIC.ci_high, the ONNX files), and register the final variant as a
    model version tagged with its digests, review and the catalog's head.

    Only a variant compressgate would promote is registered (exit 1 otherwise: see
    --allow-unapproved, --no-register). Every file is hashed against the catalog before
    anything is written (exit 3). Exporting again logs nothing twice: it refreshes the tags
    that change (review, catalog head) and registers what is missing. A file: URI turns on
    MLflow's file store for the export ($MLFLOW_ALLOW_FILE_STORE, unless set). Needs the
    extra: pip install 'compressgate[mlflow]' (exit 5 without it)."""
    from compressgate.registry.mlflow_bridge import ExportOptions, export_run

    options = ExportOptions(
        tracking_uri=tracking_uri,
        registry_uri=registry_uri,
        experiment=experiment,
        model_name=model_name,
        variant=variant,
        register=register,
        allow_unapproved=allow_unapproved,
    )
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        done = export_run(ws, run_id, options)
    if as_json:
        emit(done)
        return
    say(
        f"exported {done.run_id} to MLflow at {done.tracking_uri}, experiment "
        f"{done.experiment!r} (id {done.experiment_id})"
    )
    say(f"  run {done.parent_run_id}  review {done.review}")
    for run in done.runs:
        again = "  (exported before: tags refreshed)" if run.reused else ""
        say(f"    seed {run.seed} {run.stage:<12} run {run.mlflow_run_id}{again}")
    version = done.model_version
    if version is None:
        say("  no model version registered")
    else:
        again = "" if version.created else "  (registered before: tags refreshed)"
        say(
            f"  model {version.name!r} version {version.version} <- {version.variant}, review "
            f"{version.review}{again}"
        )
