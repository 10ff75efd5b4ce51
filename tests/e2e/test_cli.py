"""The CLI as a user meets it: a subprocess, exit codes, start-up cost, every --help."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest

from compressgate.registry.cli import cli as cli_group
from compressgate.registry.kernel.errors import EXIT_INTERNAL
from compressgate.registry.workspace import Workspace as Registry
from tests.helpers.workspace import Invoke, Workspace

EXE = Path(sys.executable).parent / "compressgate"


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, check=False)


def test_start_up_imports_neither_torch_nor_pydantic() -> None:
    code = (
        "import sys, compressgate.registry.cli; "
        "print(sorted(m for m in ('torch', 'pydantic', 'yaml', 'numpy') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_lists_the_commands_and_exit_codes() -> None:
    result = run("--help")
    assert result.returncode == 0
    for word in ("recipe", "keys", "trust", "2 bad input", "3", "integrity failure"):
        assert word in result.stdout


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += all_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


@pytest.mark.parametrize("command", all_commands(cli_group), ids=" ".join)
def test_every_command_has_help(command: tuple[str, ...], cli: Invoke) -> None:
    result = cli(*command, "--help")
    assert result.exit_code == 0
    assert result.stdout.startswith("Usage: ")


def test_bad_manifest_in_a_subprocess_is_one_line_and_exit_2(workspace: Workspace) -> None:
    workspace.recipe.write_text(workspace.recipe.read_text().replace("kind: prune", "kind: prun"))
    result = run("recipe", "validate", workspace.recipe)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert "stages[1].kind: unknown kind 'prun'" in result.stderr


def test_unknown_option_is_bad_input(workspace: Workspace) -> None:
    result = run("recipe", "validate", workspace.recipe, "--strictly")
    assert result.returncode == 2
    assert "Error: No such option '--strictly'" in result.stderr


def test_schema_is_json_schema_of_the_recipe() -> None:
    result = run("recipe", "schema")
    assert result.returncode == 0
    schema = json.loads(result.stdout)
    assert schema["title"] == "Recipe"
    assert set(schema["required"]) >= {"apiVersion", "kind", "metadata", "stages"}


def test_explain_json_lists_stages_in_order_and_gate_owners(workspace: Workspace) -> None:
    result = run("recipe", "explain", workspace.recipe, "--json")
    assert result.returncode == 0, result.stderr
    explanation = json.loads(result.stdout)
    assert [s["name"] for s in explanation["stages"]] == ["distill", "prune", "int8", "export"]
    assert [(g["name"], g["owner"], g["after"]) for g in explanation["gates"]] == [
        ("prune-accuracy", "ml-lead", "prune"),
        ("accuracy", "ml-lead", "int8"),
        ("fairness", "responsible-ai", "export"),
        ("latency", "serving", "export"),
    ]


def test_explain_text_says_what_each_stage_does(workspace: Workspace) -> None:
    result = run("recipe", "explain", workspace.recipe)
    assert result.returncode == 0
    assert (
        "2. prune [prune]: structured pruning (channels removed) to 50% sparsity" in result.stdout
    )
    assert "accuracy, owned by ml-lead, after stage int8:" in result.stdout


def test_init_refuses_to_overwrite(workspace: Workspace, cli: Invoke) -> None:
    before = workspace.recipe.read_bytes()
    result = cli("recipe", "init", workspace.root)
    assert result.exit_code == 2
    assert "already exist" in result.stderr
    assert workspace.recipe.read_bytes() == before


def test_init_copies_the_example_and_its_files(tmp_path: Path, cli: Invoke) -> None:
    result = cli("recipe", "init", tmp_path / "new", "--example", "digits-qat")
    assert result.exit_code == 0
    assert sorted(p.name for p in (tmp_path / "new").iterdir()) == [
        "recipe.yaml",
        "requirements.lock",
    ]
    assert cli("recipe", "validate", tmp_path / "new" / "recipe.yaml").exit_code == 0


# --- an unexpected exception is a bug: exit 70, one line, the traceback in a log ----------------

BUG_LINE = re.compile(
    r"Error: internal error \(BUG\): RuntimeError: the catalog fell over; traceback in (\S+)\n"
)


def fall_over(*_: object, **__: object) -> None:
    raise RuntimeError("the catalog fell over")


def test_an_unexpected_exception_exits_70_with_one_line_and_the_traceback_in_a_log(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPRESSGATE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(Registry, "runs", fall_over)
    result = cli("catalog", "list", "--workspace", tmp_path / "ws")
    assert result.exit_code == EXIT_INTERNAL == 70
    assert result.stdout == ""
    found = BUG_LINE.fullmatch(result.stderr)
    assert found is not None, result.stderr
    log = Path(found[1])
    assert log.parent == (tmp_path / "logs").resolve()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    text = log.read_text()
    assert "Traceback (most recent call last):" in text
    assert "in fall_over\n" in text
    assert text.rstrip().endswith("RuntimeError: the catalog fell over")


def test_without_a_log_folder_the_log_goes_to_the_workspace(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COMPRESSGATE_LOG_DIR", raising=False)
    monkeypatch.setattr(Registry, "alias_history", fall_over)
    (tmp_path / "ws").mkdir()
    result = cli("alias", "history", "production", "--workspace", tmp_path / "ws")
    assert result.exit_code == 70
    found = BUG_LINE.fullmatch(result.stderr)
    assert found is not None, result.stderr
    assert Path(found[1]).parent == (tmp_path / "ws" / "logs").resolve()
    assert "RuntimeError: the catalog fell over" in Path(found[1]).read_text()


def test_the_console_script_exits_70_on_a_bug(tmp_path: Path) -> None:
    # The real entry point in its own process, with one API function replaced by a failing one.
    code = (
        "import sys\n"
        "from compressgate.registry.workspace import Workspace\n"
        "def fall_over(*_, **__):\n"
        "    raise RuntimeError('the catalog fell over')\n"
        "Workspace.review = fall_over\n"
        "sys.argv = ['compressgate', 'review', 'status', '--workspace', sys.argv[1]]\n"
        "from compressgate.registry.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "COMPRESSGATE_LOG_DIR": str(tmp_path / "logs")}
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 70
    found = BUG_LINE.fullmatch(result.stderr)
    assert found is not None, result.stderr
    assert "in fall_over" in Path(found[1]).read_text()


def test_an_interrupt_exits_130_not_1(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*_: object, **__: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setenv("COMPRESSGATE_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(Registry, "runs", interrupted)
    result = cli("catalog", "list", "--workspace", tmp_path / "ws")
    assert result.exit_code == 130
    assert result.stderr == "\nAborted!\n"
    assert not (tmp_path / "logs").exists()


def test_help_names_the_conflict_and_internal_error_exit_codes() -> None:
    result = run("--help")
    text = " ".join(result.stdout.split())
    assert "6 conflict (another process changed it first: retry)" in text
    assert "70 internal error (a bug: the log named holds the traceback)" in text
