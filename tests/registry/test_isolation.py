"""Isolated runs: the parent keeps the catalog, a worker in the lock's environment runs stages.

These tests stand in an environment that takes a second to make: a `venv --without-pip` whose
site-packages point at this interpreter's (a `.pth` file), marked complete for the recipe's
lock. The worker really runs there (its sys.prefix says so); building a real one from a lock
is tests/registry/test_envs.py, and the reference recipe under the real runtime lock is
tests/e2e/test_isolation.py (slow).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from compressgate.registry import Workspace as Registry
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.kernel.errors import StageError
from compressgate.registry.run import envs
from tests.helpers.envs import add_pin
from tests.helpers.recipes import digests, exported, run, write_recipe
from tests.helpers.workspace import Invoke, Workspace

ROOT = Path(__file__).resolve().parents[2]


def stand_in_env(lock: Path, store: Path) -> Path:
    """A complete-looking environment of `lock` that borrows this interpreter's packages."""
    path = store / envs.lock_digest(lock)
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = path / "lib" / "python3.11" / "site-packages"
    borrowed = sysconfig.get_paths()["purelib"]
    (site / "borrowed.pth").write_text(f"import site; site.addsitedir({borrowed!r})\n{ROOT}\n")
    marker = {
        "lock_sha256": envs.lock_digest(lock),
        "compressgate_sha256": envs.code_digest(),
        "python": sys.version.split()[0],
        "pins": 0,
    }
    (path / envs.MARKER).write_text(json.dumps(marker))
    return path


def isolated(ws: Workspace) -> tuple[Path, Path]:
    store = ws.root / "envs"
    return store, stand_in_env(ws.root / "requirements.lock", store)


def runs_recorded(ws: Workspace) -> list[tuple[str, str | None]]:
    """(status, error) of every run in the workspace's catalog."""
    if not (ws.root / ".cg" / "catalog.db").exists():
        return []
    with Catalog(catalog_url(ws.root / ".cg"), create=False) as catalog:
        return [(r.status, catalog.run(r.run_id).error) for r in catalog.runs()]


def test_the_worker_runs_in_the_environment_and_the_record_names_it(
    workspace: Workspace, cli: Invoke
) -> None:
    store, env = isolated(workspace)
    write_recipe(workspace, DISTILL_EPOCHS="1")
    code, summary, stderr = run(cli, workspace, "--isolate", "--envs", str(store))
    assert code == 0, stderr
    assert summary["status"] == "succeeded"
    assert summary["isolated"]["path"] == str(env)
    assert summary["isolated"]["prefix"] == str(env)  # sys.prefix, reported from inside
    assert summary["isolated"]["built"] is False
    record = exported(cli, workspace, summary["run_id"])
    interpreter = record["environment"]["interpreter"]  # as the worker reported it
    assert interpreter["prefix"] == str(env) != sys.prefix
    assert interpreter["executable"] == str(env / "bin" / "python")
    assert record["environment"]["isolated"]["lock_sha256"] == envs.lock_digest(
        workspace.root / "requirements.lock"
    )
    assert [s["name"] for s in record["stages"]] == [s["name"] for s in summary["stages"]]
    audit = cli("audit", "verify", "--workspace", workspace.root / ".cg")
    assert audit.exit_code == 0, audit.stderr


def test_a_refusal_in_the_worker_keeps_its_exit_code_and_records_nothing(
    workspace: Workspace, cli: Invoke
) -> None:
    lock = workspace.root / "requirements.lock"
    add_pin(lock, "compressgate-no-such-package==1.0")
    store, _ = isolated(workspace)
    command = ("run", workspace.recipe, "--workspace", workspace.root / ".cg", "--isolate")
    # Refused by the worker: its interpreter does not have the locked package.
    write_recipe(workspace)
    result = cli(*command, "--envs", store)
    assert result.exit_code == 5
    assert "compressgate-no-such-package: wanted 1.0, found not installed" in result.stderr
    assert runs_recorded(workspace) == []
    assert not (workspace.root / ".cg" / "objects").exists()


