"""Sweeps end to end, through the command line (slow: about four minutes in all).

One undisturbed sweep of a small digits recipe (6 trials: two pruning shares, three student
widths of which one cannot be built) is the reference; the fault tests run the same sweep again
in new catalogs beside a copy of its stage cache and artifacts (so each trial is quick) while
something goes wrong — a worker killed mid-trial (local and Ray), the sweep itself killed and
run again — and must end with the undisturbed sweep's trials, frontier and choice, each trial
recorded once. The chosen variant is proposed, signed and submitted: its provenance verifies,
and a hand-edited copy does not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.sweep import sign_sweep
from compressgate.recipes.trust import load_trust
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.keys import load_private_key
from tests.helpers.recipes import DEFAULTS, QUICK
from tests.helpers.workspace import Workspace, make_workspace

pytestmark = pytest.mark.slow

CG = str(Path(sys.executable).parent / "compressgate")
GATES = """evaluators:
  - kind: accuracy
  - kind: paired
  - kind: size
gates:
  - {name: prune-accuracy, owner: ml-lead, after: prune, metric: accuracy, rule: non_inferior,
     margin: 0.2}
"""
SWEEP = """\
apiVersion: compressgate/v1
kind: Sweep
metadata: {{name: quick-sweep, version: 1, owners: [ml-platform]}}
recipe: {{path: recipe.yaml, sha256: {sha256}}}
selection: {{fraction: 0.3, seed: 0}}
axes:
  stages[prune].sparsity: [0.5, 0.875]
  stages[distill].student.args.hidden: [24, 16, -1]
objectives:
  - {{metric: size.bytes, stage: export, goal: minimize}}
  - {{metric: accuracy, stage: export, goal: maximize}}
strategy: {{kind: grid, seed: 0, batch: 2}}
choose: {{objective: size.bytes, constraints: [{{metric: accuracy, min: 0.5}}]}}
"""


def command(*args: object, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CG, *map(str, args)], capture_output=True, text=True, check=False, env=env
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The workspace, the signed sweep, and the undisturbed sweep's result."""
    folder = tmp_path_factory.mktemp("sweep")
    ws = make_workspace(folder)
    text = QUICK
    for name, value in DEFAULTS.items():
        text = text.replace(name, value)
    ws.recipe.write_text(text + GATES)
    key = load_private_key(ws.key("ml-platform"))
    sign_recipe(ws.recipe, key, load_trust(ws.trust))
    sweep = ws.root / "sweep.yaml"
    sweep.write_text(SWEEP.format(sha256=sha256_file(ws.recipe)))
    sign_sweep(sweep, key, load_trust(ws.trust))
    home = folder / "reference"
    done = command("sweep", "run", sweep, "--workspace", home, "--workers", "2", "--json")
    assert done.returncode == 0, done.stderr
    yield {"ws": ws, "sweep": sweep, "home": home, "result": json.loads(done.stdout)}


def outcome(result: dict[str, Any]) -> list[tuple[Any, ...]]:
    """What must not change with faults: each trial's parameters, status and objectives."""
    return [
        (
            t["trial"],
            json.dumps(t["params"], sort_keys=True),
            t["status"],
            t["failed_gates"],
            t["objectives"],
        )
        for t in result["trials"]
    ]


def copy_work(scene: dict[str, Any], to: Path) -> Path:
    """A new workspace with the reference's stage cache and artifacts, and no catalog."""
    shutil.copytree(scene["home"], to, ignore=shutil.ignore_patterns("catalog.db*", "logs"))
    return to


def trial_rows(home: Path) -> list[tuple[int, str | None]]:
    with Catalog(catalog_url(home, None), create=False) as catalog:
        sweep = catalog.sweeps(limit=1)[0]
        return [(t.trial, t.run_id) for t in catalog.sweep_trials(sweep.sweep_id)]


def processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            line = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if marker in line:
            found.append(int(entry.name))
    return found


