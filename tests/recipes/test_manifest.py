"""The manifest models: round trips, the published JSON Schema, and plain-word descriptions."""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path

from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

import compressgate.recipes.evaluation as ev
import compressgate.recipes.manifest as m
from compressgate.recipes.load import load_recipe, parse_recipe
from compressgate.recipes.yamldoc import dump_yaml
from compressgate.registry import authoring
from compressgate.registry.authoring import recipe_schema

EXAMPLES = Path(m.__file__).parent / "examples"
SCHEMA_FILE = Path(m.__file__).parent / "schema" / "recipe-v1.schema.json"

names = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,12}[a-z0-9])?", fullmatch=True)
idents = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True).filter(
    lambda s: s not in {"if", "in", "is", "or", "as", "def", "for", "and", "not", "del", "try"}
)
public = idents.filter(lambda s: not s.startswith("_"))  # a factory is a public name
import_refs = st.builds(lambda mod, attr: f"{mod}.{mod}:{attr}", idents, public)
file_refs = st.lists(names, min_size=1, max_size=3).map("/".join)
fractions = st.floats(min_value=0, max_value=1, exclude_min=True, exclude_max=True)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(idents, inner, max_size=3),
    max_leaves=6,
)
args = st.dictionaries(idents, json_values, max_size=3)
model_refs = st.builds(m.ModelRef, factory=import_refs, args=args, checkpoint=st.none() | file_refs)


@st.composite
def model_specs(draw: st.DrawFn) -> m.ModelSpec:
    if draw(st.booleans()):
        return m.ModelSpec(onnx=draw(file_refs))
    checkpoint = draw(st.none() | file_refs)
    train = st.builds(m.TrainSpec, epochs=st.integers(1, 10_000))
    return m.ModelSpec(
        factory=draw(import_refs),
        args=draw(args),
        checkpoint=checkpoint,
        train=draw(train if checkpoint is None else st.none() | train),
    )


def needs_torch(spec: typing.Any) -> bool:
    return spec.kind in ("distill", "prune") or getattr(spec, "method", None) == "qat"


def stage(name: str) -> st.SearchStrategy[typing.Any]:
    return st.one_of(
        st.builds(
            m.DistillSpec,
            name=st.just(name),
            student=model_refs,
            teachers=st.lists(model_refs, max_size=2).map(tuple),
            temperature=st.floats(min_value=0.1, max_value=100),
            temperature_final=st.none() | st.floats(min_value=0.1, max_value=100),
            alpha=st.floats(min_value=0, max_value=1),
            hints=st.lists(
                st.builds(m.DistillHint, student_layer=idents, teacher_layer=idents), max_size=2
            ).map(tuple),
            epochs=st.integers(1, 10_000),
        ),
        st.builds(
            m.PruneSpec,
            name=st.just(name),
            method=st.sampled_from(["magnitude", "structured"]),
            sparsity=fractions,
            scope=st.sampled_from(["global", "layer"]),
            rounds=st.integers(1, 100),
            finetune_epochs=st.integers(0, 1000),
            skip=st.lists(st.text(max_size=10), max_size=3).map(tuple),
        ),
        st.builds(
            m.QuantizeSpec,
            name=st.just(name),
            method=st.sampled_from(["dynamic", "static", "qat"]),
            per_channel=st.booleans(),
            calibration=st.sampled_from(["minmax", "entropy", "percentile"]),
            calibration_samples=st.integers(1, 10**6),
            keep_float=st.lists(st.text(min_size=1, max_size=10), max_size=3).map(tuple),
        ),
        st.builds(
            m.ExportSpec,
            name=st.just(name),
            opset=st.integers(18, 23),
            external_data=st.booleans(),
            parity_atol=st.floats(min_value=1e-9, max_value=1),
        ),
    )