@pytest.mark.slow
def test_a_trust_file_swapped_after_the_parent_verified_is_refused_by_the_worker(
    workspace: Workspace, cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker loads the trust (its module allow-list) from a path: it must be the bytes the
    parent verified the recipe against, or someone who can write the workspace could allow
    other modules between the two."""
    from compressgate.registry.run import isolation

    store, _ = isolated(workspace)
    write_recipe(workspace)
    worker = isolation._Worker

    def swapping(python: Path, request: dict) -> object:  # type: ignore[type-arg]
        trust = Path(request["trust"])
        trust.write_text(trust.read_text() + "# swapped after verification\n")
        return worker(python, request)

    monkeypatch.setattr(isolation, "_Worker", swapping)
    result = cli("run", workspace.recipe, "--workspace", workspace.root / ".cg", "--isolate",
                 "--envs", store)  # fmt: skip
    assert result.exit_code == 3
    assert "changed after the run verified the recipe against it" in result.stderr
    assert runs_recorded(workspace) == []


def test_a_stage_error_in_the_worker_is_the_same_error_and_the_run_is_recorded_failed(
    workspace: Workspace, cli: Invoke
) -> None:
    store, _ = isolated(workspace)
    write_recipe(workspace, STUDENT_ARGS="{channels: [6, 12], hidden: 24, nonsense: 1}")
    result = cli(
        "run", workspace.recipe, "--workspace", workspace.root / ".cg", "--isolate",
        "--envs", store,
    )  # fmt: skip
    assert result.exit_code == 2, result.stderr
    assert "nonsense" in result.stderr
    ((status, error),) = runs_recorded(workspace)
    assert status == "failed" and "nonsense" in (error or "")


@pytest.mark.slow
def test_a_worker_killed_mid_run_is_recorded_failed_by_the_parent(workspace: Workspace) -> None:
    store, _ = isolated(workspace)
    write_recipe(workspace, DISTILL_EPOCHS="1")

    def kill_the_worker(stage: object) -> None:
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == os.getpid():  # a child of this process: the worker
                os.kill(int(stat.parent.name), signal.SIGKILL)

    with (
        pytest.raises(StageError, match=r"ended without a result \(exit -9\)"),
        Registry(workspace.root / ".cg", envs=store) as ws,
    ):
        ws.run(workspace.recipe, isolate=True, on_stage=kill_the_worker)
    ((status, error),) = runs_recorded(workspace)
    assert status == "failed" and "exit -9" in (error or "")


@pytest.mark.slow
def test_isolated_and_in_process_runs_give_identical_artifacts_and_metrics(
    workspace: Workspace, cli: Invoke
) -> None:
    store, _ = isolated(workspace)
    write_recipe(workspace)
    code, alone, stderr = run(cli, workspace, "--isolate", "--envs", str(store))
    assert code == 0, stderr
    code, here, stderr = run(cli, workspace, "--force")
    assert code == 0, stderr
    # Without --isolate the run stays in this interpreter, as before.
    assert here["isolated"] is None
    record = exported(cli, workspace, here["run_id"])
    assert record["environment"]["interpreter"]["prefix"] == sys.prefix
    assert "isolated" not in record["environment"]
    assert digests(alone) == digests(here)

    def measured(summary: dict) -> list[dict]:  # type: ignore[type-arg]
        """Every metric but what measures the process (times, peak memory)."""
        return [
            {
                k: v
                for k, v in s["metrics"].items()
                if not k.startswith(("latency", "size.peak_memory"))
            }
            for s in summary["stages"]
        ]

    differing = [
        (s, k, v, b[k])
        for s, (a, b) in enumerate(zip(measured(alone), measured(here), strict=True))
        for k, v in a.items()
        if v != b.get(k)
    ]
    assert differing == []
