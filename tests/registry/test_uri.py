"""`compressgate://RECIPE@ALIAS` and `compressgate://RECIPE/VARIANT`, parsed: every good form,
and every bad one refused with exit 2, saying what is wrong and the forms a URI takes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from compressgate.registry.governance.uri import FORMS, ModelUri, check_alias, is_uri, parse_uri
from compressgate.registry.kernel.errors import ManifestError

FIRST = "run-20261123T100000Z-aaaaaa"


# --- parsing ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("compressgate://digits@production", ModelUri("digits", alias="production")),
        ("compressgate://digits-cnn@prod_v2.1", ModelUri("digits-cnn", alias="prod_v2.1")),
        (f"compressgate://digits/{FIRST}/0/int8", ModelUri("digits", variant=f"{FIRST}/0/int8")),
        ("compressgate://digits/6d674c", ModelUri("digits", variant="6d674c")),
        ("compressgate://digits/" + "ab" * 32, ModelUri("digits", variant="ab" * 32)),
        ("CompressGate://digits@production", ModelUri("digits", alias="production")),
    ],
)
def test_good_uris_parse_to_their_recipe_and_alias_or_variant(text: str, parsed: ModelUri) -> None:
    assert is_uri(text)
    assert parse_uri(text) == parsed
    assert str(parse_uri(text)) == text.replace("CompressGate", "compressgate")


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("digits@production", "it is not a URI (no '://')"),
        ("models:/digits@production", "it is not a URI (no '://')"),
        ("models://digits@production", "the scheme is 'models', not 'compressgate'"),
        ("https://example.com/digits", "the scheme is 'https', not 'compressgate'"),
        ("compressgate://", "no recipe after 'compressgate://'"),
        ("compressgate://@production", "no recipe after 'compressgate://'"),
        ("compressgate:///run-1/0/int8", "no recipe after 'compressgate://'"),
        ("compressgate://digits", "it names recipe 'digits' but no alias ('@ALIAS') or variant"),
        ("compressgate://digits@", "no alias after '@'"),
        ("compressgate://digits/", "no variant after '/'"),
        ("compressgate://digits@production/x", "it names both an alias ('@') and a variant"),
        (f"compressgate://digits/{FIRST}/0/int8@production", "names both an alias ('@')"),
        ("compressgate://digits@prod@uction", "alias 'prod@uction' is not one name"),
        ("compressgate://digits@digits:production", "alias 'digits:production' is not one name"),
        ("compressgate://digits@pro duction", "alias 'pro duction' is not a valid name"),
        ("compressgate://digits@production?v=1", "alias 'production?v=1' is not a valid name"),
        ("compressgate://digits@" + "p" * 65, "is not a valid name: use letters, digits"),
        ("compressgate://dig its@production", "recipe 'dig its' is not a recipe's name"),
        ("compressgate://dig%20its@production", "recipe 'dig%20its' is not a recipe's name"),
        ("compressgate://host:80@production", "recipe 'host:80' is not a recipe's name"),
        ("compressgate://" + "d" * 66 + "@production", "is not a recipe's name"),
        (f"compressgate://digits/{FIRST}/0", f"variant '{FIRST}/0' is not RUN/SEED/STAGE"),
        (f"compressgate://digits/{FIRST}//int8", "is not RUN/SEED/STAGE"),
        (f"compressgate://digits/{FIRST}/0/int8/x", "is not RUN/SEED/STAGE"),
        (f"compressgate://digits/{FIRST}/0/int8#top", "is not RUN/SEED/STAGE"),
        (f"compressgate://digits/{FIRST}/zero/int8", "its seed 'zero' is not a number"),
        ("compressgate://digits/6d674", "variant '6d674' is neither RUN/SEED/STAGE nor 6 to 64"),
        ("compressgate://digits/6D674C", "variant '6D674C' is neither RUN/SEED/STAGE"),
        ("compressgate://digits/production", "variant 'production' is neither"),
        ("compressgate://digits/" + "a" * 65, "is neither RUN/SEED/STAGE nor 6 to 64"),
    ],
)
def test_bad_uris_exit_2_saying_what_is_wrong_and_the_forms(text: str, what: str) -> None:
    with pytest.raises(ManifestError) as raised:
        parse_uri(text)
    assert raised.value.exit_code == 2
    assert str(raised.value).startswith(f"URI {text!r}: ")
    assert what in str(raised.value)
    assert raised.value.hint == f"give {FORMS}"


def test_a_name_is_taken_for_a_uri_only_with_its_separator() -> None:
    assert not is_uri("production") and not is_uri("digits:production")
    assert not is_uri(f"{FIRST}/0/int8") and is_uri("s3://bucket/model")


def test_the_alias_rule_is_the_one_promote_applies() -> None:
    for good in ("production", "digits-cnn:production", "v1.2_rc"):
        check_alias(good)
    for bad in ("pro duction", ":production", "digits:", "a" * 65, "x\u202eproduction"):
        with pytest.raises(ManifestError, match="is not a valid name"):
            check_alias(bad)


def test_parsing_imports_no_sqlalchemy_nor_pydantic() -> None:
    code = (
        "import sys; from compressgate.registry.governance.uri import parse_uri; "
        "parse_uri('compressgate://digits@production'); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'pydantic'}))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
