"""Recipe signatures: sign, co-sign, and every way verification must fail (exit 3)."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from compressgate.recipes.load import load_recipe
from compressgate.recipes.signing import RECIPE_PREDICATE_TYPE, envelope_path, recipe_statement
from compressgate.recipes.trust import add_owner_key, load_trust
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.keys import PrivateKey, generate_keypair, load_private_key
from tests.helpers.workspace import Invoke, Workspace


def signed(ws: Workspace, cli: Invoke, owner: str = "ml-platform") -> Path:
    result = cli("recipe", "sign", ws.recipe, "--key", ws.key(owner))
    assert result.exit_code == 0, result.stderr
    return envelope_path(ws.recipe)


def verify(ws: Workspace, cli: Invoke) -> tuple[int, str]:
    result = cli("recipe", "verify", ws.recipe, "--trust", ws.trust)
    return result.exit_code, result.stdout + result.stderr


def rewrite_envelope(path: Path, **changes: object) -> None:
    body = json.loads(path.read_text())
    body.update(changes)
    path.write_text(json.dumps(body))


def sign_payload(ws: Workspace, payload: bytes, owner: str = "ml-platform") -> None:
    envelope = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [load_private_key(ws.key(owner))])
    envelope_path(ws.recipe).write_bytes(envelope.to_json())


def test_signed_recipe_verifies_and_names_its_signer(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    result = cli("recipe", "verify", workspace.recipe, "--trust", workspace.trust, "--json")
    assert result.exit_code == 0, result.stderr
    record = json.loads(result.stdout)
    key = load_private_key(workspace.key("ml-platform")).public
    assert record["signers"] == [{"owner": "ml-platform", "keyid": key.keyid}]
    assert record["sha256"] == load_recipe(workspace.recipe).sha256


def test_trust_file_beside_the_recipe_is_found(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    assert cli("recipe", "verify", workspace.recipe).exit_code == 0


def test_envelope_is_dsse_over_an_in_toto_statement(workspace: Workspace, cli: Invoke) -> None:
    body = json.loads(signed(workspace, cli).read_text())
    assert body["payloadType"] == "application/vnd.in-toto+json"
    statement = json.loads(base64.b64decode(body["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == RECIPE_PREDICATE_TYPE
    assert statement["subject"] == [
        {"name": "recipe.yaml", "digest": {"sha256": load_recipe(workspace.recipe).sha256}},
        {
            "name": "requirements.lock",
            "digest": {"sha256": sha256_file(workspace.root / "requirements.lock")},
        },
    ]
    key = load_private_key(workspace.key("ml-platform"))
    pae = dsse.pae(body["payloadType"], base64.b64decode(body["payload"]))
    assert key.public.verify(base64.b64decode(body["signatures"][0]["sig"]), pae)


def test_one_changed_byte_of_the_recipe_fails(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    data = bytearray(workspace.recipe.read_bytes())
    data[data.index(b"epochs: 40")] = ord("E")  # still valid YAML? no matter: the digest changes
    workspace.recipe.write_bytes(bytes(data))
    code, out = verify(workspace, cli)
    assert code == 3
    assert "changed since it was signed" in out


def test_changed_whitespace_of_the_recipe_fails(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    workspace.recipe.write_bytes(workspace.recipe.read_bytes() + b"\n")
    assert verify(workspace, cli)[0] == 3


def test_changed_payload_fails(workspace: Workspace, cli: Invoke) -> None:
    path = signed(workspace, cli)
    body = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(body["payload"]))
    statement["predicate"]["recipe"]["version"] = 2
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    rewrite_envelope(path, payload=payload)
    code, out = verify(workspace, cli)
    assert code == 3
    assert "no signature verifies" in out


def test_changed_payload_type_fails(workspace: Workspace, cli: Invoke) -> None:
    path = signed(workspace, cli)
    rewrite_envelope(path, payloadType="application/json")
    assert verify(workspace, cli)[0] == 3


def test_key_outside_the_trust_file_fails(
    workspace: Workspace, cli: Invoke, tmp_path: Path
) -> None:
    stranger, _, _ = generate_keypair("ml-platform", tmp_path / "stranger")
    result = cli("recipe", "sign", workspace.recipe, "--key", stranger)
    assert result.exit_code == 0
    code, out = verify(workspace, cli)
    assert code == 3
    assert "no signature verifies with a key in" in out


def test_signer_who_is_not_a_recipe_owner_fails(workspace: Workspace, cli: Invoke) -> None:
    other, _, public = generate_keypair("ml-intern", workspace.keys)
    add_owner_key(workspace.trust, "ml-intern", public, ("author",))
    assert cli("recipe", "sign", workspace.recipe, "--key", other).exit_code == 0
    code, out = verify(workspace, cli)
    assert code == 3
    assert "signed by ml-intern, not by one of its owners (ml-platform)" in out


def test_signer_without_the_author_role_fails(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli, owner="ml-lead")  # ml-lead is an approver, not an author
    code, out = verify(workspace, cli)
    assert code == 3
    assert "lack the 'author' role" in out


def test_statement_without_subject_digest_fails(workspace: Workspace, cli: Invoke) -> None:
    statement = json.loads(recipe_statement(load_recipe(workspace.recipe)))
    statement["subject"] = [{"name": "recipe.yaml", "digest": {}}]
    sign_payload(workspace, json.dumps(statement).encode())
    code, out = verify(workspace, cli)
    assert code == 3
    assert "no sha256 digest" in out


def test_statement_of_another_predicate_type_fails(workspace: Workspace, cli: Invoke) -> None:
    statement = json.loads(recipe_statement(load_recipe(workspace.recipe)))
    statement["predicateType"] = "https://slsa.dev/provenance/v1"
    sign_payload(workspace, json.dumps(statement).encode())
    code, out = verify(workspace, cli)
    assert code == 3
    assert "does not sign a recipe" in out


def test_keyid_in_the_signature_is_not_trusted(workspace: Workspace, cli: Invoke) -> None:
    path = signed(workspace, cli)
    body = json.loads(path.read_text())
    body["signatures"][0]["keyid"] = "0" * 64
    path.write_text(json.dumps(body))
    assert verify(workspace, cli)[0] == 0


@pytest.mark.parametrize(
    "content", [b"", b"{", b"[]", b'{"payload": "!!", "payloadType": "x", "signatures": []}']
)
def test_malformed_envelope_fails(workspace: Workspace, cli: Invoke, content: bytes) -> None:
    envelope_path(workspace.recipe).write_bytes(content)
    code, out = verify(workspace, cli)
    assert code == 3
    assert "Traceback" not in out


def test_unsigned_recipe_is_not_found(workspace: Workspace, cli: Invoke) -> None:
    code, out = verify(workspace, cli)
    assert code == 4
    assert "is not signed" in out


def test_missing_trust_file_is_not_found(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    workspace.trust.unlink()
    code, out = verify(workspace, cli)
    assert code == 4
    assert f"trust file {workspace.trust} not found" in out
    assert cli("recipe", "verify", workspace.recipe).exit_code == 4  # none beside it either


def test_replaced_key_in_the_trust_file_fails(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    text = workspace.trust.read_text()
    trust = load_trust(workspace.trust)
    old = trust.owners["ml-platform"].keys[0]
    new = PrivateKey.generate().public
    text = text.replace(old.keyval.public, new.public_hex).replace(str(old.keyid), new.keyid)
    workspace.trust.write_text(text)
    assert verify(workspace, cli)[0] == 3


def test_owners_can_co_sign(workspace: Workspace, cli: Invoke) -> None:
    second, _, public = generate_keypair("ml-ops", workspace.keys)
    add_owner_key(workspace.trust, "ml-ops", public, ("author",))
    text = workspace.recipe.read_text().replace(
        "owners: [ml-platform]", "owners: [ml-platform, ml-ops]"
    )
    workspace.recipe.write_text(text)
    signed(workspace, cli)
    assert cli("recipe", "sign", workspace.recipe, "--key", second).exit_code == 0
    result = cli("recipe", "verify", workspace.recipe, "--json")
    assert result.exit_code == 0, result.stderr
    assert [s["owner"] for s in json.loads(result.stdout)["signers"]] == ["ml-platform", "ml-ops"]


def test_malformed_recipe_is_not_signed(workspace: Workspace, cli: Invoke) -> None:
    workspace.recipe.write_text(
        workspace.recipe.read_text().replace("sparsity: 0.5", "sparsity: 5")
    )
    result = cli("recipe", "sign", workspace.recipe, "--key", workspace.key("ml-platform"))
    assert result.exit_code == 2
    assert not envelope_path(workspace.recipe).exists()


def test_signing_with_a_public_key_file_is_bad_input(workspace: Workspace, cli: Invoke) -> None:
    result = cli(
        "recipe", "sign", workspace.recipe, "--key", workspace.keys / "ml-platform.pub.json"
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("Error: ")
    assert not envelope_path(workspace.recipe).exists()


def test_generated_private_key_is_owner_only_and_never_overwritten(
    tmp_path: Path, cli: Invoke
) -> None:
    result = cli("keys", "generate", "--owner", "ml-lead", "--out", tmp_path, "--json")
    assert result.exit_code == 0
    record = json.loads(result.stdout)
    private = Path(record["private_key"])
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    public = json.loads(Path(record["public_key"]).read_text())
    assert public["keyid"] == load_private_key(private).public.keyid == record["keyid"]
    before = private.read_bytes()
    again = cli("keys", "generate", "--owner", "ml-lead", "--out", tmp_path)
    assert again.exit_code == 2
    assert private.read_bytes() == before


def test_a_new_key_folder_is_owner_only_and_a_key_others_can_read_is_refused(
    workspace: Workspace, tmp_path: Path, cli: Invoke
) -> None:
    """`keys generate` makes a new folder 0700; a private key file its group or others can read
    is refused by every command that signs (exit 2, naming the chmod), as ssh refuses one."""
    folder = tmp_path / "new" / "keys"
    assert cli("keys", "generate", "--owner", "ml-lead", "--out", folder).exit_code == 0
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    key = workspace.key("ml-platform")
    key.chmod(0o644)
    refused = cli("recipe", "sign", workspace.recipe, "--key", key)
    assert refused.exit_code == 2, refused.stderr
    assert "the private key is readable by others (mode 0644)" in refused.stderr
    assert f"chmod 600 {key}" in refused.stderr
    assert not envelope_path(workspace.recipe).exists()
    key.chmod(0o600)
    assert cli("recipe", "sign", workspace.recipe, "--key", key).exit_code == 0


def test_a_key_cannot_belong_to_two_owners(workspace: Workspace, cli: Invoke) -> None:
    result = cli(
        "trust", "add", "--trust", workspace.trust, "--owner", "someone-else",
        "--key", workspace.keys / "ml-lead.pub.json", "--role", "approver",
    )  # fmt: skip
    assert result.exit_code == 2
    assert "already belongs to 'ml-lead'" in result.stderr


def test_malformed_trust_file_is_located(workspace: Workspace, cli: Invoke) -> None:
    signed(workspace, cli)
    workspace.trust.write_text(workspace.trust.read_text().replace("- author", "- writer"))
    code, out = verify(workspace, cli)
    assert code == 2
    assert f"{workspace.trust}:" in out
    assert "owners.ml-platform.roles[0]: 'writer' is not allowed" in out


def test_signing_over_a_tampered_envelope_replaces_it(workspace: Workspace, cli: Invoke) -> None:
    path = signed(workspace, cli)
    rewrite_envelope(path, payloadType="application/json")
    signed(workspace, cli)
    body = json.loads(path.read_text())
    assert body["payloadType"] == "application/vnd.in-toto+json"
    assert len(body["signatures"]) == 1
    assert verify(workspace, cli)[0] == 0
