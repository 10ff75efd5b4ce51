"""Authoring recipes: validate, explain, sign and verify them; keys, trust files and examples.

These work on files, not on a workspace: nothing here opens a catalog. A recipe is prepared once
(`prepare`): read and parsed once, its data loaded at most once per seed and each gate's power
computed once, however many of those a command asks for.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressgate.recipes.explain import RecipeExplanation, explain
from compressgate.recipes.load import load_recipe
from compressgate.recipes.manifest import FileRef, Recipe, iter_refs
from compressgate.recipes.signing import sign_recipe as _sign_recipe
from compressgate.recipes.signing import verify_recipe as _verify_recipe
from compressgate.recipes.trust import TRUST_FILE_NAME, Role, Trust, add_owner_key, load_trust
from compressgate.registry.kernel.errors import (
    CompressgateError,
    Issue,
    ManifestError,
    NotFoundError,
)
from compressgate.registry.kernel.keys import (
    generate_keypair,
    load_private_key,
    load_public_key,
    read_passphrase,
)
from compressgate.registry.results import (
    AllowResult,
    EnvExportResult,
    IssueResult,
    KeyResult,
    SignerResult,
    SignResult,
    TrustResult,
    ValidationResult,
    VerifyResult,
)
from compressgate.registry.run.prepared import PreparedRecipe

if TYPE_CHECKING:
    from compressgate.gates.power import PowerCheck

TRUST_ENV = "COMPRESSGATE_TRUST"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
SCHEMA_ID = "https://compressgate.dev/schema/recipe-v1.json"
SWEEP_SCHEMA_ID = "https://compressgate.dev/schema/sweep-v1.json"
# The first line `recipe init` writes: editors with yaml-language-server (VS Code's YAML
# extension among them) read the schema it names (docs/recipes.md, "Editor set-up").
MODELINE = f"# yaml-language-server: $schema={SCHEMA_ID}\n"
EXAMPLES = (
    "digits",
    "digits-magnitude",
    "digits-qat",
    "arrests-fairness",
    "minilm-int8",
    "minilm-compact",
)
# Example sweeps, each over one of the example recipes: `recipe init --example digits-sweep`
# copies the recipe as above and the sweep as DEST/sweep.yaml, pinned to that copy.
SWEEP_EXAMPLES = {"digits-sweep": "digits"}


def find_trust(recipe: Path, explicit: Path | None) -> Path | None:
    """The trust file: `--trust`, else $COMPRESSGATE_TRUST, else trust.yaml beside the recipe."""
    if explicit is not None:
        return explicit
    if os.environ.get(TRUST_ENV):
        return Path(os.environ[TRUST_ENV])
    beside = recipe.parent / TRUST_FILE_NAME
    return beside if beside.is_file() else None


def require_trust(recipe: Path, explicit: Path | None, why: str = "") -> Path:
    """`find_trust`, where a recipe cannot be checked without one: none is exit 4."""
    found = find_trust(recipe, explicit)
    if found is None:
        raise NotFoundError(
            f"no trust file for {recipe}{why}",
            hint=f"pass --trust FILE, set ${TRUST_ENV}, or put {TRUST_FILE_NAME} beside the recipe",
        )
    return found


def power_checks(prepared: PreparedRecipe) -> tuple[list[PowerCheck], str | None]:
    """Each statistical gate's power check at the recipe's test split size (the loader, from a
    module the trust file allow-lists, runs for the first seed), or no checks and the reason."""
    if not prepared.recipe.gates:
        return [], None
    try:
        return prepared.power(), None
    except CompressgateError as exc:
        return [], f"the data loader failed, so the gates' power was not checked: {exc}"


def validate_recipes(
    paths: Sequence[Path], trust_path: Path | None = None, *, with_power: bool = False
) -> list[ValidationResult]:
    """Validate each manifest; problems are reported per file, never raised. No code the
    recipe names runs, unless `with_power`: then each statistical gate's power is checked at
    the test split's size (the data loader runs for the first seed) and an underpowered gate
    is a warning."""
    records = []
    trusts: dict[Path, Trust] = {}
    for path in paths:
        found = find_trust(path, trust_path)
        try:
            if found is not None and found not in trusts:
                trusts[found] = load_trust(found)
            trust = trusts.get(found) if found else None
            prepared = PreparedRecipe(load_recipe(path, trust=trust), trust, str(found))
        except CompressgateError as exc:
            issues = getattr(exc, "issues", ()) or (Issue(str(path), None, "", str(exc)),)
            records.append(
                ValidationResult(
                    file=str(path),
                    valid=False,
                    exit_code=exc.exit_code,
                    issues=[IssueResult(**vars(issue)) for issue in issues],
                )
            )
            continue
        meta = prepared.recipe.metadata
        checks, note = power_checks(prepared) if with_power else ([], None)
        warnings = [
            f"gate '{c.gate}' is underpowered: {c.message}" for c in checks if c.underpowered
        ] + ([note] if note else [])
        records.append(
            ValidationResult(
                file=str(path),
                valid=True,
                name=meta.name,
                version=meta.version,
                sha256=prepared.sha256,
                trust=str(found) if found else None,
                power=[c.model_dump(mode="json") for c in checks],
                warnings=warnings,
            )
        )
    return records


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of recipe manifest v1, in draft-07 (the draft editors' YAML support
    implements fully), each union tagged by if/then so a generic validator names the field."""
    converted = draft07(Recipe.model_json_schema(by_alias=True))
    definitions = converted.pop("definitions")
    return {"$schema": DRAFT_07, "$id": SCHEMA_ID, **converted, "definitions": definitions}