confidences = st.floats(min_value=0.51, max_value=0.999)
resamples = st.integers(200, 100_000)
EVALUATOR_SPECS = {
    "accuracy": st.builds(ev.AccuracySpec, confidence=confidences),
    "paired": st.builds(ev.PairedSpec, confidence=confidences),
    "calibration": st.builds(
        ev.CalibrationSpec, confidence=confidences, bins=st.integers(2, 100), resamples=resamples
    ),
    "fairness": st.builds(ev.FairnessSpec, resamples=resamples),
    "classes": st.builds(ev.ClassesSpec, top=st.integers(1, 1000), alpha=st.floats(0.001, 0.49)),
    "fidelity": st.builds(ev.FidelitySpec, against=st.sampled_from(["baseline", "parent"])),
    "robustness": st.builds(
        ev.RobustnessSpec,
        shifts=st.lists(
            st.builds(
                ev.ShiftSpec,
                kind=st.sampled_from(["gaussian_noise", "occlusion"]),
                severities=st.lists(
                    st.floats(min_value=0.01, max_value=0.99), min_size=1, max_size=3, unique=True
                ).map(tuple),
            ),
            min_size=1,
            max_size=2,
        ).map(tuple),
    ),
    "latency": st.builds(
        ev.LatencySpec,
        runner=st.sampled_from(["auto", "onnxruntime"]),
        batch_sizes=st.lists(st.integers(1, 65_536), min_size=1, max_size=3, unique=True).map(
            tuple
        ),
        warmup=st.integers(0, 1000),
        # Enough calls for any percentile gate over 5 sessions (validation counts them).
        repeats=st.integers(500, 10_000),
        threads=st.integers(1, 8),
    ),
    "size": st.builds(ev.SizeSpec, memory=st.booleans()),
    "exemplars": st.builds(ev.ExemplarsSpec),
}


@st.composite
def evaluator_lists(draw: st.DrawFn, seeds: int) -> tuple[typing.Any, ...]:
    kinds = [k for k in EVALUATOR_SPECS if k != "exemplars" or seeds >= 2]
    chosen = draw(st.lists(st.sampled_from(kinds), unique=True, max_size=5))
    return tuple(draw(EVALUATOR_SPECS[kind]) for kind in chosen)


@st.composite
def gates(
    draw: st.DrawFn,
    name: str,
    stages: list[typing.Any],
    metrics: tuple[str, ...],
    onnx_only: tuple[str, ...],
    onnx_baseline: bool,
) -> typing.Any:
    after = draw(st.none() | st.sampled_from([s.name for s in stages]))
    judged = next(s for s in stages if s.name == after) if after else stages[-1]
    # A metric measured on ONNX variants only cannot judge a torch stage.
    if not onnx_baseline and judged.kind in ("distill", "prune"):
        metrics = tuple(metric for metric in metrics if metric not in onnx_only)
    common = {
        "name": name,
        "owner": draw(names),
        "metric": draw(st.sampled_from([m for m in metrics if ev.ungateable(m) is None])),
        "after": after,
        "description": draw(st.text(max_size=40)),
    }
    rule = draw(st.sampled_from(m.GATE_RULES))
    # `relative` and `non_inferior` read a paired interval of the change, where one is measured.
    how = ev.comparison(common["metric"])
    paired = how.exact or (how.difference is not None and how.difference in metrics)
    if rule == "non_inferior" and not (how.exact or (common["metric"] == "accuracy" and paired)):
        rule = "bound"
    if rule == "non_inferior":
        return m.NonInferiorGate(
            **common, margin=draw(fractions), confidence=draw(st.floats(0.51, 0.999))
        )
    finite = st.floats(allow_nan=False, allow_infinity=False)
    if rule == "bound":
        low, high = sorted([draw(finite), draw(finite)])
        bounds = draw(st.sampled_from([(low, None), (None, high), (low, high)]))
        return m.BoundGate(**common, min=bounds[0], max=bounds[1])
    relative = draw(st.booleans())
    interval = how.exact or (paired and not relative)
    return m.RelativeGate(
        **common,
        max_drop=draw(st.floats(min_value=0, max_value=1)),
        max_increase=draw(st.none() | st.floats(min_value=0, max_value=1)),
        relative=relative,
        basis=draw(st.sampled_from(["interval", "estimate"] if interval else ["estimate"])),
    )


