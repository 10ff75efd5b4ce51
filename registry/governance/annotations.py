"""Tags and descriptions of runs and variants: validated, signed under a policy, recorded as
events (never edited in place), and checked again by `audit verify`.

    predicateType: https://compressgate.dev/annotation/v1
    subject: [{name: <run id or variant id>, digest: {sha256: <the run's recipe, or the
               variant's artifact>}}]
    predicate: {subject_kind: run | variant, kind: tag | description, key, value (null: removed
                or cleared), owner, catalog_head: {size, sha256}, policy: {version, sha256},
                signed_at}

Under a catalog's trust policy an annotation counts when a key of an owner of the policy in
force signed it (any owner, whatever their roles: a tag states what its owner says of a run or
a variant and decides nothing; gates, sign-offs and aliases never read tags), every bound field
matches the row, and the chain head it names is still in the chain. Under the unsigned regime
(no policy) it is recorded without a signature, by `--actor` (or $COMPRESSGATE_ACTOR, or the
login name), as alias moves are.

A tag's key is a letter or digit, then letters, digits, '.', '_' or '-', at most 64 characters;
a value at most 256 characters, a description at most 4,096; neither may hold a control
character (a line break, an escape) or a bidirectional override.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel

from compressgate.registry.catalog.annotations import TAG_KEY, TAG_KEY_RULE
from compressgate.registry.catalog.chain import default_actor, now
from compressgate.registry.catalog.records import AnnotationRecord
from compressgate.registry.governance.release import binding_mismatches
from compressgate.registry.kernel.dsse import (
    INTOTO_PAYLOAD_TYPE,
    Envelope,
    parse_statement,
    sign,
    statement,
    verified_keys,
)
from compressgate.registry.kernel.errors import IntegrityError, ManifestError

if TYPE_CHECKING:
    from compressgate.recipes.trust import Trust
    from compressgate.registry.catalog.repository import Catalog
    from compressgate.registry.governance.policy import InForce, PolicyChain
    from compressgate.registry.kernel.keys import PrivateKey

ANNOTATION_PREDICATE_TYPE = "https://compressgate.dev/annotation/v1"
TAG_VALUE_MAX = 256
DESCRIPTION_MAX = 4096
# C0 and C1 controls, DEL, the Unicode line separators and the bidirectional marks, overrides
# and isolates: what would steer a terminal or break a line where the text is shown.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Change:
    """A tag set (`value`) or removed (None), or a description set or cleared."""

    kind: Literal["tag", "description"]
    key: str  # '' for a description
    value: str | None

    @property
    def label(self) -> str:
        return "description" if self.kind == "description" else f"tag '{self.key}'"


@dataclass(frozen=True)
class Subject:
    kind: Literal["run", "variant"]
    id: str
    digest: str  # the run's recipe sha256, or the variant's artifact sha256


@dataclass(frozen=True)
class Annotated:
    owner: str
    keyid: str
    head_size: int
    head_sha256: str


class AnnotateResult(BaseModel):
    """What `tag` and `describe` recorded, and the subject's tags and description now."""

    subject_kind: str
    subject_id: str
    recorded: list[AnnotationRecord]
    unchanged: list[str]  # the changes asked that the subject already had
    tags: dict[str, str]
    description: str | None
    policy_version: int | None  # None: the unsigned regime


# --- input ---------------------------------------------------------------------------------------


def _check_value(value: str, where: str, limit: int) -> str:
    if value == "":
        raise ManifestError(
            f"{where}: the value is empty",
            hint="give text; `--remove KEY` removes a tag, `describe --clear` a description",
        )
    if len(value) > limit:
        raise ManifestError(
            f"{where}: the value is {len(value)} characters long, more than {limit}",
            hint=f"shorten it to at most {limit} characters",
        )
    bad = _CONTROL.search(value)
    if bad is not None:
        shown = ascii(bad.group())[1:-1]
        raise ManifestError(
            f"{where}: the value holds a control character ({shown} at {bad.start()})",
            hint="give printable text on one line, without escapes or bidirectional overrides",
        )
    return value


def _check_key(key: str, where: str) -> str:
    if not TAG_KEY.fullmatch(key):
        raise ManifestError(
            f"{where}: {key!r} is not a tag key", hint=f"a tag key is {TAG_KEY_RULE} characters"
        )
    return key


def tag_changes(assignments: Sequence[str], removals: Sequence[str]) -> list[Change]:
    """`KEY=VALUE` tags to set and keys to remove, each checked (exit 2 naming the first that
    is not valid, and how to fix it)."""
    changes: list[Change] = []
    for given in assignments:
        key, equals, value = given.partition("=")
        if not equals:
            raise ManifestError(
                f"tag {given!r}: not KEY=VALUE", hint="e.g. team=vision; --remove KEY removes one"
            )
        _check_key(key, f"tag {given!r}")
        changes.append(Change("tag", key, _check_value(value, f"tag '{key}'", TAG_VALUE_MAX)))
    for key in removals:
        changes.append(Change("tag", _check_key(key, f"--remove {key!r}"), None))
    keys = [c.key for c in changes]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ManifestError(
            f"tag {twice[0]!r} is given twice; nothing recorded",
            hint="set or remove each key once per command",
        )
    if not changes:
        raise ManifestError("no tag given", hint="give KEY=VALUE... and/or --remove KEY")
    return changes


