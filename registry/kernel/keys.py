"""Ed25519 keys in the forms other supply-chain tools read.

Private keys are unencrypted PKCS#8 PEM files (mode 0600). Public keys are the securesystemslib
JSON form `{keytype: ed25519, scheme: ed25519, keyval: {public: <hex>}}`, and a key's id is the
sha256 of that object's canonical JSON, so securesystemslib and in-toto compute the same id.
"""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from compressgate.registry.kernel.digests import canonical_json, sha256_bytes
from compressgate.registry.kernel.errors import ManifestError
from compressgate.registry.kernel.files import read_input, write_atomic

KEYTYPE = "ed25519"
SCHEME = "ed25519"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
OWNER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key; `keyid` is derived from the key, never taken on trust."""

    public_hex: str

    def __post_init__(self) -> None:
        if not _HEX64.match(self.public_hex):
            raise ValueError("an ed25519 public key is 64 lowercase hex digits")

    def to_dict(self) -> dict[str, Any]:
        """The securesystemslib form (without keyid), the object the keyid hashes."""
        return {"keytype": KEYTYPE, "scheme": SCHEME, "keyval": {"public": self.public_hex}}

    @property
    def keyid(self) -> str:
        return sha256_bytes(canonical_json(self.to_dict()))

    def verify(self, signature: bytes, data: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(self.public_hex)).verify(
                signature, data
            )
        except InvalidSignature:
            return False
        return True

    @classmethod
    def from_dict(cls, data: Any, *, source: str) -> PublicKey:
        """Parse the securesystemslib form; a `keyid`, if present, must match the key."""
        if not isinstance(data, dict):
            raise ManifestError(f"{source}: a public key is a JSON object")
        if data.get("keytype") != KEYTYPE or data.get("scheme") != SCHEME:
            raise ManifestError(
                f"{source}: keytype and scheme must both be 'ed25519', "
                f"not {data.get('keytype')!r} / {data.get('scheme')!r}"
            )
        keyval = data.get("keyval")
        public = keyval.get("public") if isinstance(keyval, dict) else None
        if not isinstance(public, str) or not _HEX64.match(public):
            raise ManifestError(f"{source}: keyval.public must be 64 lowercase hex digits")
        key = cls(public)
        claimed = data.get("keyid")
        if claimed is not None and claimed != key.keyid:
            raise ManifestError(
                f"{source}: keyid {claimed!r} does not match the key (it is {key.keyid})"
            )
        return key


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key."""

    key: Ed25519PrivateKey

    @property
    def public(self) -> PublicKey:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw.hex())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def to_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @classmethod
    def generate(cls) -> PrivateKey:
        return cls(Ed25519PrivateKey.generate())

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"PrivateKey(keyid={self.public.keyid[:12]}…)"


def public_key_json(key: PublicKey) -> bytes:
    """The `NAME.pub.json` file: the securesystemslib form plus its keyid."""
    return (json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=2) + "\n").encode()


def generate_keypair(owner: str, out_dir: Path) -> tuple[Path, Path, PublicKey]:
    """Write `out_dir/OWNER.key` (0600) and `out_dir/OWNER.pub.json`; never overwrite either."""
    if not OWNER_NAME.match(owner):
        raise ManifestError(
            f"owner name {owner!r} must be lowercase letters, digits and '-' (at most 64)"
        )
    private_path = out_dir / f"{owner}.key"
    public_path = out_dir / f"{owner}.pub.json"
    for path in (private_path, public_path):
        if path.exists():
            raise ManifestError(
                f"{path} already exists", hint="keys are never overwritten; choose another --out"
            )
    if not out_dir.exists():
        out_dir.mkdir(mode=0o700, parents=True)  # a new folder of keys: its owner's alone
    key = PrivateKey.generate()
    write_atomic(private_path, key.to_pem(), mode=0o600, overwrite=False)
    try:
        write_atomic(public_path, public_key_json(key.public), overwrite=False)
    except BaseException:
        private_path.unlink()
        raise
    return private_path, public_path, key.public


def load_private_key(path: Path) -> PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key."""
    data = read_input(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise ManifestError(
            f"{path}: not an unencrypted PEM private key ({exc})",
            hint="use a key written by `compressgate keys generate`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    _private_enough(path)
    return PrivateKey(key)


def _private_enough(path: Path) -> None:
    """A private key file that its group or others can read is refused (exit 2), as ssh does:
    whoever else reads it can sign as its owner."""
    if os.name != "posix":
        return
    try:
        status = path.stat()
    except OSError:
        return  # read already: a pipe or a file gone since
    if stat.S_ISREG(status.st_mode) and status.st_mode & 0o077:
        raise ManifestError(
            f"{path}: the private key is readable by others (mode "
            f"{stat.S_IMODE(status.st_mode):04o}): anyone who reads it signs as its owner",
            hint=f"chmod 600 {path}",
        )


def load_public_key(path: Path) -> PublicKey:
    """Read a public key in the securesystemslib JSON form."""
    data = read_input(path, "public key")
    try:
        parsed = json.loads(data)
    except RecursionError:
        raise ManifestError(f"{path}: not a public key: JSON nested too deeply") from None
    except ValueError as exc:  # invalid JSON or UTF-8, or an integer too long to read
        raise ManifestError(f"{path}: not JSON ({exc})") from None
    return PublicKey.from_dict(parsed, source=str(path))
