"""The artifact store: content-addressed, verified on read, never overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from compressgate.registry.catalog.store import Artifact, ArtifactStore
from compressgate.registry.kernel.digests import canonical_json, sha256_bytes
from compressgate.registry.kernel.errors import IntegrityError, NotFoundError


def test_one_file_artifact_is_named_by_the_file_digest(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"weights")
    store = ArtifactStore(tmp_path / "ws")
    artifact = store.put_tree(tmp_path, ("model.onnx",))
    assert artifact.sha256 == sha256_bytes(b"weights")
    blob = store.blob_path(artifact.sha256)
    assert blob == tmp_path / "ws/objects/sha256" / artifact.sha256[:2] / artifact.sha256[2:]
    assert blob.read_bytes() == b"weights"
    assert not blob.stat().st_mode & 0o222  # read-only
    assert store.put_tree(tmp_path, ("model.onnx",)) == artifact  # idempotent


def test_several_files_are_named_by_their_canonical_listing(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"graph")
    (tmp_path / "model.onnx.data").write_bytes(b"tensors")
    store = ArtifactStore(tmp_path / "ws")
    artifact = store.put_tree(tmp_path, ("model.onnx", "model.onnx.data"))
    listing = [
        {"name": "model.onnx", "sha256": sha256_bytes(b"graph"), "size": 5},
        {"name": "model.onnx.data", "sha256": sha256_bytes(b"tensors"), "size": 7},
    ]
    assert artifact.sha256 == sha256_bytes(canonical_json(listing))
    assert artifact.size_bytes == 12
    out = store.materialize(artifact, tmp_path / "out")
    assert out.read_bytes() == b"graph"
    assert (tmp_path / "out/model.onnx.data").read_bytes() == b"tensors"
    assert Artifact.from_dict(artifact.to_dict()) == artifact


def test_a_corrupt_blob_is_caught_on_read(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    store = ArtifactStore(tmp_path / "ws")
    artifact = store.put_tree(tmp_path, ("model.pt",))
    blob = store.blob_path(artifact.sha256)
    blob.chmod(0o644)
    blob.write_bytes(b"weightz")
    with pytest.raises(IntegrityError, match="is corrupt"):
        store.read_bytes(artifact.files[0])
    with pytest.raises(IntegrityError, match="is corrupt"):
        store.materialize(artifact, tmp_path / "out")
    assert not (tmp_path / "out/model.pt").exists()


def test_a_missing_blob_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "model.pt").write_bytes(b"weights")
    store = ArtifactStore(tmp_path / "ws")
    artifact = store.put_tree(tmp_path, ("model.pt",))
    store.blob_path(artifact.sha256).unlink()
    assert not store.has(artifact)
    with pytest.raises(NotFoundError):
        store.read_bytes(artifact.files[0])


def test_a_record_whose_listing_does_not_match_its_digest_is_refused() -> None:
    data = {"sha256": "0" * 64, "files": [{"name": "m", "sha256": "1" * 64, "size": 1}]}
    with pytest.raises(IntegrityError):
        Artifact.from_dict(data)
