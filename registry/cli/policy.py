"""`compressgate trust init|propose|sign|apply|show`: the trust policy anchored in the catalog,
each version signed by the root threshold of the version before it (`governance.policy`)."""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.keys import trust
from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit

KEYS_OPTION = click.option(
    "--key",
    "keys",
    type=FILE,
    multiple=True,
    help="A root owner's private key; repeat for each signer.",
)


@trust.command("init")
@click.argument("file", type=FILE)
@click.option(
    "--threshold",
    type=click.IntRange(1, 64),
    help="Declare root.threshold in FILE (distinct root owners who sign each next version).",
)
@KEYS_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def trust_init(
    file: Path,
    threshold: int | None,
    keys: tuple[Path, ...],
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Adopt FILE as the catalog's policy, version 1, signed by its root owners' keys.

    The catalog is created if needed; a catalog that recorded runs before keeps them, marked
    as recorded under the unsigned regime. Exit 3 if fewer than root.threshold root owners
    signed; exit 1 if the catalog has a policy already."""
    from compressgate.recipes.trust import set_root_threshold
    from compressgate.registry.governance.policy import init
    from compressgate.registry.kernel.keys import load_private_key

    if threshold is not None:
        set_root_threshold(file, threshold)
    private = [load_private_key(k) for k in keys]
    with open_workspace(workspace, catalog=catalog) as ws:
        result = init(ws.catalog(write=True), file, private)
    if as_json:
        emit(result)
    else:
        click.echo(
            f"policy v{result.version} in force ({result.sha256[:16]}…), signed by "
            f"{', '.join(result.signers)}; root threshold {result.root_threshold}"
        )
        if result.unsigned_runs:
            click.echo(f"{result.unsigned_runs} earlier run(s) stay, under the unsigned regime")


@trust.command("propose")
@click.argument("file", type=FILE)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def trust_propose(file: Path, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """Show what FILE would change as the next policy version, and whose signatures it needs.

    Nothing is written. The root owners of the version in force sign it with `trust sign`."""
    from compressgate.registry.governance.policy import propose

    with open_workspace(workspace, catalog=catalog) as ws:
        result = propose(ws.catalog(), file)
    if as_json:
        emit(result)
        return
    click.echo(f"{file} as policy v{result.version} (sha256 {result.sha256[:16]}…):")
    for change in result.changes:
        click.echo(f"  {change.what}: {change.detail}")
    if not result.changes:
        click.echo("  no change")
    click.echo(
        f"needs {result.threshold} of {', '.join(result.signers_needed)}; signed by "
        f"{', '.join(result.signed_by) or 'nobody yet'}"
        + ("; ready: `compressgate trust apply`" if result.ready else "")
    )


@trust.command("sign")
@click.argument("file", type=FILE)
@click.option("--key", "key", type=FILE, required=True, help="Your private root key.")
@WORKSPACE_OPTION
@CATALOG_OPTION
@click.option(
    "--offline",
    is_flag=True,
    help="Co-sign the version FILE's envelope states, without reading a catalog.",
)
@JSON_OPTION
def trust_sign(
    file: Path,
    key: Path,
    workspace: Path | None,
    catalog: str | None,
    offline: bool,
    as_json: bool,
) -> None:
    """Sign FILE as the next version of the catalog's policy (FILE.dsse.json; co-signs an
    envelope over the same statement)."""
    from compressgate.registry.governance.policy import sign
    from compressgate.registry.kernel.keys import load_private_key

    private = load_private_key(key)
    if offline:
        target, version = sign(None, file, private)
    else:
        with open_workspace(workspace, catalog=catalog) as ws:
            target, version = sign(ws.catalog(), file, private)
    if as_json:
        emit({"envelope": str(target), "version": version, "keyid": private.public.keyid})
    else:
        click.echo(f"signed {file} as policy v{version}: {target}")


@trust.command("apply")
@click.argument("file", type=FILE)
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def trust_apply(file: Path, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """Record FILE as the next policy version, once the root threshold of the version in force
    (and of FILE's own root role) signed it; exit 3 otherwise, nothing written."""
    from compressgate.registry.governance.policy import apply

    with open_workspace(workspace, catalog=catalog) as ws:
        result = apply(ws.catalog(write=True), file)
    if as_json:
        emit(result)
    else:
        click.echo(
            f"policy v{result.version} in force ({result.sha256[:16]}…), signed by "
            f"{', '.join(result.signers)}"
        )


@trust.command("show")
@click.option("--version", "version", type=int, help="An earlier version [default: in force].")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def trust_show(
    version: int | None, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """The catalog's policy in force (or --version N): roots, owners and roles, duties, alias
    rules, and every version's signers."""
    from compressgate.registry.governance.policy import show

    with open_workspace(workspace, catalog=catalog) as ws:
        result = show(ws.catalog(), version)
    if as_json:
        emit(result)
        return
    if result.version is None:
        click.echo("no policy: the unsigned regime (`compressgate trust init FILE`)")
        return
    click.echo(
        f"policy v{result.version} ({str(result.sha256)[:16]}…), root threshold "
        f"{result.root_threshold} of {', '.join(result.roots)}"
    )
    for owner, roles in result.owners.items():
        click.echo(f"  {owner}: {', '.join(roles)}")
    click.echo(f"separation of duties: {'on' if result.separation else 'off'}")
    for alias, rule in result.aliases.items():
        who = ", ".join(rule.get("releasers") or []) or "any releaser"
        click.echo(f"  alias {alias}: {who}; separate: {rule.get('separate')}")
    for plugin in result.plugins:
        pinned = f", code sha256 {plugin['sha256'][:16]}…" if plugin.get("sha256") else ""
        click.echo(f"  plug-in {plugin['distribution']}=={plugin['version']}{pinned}")
    for entry in result.history:
        click.echo(f"  v{entry['version']} signed by {', '.join(entry['signers'])}")
