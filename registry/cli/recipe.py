"""`compressgate recipe ...`: validate, explain, sign, verify, init, and print the schema."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    DIR,
    FILE,
    JSON_OPTION,
    TRUST_OPTION,
    WORKSPACE_OPTION,
    printable,
)
from compressgate.registry.cli.tables import emit
from compressgate.registry.kernel.errors import Issue


@click.group()
def recipe() -> None:
    """Validate, explain, sign and verify recipe manifests."""


@recipe.command("validate")
@click.argument("files", nargs=-1, required=True, type=FILE)
@TRUST_OPTION
@JSON_OPTION
@click.option(
    "--power/--no-power",
    default=None,
    help="Also check each statistical gate's power: this runs the recipe's data loader "
    "(default: only with --strict).",
)
@click.option(
    "--strict", is_flag=True, help="Check power (unless --no-power); exit 2 if underpowered."
)
def recipe_validate(
    files: tuple[Path, ...], trust: Path | None, as_json: bool, strict: bool, power: bool | None
) -> None:
    """Check manifests: schema, cross-references, files, imports and owners (exit 0 or 2).

    Every problem is printed as FILE:LINE FIELD: MESSAGE. Owners are checked against the trust
    file when one is given or found beside the recipe. No code the recipe names runs: its
    factories and loaders are located, not imported. With --power (or --strict), each
    statistical gate's power at the test split's size is checked, which runs the data loader:
    a gate that could never pass, or has less than its planned power, is flagged with the
    margin or sample size that would work (a warning; --strict makes it exit 2). `submit` and
    `run` always check power.
    """
    from compressgate.registry.authoring import validate_recipes
    from compressgate.registry.cli.validate import not_a_recipe

    checked = validate_recipes(files, trust, with_power=strict if power is None else power)
    records = [not_a_recipe(r) for r in checked]  # a trust file: say so, and what checks it
    if strict:
        records = [
            r.model_copy(update={"valid": False, "exit_code": 2})
            if r.valid and any(p["underpowered"] for p in r.power)
            else r
            for r in records
        ]
    if as_json:
        emit(records)
    else:
        for record in records:
            if record.valid:
                click.echo(printable(f"ok {record.file} ({record.name} v{record.version})"))
            for warning in record.warnings:
                click.echo(printable(f"warning: {record.file}: {warning}"), err=True)
            for issue in record.issues:
                click.echo(printable(f"Error: {Issue(**issue.model_dump())}"), err=True)
    failed = [r for r in records if not r.valid]
    if failed:
        sys.exit(failed[0].exit_code)


@recipe.command("schema")
@click.option(
    "--kind",
    type=click.Choice(["recipe", "sweep"]),
    default="recipe",
    show_default=True,
    help="The manifest whose schema to print: a recipe, or a sweep (kind: Sweep).",
)
def recipe_schema(kind: str) -> None:
    """Print the JSON Schema (draft-07) of recipe manifest v1, for editors and validators.

    Editors with yaml-language-server (VS Code's YAML extension) read the schema the first line
    of a recipe names (`recipe init` writes it); save this output and name the file there to
    work offline. `--kind sweep` prints the sweep manifest's."""
    from compressgate.registry.authoring import recipe_schema, sweep_schema

    emit(sweep_schema() if kind == "sweep" else recipe_schema())


@recipe.command("explain")
@click.argument("file", type=FILE)
@TRUST_OPTION
@JSON_OPTION
@click.option(
    "--power",
    is_flag=True,
    help="Also say each statistical gate's power: this runs the recipe's data loader.",
)
def recipe_explain(file: Path, trust: Path | None, as_json: bool, power: bool) -> None:
    """Say in plain words what a recipe does: its stages in order and who owns each gate.

    No code the recipe names runs, unless --power asks for each gate's power at the test
    split's size (the data loader runs for the first seed)."""
    from compressgate.recipes.explain import render_text
    from compressgate.registry.authoring import explain_recipe

    explanation = explain_recipe(file, trust, with_power=power)
    if as_json:
        emit(explanation)
    else:
        click.echo(printable(render_text(explanation)))


@recipe.command("sign")
@click.argument("file", type=FILE)
@click.option("--key", "key", type=FILE, required=True, help="Private key (OWNER.key).")
@TRUST_OPTION
@JSON_OPTION
def recipe_sign(file: Path, key: Path, trust: Path | None, as_json: bool) -> None:
    """Sign a valid recipe, writing FILE.dsse.json (a co-signature if the file is unchanged).

    The recipe is checked as `recipe validate` checks it, against the trust file if one is
    found (its owners, and the modules it allow-lists). A sweep (kind: Sweep) is signed the
    same way, checked against its base recipe; its signature covers both files."""
    from compressgate.registry.authoring import sign_recipe, sign_sweep

    record = (sign_sweep if _is_sweep(file) else sign_recipe)(file, key, trust)
    if as_json:
        emit(record)
    else:
        click.echo(
            printable(f"signed {record.recipe} (sha256 {record.sha256}) with key {record.keyid}")
        )
        click.echo(printable(f"wrote {record.envelope}"))


@recipe.command("verify")
@click.argument("file", type=FILE)
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@JSON_OPTION
def recipe_verify(
    file: Path, trust: Path | None, workspace: Path | None, catalog: str | None, as_json: bool
) -> None:
    """Verify a recipe's signature against the trust file (exit 0, or 3 on any failure).

    Fails on a changed byte of the recipe or of the envelope, a key not in the trust file, a
    signer without the author role or not among the recipe's owners, or no subject digest.
    A sweep (kind: Sweep) verifies when an author who owns it and its base recipe signed both
    files' current bytes, and the base recipe verifies. A recipe a sweep proposed
    (`metadata.derived_from`) also has its provenance checked against the workspace's catalog,
    where the sweep ran: the sweep and base recipe recorded there verify, the trial passed with
    those parameters, and deriving the recipe again gives this one.
    """
    from compressgate.registry.authoring import verify_recipe, verify_sweep
    from compressgate.registry.cli.options import open_workspace

    sweep = _is_sweep(file)
    record = (verify_sweep if sweep else verify_recipe)(file, trust)
    if not sweep:
        with open_workspace(workspace, catalog=catalog, trust=trust) as ws:
            said = ws.provenance(file)
        if said is not None:
            record = record.model_copy(update={"provenance": said})
    if as_json:
        emit(record)
    else:
        signers = ", ".join(f"{s.owner} (key {s.keyid[:16]}…)" for s in record.signers)
        what = "sweep " if sweep else ""
        click.echo(
            f"verified {record.recipe}: {what}{record.name} v{record.version}, signed by {signers}"
        )
        if record.provenance is not None:
            click.echo(printable(f"provenance verified: proposed by {record.provenance}"))


def _is_sweep(file: Path) -> bool:
    """Whether FILE says `kind: Sweep`; anything unreadable is left to the recipe path, which
    reports it as it always has."""
    from compressgate.registry.cli.validate import SWEEP, _read, read_heading
    from compressgate.registry.kernel.errors import CompressgateError

    try:
        return read_heading(_read(file)[1], str(file)).kind == SWEEP
    except CompressgateError:
        return False


@recipe.command("init")
@click.argument("directory", type=DIR)
@click.option("--example", default="digits", show_default=True, help="Bundled example to copy.")
def recipe_init(directory: Path, example: str) -> None:
    """Start a workspace from a bundled example: DIRECTORY/recipe.yaml and the files it names.

    The recipe's first line names its JSON Schema for editors (yaml-language-server)."""
    from compressgate.registry.authoring import init_example

    for path in init_example(directory, example):
        click.echo(f"wrote {path}")
