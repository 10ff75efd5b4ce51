"""The trust policy anchored in the catalog: its versions, each signed by the root threshold of
the version before it, recorded as catalog events; and which version was in force when.

`compressgate trust init` records version 1 (signed by the threshold of its own root role); a
later version is a trust file signed with `trust sign` by the root owners and recorded with
`trust apply`. From the first version on, every check (recipe signatures, sign-offs, releases,
checkpoints) uses the version in force in the catalog, never a file the caller names: a trust
file on disk is a proposal. Every version is verified again whenever the chain is loaded, so a
version written around compressgate (raw SQL, a recomputed hash chain) is refused, not obeyed.

A catalog without a policy runs under the *unsigned regime* of earlier releases: the trust file
beside the recipe (or `--trust`); what it records is marked so (`regime`).
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel

from compressgate.registry.kernel.errors import (
    CompressgateError,
    IntegrityError,
    NotFoundError,
)

# The policy documents' parsing and signatures (the manifest's models, YAML, cryptography) are
# imported where a function needs them, not here: a read command on a catalog without a policy
# loads an empty chain and nothing else (start-up, docs/benchmarks.md).
if TYPE_CHECKING:
    from compressgate.recipes.policy import PolicyVersion
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.kernel.keys import PrivateKey


@dataclass(frozen=True)
class InForce:
    """A policy version as recorded: verified, with the event that recorded it."""

    policy: PolicyVersion
    seq: int

    @property
    def trust(self) -> Trust:
        return self.policy.trust

    @property
    def version(self) -> int:
        return self.policy.version

    @property
    def sha256(self) -> str:
        return self.policy.sha256


@dataclass(frozen=True)
class PolicyChain:
    """Every policy version of a catalog, each verified against the one before it."""

    versions: tuple[InForce, ...]

    @property
    def current(self) -> InForce | None:
        return self.versions[-1] if self.versions else None

    def at(self, seq: int) -> InForce | None:
        """The version in force when event `seq` was recorded (None: the unsigned regime)."""
        index = bisect_left([v.seq for v in self.versions], seq)
        return self.versions[index - 1] if index > 0 else None

    def version(self, number: int) -> InForce | None:
        return self.versions[number - 1] if 0 < number <= len(self.versions) else None


def load_chain(catalog: Catalog) -> PolicyChain:
    """The catalog's policy versions, each one's signatures checked against the root role of
    the one before it; exit 3 naming the first version that does not count."""
    versions: list[InForce] = []
    previous: PolicyVersion | None = None
    for record in catalog.policies():
        from compressgate.recipes.policy import check_policy
        from compressgate.registry.kernel import dsse

        source = f"policy version {record.version} in the catalog"
        try:
            envelope = dsse.Envelope.from_json(record.envelope.encode("utf-8"), source=source)
            checked = check_policy(
                record.content.encode("utf-8"), envelope, source=source, previous=previous
            )
        except CompressgateError as exc:
            raise IntegrityError(
                f"{source} does not verify: {exc}",
                hint="the policy was written around compressgate; audit the catalog "
                "(`compressgate audit verify`) and restore it from a backup",
            ) from None
        if checked.version != record.version or checked.sha256 != record.sha256:
            raise IntegrityError(f"{source}: its row does not state what its envelope signs")
        versions.append(InForce(checked, record.seq))
        previous = checked
    return PolicyChain(tuple(versions))


class PolicyResult(BaseModel):
    """What `trust init` and `trust apply` recorded."""

    version: int
    sha256: str
    signers: list[str]
    root_threshold: int
    seq: int
    file: str
    previous_version: int | None = None
    unsigned_runs: int = 0  # runs recorded before the first policy: the unsigned regime


class Change(BaseModel):
    what: str
    detail: str


class Proposal(BaseModel):
    """What `trust propose` shows: the version a trust file would become and what changes."""

    file: str
    sha256: str
    version: int
    previous_sha256: str | None
    changes: list[Change]
    signers_needed: list[str]  # the root owners of the version in force (or of the file)
    threshold: int
    signed_by: list[str]  # root owners whose signatures on the file's envelope verify
    ready: bool  # `trust apply` would record it


class PolicyShow(BaseModel):
    version: int | None
    sha256: str | None
    regime: Literal["policy", "unsigned"]
    root_threshold: int | None = None
    roots: list[str] = []
    owners: dict[str, list[str]] = {}
    modules: list[str] = []
    separation: bool | None = None
    aliases: dict[str, Any] = {}
    plugins: list[dict[str, Any]] = []
    signers: list[str] = []
    history: list[dict[str, Any]] = []


def next_version(chain: PolicyChain) -> tuple[int, str | None]:
    current = chain.current
    return (1, None) if current is None else (current.version + 1, current.sha256)


def sign(catalog: Catalog | None, path: Path, key: PrivateKey) -> tuple[Path, int]:
    """Sign the trust file at `path` as the next version of the catalog's policy (or, without
    a catalog, co-sign the version its envelope states)."""
    from compressgate.recipes.policy import envelope_path, proposed_version, sign_policy
    from compressgate.registry.kernel import dsse

    if catalog is not None:
        version, previous = next_version(load_chain(catalog))
    else:
        target = envelope_path(path)
        if not target.is_file():
            raise NotFoundError(
                f"{target} not found: without a catalog, only an envelope already started "
                "can be co-signed",
                hint="give --workspace (or --catalog) so the next version is known",
            )
        envelope = dsse.Envelope.from_json(target.read_bytes(), source=str(target))
        version, previous = proposed_version(envelope, str(target))
    return sign_policy(path, key, version=version, previous=previous), version


def apply(catalog: Catalog, path: Path, *, first: bool = False) -> PolicyResult:
    """Record the trust file at `path` as the next policy version, once its envelope counts
    against the version in force; nothing is written otherwise (exit 3)."""
    from compressgate.recipes.policy import check_policy, envelope_path, read_policy_file
    from compressgate.registry.kernel import dsse

    chain = load_chain(catalog)
    current = chain.current
    if first and current is not None:
        raise IntegrityError(
            f"the catalog's policy is already at version {current.version}; `trust init` "
            "starts a policy only once, and never replaces the one in force",
            hint="propose a change: `compressgate trust propose FILE`, `trust sign`, `trust apply`",
        )
    content = read_policy_file(path)
    target = envelope_path(path)
    raw = dsse.read_envelope_bytes(
        target, signed=path, hint=f"root owners sign it: `compressgate trust sign {path} --key KEY`"
    )
    envelope = dsse.Envelope.from_json(raw, source=str(target))
    checked = check_policy(
        content, envelope, source=str(target), previous=None if current is None else current.policy
    )
    record = catalog.record_policy(
        version=checked.version,
        sha256=checked.sha256,
        content=content.decode("utf-8"),
        envelope=raw.decode("utf-8"),
        signers=list(checked.signers),
    )
    assert checked.trust.root is not None
    return PolicyResult(
        version=checked.version,
        sha256=checked.sha256,
        signers=list(checked.signers),
        root_threshold=checked.trust.root.threshold,
        seq=record.seq,
        file=str(path),
        previous_version=None if current is None else current.version,
        unsigned_runs=catalog.count_runs() if current is None else 0,
    )


def init(catalog: Catalog, path: Path, keys: list[PrivateKey]) -> PolicyResult:
    """Sign the trust file at `path` as version 1 with each of `keys` (the root owners' keys;
    none: its envelope is signed already) and record it as the catalog's first policy."""
    from compressgate.recipes.policy import sign_policy

    if load_chain(catalog).current is not None:
        return apply(catalog, path, first=True)  # refused, with the reason
    for key in keys:
        sign_policy(path, key, version=1, previous=None)
    return apply(catalog, path, first=True)