def kill_first(marker: str, *, timeout: float = 120) -> int:
    """SIGKILL the first process whose command line holds `marker`, once one exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid in processes(marker):
            if pid != os.getpid():
                os.kill(pid, signal.SIGKILL)
                return pid
        time.sleep(0.05)
    raise AssertionError(f"no process {marker!r} appeared")


def test_the_undisturbed_sweep_records_its_trials_frontier_and_choice(
    scene: dict[str, Any],
) -> None:
    result, home = scene["result"], scene["home"]
    trials = result["trials"]
    assert [t["trial"] for t in trials] == list(range(6))
    crashed = [t for t in trials if t["params"]["stages[distill].student.args.hidden"] == -1]
    assert {t["status"] for t in crashed} == {"crashed"}
    assert all("distill" in t["error"] and t["objectives"] == {} for t in crashed)
    ran = [t for t in trials if t not in crashed]
    with Catalog(catalog_url(home, None), create=False) as catalog:
        for t in trials:
            # every trial that started a run is a run of the catalog, linked to the sweep
            assert t["run_id"] is not None
            assert catalog.sweep_of_run(t["run_id"]) == (result["sweep_id"], t["trial"])
            run = catalog.run(t["run_id"])
            verdicts = {d.gate: d.verdict for d in catalog.gate_decisions(t["run_id"])}
            if t["status"] == "crashed":
                assert run.status == "failed"
            else:  # failed ⇔ a gate of its run failed, on the selection split
                assert (t["status"] == "failed") == ("fail" in verdicts.values())
                assert sorted(t["failed_gates"]) == sorted(
                    g for g, v in verdicts.items() if v == "fail"
                )
                assert run.data["0"]["selection"] == "0.3 of train, seed 0"
    passing = [t for t in ran if t["status"] == "passed"]
    assert passing, "no trial passed: the scene proves nothing"

    def dominated(t: dict[str, Any]) -> bool:
        a = (t["objectives"]["size.bytes"], -t["objectives"]["accuracy"])
        return any(
            (u["objectives"]["size.bytes"], -u["objectives"]["accuracy"]) != a
            and u["objectives"]["size.bytes"] <= a[0]
            and -u["objectives"]["accuracy"] <= a[1]
            for u in passing
        )

    assert result["frontier"] == sorted(t["trial"] for t in passing if not dominated(t))
    eligible = [
        t
        for t in passing
        if t["trial"] in result["frontier"] and t["objectives"]["accuracy"] >= 0.5
    ]
    best = min(eligible, key=lambda t: (t["objectives"]["size.bytes"], t["trial"]))
    assert result["chosen"] == best["trial"]
    assert result["why"].startswith(
        f"smallest size.bytes with accuracy >= 0.5: trial {best['trial']}"
    )
    audit = command("audit", "verify", "--workspace", home)
    assert audit.returncode == 0, audit.stderr
    status = json.loads(command("sweep", "status", "--workspace", home, "--json").stdout)
    assert [(s["sweep_id"], s["trials"], s["finished"]) for s in status["sweeps"]] == [
        (result["sweep_id"], 6, True)
    ]


def test_the_report_links_each_trial_whose_signature_verifies_as_derived(
    scene: dict[str, Any], tmp_path: Path
) -> None:
    ws: Workspace = scene["ws"]
    out = tmp_path / "report"
    done = command(
        "sweep", "report", "latest", "-o", out, "--workspace", scene["home"], "--trust", ws.trust
    )
    assert done.returncode == 0, done.stderr
    index = (out / "index.html").read_text()
    for t in scene["result"]["trials"]:
        assert f'href="{t["run_id"]}.html"' in index
        page = (out / f"{t['run_id']}.html").read_text()
        assert (
            f"trial {t['trial']} of sweep {scene['result']['sweep_id']}, derived from the signed "
            "sweep and its signed recipe" in page
        )
    assert "<svg" in index


def test_the_proposed_recipe_is_signed_submitted_and_its_provenance_checked(
    scene: dict[str, Any],
) -> None:
    ws: Workspace = scene["ws"]
    home = scene["home"]
    proposed = ws.root / "proposed.yaml"
    done = command("sweep", "propose", "latest", "-o", proposed, "--workspace", home, "--json")
    assert done.returncode == 0, done.stderr
    said = json.loads(done.stdout)
    assert said["trial"] == scene["result"]["chosen"]
    signed = command("recipe", "sign", proposed, "--key", ws.key("ml-platform"))
    assert signed.returncode == 0, signed.stderr
    verified = command("recipe", "verify", proposed, "--workspace", home, "--json")
    assert verified.returncode == 0, verified.stderr
    assert json.loads(verified.stdout)["provenance"].startswith(
        f"trial {said['trial']} of sweep {scene['result']['sweep_id']}"
    )
    submitted = command("-v", "submit", proposed, "--workspace", home, "--json")
    assert submitted.returncode in (0, 1), submitted.stderr
    assert f"proposed by trial {said['trial']} of sweep" in submitted.stderr
    run = json.loads(submitted.stdout)["run"]
    assert "selection" not in json.dumps(run)  # judged on the recipe's own test split
    # the author edits the proposal, re-signs it: its provenance no longer holds (exit 3)
    text = proposed.read_text().replace("rounds: 2", "rounds: 1")
    edited = ws.root / "edited.yaml"
    edited.write_text(text)
    sign_recipe(edited, load_private_key(ws.key("ml-platform")))
    refused = command("submit", edited, "--workspace", home)
    assert refused.returncode == 3, refused.stderr
    assert "rounds" in refused.stderr
    assert command("recipe", "verify", edited, "--workspace", home).returncode == 3


def test_a_trial_variant_is_never_promoted(scene: dict[str, Any]) -> None:
    passed = next(t for t in scene["result"]["trials"] if t["status"] == "passed")
    refused = command(
        "promote",
        f"{passed['run_id']}/0/export",
        "--alias",
        "production",
        "--workspace",
        scene["home"],
    )
    assert refused.returncode == 1, refused.stderr
    assert f"is trial {passed['trial']} of sweep" in refused.stderr
    assert "sweep propose" in refused.stderr
    # Nor shown as promotable (what `export mlflow` registers by).
    shown = command(
        "catalog", "show", f"{passed['run_id']}/0/export", "--workspace", scene["home"], "--json"
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["promotable"] is False


def test_a_killed_worker_is_retried_and_the_sweep_ends_as_undisturbed(
    scene: dict[str, Any], tmp_path: Path
) -> None:
    home = copy_work(scene, tmp_path / "work")
    driver = subprocess.Popen(
        [CG, "sweep", "run", scene["sweep"], "--workspace", home, "--workers", "2", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    kill_first("compressgate.registry.run.trial")
    stdout, stderr = driver.communicate(timeout=600)
    assert driver.returncode == 0, stderr
    assert "its worker ended with exit -9 and no result" in stderr
    result = json.loads(stdout)
    assert outcome(result) == outcome(scene["result"])
    assert (result["frontier"], result["chosen"]) == (
        scene["result"]["frontier"],
        scene["result"]["chosen"],
    )
    assert sorted(t["attempts"] for t in result["trials"])[-1] == 2
    rows = trial_rows(home)
    assert sorted(n for n, _ in rows) == list(range(6))  # each trial once


def test_a_killed_sweep_run_again_resumes_from_its_recorded_trials(
    scene: dict[str, Any], tmp_path: Path
) -> None:
    home = copy_work(scene, tmp_path / "work")
    first = subprocess.Popen(
        [CG, "sweep", "run", scene["sweep"], "--workspace", home, "--workers", "1"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if (home / "catalog.db").exists():
            try:
                if len(trial_rows(home)) >= 2:
                    break
            except Exception:  # the catalog being created, or no sweep yet
                pass
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)  # the driver and its workers
    first.wait()
    recorded = trial_rows(home)
    assert 2 <= len(recorded) < 6
    again = command("sweep", "run", scene["sweep"], "--workspace", home, "--json")
    assert again.returncode == 0, again.stderr
    result = json.loads(again.stdout)
    assert result["resumed"] is True
    assert outcome(result) == outcome(scene["result"])
    assert result["frontier"] == scene["result"]["frontier"]
    assert result["chosen"] == scene["result"]["chosen"]
    rows = trial_rows(home)
    assert sorted(n for n, _ in rows) == list(range(6))
    assert [r for r in rows if r in recorded] == recorded  # the first run's rows kept as they were


def test_on_ray_a_killed_worker_is_retried_and_the_sweep_ends_as_undisturbed(
    scene: dict[str, Any], tmp_path: Path
) -> None:
    pytest.importorskip("ray")
    home = copy_work(scene, tmp_path / "work")
    driver = subprocess.Popen(
        [
            CG,
            "sweep",
            "run",
            scene["sweep"],
            "--workspace",
            home,
            "--backend",
            "ray",
            "--workers",
            "2",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        kill_first("ray::_ray_trial", timeout=180)
        stdout, stderr = driver.communicate(timeout=600)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
    assert driver.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["backend"] == "ray"
    assert outcome(result) == outcome(scene["result"])
    assert (result["frontier"], result["chosen"]) == (
        scene["result"]["frontier"],
        scene["result"]["chosen"],
    )
    assert sorted(n for n, _ in trial_rows(home)) == list(range(6))
