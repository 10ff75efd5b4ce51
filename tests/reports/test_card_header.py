"""The model card's YAML header (`compressgate.reports.hfcard`), read back by the Hugging Face
Hub's own parser (`huggingface_hub.ModelCard`, offline) as the oracle: the run's recorded
estimates and intervals, nothing it did not record, and recipe text that stays a value."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The Hub's own card parser is the oracle (huggingface-hub is in the dev extra and the lock).
import huggingface_hub as hub
import pytest
import yaml

from compressgate.recipes.signing import sign_recipe
from compressgate.recipes.trust import load_trust
from compressgate.registry.kernel.keys import load_private_key
from compressgate.reports.hfcard import front_matter, header
from compressgate.reports.model import ReportData
from compressgate.reports.render import card
from tests.helpers.recipes import DEFAULTS, QUICK, run
from tests.helpers.workspace import CliResult, make_workspace

ROOT = Path(__file__).resolve().parents[2]
# accuracy twice (a headline metric and a gate's), fidelity.agreement gated with an interval,
# size.times_smaller gated without one (a byte count is exact): not a model-index metric.
GATES = """\
gates:
  - {name: accuracy, owner: ml-lead, after: int8, metric: accuracy, rule: non_inferior,
     margin: 0.15, approval: required}
  - {name: agreement, owner: serving, metric: fidelity.agreement, rule: bound, min: 0.5}
  - {name: size, owner: serving, metric: size.times_smaller, rule: bound, min: 1.0,
     basis: estimate}
"""
HOSTILE = "evil: \"x\" 'y'\n---\ninjected: true\n# heading\x1b[2J\u202e\u2028\x85 ok: [1]"


@dataclass(frozen=True)
class Recorded:
    run_id: str
    record: dict[str, Any]  # `catalog show RUN --json`
    data: ReportData  # what the report renders, from the evidence bundle
    text: str  # `report RUN --format card -o FILE`, as written and recorded


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    """A QUICK digits run (distill, prune, int8, export to ONNX) with three gates."""
    from click.testing import CliRunner

    from compressgate.registry.cli import cli as group

    def invoke(*args: str | Path) -> CliResult:
        result = CliRunner().invoke(group, [str(a) for a in args], catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)

    tmp = tmp_path_factory.mktemp("card")
    ws = make_workspace(tmp)
    text = QUICK
    for key, value in DEFAULTS.items():
        text = text.replace(key, value)
    ws.recipe.write_text(text + GATES)
    sign_recipe(ws.recipe, load_private_key(ws.key("ml-platform")), load_trust(ws.trust))
    code, summary, stderr = run(invoke, ws)
    assert code == 0, stderr
    run_id = summary["run_id"]
    store = ws.root / ".cg"
    shown = invoke("catalog", "show", run_id, "--workspace", store, "--json")
    assert shown.exit_code == 0, shown.stderr
    bundle = invoke("report", run_id, "--format", "json", "--workspace", store)
    assert bundle.exit_code == 0, bundle.stderr
    evidence = json.loads(bundle.stdout)
    del evidence["reports"]
    out = tmp / "card.md"
    written = invoke("report", run_id, "--format", "card", "-o", out, "--workspace", store)
    assert written.exit_code == 0, written.stderr
    return Recorded(
        run_id,
        json.loads(shown.stdout),
        ReportData.model_validate(evidence),
        out.read_text(encoding="utf-8"),
    )


def final_stage(record: dict[str, Any]) -> dict[str, Any]:
    """The first seed's last finished stage: the variant the card is about."""
    seed = record["seeds"][0]
    done: list[dict[str, Any]] = [
        s for s in record["stages"] if s["seed"] == seed and s["status"] == "done"
    ]
    return done[-1]


def split(text: str) -> tuple[dict[str, Any], str]:
    """The front matter as YAML data, and the Markdown below it."""
    assert text.startswith("---\n")
    end = text.index("\n---\n", 4)
    return yaml.safe_load(text[4 : end + 1]), text[end + len("\n---\n") :]


