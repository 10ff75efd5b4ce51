"""`compressgate audit ...`: verify the catalog's hash chain, rows, artifacts and recorded
reports; sign checkpoints of its head."""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit, say


@click.group("audit")
def audit_group() -> None:
    """Verify the catalog's hash chain, rows and artifacts; sign checkpoints."""


@audit_group.command("verify")
@click.option(
    "--checkpoint",
    type=FILE,
    help="A signed checkpoint: the chain must still pass through its head (needs --trust).",
)
@click.option(
    "--since",
    type=FILE,
    metavar="CHECKPOINT",
    help="Verify only what is new after this signed checkpoint (and the checkpoint itself: "
    "its auditor's signature, its event's hash), for daily runs on a large catalog; "
    "a full verify re-checks everything.",
)
@click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file naming the auditors whose keys sign checkpoints.",
)
@click.option("--skip-artifacts", is_flag=True, help="Do not re-hash the artifact store (faster).")
@click.option(
    "--report",
    "reports",
    type=FILE,
    multiple=True,
    help="A report file `report -o` wrote: its bytes must be recorded (repeatable).",
)
@click.option(
    "--skip-meaning",
    is_flag=True,
    help="Check hashes only: not the policy, decisions, sign-offs, releases and aliases (for "
    "synthetic catalogs whose rows no run made; an audit leaves this out).",
)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def audit_verify(
    checkpoint: Path | None,
    since: Path | None,
    trust: Path | None,
    skip_artifacts: bool,
    reports: tuple[Path, ...],
    skip_meaning: bool,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Recompute every event's hash and link, check every row against its event and every
    artifact against its digest, and check meaning: the policy's signed versions, every gate
    decision re-derived from its evidence, every sign-off and release against the policy in
    force when it was recorded, every alias target held and every signed head still in the
    chain; exit 3 naming the first broken link. Each --report FILE must be a report rendered
    from this catalog, byte for byte (exit 3 if changed since).

    With --since CHECKPOINT (signed by `audit checkpoint`): the checkpoint's signature and
    event, then only the events, rows, artifacts and records after it, and the count of rows
    against events; not SQLite's page check (it reads the whole file). A daily --since and a
    periodic full verify, each ending in a new checkpoint, cover the catalog.

    The rate printed is the events checked over the command's wall time, its start included."""
    from compressgate.registry.cli.app import started

    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        report = ws.verify_audit(
            checkpoint=checkpoint,
            since=since,
            artifacts=not skip_artifacts,
            reports=reports,
            meaning=not skip_meaning,
            started=started(),
        )
    if as_json:
        emit(report)
        return
    if report.since is not None:
        say(
            f"catalog {report.catalog} (schema v{report.schema_version}) verifies since the "
            f"checkpoint at event {report.since.size} ({report.since.sha256[:16]}…): "
            f"{report.checked_events} new events and their rows, {report.artifacts} artifact "
            f"blobs; {report.events} events, {report.rows} rows in all; head "
            f"{report.head.sha256[:16]}… ({report.events_per_second:,.0f} events/s, "
            f"{report.seconds:.2f} s)"
        )
    else:
        say(
            f"catalog {report.catalog} (schema v{report.schema_version}) verifies: "
            f"{report.events} events, {report.rows} rows, {report.artifacts} artifact blobs; "
            f"head {report.head.sha256[:16]}… ({report.events_per_second:,.0f} events/s, "
            f"{report.seconds:.2f} s)"
        )
    meaning = report.meaning or {}
    if not meaning:
        say("meaning not checked (--skip-meaning): hashes only")
    if meaning:
        regime = (
            f"policy v{meaning['policy_version']}"
            if meaning["regime"] == "policy"
            else "the unsigned regime (no policy)"
        )
        say(
            f"meaning holds under {regime}: {meaning['decisions']} gate decisions re-derived, "
            f"{meaning['attestations']} run attestations, {meaning['signoffs']} sign-offs and "
            f"{meaning['releases']} releases checked, {meaning['moves']} alias moves, "
            f"{meaning.get('annotations', 0)} signed tags and descriptions, "
            f"{meaning['signed_heads']} signed heads in the chain"
            + (
                f"; {meaning['unattested_runs']} run(s) not attested"
                if meaning["unattested_runs"]
                else ""
            )
            + (
                f"; {meaning['unsigned_moves'] + meaning['unsigned_signoffs']} record(s) from "
                "before the policy"
                if meaning["unsigned_moves"] + meaning["unsigned_signoffs"]
                else ""
            )
        )
    if report.checkpoint is not None and report.since is None:
        say(
            f"extends checkpoint at event {report.checkpoint.size} "
            f"({report.checkpoint.sha256[:16]}…)"
        )
    for path, found in zip(reports, report.reports, strict=True):
        say(
            f"report {path}: the {found.format} report of {found.run_id} rendered at "
            f"{found.rendered_at} by {found.actor} ({found.tool}; event {found.seq})"
        )


@audit_group.command("checkpoint")
@click.option("--key", type=FILE, required=True, help="An auditor's private key (PEM).")
@click.option("-o", "--output", type=FILE, help="Write the envelope here [default: stdout].")
@WORKSPACE_OPTION
@CATALOG_OPTION
def audit_checkpoint(
    key: Path, output: Path | None, workspace: Path | None, catalog: str | None
) -> None:
    """Sign the catalog's current head (tree size + head hash) as a DSSE envelope, to publish
    outside the database; `audit verify --checkpoint FILE` checks the catalog against it."""
    from compressgate.registry.kernel.files import write_atomic

    with open_workspace(workspace, catalog=catalog) as ws:
        envelope = ws.checkpoint(key)
    if output is None:
        click.echo(envelope.decode("utf-8"), nl=False)
    else:
        write_atomic(output, envelope)
        say(f"checkpoint written to {output}", err=True)
