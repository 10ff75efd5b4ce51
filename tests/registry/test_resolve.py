"""What `production` is, for a deployment: `alias resolve` and `Workspace.load`.

The runs are recorded through the catalog's own API as the executor records them (as in
test_aliases.py), except that each run's int8 variant is a real ONNX file in the artifact store
(tests/helpers/serving.py): a tiny `y = x @ W + b`, so that onnxruntime can run what an alias
resolves to and its output can be checked against numpy. One test promotes under a signed trust
policy, so that the move's release is what gets verified. `compressgate://` URIs:
tests/registry/test_uri.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from compressgate.recipes.trust import add_owner_key, load_trust, set_root_threshold
from compressgate.registry import Workspace as Registry
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.governance import policy
from compressgate.registry.governance.review import sign_off
from compressgate.registry.kernel.digests import sha256_file
from compressgate.registry.kernel.errors import IntegrityError, ManifestError, NotFoundError
from compressgate.registry.kernel.keys import generate_keypair, load_private_key
from tests.helpers.serving import expected, record
from tests.helpers.workspace import Invoke

FIRST, SECOND, SPLIT = (
    "run-20261123T100000Z-aaaaaa",
    "run-20261123T110000Z-bbbbbb",
    "run-20261123T120000Z-cccccc",
)
JSON_KEYS = {
    *("alias", "variant", "sha256", "path", "format", "size_bytes", "run_id", "recipe"),
    *("recipe_version", "recipe_sha256", "review", "review_reasons", "policy_version"),
    *("moved_at", "moved_by", "action", "seq", "release_keyid", "verified", "uri", "checked"),
}
HEAVY = ("scipy", "torch", "sklearn")
# The console script's entry point, then the heavy modules it loaded, on stderr's last line
# (as tests/registry/test_startup.py checks the other read commands).
WRAPPER = f"""\
import atexit, sys
sys.argv = ["compressgate", *sys.argv[1:]]
from compressgate.registry.cli import main
atexit.register(
    lambda: print("heavy: " + ",".join(m for m in {HEAVY!r} if m in sys.modules), file=sys.stderr)
)
main()
"""


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A workspace with two approved runs, the first promoted to production, then the second."""
    folder = tmp_path / "ws"
    with Registry(folder) as registry:
        for run_id, scale in ((FIRST, 1.0), (SECOND, 2.0)):
            registry_variant = record(folder, run_id, scale)
            registry.promote(registry_variant, "production", actor="alice", reason="good")
    return folder


def resolve(cli: Invoke, root: Path, *args: str) -> tuple[int, dict[str, object], str]:
    result = cli("alias", "resolve", *args, "--workspace", root, "--json")
    return result.exit_code, json.loads(result.stdout or "{}"), result.stderr


def test_resolve_names_the_current_variant_and_a_file_whose_bytes_hash_to_its_digest(
    root: Path, cli: Invoke
) -> None:
    code, found, stderr = resolve(cli, root, "production")
    assert code == 0, stderr
    assert set(found) == JSON_KEYS
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        variant = catalog.variant(f"{SECOND}/0/int8")
    assert (found["alias"], found["variant"], found["run_id"]) == (
        "production",
        f"{SECOND}/0/int8",
        SECOND,
    )
    assert found["sha256"] == variant.artifact_sha256
    path = Path(str(found["path"]))
    assert (
        path
        == root / "objects" / "sha256" / variant.artifact_sha256[:2] / variant.artifact_sha256[2:]
    )
    assert sha256_file(path) == found["sha256"]
    assert (found["recipe"], found["recipe_version"], found["review"]) == ("digits", 1, "approved")
    assert (found["policy_version"], found["release_keyid"], found["verified"]) == (
        None,
        None,
        True,
    )
    assert (found["moved_by"], found["action"], found["format"]) == ("alice", "promote", "onnx")
    assert found["uri"] is None
    assert found["checked"] == [
        "the move was made under the unsigned regime (no policy): it has no release to check",
        f"variant {SECOND}/0/int8's record names the move's artifact",
        f"its file's bytes hash to the recorded digest {variant.artifact_sha256[:16]}… now",
    ]

    text = cli("alias", "resolve", "production", "--workspace", root)
    assert text.exit_code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"production -> {SECOND}/0/int8 (verified)"
    assert f"  sha256:  {variant.artifact_sha256}" in lines
    assert f"  path:    {path}" in lines
    assert f"  run:     {SECOND} (recipe digits v1)" in lines
    assert "  review:  approved" in lines
    assert "  policy:  unsigned regime (no policy)" in lines
    assert any(
        line.startswith("  moved:   ") and "by alice (promote, event" in line for line in lines
    )


