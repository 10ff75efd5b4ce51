"""`compressgate export mlflow` (registry/mlflow_bridge.py), read back with MLflow's own client
from a local file store: every stage's metrics and intervals are the catalog's, the uploaded
ONNX bytes hash to the recorded digest, the model version's tags are the catalog's digests and
review; exporting again duplicates nothing; an unapproved run, a tampered artifact and a
missing MLflow are refused before anything is written.

One module-wide workspace holds two runs of a small signed recipe (the digits CNN, two seeds,
a prune stage and an ONNX export with external data): one approved by its gate's owner, one
awaiting approval. The approved run's first export is shared too.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from compressgate.evaluators.results import Estimate
from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import load_trust
from compressgate.registry import Workspace
from compressgate.registry.catalog.records import RunRecord
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.catalog.store import Artifact, StoredFile
from compressgate.registry.cli import cli as cli_group
from compressgate.registry.kernel.keys import load_private_key
from compressgate.registry.mlflow_bridge import (
    PARAM_LIMIT,
    key_part,
    metric_values,
    param_text,
    safe_uri,
    tracking_uri,
)
from tests.helpers.workspace import CliResult, make_workspace

RECIPE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: mlflow-bridge, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  args: {channels: [8, 16], hidden: 32}
  train: {epochs: 2, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
  args: {test_seed: 0}
seeds: [0, 1]
stages:
  - {name: prune, kind: prune, method: magnitude, sparsity: 0.3, finetune_epochs: 1}
  - {name: export, kind: export, external_data: true}
evaluators:
  - {kind: accuracy}
  - {kind: paired}
  - {kind: size}
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.5, approval: required}
"""
NAME = "mlflow-bridge"
MLFLOW_ENV = ("MLFLOW_ALLOW_FILE_STORE", "MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass(frozen=True)
class Scene:
    store: Path  # the workspace: catalog and artifact store
    approved: str  # a run whose gate its owner approved
    awaiting: str  # a run of the same recipe, its gate awaiting approval
    approver: Path  # the gate owner's private key

    def catalog(self) -> Catalog:
        return Catalog(f"sqlite:///{self.store / 'catalog.db'}")

    def run(self, run_id: str) -> RunRecord:
        with self.catalog() as catalog:
            return catalog.run(run_id)


@dataclass(frozen=True)
class Exported:
    mlruns: Path
    result: CliResult

    @property
    def uri(self) -> str:
        return self.mlruns.as_uri()

    @property
    def data(self) -> dict[str, Any]:
        assert self.result.exit_code == 0, self.result.stderr
        return json.loads(self.result.stdout)  # type: ignore[no-any-return]

    def client(self) -> MlflowClient:
        """MLflow's own client on the exported file store, as a user reads it back (the bridge
        allowed the file store for its export only)."""
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # removed again by `quiet`'s undo
        return MlflowClient(tracking_uri=self.uri, registry_uri=self.uri)


def quiet(patch: pytest.MonkeyPatch) -> None:
    """No usage telemetry from MLflow, no MLflow variable from the caller's shell: the bridge
    allows the file store itself for a file: URI."""
    patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    for name in MLFLOW_ENV:
        patch.setenv(name, "")  # recorded: the undo puts back what was (nothing) ...
        patch.delenv(name)  # ... and it is not set meanwhile


def export(store: Path, run_id: str, mlruns: Path, *extra: str | Path) -> Exported:
    """`compressgate export mlflow RUN --json` to the file store `mlruns`, in-process."""
    args = ["export", "mlflow", run_id, "--tracking-uri", mlruns.as_uri(), "--workspace", store]
    result = CliRunner().invoke(
        cli_group, [str(a) for a in [*args, "--json", *extra]], catch_exceptions=False
    )
    return Exported(mlruns, CliResult(result.exit_code, result.stdout, result.stderr))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    ws = make_workspace(tmp_path_factory.mktemp("mlflow"))
    ws.recipe.write_text(RECIPE)
    sign_recipe(ws.recipe, load_private_key(ws.key("ml-platform")), load_trust(ws.trust))
    with Workspace(ws.root / ".cg") as registry:
        approved = registry.submit(ws.recipe).run.run_id
        registry.sign_off(approved, "accuracy", kind="approval", key_path=ws.key("ml-lead"))
        awaiting = registry.submit(ws.recipe).run.run_id  # its stages from the stage cache
    return Scene(ws.root / ".cg", approved, awaiting, ws.key("ml-lead"))


@pytest.fixture(scope="module")
def first(scene: Scene, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    """The approved run exported once, to a file store of its own."""
    with pytest.MonkeyPatch.context() as patch:
        quiet(patch)
        yield export(scene.store, scene.approved, tmp_path_factory.mktemp("first") / "mlruns")


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet(monkeypatch)


def mlflow_runs(client: MlflowClient, experiment: str = NAME) -> list[Any]:
    """Every run of the experiment, deleted ones too."""
    found = client.get_experiment_by_name(experiment)
    if found is None:
        return []
    return list(client.search_runs([found.experiment_id], run_view_type=ViewType.ALL))


def variants(client: MlflowClient) -> dict[str, Any]:
    """The active variant runs, by variant id."""
    return {
        r.data.tags["compressgate.variant"]: r
        for r in mlflow_runs(client)
        if r.data.tags.get("compressgate.role") == "variant" and r.info.lifecycle_stage == "active"
    }


def expected_metrics(metrics: dict[str, Estimate]) -> dict[str, float]:
    expected = {}
    for name, found in metrics.items():
        expected |= {
            name: found.estimate,
            f"{name}.ci_low": found.ci_low,
            f"{name}.ci_high": found.ci_high,
        }
    return expected


# --- the mapping ------------------------------------------------------------------------------


def test_every_stage_is_a_nested_run_holding_the_catalogs_estimates_and_intervals(
    scene: Scene, first: Exported
) -> None:
    data, client = first.data, first.client()
    run = scene.run(scene.approved)
    done = [(s.seed, s.name) for s in run.stages if s.status == "done"]
    assert len(done) == 6  # two seeds: baseline, prune, export
    assert [(r["seed"], r["stage"]) for r in data["runs"]] == sorted(
        done, key=lambda d: (d[0], ["baseline", "prune", "export"].index(d[1]))
    )
    found = variants(client)
    assert set(found) == {f"{scene.approved}/{seed}/{stage}" for seed, stage in done}
    for stage in run.stages:
        mlflow_run = found[f"{scene.approved}/{stage.seed}/{stage.name}"]
        assert mlflow_run.info.run_id == next(
            r["mlflow_run_id"]
            for r in data["runs"]
            if (r["seed"], r["stage"]) == (stage.seed, stage.name)
        )
        assert mlflow_run.data.metrics == expected_metrics(stage.metrics), stage.name
        assert "accuracy.ci_low" in mlflow_run.data.metrics
        tags = mlflow_run.data.tags
        assert tags["mlflow.parentRunId"] == data["parent_run_id"]
        assert tags["compressgate.artifact_sha256"] == stage.artifact_sha256
        assert tags["compressgate.run_id"] == scene.approved
        assert tags["compressgate.export"] == "complete"
        assert mlflow_run.info.status == "FINISHED"
        assert mlflow_run.data.params["seed"] == str(stage.seed)
    prune = found[f"{scene.approved}/0/prune"].data.params
    assert prune["stage.prune.sparsity"] == "0.3"
    assert prune["stage.prune.method"] == "magnitude"
    baseline = found[f"{scene.approved}/0/baseline"].data.params
    assert baseline["model.args.channels"] == "[8, 16]"
    assert baseline["model.train.epochs"] == "2"


def test_the_parent_run_holds_the_recipe_the_gates_and_the_catalogs_identity(
    scene: Scene, first: Exported, tmp_path: Path
) -> None:
    data, client = first.data, first.client()
    parent = client.get_run(data["parent_run_id"])
    run = scene.run(scene.approved)
    with scene.catalog() as catalog:
        info = catalog.run_info(scene.approved)
        head = catalog.evidence_head()
        decision = catalog.gate_decisions(scene.approved)[0]
    assert parent.info.run_name == f"{NAME} v1 {scene.approved}"
    params = parent.data.params
    assert params["seeds"] == "[0, 1]"
    assert params["lock_sha256"] == info.lock_sha256
    assert params["recipe.sha256"] == run.recipe.sha256
    assert params["stage.prune.sparsity"] == "0.3"
    assert params["stage.export.external_data"] == "true"
    assert params["gate.accuracy.min"] == "0.5"
    tags = parent.data.tags
    assert tags["compressgate.role"] == "run"
    assert tags["compressgate.review"] == "approved"
    assert tags["compressgate.recipe_sha256"] == run.recipe.sha256
    assert tags["compressgate.policy_version"] == "none"  # the unsigned regime
    assert tags["compressgate.catalog"] == f"sqlite:///{scene.store / 'catalog.db'}"
    assert tags["compressgate.catalog_head"] == head.sha256
    assert tags["compressgate.gate.accuracy.state"] == "approved"
    assert tags["compressgate.gate.accuracy.evidence_sha256"] == decision.evidence_sha256
    assert tags["mlflow.user"] == info.actor
    metrics = parent.data.metrics
    assert metrics["gate_decision/accuracy"] == decision.estimate
    assert metrics["gate_decision/accuracy.ci_low"] == decision.ci_low
    assert metrics["gate_decision/accuracy.threshold"] == decision.threshold
    mean = run.aggregate["export"]["accuracy"]
    assert metrics["export/accuracy"] == mean.mean
    assert (metrics["export/accuracy.ci_low"], metrics["export/accuracy.ci_high"]) == (
        mean.ci_low,
        mean.ci_high,
    )
    documents = {a.path for a in client.list_artifacts(parent.info.run_id, "compressgate")}
    assert documents == {
        "compressgate/decisions.json",
        "compressgate/evidence.json",
        "compressgate/recipe.yaml",
    }
    folder = Path(client.download_artifacts(parent.info.run_id, "compressgate", str(tmp_path)))
    with Workspace(scene.store) as ws:
        assert (folder / "evidence.json").read_bytes() == ws.report(scene.approved, "json")
    decisions = json.loads((folder / "decisions.json").read_text())
    assert decisions["status"] == "approved"
    assert decisions["gates"][0]["signoffs"][0]["owner"] == "ml-lead"
    assert hashlib.sha256((folder / "recipe.yaml").read_bytes()).hexdigest() == run.recipe.sha256


def test_uploaded_onnx_files_are_the_catalogs_bytes(
    scene: Scene, first: Exported, tmp_path: Path
) -> None:
    client = first.client()
    found = variants(client)
    for stage in scene.run(scene.approved).stages:
        mlflow_run = found[f"{scene.approved}/{stage.seed}/{stage.name}"]
        uploaded = [a.path for a in client.list_artifacts(mlflow_run.info.run_id, "model")]
        if stage.format != "onnx" and (stage.seed, stage.name) != (0, "export"):
            assert uploaded == [], stage.name  # a torch variant is not uploaded
            continue
        assert sorted(uploaded) == ["model/model.onnx", "model/model.onnx.data"]
        folder = Path(client.download_artifacts(mlflow_run.info.run_id, "model", str(tmp_path)))
        files = tuple(
            StoredFile(
                f["name"], hashlib.sha256((folder / f["name"]).read_bytes()).hexdigest(), f["size"]
            )
            for f in stage.files
        )
        assert [f.sha256 for f in files] == [f["sha256"] for f in stage.files]
        assert Artifact.of(files).sha256 == stage.artifact_sha256
        shutil.rmtree(folder)


def test_the_model_version_carries_the_catalogs_digests_and_review(
    scene: Scene, first: Exported
) -> None:
    data, client = first.data, first.client()
    assert data["model_version"] == {
        "name": NAME,
        "version": 1,
        "variant": f"{scene.approved}/0/export",
        "review": "approved",
        "created": True,
    }
    version = client.get_model_version(NAME, "1")
    run = scene.run(scene.approved)
    export_0 = run.stage(0, "export")
    with scene.catalog() as catalog:
        head = catalog.evidence_head()
    assert version.tags == {
        "compressgate.artifact_sha256": export_0.artifact_sha256,
        "compressgate.recipe_sha256": run.recipe.sha256,
        "compressgate.recipe": NAME,
        "compressgate.recipe_version": "1",
        "compressgate.run_id": scene.approved,
        "compressgate.variant": f"{scene.approved}/0/export",
        "compressgate.seed": "0",
        "compressgate.stage": "export",
        "compressgate.format": "onnx",
        "compressgate.review": "approved",
        "compressgate.promotable": "true",
        "compressgate.policy_version": "none",
        "compressgate.catalog": f"sqlite:///{scene.store / 'catalog.db'}",
        "compressgate.catalog_head": head.sha256,
        "compressgate.catalog_size": str(head.size),
    }
    child = next(
        r["mlflow_run_id"] for r in data["runs"] if (r["seed"], r["stage"]) == (0, "export")
    )
    assert version.run_id == child
    assert version.source == f"runs:/{child}/model"


def test_exporting_again_duplicates_nothing_and_refreshes_the_tags(
    scene: Scene, first: Exported
) -> None:
    client = first.client()
    before = {r.info.run_id for r in mlflow_runs(client)}
    again = export(scene.store, scene.approved, first.mlruns)
    assert {r["mlflow_run_id"] for r in again.data["runs"]} == {
        r["mlflow_run_id"] for r in first.data["runs"]
    }
    assert again.data["parent_run_id"] == first.data["parent_run_id"]
    assert all(r["reused"] for r in again.data["runs"])
    assert again.data["model_version"]["version"] == 1
    assert again.data["model_version"]["created"] is False
    assert {r.info.run_id for r in mlflow_runs(client)} == before
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1
    child = again.data["runs"][0]["mlflow_run_id"]
    assert len(client.get_metric_history(child, "accuracy")) == 1
    parent = again.data["parent_run_id"]
    assert len(client.get_metric_history(parent, "gate_decision/accuracy")) == 1


def test_exporting_again_registers_what_is_missing_and_refreshes_the_review(
    scene: Scene, tmp_path: Path
) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(scene.store, copy)  # the approval is recorded in the copy only
    runs_only = export(copy, scene.awaiting, tmp_path / "mlruns", "--no-register")
    assert runs_only.data["model_version"] is None
    candidate = export(copy, scene.awaiting, tmp_path / "mlruns", "--allow-unapproved")
    assert candidate.data["model_version"]["created"] is True
    assert all(r["reused"] for r in candidate.data["runs"])
    client = candidate.client()
    assert "compressgate.not_promotable_because" in client.get_model_version(NAME, "1").tags
    with Workspace(copy) as ws:
        ws.sign_off(scene.awaiting, "accuracy", kind="approval", key_path=scene.approver)
        head = ws.catalog().evidence_head()
    approved = export(copy, scene.awaiting, tmp_path / "mlruns")
    assert approved.data["review"] == "approved"
    assert approved.data["parent_run_id"] == runs_only.data["parent_run_id"]
    assert approved.data["model_version"]["created"] is False
    parent = client.get_run(approved.data["parent_run_id"])
    assert parent.data.tags["compressgate.review"] == "approved"
    assert parent.data.tags["compressgate.gate.accuracy.state"] == "approved"
    assert parent.data.tags["compressgate.catalog_head"] == head.sha256
    tags = client.get_model_version(NAME, "1").tags
    assert tags["compressgate.review"] == "approved"
    assert tags["compressgate.promotable"] == "true"
    assert tags["compressgate.catalog_head"] == head.sha256
    assert "compressgate.not_promotable_because" not in tags
    assert len(client.search_model_versions(f"name = '{NAME}'")) == 1


def test_an_interrupted_export_is_logged_again_whole(scene: Scene, tmp_path: Path) -> None:
    done = export(scene.store, scene.approved, tmp_path / "mlruns", "--no-register")
    client = done.client()
    stale = done.data["runs"][2]["mlflow_run_id"]
    client.set_tag(stale, "compressgate.export", "started")  # as a kill mid-way leaves it
    again = export(scene.store, scene.approved, tmp_path / "mlruns", "--no-register")
    assert [r["reused"] for r in again.data["runs"]] == [True, True, False, True, True, True]
    assert client.get_run(stale).info.lifecycle_stage == "deleted"
    fresh = client.get_run(again.data["runs"][2]["mlflow_run_id"])
    assert fresh.data.tags["compressgate.export"] == "complete"
    assert len(variants(client)) == 6
    assert done.data["model_version"] is None
    assert client.search_registered_models() == []


def test_two_parents_of_one_run_are_a_conflict(scene: Scene, tmp_path: Path) -> None:
    done = export(scene.store, scene.approved, tmp_path / "mlruns", "--no-register")
    client = done.client()
    client.create_run(
        done.data["experiment_id"],
        tags={"compressgate.run_id": scene.approved, "compressgate.role": "run"},
    )
    again = export(scene.store, scene.approved, tmp_path / "mlruns", "--no-register")
    assert again.result.exit_code == 6, again.result.stderr
    assert "two exports ran at once" in again.result.stderr


# --- what is refused, before anything is written ---------------------------------------------


def test_a_run_not_approved_is_not_registered(scene: Scene, tmp_path: Path) -> None:
    refused = export(scene.store, scene.awaiting, tmp_path / "mlruns")
    assert refused.result.exit_code == 1
    stderr = refused.result.stderr
    assert f"{scene.awaiting}/0/export is not registered in MLflow" in stderr
    assert "awaiting-approval" in stderr
    assert "hint: --allow-unapproved registers it anyway" in stderr
    assert json.loads(refused.result.stdout)["exit_code"] == 1
    assert not refused.mlruns.exists()  # MLflow was not touched


def test_allow_unapproved_registers_it_tagged_with_its_review(scene: Scene, tmp_path: Path) -> None:
    done = export(
        scene.store,
        scene.awaiting,
        tmp_path / "mlruns",
        "--allow-unapproved",
        "--model-name",
        "digits-candidates",
        "--variant",
        "1/export",
        "--experiment",
        "candidates",
    )
    assert done.data["review"] == "awaiting-approval"
    assert done.data["model_version"]["variant"] == f"{scene.awaiting}/1/export"
    client = done.client()
    version = client.get_model_version("digits-candidates", "1")
    assert version.tags["compressgate.review"] == "awaiting-approval"
    assert version.tags["compressgate.promotable"] == "false"
    assert "awaiting-approval" in version.tags["compressgate.not_promotable_because"]
    assert version.tags["compressgate.variant"] == f"{scene.awaiting}/1/export"
    parent = client.get_run(done.data["parent_run_id"])
    assert parent.data.tags["compressgate.review"] == "awaiting-approval"
    assert parent.data.tags["compressgate.gate.accuracy.state"] == "awaiting-approval"


def test_no_register_exports_an_unapproved_runs_runs_only(scene: Scene, tmp_path: Path) -> None:
    done = export(scene.store, scene.awaiting, tmp_path / "mlruns", "--no-register")
    assert done.data["model_version"] is None
    assert len(variants(done.client())) == 6


def test_an_unknown_variant_is_not_found(scene: Scene, tmp_path: Path) -> None:
    missing = export(scene.store, scene.approved, tmp_path / "mlruns", "--variant", "7/export")
    assert missing.result.exit_code == 4
    assert "its variants: 0/baseline, 0/prune, 0/export, 1/baseline" in missing.result.stderr


def test_a_tampered_artifact_is_refused_with_exit_3_and_nothing_written(
    scene: Scene, tmp_path: Path
) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(scene.store, copy)
    data = scene.run(scene.approved).stage(1, "export").files[1]  # the external weights
    blob = copy / "objects" / "sha256" / data["sha256"][:2] / data["sha256"][2:]
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes()[:-1] + b"\x00")
    refused = export(copy, scene.approved, tmp_path / "mlruns")
    assert refused.result.exit_code == 3, refused.result.stderr
    assert f"{scene.approved}/1/export's file model.onnx.data" in refused.result.stderr
    assert "no longer hashes to its recorded digest" in refused.result.stderr
    assert not refused.mlruns.exists()  # MLflow was not touched


def test_without_mlflow_installed_exit_5_names_the_extra(
    scene: Scene, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [m for m in sys.modules if m == "mlflow" or m.startswith("mlflow.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    refused = export(scene.store, scene.approved, tmp_path / "mlruns")
    assert refused.result.exit_code == 5
    assert "MLflow is not installed" in refused.result.stderr
    assert "hint: pip install 'compressgate[mlflow]'" in refused.result.stderr
    assert not refused.mlruns.exists()


@pytest.mark.skipif(
    importlib.util.find_spec("alembic") is not None,
    reason="the full mlflow package is installed",
)
def test_a_database_tracking_uri_needs_the_full_mlflow_package(
    scene: Scene, tmp_path: Path
) -> None:
    result = CliRunner().invoke(
        cli_group,
        [
            "export",
            "mlflow",
            scene.approved,
            "--tracking-uri",
            f"sqlite:///{tmp_path}/m.db",
            "--workspace",
            str(scene.store),
        ],
        catch_exceptions=False,
    )
    assert result.exit_code == 5
    assert "needs the full `mlflow` package" in result.stderr
    assert "hint: pip install mlflow" in result.stderr


def test_the_file_store_is_allowed_for_the_export_only(scene: Scene, tmp_path: Path) -> None:
    done = export(scene.store, scene.approved, tmp_path / "mlruns", "--no-register")
    assert done.result.exit_code == 0, done.result.stderr
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ


# --- the pieces of the mapping ---------------------------------------------------------------


def test_metric_keys_keep_what_mlflow_accepts_and_every_interval() -> None:
    assert key_part("fairness.worst_group_accuracy_drop") == "fairness.worst_group_accuracy_drop"
    assert key_part("robustness.noise@0.1/acc:x") == "robustness.noise_0.1_acc_x"
    assert key_part("..") == "_"
    estimate = Estimate(estimate=0.9, ci_low=0.85, ci_high=0.93, n=450, method="wilson")
    assert metric_values({"accuracy": estimate}, prefix="int8/") == {
        "int8/accuracy": 0.9,
        "int8/accuracy.ci_low": 0.85,
        "int8/accuracy.ci_high": 0.93,
    }


def test_a_long_parameter_is_cut_with_its_length_and_digest() -> None:
    text = "x" * 10_000
    cut = param_text(text)
    assert len(cut) == PARAM_LIMIT
    assert f"cut: 10000 characters, sha256 {hashlib.sha256(text.encode()).hexdigest()}" in cut
    assert param_text([1, 2]) == "[1, 2]"
    assert param_text(True) == "true"


def test_uris_are_shown_without_passwords_and_paths_become_file_uris(tmp_path: Path) -> None:
    assert (
        safe_uri("https://me:secret@mlflow.example:5000/x")
        == "https://me:***@mlflow.example:5000/x"
    )
    assert safe_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert tracking_uri(str(tmp_path / "mlruns")) == (tmp_path / "mlruns").as_uri()
    assert tracking_uri("databricks") == "databricks"


# --- start-up --------------------------------------------------------------------------------

WRAPPER = """\
import atexit, sys
sys.argv = ["compressgate", *sys.argv[1:]]
from compressgate.registry.cli import main
atexit.register(
    lambda: print("mlflow imported: " + str("mlflow" in sys.modules), file=sys.stderr)
)
main()
"""


@pytest.mark.parametrize("command", [("--help",), ("export", "mlflow", "--help")], ids=" ".join)
def test_the_command_line_starts_without_importing_mlflow(command: tuple[str, ...]) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, *command], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "mlflow imported: False"
