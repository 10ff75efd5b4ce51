"""Evaluators inside a run (after every stage, across seeds, re-evaluated when they change) and on
demand through `compressgate evaluate`, on a quick two-seed digits recipe with every kind."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from compressgate.recipes.examples import digits
from compressgate.recipes.load import load_recipe
from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import add_owner_key
from compressgate.registry.authoring import init_example
from compressgate.registry.catalog.records import RunRecord
from compressgate.registry.catalog.repository import Catalog, catalog_url
from compressgate.registry.cli import cli as cli_group
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.recipes import DEFAULTS, QUICK

EVALUATORS = """\
evaluators:
  - {kind: accuracy}
  - {kind: paired}
  - {kind: calibration, bins: BINS, resamples: 300}
  - {kind: fairness, resamples: 300}
  - {kind: classes, top: 2}
  - {kind: fidelity, against: parent, resamples: 300}
  - kind: robustness
    shifts: [{kind: gaussian_noise, severities: [0.2]}, {kind: occlusion, severities: [0.25]}]
  - {kind: latency, batch_sizes: [1, 8], warmup: 3, repeats: 30}
  - {kind: size}
  - {kind: exemplars}
"""
# Evidence that does not depend on the clock: re-measured on demand, it must be identical.
STABLE = ("accuracy", "paired", "calibration", "fairness", "classes", "fidelity", "robustness")


@dataclass
class Ran:
    root: Path
    recipe: Path
    key: Path
    summary: dict  # type: ignore[type-arg]

    @property
    def store(self) -> Path:
        return self.root / ".cg"

    def record(self) -> dict:  # type: ignore[type-arg]
        """The full run record, exported from the catalog."""
        code, out, err = self.cli(
            "catalog", "show", self.summary["run_id"], "--workspace", self.store, "--json"
        )
        assert code == 0, err
        return json.loads(out)  # type: ignore[no-any-return]

    def cli(self, *args: str | Path) -> tuple[int, str, str]:
        result = CliRunner().invoke(cli_group, [str(a) for a in args], catch_exceptions=False)
        return result.exit_code, result.stdout, result.stderr

    def write(self, bins: int = 12) -> None:
        text = QUICK
        for key, value in DEFAULTS.items():
            text = text.replace(key, value)
        text = text.replace("seeds: [0]", "seeds: [0, 1]")
        text = text.replace(
            "args: {calibration_fraction", "args: {test_seed: 0, calibration_fraction"
        )
        self.recipe.write_text(text + EVALUATORS.replace("BINS", str(bins)))
        sign_recipe(self.recipe, load_private_key(self.key))

    def run(self) -> dict:  # type: ignore[type-arg]
        code, out, err = self.cli("run", self.recipe, "--workspace", self.store, "--json")
        assert code == 0, err
        self.summary = json.loads(out)
        return self.summary


def _workspace(base: Path) -> Ran:
    root = base / "ws"
    init_example(root, "digits")
    keys = base / "keys"
    for owner, role in [("ml-platform", "author"), ("ml-lead", "approver")]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(root / "trust.yaml", owner, public, (role,))  # type: ignore[arg-type]
    ran = Ran(root, root / "recipe.yaml", keys / "ml-platform.key", {})
    ran.write()
    ran.run()
    return ran


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ran]:
    yield _workspace(tmp_path_factory.mktemp("evaluate"))


def stage(summary: dict, seed: int, name: str) -> dict:  # type: ignore[type-arg]
    return next(s for s in summary["stages"] if s["seed"] == seed and s["name"] == name)


def test_every_compressed_stage_gets_exactly_the_metrics_the_recipe_declares(ran: Ran) -> None:
    recipe = load_recipe(ran.recipe).recipe
    declared = set(recipe.metric_names()) - {"exemplars.fraction"}
    for record in ran.summary["stages"]:
        metrics = set(record["metrics"])
        if record["kind"] == "baseline":
            assert "accuracy" in metrics and "paired.accuracy_difference" not in metrics
            assert metrics < declared
        elif record["format"] == "torch":
            assert metrics == declared - set(recipe.onnx_only_metrics()), record["name"]
        else:
            assert metrics == declared, record["name"]
        for m in record["metrics"].values():
            assert m["ci_low"] <= m["estimate"] <= m["ci_high"], m


def test_the_record_keeps_full_evidence_and_the_size_counts_fill_the_stage(ran: Ran) -> None:
    record = ran.record()
    int8 = next(s for s in record["stages"] if s["name"] == "int8" and s["seed"] == 0)
    evaluations = int8["evaluations"]
    assert set(evaluations) == set(STABLE) | {"latency", "size"}
    assert len(evaluations["accuracy"]["predictions"]) == 450
    assert (
        evaluations["calibration"]["bins"] == len(evaluations["calibration"]["reliability"]) == 12
    )
    assert evaluations["latency"]["runner"] == evaluations["latency"]["baseline_runner"]
    assert evaluations["latency"]["runner"] == "onnxruntime"
    assert evaluations["size"]["peak_memory_bytes"]["estimate"] > 0
    assert int8["params"] == evaluations["size"]["params"]["estimate"]
    assert int8["macs"] == evaluations["size"]["macs"]["estimate"]
    distill = next(s for s in record["stages"] if s["name"] == "distill" and s["seed"] == 0)
    assert distill["evaluations"]["latency"]["runner"] == "torch"
    assert distill["evaluations"]["fidelity"]["reference"] == "baseline"  # its parent
    assert int8["evaluations"]["fidelity"]["reference"] == "prune"


def test_metrics_are_summarised_over_the_seeds(ran: Ran) -> None:
    record = ran.record()
    for name in ("baseline", "distill", "prune", "int8", "export"):
        summary = record["aggregate"][name]["accuracy"]
        values = [stage(ran.summary, s, name)["metrics"]["accuracy"]["estimate"] for s in (0, 1)]
        assert summary["mean"] == pytest.approx(np.mean(values))
        assert summary["worst"] == pytest.approx(min(values))
        assert summary["worst_seed"] == int(np.argmin(values))
        assert summary["seeds"] == 2
    assert ran.summary["aggregate"]["int8"]["accuracy"]["spread"] >= 0


def test_exemplars_compare_the_seeds_populations_on_the_shared_test_set(ran: Ran) -> None:
    record = ran.record()
    for name in ("distill", "prune", "int8", "export"):
        found = record["exemplars"][name]
        assert found["n"] == 450  # test_seed fixes the test split: every sample is shared
        # Recomputed from the recorded predictions (two seeds: modal sets are the votes).
        base = [
            stage(record, s, "baseline")["evaluations"]["accuracy"]["predictions"] for s in (0, 1)
        ]
        cand = [stage(record, s, name)["evaluations"]["accuracy"]["predictions"] for s in (0, 1)]
        differ = [
            set(b) != set(c)
            for b, c in zip(zip(*base, strict=True), zip(*cand, strict=True), strict=True)
        ]
        assert found["count"] == sum(differ)
        assert found["fraction"]["estimate"] == pytest.approx(sum(differ) / 450)
    assert ran.summary["exemplars"]["int8"]["n"] == 450


def test_evaluate_on_demand_reproduces_the_recorded_evidence(ran: Ran) -> None:
    int8 = stage(ran.summary, 1, "int8")
    code, out, err = ran.cli(
        "evaluate", int8["artifact_sha256"][:10], "--workspace", ran.store, "--json"
    )
    assert code == 0, err
    result = json.loads(out)
    assert (result["stage"], result["seed"], result["against_stage"]) == ("int8", 1, "baseline")
    recorded = stage(ran.record(), 1, "int8")["evaluations"]
    for kind in STABLE:
        assert result["evaluations"][kind] == recorded[kind], kind
    assert set(result["metrics"]) == set(int8["metrics"])


def test_evaluate_against_another_variant_pairs_their_predictions(ran: Ran) -> None:
    int8, prune = stage(ran.summary, 0, "int8"), stage(ran.summary, 0, "prune")
    code, out, err = ran.cli(
        "evaluate",
        int8["artifact_sha256"][:12],
        "--against",
        prune["artifact_sha256"][:12],
        "--only",
        "paired",
        "--only",
        "size",
        "--workspace",
        ran.store,
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert set(result["evaluations"]) == {"paired", "size"}
    record = ran.record()
    truth = digits.load(0, calibration_fraction=0.15, test_seed=0).test.y.numpy()
    right = {
        name: np.array(stage(record, 0, name)["evaluations"]["accuracy"]["predictions"]) == truth
        for name in ("int8", "prune")
    }
    paired = result["evaluations"]["paired"]
    assert paired["n"] == 450
    assert paired["b"] == int(np.sum(right["prune"] & ~right["int8"]))
    assert paired["c"] == int(np.sum(right["int8"] & ~right["prune"]))
    assert result["evaluations"]["size"]["reference"].startswith("the baseline's artifact")
    assert result["metrics"]["size.ratio"]["estimate"] == pytest.approx(
        int8["size_bytes"] / prune["size_bytes"]
    )


def test_evaluate_prints_a_table_of_every_metric(ran: Ran) -> None:
    export = stage(ran.summary, 0, "export")
    code, out, _ = ran.cli(
        "evaluate", export["artifact_sha256"][:8], "--only", "accuracy", "--workspace", ran.store
    )
    assert code == 0
    assert "against baseline" in out
    assert "accuracy" in out and "wilson" in out


@pytest.mark.parametrize(
    ("args", "exit_code", "says"),
    [
        (("0000000000",), 4, "no variant 0000000000"),
        (("xyz123",), 2, "is not a sha256 prefix"),
        (("PREFIX", "--only", "exemplars"), 2, "computed by `compressgate run`"),
        (("PREFIX", "--only", "bogus"), 2, "unknown evaluator kind 'bogus'"),
        (("PREFIX", "--against", "0000000000"), 4, "no variant 0000000000"),
    ],
)
def test_evaluate_refuses_bad_input_with_its_exit_code(
    ran: Ran, args: tuple[str, ...], exit_code: int, says: str
) -> None:
    prefix = stage(ran.summary, 0, "int8")["artifact_sha256"][:10]
    code, out, err = ran.cli(
        "evaluate", *(prefix if a == "PREFIX" else a for a in args), "--workspace", ran.store
    )
    assert code == exit_code, err
    assert says in err and out == ""
    assert "Traceback" not in err


def test_an_ambiguous_prefix_lists_the_variants_it_could_be(ran: Ran, tmp_path: Path) -> None:
    store = tmp_path / "store"
    record = RunRecord.model_validate(ran.record())
    # A twin run in another catalog whose int8 artifact shares the first 8 hex digits.
    twin = record.model_copy(update={"run_id": "run-29991231T000000Z-000000"}, deep=True)
    sha = record.stage(0, "int8").artifact_sha256
    assert sha is not None
    near = sha[:8] + ("0" if sha[8] != "0" else "1") + sha[9:]
    with Catalog(catalog_url(store)) as catalog:
        for run in (record, twin):
            catalog.record_run_start(run, recipe_content="", envelope="", lock_sha256="")
            int8 = run.stage(0, "int8")
            if run is twin:
                int8 = int8.model_copy(update={"artifact_sha256": near})
            catalog.record_stage(run.run_id, run.recipe.sha256, int8, {})
    code, _, err = ran.cli("evaluate", sha[:8], "--workspace", store)
    assert code == 2
    assert f"variant '{sha[:8]}' is ambiguous: it starts 2 variants" in err
    assert sha[:16] in err and near[:16] in err


def test_changed_evaluators_re_evaluate_cached_stages_without_recomputing_them(
    ran: Ran, tmp_path: Path
) -> None:
    copy = Ran(tmp_path / "ws", tmp_path / "ws" / "recipe.yaml", ran.key, {})
    shutil.copytree(ran.root, copy.root)
    again = copy.run()  # the same recipe: cached, evaluations reused
    assert all(s["cached"] and s["eval_seconds"] == 0 for s in again["stages"])
    assert [s["metrics"]["accuracy"] for s in again["stages"]] == [
        s["metrics"]["accuracy"] for s in ran.summary["stages"]
    ]
    copy.write(bins=7)
    changed = copy.run()
    assert [s["artifact_sha256"] for s in changed["stages"]] == [
        s["artifact_sha256"] for s in ran.summary["stages"]
    ]
    assert all(s["cached"] and s["eval_seconds"] > 0 for s in changed["stages"])
    int8 = stage(copy.record(), 0, "int8")["evaluations"]["calibration"]
    assert int8["bins"] == 7


def test_evaluate_refuses_a_recipe_changed_since_the_run(ran: Ran) -> None:
    record = ran.record()
    original = ran.recipe.read_bytes()
    ran.recipe.write_bytes(original + b"# edited\n")
    try:
        sha = stage(record, 0, "int8")["artifact_sha256"]
        code, _, err = ran.cli("evaluate", sha[:10], "--workspace", ran.store)
    finally:
        ran.recipe.write_bytes(original)
    assert code == 3
    assert "is not the recipe run" in err


def test_a_damaged_catalog_is_an_integrity_error_naming_it(ran: Ran, tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    (store / "catalog.db").write_bytes(b"this is not a database" * 100)
    code, out, err = ran.cli("evaluate", "abcdef", "--workspace", store)
    assert code == 3 and out == ""
    assert "catalog.db" in err and "damaged" in err
    assert "Traceback" not in err
