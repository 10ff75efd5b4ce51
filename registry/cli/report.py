"""`compressgate report RUN_ID`: a run's audit report (HTML, Markdown, JSON evidence or a
model card) rendered from the catalog, optionally written to a file and recorded."""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import (
    ACTOR_OPTION,
    CATALOG_OPTION,
    FILE,
    RUN_TRUST_OPTION,
    WORKSPACE_OPTION,
    json_printable,
    open_workspace,
    printable,
)
from compressgate.registry.cli.tables import say


@click.command("report")
@click.argument("run_id")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["html", "md", "json", "card"]),
    default="html",
    show_default=True,
    help="html: the self-contained audit report; md: for a pull request; json: the evidence "
    "bundle; card: a model card (Markdown).",
)
@click.option(
    "-o",
    "--output",
    type=FILE,
    help="Write here and record its sha256 in the catalog [default: stdout, not recorded].",
)
@click.option("--checkpoint", type=FILE, help="A signed catalog checkpoint to show (needs trust).")
@ACTOR_OPTION
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
def report(
    run_id: str,
    fmt: str,
    output: Path | None,
    checkpoint: Path | None,
    actor: str | None,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
) -> None:
    """Render the audit report of RUN_ID from the catalog: recipe identity (the signature is
    checked now), environment, stages, gates with sign-offs, plots, lineage, what changed since
    the previous approved run, and the chain head. The same run gives the same bytes.

    With -o the file's sha256 is recorded in the catalog (a new event, unless those bytes are
    recorded already), so `audit verify --report FILE` detects a changed copy; an older
    catalog is migrated first. Printed to stdout, nothing is recorded, and a character that
    would steer the terminal is printed as its escape (`\\x1b`)."""
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        if output is None:
            text = ws.report(run_id, fmt, checkpoint=checkpoint).decode("utf-8")
            # On a terminal, what a person wrote in the report (a reason, a description) is
            # shown, not obeyed; the bytes -o writes and records are the report's own.
            click.echo(json_printable(text) if fmt == "json" else printable(text), nl=False)
            return
        recorded = ws.write_report(run_id, output, fmt, checkpoint=checkpoint, actor=actor)
    say(
        f"wrote {output} ({recorded.size_bytes:,} bytes), recorded in the catalog at event "
        f"{recorded.seq} (sha256 {recorded.sha256[:16]}…)"
    )
