"""DSSE envelopes carrying in-toto Statement v1 payloads, signed with Ed25519.

The wire form is the DSSE JSON envelope `{payload, payloadType, signatures: [{keyid, sig}]}`
with standard base64. Signatures cover the DSSE pre-authentication encoding (PAE) of payload
type and payload, so neither can change unseen. A signature's `keyid` is set when signing and
ignored when verifying: each candidate key is tried against each signature.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressgate.registry.kernel.errors import IntegrityError
from compressgate.registry.kernel.keys import PrivateKey, PublicKey

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    encoded_type = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(encoded_type), encoded_type, len(payload), payload)


@dataclass(frozen=True)
class Signature:
    keyid: str
    sig: bytes


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]

    def to_json(self) -> bytes:
        body = {
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "payloadType": self.payload_type,
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")}
                for s in self.signatures
            ],
        }
        return (json.dumps(body, indent=2) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, source: str) -> Envelope:
        """Parse an envelope; anything malformed is an integrity failure naming `source`."""
        try:
            body = json.loads(data)
        except RecursionError:
            raise IntegrityError(f"{source}: not a DSSE envelope: JSON nested too deeply") from None
        except ValueError as exc:  # invalid JSON or UTF-8, or an integer too long to read
            raise IntegrityError(f"{source}: not a DSSE envelope: invalid JSON ({exc})") from None
        if not isinstance(body, dict):
            raise IntegrityError(f"{source}: not a DSSE envelope: expected a JSON object")
        payload_type = body.get("payloadType")
        if not isinstance(payload_type, str):
            raise IntegrityError(f"{source}: not a DSSE envelope: payloadType missing")
        payload = _b64decode(body.get("payload"), f"{source}: payload")
        raw_signatures = body.get("signatures")
        if not isinstance(raw_signatures, list) or not raw_signatures:
            raise IntegrityError(f"{source}: the envelope carries no signatures")
        signatures = []
        for index, raw in enumerate(raw_signatures):
            where = f"{source}: signatures[{index}]"
            if not isinstance(raw, dict):
                raise IntegrityError(f"{where} is not an object")
            keyid = raw.get("keyid", "")
            if not isinstance(keyid, str):
                raise IntegrityError(f"{where}.keyid is not a string")
            signatures.append(Signature(keyid, _b64decode(raw.get("sig"), f"{where}.sig")))
        return cls(payload, payload_type, tuple(signatures))


def read_envelope_bytes(target: Path, *, signed: Path, hint: str) -> bytes:
    """The bytes of the envelope file `target` that signs `signed`: missing is exit 4 (with
    `hint`: how to sign it), unreadable exit 3."""
    from compressgate.registry.kernel.errors import NotFoundError

    try:
        return target.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"{signed} is not signed: {target} not found", hint=hint) from None
    except IsADirectoryError:
        raise IntegrityError(f"{target} is a directory, not a DSSE envelope") from None
    except OSError as exc:  # a symbolic link loop, no permission to read, …
        raise IntegrityError(f"{target}: cannot be read ({exc.strerror or exc})") from None


def sign(payload: bytes, payload_type: str, keys: Sequence[PrivateKey]) -> Envelope:
    """Sign `payload` with every distinct key; each signature names its key's id."""
    message = pae(payload_type, payload)
    distinct = {
        key.public.keyid: key for key in keys
    }  # one signature per keyid, as DSSE tools expect
    return Envelope(
        payload,
        payload_type,
        tuple(Signature(keyid, key.sign(message)) for keyid, key in distinct.items()),
    )


def add_signature(envelope: Envelope, key: PrivateKey) -> Envelope:
    """Co-sign: add (or replace) `key`'s signature over the same payload."""
    keyid = key.public.keyid
    kept = tuple(s for s in envelope.signatures if s.keyid != keyid)
    new = Signature(keyid, key.sign(pae(envelope.payload_type, envelope.payload)))
    return Envelope(envelope.payload, envelope.payload_type, (*kept, new))


def verified_keys(envelope: Envelope, candidates: Iterable[PublicKey]) -> list[PublicKey]:
    """The candidate keys that produced at least one valid signature on the envelope."""
    message = pae(envelope.payload_type, envelope.payload)
    return [
        key for key in candidates if any(key.verify(s.sig, message) for s in envelope.signatures)
    ]


def statement(
    subjects: Sequence[tuple[str, str]], predicate_type: str, predicate: dict[str, Any]
) -> bytes:
    """An in-toto Statement v1 over `(name, sha256)` subjects, as deterministic JSON bytes."""
    body = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": name, "digest": {"sha256": digest}} for name, digest in subjects],
        "predicateType": predicate_type,
        "predicate": predicate,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class Statement:
    subjects: tuple[tuple[str, str | None], ...]  # (name, sha256 or None when absent)
    predicate_type: str
    predicate: dict[str, Any]


def parse_statement(payload: bytes, *, source: str) -> Statement:
    """Read an in-toto Statement v1 payload; anything else is an integrity failure."""
    try:
        body = json.loads(payload)
    except RecursionError:
        raise IntegrityError(f"{source}: the payload is JSON nested too deeply") from None
    except ValueError as exc:  # invalid JSON or UTF-8, or an integer too long to read
        raise IntegrityError(f"{source}: the payload is not JSON ({exc})") from None
    if not isinstance(body, dict) or body.get("_type") != STATEMENT_TYPE:
        raise IntegrityError(f"{source}: the payload is not an in-toto Statement v1")
    raw_subjects = body.get("subject")
    if not isinstance(raw_subjects, list) or not raw_subjects:
        raise IntegrityError(f"{source}: the statement has no subject")
    subjects: list[tuple[str, str | None]] = []
    for raw in raw_subjects:
        if not isinstance(raw, dict):
            raise IntegrityError(f"{source}: a statement subject is not an object")
        digest = raw.get("digest")
        sha = digest.get("sha256") if isinstance(digest, dict) else None
        subjects.append((str(raw.get("name", "")), sha if isinstance(sha, str) else None))
    predicate_type = body.get("predicateType")
    predicate = body.get("predicate", {})
    if not isinstance(predicate_type, str) or not isinstance(predicate, dict):
        raise IntegrityError(f"{source}: the statement's predicateType or predicate is malformed")
    return Statement(tuple(subjects), predicate_type, predicate)


def _b64decode(value: Any, where: str) -> bytes:
    # DSSE allows standard or URL-safe base64, with or without padding.
    if not isinstance(value, str):
        raise IntegrityError(f"{where} is missing or not a string")
    text = value.replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise IntegrityError(f"{where} is not valid base64") from None
