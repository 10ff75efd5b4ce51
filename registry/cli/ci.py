"""`compressgate ci`: check the recipes a change touches before a merge, with JUnit XML and a
Markdown summary for the CI system."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    RUNNER_KEY_OPTION,
    TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
)
from compressgate.registry.cli.tables import emit, review_table


@click.command("ci")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--base",
    metavar="REF",
    help="Check the recipes changed against this git ref (e.g. origin/main), committed or not.",
)
@click.option("--junit", type=FILE, help="Write JUnit XML here: one testcase per gate.")
@click.option("--summary", type=FILE, help="Write a Markdown summary here.")
@click.option(
    "--no-reuse", is_flag=True, help="Run every recipe, even one already run in this environment."
)
@TRUST_OPTION
@WORKSPACE_OPTION
@CATALOG_OPTION
@RUNNER_KEY_OPTION
@JSON_OPTION
def ci(
    paths: tuple[Path, ...],
    base: str | None,
    junit: Path | None,
    summary: Path | None,
    no_reuse: bool,
    trust: Path | None,
    workspace: Path | None,
    catalog: str | None,
    runner_key: Path | None,
    as_json: bool,
) -> None:
    """Check recipes for a merge: verify, run (or reuse a run), judge the gates, report.

    PATHS are recipe files or folders searched for them; with --base only those changed
    against REF are checked (without PATHS: every changed recipe in the repository). A run of
    the same recipe digest in the same environment is reused. Writes JUnit XML (--junit) and a
    Markdown summary (--summary, and appended to $GITHUB_STEP_SUMMARY when set). Exit: 0 all
    gates pass (approvals may still be awaited), 1 a gate failed, 2 bad input, 3 integrity
    (signature), 5 environment mismatch; with several recipes the first of 3, 5, 4, 2, 1.
    """
    import os

    from compressgate.gates.ci import exit_code, junit_xml, markdown_summary
    from compressgate.registry.cli.progress import RichProgress
    from compressgate.registry.kernel.files import write_atomic

    if not paths and base is None:
        raise click.UsageError("give recipe PATHS, --base REF, or both")
    with open_workspace(workspace, catalog=catalog, trust=trust, key=runner_key) as ws:
        results = ws.ci(
            list(paths),
            base=base,
            reuse=not no_reuse,
            progress=None if as_json else RichProgress(),
        )
    text = markdown_summary(results)
    if junit is not None:
        write_atomic(junit, junit_xml(results))
    if summary is not None:
        write_atomic(summary, text.encode("utf-8"))
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if step_summary:
        with Path(step_summary).open("a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    if as_json:
        emit(results)
    elif not results:
        click.echo("no recipe to check" + (f" changed against {base}" if base else ""))
    else:
        for result in results:
            if result.review is not None:
                review_table(result.review)
            else:
                click.echo(f"{result.path}: exit {result.exit_code}: {result.error}", err=True)
            for line in result.underpowered:
                click.echo(f"warning: underpowered gate {line}")
    sys.exit(exit_code(results))