def test_after_a_rollback_it_resolves_to_the_previous_variant(root: Path, cli: Invoke) -> None:
    rolled = cli("rollback", "production", "--workspace", root, "--actor", "carol")
    assert rolled.exit_code == 0, rolled.stderr
    code, found, _ = resolve(cli, root, "production")
    assert code == 0
    assert (found["variant"], found["action"], found["moved_by"]) == (
        f"{FIRST}/0/int8",
        "rollback",
        "carol",
    )
    with Registry(root) as registry:
        path = registry.load("production")
    assert str(path) == found["path"] and sha256_file(path) == found["sha256"]


def test_changed_bytes_in_the_store_exit_3_and_load_raises(root: Path, cli: Invoke) -> None:
    _, found, _ = resolve(cli, root, "production")
    blob = Path(str(found["path"]))
    blob.chmod(0o644)
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1
    blob.write_bytes(bytes(data))

    result = cli("alias", "resolve", "production", "--workspace", root)
    assert result.exit_code == 3
    assert result.stdout == ""
    assert f"variant {SECOND}/0/int8's file model.onnx ({blob}) no longer hashes" in result.stderr
    with Registry(root) as registry, pytest.raises(IntegrityError, match="bytes changed"):
        registry.load("production")
    with Registry(root) as registry, pytest.raises(IntegrityError):
        registry.load(f"{SECOND}/0/int8", session=True)
    blob.unlink()
    missing = cli("alias", "resolve", "production", "--workspace", root)
    assert (
        missing.exit_code == 3 and "model.onnx" in missing.stderr and "is missing" in missing.stderr
    )


def test_an_unknown_alias_exits_4_naming_the_aliases_there_are(root: Path, cli: Invoke) -> None:
    with Registry(root) as registry:
        registry.promote(f"{FIRST}/0/int8", "staging", actor="alice")
    result = cli("alias", "resolve", "prod", "--workspace", root)
    assert result.exit_code == 4
    assert "no alias prod in the catalog" in result.stderr
    assert "its aliases: production, staging" in result.stderr
    with Registry(root) as registry, pytest.raises(NotFoundError, match="production, staging"):
        registry.load("prod")
    bad = cli("alias", "resolve", "pro duction", "--workspace", root)
    assert bad.exit_code == 2 and "not a valid name" in bad.stderr


def test_no_catalog_exits_4(tmp_path: Path, cli: Invoke) -> None:
    result = cli("alias", "resolve", "production", "--workspace", tmp_path / "empty")
    assert result.exit_code == 4, result.stderr


def test_recipe_option_picks_the_recipes_alias(root: Path, cli: Invoke) -> None:
    code, found, _ = resolve(cli, root, "production", "--recipe", "digits")
    assert code == 0 and found["variant"] == f"{SECOND}/0/int8"
    code, _, stderr = resolve(cli, root, "production", "--recipe", "resnet")
    assert code == 4 and "points at a variant of recipe digits, not resnet" in stderr
    code, _, stderr = resolve(cli, root, "digits:production", "--recipe", "digits")
    assert code == 2 and "name the recipe once" in stderr


def test_load_gives_an_onnxruntime_session_that_runs_the_promoted_model(root: Path) -> None:
    x = np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32)
    with Registry(root) as registry:
        session = registry.load("production", session=True)
    assert session.get_providers() == ["CPUExecutionProvider"]
    (declared,) = session.get_outputs()
    assert declared.shape == ["batch", 3]
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    assert y.shape == (1, 3)
    np.testing.assert_allclose(y, expected(2.0, x), rtol=1e-6)


