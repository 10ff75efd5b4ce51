"""The stage cache: a finished stage found again by the digest of everything its output depends on.

A stage's cache key is `key(...)` of its inputs: its kind and spec digest, its parent artifact
(for the baseline: the digests of its checkpoint or ONNX file), the seed, the data digest, the
code digest, the nearest float torch ancestor, and the environment (`environment_key`). Its
entry, `WORKSPACE/cache/KEY.json`, is the stage record as it finished (without its timings and
`cached` flag) with the artifact's file list and the sha256 of both. The engine writes it last,
once the output is stored and evaluated, so a run killed mid-stage resumes from the last stage
that finished. An entry is trusted only when its digest matches (a changed entry is exit 3) and
its artifact is still in the store; an entry from before entries carried digests is recomputed.

A stage record also carries its evaluation key (`key(...)` of the variant, the seed's baseline
and parent, the evaluators, data, code and environment): a cached stage whose evaluation key
changed is evaluated again and its entry rewritten.

Under a catalog's trust policy the runner signs each entry it writes (Ed25519 over the DSSE
encoding of the entry's digest) and a run reuses only entries signed by a runner key the policy
holds: an entry without a signature, or by another key, is recomputed; one whose signature no
longer verifies was changed after it was signed (exit 3). Re-sealing an entry with a recomputed
digest, as an insider with write access to the workspace could, therefore buys nothing.

A whole run is reused (`compressgate ci`) when its recipe digest and `environment_sha256` match.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from compressgate.recipes.manifest import Recipe
from compressgate.registry.catalog.records import StageRecord
from compressgate.registry.catalog.store import Artifact, ArtifactStore
from compressgate.registry.kernel.dsse import pae
from compressgate.registry.kernel.errors import IntegrityError
from compressgate.registry.kernel.files import write_atomic
from compressgate.registry.kernel.keys import PrivateKey, PublicKey
from compressgate.registry.run import environment
from compressgate.registry.run.determinism import THREADS, deterministic, digest, threads

VERSION = 1
_ENTRY_DIGEST = "entry_sha256"
_SIGNATURE = "signature"  # {keyid, sig}: the runner's, under a policy
ENTRY_TYPE = "application/vnd.compressgate.cache-entry+json"
# What a cached stage takes from its entry: everything the stage produced and measured.
_RESTORED = (
    "format",
    "artifact_sha256",
    "files",
    "size_bytes",
    "params",
    "nonzero_params",
    "macs",
    "metrics",
    "evaluations",
    "evaluation_key",
    "details",
    "warnings",
)
# The parts of the environment fingerprint an output depends on (not where the interpreter is).
_ENVIRONMENT = ("python", "implementation", "machine", "threads", "packages")


def key(**inputs: Any) -> str:
    """The cache (or evaluation) key of `inputs`: their digest, with the cache's version."""
    return digest({"v": VERSION, **inputs})


def environment_sha256(recipe: Recipe, base: Path) -> str:
    """The digest of the environment fingerprint a run of `recipe` would record here: runs
    with the same recipe digest and this digest may be reused (`compressgate ci`)."""
    lock = base / recipe.environment.lock
    with deterministic(THREADS):
        fingerprint = environment.fingerprint(lock, threads=threads(), seeds=tuple(recipe.seeds))
    return digest(fingerprint)


def environment_key(fingerprint: Mapping[str, Any]) -> str:
    """The digest of the parts of an environment fingerprint that a stage's output depends on."""
    return digest({name: fingerprint.get(name) for name in _ENVIRONMENT})


