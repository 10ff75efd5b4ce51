"""`compressgate ci`: check the recipes a change touches before a merge, with JUnit XML and a
Markdown summary for the CI system; on GitHub Actions also an annotation on the recipe's line
of each failing gate, and the runs' ids as a step output."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import click

from compressgate.registry.cli.options import (
    CATALOG_OPTION,
    FILE,
    JSON_OPTION,
    RUNNER_KEY_OPTION,
    TRUST_OPTION,
    WORKSPACE_OPTION,
    open_workspace,
    printable,
)
from compressgate.registry.cli.tables import emit, review_table, say, stage_line

if TYPE_CHECKING:
    from compressgate.gates.ci import CiResult


@click.command("ci")
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path, exists=True))
@click.option(
    "--base",
    metavar="REF",
    help="Check the recipes changed against this git ref (e.g. origin/main), committed or not; "
    "trust files are read as REF has them.",
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
    against REF are checked (without PATHS: every changed recipe in the repository), and a
    trust file is read as REF has it, never as the change has it. A run of the same recipe
    digest in the same environment is reused. Writes JUnit XML (--junit) and a Markdown summary
    (--summary, and appended to $GITHUB_STEP_SUMMARY when set). When $GITHUB_ACTIONS is true,
    prints an `::error file=RECIPE,line=N::` annotation at each failing gate's entry in its
    recipe (stderr with --json), and appends `run-ids=ID ...` to $GITHUB_OUTPUT when set.
    Exit: 0 all gates pass (approvals may still be awaited), 1 a gate failed, 2 bad input,
    3 integrity (signature), 5 environment mismatch; with several recipes the first of 3, 5,
    4, 2, 1.
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
            on_stage=stage_line,
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
    step_output = os.environ.get("GITHUB_OUTPUT")
    if step_output:
        run_ids = dict.fromkeys(r.run_id for r in results if r.run_id is not None)
        with Path(step_output).open("a", encoding="utf-8") as handle:
            handle.write(f"run-ids={' '.join(run_ids)}\n")
    if as_json:
        emit(results)
    elif not results:
        click.echo("no recipe to check" + (f" changed against {base}" if base else ""))
    else:
        for result in results:
            if result.review is not None:
                review_table(result.review)
            else:
                say(f"{result.path}: exit {result.exit_code}: {result.error}", err=True)
            for line in result.underpowered:
                say(f"warning: underpowered gate {line}")
    if os.environ.get("GITHUB_ACTIONS") == "true":
        for command in github_annotations(results):
            click.echo(command, err=as_json)
    sys.exit(exit_code(results))


# --- GitHub Actions annotations ----------------------------------------------------------------


def github_annotations(results: Sequence[CiResult]) -> list[str]:
    """GitHub Actions `::error` workflow commands for what failed, shown on the pull request's
    files: one at each failing gate's entry in its recipe (`file=RECIPE,line=N`), one on the
    recipe for a recipe that could not be checked or a run rejected with no failing gate."""
    from compressgate.gates.ci import evidence

    commands: list[str] = []
    for result in results:
        where = _repository_path(Path(result.path))
        review = result.review
        if review is None or result.error is not None:
            message = f"compressgate ci could not check {result.label()} (exit {result.exit_code})"
            commands.append(_command(where, None, f"{message}: {result.error or 'no detail'}"))
            continue
        failed = [gate for gate in review.gates if gate.state == "failed"]
        lines = _gate_lines(Path(result.path)) if failed else {}
        for gate in failed:
            d = gate.decision
            message = (
                f"gate '{d.gate}' failed ({result.label()}, after stage '{d.stage}'; its owner "
                f"{d.owner} may waive it): {evidence(d)}"
            )
            commands.append(_command(where, lines.get(d.gate), message))
        if review.status == "rejected" and not failed:
            reasons = "; ".join(review.reasons) or f"the run is {review.run_status}"
            commands.append(_command(where, None, f"{result.label()} rejected: {reasons}"))
    return commands


def _command(file: str, line: int | None, message: str) -> str:
    """`::error file=F,line=N::MESSAGE`, escaped as GitHub's toolkit escapes it: a message
    cannot end the command early or start another one on a line of its own."""
    properties = f"file={_escape(printable(file), in_property=True)}"
    if line is not None:
        properties += f",line={line}"
    return f"::error {properties}::{_escape(printable(message))}"


def _escape(text: str, *, in_property: bool = False) -> str:
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if in_property else text


def _gate_lines(recipe: Path) -> dict[str, int]:
    """Each gate's name → the 1-based line of its entry under `gates:` in the recipe file;
    nothing for a file that no longer reads as a recipe."""
    from compressgate.recipes.yamldoc import parse_yaml
    from compressgate.registry.kernel.errors import CompressgateError

    try:
        document = parse_yaml(recipe.read_text(encoding="utf-8"), str(recipe))
    except (CompressgateError, OSError, UnicodeDecodeError):
        return {}
    gates = document.data.get("gates")
    if not isinstance(gates, list):
        return {}
    found: dict[str, int] = {}
    for index, gate in enumerate(gates):
        if isinstance(gate, dict) and isinstance(gate.get("name"), str):
            found.setdefault(gate["name"], document.locate(("gates", index))[0])
    return found


def _repository_path(path: Path) -> str:
    """`path` relative to the top of its git work tree, as GitHub places annotations; else as
    given."""
    from compressgate.registry.changes import toplevel
    from compressgate.registry.kernel.errors import CompressgateError

    try:
        resolved = path.resolve()
        top = Path(toplevel(resolved.parent)).resolve()
        return resolved.relative_to(top).as_posix()
    except (CompressgateError, OSError, ValueError):
        return path.as_posix()
