"""Plug-ins: third-party stages and evaluators through entry points, under the trust policy.

The example plug-in, tests/plugins/compressgate_toy (a stage that rounds weights, an evaluator
of them), is built and installed into a folder of its own, never into .venv, and put on
sys.path for the test: importlib.metadata finds it there by its .dist-info, as it would in
site-packages. Allowed by the trust file's `plugins:`, both run in a recipe and the run records
which code ran; not allowed, the run is refused before anything is recorded and the plug-in's
module is never imported.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from compressgate.evaluators.base import EvalContext, Evaluator, evaluate_stage
from compressgate.evaluators.results import Estimate, PluginResult
from compressgate.recipes.evaluation import PluginEvaluatorSpec
from compressgate.recipes.load import load_recipe
from compressgate.recipes.plugins import LoadedPlugin, Plugins, code_digests, find
from compressgate.recipes.trust import add_owner_key, load_trust
from compressgate.registry.authoring import recipe_schema
from compressgate.registry.kernel.errors import ManifestError, StageError
from compressgate.registry.kernel.keys import generate_keypair
from tests.helpers.workspace import Invoke, Workspace

TOY_SOURCE = Path(__file__).resolve().parents[1] / "plugins" / "compressgate_toy"
MODULE = "compressgate_toy"

# The digits CNN trained for one epoch, its weights rounded by the plug-in stage and exported,
# measured by accuracy and the plug-in evaluator, with a gate on one of the plug-in's metrics.
RECIPE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata:
  name: digits-toy
  version: 1
  owners: [ml-platform]
environment:
  lock: requirements.lock
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  train: {epochs: 1, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
  args: {test_fraction: 0.25, calibration_fraction: 0.15, test_seed: 0}
seeds: [0]
stages:
  - name: round
    plugin: toy-round
    params: {decimals: DECIMALS}
  - name: export
    kind: export
evaluators:
  - kind: accuracy
  - plugin: toy-weights
gates:
  - name: few-values
    owner: ml-lead
    metric: toy_weights.distinct
    rule: bound
    max: 100000
    basis: estimate
    after: round
"""


def _install(source: Path, into: Path) -> Path:
    """Build and install the plug-in at `source` into `into`/site (offline, with the venv's
    setuptools), from a copy, so that no build folder is left in the repository."""
    copy = into / "source"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    site = into / "site"
    uv = Path(sys.executable).with_name("uv")
    if uv.exists():
        command = [str(uv), "pip", "install", "--python", sys.executable, "--offline"]
        command += ["--no-cache"]
    else:
        command = [sys.executable, "-m", "pip", "install", "--no-index"]
    command += ["--target", str(site), "--no-deps", "--no-build-isolation", "--quiet", str(copy)]
    subprocess.run(command, check=True, capture_output=True, text=True)
    return site


@pytest.fixture(scope="module")
def toy_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _install(TOY_SOURCE, tmp_path_factory.mktemp("toy"))


def _forget_toy() -> None:
    for name in [m for m in sys.modules if m == MODULE or m.startswith(f"{MODULE}.")]:
        del sys.modules[name]


