"""`compressgate://` URIs: a model named as serving code names it, the way MLflow's
`models:/NAME@ALIAS` does, without knowing a digest.

    compressgate://RECIPE@ALIAS           the alias, as `alias resolve ALIAS --recipe RECIPE`
    compressgate://RECIPE/RUN/SEED/STAGE  a variant of the recipe, by its id
    compressgate://RECIPE/SHA256-PREFIX   the recipe's variant of that artifact (6+ hex digits)

A URI names no workspace and no catalog: they are found as for every command (`--workspace`,
else $COMPRESSGATE_WORKSPACE, else ./.compressgate; `--catalog`, else $COMPRESSGATE_CATALOG),
so one URI in a serving script means the same model on every machine pointed at the same
registry. A host part would be a second way to name the workspace, one the options could
contradict.

The names a URI holds obey the rules the commands apply to them (`check_alias`, which
`promote`, `rollback` and `alias resolve` share, lives here for that reason, and so does
`resolve_alias`, which alias a name means under a policy: `alias history` needs it without the
promotion machinery). Kept import-light
(the standard library and the error tree): the command line parses a URI before it opens
anything, and nothing here needs the catalog.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from compressgate.registry.kernel.errors import ManifestError

if TYPE_CHECKING:
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.governance.policy import PolicyChain

SCHEME = "compressgate"
FORMS = (
    "compressgate://RECIPE@ALIAS, compressgate://RECIPE/RUN/SEED/STAGE or "
    "compressgate://RECIPE/SHA256-PREFIX"
)
_CHARS = "letters, digits, '-', '_' or '.'"


@dataclass(frozen=True)
class ModelUri:
    """A parsed URI: the recipe, and either one of its aliases or one of its variants."""

    recipe: str
    alias: str | None = None  # NAME, as `alias resolve NAME --recipe RECIPE` takes it
    variant: str | None = None  # RUN/SEED/STAGE, or a prefix of an artifact's sha256

    def __str__(self) -> str:
        if self.alias is not None:
            return f"{SCHEME}://{self.recipe}@{self.alias}"
        return f"{SCHEME}://{self.recipe}/{self.variant}"


def is_uri(text: str) -> bool:
    """Whether `text` is meant as a URI: it holds '://', which no alias or variant can, so that
    a wrong scheme is told as such and not as a bad alias name."""
    return "://" in text


def parse_uri(text: str) -> ModelUri:
    """The recipe and the alias or variant `text` names (exit 2 saying what is wrong, and the
    forms a URI takes)."""
    scheme, found, rest = text.partition("://")
    if not found:
        _bad(text, "it is not a URI (no '://')")
    if scheme.lower() != SCHEME:
        _bad(text, f"the scheme is {scheme!r}, not '{SCHEME}'")
    if "@" in rest and "/" in rest:
        _bad(text, "it names both an alias ('@') and a variant ('/'): name one")
    if "@" in rest:
        recipe, _, alias = rest.partition("@")
        _check_recipe(text, recipe)
        if not alias:
            _bad(text, "no alias after '@'")
        if "@" in alias or ":" in alias:
            _bad(text, f"alias {alias!r} is not one name: the recipe is named before '@' only")
        if not _valid_alias(f"{recipe}:{alias}"):
            _bad(text, f"alias {alias!r} is not a valid name: use {_CHARS}, at most 64 characters")
        return ModelUri(recipe, alias=alias)
    recipe, slash, variant = rest.partition("/")
    _check_recipe(text, recipe)
    if not slash:
        _bad(text, f"it names recipe {recipe!r} but no alias ('@ALIAS') or variant ('/VARIANT')")
    _check_variant(text, variant)
    return ModelUri(recipe, variant=variant)


def check_alias(alias: str) -> None:
    """An alias name: NAME, or RECIPE:NAME, of letters, digits, '-', '_' and '.' (exit 2)."""
    if not _valid_alias(alias):
        raise ManifestError(
            f"alias {alias!r} is not a valid name",
            hint=f"use {_CHARS}, at most 64 characters, optionally after the recipe's name and "
            "':' (digits-cnn:production)",
        )


def resolve_alias(catalog: Catalog, chain: PolicyChain | None, alias: str) -> str:
    """The alias a name means under a policy: RECIPE:NAME as given; NAME shared by the policy
    as is; else the one recipe's NAME there is (several: exit 2, naming them)."""
    if chain is None or chain.current is None or ":" in alias:
        return alias
    if chain.current.trust.alias_rule(alias).shared:
        return alias
    scoped = sorted(a for a in catalog.aliases() if a.endswith(f":{alias}"))
    if len(scoped) == 1:
        return scoped[0]
    if scoped:
        raise ManifestError(
            f"alias {alias} is one per recipe here: {', '.join(scoped)}; name one",
            hint="give RECIPE:NAME",
        )
    return alias


def _valid_alias(alias: str) -> bool:
    scope, _, name = alias.rpartition(":")
    return not (
        not name
        or len(alias) > 130
        or len(name) > 64
        or not _plain(name + scope)
        or (":" in alias and not scope)
    )


def _plain(text: str) -> bool:
    return all(ch.isalnum() or ch in "-_." for ch in text)


def _check_recipe(text: str, recipe: str) -> None:
    """The recipe part as an alias's RECIPE: part (what `--recipe` takes) may be."""
    if not recipe:
        _bad(text, "no recipe after 'compressgate://'")
    if len(recipe) > 65 or not _plain(recipe):
        _bad(text, f"recipe {recipe!r} is not a recipe's name: use {_CHARS}")


def _check_variant(text: str, variant: str) -> None:
    """RUN/SEED/STAGE, or 6 to 64 hex digits of an artifact's sha256, as `catalog show` and
    `evaluate` take a variant."""
    if not variant:
        _bad(text, "no variant after '/'")
    if "/" in variant:
        parts = variant.split("/")
        if len(parts) != 3 or not all(parts) or not all(_plain(p) for p in parts):
            _bad(text, f"variant {variant!r} is not RUN/SEED/STAGE")
        if not (parts[1].isascii() and parts[1].isdigit()):
            _bad(text, f"variant {variant!r}: its seed {parts[1]!r} is not a number")
        return
    if not 6 <= len(variant) <= 64 or any(ch not in "0123456789abcdef" for ch in variant):
        _bad(
            text,
            f"variant {variant!r} is neither RUN/SEED/STAGE nor 6 to 64 lowercase hex digits of "
            "an artifact's sha256",
        )


def _bad(text: str, what: str) -> NoReturn:
    raise ManifestError(f"URI {text!r}: {what}", hint=f"give {FORMS}")
