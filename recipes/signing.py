"""Recipe signatures: `recipe.yaml` + `recipe.yaml.dsse.json`.

The envelope's payload is an in-toto Statement v1 whose subject is the recipe file by the sha256
of its exact bytes. The payload holds no time or signer, so owners can co-sign the same payload.
A recipe verifies when at least one signature is by a trusted key whose owner holds the `author`
role and is among the recipe's `metadata.owners`, and the subject digest matches the file.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from compressgate.recipes.load import LoadedRecipe, load_recipe, parse_recipe, read_manifest
from compressgate.recipes.trust import Trust
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from compressgate.registry.kernel.files import write_atomic
from compressgate.registry.kernel.keys import PrivateKey

if TYPE_CHECKING:
    from compressgate.recipes.manifest import Recipe
    from compressgate.recipes.yamldoc import YamlDocument

RECIPE_PREDICATE_TYPE = "https://compressgate.dev/attestation/recipe/v1"


def envelope_path(recipe_path: Path) -> Path:
    return recipe_path.with_name(recipe_path.name + ".dsse.json")


@dataclass(frozen=True)
class Signer:
    owner: str
    keyid: str


@dataclass(frozen=True)
class VerifiedRecipe:
    loaded: LoadedRecipe
    envelope: Path
    signers: tuple[Signer, ...]


def recipe_statement(loaded: LoadedRecipe) -> bytes:
    meta = loaded.recipe.metadata
    return dsse.statement(
        [(loaded.path.name, loaded.sha256)],
        RECIPE_PREDICATE_TYPE,
        {"recipe": {"name": meta.name, "version": meta.version}},
    )


def sign_recipe(
    path: Path, key: PrivateKey, trust: Trust | None = None
) -> tuple[Path, LoadedRecipe]:
    """Sign a valid recipe (checked against `trust` if given); an existing envelope over the
    same bytes gains a co-signature."""
    loaded = load_recipe(path, trust=trust)
    payload = recipe_statement(loaded)
    target = envelope_path(path)
    envelope = None
    if target.is_dir():
        raise ManifestError(f"{target} is a directory; move it away to sign {path}")
    if target.exists():
        try:
            existing = dsse.Envelope.from_json(target.read_bytes(), source=str(target))
        except IntegrityError:
            existing = None  # a broken envelope is replaced, not co-signed
        if (
            existing is not None
            and existing.payload == payload
            and existing.payload_type == dsse.INTOTO_PAYLOAD_TYPE
        ):
            envelope = dsse.add_signature(existing, key)
    if envelope is None:
        envelope = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [key])
    write_atomic(target, envelope.to_json())
    return target, loaded


def verify_recipe(
    path: Path, trust: Trust, *, trust_source: str = "the trust file"
) -> VerifiedRecipe:
    """Verify a recipe's envelope against the trust file; IntegrityError says what failed."""
    data = read_manifest(path)
    target = envelope_path(path)
    raw = dsse.read_envelope_bytes(
        target, signed=path, hint=f"sign it with `compressgate recipe sign {path} --key KEY`"
    )
    parsed: list[tuple[Recipe, YamlDocument]] = []

    def parse() -> Recipe:  # once, after the digest matched: the bytes are the signed ones
        if not parsed:
            parsed.append(parse_recipe(data, str(path)))
        return parsed[0][0]

    signers = check_signature(
        data, raw, trust, source=str(target), name=str(path), trust_source=trust_source, parse=parse
    )
    loaded = load_recipe(path, trust=trust, data=data, parsed=parsed[0] if parsed else None)
    return VerifiedRecipe(loaded, target, signers)


def check_signature(
    data: bytes,
    raw: bytes,
    trust: Trust,
    *,
    source: str,
    name: str,
    trust_source: str = "the trust file",
    parse: Callable[[], Recipe] | None = None,
) -> tuple[Signer, ...]:
    """The owners whose author keys signed the recipe bytes `data` in the envelope `raw`;
    IntegrityError says what failed. (`verify_recipe` adds the file checks; a report checks
    the bytes the catalog recorded.) `parse`, if given, gives the parsed recipe (its owners
    must have signed): the caller parses the bytes once for this and its own checks."""
    target, path = source, name
    envelope = dsse.Envelope.from_json(raw, source=target)
    if envelope.payload_type != dsse.INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(
            f"{target}: payloadType is {envelope.payload_type!r}, not {dsse.INTOTO_PAYLOAD_TYPE!r}"
        )
    candidates = trust.keys_with_role("author")
    valid = dsse.verified_keys(envelope, candidates)
    if not valid:
        others = [k for k in dsse.verified_keys(envelope, trust.all_keys()) if k not in candidates]
        if others:
            names = ", ".join(sorted({trust.owner_of(k) or "?" for k in others}))
            raise IntegrityError(
                f"{target}: signed by {names}, who lack the 'author' role in {trust_source}"
            )
        raise IntegrityError(
            f"{target}: no signature verifies with a key in {trust_source} "
            "(the envelope was changed, or signed by an untrusted key)"
        )
    statement = dsse.parse_statement(envelope.payload, source=target)
    if statement.predicate_type != RECIPE_PREDICATE_TYPE:
        raise IntegrityError(
            f"{target}: predicateType is {statement.predicate_type!r}; "
            "this envelope does not sign a recipe"
        )
    digests = [sha for _, sha in statement.subjects if sha is not None]
    if not digests:
        raise IntegrityError(f"{target}: the statement's subject has no sha256 digest")
    actual = sha256_bytes(data)
    if actual not in digests:
        raise IntegrityError(
            f"{path} changed since it was signed: its sha256 is {actual}, "
            f"the signature covers {', '.join(digests)}"
        )
    recipe = parse() if parse is not None else parse_recipe(data, str(path))[0]
    owners = set(recipe.metadata.owners)
    signers = tuple(
        Signer(candidates[key], key.keyid) for key in valid if candidates[key] in owners
    )
    if not signers:
        names = ", ".join(sorted({candidates[k] for k in valid}))
        raise IntegrityError(
            f"{path}: signed by {names}, not by one of its owners "
            f"({', '.join(recipe.metadata.owners)})"
        )
    return signers
