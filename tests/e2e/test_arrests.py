"""Acceptance of the Arrests example (slow, about two minutes): the recipe passes its accuracy
and fairness gates and its report shows both groups at every stage; a variant that prunes too
hard passes the accuracy gate and is rejected by the fairness gate; one that prunes until it
releases everyone is rejected by the recall gate; and a run needs no network (under an empty
network namespace, where `unshare` can make one).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.workspace import Invoke

OWNERS = ("ml-lead", "responsible-ai")


def _workspace(root: Path, keys: Path, **changes: str) -> Path:
    """The example copied to ROOT, its text changed where asked, signed; returns the recipe."""
    init_example(root, "arrests-fairness")
    trust = root / "trust.yaml"
    for owner, role in [("ml-platform", "author"), *((o, "approver") for o in OWNERS)]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    recipe = root / "recipe.yaml"
    text = recipe.read_text()
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    recipe.write_text(text)
    sign_recipe(recipe, load_private_key(keys / "ml-platform.key"))
    return recipe


def _decisions(output: str, gate: str) -> list[dict[str, Any]]:
    """The gate's decision for every seed, in seed order."""
    found = [d for d in json.loads(output)["gates"] if d["gate"] == gate]
    assert found, f"no decision of gate {gate}"
    return found


@pytest.mark.slow
def test_the_recipe_passes_and_its_report_shows_both_groups_at_every_stage(
    cli: Invoke, tmp_path: Path
) -> None:
    recipe = _workspace(tmp_path / "ws", tmp_path / "keys")
    cache = tmp_path / "cg"
    run = cli("run", recipe, "--workspace", cache, "--json")
    assert run.exit_code == 0, run.stderr
    result = json.loads(run.stdout)
    assert result["status"] == "succeeded"
    assert {d["verdict"] for d in result["gates"]} == {"pass"}
    owners = {d["gate"]: d["owner"] for d in result["gates"]}
    assert owners["accuracy"] == owners["recall"] == "ml-lead"
    assert {owners[g] for g in ("worst-group", "parity", "equalized-odds")} == {"responsible-ai"}

    report = tmp_path / "report.md"
    rendered = cli("report", result["run_id"], "--workspace", cache, "--format", "md", "-o", report)
    assert rendered.exit_code == 0, rendered.stderr
    text = report.read_text()
    interval = r"\d+\.\d+% \[\d+\.\d+%, \d+\.\d+%\]"
    for seed in result["seeds"]:
        for stage in ("baseline", "distill", "prune", "int8"):
            for group in ("Black", "White"):
                row = rf"\| {seed} \| {stage} \| {group}( \(worst\))? \| [\d,]+ \| {interval} \|"
                assert re.search(row, text), f"no row for seed {seed}, {stage}, {group}"
            parity = rf"\| {seed} \| {stage} \| \d\.\d+ \[\d\.\d+, \d\.\d+\] \|"
            assert re.search(parity, text), f"no parity row for seed {seed}, {stage}"


