"""The published JSON Schema serves editors and generic validators: draft-07 with an `$id`, every
bundled example valid, a broken manifest's error at the field that is wrong (the field the
product names too), and `recipe init` writes the modeline that points editors at it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from jsonschema.exceptions import best_match

import compressgate.recipes.manifest as m
from compressgate.recipes.load import parse_recipe
from compressgate.recipes.yamldoc import format_path, parse_yaml
from compressgate.registry.authoring import DRAFT_07, MODELINE, SCHEMA_ID, draft07, recipe_schema
from compressgate.registry.authoring import EXAMPLES as EXAMPLE_RECIPES
from compressgate.registry.kernel.errors import ManifestError
from tests.helpers.workspace import Invoke, Workspace

EXAMPLES = Path(m.__file__).parent / "examples"
DIGITS = (EXAMPLES / "digits.yaml").read_text()
# Keywords of drafts 2019-09 and 2020-12 that a draft-07 reader does not know.
LATER_KEYWORDS = {
    "$defs", "$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveAnchor", "$recursiveRef",
    "$vocabulary", "prefixItems", "dependentRequired", "dependentSchemas", "maxContains",
    "minContains", "unevaluatedItems", "unevaluatedProperties", "discriminator",
}  # fmt: skip
SUBSCHEMA = {"items", "additionalItems", "additionalProperties", "contains", "propertyNames"}
SUBSCHEMA |= {"not", "if", "then", "else"}


def subschemas(schema: Any) -> Iterator[dict[str, Any]]:
    """Every (sub)schema of `schema`, walked by keyword: property names and the data of
    `default`, `const` and `enum` are never taken for keywords."""
    if not isinstance(schema, dict):
        return
    yield schema
    for key, value in schema.items():
        if key in SUBSCHEMA:
            yield from subschemas(value)
            if isinstance(value, list):  # `items` as a list of positions
                for item in value:
                    yield from subschemas(item)
        elif key in {"allOf", "anyOf", "oneOf"}:
            for item in value:
                yield from subschemas(item)
        elif key in {"properties", "patternProperties", "definitions", "$defs"}:
            for item in value.values():
                yield from subschemas(item)


def as_validated(text: str) -> Any:
    """The data of a manifest as the product validates it (JSON: mapping keys are strings)."""
    return json.loads(json.dumps(parse_yaml(text, "recipe.yaml").data))


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(recipe_schema())


def test_schema_declares_draft_07_with_an_id_and_is_a_valid_draft_07_schema() -> None:
    schema = recipe_schema()
    assert schema["$schema"] == DRAFT_07 == "http://json-schema.org/draft-07/schema#"
    assert schema["$id"] == SCHEMA_ID == "https://compressgate.dev/schema/recipe-v1.json"
    jsonschema.Draft7Validator.check_schema(schema)
    assert jsonschema.validators.validator_for(schema) is jsonschema.Draft7Validator


def test_schema_uses_no_keyword_of_a_later_draft() -> None:
    found = [
        (key, schema.get("title", "")) for schema in subschemas(recipe_schema()) for key in schema
    ]
    assert [(key, title) for key, title in found if key in LATER_KEYWORDS] == []
    # the walk reached the unions' branches and the definitions' fields
    assert {"if", "then", "const", "definitions", "exclusiveMaximum"} <= {k for k, _ in found}


def test_every_ref_points_into_definitions_and_has_no_ignored_siblings() -> None:
    schema = recipe_schema()
    refs = [s for s in subschemas(schema) if "$ref" in s]
    assert refs
    for ref in refs:
        assert list(ref) == ["$ref"], ref  # draft-07 ignores whatever sits beside a $ref
        assert ref["$ref"].removeprefix("#/definitions/") in schema["definitions"], ref


def test_draft07_rewrites_what_draft_07_lacks_and_leaves_names_and_data_alone() -> None:
    given = {
        "$defs": {"B": {"type": "object"}},
        "properties": {
            "pair": {"prefixItems": [{"type": "integer"}, {"$ref": "#/$defs/B"}], "items": False},
            "b": {"$ref": "#/$defs/B", "description": "a B", "default": {"$ref": "#/$defs/B"}},
            "discriminator": {"type": "string", "enum": ["$defs"]},
        },
    }
    assert draft07(given) == {
        "definitions": {"B": {"type": "object"}},
        "properties": {
            "pair": {"items": [{"type": "integer"}, {"$ref": "#/definitions/B"}],
                     "additionalItems": False},
            "b": {"allOf": [{"$ref": "#/definitions/B"}], "description": "a B",
                  "default": {"$ref": "#/$defs/B"}},
            "discriminator": {"type": "string", "enum": ["$defs"]},
        },
    }  # fmt: skip
    with pytest.raises(ValueError, match="no draft-07 form for unevaluatedProperties"):
        draft07({"properties": {"a": {"unevaluatedProperties": False}}})


def test_unions_keep_their_titles_and_descriptions_for_editors() -> None:
    definitions = recipe_schema()["definitions"]
    prune = definitions["PruneSpec"]
    assert prune["description"].startswith("Magnitude (unstructured) or structured")
    assert "fraction of weights set to zero" in prune["properties"]["sparsity"]["description"]
    assert definitions["Budget"]["properties"]["epochs"]["description"].startswith("training")


@pytest.mark.parametrize("name", sorted(f"{name}.yaml" for name in EXAMPLE_RECIPES))
def test_every_bundled_example_is_valid_under_the_schema(name: str) -> None:
    data = as_validated((EXAMPLES / name).read_text())
    assert data["kind"] == "Recipe"
    assert [error.message for error in validator().iter_errors(data)] == []


@dataclass(frozen=True)
class Broken:
    id: str
    old: str  # occurs once in the digits example
    new: str
    path: tuple[str | int, ...]  # where a generic validator's best error is
    key: str | None = None  # a missing or unknown key: named in the message, not in the path

    def text(self) -> str:
        assert DIGITS.count(self.old) == 1, f"{self.old!r} must occur once in digits.yaml"
        return DIGITS.replace(self.old, self.new)

    @property
    def field(self) -> str:
        """The field as `recipe validate` names it."""
        return format_path([*self.path, *([self.key] if self.key else [])])


PRUNE = "    method: structured\n    scope: layer"
BROKEN = [
    Broken("unknown-stage-kind", "kind: quantize", "kind: qantize", ("stages", 2, "kind")),
    Broken("sparsity-above-1", "sparsity: 0.5", "sparsity: 1.5", ("stages", 1, "sparsity")),
    Broken("string-for-number", "temperature: 4", "temperature: four",
           ("stages", 0, "temperature")),
    Broken("missing-required-key", PRUNE, "    scope: layer", ("stages", 1), key="method"),
    Broken("unknown-gate-rule", "rule: non_inferior\n    margin: 0.03",
           "rule: noninferior\n    margin: 0.03", ("gates", 0, "rule")),
    Broken("unknown-key-in-stage", "lr: 0.0015\n", "lr: 0.0015\n    warmup: 2\n", ("stages", 1),
           key="warmup"),
    Broken("unknown-top-level-key", "seeds: [0, 1, 2]", "seeds: [0, 1, 2]\nseed: 4", (),
           key="seed"),
    Broken("seeds-not-a-list", "seeds: [0, 1, 2]", "seeds: 3", ("seeds",)),
    Broken("negative-seed", "seeds: [0, 1, 2]", "seeds: [0, -1, 2]", ("seeds", 1)),
    Broken("name-not-lowercase", "name: digits-cnn-compact", "name: Digits-CNN",
           ("metadata", "name")),
    Broken("version-zero", "version: 1", "version: 0", ("metadata", "version")),
    Broken("wrong-api-version", "apiVersion: compressgate/v1", "apiVersion: compressgate/v2",
           ("apiVersion",)),
    Broken("opset-below-18", "opset: 18", "opset: 17", ("stages", 3, "opset")),
    Broken("unknown-quantize-method", "method: static", "method: stat", ("stages", 2, "method")),
    Broken("quoted-boolean", "strict: true", 'strict: "true"', ("environment", "strict")),
    Broken("missing-stage-kind", "    kind: distill\n", "", ("stages", 0), key="kind"),
    Broken("unknown-evaluator-kind", "- kind: exemplars", "- kind: exemplar",
           ("evaluators", 9, "kind")),
    Broken("negative-shift-severity", "severities: [0.25]", "severities: [-0.25]",
           ("evaluators", 6, "shifts", 1, "severities", 0)),
    Broken("train-epochs-not-a-number", "train: {epochs: 40,", "train: {epochs: [40],",
           ("model", "train", "epochs")),
    Broken("factory-not-module-function",
           "student: {factory: compressgate.recipes.examples.digits:build_student}",
           "student: {factory: build_student}", ("stages", 0, "student", "factory")),
]  # fmt: skip


def test_twenty_broken_manifests_each_break_one_distinct_thing() -> None:
    assert len(BROKEN) == 20
    assert len({case.id for case in BROKEN}) == len({case.text() for case in BROKEN}) == 20


@pytest.mark.parametrize("case", BROKEN, ids=lambda case: case.id)
def test_a_generic_validator_names_the_broken_field(case: Broken) -> None:
    errors = list(validator().iter_errors(as_validated(case.text())))
    best = best_match(errors)
    assert best is not None
    assert tuple(best.absolute_path) == case.path, best.message
    assert "is not valid under any of the given schemas" not in best.message
    if case.key:
        assert f"'{case.key}'" in best.message


@pytest.mark.parametrize("case", BROKEN, ids=lambda case: case.id)
def test_the_product_refuses_each_broken_manifest_at_the_same_field(case: Broken) -> None:
    with pytest.raises(ManifestError) as refused:
        parse_recipe(case.text().encode(), "recipe.yaml")
    assert case.field in [issue.path for issue in refused.value.issues], str(refused.value)


# --- recipe init: the modeline ------------------------------------------------------------------


def test_init_writes_the_modeline_first_then_the_example(tmp_path: Path, cli: Invoke) -> None:
    assert cli("recipe", "init", tmp_path / "new").exit_code == 0
    first, rest = (tmp_path / "new" / "recipe.yaml").read_text().split("\n", 1)
    assert first == f"# yaml-language-server: $schema={recipe_schema()['$id']}"
    assert rest == DIGITS
    assert cli("recipe", "validate", "--no-power", tmp_path / "new" / "recipe.yaml").exit_code == 0


def test_bundled_examples_carry_no_modeline() -> None:
    """`recipe init` adds it: the examples stay what they were, digests included."""
    for path in EXAMPLES.glob("*.yaml"):
        assert "yaml-language-server" not in path.read_text(), path.name


def test_an_initialised_recipe_signs_and_verifies(workspace: Workspace, cli: Invoke) -> None:
    assert workspace.recipe.read_text().startswith(MODELINE)
    trust = ["--trust", workspace.trust]
    signed = cli("recipe", "sign", workspace.recipe, "--key", workspace.key("ml-platform"), *trust)
    assert signed.exit_code == 0, signed.stderr
    verified = cli("recipe", "verify", workspace.recipe, *trust)
    assert verified.exit_code == 0, verified.stderr
    # The modeline is part of the signed bytes: pointing it elsewhere needs a new signature.
    local = workspace.recipe.read_text().replace(SCHEMA_ID, "recipe.schema.json", 1)
    workspace.recipe.write_text(local)
    assert cli("recipe", "verify", workspace.recipe, *trust).exit_code == 3


def test_errors_count_the_modeline_in_their_line_numbers(tmp_path: Path, cli: Invoke) -> None:
    assert cli("recipe", "init", tmp_path / "new").exit_code == 0
    recipe = tmp_path / "new" / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace("sparsity: 0.5", "sparsity: 1.5"))
    in_example = next(n for n, text in enumerate(DIGITS.splitlines(), 1) if "sparsity:" in text)
    result = cli("recipe", "validate", "--no-power", recipe)
    assert result.exit_code == 2
    where = f"recipe.yaml:{in_example + 1} stages[1].sparsity"
    assert f"{where}: must be < 1, not 1.5" in result.stderr
