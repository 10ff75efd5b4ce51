"""The read commands start fast: `catalog list`, `catalog search`, `alias history` and `review
status` import neither scipy nor torch nor scikit-learn, checked in a fresh interpreter for
each, on a workspace holding recorded runs, an approval signed by its gate's owner and an
alias.

How fast they start, against `compressgate --help`, is measured by `bench/startup.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from compressgate.registry import Workspace as Registry
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Workspace, make_workspace

HEAVY = ("scipy", "torch", "sklearn")
GATED, PLAIN = "run-20261123T100000Z-aaaaaa", "run-20261123T110000Z-bbbbbb"

# The console script's entry point, then the heavy modules it loaded, on stderr's last line
# (from an `atexit` function: `main` ends the process without the interpreter's teardown, but
# runs those).
WRAPPER = f"""\
import atexit, sys
sys.argv = ["compressgate", *sys.argv[1:]]
from compressgate.registry.cli import main
atexit.register(
    lambda: print("heavy: " + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
)
main()
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose catalog holds two runs, an approval of the first's gate (so that
    `review status` checks a signature against the trust file) and a promotion."""
    ws: Workspace = make_workspace(tmp_path_factory.mktemp("startup"))
    store = ws.root / ".cg"
    store.mkdir()
    url = f"sqlite:///{store / 'catalog.db'}"
    record_run(url, GATED, 0.97, recipe_file(ws.root / "gated.yaml", approval="required"))
    record_run(url, PLAIN, 0.96, recipe_file(ws.root / "plain.yaml"))
    with Registry(store) as registry:
        registry.sign_off(GATED, "accuracy", kind="approval", key_path=ws.key("ml-lead"))
        registry.promote(f"{GATED}/0/int8", "production", reason="startup test")
    return store


@pytest.mark.parametrize(
    ("command", "shown"),
    [
        (("catalog", "list"), GATED),
        (("alias", "history", "production"), f"promote production -> {GATED}/0/int8"),
        (("review", "status"), "status: approved"),
        (("review", "status", GATED, "--json"), '"kind": "approval"'),
        (("catalog", "search", "current=production gate=pass"), f"{GATED}/0/int8 [quantize]"),
    ],
    ids=" ".join,
)
def test_read_commands_import_no_scipy_torch_or_sklearn(
    folder: Path, command: tuple[str, ...], shown: str
) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command, "--workspace", str(folder)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert shown in result.stdout
    assert result.stderr.splitlines()[-1] == "heavy: "