def sweep_schema() -> dict[str, Any]:
    """The JSON Schema of sweep manifest v1 (`kind: Sweep`), in draft-07 like the recipe's."""
    from compressgate.recipes.sweep import Sweep

    converted = draft07(Sweep.model_json_schema(by_alias=True))
    definitions = converted.pop("definitions")
    return {"$schema": DRAFT_07, "$id": SWEEP_SCHEMA_ID, **converted, "definitions": definitions}


# Keywords whose values are schemas (one, a list, or a map of names to schemas); every other
# keyword's value is data (`default`, `const`, `enum`, texts) and is copied as it is.
_SUBSCHEMA = {"items", "additionalItems", "additionalProperties", "contains", "propertyNames"}
_SUBSCHEMA |= {"not", "if", "then", "else"}
_SUBSCHEMA_LISTS = {"allOf", "anyOf", "oneOf"}
_SUBSCHEMA_MAPS = {"properties", "patternProperties", "definitions", "$defs"}
# Draft 2019-09/2020-12 keywords with no draft-07 equivalent `draft07` writes.
_LATER_DRAFTS = {
    "$anchor", "$dynamicAnchor", "$dynamicRef", "$recursiveAnchor", "$recursiveRef",
    "$vocabulary", "dependentRequired", "dependentSchemas", "maxContains", "minContains",
    "unevaluatedItems", "unevaluatedProperties",
}  # fmt: skip


def draft07(schema: dict[str, Any]) -> dict[str, Any]:
    """Pydantic's JSON Schema (draft 2020-12) as draft-07: `$defs` become `definitions`,
    `prefixItems` an `items` list, a `$ref` with sibling keywords (which draft-07 ignores) an
    `allOf` of it, and each union pydantic tags with OpenAPI's `discriminator` a `tagged_union`."""
    later = _LATER_DRAFTS & schema.keys()
    if later:
        raise ValueError(f"no draft-07 form for {', '.join(sorted(later))}")
    if "discriminator" in schema:
        return draft07(tagged_union(schema))
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "prefixItems":  # a fixed tuple: its positions, then what may follow them
            out["items"] = [_subschema(v) for v in value]
            if "items" in schema:
                out["additionalItems"] = _subschema(schema["items"])
        elif key == "items" and "prefixItems" in schema:
            continue
        elif key in _SUBSCHEMA:
            out[key] = _subschema(value)
        elif key in _SUBSCHEMA_LISTS:
            out[key] = [_subschema(v) for v in value]
        elif key in _SUBSCHEMA_MAPS:
            name = "definitions" if key == "$defs" else key
            out[name] = {k: _subschema(v) for k, v in value.items()}
        elif key == "$ref":
            out[key] = value.replace("#/$defs/", "#/definitions/", 1)
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:
        return {"allOf": [{"$ref": out.pop("$ref")}], **out}
    return out


def _subschema(value: Any) -> Any:
    """A subschema converted; `true` and `false` (any value, none) are schemas as they are."""
    return draft07(value) if isinstance(value, dict) else value


