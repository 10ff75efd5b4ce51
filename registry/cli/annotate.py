"""Tags and descriptions: `compressgate tag` and `compressgate describe`.

Each change is a new catalog event (nothing is edited in place); under the catalog's trust
policy each is signed with an owner's `--key` and checked again by `audit verify`. What they
record is found with `catalog search` and shown by `catalog show`.
"""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import (
    ACTOR_OPTION,
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import annotation_line, emit, say, tags_text

OWNER_KEY_OPTION = click.option(
    "--key",
    "key",
    type=FILE,
    help="Your private key: signs each change (required under a trust policy, where any owner "
    "of the policy may tag and describe; refused without one).",
)


@click.command("tag")
@click.argument("subject")
@click.argument("tags", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--remove", multiple=True, metavar="KEY", help="Remove tag KEY (repeatable).")
@OWNER_KEY_OPTION
@ACTOR_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def tag(
    subject: str,
    tags: tuple[str, ...],
    remove: tuple[str, ...],
    key: Path | None,
    actor: str | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Set tags KEY=VALUE and remove tags (--remove KEY) of SUBJECT, a run (run-…) or a
    variant (RUN/SEED/STAGE or an artifact sha256 prefix).

    Each change is a new catalog event; a tag's value is its latest. A key is letters, digits,
    '.', '_' or '-' (at most 64); a value at most 256 characters, without control characters
    (exit 2 otherwise, nothing recorded). A tag of a run is a tag of each of its variants
    unless the variant sets the key itself. Under the catalog's trust policy each change is
    signed with --key, the actor being the key's owner (exit 3 without a key, or with a key
    the policy does not hold).
    """
    with open_workspace(workspace, catalog=catalog) as ws:
        result = ws.tag(subject, tags, remove=remove, key_path=key, actor=actor)
    _show(result, as_json)


@click.command("describe")
@click.argument("subject")
@click.argument("text", required=False)
@click.option("--clear", is_flag=True, help="Clear the description instead.")
@OWNER_KEY_OPTION
@ACTOR_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def describe(
    subject: str,
    text: str | None,
    clear: bool,
    key: Path | None,
    actor: str | None,
    workspace: Path | None,
    catalog: str | None,
    as_json: bool,
) -> None:
    """Set the description of SUBJECT (a run or a variant, as `tag` takes them) to TEXT, or
    --clear it.

    The description is a new catalog event (at most 4,096 characters, on one line, without
    control characters); under the catalog's trust policy signed with --key, as `tag` is.
    """
    if (text is None) == (not clear):
        raise click.UsageError("give TEXT or --clear (one of them)")
    with open_workspace(workspace, catalog=catalog) as ws:
        result = ws.describe(subject, None if clear else text, key_path=key, actor=actor)
    _show(result, as_json)


def _show(result: object, as_json: bool) -> None:
    from compressgate.registry.governance.annotations import AnnotateResult

    assert isinstance(result, AnnotateResult)
    if as_json:
        emit(result)
        return
    for note in result.recorded:
        click.echo(annotation_line(note))
    for label in result.unchanged:
        say(f"{label} of {result.subject_kind} {result.subject_id} unchanged; nothing recorded")
    say(f"{result.subject_kind} {result.subject_id} tags: {tags_text(result.tags)}")