@pytest.fixture
def toy(toy_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """compressgate-toy installed, on sys.path for this test only, and not yet imported."""
    _forget_toy()
    monkeypatch.syspath_prepend(str(toy_site))
    yield toy_site
    _forget_toy()


def _recipe(ws: Workspace, decimals: int = 2, text: str = RECIPE) -> None:
    ws.recipe.write_text(text.replace("DECIMALS", str(decimals)))


def _allow(ws: Workspace, *entries: dict[str, Any]) -> None:
    """Set the trust file's plugins: to `entries` (none: drop the key)."""
    document = yaml.safe_load(ws.trust.read_text())
    document.pop("plugins", None)
    if entries:
        document["plugins"] = list(entries)
    ws.trust.write_text(yaml.safe_dump(document, sort_keys=False))


def _listing(cli: Invoke, ws: Workspace) -> dict[str, Any]:
    result = cli("plugins", "--trust", ws.trust, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)  # type: ignore[no-any-return]


def _code_sha256(cli: Invoke, ws: Workspace) -> str:
    (digest,) = {row["code_sha256"] for row in _listing(cli, ws)["plugins"]}
    return digest  # type: ignore[no-any-return]


def _sign(cli: Invoke, ws: Workspace) -> None:
    result = cli("recipe", "sign", ws.recipe, "--key", ws.key("ml-platform"))
    assert result.exit_code == 0, result.stderr


def _run_record(cli: Invoke, ws: Workspace) -> dict[str, Any]:
    submitted = cli("submit", ws.recipe, "--workspace", ws.root / ".cg", "--json")
    assert submitted.exit_code == 0, submitted.stderr
    run_id = json.loads(submitted.stdout)["run"]["run_id"]
    shown = cli("catalog", "show", run_id, "--workspace", ws.root / ".cg", "--json")
    assert shown.exit_code == 0, shown.stderr
    return json.loads(shown.stdout)  # type: ignore[no-any-return]


# --- the acceptance: allowed, both run in a recipe; not allowed, refused ------------------------


def test_allowed_plugin_stage_and_evaluator_run_in_a_recipe_and_the_run_records_their_code(
    cli: Invoke, workspace: Workspace, toy: Path
) -> None:
    _recipe(workspace)
    digest = _code_sha256(cli, workspace)
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0", "sha256": digest})
    _sign(cli, workspace)
    run = _run_record(cli, workspace)

    assert run["status"] == "succeeded", run["error"]
    ran = {
        "distribution": "compressgate-toy",
        "version": "0.1.0",
        "code_sha256": digest,
    }
    plugins = {p["name"]: p for p in run["environment"]["plugins"]}
    assert set(plugins) == {"toy-round", "toy-weights"}
    assert all(p.items() >= ran.items() for p in plugins.values())
    assert plugins["toy-round"]["group"] == "compressgate.stages"
    assert plugins["toy-weights"]["target"] == "compressgate_toy:WeightStats"

    stages = {s["name"]: s for s in run["stages"]}
    rounded = stages["round"]
    assert rounded["kind"] == "toy-round"
    assert rounded["details"]["decimals"] == 2
    assert rounded["details"]["weights_changed"] > 0
    assert rounded["details"]["plugin"].items() >= ran.items()
    assert rounded["artifact_sha256"] != stages["baseline"]["artifact_sha256"]

    # The plug-in evaluator measured every stage: rounding to 2 decimals leaves few values.
    before = stages["baseline"]["evaluations"]["toy-weights"]
    after = rounded["evaluations"]["toy-weights"]
    assert after["kind"] == "toy-weights"
    assert after["details"]["parameters"] == before["details"]["parameters"]
    distinct = rounded["metrics"]["toy_weights.distinct"]["estimate"]
    assert distinct < 1000 < stages["baseline"]["metrics"]["toy_weights.distinct"]["estimate"]
    assert "toy_weights.l2_norm" in stages["export"]["metrics"]  # of its torch ancestor
    assert MODULE in sys.modules  # it ran


def test_a_plugin_the_trust_does_not_allow_is_refused_and_never_imported(
    cli: Invoke, workspace: Workspace, toy: Path
) -> None:
    _recipe(workspace)
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0"})
    _sign(cli, workspace)  # signed while allowed; then the policy no longer allows it
    _allow(workspace)

    result = cli("submit", workspace.recipe, "--workspace", workspace.root / ".cg")

    assert result.exit_code == 2
    assert "stages[0].plugin: plug-in stage 'toy-round' comes from compressgate-toy 0.1.0" in (
        result.stderr
    )
    assert "evaluators[1].plugin: plug-in evaluator 'toy-weights'" in result.stderr
    assert "the trust policy does not allow-list it (plugins: none)" in result.stderr
    assert "to trust.yaml plugins: and has the policy re-signed" in result.stderr
    assert MODULE not in sys.modules
    assert not (workspace.root / ".cg" / "catalog.db").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        (
            {"version": "==0.2.0"},
            "the trust policy allows compressgate-toy==0.2.0 only; nothing of it was imported. "
            "To use it, install the release the policy names, or an owner changes",
        ),
        (
            {"version": "0.1.0", "sha256": "a" * 64},
            "and the trust policy allows the build of compressgate-toy==0.1.0 with code sha256 "
            + "a" * 64
            + " only",
        ),
    ],
    ids=["another-version", "another-build"],
)
def test_another_version_or_build_than_the_policy_pins_is_refused(
    cli: Invoke, workspace: Workspace, toy: Path, rule: dict[str, str], says: str
) -> None:
    _recipe(workspace)
    _allow(workspace, {"distribution": "compressgate-toy", **rule})
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2
    assert says in result.stderr
    assert MODULE not in sys.modules