def description_change(text: str | None) -> Change:
    """A description to set (`text`), or to clear (None)."""
    if text is None:
        return Change("description", "", None)
    return Change("description", "", _check_value(text, "description", DESCRIPTION_MAX))


def resolve_subject(catalog: Catalog, ref: str) -> Subject:
    """A run (its id) or a variant (RUN/SEED/STAGE or an artifact sha256 prefix); exit 4 for
    one the catalog does not hold."""
    if ref.startswith("run-") and "/" not in ref:
        info = catalog.run_info(ref)
        return Subject("run", info.run_id, info.recipe_sha256)
    variant = catalog.variant(ref)
    return Subject("variant", variant.id, variant.artifact_sha256)


# --- signing and checking ----------------------------------------------------------------------


def annotation_envelope(
    subject: Subject,
    change: Change,
    key: PrivateKey,
    *,
    owner: str,
    head: tuple[int, str],
    policy: tuple[int, str],
) -> Envelope:
    predicate = {
        "subject_kind": subject.kind,
        "kind": change.kind,
        "key": change.key,
        "value": change.value,
        "owner": owner,
        "catalog_head": {"size": head[0], "sha256": head[1]},
        "policy": {"version": policy[0], "sha256": policy[1]},
        "signed_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    payload = statement([(subject.id, subject.digest)], ANNOTATION_PREDICATE_TYPE, predicate)
    return sign(payload, INTOTO_PAYLOAD_TYPE, [key])


def check_annotation(
    envelope: Envelope,
    *,
    trust: Trust,
    policy_version: int,
    subject: Subject,
    change: Change,
    source: str,
) -> Annotated:
    """The owner, key and chain head an annotation envelope binds, once a key of an owner of
    the policy `trust` (version `policy_version`) signed exactly this change of this subject;
    exit 3 naming what does not hold."""
    if envelope.payload_type != INTOTO_PAYLOAD_TYPE:
        raise IntegrityError(f"{source}: payloadType is {envelope.payload_type!r}, not in-toto")
    stated = parse_statement(envelope.payload, source=source)
    if stated.predicate_type != ANNOTATION_PREDICATE_TYPE:
        raise IntegrityError(
            f"{source}: the statement is a {stated.predicate_type!r}, not an annotation"
        )
    signers = verified_keys(envelope, trust.all_keys())
    if not signers:
        raise IntegrityError(
            f"{source}: no signature verifies with a key of an owner in policy v{policy_version}",
            hint="an owner of the policy in force signs it with their key (--key)",
        )
    owner = trust.owner_of(signers[0])
    expected = {
        "subject_kind": subject.kind,
        "kind": change.kind,
        "key": change.key,
        "value": change.value,
        "owner": owner,
    }
    mismatches, head = binding_mismatches(
        stated,
        expected,
        (subject.id, subject.digest),
        policy_version,
        whose="the record's",
        what=f"{subject.kind} {subject.id} by its digest",
    )
    if mismatches:
        raise IntegrityError(
            f"{source}: the signed statement is not this {change.label}: " + "; ".join(mismatches)
        )
    assert head is not None and owner is not None
    return Annotated(owner, signers[0].keyid, *head)


def check_recorded(
    row: AnnotationRecord, policy: InForce | None, digest: str | None, *, hint: str
) -> Annotated | None:
    """A recorded annotation against `policy`, the version in force when it was recorded, as
    `audit verify` checks it (exit 3 with `hint`); None for one of the unsigned regime."""
    what = f"annotation {row.seq} ({row.subject_kind} {row.subject_id}, {_label(row)})"
    if digest is None:
        raise IntegrityError(
            f"{what} names a {row.subject_kind} the catalog does not hold", hint=hint
        )
    signed = (row.envelope, row.keyid, row.policy_version)
    if policy is None:
        if signed != (None, None, None):
            raise IntegrityError(f"{what}: a signature recorded before any policy", hint=hint)
        return None
    if row.envelope is None:
        raise IntegrityError(
            f"{what} is unsigned, though policy v{policy.version} was in force", hint=hint
        )
    if row.policy_version != policy.version:
        raise IntegrityError(
            f"{what} names policy v{row.policy_version}, v{policy.version} was in force",
            hint=hint,
        )
    source = f"the signature of {what}"
    try:
        done = check_annotation(
            Envelope.from_json(row.envelope.encode("utf-8"), source=source),
            trust=policy.trust,
            policy_version=policy.version,
            subject=Subject(row.subject_kind, row.subject_id, digest),  # type: ignore[arg-type]
            change=Change(row.kind, row.key, row.value),  # type: ignore[arg-type]
            source=source,
        )
    except IntegrityError as exc:
        raise IntegrityError(str(exc), hint=hint) from None
    if (done.owner, done.keyid) != (row.actor, row.keyid):
        raise IntegrityError(
            f"{what}: recorded as by {row.actor!r} with key {str(row.keyid)[:16]}…, its "
            f"signature is {done.owner!r}'s with key {done.keyid[:16]}…",
            hint=hint,
        )
    if done.head_size >= row.seq:
        raise IntegrityError(f"{source} names a head after itself", hint=hint)
    return done


def _label(row: AnnotationRecord) -> str:
    return "description" if row.kind == "description" else f"tag '{row.key}'"


# --- recording ---------------------------------------------------------------------------------


def annotate(
    catalog: Catalog,
    chain: PolicyChain,
    ref: str,
    changes: Sequence[Change],
    *,
    key: PrivateKey | None = None,
    actor: str | None = None,
) -> AnnotateResult:
    """Record `changes` of the run or variant `ref`, all in one transaction or none: under the
    catalog's policy each signed with `key` (an owner's: exit 3 without one or with another
    key), under the unsigned regime by `actor`. A change the subject already has is left out;
    removing a tag (or clearing a description) that is not there is exit 2."""
    catalog._annotations_writable()
    policy = chain.current
    owner = _signer(policy, key, actor)
    subject = resolve_subject(catalog, ref)
    present = catalog.annotations(subject.kind, subject.id)
    wanted, unchanged = [], []
    for change in changes:
        held = present.description if change.kind == "description" else present.tags.get(change.key)
        if held == change.value:
            if change.value is None:
                raise ManifestError(
                    f"{subject.kind} {subject.id} has no {change.label}: nothing to "
                    f"{'clear' if change.kind == 'description' else 'remove'}; nothing recorded",
                    hint=f"`compressgate catalog show {subject.id}` shows its tags",
                )
            unchanged.append(change.label)
        else:
            wanted.append(change)
    rows = []
    at = now()
    for change in wanted:
        row: dict[str, object] = {
            "subject_kind": subject.kind,
            "subject_id": subject.id,
            "kind": change.kind,
            "key": change.key,
            "value": change.value,
            "actor": owner or actor or default_actor(),
            "recorded_at": at,
            "keyid": None,
            "policy_version": None,
            "envelope": None,
        }
        if policy is not None:
            assert key is not None and owner is not None
            head = catalog.head()
            envelope = annotation_envelope(
                subject,
                change,
                key,
                owner=owner,
                head=(head.size, head.sha256),
                policy=(policy.version, policy.sha256),
            )
            done = check_annotation(
                envelope,
                trust=policy.trust,
                policy_version=policy.version,
                subject=subject,
                change=change,
                source=f"the {change.label} signed with key {key.public.keyid[:16]}…",
            )
            row |= {
                "keyid": done.keyid,
                "policy_version": policy.version,
                "envelope": envelope.to_json().decode("utf-8"),
            }
        rows.append(row)
    recorded = catalog.record_annotations(rows) if rows else []
    after = catalog.annotations(subject.kind, subject.id)
    return AnnotateResult(
        subject_kind=subject.kind,
        subject_id=subject.id,
        recorded=recorded,
        unchanged=unchanged,
        tags=after.tags,
        description=after.description,
        policy_version=None if policy is None else policy.version,
    )


def _signer(policy: InForce | None, key: PrivateKey | None, actor: str | None) -> str | None:
    """The owner who signs under `policy` (None: the unsigned regime, which takes no key)."""
    if policy is None:
        if key is not None:
            raise ManifestError(
                "--key: the catalog has no trust policy, so tags and descriptions are recorded "
                "unsigned (the unsigned regime); nothing recorded",
                hint="leave out --key; `compressgate trust init` adopts a policy",
            )
        return None
    if key is None:
        raise IntegrityError(
            f"an unsigned tag or description is refused: the catalog's policy v{policy.version} "
            "is in force; nothing recorded",
            hint="sign it with your key: --key KEY (any owner in the policy)",
        )
    owner = policy.trust.owner_of(key.public)
    if owner is None:
        raise IntegrityError(
            f"key {key.public.keyid[:16]}… is not in policy v{policy.version}: only the "
            "policy's owners tag and describe; nothing recorded",
            hint="sign with your own key, which the policy's root owners add",
        )
    if actor is not None and actor != owner:
        raise ManifestError(
            f"--actor {actor!r} is not taken under a trust policy: the actor is the owner of "
            f"the key that signs ({owner!r})",
            hint="leave out --actor (and $COMPRESSGATE_ACTOR)",
        )
    return owner