def tagged_union(schema: dict[str, Any]) -> dict[str, Any]:
    """A `oneOf` tagged by `discriminator` as what any validator reads: the tag required and one
    of its values (`enum`), then per value `if tag == value then that branch`. A wrong field is
    then reported at its own path, not as "not valid under any of the given schemas"."""
    rest = {k: v for k, v in schema.items() if k not in ("oneOf", "discriminator")}
    tag = schema["discriminator"]["propertyName"]
    branches = [branch["$ref"] for branch in schema["oneOf"]]
    # The tags in the union's order (the order the product lists known kinds in).
    mapping = sorted(schema["discriminator"]["mapping"].items(), key=lambda m: branches.index(m[1]))
    return {
        **rest,
        "type": "object",
        "required": [tag],
        "properties": {tag: {"enum": [value for value, _ in mapping]}},
        "allOf": [
            {
                "if": {"properties": {tag: {"const": value}}, "required": [tag]},
                "then": {"$ref": ref},
            }
            for value, ref in mapping
        ],
    }


def explain_recipe(
    path: Path, trust_path: Path | None = None, *, with_power: bool = False
) -> RecipeExplanation:
    """The recipe in plain words; with `with_power`, each statistical gate's power at the test
    split's size (the data loader runs). Without it no code the recipe names runs."""
    found = find_trust(path, trust_path)
    trust = load_trust(found) if found else None
    prepared = PreparedRecipe(load_recipe(path, trust=trust), trust, str(found))
    explanation = explain(prepared.loaded)
    if not with_power:
        gated = bool(explanation.gates)
        note = "power not checked: `recipe explain --power` runs the data loader" if gated else None
        return explanation.model_copy(update={"power_note": note})
    checks, note = power_checks(prepared)
    by_gate = {c.gate: c for c in checks}
    gates = [
        g.model_copy(
            update={"power": by_gate[g.name].message, "underpowered": by_gate[g.name].underpowered}
        )
        if g.name in by_gate
        else g
        for g in explanation.gates
    ]
    return explanation.model_copy(update={"gates": gates, "power_note": note})


def sign_recipe(path: Path, key_path: Path, trust_path: Path | None = None) -> SignResult:
    key = load_private_key(key_path)
    found = find_trust(path, trust_path)
    envelope, loaded = _sign_recipe(path, key, load_trust(found) if found else None)
    return SignResult(
        recipe=str(path), envelope=str(envelope), sha256=loaded.sha256, keyid=key.public.keyid
    )


def verify_recipe(path: Path, trust_path: Path | None = None) -> VerifyResult:
    found = require_trust(path, trust_path)
    verified = _verify_recipe(path, load_trust(found), trust_source=str(found))
    loaded = verified.loaded
    return VerifyResult(
        recipe=str(path),
        name=loaded.recipe.metadata.name,
        version=loaded.recipe.metadata.version,
        sha256=loaded.sha256,
        envelope=str(verified.envelope),
        trust=str(found),
        signers=[SignerResult(owner=s.owner, keyid=s.keyid) for s in verified.signers],
    )


def sign_sweep(path: Path, key_path: Path, trust_path: Path | None = None) -> SignResult:
    """Sign a valid sweep (`kind: Sweep`), checked against its base recipe and the trust file
    if one is found; the result names the sweep where a recipe's names the recipe."""
    from compressgate.recipes.sweep import sign_sweep as _sign_sweep

    key = load_private_key(key_path)
    found = find_trust(path, trust_path)
    envelope, loaded = _sign_sweep(path, key, load_trust(found) if found else None)
    return SignResult(
        recipe=str(path), envelope=str(envelope), sha256=loaded.sha256, keyid=key.public.keyid
    )


def verify_sweep(path: Path, trust_path: Path | None = None) -> VerifyResult:
    """Verify a sweep's signature, its base recipe's, and the pin between them."""
    from compressgate.recipes.sweep import verify_sweep as _verify_sweep

    found = require_trust(path, trust_path)
    verified = _verify_sweep(path, load_trust(found), trust_source=str(found))
    meta = verified.loaded.sweep.metadata
    return VerifyResult(
        recipe=str(path),
        name=meta.name,
        version=meta.version,
        sha256=verified.loaded.sha256,
        envelope=str(verified.envelope),
        trust=str(found),
        signers=[SignerResult(owner=s.owner, keyid=s.keyid) for s in verified.signers],
    )