def test_without_a_trust_file_no_plugin_runs(cli: Invoke, workspace: Workspace, toy: Path) -> None:
    _recipe(workspace)
    workspace.trust.unlink()
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2
    assert "no trust policy is in force" in result.stderr
    assert MODULE not in sys.modules


def test_params_are_checked_by_the_plugins_model_before_anything_is_recorded(
    cli: Invoke, workspace: Workspace, toy: Path
) -> None:
    _recipe(workspace, decimals=99)
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0"})
    _sign(cli, workspace)
    result = cli("submit", workspace.recipe, "--workspace", workspace.root / ".cg")
    assert result.exit_code == 2
    assert "stages[0].params.decimals: must be <= 8, not 99" in result.stderr
    assert not (workspace.root / ".cg" / "catalog.db").exists()


# --- compressgate plugins ----------------------------------------------------------------------


def test_plugins_lists_both_entry_points_and_whether_the_trust_allows_them(
    cli: Invoke, workspace: Workspace, toy: Path
) -> None:
    listed = _listing(cli, workspace)["plugins"]
    assert [(p["name"], p["group"], p["allowed"]) for p in listed] == [
        ("toy-round", "compressgate.stages", False),
        ("toy-weights", "compressgate.evaluators", False),
    ]
    assert {p["distribution"] for p in listed} == {"compressgate-toy"}
    assert {p["target"] for p in listed} == {
        "compressgate_toy:RoundWeights",
        "compressgate_toy:WeightStats",
    }
    assert listed[0]["why"] == "refused: the trust policy does not allow-list it (plugins: none)"

    _allow(workspace, {"distribution": "Compressgate_Toy", "version": "==0.1.0"})
    listed = _listing(cli, workspace)["plugins"]
    assert [p["allowed"] for p in listed] == [True, True]
    assert listed[0]["why"].startswith("allowed by plugins: Compressgate_Toy==0.1.0")
    assert MODULE not in sys.modules  # the listing reads metadata only

    text = cli("plugins", "--trust", workspace.trust)
    assert text.exit_code == 0
    assert "toy-round  compressgate.stages  compressgate-toy 0.1.0" in text.stdout


# --- the trust file's plugins: -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("entries", "says"),
    [
        (
            [{"distribution": "compressgate-toy", "version": ">=0.1"}],
            "plugins[0].version: '>=0.1' is not one exact version",
        ),
        ([{"distribution": "compressgate-toy"}], "plugins[0].version: required, but missing"),
        (
            [{"distribution": "compressgate toy", "version": "0.1.0"}],
            "plugins[0].distribution: 'compressgate toy' is not a distribution name",
        ),
        (
            [{"distribution": "compressgate-toy", "version": "0.1.0", "sha256": "abc"}],
            "plugins[0].sha256:",
        ),
        (
            [{"distribution": "compressgate-toy", "version": "0.1.0", "versions": "0.2.0"}],
            "plugins[0].versions: unknown key 'versions' (did you mean 'version'?)",
        ),
        (
            [
                {"distribution": "compressgate-toy", "version": "0.1.0"},
                {"distribution": "compressgate_toy", "version": "0.2.0"},
            ],
            "plugins[1] names compressgate_toy again (first at plugins[0])",
        ),
    ],
    ids=["specifier", "no-version", "bad-name", "bad-digest", "unknown-key", "twice"],
)
def test_a_malformed_plugins_entry_is_a_manifest_error_naming_the_field(
    workspace: Workspace, entries: list[dict[str, str]], says: str
) -> None:
    _allow(workspace, *entries)
    with pytest.raises(ManifestError, match=r"trust\.yaml:") as raised:
        load_trust(workspace.trust)
    assert says in str(raised.value)


