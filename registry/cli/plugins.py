"""`compressgate plugins`: the third-party stages and evaluators installed, and whether the trust
file allows each to run. Metadata only: no plug-in is imported, and neither is torch."""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import FILE, JSON_OPTION
from compressgate.registry.cli.tables import emit, shown


@click.command("plugins")
@click.option(
    "--trust",
    type=FILE,
    envvar="COMPRESSGATE_TRUST",
    help="Trust file whose plugins: judge each one [default: ./trust.yaml if there is one].",
)
@JSON_OPTION
def plugins(trust: Path | None, as_json: bool) -> None:
    """List the installed plug-ins (entry point groups compressgate.stages and
    compressgate.evaluators): name, group, distribution, version, target, code sha256, and
    whether the trust file's plugins: allow it, and why.

    A recipe uses one with `plugin: NAME`; it runs only when the trust policy in force lists
    its distribution at this version (and code sha256, when the policy pins one).
    """
    from compressgate.recipes.plugins import list_plugins
    from compressgate.recipes.trust import TRUST_FILE_NAME, load_trust

    if trust is None and Path(TRUST_FILE_NAME).is_file():
        trust = Path(TRUST_FILE_NAME)
    listing = list_plugins(load_trust(trust) if trust else None, str(trust) if trust else None)
    if as_json:
        emit(listing)
        return
    click.echo(f"trust: {shown(listing.trust) if listing.trust else 'none (no plug-in may run)'}")
    if not listing.plugins:
        click.echo("no plug-ins installed (entry point groups compressgate.stages, ...evaluators)")
    for row in listing.plugins:
        click.echo(
            f"{shown(row.name)}  {row.group}  {shown(row.distribution)} {shown(row.version)}  "
            f"{shown(row.target)}  {'allowed' if row.allowed else 'not allowed'}"
        )
        click.echo(f"  {shown(row.why)}")
        click.echo(f"  code sha256 {row.code_sha256 or 'unknown (no RECORD)'}")
