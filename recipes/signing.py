"""Recipe signatures: `recipe.yaml` + `recipe.yaml.dsse.json`.

The envelope's payload is an in-toto Statement v1 whose first subject is the recipe file by the
sha256 of its exact bytes, followed by every file the recipe depends on (its lock, checkpoints,
ONNX baseline and that file's external data, local modules: `compressgate.recipes.subjects`),
each by its path relative to the recipe's folder and its sha256. The payload holds no time or
signer, so owners can co-sign the same payload. A recipe verifies when at least one signature is
by a trusted key whose owner holds the `author` role and is among the recipe's
`metadata.owners`, the first subject's digest matches the manifest, and every file the manifest
references is listed with the digest it has now: a changed, missing or unlisted file is refused
by name (exit 3). A local module is then imported from exactly its signed bytes
(`VerifiedRecipe.sources`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from compressgate.recipes.load import LoadedRecipe, load_recipe, parse_recipe, read_manifest
from compressgate.recipes.subjects import digests, referenced
from compressgate.recipes.trust import Trust
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from compressgate.registry.kernel.files import write_atomic
from compressgate.registry.kernel.keys import PrivateKey, PublicKey

if TYPE_CHECKING:
    from compressgate.recipes.manifest import Recipe
    from compressgate.recipes.models import SignedSource
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
    subjects: dict[str, str] = field(default_factory=dict)  # file (relative) -> sha256

    @property
    def sources(self) -> dict[str, SignedSource]:
        """The recipe's local modules, each pinned to its signed bytes."""
        from compressgate.recipes.models import local_sources

        return local_sources(self.loaded.recipe, self.loaded.path.parent.resolve(), self.subjects)


def recipe_subjects(loaded: LoadedRecipe) -> list[tuple[str, str]]:
    """The statement's subjects: the manifest, then every file it depends on, by sha256."""
    base = loaded.path.parent
    found = digests(referenced(loaded.recipe, base), base)
    missing = [name for name, sha in found.items() if sha is None]
    if missing:
        raise ManifestError(
            f"{loaded.path}: {', '.join(missing)} not found next to the manifest; a signature "
            "covers every file the recipe depends on"
        )
    return [(loaded.path.name, loaded.sha256)] + [(n, s) for n, s in found.items() if s]


def recipe_statement(loaded: LoadedRecipe) -> bytes:
    meta = loaded.recipe.metadata
    return dsse.statement(
        recipe_subjects(loaded),
        RECIPE_PREDICATE_TYPE,
        {"recipe": {"name": meta.name, "version": meta.version}},
    )


def check_subjects(signed: dict[str, str], recipe: Recipe, path: Path) -> None:
    """Every file the recipe references must be listed in `signed` with the digest it has now;
    IntegrityError names the first changed, missing or unlisted one. The files the manifest
    names come first: an ONNX file is read for the external data it names only once it is
    the signed one."""
    base = path.parent
    problems = [
        f"{name}, which its signature lists, is missing"
        for name in signed
        if not (base / name).is_file()
    ]
    if not problems:
        problems = _subject_problems(
            signed, digests(referenced(recipe, base, external=False), base)
        )
    if not problems:
        problems = _subject_problems(signed, digests(referenced(recipe, base), base))
    if problems:
        raise IntegrityError(
            f"{path}: {problems[0]}"
            + (f" (and {len(problems) - 1} more file(s))" if len(problems) > 1 else ""),
            hint=f"re-sign it (`compressgate recipe sign {path} --key KEY`) if the change is meant",
        )


def _subject_problems(signed: dict[str, str], found: dict[str, str | None]) -> list[str]:
    problems = []
    for name, sha in found.items():
        listed = signed.get(name)
        if listed is None and sha is None:
            continue  # neither signed nor there: validation says it is not found (exit 2)
        if listed is None:
            problems.append(f"{name} is not among the files its signature lists")
        elif sha is None:
            problems.append(f"{name}, which its signature lists, is missing")
        elif sha != listed:
            problems.append(f"{name} changed since it was signed (sha256 {sha}, signed {listed})")
    return problems


def sign_recipe(
    path: Path, key: PrivateKey, trust: Trust | None = None
) -> tuple[Path, LoadedRecipe]:
    """Sign a valid recipe (checked against `trust` if given); an existing envelope over the
    same bytes gains a co-signature."""
    loaded = load_recipe(path, trust=trust)
    return write_envelope(path, recipe_statement(loaded), key), loaded


def write_envelope(path: Path, payload: bytes, key: PrivateKey) -> Path:
    """Sign the statement `payload` about the file at `path` into PATH.dsse.json; an existing
    envelope over the same payload gains a co-signature (a broken one is replaced)."""
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
    return target


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
    statement = dsse.parse_statement(
        dsse.Envelope.from_json(raw, source=str(target)).payload, source=str(target)
    )
    signed = {name: sha for name, sha in statement.subjects[1:] if sha is not None}
    check_subjects(signed, parse(), path)
    loaded = load_recipe(path, trust=trust, data=data, parsed=parsed[0] if parsed else None)
    return VerifiedRecipe(loaded, target, signers, signed)


def author_statement(
    data: bytes,
    raw: bytes,
    trust: Trust,
    *,
    predicate_type: str,
    what: str,
    source: str,
    name: str,
    trust_source: str = "the trust file",
) -> tuple[dsse.Statement, dict[PublicKey, str], list[PublicKey]]:
    """The statement of the envelope `raw` (from `source`) over the file bytes `data` (named
    `name`), as an author signed it: the trust's author keys (key to owner) and those among
    them whose signatures verify. IntegrityError says what failed: the payload type, no author
    signature (naming signers without the role), the predicate (`what` it should sign), the
    first subject's digest."""
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
    if statement.predicate_type != predicate_type:
        raise IntegrityError(
            f"{target}: predicateType is {statement.predicate_type!r}; "
            f"this envelope does not sign {what}"
        )
    signed = statement.subjects[0][1] if statement.subjects else None
    if signed is None:
        raise IntegrityError(f"{target}: the statement's first subject has no sha256 digest")
    actual = sha256_bytes(data)
    if actual != signed:
        raise IntegrityError(
            f"{path} changed since it was signed: its sha256 is {actual}, "
            f"the signature covers {signed}",
            hint=f"re-sign it (`compressgate recipe sign {path} --key KEY`) if the change is meant",
        )
    return statement, candidates, valid


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
    path = name
    _, candidates, valid = author_statement(
        data,
        raw,
        trust,
        predicate_type=RECIPE_PREDICATE_TYPE,
        what="a recipe",
        source=source,
        name=name,
        trust_source=trust_source,
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
