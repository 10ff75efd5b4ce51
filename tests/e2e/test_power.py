"""Underpowered gates are flagged where a recipe is written and submitted: a 1-point
non-inferiority margin on the digits test split (450 samples) is flagged with the margin the
split supports; the reference recipe's gates are not flagged."""

from __future__ import annotations

import json

from compressgate.recipes.signing import sign_recipe
from compressgate.registry.kernel.keys import load_private_key
from tests.helpers.recipes import write_recipe
from tests.helpers.workspace import Invoke, Workspace


def one_point(ws: Workspace) -> None:
    text = ws.recipe.read_text()
    assert text.count("margin: 0.02") == 1
    ws.recipe.write_text(text.replace("margin: 0.02", "margin: 0.01"))


def test_the_reference_recipe_gates_are_not_underpowered(workspace: Workspace, cli: Invoke) -> None:
    result = cli("recipe", "validate", workspace.recipe, "--strict", "--json")
    assert result.exit_code == 0, result.stderr
    (record,) = json.loads(result.stdout)
    assert record["warnings"] == []
    checks = {c["gate"]: c for c in record["power"]}
    assert set(checks) == {"prune-accuracy", "accuracy", "fairness"}
    assert checks["accuracy"]["n"] == 450
    assert 0.8 <= checks["accuracy"]["power"] < 0.9
    assert all(c["power"] >= 0.8 for c in checks.values())


def test_a_one_point_margin_on_450_samples_is_flagged_with_the_margin_that_works(
    workspace: Workspace, cli: Invoke
) -> None:
    one_point(workspace)
    unchecked = cli("recipe", "validate", workspace.recipe, "--json")  # runs no recipe code
    assert unchecked.exit_code == 0 and json.loads(unchecked.stdout)[0]["power"] == []
    result = cli("recipe", "validate", workspace.recipe, "--power", "--json")
    assert result.exit_code == 0, result.stderr  # a warning, not an error
    (record,) = json.loads(result.stdout)
    check = next(c for c in record["power"] if c["gate"] == "accuracy")
    assert check["underpowered"] and not check["impossible"]
    assert check["n"] == 450
    assert check["threshold"] == 0.01
    assert 0.005 < check["floor"] < 0.007  # it could pass only with almost no disagreement
    assert check["power"] < 0.5
    assert 0.0150 < check["supported"] < 0.0200  # what 450 samples support at 2% discordance
    assert check["required_n"] > 1000  # what a 1-point margin needs
    assert f"margin {check['supported']:.3g} has 80%" in check["message"]
    assert record["warnings"] == [f"gate 'accuracy' is underpowered: {check['message']}"]

    text = cli("recipe", "validate", workspace.recipe, "--power")
    assert text.exit_code == 0
    assert "gate 'accuracy' is underpowered: non-inferiority margin 0.01 on 450" in text.stderr
    assert cli("recipe", "validate", workspace.recipe, "--strict").exit_code == 2
    assert cli("recipe", "validate", workspace.recipe, "--no-power", "--strict").exit_code == 0

    explained = cli("recipe", "explain", workspace.recipe, "--power")
    assert "UNDERPOWERED: non-inferiority margin 0.01 on 450 test samples" in explained.stdout
    assert "UNDERPOWERED" not in cli("recipe", "explain", workspace.recipe).stdout
    gates = json.loads(cli("recipe", "explain", "--power", workspace.recipe, "--json").stdout)[
        "gates"
    ]
    assert next(g for g in gates if g["name"] == "accuracy")["underpowered"] is True


def test_submit_flags_the_underpowered_gate_and_records_its_power(
    workspace: Workspace, cli: Invoke
) -> None:
    write_recipe(workspace)
    with workspace.recipe.open("a", encoding="utf-8") as handle:
        handle.write(
            "gates:\n  - {name: accuracy, owner: ml-lead, metric: accuracy,"
            " rule: non_inferior, margin: 0.01}\n"
        )
    sign_recipe(workspace.recipe, load_private_key(workspace.key("ml-platform")))
    result = cli("submit", workspace.recipe, "--workspace", workspace.root / ".cg", "--json")
    assert result.exit_code in (0, 1), result.stderr
    submitted = json.loads(result.stdout)
    (check,) = submitted["power"]
    assert check["underpowered"] and check["n"] == 450
    (gate,) = submitted["review"]["gates"]
    assert gate["decision"]["power"] == check  # recorded with the decision in the catalog
    text = cli("submit", workspace.recipe, "--workspace", workspace.root / ".cg")
    assert "warning: gate 'accuracy' is underpowered" in text.stdout
