"""Tampering, at a small scale: the scenarios of `tests/helpers/harden/tampering.py` (one byte
changed in each file compressgate keeps, rows edited past the guards, replayed and expired
sign-offs), each expected to be detected with exit 3 or refused. `python bench/hardening.py
--only tampering` runs them at the issue's scale, stage cache entries included."""

from __future__ import annotations

import json
import random
import secrets
from pathlib import Path

import pytest

from tests.helpers.harden.common import Figure
from tests.helpers.harden.tampering import (
    Scene,
    artifact_flips,
    catalog_flips,
    copy_scene,
    envelope_flips,
    invoke,
    postgres_updates,
    prepare,
    recipe_flips,
    report_flips,
    signoffs,
    sqlite_updates,
    trust_flips,
)
from tests.helpers.postgres import PG_ENV


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Scene:
    """Two runs of the bench recipe, a recorded report and a signed checkpoint (about 25 s)."""
    return prepare(tmp_path_factory.mktemp("tampering"))


def held(figure: Figure) -> None:
    assert figure.tried > 0 and figure.met, (
        f"{figure.name}: {figure.held}/{figure.tried}: {figure.detail}"
    )


def test_a_byte_changed_anywhere_in_the_recipe_fails_recipe_verify(scene: Scene) -> None:
    held(recipe_flips(scene, 12, random.Random(1)))


def test_a_byte_changed_in_a_comment_of_the_recipe_fails_recipe_verify(scene: Scene) -> None:
    original = scene.recipe.read_bytes()
    at = original.index(b"comment")
    scene.recipe.write_bytes(original[:at] + b"C" + original[at + 1 :])
    try:
        out = invoke("recipe", "verify", scene.recipe, "--trust", scene.bench.trust)
    finally:
        scene.recipe.write_bytes(original)
    assert out.code == 3, out.stderr
    assert "changed since it was signed" in out.stderr


def test_a_byte_changed_in_the_recipe_envelope_or_checkpoint_is_exit_3(scene: Scene) -> None:
    rng = random.Random(2)
    envelope = scene.recipe.with_name(scene.recipe.name + ".dsse.json")
    held(
        envelope_flips(
            "recipe envelope",
            envelope,
            lambda: invoke("recipe", "verify", scene.recipe, "--trust", scene.bench.trust),
            12,
            rng,
        )
    )
    held(
        envelope_flips(
            "checkpoint",
            scene.checkpoint,
            lambda: invoke(
                "audit",
                "verify",
                "--skip-artifacts",
                "--checkpoint",
                scene.checkpoint,
                "--trust",
                scene.bench.trust,
                "--workspace",
                scene.workspace,
            ),
            12,
            rng,
        )
    )


def test_a_byte_changed_in_the_trust_file_is_refused(scene: Scene) -> None:
    held(trust_flips(scene, 10, random.Random(3)))


def test_a_byte_changed_in_an_artifact_blob_fails_audit_verify_and_the_resuming_run(
    scene: Scene,
) -> None:
    for figure in artifact_flips(copy_scene(scene, "artifacts"), 8, 1, random.Random(4)):
        held(figure)


def test_a_byte_changed_in_the_sqlite_catalog_is_exit_3_when_it_changes_content(
    scene: Scene,
) -> None:
    content, unused, readers = catalog_flips(scene, 40, random.Random(6))
    held(content)
    held(readers)
    assert unused.met or unused.tried == 0, unused.detail


def test_a_row_updated_past_the_guards_of_the_sqlite_catalog_is_exit_3(scene: Scene) -> None:
    held(sqlite_updates(scene, 6, random.Random(7)))


@pytest.mark.postgres
def test_a_row_updated_past_the_guards_of_a_postgresql_catalog_is_exit_3(scene: Scene) -> None:
    import os

    url = os.environ.get(PG_ENV)
    if not url:
        pytest.skip(f"${PG_ENV} is not set: no PostgreSQL server to test against")
    held(postgres_updates(scene, url, 4, random.Random(8)))


def test_a_byte_changed_in_a_recorded_report_fails_audit_verify_report(scene: Scene) -> None:
    held(report_flips(scene, 8, random.Random(9)))
    out = invoke(
        "audit", "verify", "--skip-artifacts", "--report", scene.report, "--workspace",
        scene.workspace, "--json",
    )  # fmt: skip
    assert out.code == 0, out.stderr
    (recorded,) = json.loads(out.stdout)["reports"]
    assert (recorded["run_id"], recorded["format"]) == (scene.run_a, "html")


def test_replayed_approvals_and_expired_waivers_are_refused(scene: Scene) -> None:
    replayed, expired = signoffs(scene, expiry_seconds=2.0)
    held(replayed)
    held(expired)


def test_a_report_rendered_elsewhere_matches_nothing(scene: Scene, tmp_path: Path) -> None:
    other = copy_scene(scene, f"elsewhere-{secrets.token_hex(3)}")
    out = tmp_path / "card.md"
    written = invoke(
        "report", other.run_a, "--format", "card", "-o", out, "--workspace", other.workspace
    )
    assert written.code == 0, written.stderr
    assert (
        invoke(
            "audit", "verify", "--skip-artifacts", "--report", out, "--workspace", other.workspace
        ).code
        == 0
    )
    refused = invoke(
        "audit", "verify", "--skip-artifacts", "--report", out, "--workspace", scene.workspace
    )
    assert refused.code == 3
    assert "matches no report rendered from this catalog" in refused.stderr
