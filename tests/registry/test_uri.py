"""`compressgate://RECIPE@ALIAS` and `compressgate://RECIPE/VARIANT`: parsed, then resolved to a
verified file by `alias resolve`, `Workspace.resolve_uri`, `Workspace.load` and
`compressgate.registry.resolve_uri`.

The workspaces hold runs whose int8 variant is a real ONNX file in the artifact store
(tests/helpers/serving.py), of two recipes (`digits` and `other`), so that a URI naming one
recipe's alias or variant can be told from the other's. One fixture adopts a signed trust
policy, under which aliases belong to a recipe unless the policy shares them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from compressgate.recipes.trust import add_owner_key, set_root_threshold
from compressgate.registry import Workspace as Registry
from compressgate.registry import resolve_uri
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.governance import policy
from compressgate.registry.governance.uri import FORMS, ModelUri, check_alias, is_uri, parse_uri
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import IntegrityError, ManifestError, NotFoundError
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.serving import expected, record
from tests.helpers.workspace import Invoke

FIRST, SECOND, OTHER, TWIN, FAILED = (
    "run-20261123T100000Z-aaaaaa",  # digits, scale 1.0
    "run-20261123T110000Z-bbbbbb",  # digits, scale 2.0
    "run-20261123T120000Z-cccccc",  # other, scale 3.0
    "run-20261123T130000Z-dddddd",  # other, scale 1.0: the same bytes as FIRST's
    "run-20261123T140000Z-eeeeee",  # digits, scale 4.0, its gate failed: rejected
)
HEAVY = ("scipy", "torch", "sklearn")
WRAPPER = f"""\
import atexit, sys
sys.argv = ["compressgate", *sys.argv[1:]]
from compressgate.registry.cli import main
atexit.register(
    lambda: print("heavy: " + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
)
main()
"""


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


# --- resolving, without a policy ----------------------------------------------------------------


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """digits: FIRST then SECOND promoted to production, FAILED (rejected) recorded; other:
    OTHER, and TWIN, whose file has FIRST's bytes."""
    folder = tmp_path / "ws"
    first = record(folder, FIRST, 1.0)
    second = record(folder, SECOND, 2.0)
    record(folder, OTHER, 3.0, recipe_name="other")
    record(folder, TWIN, 1.0, recipe_name="other")
    record(folder, FAILED, 4.0, accuracy=0.80)
    with Registry(folder) as registry:
        registry.promote(first, "production", actor="alice", reason="first")
        registry.promote(second, "production", actor="alice", reason="second")
    return folder


def resolve(cli: Invoke, root: Path, *args: str) -> tuple[int, dict[str, object], str]:
    result = cli("alias", "resolve", *args, "--workspace", root, "--json")
    return result.exit_code, json.loads(result.stdout or "{}"), result.stderr


def artifact_of(root: Path, variant: str) -> str:
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        return catalog.variant(variant).artifact_sha256


def test_recipe_at_alias_is_alias_resolve_with_recipe(root: Path, cli: Invoke) -> None:
    code, by_uri, stderr = resolve(cli, root, "compressgate://digits@production")
    assert code == 0, stderr
    code, by_option, stderr = resolve(cli, root, "production", "--recipe", "digits")
    assert code == 0, stderr
    assert by_uri == {**by_option, "uri": "compressgate://digits@production"}
    assert by_option["uri"] is None
    assert (by_uri["alias"], by_uri["variant"], by_uri["action"]) == (
        "production",
        f"{SECOND}/0/int8",
        "promote",
    )
    sha = artifact_of(root, f"{SECOND}/0/int8")
    assert by_uri["sha256"] == sha and sha256_file(Path(str(by_uri["path"]))) == sha
    assert by_uri["checked"] == [
        "the move was made under the unsigned regime (no policy): it has no release to check",
        f"variant {SECOND}/0/int8's record names the move's artifact",
        f"its file's bytes hash to the recorded digest {sha[:16]}… now",
    ]

    text = cli("alias", "resolve", "compressgate://digits@production", "--workspace", root)
    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines()[0] == f"production -> {SECOND}/0/int8 (verified)"
    assert "  policy:  unsigned regime (no policy)" in text.stdout.splitlines()


def test_recipe_at_alias_of_another_recipe_exits_4_as_with_recipe(root: Path, cli: Invoke) -> None:
    code, _, stderr = resolve(cli, root, "compressgate://other@production")
    assert code == 4
    assert "alias production points at a variant of recipe digits, not other" in stderr
    code, _, stderr = resolve(cli, root, "production", "--recipe", "other")
    assert code == 4 and "points at a variant of recipe digits, not other" in stderr


def test_an_unknown_alias_exits_4_naming_the_aliases_there_are(root: Path, cli: Invoke) -> None:
    result = cli("alias", "resolve", "compressgate://digits@prod", "--workspace", root)
    assert result.exit_code == 4
    assert "no alias prod in the catalog" in result.stderr
    assert "its aliases: production" in result.stderr
    with pytest.raises(NotFoundError, match="its aliases: production"):
        resolve_uri("compressgate://digits@prod", workspace=root)


def test_recipe_slash_variant_names_the_variant_and_hashes_its_bytes(
    root: Path, cli: Invoke
) -> None:
    uri = f"compressgate://digits/{FIRST}/0/int8"
    code, found, stderr = resolve(cli, root, uri)
    assert code == 0, stderr
    sha = artifact_of(root, f"{FIRST}/0/int8")
    path = Path(str(found["path"]))
    assert path == root / "objects" / "sha256" / sha[:2] / sha[2:]
    assert sha256_file(path) == sha == found["sha256"]
    assert (found["uri"], found["variant"], found["run_id"], found["recipe"]) == (
        uri,
        f"{FIRST}/0/int8",
        FIRST,
        "digits",
    )
    assert (found["review"], found["verified"], found["format"]) == ("approved", True, "onnx")
    # No alias was gone through: no move, no release.
    assert [found[k] for k in ("alias", "moved_at", "moved_by", "action", "seq")] == [None] * 5
    assert (found["policy_version"], found["release_keyid"]) == (None, None)
    assert found["checked"] == [
        f"variant {FIRST}/0/int8 is of recipe digits",
        f"its file's bytes hash to the recorded digest {sha[:16]}… now",
        "named directly, not through an alias: no move or release to check",
    ]

    text = cli("alias", "resolve", uri, "--workspace", root)
    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines() == [
        f"{uri} -> {FIRST}/0/int8 (verified)",
        f"  sha256:  {sha}",
        f"  path:    {path}",
        f"  run:     {FIRST} (recipe digits v1)",
        "  review:  approved",
        "  alias:   none (a variant named directly: no move or release to verify)",
    ]


def test_a_sha256_prefix_names_the_recipes_own_record_of_shared_bytes(
    root: Path, cli: Invoke
) -> None:
    """FIRST (digits) and TWIN (other) hold the same bytes: the prefix alone would give the
    newest run's record, TWIN's; the URI's recipe picks its own."""
    sha = artifact_of(root, f"{FIRST}/0/int8")
    assert artifact_of(root, f"{TWIN}/0/int8") == sha
    code, mine, stderr = resolve(cli, root, f"compressgate://digits/{sha[:10]}")
    assert code == 0, stderr
    assert (mine["variant"], mine["recipe"], mine["sha256"]) == (f"{FIRST}/0/int8", "digits", sha)
    code, theirs, stderr = resolve(cli, root, f"compressgate://other/{sha[:10]}")
    assert code == 0, stderr
    assert (theirs["variant"], theirs["recipe"]) == (f"{TWIN}/0/int8", "other")
    assert theirs["path"] == mine["path"]


def test_a_variant_of_another_recipe_is_refused_with_exit_4(root: Path, cli: Invoke) -> None:
    code, _, stderr = resolve(cli, root, f"compressgate://digits/{OTHER}/0/int8")
    assert code == 4
    assert f"variant {OTHER}/0/int8 is of recipe other, not digits" in stderr
    assert f"hint: compressgate://other/{OTHER}/0/int8 names it" in stderr
    sha = artifact_of(root, f"{OTHER}/0/int8")
    code, _, stderr = resolve(cli, root, f"compressgate://digits/{sha[:8]}")
    assert code == 4
    assert f"artifact {sha[:16]}… is no variant of recipe digits: its variants are of other" in (
        stderr
    )
    code, _, stderr = resolve(cli, root, f"compressgate://digits/{FIRST}/0/nothing")
    assert code == 4 and f"no variant {FIRST}/0/nothing in the catalog" in stderr


def test_a_rejected_runs_variant_resolves_with_its_review_reported(root: Path, cli: Invoke) -> None:
    """As for an alias, the review is reported as it stands, not required: a deployment that
    serves only `approved` reads `review`."""
    code, found, stderr = resolve(cli, root, f"compressgate://digits/{FAILED}/0/int8")
    assert code == 0, stderr
    assert (found["variant"], found["review"]) == (f"{FAILED}/0/int8", "rejected")
    reasons = found["review_reasons"]
    assert isinstance(reasons, list) and any("gate 'accuracy' failed" in r for r in reasons)


@pytest.mark.parametrize("form", ["alias", "variant"])
def test_changed_bytes_exit_3_through_a_uri_too(root: Path, cli: Invoke, form: str) -> None:
    uri = (
        "compressgate://digits@production"
        if form == "alias"
        else f"compressgate://digits/{SECOND}/0/int8"
    )
    _, found, _ = resolve(cli, root, uri)
    blob = Path(str(found["path"]))
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))

    result = cli("alias", "resolve", uri, "--workspace", root, "--path")
    assert result.exit_code == 3 and result.stdout == ""
    assert f"variant {SECOND}/0/int8's file model.onnx ({blob}) no longer hashes" in result.stderr
    with pytest.raises(IntegrityError, match="its bytes changed"):
        resolve_uri(uri, workspace=root)
    with Registry(root) as registry, pytest.raises(IntegrityError, match="its bytes changed"):
        registry.load(uri)


