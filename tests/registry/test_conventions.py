"""The command line's conventions (issue 24): errors as JSON under `--json`, standard `logging`
behind -v/--verbose and $COMPRESSGATE_LOG, one plain line per stage and seed from `submit`, and
shell completion from click."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.counting import sign
from tests.helpers.workspace import Invoke
from tests.helpers.workspace import Workspace as Folder

EXE = Path(sys.executable).parent / "compressgate"


def test_an_error_under_json_is_one_json_object_on_stdout(cli: Invoke, workspace: Folder) -> None:
    """A recipe never signed (its envelope is not found): exit 4, and the reason as JSON where
    the result would have been."""
    result = cli("submit", workspace.recipe, "--workspace", workspace.root / ".cg", "--json")
    assert result.exit_code == 4
    error = json.loads(result.stdout)
    assert set(error) == {"error", "exit_code", "hint"}
    assert error["exit_code"] == 4 and "recipe.yaml" in error["error"]
    assert result.stderr.startswith("Error: ")  # the person reading stderr is told as before
    plain = cli("submit", workspace.recipe, "--workspace", workspace.root / ".cg")
    assert plain.exit_code == 4 and plain.stdout == ""


def test_not_found_and_usage_errors_under_json_keep_their_exit_codes(
    cli: Invoke, tmp_path: Path
) -> None:
    gone = cli("catalog", "show", "run-nope", "--workspace", tmp_path / "ws", "--json")
    assert gone.exit_code == 4
    assert json.loads(gone.stdout)["exit_code"] == 4
    # A usage error (an unknown option) says so in JSON too, exit 2.
    done = subprocess.run(
        [str(EXE), "catalog", "list", "--json", "--no-such-option"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 2
    usage = json.loads(done.stdout)
    assert usage["exit_code"] == 2 and "--no-such-option" in usage["error"]


def test_verbose_sets_the_compressgate_loggers_level_and_nothing_else(
    cli: Invoke, tmp_path: Path
) -> None:
    logger = logging.getLogger("compressgate")

    def ours() -> list[logging.Handler]:
        return [h for h in logger.handlers if getattr(h, "compressgate_cli", False)]

    assert cli("-vv", "env", "list", "--envs", tmp_path).exit_code == 0
    assert logger.level == logging.DEBUG and len(ours()) == 1 and not logger.propagate
    assert cli("-v", "env", "list", "--envs", tmp_path).exit_code == 0
    assert logger.level == logging.INFO and len(ours()) == 1  # replaced, not added
    assert cli("env", "list", "--envs", tmp_path).exit_code == 0
    assert ours() == []  # without -v nothing is logged
    assert logging.getLogger().handlers == [] or all(
        not getattr(h, "compressgate_cli", False) for h in logging.getLogger().handlers
    )


def test_the_log_level_comes_from_the_environment_and_a_bad_one_is_refused(
    tmp_path: Path,
) -> None:
    environ = dict(os.environ, COMPRESSGATE_LOG="loud")
    done = subprocess.run(
        [str(EXE), "catalog", "list", "--workspace", str(tmp_path)],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    assert done.returncode == 2
    assert "$COMPRESSGATE_LOG='loud' is not a level" in done.stderr
    environ["COMPRESSGATE_LOG"] = "debug"
    (tmp_path / "ws").mkdir()
    done = subprocess.run(
        [str(EXE), "env", "list", "--envs", str(tmp_path / "envs")],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "no environments" in done.stdout


@pytest.mark.slow
def test_submit_prints_a_plain_line_per_stage_and_seed_and_logs_with_v(
    cli: Invoke, workspace: Folder
) -> None:
    """Not a terminal (as in CI): no bars, one line as each stage of each seed ends; with -v
    the standard log records of what was verified and run."""
    text = workspace.recipe.read_text()
    text = text.replace("seeds: [0, 1, 2]", "seeds: [0, 1]").replace("epochs: 40", "epochs: 1")
    workspace.recipe.write_text(text.replace("finetune_epochs: 3", "finetune_epochs: 1"))
    sign(cli, workspace)
    result = cli("-v", "submit", workspace.recipe, "--workspace", workspace.root / ".cg", "--json")
    assert result.exit_code in (0, 1), result.stderr
    stages = [line for line in result.stderr.splitlines() if line.startswith("seed ")]
    names = ["baseline", "distill", "prune", "int8", "export"]
    # The seeds take turns, stage by stage (the first seed's gates judge before the next stage).
    assert [line.split(" · ")[1].split(" [")[0] for line in stages] == [
        name for name in names for _ in (0, 1)
    ]
    assert [line.split()[1] for line in stages] == ["0", "1"] * 5
    assert "signature verified against" in result.stderr
    assert "compressgate.registry.run.engine: seed 0 distill [distill]: running" in result.stderr
    json.loads(result.stdout)  # stdout is the JSON alone


def test_shell_completion_comes_from_click() -> None:
    done = subprocess.run(
        [str(EXE)],
        capture_output=True,
        text=True,
        env=dict(os.environ, _COMPRESSGATE_COMPLETE="bash_source"),
        check=False,
    )
    assert done.returncode == 0
    assert "complete -o nosort -F _compressgate_completion compressgate" in done.stdout
    done = subprocess.run(
        [str(EXE)],
        capture_output=True,
        text=True,
        env=dict(
            os.environ,
            _COMPRESSGATE_COMPLETE="bash_complete",
            COMP_WORDS="compressgate al",
            COMP_CWORD="1",
        ),
        check=False,
    )
    assert "plain,alias" in done.stdout.split()
