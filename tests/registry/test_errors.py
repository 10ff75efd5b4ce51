"""The exception tree carries docs/architecture.md's exit codes; the CLI prints them as promised."""

from __future__ import annotations

import click
import pytest

from compressgate.registry.cli import cli as cli_group
from compressgate.registry.kernel import errors
from tests.helpers.workspace import Invoke


def test_exit_codes_are_those_of_design() -> None:
    assert errors.CompressgateError.exit_code == 1
    assert errors.ManifestError.exit_code == 2
    assert errors.IntegrityError.exit_code == 3
    assert errors.NotFoundError.exit_code == 4
    assert errors.EnvironmentMismatch.exit_code == 5
    assert issubclass(errors.ManifestError, ValueError)
    assert issubclass(errors.NotFoundError, LookupError)


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.CompressgateError("rejected"), 1),
        (errors.ManifestError("bad", hint="fix it"), 2),
        (errors.IntegrityError("tampered"), 3),
        (errors.NotFoundError("gone"), 4),
        (errors.EnvironmentMismatch("torch 2.12 != 2.13"), 5),
    ],
)
def test_cli_turns_errors_into_message_hint_and_exit_code(
    error: errors.CompressgateError, code: int, cli: Invoke
) -> None:
    @cli_group.command("boom")
    def boom() -> None:
        raise error

    try:
        result = cli("boom")
    finally:
        cli_group.commands.pop("boom")
    assert result.exit_code == code
    expected = f"Error: {error}\n" + (f"hint: {error.hint}\n" if error.hint else "")
    assert result.stderr == expected
    assert result.stdout == ""


def test_issues_print_one_line_each() -> None:
    issues = (
        errors.Issue("r.yaml", 3, "metadata.name", "bad"),
        errors.Issue("r.yaml", None, "", "not UTF-8"),
    )
    assert (
        str(errors.ManifestError(issues=issues)) == "r.yaml:3 metadata.name: bad\nr.yaml: not UTF-8"
    )


def test_click_usage_errors_exit_2_like_bad_input() -> None:
    assert click.UsageError("x").exit_code == errors.EXIT_BAD_INPUT
