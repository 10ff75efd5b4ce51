"""The content-addressed artifact store: `objects/sha256/ab/cdef…`, verified on every read.

An artifact is one or more files (an ONNX model and its external data, say). Each file is a
blob named by the sha256 of its bytes, written to a temporary file and renamed, never
overwritten. The artifact's digest is the digest of its one file, or, for several files, the
sha256 of the canonical JSON list of `{name, sha256, size}` — so it covers every byte either way.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressgate.registry.kernel.digests import canonical_json, sha256_bytes, sha256_file
from compressgate.registry.kernel.errors import IntegrityError, NotFoundError

_CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    name: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Artifact:
    """What a variant is on disk: its files (the first is the primary one) and their digest."""

    sha256: str
    files: tuple[StoredFile, ...]

    @property
    def size_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def primary(self) -> str:
        return self.files[0].name

    @classmethod
    def of(cls, files: tuple[StoredFile, ...]) -> Artifact:
        if not files:
            raise ValueError("an artifact has at least one file")
        if len(files) == 1:
            return cls(files[0].sha256, files)
        listing = [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in files]
        return cls(sha256_bytes(canonical_json(listing)), files)

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "files": [{"name": f.name, "sha256": f.sha256, "size": f.size} for f in self.files],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Artifact:
        files = tuple(StoredFile(f["name"], f["sha256"], int(f["size"])) for f in data["files"])
        artifact = cls.of(files)
        if artifact.sha256 != data["sha256"]:
            raise IntegrityError(
                f"artifact record {data['sha256']} does not match its own file list "
                f"(which gives {artifact.sha256})"
            )
        return artifact


class ArtifactStore:
    """Blobs under `root/objects/sha256/`; the only code that writes or reads them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects" / "sha256"

    def blob_path(self, sha256: str) -> Path:
        return self.objects / sha256[:2] / sha256[2:]

    def put_file(self, path: Path, name: str | None = None) -> StoredFile:
        """Copy one file into the store (no-op if that content is already there)."""
        digest = sha256_file(path)
        target = self.blob_path(digest)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp_name = tempfile.mkstemp(prefix=".blob.", suffix=".tmp", dir=target.parent)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out, path.open("rb") as src:
                    shutil.copyfileobj(src, out, _CHUNK)
                    out.flush()
                    os.fsync(out.fileno())
                tmp.chmod(0o444)
                if sha256_file(tmp) != digest:
                    raise IntegrityError(f"{path} changed while it was being stored")
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, target)  # never overwrite a blob another writer put there
            finally:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
        return StoredFile(name or path.name, digest, path.stat().st_size)

    def put_tree(self, directory: Path, names: tuple[str, ...]) -> Artifact:
        """Store the named files of `directory` as one artifact, the first being the primary."""
        return Artifact.of(tuple(self.put_file(directory / n, n) for n in names))

    def has(self, artifact: Artifact) -> bool:
        return all(self.blob_path(f.sha256).is_file() for f in artifact.files)

    def read_bytes(self, stored: StoredFile) -> bytes:
        data = self._blob(stored.sha256).read_bytes()
        if sha256_bytes(data) != stored.sha256:
            raise IntegrityError(
                f"artifact blob {stored.sha256} is corrupt: its bytes no longer match its digest",
                hint="remove the blob; the next run recomputes it",
            )
        return data

    def materialize(self, artifact: Artifact, dest: Path) -> Path:
        """Copy an artifact's files into `dest`, verifying each; returns the primary file."""
        dest.mkdir(parents=True, exist_ok=True)
        for stored in artifact.files:
            target = dest / stored.name
            digest = hashlib.sha256()
            with self._blob(stored.sha256).open("rb") as src, target.open("wb") as out:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != stored.sha256:
                target.unlink()
                raise IntegrityError(
                    f"artifact blob {stored.sha256} ({stored.name}) is corrupt: its bytes no "
                    "longer match its digest",
                    hint="remove the blob; the next run recomputes it",
                )
        return dest / artifact.primary

    def _blob(self, sha256: str) -> Path:
        path = self.blob_path(sha256)
        if not path.is_file():
            raise NotFoundError(f"artifact blob {sha256} is not in the store at {self.objects}")
        return path