def test_load_takes_a_variant_or_a_digest_prefix_too(root: Path, cli: Invoke) -> None:
    _, found, _ = resolve(cli, root, "production")
    sha = str(found["sha256"])
    with Registry(root) as registry:
        by_variant = registry.load(f"{SECOND}/0/int8")
        by_digest = registry.load(sha[:12])
        first = registry.load(f"{FIRST}/0/int8")
        with pytest.raises(ManifestError, match="a torch variant: a session needs an ONNX one"):
            registry.load(f"{FIRST}/0/distill", session=True)
        with pytest.raises(NotFoundError):
            registry.load(f"{FIRST}/0/nothing")
    assert str(by_variant) == str(by_digest) == found["path"]
    assert first != by_variant and sha256_file(first) != sha


def test_several_files_are_served_side_by_side_and_checked(tmp_path: Path, cli: Invoke) -> None:
    """ONNX weights as external data: the model and its data under their own names, in a
    verified copy (the blobs have no names); a changed copy is refused as a changed blob is."""
    root = tmp_path / "ws"
    variant = record(root, FIRST, 3.0, external=True)
    with Registry(root) as registry:
        registry.promote(variant, "production", actor="alice")
        path = registry.load("production")
        session = registry.load("production", session=True)
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        sha = catalog.variant(variant).artifact_sha256
    assert path == root / "serve" / sha / "model.onnx"
    assert sorted(p.name for p in path.parent.iterdir()) == ["model.onnx", "model.onnx.data"]
    x = np.ones((2, 4), dtype=np.float32)
    np.testing.assert_allclose(session.run(None, {"x": x})[0], expected(3.0, x), rtol=1e-6)
    code, found, _ = resolve(cli, root, "production")
    assert code == 0 and found["path"] == str(path)

    data = path.parent / "model.onnx.data"
    data.chmod(0o644)
    data.write_bytes(data.read_bytes()[:-4] + b"\0\0\0\0")
    result = cli("alias", "resolve", "production", "--workspace", root)
    assert result.exit_code == 3 and "model.onnx.data" in result.stderr


def test_the_review_is_shown_as_it_stands_once_a_waiver_has_expired(
    tmp_path: Path, cli: Invoke
) -> None:
    """Promoted under a waiver that has since lapsed: the file still verifies, and the review
    says rejected, with why (a deployment that needs `approved` reads `review`)."""
    root, keys, trust = tmp_path / "ws", tmp_path / "keys", tmp_path / "ws" / "trust.yaml"
    failing = record(root, FIRST, 1.0, accuracy=0.80)
    _, _, public = generate_keypair("ml-lead", keys)
    add_owner_key(trust, "ml-lead", public, ("approver",))
    # Expiry is signed to the second: 2 to 3 seconds from now.
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=3)
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        sign_off(
            catalog,
            FIRST,
            "accuracy",
            kind="waiver",
            trust=load_trust(trust),
            key=load_private_key(keys / "ml-lead.key"),
            reason="fixed in the next release",
            expires=expires,
        )
    with Registry(root) as registry:
        registry.promote(failing, "production", actor="alice")
        assert registry.resolve("production").review == "approved"
    time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.1)
    code, found, stderr = resolve(cli, root, "production")
    assert code == 0, stderr
    assert (found["variant"], found["review"], found["verified"]) == (failing, "rejected", True)
    reasons = found["review_reasons"]
    assert isinstance(reasons, list) and any("gate 'accuracy' failed" in r for r in reasons)
    text = cli("alias", "resolve", "production", "--workspace", root).stdout.splitlines()
    assert "  review:  rejected" in text and any("    - gate 'accuracy'" in t for t in text)

    # Without the trust file the waiver cannot be checked: said so, the file still served.
    trust.unlink()
    code, found, stderr = resolve(cli, root, "production")
    assert code == 0, stderr
    assert found["review"] == "unchecked" and "trust.yaml" in str(found["review_reasons"])


