"""`compressgate catalog ...`: reading the catalog (runs, variants, lineage, differences).

`catalog list` is a read command that must start fast: nothing here imports more than click at
import time, and the API call imports only the catalog (no scipy, no torch).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    JSON_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import (
    annotations_lines,
    decisions_table,
    diff_tables,
    emit,
    metric_table,
    run_table,
    runs_table,
    say,
    search_lines,
    size,
)

if TYPE_CHECKING:
    from compressgate.registry.catalog.records import Annotations


@click.group("catalog")
def catalog_group() -> None:
    """Read the catalog: runs, variants, lineage, differences, search (it is never edited)."""


@catalog_group.command("list")
@click.option("--recipe", metavar="NAME", help="Only runs of this recipe.")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--offset", default=0, show_default=True, type=click.IntRange(0))
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_list(
    recipe: str | None,
    limit: int,
    offset: int,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """List runs, newest first: run_id, recipe, version, status, started, seeds, signers."""
    with open_workspace(workspace, catalog=catalog) as ws:
        runs = ws.runs(recipe=recipe, limit=limit, offset=offset)
    if as_json:
        emit(runs)
        return
    runs_table(runs)


@catalog_group.command("show")
@click.argument("ref", metavar="ID")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_show(ref: str, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """Show a run (ID = run-…) or a variant (RUN/SEED/STAGE or an artifact sha256 prefix).

    For a run, --json exports its full record exactly as the executor held it: recipe,
    environment, data digests, every stage with metrics and evaluations, aggregates, timing;
    and, for a run attested under a trust policy, `attestation` (runner, key, policy version,
    the DSSE envelope); for a run with tags or a description, `tags`, `description` and
    `annotations` (every tag and description event, oldest first). A variant's --json has
    the same three keys.
    """
    from compressgate.registry.results import summarize
    from compressgate.registry.workspace import is_run_id

    with open_workspace(workspace, catalog=catalog) as ws:
        if is_run_id(ref):
            record, decisions, where = ws.show_run(ref)
            notes = ws.annotations(ref)
            if as_json:
                data = record.model_dump(mode="json")
                attested = ws.attestation(ref)
                if attested is not None:
                    data |= {"attestation": attested.model_dump()}
                if notes.history:
                    data |= {"tags": notes.tags, "description": notes.description}
                    data |= {"annotations": [n.model_dump() for n in notes.history]}
                emit(data)
                return
            run_table(summarize(record, where))
            annotations_lines(notes, indent="")
            decisions_table(decisions)
            return
        shown = ws.show_variant(ref)
    if as_json:
        emit(shown)
        return
    v = shown.variant
    say(f"variant {v.id} [{v.kind}, {v.format}] artifact {v.artifact_sha256}")
    say(f"  parent {v.parent_sha256 or '-'} · recipe {v.recipe_sha256[:12]}")
    say(f"  size {size(v.size_bytes)} · params {v.params} · MACs {v.macs}")
    say(f"  evaluations: {', '.join(shown.evaluations) or '-'}")
    say(f"  aliases: {', '.join(shown.aliases) or '-'}")
    say("  promotable: yes" if shown.promotable else f"  promotable: no ({shown.problem})")
    annotations_lines(notes_of(shown))
    metric_table(v.metrics)
    decisions_table(shown.decisions)


def notes_of(shown: object) -> Annotations:
    from compressgate.registry.catalog.records import Annotations
    from compressgate.registry.catalog.views import VariantShow

    assert isinstance(shown, VariantShow)
    return Annotations(tags=shown.tags, description=shown.description, history=shown.annotations)


@catalog_group.command("search")
@click.argument("query", nargs=-1)
@click.option(
    "--sort",
    default="recorded",
    show_default=True,
    metavar="FIELD[:asc|desc]",
    help="recorded (newest first by default), id or size; ties broken by variant id.",
)
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@click.option(
    "--page-token",
    metavar="TOKEN",
    help="Continue after the page that printed TOKEN (same query and --sort).",
)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_search(
    query: tuple[str, ...],
    sort: str,
    limit: int,
    page_token: str | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Find variants: every term of QUERY must hold (none: every variant).

    \b
    recipe=NAME owner=NAME run=RUN stage=NAME kind=KIND
    alias=NAME (ever moved there)  current=NAME (points there now)
    gate=pass|fail|waived  gate.NAME=...  waived  waiver=OWNER  signoff=OWNER
    policy=N (0: none; also >= <=)  since=DATE  until=DATE  tag.KEY=VALUE  tag.KEY
    \b
    != negates a term, ~ is a prefix (recipe, run, stage, tag.KEY); quote a value with spaces
    (tag.note="two words"). since/until bound the recording time, or with an alias or current
    term the move's. Unknown field or bad value: exit 2, listing the fields. --json keys:
    query, sort, limit, results (id, run_id, seed, stage, kind, artifact_sha256, recipe,
    recipe_version, recorded_at, size_bytes, aliases, tags, description), next_page_token.
    """
    with open_workspace(workspace, catalog=catalog) as ws:
        page = ws.search(" ".join(query), sort=sort, limit=limit, page_token=page_token)
    if as_json:
        emit(page)
        return
    search_lines(page)


@catalog_group.command("lineage")
@click.argument("variant")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_lineage(
    variant: str, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """Show a variant's ancestry, baseline first, with its recipe, signers and environment."""
    with open_workspace(workspace, catalog=catalog) as ws:
        found = ws.lineage(variant)
    if as_json:
        emit(found)
        return
    run = found.run
    say(
        f"recipe {run.recipe} v{run.version} ({run.recipe_sha256[:12]}) signed by "
        f"{', '.join(run.signers) or 'nobody'}; run {run.run_id} by {run.actor}"
    )
    say(
        f"environment {run.environment_sha256[:12]} (python {run.python}), "
        f"lock {run.lock_sha256[:12] or '-'}"
    )
    for depth, v in enumerate(found.chain):
        accuracy = v.metrics.get("accuracy")
        score = f" · accuracy {accuracy.estimate:.2%}" if accuracy else ""
        say(
            f"{'  ' * depth}{'└─ ' if depth else ''}{v.stage} [{v.kind}, {v.format}] "
            f"{v.artifact_sha256[:12]} · {size(v.size_bytes)}{score}"
        )


@catalog_group.command("diff")
@click.argument("a")
@click.argument("b")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def catalog_diff(
    a: str, b: str, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """Two variants side by side: identity, stage configuration and metrics (A and B are
    RUN/SEED/STAGE or artifact sha256 prefixes)."""
    with open_workspace(workspace, catalog=catalog) as ws:
        found = ws.diff(a, b)
    if as_json:
        emit(found)
        return
    diff_tables(found)