@pytest.mark.slow
def test_pruning_too_hard_passes_accuracy_and_is_rejected_by_the_fairness_gate(
    cli: Invoke, tmp_path: Path
) -> None:
    # Half of every hidden layer's units instead of a quarter; seeds 1 and 2.
    recipe = _workspace(
        tmp_path / "ws",
        tmp_path / "keys",
        **{"sparsity: 0.25": "sparsity: 0.5", "seeds: [0, 1]": "seeds: [1, 2]"},
    )
    run = cli("run", recipe, "--workspace", tmp_path / "cg", "--json")
    assert run.exit_code == 1, run.stderr  # a gate failed
    per_seed = {(d["gate"], d["seed"]): d["verdict"] for d in json.loads(run.stdout)["gates"]}
    # Seed 2: only a fairness gate objects; accuracy and per-class recall pass. It is the
    # equalized-odds change: its valid bound (the spread of the two groups' paired changes in
    # two rates) cannot show the 6 points at this size, though the change itself is small.
    assert {g: v for (g, seed), v in per_seed.items() if seed == 2} == {
        "accuracy": "pass",
        "recall": "pass",
        "worst-group": "pass",
        "parity": "pass",
        "equalized-odds": "fail",
    }
    odds = _decisions(run.stdout, "equalized-odds")[1]
    assert odds["estimate"] < 0.06 < odds["ci_high"]
    accuracy = _decisions(run.stdout, "accuracy")
    # Both seeds lose accuracy; seed 2 stays within the 4-point margin. Seed 1's lower bound sits
    # on the margin itself (-3.9 points where the test was written, just below -4 on another
    # CPU's floating point), so its verdict is not asserted: only seed 2's, where nothing but
    # the fairness gate objects.
    assert all(d["estimate"] < 0 for d in accuracy)
    assert accuracy[1]["seed"] == 2 and accuracy[1]["verdict"] == "pass"
    assert -0.04 < accuracy[1]["ci_low"] < accuracy[1]["estimate"] < 0  # lower, within margin
    assert accuracy[0]["ci_low"] > -0.045  # seed 1: at the margin, not far past it
    worst = _decisions(run.stdout, "worst-group")
    assert [d["verdict"] for d in worst] == ["fail", "pass"]
    # The worse-off group lost accuracy for certain (the whole interval above 0): on seed 1
    # possibly more than the 5 points the gate allows, on seed 2 shown to be less (its own
    # one-sided bound: the gate is an intersection-union test).
    assert all(d["ci_low"] > 0 for d in worst)
    assert worst[0]["ci_high"] > 0.05 > worst[1]["ci_high"]


@pytest.mark.slow
def test_pruning_until_it_releases_everyone_is_rejected_by_the_recall_gate(
    cli: Invoke, tmp_path: Path
) -> None:
    # 90% of the units: the model collapses onto the majority class. Its accuracy rises to the
    # share of releases and its groups' gaps close (everyone is treated alike): the per-class
    # recall gate sees that no one is held any more. The parity gates fail too, though each gap
    # shrank: their valid bound, the spread of the groups' changes, cannot tell a gap that
    # closed from one that widened when the groups' rates move apart this much.
    recipe = _workspace(
        tmp_path / "ws",
        tmp_path / "keys",
        **{"sparsity: 0.25": "sparsity: 0.9", "seeds: [0, 1]": "seeds: [0]"},
    )
    run = cli("run", recipe, "--workspace", tmp_path / "cg", "--json")
    assert run.exit_code == 1, run.stderr
    verdicts = {d["gate"]: d["verdict"] for d in json.loads(run.stdout)["gates"]}
    assert verdicts == {
        "accuracy": "pass",
        "recall": "fail",
        "worst-group": "pass",
        "parity": "fail",
        "equalized-odds": "fail",
    }
    for gate in ("parity", "equalized-odds"):
        (change,) = _decisions(run.stdout, gate)
        assert change["estimate"] < -0.1 and change["ci_high"] > 0.1  # closed, bound wide
    (recall,) = _decisions(run.stdout, "recall")
    assert recall["ci_low"] > 0.5  # the held class's recall fell from about 65% to 0
    stages = {s["name"]: s for s in json.loads(run.stdout)["stages"]}
    assert stages["int8"]["metrics"]["classes.worst_recall"]["estimate"] == 0


@pytest.mark.slow
def test_a_run_needs_no_network(tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-n", "true"], capture_output=True, check=False)
    if unshare is None or probe.returncode != 0:
        pytest.skip("no empty network namespace here (unshare -n is missing or not permitted)")
    recipe = _workspace(tmp_path / "ws", tmp_path / "keys", **{"seeds: [0, 1]": "seeds: [0]"})
    # Inside the namespace there is only a loopback that is down: any connection fails.
    connect = "import socket; socket.create_connection(('1.1.1.1', 443), timeout=5)"
    blocked = subprocess.run([unshare, "-n", sys.executable, "-c", connect], capture_output=True)
    assert blocked.returncode != 0 and b"OSError" in blocked.stderr
    command = [str(Path(sys.executable).parent / "compressgate"), "run", str(recipe)]
    command += ["--workspace", str(tmp_path / "cg"), "--json"]
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONHASHSEED": "0"}
    done = subprocess.run([unshare, "-n", *command], capture_output=True, env=env, check=False)
    assert done.returncode == 0, done.stderr.decode()
    assert json.loads(done.stdout)["status"] == "succeeded"
