"""`compressgate keys generate` and `compressgate trust add|allow`: signing keys and the trust
file of owners, keys, roles and allow-listed modules."""

from __future__ import annotations

from pathlib import Path

import click

from compressgate.registry.cli.options import DIR, FILE, JSON_OPTION
from compressgate.registry.cli.tables import emit


@click.group()
def keys() -> None:
    """Create signing keys."""


@keys.command("generate")
@click.option("--owner", required=True, help="Owner name, as in recipes and the trust file.")
@click.option("--out", "out", type=DIR, required=True, help="Folder for the key files.")
@click.option(
    "--passphrase-file",
    type=FILE,
    help="Encrypt the private key with the first line of this file as its passphrase; "
    "commands read it from the file $COMPRESSGATE_PASSPHRASE_FILE names.",
)
@click.option(
    "--allow-in-git",
    is_flag=True,
    help="Write the private key inside a git work tree even if .gitignore does not ignore it.",
)
@JSON_OPTION
def keys_generate(
    owner: str, out: Path, passphrase_file: Path | None, allow_in_git: bool, as_json: bool
) -> None:
    """Write OUT/OWNER.key (private, mode 0600) and OUT/OWNER.pub.json (public, with keyid).

    A private key inside a git work tree that does not ignore it is refused (exit 2) unless
    --allow-in-git; a symbolic link at either path is refused, and no key is overwritten."""
    from compressgate.registry.authoring import generate_keys
    from compressgate.registry.kernel.keys import private_key_path, refuse_unignored_in_git

    if not allow_in_git:
        refuse_unignored_in_git(private_key_path(owner, out))
    record = generate_keys(owner, out, passphrase_file)
    if as_json:
        emit(record)
    else:
        how = "mode 0600, encrypted" if passphrase_file else "mode 0600"
        click.echo(f"wrote {record.private_key} (private, {how}) and {record.public_key}")
        click.echo(f"keyid {record.keyid}")


@click.group()
def trust() -> None:
    """The trust policy: owners, keys, roles, allow-listed modules, duties and alias rules.

    A trust file is edited with `add` and `allow`. A catalog adopts one as its signed policy
    with `init` (the root owners sign it); from then on every check uses the policy in the
    catalog, and a changed trust file is a proposal: `propose` shows what it changes, the root
    owners `sign` it, `apply` records it as the next version."""


@trust.command("allow")
@click.argument("modules", nargs=-1, required=True)
@click.option("--trust", "trust_file", type=FILE, default=Path("trust.yaml"), show_default=True)
@JSON_OPTION
def trust_allow(modules: tuple[str, ...], trust_file: Path, as_json: bool) -> None:
    """Allow recipes to name factories and loaders from MODULES (and their submodules).

    Nothing else is ever imported for a recipe: without this list, only
    compressgate.recipes.examples.
    Standard-library modules cannot be allowed (a signed recipe still cannot name os:system).
    """
    from compressgate.registry.authoring import trust_allow as allow

    record = allow(trust_file, modules)
    if as_json:
        emit(record)
    else:
        click.echo(f"{record.trust}: recipes may import from {', '.join(record.modules)}")


@trust.command("add")
@click.option("--trust", "trust_file", type=FILE, default=Path("trust.yaml"), show_default=True)
@click.option("--owner", required=True, help="Owner name.")
@click.option("--key", "key", type=FILE, required=True, help="Public key (OWNER.pub.json).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(["author", "approver", "auditor", "releaser", "root", "runner"]),
    help="author signs recipes, approver signs approvals and waivers, auditor signs "
    "checkpoints, releaser moves aliases, root signs the next version of the policy, runner "
    "attests runs. Repeat "
    "for several.",
)
@JSON_OPTION
def trust_add(
    trust_file: Path, owner: str, key: Path, roles: tuple[str, ...], as_json: bool
) -> None:
    """Add an owner's public key and roles to the trust file (created when missing)."""
    from compressgate.registry.authoring import trust_add as add

    record = add(trust_file, owner, key, roles)  # type: ignore[arg-type]
    if as_json:
        emit(record)
    else:
        click.echo(
            f"{record.trust}: {record.owner} holds key {record.keyid[:16]}… "
            f"with roles {', '.join(record.roles)}"
        )
