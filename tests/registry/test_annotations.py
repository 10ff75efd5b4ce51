"""Tags and descriptions of runs and variants (issue 27, point 3): events, never edited in
place, their history kept; bad input refused before anything is written; under a trust policy
each change signed by an owner's key, and a row whose signature does not hold caught by the
audit's meaning checks."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from compressgate.recipes.trust import add_owner_key, set_root_threshold
from compressgate.registry.catalog.repository import AnnotationRow, Catalog
from compressgate.registry.governance import policy
from compressgate.registry.governance.annotations import (
    ANNOTATION_PREDICATE_TYPE,
    Change,
    Subject,
    annotation_envelope,
)
from compressgate.registry.governance.meaning import verify_meaning
from compressgate.registry.kernel.dsse import Envelope, verified_keys
from compressgate.registry.kernel.errors import IntegrityError
from compressgate.registry.kernel.keys import PrivateKey, generate_keypair, load_private_key
from tests.helpers.catalog import recipe_file, record_run
from tests.helpers.workspace import Invoke

RUN = "run-20261123T100000Z-aaaaaa"
INT8 = f"{RUN}/0/int8"


@pytest.fixture
def catalog(catalog_url: str, tmp_path: Path) -> str:
    record_run(catalog_url, RUN, 0.97, recipe_file(tmp_path / "recipe.yaml"))
    return catalog_url


def events(url: str) -> int:
    with Catalog(url, create=False) as records:
        return records.head().size


def annotation_rows(url: str) -> list[dict[str, Any]]:
    with Catalog(url, create=False) as records, records.engine.connect() as conn:
        table = AnnotationRow.__table__  # type: ignore[attr-defined]
        return [dict(r) for r in conn.execute(sa.select(table).order_by(table.c.event_seq))
                .mappings()]  # fmt: skip


def test_tags_and_descriptions_are_events_with_their_history_kept(
    catalog: str, cli: Invoke
) -> None:
    at = ("--catalog", catalog)
    first = cli("tag", RUN, "team=vision", "tier=gold", "--actor", "alice", *at)
    assert first.exit_code == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[0].endswith(f"tag team=vision on run {RUN} by alice")
    assert lines[1].endswith(f"tag tier=gold on run {RUN} by alice")
    assert lines[2] == f"run {RUN} tags: team=vision, tier=gold"
    assert cli("tag", RUN, "team=speech", "--actor", "bob", *at).exit_code == 0
    assert cli("tag", RUN, "--remove", "tier", "--actor", "bob", *at).exit_code == 0
    described = cli("describe", INT8, "int8 of the first good run", "--actor", "carol", *at)
    assert described.exit_code == 0, described.stderr
    assert cli("describe", INT8, "--clear", "--actor", "carol", *at).exit_code == 0
    assert cli("describe", INT8, "kept", "--actor", "carol", *at).exit_code == 0
    # The same value again: nothing to record.
    before = events(catalog)
    same = cli("tag", RUN, "team=speech", "--actor", "bob", *at)
    assert same.exit_code == 0
    assert f"tag 'team' of run {RUN} unchanged; nothing recorded" in same.stdout
    assert events(catalog) == before

    shown = json.loads(cli("catalog", "show", RUN, "--json", *at).stdout)
    assert (shown["tags"], shown["description"]) == ({"team": "speech"}, None)
    assert [(a["key"], a["value"], a["actor"]) for a in shown["annotations"]] == [
        ("team", "vision", "alice"),
        ("tier", "gold", "alice"),
        ("team", "speech", "bob"),
        ("tier", None, "bob"),
    ]
    assert shown["run_id"] == RUN and "stages" in shown  # the run record's keys stay
    variant = json.loads(cli("catalog", "show", INT8, "--json", *at).stdout)
    assert (variant["tags"], variant["description"]) == ({}, "kept")
    assert [a["value"] for a in variant["annotations"]] == [
        "int8 of the first good run",
        None,
        "kept",
    ]
    text = cli("catalog", "show", INT8, *at).stdout
    assert "  description: kept" in text and "description cleared on variant" in text
    # Seven rows, none changed since it was written; the chain and rows verify.
    rows = annotation_rows(catalog)
    assert [(r["subject_kind"], r["kind"], r["value"]) for r in rows][-3:] == [
        ("variant", "description", "int8 of the first good run"),
        ("variant", "description", None),
        ("variant", "description", "kept"),
    ]
    assert len(rows) == 7 and all(r["envelope"] is None and r["keyid"] is None for r in rows)
    with Catalog(catalog, create=False) as records:
        assert records.verify_rows() == records.head().size
        with (
            pytest.raises(sa.exc.DBAPIError, match="annotations is append-only"),
            records.engine.begin() as conn,
        ):
            conn.exec_driver_sql("UPDATE annotations SET value = 'x'")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["bad key=1"], "tag 'bad key=1': 'bad key' is not a tag key"),
        (["_team=1"], "'_team' is not a tag key"),
        (["team"], "tag 'team': not KEY=VALUE"),
        (["team="], "tag 'team': the value is empty"),
        (["team=" + "x" * 257], "tag 'team': the value is 257 characters long, more than 256"),
        (["note=a\x1b[2Jb"], "tag 'note': the value holds a control character (\\x1b at 1)"),
        (["note=a\u202eb"], "tag 'note': the value holds a control character (\\u202e at 1)"),
        (["note=two\nlines"], "the value holds a control character (\\n at 3)"),
        (["team=a", "--remove", "team"], "tag 'team' is given twice; nothing recorded"),
        (["--remove", "absent"], f"run {RUN} has no tag 'absent': nothing to remove"),
        ([], "no tag given"),
        (["ok=1", "--remove", "bad key"], "--remove 'bad key': 'bad key' is not a tag key"),
    ],
)
def test_bad_input_is_exit_2_naming_the_field_and_records_nothing(
    catalog: str, cli: Invoke, args: list[str], says: str
) -> None:
    before = events(catalog)
    result = cli("tag", RUN, *args, "--catalog", catalog)
    assert result.exit_code == 2, result.stderr
    assert says in result.stderr
    assert "hint: " in result.stderr
    assert events(catalog) == before


def test_descriptions_are_checked_and_unknown_subjects_are_not_found(
    catalog: str, cli: Invoke, tmp_path: Path
) -> None:
    before = events(catalog)
    long = cli("describe", RUN, "x" * 4097, "--catalog", catalog)
    assert long.exit_code == 2 and "description: the value is 4097 characters" in long.stderr
    neither = cli("describe", RUN, "--catalog", catalog)
    assert neither.exit_code == 2 and "give TEXT or --clear" in neither.stderr
    both = cli("describe", RUN, "text", "--clear", "--catalog", catalog)
    assert both.exit_code == 2
    nothing = cli("describe", RUN, "--clear", "--catalog", catalog)
    assert nothing.exit_code == 2 and "has no description: nothing to clear" in nothing.stderr
    missing = cli("tag", "run-20991231T000000Z-ffffff", "a=1", "--catalog", catalog)
    assert missing.exit_code == 4
    variant = cli("tag", f"{RUN}/0/nope", "a=1", "--catalog", catalog)
    assert variant.exit_code == 4
    _, _, _ = generate_keypair("someone", tmp_path / "keys")
    keyed = cli("tag", RUN, "a=1", "--key", tmp_path / "keys" / "someone.key",
                "--catalog", catalog)  # fmt: skip
    assert keyed.exit_code == 2 and "the catalog has no trust policy" in keyed.stderr
    assert events(catalog) == before


# --- under a trust policy ----------------------------------------------------------------------


@pytest.fixture
def governed(catalog: str, tmp_path: Path) -> tuple[str, Path]:
    """The catalog under policy v1: root-a (root), alice (approver, any role will do)."""
    keys, trust = tmp_path / "keys", tmp_path / "trust.yaml"
    for owner, role in [("root-a", "root"), ("alice", "approver"), ("ml-platform", "author")]:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    set_root_threshold(trust, 1)
    generate_keypair("mallory", keys)  # not in the policy
    with Catalog(catalog) as records:
        policy.init(records, trust, [load_private_key(keys / "root-a.key")])
    return catalog, keys


def key(keys: Path, owner: str) -> PrivateKey:
    return load_private_key(keys / f"{owner}.key")


def test_under_a_policy_each_change_is_signed_by_an_owner_and_audited(
    governed: tuple[str, Path], cli: Invoke
) -> None:
    catalog, keys = governed
    at = ("--catalog", catalog)
    before = events(catalog)
    unsigned = cli("tag", INT8, "team=vision", *at)
    assert unsigned.exit_code == 3
    assert "an unsigned tag or description is refused: the catalog's policy v1" in unsigned.stderr
    stranger = cli("tag", INT8, "team=vision", "--key", keys / "mallory.key", *at)
    assert stranger.exit_code == 3 and "is not in policy v1" in stranger.stderr
    posing = cli("tag", INT8, "team=vision", "--key", keys / "alice.key", "--actor", "bob", *at)
    assert posing.exit_code == 2 and "--actor 'bob' is not taken" in posing.stderr
    assert events(catalog) == before

    signed = cli("tag", INT8, "team=vision", "--key", keys / "alice.key", "--json", *at)
    assert signed.exit_code == 0, signed.stderr
    (note,) = json.loads(signed.stdout)["recorded"]
    assert (note["actor"], note["policy_version"]) == ("alice", 1)
    assert note["keyid"] == key(keys, "alice").public.keyid
    envelope = Envelope.from_json(note["envelope"].encode(), source="test")
    assert verified_keys(envelope, [key(keys, "alice").public]) == [key(keys, "alice").public]
    statement = json.loads(envelope.payload)
    assert statement["predicateType"] == ANNOTATION_PREDICATE_TYPE
    with Catalog(catalog, create=False) as records:
        artifact = records.variant(INT8).artifact_sha256
    assert statement["subject"] == [{"name": INT8, "digest": {"sha256": artifact}}]
    predicate = statement["predicate"]
    assert (predicate["key"], predicate["value"], predicate["owner"]) == ("team", "vision", "alice")
    assert predicate["catalog_head"]["size"] == before
    described = cli("describe", RUN, "audited", "--key", keys / "alice.key", *at)
    assert described.exit_code == 0, described.stderr
    with Catalog(catalog, create=False) as records:
        report = verify_meaning(records, None, policy.load_chain(records))
    assert (report.annotations, report.unsigned_annotations) == (2, 0)
    audit = cli("audit", "verify", "--skip-artifacts", *at)
    assert audit.exit_code == 0, audit.stderr


def _forge(url: str, keys: Path, how: str) -> int:
    """Append, around compressgate's checks (the chain recomputed as a writer with database
    access would), a tag row whose signature does not hold; its event number."""
    with Catalog(url) as records:
        head = records.head()
        chain = policy.load_chain(records)
        current = chain.current
        assert current is not None
        artifact = records.variant(INT8).artifact_sha256
        signer = key(keys, "mallory" if how == "stranger" else "alice")
        envelope = annotation_envelope(
            Subject("variant", INT8, artifact),
            Change("tag", "team", "vision"),
            signer,
            owner="alice",
            head=(head.size, head.sha256),
            policy=(current.version, current.sha256),
        )
        row = {
            "subject_kind": "variant",
            "subject_id": INT8,
            "kind": "tag",
            "key": "team",
            "value": "speech" if how == "value" else "vision",
            "actor": "mallory" if how == "actor" else "alice",
            "recorded_at": "2026-12-01T00:00:00.000000Z",
            "keyid": signer.public.keyid,
            "policy_version": 1,
            "envelope": None if how == "unsigned" else envelope.to_json().decode(),
        }
        if how == "unsigned":
            row["keyid"] = row["policy_version"] = None
        if how == "payload":  # the payload edited, the signature kept
            body = json.loads(envelope.to_json())
            stated = json.loads(base64.b64decode(body["payload"]))
            stated["predicate"]["value"] = "speech"
            row["value"] = "speech"
            body["payload"] = base64.b64encode(json.dumps(stated).encode()).decode()
            row["envelope"] = json.dumps(body)
        (seq,) = records.append([(AnnotationRow, row)])
        return seq


@pytest.mark.parametrize(
    ("how", "says"),
    [
        ("value", "the signed statement is not this tag 'team': value is 'vision', the "
                  "record's is 'speech'"),
        ("unsigned", "is unsigned, though policy v1 was in force"),
        ("stranger", "no signature verifies with a key of an owner in policy v1"),
        ("actor", "recorded as by 'mallory'"),
        ("payload", "no signature verifies with a key of an owner in policy v1"),
    ],
)  # fmt: skip
def test_the_audit_catches_a_tag_row_whose_signature_does_not_hold(
    governed: tuple[str, Path], cli: Invoke, how: str, says: str
) -> None:
    catalog, keys = governed
    seq = _forge(catalog, keys, how)
    with Catalog(catalog, create=False) as records:
        assert records.verify_rows() == records.head().size  # the hashes alone hold
        with pytest.raises(IntegrityError) as caught:
            verify_meaning(records, None, policy.load_chain(records))
    assert caught.value.exit_code == 3
    assert f"annotation {seq} (variant {INT8}, tag 'team')" in str(caught.value)
    assert says in str(caught.value)
    audit = cli("audit", "verify", "--skip-artifacts", "--catalog", catalog)
    assert audit.exit_code == 3 and says in audit.stderr


def test_the_audit_catches_an_annotation_of_a_subject_the_catalog_does_not_hold(
    catalog: str,
) -> None:
    with Catalog(catalog) as records:
        (seq,) = records.append(
            [
                (
                    AnnotationRow,
                    {
                        "subject_kind": "run",
                        "subject_id": "run-20991231T000000Z-ffffff",
                        "kind": "tag",
                        "key": "team",
                        "value": "ghost",
                        "actor": "alice",
                        "recorded_at": "2026-12-01T00:00:00.000000Z",
                    },
                )
            ]
        )
        with pytest.raises(IntegrityError, match=f"annotation {seq} .* names a run the catalog"):
            verify_meaning(records, None, policy.load_chain(records))