def propose(catalog: Catalog, path: Path) -> Proposal:
    """The version the trust file at `path` would become, what it changes, and whose
    signatures `trust apply` needs."""
    from compressgate.recipes.policy import (
        check_policy,
        envelope_path,
        parse_policy,
        read_policy_file,
    )
    from compressgate.registry.kernel import dsse
    from compressgate.registry.kernel.digests import sha256_bytes

    chain = load_chain(catalog)
    content = read_policy_file(path)
    trust = parse_policy(content, str(path))
    version, previous = next_version(chain)
    current = chain.current
    judge = trust if current is None else current.trust
    assert judge.root is not None
    signed: list[str] = []
    target = envelope_path(path)
    ready = False
    if target.is_file():
        try:
            envelope = dsse.Envelope.from_json(target.read_bytes(), source=str(target))
            roots = judge.root_owners()
            signed = sorted({roots[k] for k in dsse.verified_keys(envelope, roots)})
            check_policy(
                content,
                envelope,
                source=str(target),
                previous=None if current is None else current.policy,
            )
            ready = True
        except CompressgateError:
            ready = False
    return Proposal(
        file=str(path),
        sha256=sha256_bytes(content),
        version=version,
        previous_sha256=previous,
        changes=_changes(None if current is None else current.trust, trust),
        signers_needed=sorted(set(judge.root_owners().values())),
        threshold=judge.root.threshold,
        signed_by=signed,
        ready=ready,
    )