def test_resolve_imports_no_scipy_torch_or_sklearn(root: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WRAPPER, "alias", "resolve", "production", "--workspace", str(root)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert f"production -> {SECOND}/0/int8 (verified)" in result.stdout
    assert result.stderr.splitlines()[-1] == "heavy: "


@pytest.fixture
def governed(tmp_path: Path) -> tuple[Path, Path]:
    """Two runs recorded, then a policy (root-a roots, serving releases), under which the first
    is promoted with serving's key; the workspace and the keys folder."""
    root, keys = tmp_path / "ws", tmp_path / "keys"
    trust = tmp_path / "policy.yaml"
    for owner, role in [("ml-platform", "author"), ("root-a", "root"), ("serving", "releaser")]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    set_root_threshold(trust, 1)
    first = record(root, FIRST, 1.0)
    record(root, SECOND, 2.0)
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        policy.init(catalog, trust, [load_private_key(keys / "root-a.key")])
    with Registry(root) as registry:
        registry.promote(first, "production", key_path=keys / "serving.key")
    return root, keys


def test_under_a_policy_the_moves_release_is_verified(
    governed: tuple[Path, Path], cli: Invoke
) -> None:
    root, keys = governed
    code, found, stderr = resolve(cli, root, "production")
    assert code == 0, stderr
    assert (found["alias"], found["variant"]) == ("digits:production", f"{FIRST}/0/int8")
    assert (found["policy_version"], found["moved_by"]) == (1, "serving")
    serving = json.loads((keys / "serving.pub.json").read_text())["keyid"]
    assert found["release_keyid"] == serving
    assert found["checked"][0] == (
        f"the move's release, signed by serving (key {serving[:16]}…), counts under policy v1"
    )
    code, same, _ = resolve(cli, root, "production", "--recipe", "digits")
    assert code == 0 and same["seq"] == found["seq"]
    text = cli("alias", "resolve", "digits:production", "--workspace", root).stdout
    assert f"  policy:  v1, the move signed with key {serving[:12]}…" in text

    # A move written around compressgate (through the catalog's API, as a database writer
    # could): it has no signed release, so it does not count.
    with Catalog(f"sqlite:///{root / 'catalog.db'}") as catalog:
        catalog.move_alias(
            "digits:production",
            catalog.variant(f"{SECOND}/0/int8"),
            action="promote",
            reason="sneaked in",
            actor="serving",
            expected_previous=f"{FIRST}/0/int8",
            release=None,
        )
    result = cli("alias", "resolve", "production", "--workspace", root)
    assert result.exit_code == 3
    assert "has no signed release, though policy v1 was in force" in result.stderr
    with Registry(root) as registry, pytest.raises(IntegrityError, match="no signed release"):
        registry.load("production")


def test_a_release_swapped_for_another_moves_does_not_verify(
    governed: tuple[Path, Path], cli: Invoke
) -> None:
    """A real release, recorded with a move it was not signed for: the subject differs."""
    root, _ = governed
    db = root / "catalog.db"
    with Catalog(f"sqlite:///{db}") as catalog:
        (move,) = catalog.alias_history("digits:production")
        release = catalog.releases([move.seq])[move.seq]
    # Drop the append-only triggers of one table, as a database owner could, to rewrite it.
    with sqlite3.connect(db) as conn:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'alias_moves'"
        ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        second = conn.execute(
            "SELECT artifact_sha256 FROM variants WHERE id = ?", (f"{SECOND}/0/int8",)
        ).fetchone()[0]
        conn.execute(
            "UPDATE alias_moves SET variant_id = ?, artifact_sha256 = ? WHERE event_seq = ?",
            (f"{SECOND}/0/int8", second, move.seq),
        )
    assert release.owner == "serving"
    result = cli("alias", "resolve", "production", "--workspace", root)
    assert result.exit_code == 3, result.stdout
    assert "this release does not belong to the move" in result.stderr
