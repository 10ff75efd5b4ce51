"""Signed versions of the trust policy, as TUF signs its root metadata.

A policy version is a trust document (`trust.yaml`, exact bytes) and a DSSE envelope beside it
(`trust.yaml.dsse.json`) whose payload is an in-toto Statement v1:

    subject: [{name: trust.yaml, digest: {sha256: <the document's bytes>}}]
    predicateType: https://compressgate.dev/trust-policy/v1
    predicate: {version: N, previous_sha256: <version N-1's sha256, or null for N = 1>}

Version 1 counts when `root.threshold` distinct owners holding the `root` role in it signed it.
Version N > 1 counts when it names version N-1 as its predecessor and is signed by the threshold
of version N-1's root role (the people trusted until now agree) and by the threshold of its own
(the new root keys are held). Naming the predecessor's digest means a signed proposal cannot be
replayed onto another history. Nothing here reads a catalog: `registry.governance.policy`
anchors the versions in one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from compressgate.recipes.trust import Trust, parse_trust
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from compressgate.registry.kernel.files import read_input, write_atomic
from compressgate.registry.kernel.keys import PrivateKey, PublicKey

POLICY_PREDICATE_TYPE = "https://compressgate.dev/trust-policy/v1"


def envelope_path(policy_path: Path) -> Path:
    return policy_path.with_name(policy_path.name + ".dsse.json")


@dataclass(frozen=True)
class PolicyVersion:
    """A policy version whose signatures count: its document, envelope and root signers."""

    version: int
    sha256: str
    content: bytes
    trust: Trust
    envelope: dsse.Envelope
    signers: tuple[str, ...]  # the root owners whose signatures counted


def policy_statement(name: str, content: bytes, version: int, previous: str | None) -> bytes:
    return dsse.statement(
        [(name, sha256_bytes(content))],
        POLICY_PREDICATE_TYPE,
        {"version": version, "previous_sha256": previous},
    )


def read_policy_file(path: Path) -> bytes:
    return read_input(path, "policy")


def parse_policy(content: bytes, source: str) -> Trust:
    """A trust document that can be a policy: valid, and declaring its root role."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{source}: not a UTF-8 text file ({exc})") from None
    trust = parse_trust(text, source)
    if trust.root is None:
        raise ManifestError(
            f"{source}: a policy declares its root role",
            hint="add `root: {threshold: 2}` and give two owners the 'root' role "
            "(`compressgate trust add --role root`)",
        )
    return trust


def sign_policy(path: Path, key: PrivateKey, *, version: int, previous: str | None) -> Path:
    """Sign the trust file at `path` as policy `version` after `previous`: write its envelope,
    or co-sign an existing one over the same statement."""
    content = read_policy_file(path)
    parse_policy(content, str(path))
    payload = policy_statement(path.name, content, version, previous)
    target = envelope_path(path)
    envelope = None
    if target.is_file():
        try:
            existing = dsse.Envelope.from_json(target.read_bytes(), source=str(target))
        except IntegrityError:
            existing = None  # a broken envelope is replaced
        if existing is not None and existing.payload == payload:
            envelope = dsse.add_signature(existing, key)
    if envelope is None:
        envelope = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [key])
    write_atomic(target, envelope.to_json())
    return target


def proposed_version(envelope: dsse.Envelope, source: str) -> tuple[int, str | None]:
    """The version and predecessor a policy envelope states (its signatures not checked)."""
    stated = dsse.parse_statement(envelope.payload, source=source)
    if stated.predicate_type != POLICY_PREDICATE_TYPE:
        raise IntegrityError(
            f"{source}: the statement is a {stated.predicate_type!r}, not a policy"
        )
    version = stated.predicate.get("version")
    previous = stated.predicate.get("previous_sha256")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise IntegrityError(f"{source}: the policy's version is not a positive integer")
    if previous is not None and not isinstance(previous, str):
        raise IntegrityError(f"{source}: previous_sha256 is not a digest")
    return version, previous


def check_policy(
    content: bytes,
    envelope: dsse.Envelope,
    *,
    source: str,
    previous: PolicyVersion | None,
) -> PolicyVersion:
    """The policy version `envelope` signs over `content`, once it counts after `previous`
    (None: it must be version 1); IntegrityError (exit 3) says why it does not."""
    trust = parse_policy(content, source)
    if envelope.payload_type != dsse.INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(f"{source}: payloadType is {envelope.payload_type!r}, not in-toto")
    version, stated_previous = proposed_version(envelope, source)
    stated = dsse.parse_statement(envelope.payload, source=source)
    digest = sha256_bytes(content)
    if digest not in [sha for _, sha in stated.subjects]:
        raise IntegrityError(
            f"{source}: the policy changed since it was signed: its sha256 is {digest}, the "
            f"signatures cover {', '.join(str(sha) for _, sha in stated.subjects)}"
        )
    expected = 1 if previous is None else previous.version + 1
    if version != expected:
        raise IntegrityError(
            f"{source}: signed as policy version {version}, but the next version is {expected}",
            hint="sign it again for the version in force (`compressgate trust sign`)",
        )
    expected_previous = None if previous is None else previous.sha256
    if stated_previous != expected_previous:
        raise IntegrityError(
            f"{source}: signed to follow policy {str(stated_previous)[:16]}…, but the policy "
            f"in force is {str(expected_previous)[:16]}…",
            hint="a signed proposal follows one version only; sign it again",
        )
    signers = _root_signers(envelope, trust, f"{source} (its own root role)")
    if previous is not None:
        signers = _root_signers(envelope, previous.trust, f"version {previous.version}'s root role")
        _root_signers(envelope, trust, f"the root role of version {version}")
    return PolicyVersion(version, digest, content, trust, envelope, signers)


def check_on_its_own(content: bytes, envelope: dsse.Envelope, *, source: str) -> PolicyVersion:
    """A policy version read from a file, not a catalog (the base branch's, for `ci --base`):
    its subject and its own root threshold checked, its version taken as it states it (the
    versions before it are not at hand)."""
    trust = parse_policy(content, source)
    version, _ = proposed_version(envelope, source)
    stated = dsse.parse_statement(envelope.payload, source=source)
    digest = sha256_bytes(content)
    if digest not in [sha for _, sha in stated.subjects]:
        raise IntegrityError(f"{source}: the policy changed since it was signed")
    signers = _root_signers(envelope, trust, f"{source} (its own root role)")
    return PolicyVersion(version, digest, content, trust, envelope, signers)


def _root_signers(envelope: dsse.Envelope, trust: Trust, role: str) -> tuple[str, ...]:
    """The distinct root owners of `trust` whose keys signed; IntegrityError if fewer than its
    threshold (two keys of one owner count once)."""
    assert trust.root is not None
    roots: dict[PublicKey, str] = trust.root_owners()
    owners = tuple(sorted({roots[key] for key in dsse.verified_keys(envelope, roots)}))
    if len(owners) < trust.root.threshold:
        raise IntegrityError(
            f"policy not signed by the threshold of {role}: {len(owners)} of "
            f"{trust.root.threshold} root owner(s) signed ({', '.join(owners) or 'none'})",
            hint="each root owner signs with `compressgate trust sign FILE --key KEY`",
        )
    return owners