def show(catalog: Catalog, version: int | None = None) -> PolicyShow:
    chain = load_chain(catalog)
    chosen = chain.current if version is None else chain.version(version)
    if version is not None and chosen is None:
        raise NotFoundError(f"the catalog has no policy version {version}")
    history = [
        {"version": v.version, "sha256": v.sha256, "signers": list(v.policy.signers), "seq": v.seq}
        for v in chain.versions
    ]
    if chosen is None:
        return PolicyShow(version=None, sha256=None, regime="unsigned")
    trust = chosen.trust
    assert trust.root is not None
    return PolicyShow(
        version=chosen.version,
        sha256=chosen.sha256,
        regime="policy",
        root_threshold=trust.root.threshold,
        roots=sorted(set(trust.root_owners().values())),
        owners={name: list(owner.roles) for name, owner in trust.owners.items()},
        modules=list(trust.modules),
        separation=trust.separation,
        aliases={
            name: trust.alias_rule(name).model_dump(mode="json")
            for name in sorted({*trust.aliases, "production"})
        },
        plugins=[rule.model_dump(mode="json", exclude_none=True) for rule in trust.plugins],
        signers=list(chosen.policy.signers),
        history=history,
    )


def materialize(root: Path, policy: InForce) -> Path:
    """The policy in force as a file under the workspace (`policy/v{N}.yaml`, its exact bytes
    from the catalog), for a run's worker process to load; rewritten whenever it differs."""
    from compressgate.registry.kernel.digests import sha256_bytes
    from compressgate.registry.kernel.files import write_atomic

    target = root / "policy" / f"v{policy.version}-{policy.sha256[:12]}.yaml"
    if not target.is_file() or sha256_bytes(target.read_bytes()) != policy.sha256:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, policy.policy.content)
    return target


def _changes(before: Trust | None, after: Trust) -> list[Change]:
    """What `after` changes relative to `before` (None: everything is new)."""
    out: list[Change] = []
    old = {} if before is None else before.owners
    for name in sorted({*old, *after.owners}):
        a, b = old.get(name), after.owners.get(name)
        if a is None and b is not None:
            out.append(Change(what="owner added", detail=f"{name}: {', '.join(b.roles)}"))
        elif b is None and a is not None:
            out.append(Change(what="owner removed", detail=name))
        elif a is not None and b is not None:
            if set(a.roles) != set(b.roles):
                out.append(
                    Change(
                        what="roles changed",
                        detail=f"{name}: {', '.join(a.roles)} -> {', '.join(b.roles)}",
                    )
                )
            ka = {k.public_key.keyid for k in a.keys}
            kb = {k.public_key.keyid for k in b.keys}
            for keyid in sorted(kb - ka):
                out.append(Change(what="key added", detail=f"{name}: {keyid[:16]}…"))
            for keyid in sorted(ka - kb):
                out.append(Change(what="key removed", detail=f"{name}: {keyid[:16]}…"))
    if before is None or before.modules != after.modules:
        out.append(Change(what="modules", detail=", ".join(after.modules)))
    if before is None or before.root != after.root:
        assert after.root is not None
        out.append(Change(what="root threshold", detail=str(after.root.threshold)))
    if before is None or before.separation != after.separation:
        out.append(Change(what="separation of duties", detail=str(after.separation).lower()))
    if (before.plugins if before is not None else ()) != after.plugins:  # third-party code
        out.append(
            Change(
                what="plug-ins allowed",
                detail="; ".join(
                    rule.pin() + (f" (code sha256 {rule.sha256})" if rule.sha256 else "")
                    for rule in after.plugins
                )
                or "none",
            )
        )
    if before is None or before.aliases != after.aliases:
        out.append(
            Change(
                what="alias rules",
                detail="; ".join(
                    f"{n}: {after.alias_rule(n).model_dump(mode='json')}" for n in after.aliases
                )
                or "defaults",
            )
        )
    return out
