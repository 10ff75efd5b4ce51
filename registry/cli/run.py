"""`compressgate run`, `reproduce` and `evaluate`: running a signed recipe, re-running a run to
compare its digests, and measuring a stored variant against a baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    ENVS_OPTION,
    FILE,
    JSON_OPTION,
    RUNNER_KEY_OPTION,
    TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit, metric_table, run_table, stage_line


@click.command("run")
@click.argument("file", type=FILE)
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@click.option("--force", is_flag=True, help="Recompute every stage, ignoring the stage cache.")
@click.option(
    "--isolate",
    is_flag=True,
    help="Run the stages in the environment built from the recipe's lock, as "
    "`environment.isolate: true` does.",
)
@ENVS_OPTION
@RUNNER_KEY_OPTION
@JSON_OPTION
def run(
    file: Path,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    force: bool,
    isolate: bool,
    envs: Path | None,
    runner_key: Path | None,
    as_json: bool,
) -> None:
    """Run a signed recipe: verify it, check the environment, run every stage for every seed.

    Each stage output is stored by sha256, evaluated and recorded in the catalog; a stage whose
    inputs, spec, data, code and environment match an earlier run is reused (--force
    recomputes). Stages run stage by stage across the seeds; each gate is judged when every
    seed has run its stage, and one that fails after an intermediate stage stops the run
    there (status `stopped`). Exit 1 if a gate failed (owners' approvals and waivers are
    `compressgate submit`'s review).

    Isolated (--isolate, or `environment.isolate: true`): the stages and evaluators run in a
    subprocess of a virtual environment built from the recipe's lock, kept under
    ENVS/<lock sha256>/ and reused by every later run with the same lock; this process keeps
    the catalog and the progress. Exit 5 if pip cannot install the lock.

    Under the catalog's trust policy the run is attested by a runner's --key (exit 3 without
    one): a signed statement of its variants, metrics and decisions, recorded with it; and it
    reuses only stage cache entries signed by a runner key of the policy.

    Prints a table, or with --json: run_id, recipe, stages (artifact_sha256, size_bytes,
    params, macs, metrics.accuracy), status, record (the catalog), isolated (lock_sha256,
    path, interpreter, built, prefix).
    """
    from compressgate.registry.cli.progress import RichProgress

    with open_workspace(workspace, catalog=catalog, trust=trust, envs=envs, key=runner_key) as ws:
        summary = ws.run(
            file, force=force, progress=RichProgress(), on_stage=stage_line, isolate=isolate
        )
    if as_json:
        emit(summary)
    else:
        run_table(summary)
    sys.exit(summary.exit_code)


@click.command("reproduce")
@click.argument("run_id")
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@ENVS_OPTION
@JSON_OPTION
def reproduce(
    run_id: str,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    envs: Path | None,
    as_json: bool,
) -> None:
    """Re-run RUN_ID from scratch in a temporary store; compare every artifact and figure.

    Every stage and every evaluation is recomputed (no stage cache). Artifacts are compared by
    digest; measured figures exactly, peak memory within 25% (timings, which a busy machine
    changes, are reported and not judged). An isolated run is
    re-run in the same environment (its lock must have the recorded sha256, exit 3
    otherwise). Exit 3 if any stage's artifact or figure differs, naming the first.
    """
    from compressgate.registry.cli.progress import RichProgress
    from compressgate.registry.kernel.errors import IntegrityError

    with open_workspace(workspace, catalog=catalog, trust=trust, envs=envs) as ws:
        result = ws.reproduce(run_id, progress=RichProgress(), on_stage=stage_line)
    if as_json:
        emit(result)
    else:
        for stage in result.stages:
            mark = "identical" if stage.identical else "DIFFERS"
            recorded, reproduced = stage.recorded_sha256 or "-", stage.reproduced_sha256 or "-"
            click.echo(
                f"seed {stage.seed} · {stage.name}: {mark} ({recorded[:16]} vs {reproduced[:16]}"
                f"; {stage.metrics_checked} figures)"
                + (
                    f"; timings apart, not judged: {'; '.join(stage.timed_apart[:2])}"
                    if stage.timed_apart
                    else ""
                )
            )
    if not result.identical:
        first = next(s for s in result.stages if not s.identical)
        if first.recorded_sha256 != first.reproduced_sha256:
            what = f"gave {first.reproduced_sha256}, the run recorded {first.recorded_sha256}"
        else:
            what = f"measured differently: {'; '.join(first.metrics_differing[:3])}"
        raise IntegrityError(
            f"run {run_id} did not reproduce: stage '{first.name}' (seed {first.seed}) {what}"
        )
    if not as_json:
        figures = sum(s.metrics_checked for s in result.stages)
        click.echo(
            f"run {run_id} reproduced bit for bit: {len(result.stages)} artifact(s) identical, "
            f"{figures} figures agree (every stage and evaluation recomputed)"
        )


@click.command("evaluate")
@click.argument("variant")
@click.option(
    "--against",
    metavar="BASELINE",
    help="The variant to compare with (a sha256 prefix) [default: the baseline of VARIANT's run "
    "and seed].",
)
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="KIND",
    help="Run only this evaluator (repeat for several): accuracy, paired, calibration, "
    "fairness, classes, fidelity, robustness, latency, size.",
)
@WORKSPACE_OPTION
@CATALOG_OPTION
@click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file whose modules the recipe may import [default: trust.yaml beside the "
    "recipe the run recorded].",
)
@JSON_OPTION
def evaluate(
    variant: str,
    against: str | None,
    only: tuple[str, ...],
    workspace: Path | None,
    catalog: str | None,
    trust: Path | None,
    as_json: bool,
) -> None:
    """Measure a stored VARIANT (a prefix of its artifact sha256) against a baseline.

    The variant is found in the catalog and read back from the artifact store;
    its seed's test split is loaded again through the recorded recipe (which must be unchanged:
    exit 3) and the recipe's evaluators run on it. Prints every metric with its interval, or
    with --json: variant, against, metrics{name: estimate, ci_low, ci_high, n, method}, and
    evaluations{kind: full result}. Writes nothing.
    """
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        result = ws.evaluate(variant, against=against, only=only)
    if as_json:
        emit(result)
        return
    click.echo(
        f"{result.stage} {result.variant[:12]} (run {result.run_id}, seed {result.seed}) "
        f"against {result.against_stage} {result.against[:12]} (run {result.against_run_id})"
    )
    metric_table(result.metrics)
