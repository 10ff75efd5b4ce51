"""Aliases: `compressgate promote`, `rollback`, `alias history` and `alias resolve`.

A move is a new catalog event. Two processes moving one alias at once: one wins, the other is
told so (exit 6, `Conflict`) and writes nothing. `alias history` and `alias resolve` are read
commands that must start fast (no scipy, no torch): `resolve` is what a deployment calls.
"""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import (
    ACTOR_OPTION,
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    RUN_TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit, move_line, say

RELEASER_KEY_OPTION = click.option(
    "--key",
    "key",
    type=FILE,
    help="A releaser's private key: signs the move (required under a trust policy).",
)


@click.command("promote")
@click.argument("variant")
@click.option("--alias", required=True, help="The alias to move, e.g. production.")
@click.option("--reason", default="", help="Why, for the record.")
@RELEASER_KEY_OPTION
@ACTOR_OPTION
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def promote(
    variant: str,
    alias: str,
    reason: str,
    key: Path | None,
    actor: str | None,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Point ALIAS at VARIANT if its run's review is approved (exit 1 otherwise).

    Approved: every gate passed, or was approved or waived by its owner (signatures checked
    now against the trust file); and every gate judged VARIANT's stage or one before it.
    VARIANT is RUN/SEED/STAGE or an artifact sha256 prefix. The move is a new catalog event;
    exit 6 if another process moved the alias meanwhile (nothing written: retry). Under the
    catalog's trust policy the move is signed with a releaser's --key (exit 3 without one, or
    with a key the policy does not let move ALIAS) and the actor is the key's owner.
    """
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        result = ws.promote(variant, alias, reason=reason, actor=actor, key_path=key)
    if as_json:
        emit(result)
    elif result.changed:
        click.echo(move_line(result.move))
    else:
        say(f"{alias} already points to {result.move.variant_id}; nothing changed")


@click.command("rollback")
@click.argument("alias")
@click.option("--to", "to", metavar="VARIANT", help="Roll back to this variant instead.")
@click.option("--reason", default=None, help="Why, for the record.")
@RELEASER_KEY_OPTION
@ACTOR_OPTION
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def rollback(
    alias: str,
    to: str | None,
    reason: str | None,
    key: Path | None,
    actor: str | None,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Move ALIAS back to its previous known-good variant (or to --to VARIANT).

    Known-good: an earlier target of the alias that was not rolled back from and whose run's
    review is still approved (a waiver may have expired). The move is a new catalog event;
    exit 6 if another process moved the alias meanwhile (nothing written: retry). Under the
    catalog's trust policy the move is signed with a releaser's --key, as `promote` is.
    """
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        result = ws.rollback(alias, to=to, reason=reason, actor=actor, key_path=key)
    if as_json:
        emit(result)
    else:
        click.echo(move_line(result.move))


@click.group("alias")
def alias_group() -> None:
    """Read aliases: their history, and what one points at now (verified)."""


@alias_group.command("history")
@click.argument("name")
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def alias_history(name: str, workspace: Path | None, catalog: str | None, as_json: bool) -> None:
    """Every move of alias NAME, oldest first: what, who, when and why."""
    with open_workspace(workspace, catalog=catalog) as ws:
        moves = ws.alias_history(name)
    if as_json:
        emit(moves)
    else:
        for move in moves:
            click.echo(move_line(move))


@alias_group.command("resolve")
@click.argument("name", metavar="NAME|URI")
@click.option(
    "--recipe",
    metavar="RECIPE",
    help="The recipe whose alias NAME is meant, where several recipes have one (under a "
    "policy an alias is per recipe: RECIPE:NAME). Not with a URI, which names its recipe.",
)
@click.option(
    "--path",
    "path_only",
    is_flag=True,
    help="Print only the verified file's path (for $(...) in a serving script).",
)
@RUN_TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def alias_resolve(
    name: str,
    recipe: str | None,
    path_only: bool,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """What alias NAME points at now, verified: its variant, digest and file in the store.

    Before answering: the move's signed release verifies against the policy in force when it
    was made (under a policy), the variant's record names the move's artifact, and the file's
    bytes hash to that digest now (exit 3 otherwise). The run's review is shown as it stands.
    Exit 4 for an unknown alias, naming the aliases there are.

    A URI may stand for NAME: compressgate://RECIPE@ALIAS is ALIAS --recipe RECIPE;
    compressgate://RECIPE/VARIANT (RUN/SEED/STAGE or a sha256 prefix) is a variant of RECIPE,
    its bytes hashed the same way, with no alias move to verify (exit 4 if it is another
    recipe's). The workspace and catalog are found as for every command.
    """
    if path_only and as_json:
        raise click.UsageError("--path and --json: choose one")
    with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
        found = ws.resolve(name, recipe=recipe)
    if as_json:
        emit(found)
        return
    if path_only:
        say(found.path)
        return
    say(f"{found.alias or found.uri} -> {found.variant} (verified)")
    say(f"  sha256:  {found.sha256}")
    say(f"  path:    {found.path}")
    say(f"  run:     {found.run_id} (recipe {found.recipe} v{found.recipe_version})")
    say(f"  review:  {found.review}")
    for reason in found.review_reasons:
        say(f"    - {reason}")
    if found.seq is None:  # a variant named directly: there is no move
        say("  alias:   none (a variant named directly: no move or release to verify)")
        return
    keyid = (found.release_keyid or "")[:12]
    signed = (
        "unsigned regime (no policy)"
        if found.policy_version is None
        else f"v{found.policy_version}, the move signed with key {keyid}…"
    )
    say(f"  policy:  {signed}")
    say(f"  moved:   {found.moved_at} by {found.moved_by} ({found.action}, event {found.seq})")
