"""Ed25519 keys in the forms other supply-chain tools read.

Private keys are PKCS#8 PEM files (mode 0600), unencrypted or encrypted with a passphrase
(`BestAvailableEncryption`); an encrypted key is opened with the passphrase in the file
`$COMPRESSGATE_PASSPHRASE_FILE` names. Public keys are the securesystemslib JSON form
`{keytype: ed25519, scheme: ed25519, keyval: {public: <hex>}}`, and a key's id is the sha256 of
that object's canonical JSON, so securesystemslib and in-toto compute the same id.
"""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compressgate.registry.kernel.digests import canonical_json, sha256_bytes
from compressgate.registry.kernel.errors import ManifestError
from compressgate.registry.kernel.files import read_input, write_atomic

# cryptography is imported where a key is used, not with this module: a command that checks no
# signature (`alias resolve` in the unsigned regime, `alias history`) starts about 20 ms sooner.
if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

KEYTYPE = "ed25519"
SCHEME = "ed25519"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
OWNER_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$")
# The file whose first line is the passphrase of encrypted private keys.
PASSPHRASE_ENV = "COMPRESSGATE_PASSPHRASE_FILE"


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
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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
        from cryptography.hazmat.primitives import serialization

        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        return PublicKey(raw.hex())

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data)

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        """PKCS#8 PEM; encrypted with `passphrase` (the best encryption cryptography offers)."""
        from cryptography.hazmat.primitives import serialization

        encryption: serialization.KeySerializationEncryption = (
            serialization.NoEncryption()
            if passphrase is None
            else serialization.BestAvailableEncryption(passphrase)
        )
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption
        )

    @classmethod
    def generate(cls) -> PrivateKey:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return cls(Ed25519PrivateKey.generate())

    def __repr__(self) -> str:  # never show key material, even in a traceback
        return f"PrivateKey(keyid={self.public.keyid[:12]}…)"


def public_key_json(key: PublicKey) -> bytes:
    """The `NAME.pub.json` file: the securesystemslib form plus its keyid."""
    return (json.dumps({"keyid": key.keyid, **key.to_dict()}, indent=2) + "\n").encode()


def private_key_path(owner: str, out_dir: Path) -> Path:
    """`out_dir/OWNER.key`, once OWNER is a valid owner name (exit 2 otherwise)."""
    if not OWNER_NAME.match(owner):
        raise ManifestError(
            f"owner name {owner!r} must be lowercase letters, digits and '-' (at most 64)"
        )
    return out_dir / f"{owner}.key"


def generate_keypair(
    owner: str, out_dir: Path, *, passphrase: bytes | None = None
) -> tuple[Path, Path, PublicKey]:
    """Write `out_dir/OWNER.key` (0600; encrypted with `passphrase` if given) and
    `out_dir/OWNER.pub.json`; never overwrite either, nor write through a symbolic link."""
    private_path = private_key_path(owner, out_dir)
    public_path = out_dir / f"{owner}.pub.json"
    for path in (private_path, public_path):
        if path.is_symlink():
            raise ManifestError(
                f"{path} is a symbolic link: keys are written only as new files, never through one"
            )
        if path.exists():
            raise ManifestError(
                f"{path} already exists", hint="keys are never overwritten; choose another --out"
            )
    if out_dir.is_symlink() and not out_dir.exists():
        raise ManifestError(
            f"{out_dir} is a symbolic link to {out_dir.readlink()}, which does not exist"
        )
    if not out_dir.exists():
        try:
            out_dir.mkdir(mode=0o700, parents=True)  # a new folder of keys: its owner's alone
        except OSError as exc:  # a parent that is a file or a dangling link, no permission, …
            raise ManifestError(
                f"cannot make the folder {out_dir} ({exc.strerror or exc}: {exc.filename})"
            ) from None
    key = PrivateKey.generate()
    try:
        # A temporary file made with O_CREAT | O_EXCL | O_NOFOLLOW and mode 0600 (whatever the
        # umask), then hard-linked into place: link() never follows nor replaces what is there.
        write_atomic(private_path, key.to_pem(passphrase), mode=0o600, overwrite=False)
    except FileExistsError as exc:  # another writer, a symbolic link made since the check
        raise ManifestError(f"{exc.filename2 or private_path} already exists") from None
    except OSError as exc:
        raise ManifestError(f"cannot write the key to {out_dir} ({exc.strerror or exc})") from None
    try:
        write_atomic(public_path, public_key_json(key.public), overwrite=False)
    except BaseException as exc:
        private_path.unlink()
        if isinstance(exc, FileExistsError):
            raise ManifestError(f"{public_path} already exists") from None
        if isinstance(exc, OSError):
            raise ManifestError(f"cannot write {public_path} ({exc.strerror or exc})") from None
        raise
    return private_path, public_path, key.public


