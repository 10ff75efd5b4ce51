"""Sweeps: `compressgate sweep run | status | show | report | propose`.

A sweep searches over a signed recipe's fields for the variants that pass every gate and the
Pareto frontier of their objectives; it proposes a recipe, which people sign and submit. `status`
and `show` are read commands: they read the catalog only (no torch).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    DIR,
    FILE,
    JSON_OPTION,
    RUNNER_KEY_OPTION,
    TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit, say


@click.group("sweep")
def sweep_group() -> None:
    """Search a recipe's fields for the smallest, fastest variants that pass every gate."""


@sweep_group.command("run")
@click.argument("file", type=FILE)
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="local: worker processes on this machine; ray: tasks on a Ray cluster.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Trials at once (local: default the machine's cores; ray: the CPUs of a local "
    "cluster started here).",
)
@click.option(
    "--address",
    default=None,
    metavar="ADDR",
    help="An existing Ray cluster (e.g. ray://head:10001 or auto); default: start a local one.",
)
@click.option("--force", is_flag=True, help="Recompute every stage, ignoring the stage cache.")
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@RUNNER_KEY_OPTION
@JSON_OPTION
def run(
    file: Path,
    backend: str,
    workers: int | None,
    address: str | None,
    force: bool,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    runner_key: Path | None,
    as_json: bool,
) -> None:
    """Run the signed sweep FILE: its trials, the frontier and the variant it chooses.

    The sweep's signature and its base recipe's are checked first (exit 3). Trials are ranked on
    the selection split carved from the training data, never on the test split; each is a run
    in the catalog, linked to the sweep. A trial that crashes is recorded as such and the sweep
    goes on; a killed worker's trial runs again; a killed sweep, run again with the same file,
    resumes from its recorded trials. Exit 0 when a variant was chosen, 1 when none passed.
    """
    if address is not None and backend != "ray":
        raise click.UsageError("--address is for --backend ray")
    lines = None if as_json else (lambda text: say(text, err=True))
    with open_workspace(workspace, catalog=catalog, trust=trust, key=runner_key) as ws:
        result = ws.sweep_run(
            file, backend=backend, workers=workers, address=address, force=force, say=lines
        )
    if as_json:
        emit(result)
    else:
        _table(result)
    sys.exit(0 if result.chosen is not None else 1)


@sweep_group.command("status")
@click.argument("sweep_id", required=False)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def status(
    sweep_id: str | None, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """The sweeps recorded (newest first), or SWEEP_ID's progress."""
    with open_workspace(workspace, catalog=catalog) as ws:
        if sweep_id is None:
            listed = ws.sweeps()
            if as_json:
                emit(listed)
                return
            if not listed.sweeps:
                say("no sweep recorded")
            for s in listed.sweeps:
                state = "finished" if s["finished"] else "open"
                chosen = "" if s["chosen"] is None else f", chose trial {s['chosen']}"
                say(
                    f"{s['sweep_id']}  {s['name']} v{s['version']}  {s['strategy']} on "
                    f"{s['backend']}  {s['trials']} trials  {state}{chosen}"
                )
            return
        result = ws.sweep_show(sweep_id)
    if as_json:
        emit(result)
        return
    counts = {k: sum(t.status == k for t in result.trials) for k in ("passed", "failed", "crashed")}
    say(
        f"{result.sweep_id} ({result.name} v{result.version}): {result.status}, "
        f"{len(result.trials)} of {result.budget_trials} trials: {counts['passed']} passed, "
        f"{counts['failed']} failed a gate, {counts['crashed']} crashed"
    )
    say(f"frontier: {', '.join(map(str, result.frontier)) or 'none'}; {result.why}")


@sweep_group.command("show")
@click.argument("sweep_id")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def show(sweep_id: str, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """SWEEP_ID (or `latest`): every trial, the frontier and the chosen one."""
    with open_workspace(workspace, catalog=catalog) as ws:
        result = ws.sweep_show(sweep_id)
    if as_json:
        emit(result)
    else:
        _table(result)


@sweep_group.command("report")
@click.argument("sweep_id")
@click.option(
    "--output",
    "-o",
    "out",
    type=DIR,
    required=True,
    help="A folder: index.html (or .md/.json) and each trial run's report beside it.",
)
@click.option(
    "--format", "fmt", type=click.Choice(["html", "md", "json"]), default="html", show_default=True
)
@click.option("--no-trials", is_flag=True, help="Only the sweep's page, no report per trial.")
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def report(
    sweep_id: str,
    out: Path,
    fmt: str,
    no_trials: bool,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Write SWEEP_ID's report: the frontier plot, the table of trials, the choice and why,
    with a link to each trial run's own report (written beside it, in the same format)."""
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        written = ws.write_sweep_report(sweep_id, out, fmt, trials=not no_trials)
    if as_json:
        emit({"files": [str(p) for p in written]})
    else:
        say(f"wrote {written[0]} and {len(written) - 1} trial report(s)")


@sweep_group.command("propose")
@click.argument("sweep_id")
@click.option("--trial", type=int, default=None, help="Propose this trial instead of the chosen.")
@click.option(
    "--output", "-o", "out", type=FILE, default=None, help="Where (default: NAME-vN.yaml here)."
)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def propose(
    sweep_id: str,
    trial: int | None,
    out: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Write SWEEP_ID's chosen trial as a concrete recipe, for its author to sign and submit.

    The recipe keeps its base recipe's seeds and gates, with the trial's values and its
    provenance (`metadata.derived_from`: the sweep's digest, the trial, the base recipe's
    digest). Its gates judge it on the test split the search never saw: the search proposes,
    people decide. Write it beside the base recipe: the files it names are found there.
    """
    with open_workspace(workspace, catalog=catalog) as ws:
        result = ws.sweep_propose(sweep_id, out, trial=trial)
    if as_json:
        emit(result)
    else:
        say(f"wrote {result.recipe} (trial {result.trial} of {result.sweep_id})")
        say(f"next: {result.next}")


def _table(result: object) -> None:
    from rich.console import Console
    from rich.table import Table

    from compressgate.registry.cli.tables import inert
    from compressgate.registry.results import SweepResult

    assert isinstance(result, SweepResult)
    table = Table(title=inert(f"{result.sweep_id}: {result.name} v{result.version}"))
    axes = list(result.trials[0].params) if result.trials else []
    metrics = [str(o["metric"]) for o in result.objectives]
    for name in ["trial", "status", *axes, *metrics, "s", ""]:
        table.add_column(inert(name))
    for t in result.trials:
        mark = "chosen" if t.chosen else ("frontier" if t.on_frontier else "")
        state = t.status + (f" ({', '.join(t.failed_gates)})" if t.failed_gates else "")
        table.add_row(
            str(t.trial),
            inert(state),
            *(inert(_cell(t.params.get(a))) for a in axes),
            *(_number(t.objectives.get(m)) for m in metrics),
            f"{t.seconds:.0f}",
            mark,
        )
    Console(soft_wrap=True).print(table)
    say(f"{result.status}: {result.why}")


def _cell(value: object) -> str:
    import json

    return value if isinstance(value, str) else json.dumps(value)


def _number(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"
