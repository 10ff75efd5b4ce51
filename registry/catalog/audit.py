"""`compressgate audit`: recompute the catalog's hash chain, rows and artifacts; sign checkpoints;
check report files against the reports the catalog recorded.

A checkpoint is a DSSE envelope over `{tree_size, head_sha256}`: the chain hash of event
`tree_size`. Published outside the database (a release note, a ticket, another system), it lets
anyone detect a history rewritten even by someone with full database access, who can recompute
every hash but cannot make event `tree_size` hash to the published value again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from compressgate.recipes.trust import Trust
from compressgate.registry.catalog.repository import (
    AuditReport,
    Catalog,
    Head,
    RecordedReport,
    now,
    safe_url,
)
from compressgate.registry.catalog.store import ArtifactStore
from compressgate.registry.kernel import dsse
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import IntegrityError, ManifestError, NotFoundError
from compressgate.registry.kernel.keys import PrivateKey

CHECKPOINT_TYPE = "application/vnd.compressgate.checkpoint+json"


def checkpoint(catalog: Catalog, key: PrivateKey) -> bytes:
    """A signed checkpoint of the catalog's current head, as DSSE envelope JSON bytes."""
    head = catalog.verify_chain()  # never sign a chain that does not verify
    payload = {
        "_type": "https://compressgate.dev/Checkpoint/v1",
        "tree_size": head.size,
        "head_sha256": head.sha256,
        "schema_version": catalog.schema_version(),
        "made_at": now(),
    }
    body = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("utf-8")
    return dsse.sign(body, CHECKPOINT_TYPE, [key]).to_json()


def read_checkpoint(path: Path, trust: Trust) -> tuple[Head, str]:
    """A checkpoint's size and head, once its signature verifies against an auditor's key."""
    envelope = _checkpoint_envelope(path)
    auditors = trust.keys_with_role("auditor")
    signers = dsse.verified_keys(envelope, auditors)
    if not signers:
        raise IntegrityError(
            f"{path}: no valid signature by a key with the 'auditor' role in the trust file",
            hint="sign checkpoints with `compressgate audit checkpoint --key AUDITOR_KEY`",
        )
    return _checkpoint_payload(path, envelope), auditors[signers[0]]


def checkpoint_head(path: Path) -> Head:
    """The head a checkpoint file names, read before its signature is checked (`--since` needs
    it to know where to start; `verify_checkpoint` checks the signature before anything is
    reported)."""
    return _checkpoint_payload(path, _checkpoint_envelope(path))


def _checkpoint_envelope(path: Path) -> dsse.Envelope:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the checkpoint ({exc.strerror})") from None
    envelope = dsse.Envelope.from_json(raw, source=str(path))
    if envelope.payload_type != CHECKPOINT_TYPE:
        raise IntegrityError(
            f"{path}: payloadType is {envelope.payload_type!r}, not a compressgate checkpoint"
        )
    return envelope