def test_adding_an_owner_keeps_the_plugins_allow_list(workspace: Workspace) -> None:
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0"})
    _, _, public = generate_keypair("newcomer", workspace.keys)
    add_owner_key(workspace.trust, "newcomer", public, ("approver",))
    assert [r.pin() for r in load_trust(workspace.trust).plugins] == ["compressgate-toy==0.1.0"]


# --- the manifest: `plugin:` entries beside the built-in kinds ---------------------------------


def test_a_kind_that_is_not_built_in_keeps_the_unknown_kind_message(
    cli: Invoke, workspace: Workspace, toy: Path
) -> None:
    _recipe(workspace, text=RECIPE.replace("plugin: toy-round", "kind: toy-round"))
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2
    assert "stages[0].kind: unknown kind 'toy-round'; known: distill, prune, quantize, export" in (
        result.stderr
    )


@pytest.mark.parametrize(
    ("edit", "says"),
    [
        (
            ("plugin: toy-round", "plugin: toy-rond"),
            "stages[0].plugin: unknown stage plug-in 'toy-rond': no installed distribution "
            "provides it in the entry point group compressgate.stages (did you mean "
            "'toy-round'?); installed: toy-round (compressgate-toy 0.1.0)",
        ),
        (
            ("plugin: toy-round", "plugin: prune"),
            "stages[0].plugin: 'prune' is a built-in stage kind: write 'kind: prune'",
        ),
        (
            ("plugin: toy-weights", "plugin: Toy_Weights"),
            "evaluators[1].plugin: 'Toy_Weights' is not a plug-in name",
        ),
        (("params: {decimals", "parms: {decimals"), "stages[0].parms: unknown key 'parms'"),
        (
            ("  - plugin: toy-weights\n", "  - {plugin: toy-weights, confidence: 0.9}\n"),
            "evaluators[1]: a plug-in evaluator reports its own intervals",
        ),
        (
            (
                "rule: bound\n    max: 100000\n    basis: estimate",
                "rule: relative\n    max_drop: 1",
            ),
            "gates[0].rule: 'toy_weights.distinct' comes from the plug-in evaluator "
            "'toy-weights', and no paired interval of its change from the baseline is measured",
        ),
    ],
    ids=["not-installed", "built-in-name", "bad-name", "misspelt-key", "confidence", "relative"],
)
def test_bad_plugin_entries_are_located_errors(
    cli: Invoke, workspace: Workspace, toy: Path, edit: tuple[str, str], says: str
) -> None:
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0"})
    assert edit[0] in RECIPE
    _recipe(workspace, text=RECIPE.replace(*edit))
    result = cli("recipe", "validate", workspace.recipe)
    assert result.exit_code == 2
    assert says in result.stderr
    assert MODULE not in sys.modules


def test_plugin_entries_round_trip_and_the_schema_admits_them(
    workspace: Workspace, toy: Path
) -> None:
    _recipe(workspace)
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0"})
    recipe = load_recipe(workspace.recipe, trust=load_trust(workspace.trust)).recipe
    dumped = recipe.model_dump(mode="json", by_alias=True)
    assert dumped["stages"][0] == {
        "name": "round",
        "plugin": "toy-round",
        "params": {"decimals": 2},
    }
    assert dumped["evaluators"][1] == {"plugin": "toy-weights", "params": {}}
    assert type(recipe).model_validate(dumped) == recipe
    assert recipe.stages[0].describe() == "plug-in stage 'toy-round' with decimals=2"

    import jsonschema

    jsonschema.Draft7Validator(recipe_schema()).validate(dumped)
    dumped["stages"][0]["kind"] = "prune"  # a plug-in entry names no kind
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(recipe_schema()).validate(dumped)


