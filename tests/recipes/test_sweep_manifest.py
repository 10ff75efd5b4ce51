"""The sweep manifest (`kind: Sweep`): its model, its checks against the base recipe, trial and
proposed recipes, signatures, the published schema, and the commands that dispatch on it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from securesystemslib.dsse import Envelope as SSlibEnvelope
from securesystemslib.signer import Key

import compressgate.recipes.sweep as sw
from compressgate.recipes.load import load_recipe, parse_recipe
from compressgate.recipes.signing import envelope_path, sign_recipe
from compressgate.recipes.trust import add_owner_key, load_trust
from compressgate.registry.authoring import sweep_schema
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from compressgate.registry.kernel.keys import generate_keypair, load_private_key, public_key_json
from tests.helpers.workspace import Invoke, Workspace

SCHEMA_FILE = Path(sw.__file__).parent / "schema" / "sweep-v1.schema.json"

AXES = """\
  stages[prune].sparsity: [0.5, 0.625, 0.75, 0.875]
  stages[int8].method: [static, dynamic]
  stages[int8].per_channel: [true, false]
  stages[distill].temperature: [3, 4, 5]
"""
PARAMS = {
    "stages[prune].sparsity": 0.75,
    "stages[int8].method": "dynamic",
    "stages[int8].per_channel": False,
    "stages[distill].temperature": 3,
}


def sweep_text(ws: Workspace, axes: str = AXES, **fields: str) -> str:
    sha = hashlib.sha256(ws.recipe.read_bytes()).hexdigest()
    parts = {
        "seeds": "[0, 1]",
        "strategy": "{kind: grid, seed: 0, batch: 2}",
        "budget": "{trials: 12, wall_time: 3600}",
        "choose": "{objective: size.bytes, constraints: "
        "[{metric: latency.batch_64.speedup_p50, min: 3.0}]}",
        "objectives": "\n  - {metric: size.bytes, stage: export, goal: minimize}"
        "\n  - {metric: latency.batch_64.speedup_p50, stage: export, goal: maximize}",
        **fields,
    }
    return (
        "apiVersion: compressgate/v1\n"
        "kind: Sweep\n"
        "metadata: {name: digits-cnn-sweep, version: 1, owners: [ml-platform]}\n"
        f"recipe: {{path: recipe.yaml, sha256: {sha}}}\n"
        f"seeds: {parts['seeds']}\n"
        "selection: {fraction: 0.2, seed: 0}\n"
        f"axes:\n{axes}"
        f"objectives: {parts['objectives']}\n"
        f"strategy: {parts['strategy']}\n"
        f"budget: {parts['budget']}\n"
        f"choose: {parts['choose']}\n"
    )


def write_sweep(ws: Workspace, axes: str = AXES, **fields: str) -> Path:
    path = ws.root / "sweep.yaml"
    path.write_text(sweep_text(ws, axes, **fields))
    return path


def line_of(path: Path, text: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    return next(number for number, line in enumerate(lines, 1) if text in line)


def sign_both(ws: Workspace, sweep: Path, owner: str = "ml-platform") -> None:
    key = load_private_key(ws.key(owner))
    trust = load_trust(ws.trust)
    sign_recipe(ws.recipe, load_private_key(ws.key("ml-platform")), trust)
    sw.sign_sweep(sweep, key, trust)


def refused(path: Path) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        sw.load_sweep(path)
    return caught.value


# --- the manifest ------------------------------------------------------------------------------


def test_a_valid_sweep_loads_with_its_grid(workspace: Workspace) -> None:
    loaded = sw.load_sweep(write_sweep(workspace))
    sweep = loaded.sweep
    assert sweep.grid_size() == 4 * 2 * 2 * 3
    assert sweep.trials() == 12
    assert sweep.seeds == (0, 1)
    assert sweep.axes["stages[int8].per_channel"] == (True, False)
    assert sweep.chosen_objective().metric == "size.bytes"
    assert loaded.sha256 == hashlib.sha256(loaded.data).hexdigest()


def test_grid_trials_default_to_the_grid_size(workspace: Workspace) -> None:
    path = write_sweep(workspace, budget="{wall_time: 60}")
    assert sw.load_sweep(path).sweep.trials() == 48


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        (
            "stages[prnue].sparsity: [0.5]",
            "stages[prnue]: no stage named 'prnue'; stages: distill, prune, int8, export",
        ),
        (
            "stages[prune].sparsty: [0.5]",
            "stages[prune] has no field 'sparsty' (did you mean 'sparsity'?); fields: "
            "batch_size, finetune_epochs, heads, importance, kind, lr, method, name, rounds, "
            "scope, skip, sparsity, vocabulary",
        ),
        (
            "gates[accuracy].margin: [0.1]",
            "'gates' cannot be swept: a sweep must not loosen the recipe's controls or its "
            "measurements (the gates are the recipe's controls)",
        ),
        (
            "evaluators[latency].repeats: [10]",
            "'evaluators' cannot be swept: a sweep must not loosen the recipe's controls or its "
            "measurements (the evaluators are the recipe's measurements)",
        ),
        (
            "budget.epochs: [10]",
            "'budget' cannot be swept: a sweep must not loosen the recipe's controls or its "
            "measurements (the budget bounds what a run may spend)",
        ),
        (
            "seeds: [[0]]",
            "'seeds' cannot be swept: a sweep must not loosen the recipe's controls or its "
            "measurements (the seeds are part of the measurement; the sweep's own `seeds` "
            "picks the trials')",
        ),
        ("metadata.owners: [[x]]", "'metadata' cannot be swept"),
        ("environment.strict: [false]", "'environment' cannot be swept"),
        ("kind: [Recipe]", "'kind' cannot be swept"),
        ("apiVersion: [x]", "'apiVersion' cannot be swept"),
        ("modle.train.epochs: [1]", "the recipe has no field 'modle' (did you mean 'model'?)"),
        (
            "stages[prune].sparsity.x: [1]",
            "stages[prune].sparsity is a value, not a mapping: it has no field 'x'",
        ),
        ("stages[prune]: [{}]", "stages[prune] is a whole stage: sweep its fields"),
        ("stages[prune].name: [other]", "stages[prune].name names the stage"),
        ("stages: [[]]", "sweep a stage's fields (stages[NAME].FIELD), not the list of stages"),
        (
            "stages[prune].sparsity: [0.5, 1.5]",
            "the value 1.5 makes the recipe invalid: stages[1].sparsity: must be < 1, not 1.5",
        ),
        (
            "model.train.epochs: [0]",
            "the value 0 makes the recipe invalid: model.train.epochs: must be >= 1, not 0",
        ),
        (
            "stages[distill].student.factory: ['os:system']",
            'the value "os:system" makes the recipe invalid: stages[0].student.factory: '
            "module 'os' is not allow-listed",
        ),
    ],
)
def test_an_axis_is_refused_at_its_line_saying_why(
    workspace: Workspace, axis: str, message: str
) -> None:
    path = write_sweep(workspace, f"  {axis}\n", budget="{}")
    error = refused(path)
    assert error.exit_code == 2
    (issue,) = error.issues
    assert issue.file == str(path)
    assert issue.line == line_of(path, axis)
    assert issue.path == f"axes.{axis.split(':')[0]}"
    assert issue.message.startswith(message)


def test_axes_accept_fields_the_yaml_leaves_at_their_default(workspace: Workspace) -> None:
    axes = (
        "  stages[int8].calibration_samples: [64, 128]\n"  # not in the YAML: its default
        "  stages[int8].keep_float[0]: [last]\n"
        "  stages[distill].student.args.width: [8]\n"  # args: any key
        "  data.args.test_fraction: [0.2, 0.3]\n"
        "  model.train.epochs: [5]\n"
        "  stages[1].rounds: [2]\n"  # an index selects too
        "  stages[distill].student: [{factory: 'compressgate.recipes.examples.digits:"
        "build_student', args: {hidden: 8}}]\n"
    )
    sweep = sw.load_sweep(write_sweep(workspace, axes, budget="{}")).sweep
    assert sweep.grid_size() == 4


@pytest.mark.parametrize(
    ("fields", "where", "message"),
    [
        (
            {"strategy": "{kind: tpe}"},
            "strategy",
            "strategy.kind: 'tpe' optimizes exactly one objective, and the sweep has 2: use "
            "'nsga2' for several objectives, or keep one",
        ),
        (
            {
                "strategy": "{kind: nsga2}",
                "objectives": "[{metric: size.bytes, stage: export, goal: minimize}]",
                "choose": "{}",
            },
            "strategy",
            "strategy.kind: 'nsga2' searches the frontier of at least two objectives, and the "
            "sweep has 1: use 'tpe' (or 'random', 'grid') for one objective, or add an objective",
        ),
        (
            {"budget": "{trials: 49}"},
            "budget",
            "budget.trials: 49 trials, more than the grid's 48 combinations (4 × 2 × 2 × 3): a "
            "grid runs each once; lower it, or leave it out to run the whole grid",
        ),
        (
            {"strategy": "{kind: random}", "budget": "{}"},
            "budget",
            "budget.trials: strategy 'random' samples the axes: say how many trials it runs "
            "(budget.trials)",
        ),
        (
            {"choose": "{objective: accuracy}"},
            "choose",
            "choose.objective: 'accuracy' is not one of the objectives (size.bytes, "
            "latency.batch_64.speedup_p50)",
        ),
        (
            {
                "objectives": "[{metric: size.bytes, stage: exprt, goal: minimize}]",
                "choose": "{}",
            },
            "objectives",
            "objectives[0].stage: no stage is named 'exprt'; stages: distill, prune, int8, export",
        ),
        (
            {"seeds": "[0, 7]"},
            "seeds",
            "seeds[1]: seed 7 is not one of the recipe's seeds (0, 1, 2)",
        ),
        (
            {"strategy": "{kind: annealing}"},
            "strategy",
            "strategy.kind: 'annealing' is not allowed; must be one of grid, random, tpe or nsga2",
        ),
    ],
)
def test_cross_field_rules_are_refused_at_their_field(
    workspace: Workspace, fields: dict[str, str], where: str, message: str
) -> None:
    path = write_sweep(workspace, **fields)
    issues = refused(path).issues
    assert [f"{i.path}: {i.message}" for i in issues] == [message]
    assert issues[0].line == line_of(path, f"{where}:")


def test_a_base_whose_bytes_changed_is_an_integrity_error_naming_both_digests(
    workspace: Workspace,
) -> None:
    path = write_sweep(workspace)
    pinned = hashlib.sha256(workspace.recipe.read_bytes()).hexdigest()
    workspace.recipe.write_bytes(workspace.recipe.read_bytes() + b"# edited\n")
    actual = hashlib.sha256(workspace.recipe.read_bytes()).hexdigest()
    with pytest.raises(IntegrityError) as caught:
        sw.load_sweep(path)
    assert caught.value.exit_code == 3
    assert str(caught.value) == (
        f"{path}:4 recipe.sha256: the base recipe {workspace.recipe} has sha256 {actual}, and "
        f"the sweep pins {pinned}"
    )


def test_a_base_outside_the_sweeps_folder_is_refused(workspace: Workspace) -> None:
    path = write_sweep(workspace)
    path.write_text(path.read_text().replace("path: recipe.yaml", "path: ../recipe.yaml"))
    (issue,) = refused(path).issues
    assert issue.message == "'../recipe.yaml' escapes the manifest's folder; keep files inside it"


# --- trials and proposals ----------------------------------------------------------------------


def test_a_trial_recipe_is_deterministic_and_differs_only_at_the_axes(
    workspace: Workspace,
) -> None:
    loaded = sw.load_sweep(write_sweep(workspace))
    base = load_recipe(workspace.recipe)
    data, recipe = sw.trial_recipe(loaded, base, PARAMS, trial=5, sweep_id="s1")
    again, _ = sw.trial_recipe(loaded, base, dict(reversed(PARAMS.items())), trial=5, sweep_id="s1")
    assert data == again
    assert parse_recipe(data, "trial")[0] == recipe
    want = base.recipe.model_dump(mode="json", by_alias=True)
    have = recipe.model_dump(mode="json", by_alias=True)
    assert have["stages"][1]["sparsity"] == 0.75
    assert (have["stages"][2]["method"], have["stages"][2]["per_channel"]) == ("dynamic", False)
    assert have["stages"][0]["temperature"] == 3
    assert have["seeds"] == [0, 1]
    assert have["metadata"]["description"] == "trial 5 of sweep digits-cnn-sweep v1"
    assert have["metadata"]["derived_from"]["params"] == PARAMS
    for spot in (("stages", 1, "sparsity"), ("stages", 2, "method"), ("stages", 2, "per_channel")):
        node_w, node_h = want, have
        for step in spot[:-1]:
            node_w, node_h = node_w[step], node_h[step]
        node_w[spot[-1]] = node_h[spot[-1]]
    want["stages"][0]["temperature"] = 3
    want["seeds"] = have["seeds"]
    want["metadata"] = have["metadata"]
    assert want == have


def test_trial_params_must_name_every_axis_and_only_axes(workspace: Workspace) -> None:
    loaded = sw.load_sweep(write_sweep(workspace))
    base = load_recipe(workspace.recipe)
    params = {**PARAMS, "stages[int8].method": "qat", "model.train.epochs": 3}
    del params["stages[distill].temperature"]
    with pytest.raises(ManifestError) as caught:
        sw.trial_recipe(loaded, base, params, trial=0)
    assert str(caught.value) == (
        f"{loaded.path}: no value for the axis 'stages[distill].temperature'; "
        "'model.train.epochs' is not an axis of the sweep; stages[int8].method: \"qat\" is not "
        'one of its values ("static", "dynamic")'
    )


def test_fewer_trial_seeds_leave_across_seed_evaluators_to_the_driver(
    workspace: Workspace,
) -> None:
    loaded = sw.load_sweep(write_sweep(workspace, seeds="[0]"))
    base = load_recipe(workspace.recipe)
    assert sw.trial_seed_issues(loaded, base) == (
        "evaluators[9].kind: 'exemplars' compares models across seeds and needs at least two "
        "seeds (the recipe has 1)",
    )
    _, recipe = sw.trial_recipe(loaded, base, PARAMS, trial=0)
    assert recipe.seeds == (0,)


def test_a_proposed_recipe_round_trips_through_check_provenance(workspace: Workspace) -> None:
    loaded = sw.load_sweep(write_sweep(workspace))
    base = load_recipe(workspace.recipe)
    text = sw.proposed_recipe(loaded, base, PARAMS, trial=7, sweep_id="sweep-42")
    assert text.decode().splitlines()[0] == (
        "# Proposed by compressgate sweep propose from trial 7 of sweep digits-cnn-sweep v1 "
        f"(sha256 {loaded.sha256}): sign and submit it for review."
    )
    proposed = workspace.root / "proposed.yaml"
    proposed.write_bytes(text)
    recipe = load_recipe(proposed).recipe
    assert recipe.seeds == base.recipe.seeds
    assert recipe.metadata.version == 2
    assert recipe.metadata.description.startswith(base.recipe.metadata.description.rstrip())
    assert recipe.metadata.description.endswith(
        "\nProposed by trial 7 of sweep digits-cnn-sweep v1 (sweep-42)."
    )
    derived = recipe.metadata.derived_from
    assert derived is not None
    assert (derived.sweep.sha256, derived.recipe.sha256) == (loaded.sha256, base.sha256)
    assert (derived.sweep_id, derived.trial, derived.params) == ("sweep-42", 7, PARAMS)
    sw.check_provenance(recipe, loaded, base)

    edited = text.decode().replace("rounds: 4", "rounds: 2")
    assert edited != text.decode()
    proposed.write_text(edited)
    with pytest.raises(IntegrityError) as caught:
        sw.check_provenance(load_recipe(proposed).recipe, loaded, base)
    assert str(caught.value) == (
        "recipe digits-cnn-compact v2 differs from what trial 7 of sweep digits-cnn-sweep v1 "
        "proposed, first at stages[1].rounds: 2, proposed 4"
    )
    # An axis's value edited in the stage and in the provenance alike: no trial proposed it.
    proposed.write_text(text.decode().replace("sparsity: 0.75", "sparsity: 0.8"))
    with pytest.raises(IntegrityError, match=r"0.8 is not one of its values"):
        sw.check_provenance(load_recipe(proposed).recipe, loaded, base)


def test_provenance_naming_another_sweep_is_refused(workspace: Workspace) -> None:
    loaded = sw.load_sweep(write_sweep(workspace))
    base = load_recipe(workspace.recipe)
    text = sw.proposed_recipe(loaded, base, PARAMS, trial=0, sweep_id="x").decode()
    recipe = parse_recipe(text.replace(loaded.sha256, "f" * 64).encode(), "p")[0]
    with pytest.raises(IntegrityError, match=r"metadata.derived_from.sweep names digits-cnn"):
        sw.check_provenance(recipe, loaded, base)


# --- signatures --------------------------------------------------------------------------------


def test_sign_and_verify_round_trip(workspace: Workspace) -> None:
    path = write_sweep(workspace)
    sign_both(workspace, path)
    verified = sw.verify_sweep(path, load_trust(workspace.trust))
    assert [s.owner for s in verified.signers] == ["ml-platform"]
    assert verified.envelope == envelope_path(path)
    assert verified.base.loaded.path == workspace.recipe
    assert verified.loaded.sweep.metadata.name == "digits-cnn-sweep"


def test_a_tampered_sweep_is_refused(workspace: Workspace) -> None:
    path = write_sweep(workspace)
    sign_both(workspace, path)
    path.write_text(path.read_text().replace("[0.5, 0.625,", "[0.25, 0.625,"))
    with pytest.raises(IntegrityError, match=f"{path} changed since it was signed"):
        sw.verify_sweep(path, load_trust(workspace.trust))


def test_a_sweep_signed_by_an_author_who_does_not_own_it_is_refused(
    workspace: Workspace,
) -> None:
    _, _, public = generate_keypair("intruder", workspace.keys)
    add_owner_key(workspace.trust, "intruder", public, ("author",))
    path = write_sweep(workspace)
    sign_both(workspace, path, owner="intruder")
    with pytest.raises(IntegrityError) as caught:
        sw.verify_sweep(path, load_trust(workspace.trust))
    assert str(caught.value) == (
        f"{path}: signed by intruder, not by an owner of both the sweep (ml-platform) and its "
        "base recipe (ml-platform): a sweep changes that recipe"
    )


def test_a_sweep_owner_who_does_not_own_the_base_recipe_is_refused(
    workspace: Workspace,
) -> None:
    _, _, public = generate_keypair("intruder", workspace.keys)
    add_owner_key(workspace.trust, "intruder", public, ("author",))
    path = write_sweep(workspace)
    path.write_text(path.read_text().replace("owners: [ml-platform]", "owners: [intruder]"))
    sign_both(workspace, path, owner="intruder")
    with pytest.raises(IntegrityError, match="not by an owner of both the sweep"):
        sw.verify_sweep(path, load_trust(workspace.trust))


def test_a_sweep_whose_base_recipe_is_unsigned_is_refused(workspace: Workspace) -> None:
    path = write_sweep(workspace)
    sign_both(workspace, path)
    envelope_path(workspace.recipe).unlink()
    with pytest.raises(IntegrityError) as caught:
        sw.verify_sweep(path, load_trust(workspace.trust))
    assert str(caught.value).startswith(f"{path}: its base recipe {workspace.recipe} is not signed")
    assert caught.value.exit_code == 3


def test_a_sweep_over_a_changed_base_recipe_is_refused(workspace: Workspace) -> None:
    path = write_sweep(workspace)
    sign_both(workspace, path)
    workspace.recipe.write_text(workspace.recipe.read_text().replace("rounds: 4", "rounds: 3"))
    sign_recipe(workspace.recipe, load_private_key(workspace.key("ml-platform")))
    with pytest.raises(IntegrityError, match=r"recipe.sha256: the base recipe .* the sweep pins"):
        sw.verify_sweep(path, load_trust(workspace.trust))


def test_an_outsider_verifies_the_sweep_envelope_with_securesystemslib(
    workspace: Workspace,
) -> None:
    path = write_sweep(workspace)
    sign_both(workspace, path)
    public = load_private_key(workspace.key("ml-platform")).public
    data = json.loads(public_key_json(public))
    key = Key.from_dict(data.pop("keyid"), data)
    theirs = SSlibEnvelope.from_dict(json.loads(envelope_path(path).read_text()))
    assert theirs.verify([key], threshold=1) == {public.keyid: key}
    statement = json.loads(theirs.payload)
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://compressgate.dev/attestation/sweep/v1"
    assert statement["subject"] == [
        {"name": "sweep.yaml", "digest": {"sha256": hashlib.sha256(path.read_bytes()).hexdigest()}},
        {
            "name": "recipe.yaml",
            "digest": {"sha256": hashlib.sha256(workspace.recipe.read_bytes()).hexdigest()},
        },
    ]


# --- the schema --------------------------------------------------------------------------------


def test_published_schema_is_current() -> None:
    """recipes/schema/sweep-v1.schema.json is what `compressgate recipe schema --kind sweep`
    prints."""
    assert json.loads(SCHEMA_FILE.read_text()) == sweep_schema()


def test_schema_validates_a_sweep_and_refuses_an_unknown_strategy(
    workspace: Workspace, cli: Invoke
) -> None:
    printed = cli("recipe", "schema", "--kind", "sweep")
    assert printed.exit_code == 0
    schema = json.loads(printed.stdout)
    assert schema["$id"] == "https://compressgate.dev/schema/sweep-v1.json"
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    document = yaml.safe_load(sweep_text(workspace))
    assert list(validator.iter_errors(document)) == []
    document["strategy"] = {"kind": "annealing"}
    (error,) = validator.iter_errors(document)
    assert list(error.absolute_path) == ["strategy", "kind"]
    document["strategy"] = {"kind": "grid"}
    document["axes"]["not a path"] = [1]
    assert list(validator.iter_errors(document))


# --- the commands ------------------------------------------------------------------------------


def test_validate_checks_a_sweep_and_verifies_it(workspace: Workspace, cli: Invoke) -> None:
    path = write_sweep(workspace)
    result = cli("validate", path)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"ok {path} (digits-cnn-sweep v1, a sweep of recipe.yaml: 4 axes, 12 trial(s) by grid)\n"
    )
    assert cli("validate", "--verify", path).exit_code == 4  # unsigned: not found
    sign_both(workspace, path)
    verified = cli("validate", "--verify", path)
    assert verified.exit_code == 0, verified.stderr
    assert verified.stdout.endswith(", signed by ml-platform)\n")

    path.write_text(path.read_text().replace("0.875]", "1.5]"))
    broken = cli("validate", "--json", path)
    assert broken.exit_code == 2
    (entry,) = json.loads(broken.stdout)["files"]
    assert (entry["kind"], entry["status"]) == ("Sweep", "invalid")
    assert entry["issues"][0]["line"] == line_of(path, "stages[prune].sparsity")


def test_recipe_sign_and_verify_dispatch_on_the_kind(workspace: Workspace, cli: Invoke) -> None:
    path = write_sweep(workspace)
    key = workspace.key("ml-platform")
    assert cli("recipe", "sign", workspace.recipe, "--key", key).exit_code == 0
    signed = cli("recipe", "sign", path, "--key", key, "--json")
    assert signed.exit_code == 0, signed.stderr
    assert json.loads(signed.stdout)["envelope"] == str(envelope_path(path))
    verified = cli("recipe", "verify", path)
    assert verified.exit_code == 0, verified.stderr
    assert verified.stdout.startswith(f"verified {path}: sweep digits-cnn-sweep v1, signed by")
    recipe = cli("recipe", "verify", workspace.recipe, "--json")
    assert recipe.exit_code == 0
    assert json.loads(recipe.stdout)["name"] == "digits-cnn-compact"
    path.write_text(path.read_text().replace("seed: 0, batch: 2", "seed: 1, batch: 2"))
    assert cli("recipe", "verify", path).exit_code == 3