@st.composite
def recipes_(draw: st.DrawFn) -> m.Recipe:
    stage_names = draw(st.lists(names, min_size=1, max_size=5, unique=True))
    gate_names = draw(st.lists(names, max_size=4, unique=True))
    model = draw(model_specs())
    stages = [draw(stage(n)) for n in stage_names]
    torch_stages = [s for s in stages if s.kind in ("distill", "prune")]
    onnx_stages = [s for s in stages if s.kind not in ("distill", "prune")]
    # Only the first ONNX-producing stage may be qat: it still takes a torch model.
    onnx_stages = [
        s.model_copy(update={"method": "static"}) if i and needs_torch(s) else s
        for i, s in enumerate(onnx_stages)
    ]
    stages = torch_stages + onnx_stages
    if model.onnx is not None:
        stages = [m.ExportSpec(name=s.name) if needs_torch(s) else s for s in stages]
    seeds = tuple(draw(st.lists(st.integers(0, 2**32 - 1), min_size=1, unique=True)))
    evaluators = draw(st.none() | evaluator_lists(len(seeds)))
    declared = {} if evaluators is None else {"evaluators": evaluators}
    probe = m.Recipe.model_validate(
        {
            "apiVersion": "compressgate/v1",
            "kind": "Recipe",
            "metadata": {"name": "x", "version": 1, "owners": ["o"]},
            "environment": {"lock": "l"},
            "model": {"onnx": "m.onnx"},
            "data": {"loader": "a.b:c"},
            "stages": [{"name": "e", "kind": "export"}],
            **declared,
        }
    )
    metrics, onnx_only = probe.metric_names(), probe.onnx_only_metrics()
    recipe = m.Recipe.model_validate(
        {
            "apiVersion": "compressgate/v1",
            "kind": "Recipe",
            "metadata": m.Metadata(
                name=draw(names),
                version=draw(st.integers(1, 10**6)),
                owners=tuple(draw(st.lists(names, min_size=1, max_size=3, unique=True))),
                description=draw(st.text(max_size=80)),
            ),
            "environment": m.EnvironmentSpec(lock=draw(file_refs), strict=draw(st.booleans())),
            "model": model,
            "data": m.DataSpec(loader=draw(import_refs), args=draw(args)),
            "seeds": seeds,
            # Torch stages (distill, prune, qat) first: ONNX cannot go back to torch.
            "stages": tuple(stages),
            **declared,
            "gates": tuple(
                draw(gates(n, stages, metrics, onnx_only, model.onnx is not None))
                for n in gate_names
            ),
        }
    )
    # What a drawn recipe spends may be over the default budget: it declares that, within the
    # caps (tests/recipes/test_budget.py checks the budget itself).
    needed = m.budget_figures(recipe)
    assume(all(needed[field] <= cap for field, cap in m.BUDGET_CAPS.items()))
    budget = m.Budget(**{field: max(value, 1) for field, value in needed.items()})
    return recipe.model_copy(update={"budget": budget})


@settings(max_examples=150, deadline=None)
@given(recipes_())
@example(  # found by hypothesis: PyYAML's own dumper turns NEL into a line break
    m.Recipe.model_validate(
        {
            "apiVersion": "compressgate/v1",
            "kind": "Recipe",
            "metadata": {"name": "x", "version": 1, "owners": ["o"], "description": "a\x85b"},
            "environment": {"lock": "l"},
            "model": {"onnx": "m.onnx"},
            "data": {"loader": "a.b:c", "args": {"k": "\u2028\x85"}},
            "stages": [{"name": "e", "kind": "export"}],
        }
    )
)
def test_manifest_model_to_yaml_to_model_is_the_identity(recipe: m.Recipe) -> None:
    text = dump_yaml(recipe.model_dump(mode="json"))
    parsed, _ = parse_recipe(text.encode("utf-8"), "<round-trip>")
    assert parsed == recipe
    assert list(m.recipe_issues(parsed)) == []


def test_union_kind_literals_match_the_declared_kinds() -> None:
    stage_types = typing.get_args(typing.get_args(m.StageSpec)[0])
    gate_types = typing.get_args(typing.get_args(m.GateSpec)[0])
    assert tuple(t.model_fields["kind"].default for t in stage_types) == m.STAGE_KINDS
    assert tuple(t.model_fields["rule"].default for t in gate_types) == m.GATE_RULES
    evaluator_types = typing.get_args(ev.AnyEvaluatorSpec)
    assert tuple(t.model_fields["kind"].default for t in evaluator_types) == ev.EVALUATOR_KINDS


def test_evaluator_registry_holds_every_per_stage_kind_of_the_union() -> None:
    from compressgate.evaluators.base import load_evaluators

    per_stage = tuple(k for k in ev.EVALUATOR_KINDS if k not in ev.ACROSS_SEEDS)
    assert load_evaluators().kinds() == tuple(sorted(per_stage))


def test_schema_tags_evaluators_by_kind() -> None:
    """An entry with `plugin:` and no `kind:` is a plug-in's; every other is tagged by kind."""
    entry = recipe_schema()["properties"]["evaluators"]["items"]
    assert entry["if"] == {"required": ["plugin"], "not": {"required": ["kind"]}}
    assert entry["then"] == {"$ref": "#/definitions/PluginEvaluatorSpec"}
    items = entry["else"]
    assert items["required"] == ["kind"]
    assert sorted(items["properties"]["kind"]["enum"]) == sorted(ev.EVALUATOR_KINDS)
    tags = [branch["if"]["properties"]["kind"]["const"] for branch in items["allOf"]]
    assert sorted(tags) == sorted(ev.EVALUATOR_KINDS)