def test_the_hub_reads_the_runs_estimates_and_intervals_from_the_card(
    recorded: Recorded,
) -> None:
    """ModelCard → ModelCardData → EvalResult: the first seed's final variant's accuracy and
    gated fidelity.agreement, each value the recorded estimate, its interval in the args; the
    exact size ratio (gated too) is no model-index metric."""
    data = hub.ModelCard(recorded.text).data
    final = final_stage(recorded.record)
    assert (final["name"], final["format"]) == ("export", "onnx")
    assert data.library_name == "onnx"
    assert data.pipeline_tag == "image-classification"  # the digits loader: 8x8 images
    assert data.tags == ["compressgate", "distillation", "pruning", "quantization", "int8"]
    assert data.base_model is None  # a digits CNN trained in-process is no Hub model
    assert data.model_name == "digits-quick"
    results = data.eval_results
    assert [r.metric_type for r in results] == ["accuracy", "fidelity.agreement"]
    for result in results:
        measured = final["metrics"][result.metric_type]
        assert result.metric_value == measured["estimate"]
        assert result.metric_args == {
            "ci_low": measured["ci_low"],
            "ci_high": measured["ci_high"],
            "confidence": measured["confidence"],
            "n": measured["n"],
            "method": measured["method"],
        }
        assert result.metric_name == (
            f"{result.metric_type} (seed 0, export, {measured['confidence']:.0%} interval "
            f"[{measured['ci_low']:.4g}, {measured['ci_high']:.4g}])"
        )
        assert result.verified is False  # the Hub's own evaluation service did not run it
        assert (result.task_type, result.task_name) == (
            "image-classification",
            "Image Classification",
        )
        assert result.dataset_type == "compressgate.recipes.examples.digits:load"
        assert result.dataset_name.startswith("scikit-learn digits (8x8 images")
        assert result.dataset_split == "test"
        assert result.dataset_args == {"calibration_fraction": 0.15}  # the recipe's data.args
    assert results[0].metric_value == pytest.approx(0.6, abs=0.4)  # an accuracy, not a count


def test_the_header_carries_the_runs_provenance_and_review(recorded: Recorded) -> None:
    meta, _ = split(recorded.text)
    final = final_stage(recorded.record)
    provenance = hub.ModelCard(recorded.text).data.to_dict()["compressgate"]
    assert provenance == meta["compressgate"]
    assert provenance == {
        "recipe": {
            "name": "digits-quick",
            "version": 1,
            "sha256": recorded.record["recipe"]["sha256"],
        },
        "run_id": recorded.run_id,
        "variant": f"{recorded.run_id}/0/export",
        "artifact_sha256": final["artifact_sha256"],
        "test_split_sha256": recorded.record["data"]["0"]["test"],
        "review": "awaiting-approval",
        "gates": [
            {"name": "accuracy", "state": "awaiting-approval"},
            {"name": "agreement", "state": "passed"},
            {"name": "size", "state": "passed"},
        ],
        "regime": "unsigned",
    }


def test_the_model_index_round_trips_through_the_hubs_card_data(recorded: Recorded) -> None:
    meta, _ = split(recorded.text)
    name, results = hub.repocard_data.model_index_to_eval_results(meta["model-index"])
    again = hub.ModelCardData(**meta).to_dict()
    assert name == "digits-quick"
    assert again["model-index"] == meta["model-index"]
    assert hub.ModelCardData(**again).eval_results == results


def test_the_body_below_the_header_is_the_card_as_before(recorded: Recorded) -> None:
    _, body = split(recorded.text)
    assert hub.ModelCard(recorded.text).text == body
    assert body.startswith("\n# Model card: digits-quick v1 (export)\n\n- **Made by** the signed")
    headings = [line for line in body.splitlines() if line.startswith("#")]
    assert headings == [
        "# Model card: digits-quick v1 (export)",
        "## How it was made",
        "## Evaluation",
        "## Environment",
    ]
    assert recorded.text == header(recorded.data) + body


def with_text(data: ReportData, name: str, source: str, arg: str) -> ReportData:
    """`data` with `name` as the recipe's name, `source` as the loader's name of its data and
    `arg` as a loader argument's name and value (in the recipe's text, JSON-quoted)."""
    content = data.recipe.content.replace(
        "args: {calibration_fraction: 0.15}",
        f"args: {{calibration_fraction: 0.15, {json.dumps(arg)}: {json.dumps(arg)}}}",
    )
    assert content != data.recipe.content
    run = json.loads(json.dumps(data.run))
    run["data"]["0"]["source"] = source
    recipe = data.recipe.model_copy(update={"name": name, "content": content})
    return data.model_copy(update={"recipe": recipe, "run": run})