def test_python_gives_what_the_command_prints(root: Path, cli: Invoke) -> None:
    x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    uri = "compressgate://digits@production"
    _, printed, _ = resolve(cli, root, uri)
    assert resolve_uri(uri, workspace=root).model_dump() == printed
    again = resolve_uri(uri, workspace=str(root), catalog=str(root / "catalog.db"))
    assert again.path == printed["path"]
    with Registry(root) as registry:
        assert registry.resolve_uri(uri).model_dump() == printed
        assert registry.resolve(uri).model_dump() == printed
        assert str(registry.load(uri)) == printed["path"]
        session = registry.load(f"compressgate://digits/{FIRST}/0/int8", session=True)
        with pytest.raises(ManifestError, match="a URI names its recipe; name it once"):
            registry.load(uri, recipe="digits")
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, expected(1.0, x), rtol=1e-6)


def test_the_workspace_comes_from_the_environment_as_for_every_command(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COMPRESSGATE_WORKSPACE", str(root))
    assert resolve_uri("compressgate://digits@production").variant == f"{SECOND}/0/int8"
    monkeypatch.setenv("COMPRESSGATE_WORKSPACE", str(root.parent / "nowhere"))
    with pytest.raises(NotFoundError, match="no catalog at"):
        resolve_uri("compressgate://digits@production")


def test_path_prints_only_the_verified_path(root: Path, cli: Invoke) -> None:
    _, found, _ = resolve(cli, root, "compressgate://digits@production")
    for name in ("compressgate://digits@production", "production"):
        result = cli("alias", "resolve", name, "--path", "--workspace", root)
        assert result.exit_code == 0, result.stderr
        assert result.stdout == f"{found['path']}\n"


def test_cli_refuses_a_bad_uri_a_uri_with_recipe_and_path_with_json(
    root: Path, cli: Invoke
) -> None:
    bad = cli("alias", "resolve", "models://digits@production", "--workspace", root)
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.splitlines() == [
        "Error: URI 'models://digits@production': the scheme is 'models', not 'compressgate'",
        f"hint: give {FORMS}",
    ]
    code, error, _ = resolve(cli, root, "compressgate://digits")
    assert code == 2 and error["exit_code"] == 2
    assert "names recipe 'digits' but no alias" in str(error["error"])

    both = cli(
        "alias", "resolve", "compressgate://digits@production", "--recipe", "digits",
        "--workspace", root,
    )  # fmt: skip
    assert both.exit_code == 2
    assert "a URI names its recipe; name it once" in both.stderr
    assert "hint: give the URI alone, or NAME --recipe RECIPE" in both.stderr

    clash = cli("alias", "resolve", "production", "--path", "--json", "--workspace", root)
    assert clash.exit_code == 2 and "--path and --json: choose one" in clash.stderr


def test_several_files_are_each_checked_through_a_variant_uri(tmp_path: Path, cli: Invoke) -> None:
    root = tmp_path / "ws"
    record(root, FIRST, 3.0, external=True)
    code, found, stderr = resolve(cli, root, f"compressgate://digits/{FIRST}/0/int8")
    assert code == 0, stderr
    path = Path(str(found["path"]))
    assert path == root / "serve" / str(found["sha256"]) / "model.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    assert found["checked"] == [
        f"variant {FIRST}/0/int8 is of recipe digits",
        "its 2 files' bytes hash to their recorded digests now, and their list to the artifact's",
        "named directly, not through an alias: no move or release to check",
    ]


