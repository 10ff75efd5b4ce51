"""The base of every declared model, and the union that admits plug-in entries beside the tagged
built-in ones (`stages`, `evaluators`)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

# The branches of such a union. Pydantic puts the branch into an error's location
# (`stages.2.built-in.prune.sparsity`); `compressgate.recipes.yamldoc` leaves it out of the path
# it shows. No key can be spelt like these.
BUILTIN = "built-in"
PLUGIN = "plug-in"


class Spec(BaseModel):
    """Base of every declared model: unknown keys are errors, values never change."""

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
        validate_by_alias=True,
        validate_by_name=False,
        serialize_by_alias=True,
        # Validators built on first use, not at import: a command that reads the catalog and
        # never parses a recipe does not pay for the manifest's hundred models (start-up).
        defer_build=True,
    )


def plugin_or_builtin(value: Any) -> str:
    """The branch of an entry: a mapping with `plugin:` and no `kind:` names a plug-in; anything
    else is a built-in kind, tagged by `kind` exactly as before plug-ins existed."""
    if isinstance(value, dict):
        return PLUGIN if "plugin" in value and "kind" not in value else BUILTIN
    return PLUGIN if getattr(value, "is_plugin", False) else BUILTIN


class PluginEntrySchema:
    """The published schema of such a union: a mapping with `plugin` and no `kind` is the
    plug-in entry, any other the built-in union (tagged by `kind`)."""

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        builtin, plugin = handler(schema)["oneOf"]
        return {
            "if": {"required": ["plugin"], "not": {"required": ["kind"]}},
            "then": plugin,
            "else": builtin,
        }