def _checkpoint_payload(path: Path, envelope: dsse.Envelope) -> Head:
    try:
        body: Any = json.loads(envelope.payload)
        head = Head(size=int(body["tree_size"]), sha256=str(body["head_sha256"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise IntegrityError(f"{path}: the checkpoint payload is malformed ({exc})") from None
    if head.size < 0:
        raise IntegrityError(f"{path}: the checkpoint payload is malformed (tree_size < 0)")
    return head


def verify(
    catalog: Catalog,
    store: ArtifactStore | None,
    *,
    checkpoint_file: Path | None = None,
    trust: Trust | None = None,
    reports: Sequence[Path] = (),
    since: Head | None = None,
    started: float | None = None,
) -> AuditReport:
    """The file intact (SQLite), triggers present, chain intact, every row matching its event,
    every artifact's bytes matching its digest, the chain extending the checkpoint, and each
    report file recorded as rendered. Raises IntegrityError (exit 3) naming the first broken
    link.

    With `since` (the head of a checkpoint, whose signature the caller checks): only what is
    new after it — its own event against its hash, the events after it, their rows, the
    artifacts of the variants recorded after it, and the count of rows against events — and
    not SQLite's page check, which reads the whole file. `started` (a `time.perf_counter()`
    value: the command's start) is where the rate's wall time begins."""
    started = time.perf_counter() if started is None else started
    catalog.verify_storage(pages=since is None)
    catalog.verify_triggers()
    chain_started = time.perf_counter()
    head = catalog.verify_chain(since=since)
    chain_seconds = time.perf_counter() - chain_started
    after = since.size if since is not None else 0
    rows = catalog.verify_rows(since=after)
    artifacts = verify_artifacts(catalog, store, since=after) if store is not None else 0
    checked = None
    if checkpoint_file is not None:
        checked = verify_checkpoint(catalog, checkpoint_file, trust, head)
    seconds = time.perf_counter() - started
    return AuditReport(
        catalog=safe_url(catalog.url),
        schema_version=catalog.schema_version(),
        events=head.size,
        rows=rows,
        artifacts=artifacts,
        head=head,
        seconds=round(seconds, 4),
        events_per_second=_rate(head.size - after, seconds),
        chain_events_per_second=_rate(head.size - after, chain_seconds),
        checkpoint=checked,
        since=since,
        checked_events=head.size - after,
        reports=[verify_report(catalog, path) for path in reports],
    )


def verify_checkpoint(
    catalog: Catalog, checkpoint_file: Path, trust: Trust | None, head: Head
) -> Head:
    """The checkpoint's head, once its auditor's signature verifies and the chain (whose head
    is `head`) still passes through it; exit 3 otherwise."""
    if trust is None:
        raise ManifestError(
            "verifying a checkpoint needs the trust file that names the auditors",
            hint="pass --trust FILE or set $COMPRESSGATE_TRUST",
        )
    checked, _ = read_checkpoint(checkpoint_file, trust)
    if checked.size > head.size:
        raise IntegrityError(
            f"catalog history rewritten: the checkpoint {checkpoint_file} covers "
            f"{checked.size} events, the catalog has only {head.size}"
        )
    at = catalog.event_hash(checked.size)
    if at != checked.sha256:
        raise IntegrityError(
            f"catalog history rewritten: event {checked.size} hashes to "
            f"{(at or 'nothing')[:16]}…, the checkpoint {checkpoint_file} says "
            f"{checked.sha256[:16]}…",
            hint="the catalog was rebuilt since the checkpoint; restore it from a backup",
        )
    return checked


def _rate(events: int, seconds: float) -> float:
    return round(events / seconds, 1) if seconds else 0.0


def verify_report(catalog: Catalog, path: Path) -> RecordedReport:
    """The catalog's record of the report file at `path`: its bytes must be exactly those of a
    report `report -o` wrote from this catalog; anything else is exit 3."""
    try:
        digest = sha256_file(path)
    except FileNotFoundError:
        raise NotFoundError(f"report {path} not found") from None
    except OSError as exc:
        raise ManifestError(f"{path}: cannot read the report ({exc.strerror})") from None
    found = catalog.report_by_sha256(digest)
    if found is None:
        raise IntegrityError(
            f"{path} matches no report rendered from this catalog: changed after rendering, "
            "or rendered elsewhere",
            hint=f"its sha256 is {digest}; render it again with `compressgate report RUN -o "
            "FILE` and compare",
        )
    return found


def verify_artifacts(catalog: Catalog, store: ArtifactStore, *, since: int = 0) -> int:
    """Re-hash every stored file of every recorded variant (recorded after event `since`); a
    missing or changed blob is exit 3."""
    checked: set[str] = set()
    for sha, files, details in catalog.artifacts(since=since):
        blobs = [(f["sha256"], f["name"]) for f in files]
        if "onnx_sha256" in details:
            blobs.append((details["onnx_sha256"], "float32 ONNX export of the baseline"))
        for digest, name in blobs:
            if digest in checked:
                continue
            path = store.blob_path(digest)
            if not path.is_file():
                raise IntegrityError(
                    f"artifact {sha[:16]}… ({name}): blob {digest} is missing from the store "
                    f"{store.objects}",
                    hint="artifacts are never garbage-collected; restore the store from a backup",
                )
            if sha256_file(path) != digest:
                raise IntegrityError(
                    f"artifact {sha[:16]}… ({name}): blob {digest} no longer matches its digest"
                )
            checked.add(digest)
    return len(checked)