def test_resolving_a_uri_imports_no_scipy_torch_or_sklearn(root: Path) -> None:
    for uri in ("compressgate://digits@production", f"compressgate://digits/{FIRST}/0/int8"):
        result = subprocess.run(
            [sys.executable, "-c", WRAPPER, "alias", "resolve", uri, "--workspace", str(root)],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "(verified)" in result.stdout
        assert result.stderr.splitlines()[-1] == "heavy: "


# --- resolving under a policy: aliases per recipe, or shared --------------------------------------


@pytest.fixture
def governed(tmp_path: Path) -> Path:
    """FIRST, SECOND (digits) and OTHER (other) recorded, then a policy that shares `staging`
    across recipes; production moved to FIRST and to OTHER (one per recipe), staging to
    SECOND, each signed by serving."""
    root, keys, trust = tmp_path / "ws", tmp_path / "keys", tmp_path / "policy.yaml"
    for owner, role in [("ml-platform", "author"), ("root-a", "root"), ("serving", "releaser")]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    set_root_threshold(trust, 1)
    document = yaml.safe_load(trust.read_text())
    document["aliases"] = {"staging": {"shared": True}}
    trust.write_text(yaml.safe_dump(document, sort_keys=False))
    first = record(root, FIRST, 1.0)
    second = record(root, SECOND, 2.0)
    other = record(root, OTHER, 3.0, recipe_name="other")
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        policy.init(catalog, trust, [load_private_key(keys / "root-a.key")])
    with Registry(root) as registry:
        for variant, alias in [(first, "production"), (other, "production"), (second, "staging")]:
            registry.promote(variant, alias, key_path=keys / "serving.key")
    return root


def test_under_a_policy_the_uri_picks_the_recipes_own_alias(governed: Path, cli: Invoke) -> None:
    code, _, stderr = resolve(cli, governed, "production")
    assert code == 2
    assert "alias production is one per recipe here: digits:production, other:production" in (
        stderr
    )
    for recipe, run in (("digits", FIRST), ("other", OTHER)):
        code, found, stderr = resolve(cli, governed, f"compressgate://{recipe}@production")
        assert code == 0, stderr
        assert (found["alias"], found["variant"]) == (f"{recipe}:production", f"{run}/0/int8")
        assert (found["policy_version"], found["moved_by"]) == (1, "serving")
        assert str(found["checked"][0]).startswith("the move's release, signed by serving (key ")
        _, same, _ = resolve(cli, governed, "production", "--recipe", recipe)
        assert found == {**same, "uri": f"compressgate://{recipe}@production"}


def test_under_a_policy_a_shared_alias_is_one_across_recipes(governed: Path, cli: Invoke) -> None:
    code, found, stderr = resolve(cli, governed, "compressgate://digits@staging")
    assert code == 0, stderr
    assert (found["alias"], found["variant"]) == ("staging", f"{SECOND}/0/int8")
    code, _, stderr = resolve(cli, governed, "compressgate://other@staging")
    assert code == 4
    assert "alias staging points at a variant of recipe digits, not other" in stderr
    code, found, stderr = resolve(cli, governed, f"compressgate://other/{OTHER}/0/int8")
    assert code == 0, stderr
    assert (found["alias"], found["policy_version"], found["release_keyid"]) == (None, None, None)
