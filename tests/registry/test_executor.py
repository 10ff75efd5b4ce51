"""The executor through `compressgate run` / `reproduce`, on a small, fast digits recipe."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import allow_modules
from compressgate.registry.catalog.records import RunRecord
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.kernel.keys import load_private_key
from tests.helpers.envs import add_pin, repin
from tests.helpers.recipes import digests, exported, run, write_recipe
from tests.helpers.workspace import Invoke, Workspace

STAGES = ["baseline", "distill", "prune", "int8", "export"]


def recorded_stages(catalog: Path) -> set[str]:
    """The stages a (running) run has recorded so far, read with plain sqlite3."""
    if not catalog.exists():
        return set()
    try:
        with contextlib.closing(sqlite3.connect(catalog, timeout=5)) as db:
            return {row[0] for row in db.execute("SELECT stage FROM variants")}
    except sqlite3.OperationalError:  # not created yet
        return set()


def blobs(root: Path) -> set[str]:
    objects = root / "objects" / "sha256"
    return {p.parent.name + p.name for p in objects.glob("*/*")} if objects.exists() else set()


def test_run_prints_the_summary_contract_and_stores_a_chain(
    workspace: Workspace, cli: Invoke
) -> None:
    write_recipe(workspace)
    code, summary, stderr = run(cli, workspace)
    assert code == 0, stderr
    assert summary["status"] == "succeeded"
    assert summary["run_id"].startswith("run-")
    assert set(summary["recipe"]) >= {"name", "sha256"}
    assert summary["recipe"]["name"] == "digits-quick"
    stages = summary["stages"]
    assert [s["name"] for s in stages] == STAGES
    assert [s["kind"] for s in stages] == ["baseline", "distill", "prune", "quantize", "export"]
    store = workspace.root / ".cg"
    for before, stage in itertools.pairwise(stages):
        assert stage["parent_sha256"] == before["artifact_sha256"]
    for stage in stages:
        assert set(stage) >= {
            "name",
            "kind",
            "artifact_sha256",
            "size_bytes",
            "params",
            "macs",
            "metrics",
        }
        accuracy = stage["metrics"]["accuracy"]
        assert accuracy["ci_low"] < accuracy["estimate"] < accuracy["ci_high"]
        assert accuracy["estimate"] > 0.3  # chance is 0.1; a quick recipe, not a good one
        sha = stage["artifact_sha256"]
        assert (store / "objects" / "sha256" / sha[:2] / sha[2:]).stat().st_size == stage[
            "size_bytes"
        ]
    assert stages[2]["params"] < stages[1]["params"] < stages[0]["params"]
    assert stages[2]["macs"] < stages[1]["macs"] < stages[0]["macs"]
    assert stages[3]["size_bytes"] < stages[2]["size_bytes"]
    record = exported(cli, workspace, summary["run_id"])
    assert record["status"] == "succeeded"
    fingerprint = record["environment"]["fingerprint"]
    assert fingerprint["threads"]["torch_intra_op"] == 1
    assert fingerprint["torch"]["deterministic_algorithms"] is True
    assert fingerprint["packages"]["torch"].startswith("2.13.0")
    assert set(record["data"]["0"]) == {"train", "calibration", "test"}


def test_rerun_reuses_every_stage_and_force_recomputes_the_same_bytes(
    workspace: Workspace, cli: Invoke
) -> None:
    write_recipe(workspace)
    _, first, _ = run(cli, workspace)
    _, again, _ = run(cli, workspace)
    assert [s["cached"] for s in again["stages"]] == [True] * len(STAGES)
    assert digests(again) == digests(first)
    _, forced, _ = run(cli, workspace, "--force")
    assert [s["cached"] for s in forced["stages"]] == [False] * len(STAGES)
    assert digests(forced) == digests(first)
    # a changed stage spec invalidates that stage and everything after it, nothing before
    write_recipe(workspace, PRUNE_EPOCHS="2")
    _, changed, _ = run(cli, workspace)
    assert [s["cached"] for s in changed["stages"]] == [True, True, False, False, False]
    assert digests(changed)[:2] == digests(first)[:2]
    assert digests(changed)[2] != digests(first)[2]


def test_reproduce_says_identical_then_names_a_stage_that_differs(
    workspace: Workspace, cli: Invoke
) -> None:
    write_recipe(workspace)
    _, summary, _ = run(cli, workspace)
    run_id = summary["run_id"]
    result = cli("reproduce", run_id, "--workspace", workspace.root / ".cg", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["identical"] is True
    assert [s["name"] for s in report["stages"]] == STAGES
    # A catalog that says the prune artifact was something else: reproduce must notice.
    record = RunRecord.model_validate(exported(cli, workspace, run_id))
    other = workspace.root / "other.db"
    with Catalog(catalog_url(workspace.root, str(other))) as catalog:
        catalog.record_run_start(record, recipe_content="", envelope="", lock_sha256="")
        for stage in record.stages:
            if stage.name == "prune":
                stage = stage.model_copy(update={"artifact_sha256": "0" * 64})
            catalog.record_stage(run_id, record.recipe.sha256, stage, {})
        catalog.record_run_end(record)
    result = cli("reproduce", run_id, "--workspace", workspace.root / ".cg", "--catalog", other)
    assert result.exit_code == 3
    assert "stage 'prune' (seed 0)" in result.stderr
    assert "seed 0 · prune: DIFFERS" in result.stdout
    # The same artifacts, but a forged accuracy (as a re-sealed cache entry would bring in):
    # every evaluation is recomputed, so the figure does not reproduce.
    forged = workspace.root / "forged.db"
    with Catalog(catalog_url(workspace.root, str(forged))) as catalog:
        catalog.record_run_start(record, recipe_content="", envelope="", lock_sha256="")
        for stage in record.stages:
            if stage.name == "int8":
                metrics = dict(stage.metrics)
                metrics["accuracy"] = metrics["accuracy"].model_copy(update={"estimate": 0.999})
                stage = stage.model_copy(update={"metrics": metrics})
            catalog.record_stage(run_id, record.recipe.sha256, stage, {})
        catalog.record_run_end(record)
    result = cli("reproduce", run_id, "--workspace", workspace.root / ".cg", "--catalog", forged)
    assert result.exit_code == 3
    assert "stage 'int8' (seed 0) measured differently: accuracy: recorded 0.999" in result.stderr


@pytest.mark.parametrize(
    ("changes", "stage", "says"),
    [
        ({"SKIP": "[conv9]"}, "prune", "skip: unknown layer 'conv9'"),
        ({"CALIBRATION": "0"}, "int8", "the calibration split has 0 samples"),
        ({"STUDENT_ARGS": "{hidden: -1}"}, "distill", "build_student raised RuntimeError"),
        (
            {
                "STUDENT_FACTORY": "torch.nn:Linear",
                "STUDENT_ARGS": "{in_features: 3, out_features: 10}",
            },
            "distill",
            "the student does not fit the data",
        ),
    ],
    ids=["unknown-layer", "zero-calibration", "factory-raises", "student-does-not-fit"],
)
def test_a_broken_stage_exits_2_naming_it_and_leaves_no_artifact(
    changes: dict[str, str], stage: str, says: str, workspace: Workspace, cli: Invoke
) -> None:
    allow_modules(workspace.trust, ("torch.nn",))  # the student that does not fit is a Linear
    write_recipe(workspace, **changes)
    code, _, stderr = run(cli, workspace)
    assert code == 2, stderr
    assert f"stage '{stage}' (seed 0)" in stderr and says in stderr
    assert "Traceback" not in stderr
    root = workspace.root / ".cg"
    (listed,) = json.loads(cli("catalog", "list", "--workspace", root, "--json").stdout)
    shown = cli("catalog", "show", listed["run_id"], "--workspace", root, "--json")
    record = json.loads(shown.stdout)
    assert record["status"] == "failed" and listed["status"] == "failed"
    done = [s for s in record["stages"] if s["status"] == "done"]
    failed = [s for s in record["stages"] if s["status"] == "failed"]
    assert [s["name"] for s in failed] == [stage]
    assert failed[0]["artifact_sha256"] is None
    # The store holds what finished stages made (and the baseline's ONNX yardstick), no more.
    made = {s["artifact_sha256"] for s in done} | {done[0]["details"]["onnx_sha256"]}
    assert blobs(root) == made
    assert len(list((root / "cache").glob("*.json"))) == len(done)


def test_strict_environment_mismatch_exits_5_listing_each_package(
    workspace: Workspace, cli: Invoke
) -> None:
    lock = workspace.root / "requirements.lock"
    repin(lock, click="0.0.1", rich="1.0")
    add_pin(lock, "no-such-package==1.0")
    write_recipe(workspace)
    code, _, stderr = run(cli, workspace)
    assert code == 5
    assert "click: wanted 0.0.1, found 8.5.1" in stderr
    assert "rich: wanted 1.0, found 15.0.0" in stderr
    assert "no-such-package: wanted 1.0, found not installed" in stderr
    assert not (workspace.root / ".cg").exists()


def test_a_lenient_environment_mismatch_is_recorded_and_the_run_goes_on(
    workspace: Workspace, cli: Invoke
) -> None:
    lock = workspace.root / "requirements.lock"
    repin(lock, click="0.0.1")
    write_recipe(workspace)
    workspace.recipe.write_text(
        workspace.recipe.read_text().replace("strict: true", "strict: false")
    )
    sign_recipe(workspace.recipe, load_private_key(workspace.key("ml-platform")))
    code, summary, stderr = run(cli, workspace)
    assert code == 0, stderr
    assert summary["environment_mismatches"] == ["click: wanted 0.0.1, found 8.5.1"]
    record = exported(cli, workspace, summary["run_id"])
    assert record["environment"]["strict"] is False
    assert record["environment"]["mismatches"] == ["click: wanted 0.0.1, found 8.5.1"]


def test_a_tampered_recipe_is_refused_before_anything_runs(
    workspace: Workspace, cli: Invoke
) -> None:
    write_recipe(workspace)
    workspace.recipe.write_text(workspace.recipe.read_text().replace("epochs: 3", "epochs: 4"))
    code, _, stderr = run(cli, workspace)
    assert code == 3, stderr
    assert not (workspace.root / ".cg").exists()


def test_final_artifact_runs_in_plain_onnxruntime(workspace: Workspace, cli: Invoke) -> None:
    write_recipe(workspace)
    _, summary, _ = run(cli, workspace)
    final = summary["stages"][-1]
    sha = final["artifact_sha256"]
    path = workspace.root / ".cg" / "objects" / "sha256" / sha[:2] / sha[2:]
    # The test split rebuilt with scikit-learn alone, as
    # compressgate.recipes.examples.digits.load(0) makes it.
    script = (
        "import sys, numpy as np, onnxruntime as ort\n"
        "from sklearn.datasets import load_digits\n"
        "from sklearn.model_selection import train_test_split\n"
        "d = load_digits()\n"
        "x = (d.images / 16.0).astype(np.float32)[:, None]\n"
        "_, test = train_test_split(np.arange(len(x)), test_size=0.25, stratify=d.target,\n"
        "                           random_state=0)\n"
        "test = np.sort(test)\n"
        "s = ort.InferenceSession(sys.argv[1], providers=['CPUExecutionProvider'])\n"
        "out = s.run(None, {s.get_inputs()[0].name: x[test]})[0]\n"
        "assert not [m for m in sys.modules if m.split('.')[0] in "
        "('compressgate', 'registry', 'recipes', 'evaluators', 'torch')]\n"
        "print(float((out.argmax(1) == d.target[test]).mean()))\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(final["metrics"]["accuracy"]["estimate"], abs=1e-9)


@pytest.mark.slow
def test_a_run_killed_during_prune_resumes_from_prune(workspace: Workspace) -> None:
    write_recipe(workspace, PRUNE_EPOCHS="16")  # a prune stage long enough to be caught in
    root = workspace.root / ".cg"
    command = [
        str(Path(sys.executable).parent / "compressgate"),
        "run",
        str(workspace.recipe),
        "--workspace",
        str(root),
        "--json",
    ]
    env = dict(os.environ)
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline:
            if recorded_stages(root / "catalog.db") >= {"baseline", "distill"}:
                # Killed at once: a pause here let a loaded machine finish prune first.
                process.send_signal(signal.SIGKILL)
                break
            assert process.poll() is None, "the run ended before its prune stage was caught"
            time.sleep(0.05)
        else:
            pytest.fail("the prune stage never started")
        process.wait()
        assert "prune" not in recorded_stages(root / "catalog.db"), "prune ended before the kill"
    finally:
        if process.poll() is None:
            process.kill()
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert [s["cached"] for s in summary["stages"]] == [True, True, False, False, False]
    # The killed run's records are intact: the chain verifies, its stages up to distill are
    # there, and it is listed as never having ended.
    audit = subprocess.run(
        [command[0], "audit", "verify", "--workspace", str(root), "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert audit.returncode == 0, audit.stderr
    listed = subprocess.run(
        [command[0], "catalog", "list", "--workspace", str(root), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    killed, resumed = sorted(json.loads(listed.stdout), key=lambda r: r["started_at"])
    assert killed["status"] == "running" and resumed["status"] == "succeeded"
    fresh = subprocess.run(
        [*command[:-3], "--workspace", str(workspace.root / "fresh"), "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert digests(json.loads(fresh.stdout)) == digests(summary)
