"""Interoperability with securesystemslib and in-toto, the reference DSSE implementations.

Our envelopes, key ids and canonical JSON are checked against the installed libraries in both
directions: what we sign they verify, what they sign we verify, and both reject tampering.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from in_toto.exceptions import SignatureVerificationError
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from securesystemslib.dsse import Envelope as SSlibEnvelope
from securesystemslib.exceptions import FormatError, VerificationError
from securesystemslib.formats import encode_canonical
from securesystemslib.signer import CryptoSigner, Key, Signer, SSlibKey

from compressgate.recipes import signing
from compressgate.recipes.load import load_recipe
from compressgate.recipes.trust import load_trust
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import canonical_json
from compressgate.registry.kernel.errors import IntegrityError
from compressgate.registry.kernel.keys import (
    PrivateKey,
    PublicKey,
    generate_keypair,
    load_private_key,
    public_key_json,
)
from tests.helpers.workspace import Workspace

# RFC 8032, section 7.1, test 1: a fixed Ed25519 public key.
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"


def a_statement() -> bytes:
    return dsse.statement(
        [("model.onnx", "ab" * 32)],
        "https://example.com/predicate/v1",
        {"note": 'Grüße, "quoted" and back\\slash'},
    )


def sslib_key(public: PublicKey) -> Key:
    """Our `NAME.pub.json` form, read the way securesystemslib reads a key."""
    data = json.loads(public_key_json(public))
    return Key.from_dict(data.pop("keyid"), data)


def sslib_signer(private: PrivateKey) -> CryptoSigner:
    """A securesystemslib signer over the PEM we write for a key."""
    return CryptoSigner(load_pem_private_key(private.to_pem(), password=None))


def envelope_dict(envelope: dsse.Envelope) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(envelope.to_json())
    return body


# The tamperings return deep copies: securesystemslib's from_dict consumes the signature
# dicts it is given, so the untouched body must not share them.
def with_payload_byte_flipped(body: dict[str, Any]) -> dict[str, Any]:
    body = copy.deepcopy(body)
    payload = bytearray(base64.b64decode(body["payload"]))
    payload[len(payload) // 2] ^= 0x01
    return {**body, "payload": base64.b64encode(bytes(payload)).decode("ascii")}


def with_payload_type_changed(body: dict[str, Any]) -> dict[str, Any]:
    assert body["payloadType"] == "application/vnd.in-toto+json"
    body = copy.deepcopy(body)
    return {**body, "payloadType": "application/vnd.in-toto+jsoN"}


TAMPERINGS = pytest.mark.parametrize(
    "tamper",
    [with_payload_byte_flipped, with_payload_type_changed],
    ids=["payload-byte", "payload-type"],
)


# --- key ids and canonical JSON -----------------------------------------------------------


def test_keyid_of_a_fixed_key_is_sha256_of_its_canonical_json_as_securesystemslib_computes() -> (
    None
):
    ours = PublicKey(RFC8032_PUBLIC)
    theirs = SSlibKey.from_crypto(Ed25519PublicKey.from_public_bytes(bytes.fromhex(RFC8032_PUBLIC)))
    literal = (
        '{"keytype":"ed25519","keyval":{"public":"' + RFC8032_PUBLIC + '"},"scheme":"ed25519"}'
    )
    assert ours.keyid == theirs.keyid == hashlib.sha256(literal.encode()).hexdigest()
    assert ours.to_dict() == theirs.to_dict()


def test_keyid_of_generated_keys_matches_securesystemslib_and_its_signer() -> None:
    for _ in range(3):
        private = PrivateKey.generate()
        from_crypto = SSlibKey.from_crypto(private.key.public_key())
        assert from_crypto.keyid == private.public.keyid
        assert from_crypto.to_dict() == private.public.to_dict()
        assert sslib_signer(private).public_key.keyid == private.public.keyid


def test_public_key_file_reads_as_securesystemslib_key_and_back() -> None:
    public = PrivateKey.generate().public
    key = sslib_key(public)
    assert isinstance(key, SSlibKey)
    assert (key.keyid, key.keytype, key.scheme, key.keyval) == (
        public.keyid,
        "ed25519",
        "ed25519",
        {"public": public.public_hex},
    )
    assert key.unrecognized_fields == {}
    assert PublicKey.from_dict({"keyid": key.keyid, **key.to_dict()}, source="sslib") == public


@pytest.mark.parametrize(
    "value",
    [
        {"b": 1, "a": [True, False, None], "c": {"z": "", "y": -42}},
        {"name": "Grüße ☃ 日本語 🎉", "ümlaut-key": ["ü", "é"], "Zebra": 0},
        {"quote": 'say "hi"', "backslash": "C:\\path\\to", "both": '\\"'},
        {"control": "line\nbreak\ttab\r\x00\x1f", "slash": "a/b"},
        [[], {}, [{"nested": [1, [2, [3, {"deep": "\\\\"}]]]}], 10**30, -(2**63)],
        {"subject": [{"name": "r.yaml", "digest": {"sha256": "ab" * 32}}], "_type": "x"},
        ("tuple", 1),
        'just a "string" with \\ and é',
    ],
    ids=[
        "scalars",
        "non-ascii",
        "quotes-backslashes",
        "control-chars",
        "deep",
        "statement",
        "tuple",
        "string",
    ],
)
def test_canonical_json_is_byte_identical_to_securesystemslib_encode_canonical(
    value: Any,
) -> None:
    theirs = encode_canonical(value)
    assert isinstance(theirs, str)
    assert canonical_json(value) == theirs.encode("utf-8")


def test_canonical_json_refuses_floats_like_securesystemslib() -> None:
    with pytest.raises(TypeError):
        canonical_json({"x": 1.5})
    with pytest.raises(FormatError, match="Could not encode"):
        encode_canonical({"x": 1.5})


# --- securesystemslib verifies what we sign -----------------------------------------------


def test_securesystemslib_verifies_envelope_signed_by_us() -> None:
    private = PrivateKey.generate()
    envelope = dsse.sign(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, [private])

    theirs = SSlibEnvelope.from_dict(json.loads(envelope.to_json()))

    assert theirs.payload == a_statement()
    assert theirs.payload_type == "application/vnd.in-toto+json"
    assert theirs.pae() == dsse.pae(envelope.payload_type, envelope.payload)
    key = sslib_key(private.public)
    assert theirs.verify([key], threshold=1) == {private.public.keyid: key}


def test_securesystemslib_counts_each_co_signature_toward_its_threshold() -> None:
    first, second, outsider = (PrivateKey.generate() for _ in range(3))
    envelope = dsse.add_signature(
        dsse.sign(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, [first]), second
    )
    theirs = SSlibEnvelope.from_dict(json.loads(envelope.to_json()))
    keys = [sslib_key(k.public) for k in (first, second, outsider)]

    accepted = theirs.verify(keys, threshold=2)

    assert set(accepted) == {first.public.keyid, second.public.keyid}
    with pytest.raises(VerificationError, match="Found: 2, Expected 3"):
        theirs.verify(keys, threshold=3)


@TAMPERINGS
def test_securesystemslib_rejects_our_envelope_once_tampered(tamper: Any) -> None:
    private = PrivateKey.generate()
    body = envelope_dict(dsse.sign(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, [private]))
    tampered = tamper(body)

    theirs = SSlibEnvelope.from_dict(json.loads(json.dumps(tampered)))

    with pytest.raises(VerificationError, match="Found: 0, Expected 1"):
        theirs.verify([sslib_key(private.public)], threshold=1)
    # And we agree with them.
    ours = dsse.Envelope.from_json(json.dumps(tampered).encode(), source="tampered")
    assert dsse.verified_keys(ours, [private.public]) == []


# --- we verify what securesystemslib and in-toto sign -------------------------------------


def test_our_verifier_accepts_envelope_signed_by_securesystemslib() -> None:
    private, other = PrivateKey.generate(), PrivateKey.generate()
    theirs = SSlibEnvelope(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, {})
    signature = theirs.sign(sslib_signer(private))
    assert signature.keyid == private.public.keyid

    ours = dsse.Envelope.from_json(json.dumps(theirs.to_dict()).encode(), source="sslib")

    assert ours.payload == a_statement()
    assert ours.payload_type == dsse.INTOTO_PAYLOAD_TYPE
    assert ours.signatures == (
        dsse.Signature(private.public.keyid, bytes.fromhex(signature.signature)),
    )
    assert dsse.verified_keys(ours, [other.public, private.public]) == [private.public]


def test_securesystemslib_loads_our_key_file_by_uri_and_signs_what_we_verify(
    tmp_path: Path,
) -> None:
    private_path, _, public = generate_keypair("ml-platform", tmp_path)
    signer = Signer.from_priv_key_uri(f"file2:{private_path}", sslib_key(public))
    theirs = SSlibEnvelope(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, {})
    theirs.sign(signer)

    ours = dsse.Envelope.from_json(json.dumps(theirs.to_dict()).encode(), source="sslib")

    assert dsse.verified_keys(ours, [public]) == [public]
    assert ours.signatures[0].keyid == public.keyid


def test_our_verifier_accepts_envelope_written_by_in_toto(tmp_path: Path) -> None:
    private = PrivateKey.generate()
    theirs = InTotoEnvelope(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, {})
    theirs.create_signature(sslib_signer(private))
    path = tmp_path / "statement.dsse.json"
    theirs.dump(str(path))

    ours = dsse.Envelope.from_json(path.read_bytes(), source=str(path))

    assert ours.payload == a_statement()
    assert dsse.verified_keys(ours, [private.public]) == [private.public]


# --- in-toto verifies what we sign --------------------------------------------------------


def test_in_toto_loads_our_envelope_file_and_verifies_its_signature(tmp_path: Path) -> None:
    private = PrivateKey.generate()
    path = tmp_path / "statement.dsse.json"
    path.write_bytes(dsse.sign(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, [private]).to_json())

    metadata = Metadata.load(str(path))

    assert isinstance(metadata, InTotoEnvelope)
    assert metadata.payload == a_statement()
    metadata.verify_signature(json.loads(public_key_json(private.public)))


def test_in_toto_rejects_our_envelope_for_a_key_that_did_not_sign_it() -> None:
    signer, stranger = PrivateKey.generate(), PrivateKey.generate()
    body = envelope_dict(dsse.sign(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, [signer]))
    metadata = Metadata.from_dict(body)

    with pytest.raises(SignatureVerificationError):
        metadata.verify_signature(json.loads(public_key_json(stranger.public)))


@TAMPERINGS
def test_in_toto_rejects_our_envelope_once_tampered(tamper: Any) -> None:
    private = PrivateKey.generate()
    body = envelope_dict(dsse.sign(a_statement(), dsse.INTOTO_PAYLOAD_TYPE, [private]))
    key = json.loads(public_key_json(private.public))
    # Metadata.from_dict only recognises the in-toto payloadType, so build the envelope
    # class directly; its verify_signature is what in-toto runs on any DSSE envelope.
    tampered = InTotoEnvelope.from_dict(tamper(body))

    with pytest.raises(SignatureVerificationError):
        tampered.verify_signature(key)
    InTotoEnvelope.from_dict(body).verify_signature(key)  # the untouched one still verifies


# --- end to end: a recipe signed by securesystemslib --------------------------------------


@pytest.fixture(autouse=True)
def _no_key_path_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    """securesystemslib prefixes file: key URIs with this variable when set; ours are absolute."""
    monkeypatch.delenv(CryptoSigner.PREFIX_ENV_VAR, raising=False)


def sign_recipe_with_securesystemslib(recipe: Path, keys: Path, owner: str) -> PublicKey:
    private_path = keys / f"{owner}.key"
    public = load_private_key(private_path).public
    signer = Signer.from_priv_key_uri(f"file2:{private_path}", sslib_key(public))
    theirs = SSlibEnvelope(
        signing.recipe_statement(load_recipe(recipe)), dsse.INTOTO_PAYLOAD_TYPE, {}
    )
    theirs.sign(signer)
    signing.envelope_path(recipe).write_text(json.dumps(theirs.to_dict()), encoding="utf-8")
    return public


def test_recipe_signed_by_securesystemslib_is_accepted_by_verify_recipe(
    workspace: Workspace,
) -> None:
    recipe, trust, keys = workspace.recipe, workspace.trust, workspace.keys
    author = sign_recipe_with_securesystemslib(recipe, keys, "ml-platform")

    verified = signing.verify_recipe(recipe, load_trust(trust))

    assert verified.signers == (signing.Signer("ml-platform", author.keyid),)
    assert verified.envelope == signing.envelope_path(recipe)
    assert verified.loaded.sha256 == hashlib.sha256(recipe.read_bytes()).hexdigest()


def test_recipe_signed_by_securesystemslib_is_refused_once_the_recipe_changes(
    workspace: Workspace,
) -> None:
    recipe, trust, keys = workspace.recipe, workspace.trust, workspace.keys
    sign_recipe_with_securesystemslib(recipe, keys, "ml-platform")
    recipe.write_bytes(recipe.read_bytes() + b"\n# edited after signing\n")

    with pytest.raises(IntegrityError, match="changed since it was signed"):
        signing.verify_recipe(recipe, load_trust(trust))


def test_recipe_signed_by_securesystemslib_with_an_approver_key_is_refused(
    workspace: Workspace,
) -> None:
    recipe, trust, keys = workspace.recipe, workspace.trust, workspace.keys
    sign_recipe_with_securesystemslib(recipe, keys, "ml-lead")

    with pytest.raises(IntegrityError, match="ml-lead, who lack the 'author' role"):
        signing.verify_recipe(recipe, load_trust(trust))


# --- policies and releases (issue 21) -------------------------------------------------------


def _policy_file(tmp_path: Path, roots: list[PrivateKey]) -> Path:
    from compressgate.recipes.trust import add_owner_key, set_root_threshold

    trust = tmp_path / "trust.yaml"
    for index, private in enumerate(roots):
        add_owner_key(trust, f"root-{index}", private.public, ("root",))
    set_root_threshold(trust, 2)
    return trust


def test_securesystemslib_verifies_a_policy_at_its_threshold_and_we_accept_its_co_signature(
    tmp_path: Path,
) -> None:
    from compressgate.recipes.policy import check_policy, envelope_path, sign_policy

    first, second, third = (PrivateKey.generate() for _ in range(3))
    trust = _policy_file(tmp_path, [first, second, third])
    sign_policy(trust, first, version=1, previous=None)
    # The second root signs with securesystemslib, over the same envelope.
    theirs = SSlibEnvelope.from_dict(json.loads(envelope_path(trust).read_bytes()))
    theirs.sign(sslib_signer(second))
    envelope_path(trust).write_text(json.dumps(theirs.to_dict()))

    keys = [sslib_key(k.public) for k in (first, second, third)]
    assert set(theirs.verify(keys, threshold=2)) == {first.public.keyid, second.public.keyid}
    with pytest.raises(VerificationError, match="Found: 2, Expected 3"):
        theirs.verify(keys, threshold=3)
    ours = dsse.Envelope.from_json(envelope_path(trust).read_bytes(), source="policy")
    checked = check_policy(trust.read_bytes(), ours, source="policy", previous=None)
    assert (checked.version, checked.signers) == (1, ("root-0", "root-1"))
    subject = json.loads(theirs.payload)["subject"][0]["digest"]["sha256"]
    assert subject == hashlib.sha256(trust.read_bytes()).hexdigest() == checked.sha256


def test_in_toto_verifies_a_release_and_securesystemslib_agrees() -> None:
    from compressgate.registry.governance.release import Move, release_envelope

    releaser, stranger = PrivateKey.generate(), PrivateKey.generate()
    move = Move("production", "promote", "run-x/0/int8", "cd" * 32, "run-x", "ef" * 32, None)
    envelope = release_envelope(
        move, releaser, owner="release-eng", reason="r", head=(7, "ab" * 32), policy=(1, "0" * 64)
    )
    body = envelope_dict(envelope)

    Metadata.from_dict(copy.deepcopy(body)).verify_signature(
        json.loads(public_key_json(releaser.public))
    )
    with pytest.raises(SignatureVerificationError):
        Metadata.from_dict(copy.deepcopy(body)).verify_signature(
            json.loads(public_key_json(stranger.public))
        )
    theirs = SSlibEnvelope.from_dict(body)
    theirs.verify([sslib_key(releaser.public)], threshold=1)
    statement = json.loads(theirs.payload)
    assert statement["predicateType"] == "https://compressgate.dev/release/v1"
    assert statement["subject"] == [{"name": "run-x/0/int8", "digest": {"sha256": "cd" * 32}}]
    assert statement["predicate"]["catalog_head"] == {"size": 7, "sha256": "ab" * 32}