def generate_keys(owner: str, out_dir: Path, passphrase_file: Path | None = None) -> KeyResult:
    """A key pair; the private key encrypted with the passphrase in `passphrase_file`, if given."""
    passphrase = None if passphrase_file is None else read_passphrase(passphrase_file)
    private, public, key = generate_keypair(owner, out_dir, passphrase=passphrase)
    return KeyResult(owner=owner, keyid=key.keyid, private_key=str(private), public_key=str(public))


def trust_add(trust_path: Path, owner: str, key_path: Path, roles: Sequence[Role]) -> TrustResult:
    key = load_public_key(key_path)
    trust = add_owner_key(trust_path, owner, key, tuple(roles))
    return TrustResult(
        trust=str(trust_path), owner=owner, keyid=key.keyid, roles=list(trust.owners[owner].roles)
    )


def trust_allow(trust_path: Path, modules: Sequence[str]) -> AllowResult:
    """Add modules to the trust file's allow-list of code recipes may import."""
    from compressgate.recipes.trust import allow_modules

    trust = allow_modules(trust_path, tuple(modules))
    return AllowResult(trust=str(trust_path), modules=list(trust.modules))


def init_example(dest: Path, example: str = "digits") -> list[Path]:
    """Copy a bundled example recipe (as DEST/recipe.yaml, the editor modeline `MODELINE` its
    first line) and the files it names into DEST; for an example sweep, its recipe so, and the
    sweep as DEST/sweep.yaml, pinned to the copied recipe's bytes."""
    if example in SWEEP_EXAMPLES:
        return _init_sweep_example(dest, example)
    if example not in EXAMPLES:
        known = ", ".join((*EXAMPLES, *SWEEP_EXAMPLES))
        raise ManifestError(f"unknown example '{example}'; known: {known}")
    source_dir = Path(str(resources.files("compressgate.recipes.examples")))
    source = source_dir / f"{example}.yaml"
    loaded = load_recipe(source)
    copies = [(source, dest / "recipe.yaml")]
    copies += [
        (source_dir / ref, dest / ref)
        for _, ref in iter_refs(loaded.recipe)
        if isinstance(ref, FileRef)
    ]
    clashes = [str(target) for _, target in copies if target.exists()]
    if clashes:
        raise ManifestError(f"{', '.join(clashes)} already exist(s)", hint="choose an empty folder")
    for src, target in copies:
        target.parent.mkdir(parents=True, exist_ok=True)
        if src == source:
            target.write_bytes(MODELINE.encode("utf-8") + source.read_bytes())
        else:
            shutil.copyfile(src, target)
    return [target for _, target in copies]


def _init_sweep_example(dest: Path, example: str) -> list[Path]:
    import re

    from compressgate.registry.kernel.digests import sha256_file
    from compressgate.registry.kernel.files import write_atomic

    target = dest / "sweep.yaml"
    if target.exists():
        raise ManifestError(f"{target} already exists", hint="choose an empty folder")
    written = init_example(dest, SWEEP_EXAMPLES[example])
    source = Path(str(resources.files("compressgate.recipes.examples"))) / f"{example}.yaml"
    text = source.read_text(encoding="utf-8")
    text = re.sub(r"(?m)^(  path: ).*$", r"\g<1>recipe.yaml", text, count=1)
    text = re.sub(
        r"(?m)^(  sha256: )[0-9a-f]{64}$",
        rf"\g<1>{sha256_file(dest / 'recipe.yaml')}",
        text,
        count=1,
    )
    write_atomic(target, text.encode("utf-8"))
    return [*written, target]


def env_export(
    out: Path | None, *, requires: str | None = None, force: bool = False
) -> EnvExportResult:
    """The running environment as a lock of exact pins (written to `out` if given)."""
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.run import envs as store

    pins = store.export_pins(requires)
    text = store.render_lock(pins, requires=requires)
    if out is not None:
        store.write_lock(out, text, force=force)
    return EnvExportResult(
        path=str(out) if out is not None else None,
        pins=len(pins),
        sha256=sha256_bytes(text.encode("utf-8")),
        text=text,
    )