class StageCache:
    """The entries under `directory`, for the artifacts in `store`; with `force`, none is read."""

    def __init__(
        self,
        directory: Path,
        store: ArtifactStore,
        *,
        force: bool,
        signer: PrivateKey | None = None,
        trusted: tuple[PublicKey, ...] | None = None,
    ) -> None:
        """`signer` signs the entries written; `trusted` (under a policy) are the runner keys
        whose entries are reused, None to reuse any entry whose digest matches."""
        self.directory = directory
        self.store = store
        self.force = force
        self.signer = signer
        self.trusted = trusted

    def restore(self, stage: StageRecord) -> Artifact | None:
        """The artifact an earlier run stored for `stage.cache_key`, with what that run measured
        copied onto `stage` (now marked cached); None when there is nothing to reuse."""
        if self.force:
            return None
        path = self._path(stage)
        if not path.is_file():
            return None
        entry = read_entry(path)
        if entry is None:
            return None
        signature = entry.pop(_SIGNATURE, None)
        if self.trusted is not None and not self._signed(path, entry, signature):
            return None
        artifact = Artifact.from_dict(entry.pop("artifact"))
        if not self.store.has(artifact):
            return None
        previous = StageRecord.model_validate(entry)
        for name in _RESTORED:
            setattr(stage, name, getattr(previous, name))
        stage.cached = True
        return artifact

    @contextmanager
    def claim(self, stage: StageRecord) -> Iterator[None]:
        """Hold `stage`'s cache key while it is restored or computed: a concurrent run of the
        same prefix (a sweep's trials, two workers) waits here for the first to finish, then
        reuses its entry instead of computing the same stage again. An advisory lock on a file
        beside the entry; the kernel releases it when its holder ends, killed or not."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with (self.directory / f"{stage.cache_key}.lock").open("ab") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def write(self, stage: StageRecord, artifact: Artifact) -> None:
        """The entry of a finished stage, with its digest, written atomically."""
        entry = stage.model_dump(mode="json", exclude={"cached", "seconds", "eval_seconds"})
        entry["artifact"] = artifact.to_dict()
        entry[_ENTRY_DIGEST] = digest(entry)
        if self.signer is not None:
            sig = self.signer.sign(pae(ENTRY_TYPE, entry[_ENTRY_DIGEST].encode("ascii")))
            entry[_SIGNATURE] = {"keyid": self.signer.public.keyid, "sig": sig.hex()}
        write_atomic(self._path(stage), json.dumps(entry).encode())

    def _signed(self, path: Path, entry: dict[str, Any], signature: Any) -> bool:
        """Whether a trusted runner key signed the entry (its digest already checked); a
        signature that no longer verifies is exit 3."""
        assert self.trusted is not None
        if not isinstance(signature, dict):
            return False  # unsigned: written before the policy, or without a runner key
        keyid, sig = signature.get("keyid"), signature.get("sig")
        key = next((k for k in self.trusted if k.keyid == keyid), None)
        if key is None:
            return False  # another key's: recomputed
        try:
            raw = bytes.fromhex(str(sig))
        except ValueError:
            raw = b""
        message = pae(ENTRY_TYPE, digest(entry).encode("ascii"))
        if not key.verify(raw, message):
            raise IntegrityError(
                f"stage cache entry {path} changed after its runner signed it",
                hint="the cache is only a cache: delete the entry, or run with --force",
            )
        return True

    def _path(self, stage: StageRecord) -> Path:
        return self.directory / f"{stage.cache_key}.json"


def read_entry(path: Path) -> dict[str, Any] | None:
    """A stage cache entry, checked against the digest written with it: a changed entry is an
    integrity failure (exit 3), never trusted; one from before digests is recomputed (None)."""
    hint = "the cache is only a cache: delete the entry, or run with --force"
    try:
        entry = json.loads(path.read_bytes())
    except ValueError:  # not JSON, or not UTF-8
        raise IntegrityError(f"stage cache entry {path} is damaged: not JSON", hint=hint) from None
    if not isinstance(entry, dict):
        raise IntegrityError(f"stage cache entry {path} is damaged: not an object", hint=hint)
    signature = entry.pop(_SIGNATURE, None)  # over the digest: not part of it
    recorded = entry.pop(_ENTRY_DIGEST, None)
    if recorded is None:
        return None
    if recorded != digest(entry):
        raise IntegrityError(
            f"stage cache entry {path} changed after it was written (its sha256 does not match)",
            hint=hint,
        )
    if signature is not None:
        entry[_SIGNATURE] = signature
    return entry