def test_the_code_digest_follows_the_installed_plugin_code(
    workspace: Workspace, toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another build of the plug-in is another code digest: cached stages are not reused."""
    _recipe(workspace)
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0"})
    recipe = load_recipe(workspace.recipe, trust=load_trust(workspace.trust)).recipe
    before = code_digests(recipe)
    assert before["stage:toy-round"]["version"] == "0.1.0"

    changed = tmp_path / "changed"
    shutil.copytree(TOY_SOURCE, changed)
    module = changed / MODULE / "__init__.py"
    module.write_text(module.read_text() + "\n# another build of 0.1.0\n")
    monkeypatch.syspath_prepend(str(_install(changed, tmp_path / "build")))
    after = code_digests(recipe)
    assert after["stage:toy-round"]["code_sha256"] != before["stage:toy-round"]["code_sha256"]


# --- what a plug-in may not do ------------------------------------------------------------------


def _dist_info(site: Path, name: str, entry_points: str) -> None:
    """A distribution's metadata alone: what `pip install` of a wheel would leave."""
    info = site / f"{name.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)
    (info / "RECORD").write_text(
        "".join(f"{info.name}/{f},,\n" for f in ("METADATA", "entry_points.txt", "RECORD"))
    )


def test_an_entry_point_naming_a_module_its_distribution_does_not_hold_is_refused(
    toy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An allowed distribution cannot lend its allowance to other code: its entry point's
    module must be one of its own files."""
    site = tmp_path / "site"
    groups = "[compressgate.stages]\nborrowed = compressgate_toy:RoundWeights\nshell = os:system\n"
    _dist_info(site, "compressgate-borrower", groups)
    monkeypatch.syspath_prepend(str(site))
    for name, module in (("borrowed", "compressgate_toy"), ("shell", "os")):
        with pytest.raises(ManifestError, match=f"names the module {module}, which is not a file"):
            find("stage", name).load()
    assert MODULE not in sys.modules


class _Forger(Evaluator[Any]):
    kind = "toy-weights"
    metric = "accuracy"

    def evaluate(self, *args: Any) -> PluginResult:
        estimate = Estimate.exact(1.0, higher_is_better=True)
        return PluginResult(kind=self.kind, estimates={self.metric: estimate})


class _Thrower(Evaluator[Any]):
    kind = "toy-weights"

    def evaluate(self, *args: Any) -> PluginResult:
        raise RuntimeError("boom")


@pytest.mark.parametrize(
    ("target", "says"),
    [
        (_Forger, "it reported the metric 'accuracy', outside its own prefix 'toy_weights.'"),
        (_Thrower, "evaluator 'toy-weights' after stage 'round' (seed 0): RuntimeError: boom"),
    ],
    ids=["built-in-metric", "raises"],
)
def test_a_plugin_evaluator_cannot_report_a_built_in_metric_and_its_failure_is_the_stages(
    target: type[Evaluator[Any]], says: str
) -> None:
    loaded = LoadedPlugin(entry=None, code_sha256=None, target=target)  # type: ignore[arg-type]
    plugins = Plugins(evaluators={"toy-weights": loaded})
    spec = PluginEvaluatorSpec.model_validate({"plugin": "toy-weights"})
    ctx = EvalContext(seed=0, stage="round", splits=None)  # type: ignore[arg-type]
    with pytest.raises(StageError) as raised:
        evaluate_stage([spec], None, None, None, ctx, plugins)  # type: ignore[arg-type]
    assert says in str(raised.value)


def test_a_change_of_the_plugins_allow_list_is_shown_to_the_root_owners(
    workspace: Workspace,
) -> None:
    """`trust propose` lists what the root owners sign: a plug-in allowed is one line of it."""
    from compressgate.registry.governance.policy import _changes

    before = load_trust(workspace.trust)
    _allow(workspace, {"distribution": "compressgate-toy", "version": "0.1.0", "sha256": "b" * 64})
    after = load_trust(workspace.trust)
    (change,) = _changes(before, after)
    assert (change.what, change.detail) == (
        "plug-ins allowed",
        f"compressgate-toy==0.1.0 (code sha256 {'b' * 64})",
    )
    assert [c.what for c in _changes(after, before)] == ["plug-ins allowed"]
    assert _changes(after, after) == []