def test_published_schema_is_current() -> None:
    """recipes/schema/recipe-v1.schema.json is what `compressgate recipe schema` prints."""
    assert json.loads(SCHEMA_FILE.read_text()) == recipe_schema()


def test_schema_forbids_unknown_keys_and_tags_stages_by_kind() -> None:
    schema = recipe_schema()
    assert schema["additionalProperties"] is False
    entry = schema["properties"]["stages"]["items"]
    assert entry["then"] == {"$ref": "#/definitions/PluginStageSpec"}
    stages = entry["else"]
    assert stages["required"] == ["kind"]
    assert stages["properties"]["kind"]["enum"] == list(m.STAGE_KINDS)
    tags = [branch["if"]["properties"]["kind"]["const"] for branch in stages["allOf"]]
    assert tags == list(m.STAGE_KINDS)


def test_schema_carries_the_name_metric_and_import_patterns() -> None:
    defs = recipe_schema()["definitions"]
    assert defs["Metadata"]["properties"]["name"]["pattern"] == m._NAME.pattern
    assert defs["NonInferiorGate"]["properties"]["metric"]["pattern"] == m._METRIC.pattern
    pattern = re.compile(defs["DataSpec"]["properties"]["loader"]["pattern"])
    assert pattern.match("compressgate.recipes.examples.digits:load")
    assert not pattern.match("compressgate.recipes.examples.digits")
    # one public name, defined in the module: not what the module imported, not a private name
    assert not pattern.match("compressgate.recipes.examples.digits:torch.load")
    assert not pattern.match("compressgate.recipes.examples.digits:_load")


def test_every_bundled_example_loads() -> None:
    examples = sorted(EXAMPLES.glob("*.yaml"))
    recipes = [p for p in examples if p.stem not in authoring.SWEEP_EXAMPLES]
    assert sorted(p.stem for p in recipes) == sorted(authoring.EXAMPLES)
    assert sorted(p.stem for p in examples if p not in recipes) == sorted(authoring.SWEEP_EXAMPLES)
    for path in recipes:
        assert load_recipe(path).recipe.metadata.owners == ("ml-platform",)


def test_reference_recipe_runs_the_pipeline_of_design() -> None:
    recipe = load_recipe(EXAMPLES / "digits.yaml").recipe
    assert [s.kind for s in recipe.stages] == ["distill", "prune", "quantize", "export"]
    prune = recipe.stage("prune")
    assert isinstance(prune, m.PruneSpec)
    assert prune.method == "structured"
    quantize = recipe.stage("int8")
    assert isinstance(quantize, m.QuantizeSpec)
    assert (quantize.method, quantize.per_channel, quantize.keep_float) == (
        "static",
        True,
        ("first", "last"),
    )


def test_defaults_follow_the_domain_practice() -> None:
    distill = m.DistillSpec(name="d", student=m.ModelRef(factory=m.ImportRef("a.b:c")))
    assert 3 <= distill.temperature <= 5
    quantize = m.QuantizeSpec(name="q", method="static")
    assert quantize.per_channel
    assert quantize.keep_float == ("first", "last")


def test_gate_descriptions_state_threshold_and_interval() -> None:
    gate = m.NonInferiorGate(name="acc", owner="ml-lead", metric="accuracy", margin=0.02)
    assert gate.describe() == (
        "accuracy must be shown non-inferior to the baseline: the lower bound of the 90% "
        "interval of (candidate - baseline) must be above -0.02 (one-sided confidence 95%)"
    )
    bound = m.BoundGate(name="lat", owner="serving", metric="latency.p95_ms", max=12.5)
    assert bound.describe() == (
        "the interval of latency.p95_ms (at its evaluator's confidence) must be at most 12.5"
    )
    drop = m.RelativeGate(
        name="f", owner="rai", metric="worst_group_accuracy", max_drop=0.05, relative=True
    )
    assert drop.describe() == (
        "worst_group_accuracy may drop by at most 5.0% of the baseline against the baseline "
        "(judged on the interval of the change, at its evaluator's confidence)"
    )


def test_file_refs_that_climb_out_are_refused_but_inner_dots_are_fine() -> None:
    assert m.FileRef._check("a/../b.lock") == "a/../b.lock"
    for bad in ("../x", "a/../../x", "/abs", "a\\b"):
        try:
            m.FileRef._check(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")