def read_passphrase(path: Path) -> bytes:
    """The first line of `path`, without its line end: a passphrase. A file that is missing,
    unreadable, empty or readable by its group or others is refused (exit 2)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ManifestError(
            f"passphrase file {path}: cannot read it ({exc.strerror or exc})"
        ) from None
    passphrase = data.split(b"\n", 1)[0].removesuffix(b"\r")
    if not passphrase:
        raise ManifestError(f"passphrase file {path}: its first line is empty")
    _private_enough(path, "the passphrase file", "opens the keys it encrypts")
    return passphrase


def _passphrase_from_env() -> bytes | None:
    name = os.environ.get(PASSPHRASE_ENV)
    return read_passphrase(Path(name)) if name else None


_GIT_LOCATION = frozenset(
    {"GIT_DIR", "GIT_WORK_TREE", "GIT_COMMON_DIR", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY"}
)


def unignored_in_git(path: Path) -> Path | None:
    """The root of the git work tree that holds `path` and does not ignore it, else None (also
    where git is not installed or cannot tell). `path` need not exist yet."""
    base = path.absolute().parent
    while not base.is_dir() and base != base.parent:
        base = base.parent
    relative = os.path.relpath(path.absolute(), base)
    # The folder decides, not a repository a hook or a caller pinned with $GIT_DIR and the like.
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION}

    def git(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(
                ["git", *args],
                cwd=base,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError):
            return None

    inside = git("rev-parse", "--is-inside-work-tree", "--show-toplevel")
    if inside is None or inside.returncode != 0:
        return None
    lines = inside.stdout.splitlines()
    if not lines or lines[0] != "true":
        return None
    ignored = git("check-ignore", "-q", "--", relative)
    if ignored is None or ignored.returncode != 1:  # 0: ignored; 128: git cannot tell
        return None
    return Path(lines[1]) if len(lines) > 1 else base


def refuse_unignored_in_git(path: Path) -> None:
    """Refuse (exit 2) to write the private key `path` where `git add` would pick it up."""
    root = unignored_in_git(path)
    if root is not None:
        raise ManifestError(
            f"{path} is inside the git work tree {root}, which does not ignore it: add it to "
            ".gitignore, or pass --allow-in-git"
        )


def load_private_key(path: Path, *, passphrase: bytes | None = None) -> PrivateKey:
    """Read a PKCS#8 PEM Ed25519 private key. An encrypted one is opened with `passphrase`, else
    with the passphrase in the file `$COMPRESSGATE_PASSPHRASE_FILE` names."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    data = read_input(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        key = _decrypt(path, data, passphrase)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ManifestError(
            f"{path}: not a PEM private key ({exc})",
            hint="use a key written by `compressgate keys generate`",
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ManifestError(f"{path}: not an Ed25519 key ({type(key).__name__})")
    _private_enough(path)
    return PrivateKey(key)


def _decrypt(path: Path, data: bytes, passphrase: bytes | None) -> PrivateKeyTypes:
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization

    if passphrase is None:
        passphrase = _passphrase_from_env()
    if passphrase is None:
        raise ManifestError(
            f"{path} is encrypted: set {PASSPHRASE_ENV}=FILE, a file whose first line is its "
            "passphrase"
        )
    try:
        return serialization.load_pem_private_key(data, password=passphrase)
    except ValueError:
        raise ManifestError(f"wrong passphrase for {path}") from None
    except (TypeError, UnsupportedAlgorithm) as exc:
        raise ManifestError(f"{path}: cannot decrypt the private key ({exc})") from None


def _private_enough(
    path: Path, what: str = "the private key", risk: str = "signs as its owner"
) -> None:
    """A private key file (or a passphrase file) that its group or others can read is refused
    (exit 2), as ssh does: whoever else reads it can sign as its owner."""
    if os.name != "posix":
        return
    try:
        status = path.stat()
    except OSError:
        return  # read already: a pipe or a file gone since
    if stat.S_ISREG(status.st_mode) and status.st_mode & 0o077:
        raise ManifestError(
            f"{path}: {what} is readable by others (mode "
            f"{stat.S_IMODE(status.st_mode):04o}): anyone who reads it {risk}",
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
