"""`compressgate env ...`: environments built from locks (create, list, verify, export)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressgate.registry.cli.options import (
    ENVS_OPTION,
    FILE,
    JSON_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit


@click.group("env")
def env_group() -> None:
    """Environments built from locks: create, list, verify, export.

    An environment is a virtual environment holding exactly a lock's pins and compressgate,
    kept under ENVS/<sha256 of the lock>/ (ENVS: --envs, $COMPRESSGATE_ENVS, else
    WORKSPACE/envs). It is built in a hidden temporary folder and renamed only when complete,
    so a build killed half way is never used.
    """


def _say(text: str) -> None:
    click.echo(text, err=True)


@env_group.command("create")
@click.argument("lock", type=FILE)
@WORKSPACE_OPTION
@ENVS_OPTION
@JSON_OPTION
def env_create(lock: Path, workspace: Path | None, envs: Path | None, as_json: bool) -> None:
    """Build the environment of LOCK, or find it built (exit 5 if pip cannot install LOCK).

    A lock whose pins carry --hash options is installed with --require-hashes.
    """
    with open_workspace(workspace, envs=envs) as ws:
        result = ws.env_create(lock, say=_say)
    if as_json:
        emit(result)
        return
    what = "built" if result.built else "refreshed" if result.refreshed else "reused"
    click.echo(f"{what} {result.path} in {result.seconds:.1f} s")
    click.echo(f"  interpreter {result.interpreter} (Python {result.python})")


@env_group.command("list")
@WORKSPACE_OPTION
@ENVS_OPTION
@JSON_OPTION
def env_list(workspace: Path | None, envs: Path | None, as_json: bool) -> None:
    """The environments in the store, and any unfinished builds (never used)."""
    with open_workspace(workspace, envs=envs) as ws:
        result = ws.env_list()
    if as_json:
        emit(result)
        return
    if not result.environments:
        click.echo(f"no environments in {result.store}")
    for env in result.environments:
        click.echo(
            f"{env.lock_sha256[:16]}  Python {env.python}  {env.pins} pins"
            f"{' (hashes)' if env.require_hashes else ''}  created {env.created_at}  {env.path}"
        )
    for path in result.partial:
        click.echo(f"unfinished build (not used; the next build of its lock removes it): {path}")


@env_group.command("verify")
@click.argument("lock", type=FILE)
@WORKSPACE_OPTION
@ENVS_OPTION
@click.option(
    "--current", is_flag=True, help="Check the running interpreter instead of LOCK's environment."
)
@JSON_OPTION
def env_verify(
    lock: Path, workspace: Path | None, envs: Path | None, current: bool, as_json: bool
) -> None:
    """Check LOCK's environment package by package against LOCK (exit 5 listing every
    difference: a package missing, at another version, or installed and not locked)."""
    with open_workspace(workspace, envs=envs) as ws:
        result = ws.env_verify(lock, current=current)
    if as_json:
        emit(result)
    elif result.matches:
        click.echo(f"{result.interpreter}: matches {lock} (sha256 {result.lock_sha256[:16]})")
    else:
        click.echo(
            f"{result.interpreter}: {len(result.differences)} package(s) differ from {lock}:"
        )
        for difference in result.differences:
            click.echo(f"  {difference.text}")
    sys.exit(result.exit_code)


@env_group.command("export")
@click.option("-o", "--out", type=FILE, help="Write the lock here [default: print it].")
@click.option(
    "--requires",
    metavar="DIST",
    help="Only DIST and its requirements, transitively (e.g. compressgate: the smallest lock "
    "that runs it) [default: every installed package].",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@JSON_OPTION
def env_export(out: Path | None, requires: str | None, force: bool, as_json: bool) -> None:
    """Write a lock of the running environment: exact pins, for a new recipe.

    compressgate itself and pip are left out (an environment installs the running
    compressgate); local version labels (+cpu) are noted in a comment, not pinned.
    """
    from compressgate.registry.authoring import env_export as export

    result = export(out, requires=requires, force=force)
    if as_json:
        emit(result)
    elif out is None:
        click.echo(result.text, nl=False)
    else:
        click.echo(f"wrote {out}: {result.pins} pins (sha256 {result.sha256[:16]})")