@pytest.mark.parametrize("source", [HOSTILE, "plain\n---\ninjected: true"])
def test_recipe_and_loader_text_in_the_header_stays_a_value(
    recorded: Recorded, source: str
) -> None:
    """A recipe name, a loader's name of its data and a loader argument holding a colon,
    quotes, a line of `---`, a control character, Unicode line breaks (or only line breaks):
    each comes back as itself, no key is added, the header is ASCII and each value takes one
    line, as a plain word does."""
    text = card(with_text(recorded.data, HOSTILE, source, HOSTILE))
    meta, body = split(text)
    block = text[: text.index("\n---\n", 4)]
    plain = card(with_text(recorded.data, "plain", "plain", "plain"))
    assert block.isascii()
    # One line a value; the argument's name holds a line break, so it is written as an
    # explicit key (`? "name"`, then `: "value"`): one line more.
    assert len(block.splitlines()) == len(plain[: plain.index("\n---\n", 4)].splitlines()) + 1
    assert list(meta) == ["library_name", "pipeline_tag", "tags", "model-index", "compressgate"]
    parsed = hub.ModelCard(text).data
    assert parsed.model_name == HOSTILE
    assert parsed.to_dict()["compressgate"]["recipe"]["name"] == HOSTILE
    assert {r.dataset_name for r in parsed.eval_results} == {source}
    assert parsed.eval_results[0].dataset_args == {"calibration_fraction": 0.15, HOSTILE: HOSTILE}
    assert not hasattr(parsed, "injected")
    assert hub.ModelCard(text).text == body
    assert body.startswith("\n# Model card: evil: ")  # the body's own escaping, as before


@pytest.mark.parametrize(
    ("example", "pipeline", "task", "base"),
    [
        ("digits.yaml", "image-classification", "image-classification", None),
        ("arrests-fairness.yaml", "tabular-classification", "tabular-classification", None),
        (
            "minilm-int8.yaml",
            "feature-extraction",
            "feature-extraction",
            "sentence-transformers/all-MiniLM-L6-v2",
        ),
        ("unknown-loader", None, "classification", None),
    ],
)
def test_the_hub_task_and_base_model_come_from_what_the_recipe_says(
    recorded: Recorded, example: str, pipeline: str | None, task: str, base: str | None
) -> None:
    """An embedding model extracts features; a classifier's inputs are known for the example
    loaders only; the base model only for the baseline whose package names its Hub model."""
    digits = (ROOT / "recipes" / "examples" / "digits.yaml").read_text()
    content = (
        digits.replace("examples.digits:load", "my_data:load")
        if example == "unknown-loader"
        else (ROOT / "recipes" / "examples" / example).read_text()
    )
    data = recorded.data
    run = json.loads(json.dumps(data.run))
    metrics = final_stage(run)["metrics"]
    metrics["cosine.mean"] = {**metrics["accuracy"], "estimate": 0.995, "method": "t"}
    meta = front_matter(
        data.model_copy(
            update={"recipe": data.recipe.model_copy(update={"content": content}), "run": run}
        )
    )
    assert meta.get("pipeline_tag") == pipeline
    assert meta.get("base_model") == base
    [result] = meta["model-index"][0]["results"]
    assert result["task"]["type"] == task
    shown = [m["type"] for m in result["metrics"]]
    assert shown == ["accuracy", "cosine.mean", "fidelity.agreement"]


def test_a_torch_final_variant_names_no_library_and_is_tagged_pytorch(
    recorded: Recorded,
) -> None:
    data = recorded.data
    run = json.loads(json.dumps(data.run))
    seed = run["seeds"][0]
    run["stages"] = [s for s in run["stages"] if s["kind"] in ("baseline", "distill", "prune")]
    assert {s["format"] for s in run["stages"] if s["seed"] == seed} == {"torch"}
    meta = front_matter(data.model_copy(update={"run": run}))
    assert "library_name" not in meta
    assert meta["tags"] == ["compressgate", "distillation", "pruning", "pytorch"]
    assert meta["compressgate"]["variant"] == f"{data.run['run_id']}/{seed}/prune"


def test_a_run_without_a_finished_stage_has_no_model_index(recorded: Recorded) -> None:
    data = recorded.data
    run = {**data.run, "stages": []}
    meta = front_matter(data.model_copy(update={"run": run}))
    assert list(meta) == ["pipeline_tag", "tags", "compressgate"]  # what the recipe is for
    assert meta["tags"] == ["compressgate"]
    hub.ModelCard(card(data.model_copy(update={"run": run})))  # still a valid card


def test_the_provenance_names_the_trust_policy_the_run_began_under(recorded: Recorded) -> None:
    data = recorded.data
    assert data.governance is not None
    governance = data.governance.model_copy(update={"regime": "policy", "policy_version": 3})
    block = front_matter(data.model_copy(update={"governance": governance}))["compressgate"]
    assert (block["regime"], block["policy_version"]) == ("policy", 3)
    assert "policy_version" not in front_matter(data)["compressgate"]  # the unsigned regime
