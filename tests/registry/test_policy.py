"""The trust policy anchored in the catalog (issue 21): versions signed by the root threshold of
the version before them, recorded as events, verified whenever they are loaded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from compressgate.recipes.policy import envelope_path, sign_policy
from compressgate.recipes.trust import add_owner_key, load_trust, set_root_threshold
from compressgate.registry.catalog.repository import Catalog
from compressgate.registry.governance import policy
from compressgate.registry.kernel.digests import sha256_bytes
from compressgate.registry.kernel.errors import IntegrityError, ManifestError
from compressgate.registry.kernel.keys import PrivateKey, generate_keypair, load_private_key
from tests.helpers.workspace import Invoke


@pytest.fixture
def roots(tmp_path: Path) -> tuple[Path, Path]:
    """A trust file with an author and three root owners (threshold 2), and its keys folder."""
    keys = tmp_path / "keys"
    trust = tmp_path / "trust.yaml"
    for owner, role in [("ml-platform", "author"), ("root-a", "root"), ("root-b", "root"),
                        ("root-c", "root")]:  # fmt: skip
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, (role,))  # type: ignore[arg-type]
    set_root_threshold(trust, 2)
    return trust, keys


def key(keys: Path, owner: str) -> PrivateKey:
    return load_private_key(keys / f"{owner}.key")


def catalog(tmp_path: Path) -> Catalog:
    return Catalog(f"sqlite:///{tmp_path / 'catalog.db'}", create=True)


def test_init_records_version_1_signed_by_the_root_threshold(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    trust, keys = roots
    with catalog(tmp_path) as db:
        result = policy.init(db, trust, [key(keys, "root-a"), key(keys, "root-b")])
        chain = policy.load_chain(db)

    assert (result.version, result.signers, result.root_threshold) == (1, ["root-a", "root-b"], 2)
    assert chain.current is not None and chain.current.sha256 == result.sha256
    assert chain.current.trust == load_trust(trust)


def test_init_with_fewer_roots_than_the_threshold_writes_nothing(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    trust, keys = roots
    with catalog(tmp_path) as db:
        before = db.head()
        with pytest.raises(IntegrityError, match="1 of 2 root owner"):
            policy.init(db, trust, [key(keys, "root-a")])
        assert db.head() == before
        assert db.policies() == []


def test_two_keys_of_one_root_owner_count_once(roots: tuple[Path, Path], tmp_path: Path) -> None:
    trust, keys = roots
    _, _, second = generate_keypair("root-a-2", keys)
    add_owner_key(trust, "root-a", second, ("root",))
    with catalog(tmp_path) as db, pytest.raises(IntegrityError, match="1 of 2"):
        policy.init(db, trust, [key(keys, "root-a"), key(keys, "root-a-2")])


def test_a_policy_without_a_root_role_is_refused(tmp_path: Path) -> None:
    trust = tmp_path / "trust.yaml"
    _, _, public = generate_keypair("ml-platform", tmp_path / "keys")
    add_owner_key(trust, "ml-platform", public, ("author",))
    with catalog(tmp_path) as db, pytest.raises(ManifestError, match="declares its root role"):
        policy.init(db, trust, [key(tmp_path / "keys", "ml-platform")])


def test_a_threshold_above_the_root_owners_is_refused(roots: tuple[Path, Path]) -> None:
    trust, _ = roots
    with pytest.raises(ManifestError, match="only 3 owner"):
        set_root_threshold(trust, 4)


def test_next_version_needs_the_previous_roots_and_its_own(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    trust, keys = roots
    with catalog(tmp_path) as db:
        first = policy.init(db, trust, [key(keys, "root-a"), key(keys, "root-b")])
        proposal = tmp_path / "v2.yaml"
        shutil.copy(trust, proposal)
        _, _, approver = generate_keypair("ml-lead", keys)
        add_owner_key(proposal, "ml-lead", approver, ("approver",))

        shown = policy.propose(db, proposal)
        assert (shown.version, shown.previous_sha256, shown.ready) == (2, first.sha256, False)
        assert [c.what for c in shown.changes] == ["owner added"]

        policy.sign(db, proposal, key(keys, "root-c"))
        with pytest.raises(IntegrityError, match="1 of 2"):
            policy.apply(db, proposal)
        policy.sign(db, proposal, key(keys, "root-a"))
        assert policy.propose(db, proposal).ready
        second = policy.apply(db, proposal)
        chain = policy.load_chain(db)

    assert (second.version, second.signers, second.previous_version) == (2, ["root-a", "root-c"], 1)
    assert [v.version for v in chain.versions] == [1, 2]
    assert chain.at(chain.versions[1].seq) is chain.versions[0]  # in force before its own event
    assert chain.at(chain.versions[1].seq + 1) is chain.versions[1]


def test_new_roots_alone_cannot_take_over(roots: tuple[Path, Path], tmp_path: Path) -> None:
    trust, keys = roots
    with catalog(tmp_path) as db:
        policy.init(db, trust, [key(keys, "root-a"), key(keys, "root-b")])
        takeover = tmp_path / "takeover.yaml"
        data = yaml.safe_load(trust.read_text())
        mine = [PrivateKey.generate() for _ in range(3)]
        for name, private in zip(("root-a", "root-b", "root-c"), mine, strict=True):
            data["owners"][name]["keys"] = [
                {
                    "keytype": "ed25519",
                    "scheme": "ed25519",
                    "keyval": {"public": private.public.public_hex},
                }
            ]
        takeover.write_text(yaml.safe_dump(data))
        for private in mine:
            policy.sign(db, takeover, private)
        with pytest.raises(IntegrityError, match="version 1's root role: 0 of 2"):
            policy.apply(db, takeover)
        assert len(db.policies()) == 1


def test_a_signed_proposal_cannot_be_replayed_on_another_history(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    trust, keys = roots
    proposal = tmp_path / "v2.yaml"
    shutil.copy(trust, proposal)
    with catalog(tmp_path) as db:
        policy.init(db, trust, [key(keys, "root-a"), key(keys, "root-b")])
        for root in ("root-a", "root-b"):
            sign_policy(proposal, key(keys, root), version=2, previous="0" * 64)
        with pytest.raises(IntegrityError, match="signed to follow policy 0000"):
            policy.apply(db, proposal)
        envelope_path(proposal).unlink()
        for root in ("root-a", "root-b"):
            policy.sign(db, proposal, key(keys, root))
        policy.apply(db, proposal)
        with pytest.raises(IntegrityError, match="signed as policy version 2, but the next"):
            policy.apply(db, proposal)  # the same signed version, again


def test_a_changed_byte_after_signing_is_refused(roots: tuple[Path, Path], tmp_path: Path) -> None:
    trust, keys = roots
    for root in ("root-a", "root-b"):
        sign_policy(trust, key(keys, root), version=1, previous=None)
    trust.write_text(trust.read_text().replace("threshold: 2", "threshold: 1"))
    with (
        catalog(tmp_path) as db,
        pytest.raises(IntegrityError, match="changed since it was signed"),
    ):
        policy.apply(db, trust, first=True)


def test_a_policy_row_written_around_compressgate_stops_every_load(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    trust, keys = roots
    with catalog(tmp_path) as db:
        policy.init(db, trust, [key(keys, "root-a"), key(keys, "root-b")])
        forged = trust.read_text().replace("threshold: 2", "threshold: 1")
        # the insider's own envelope over the forged text, appended with a correct chain
        proposal = tmp_path / "forged.yaml"
        proposal.write_text(forged)
        current = db.policies()[0].sha256
        sign_policy(proposal, PrivateKey.generate(), version=2, previous=current)
        db.record_policy(
            version=2,
            sha256=sha256_bytes(forged.encode()),
            content=forged,
            envelope=envelope_path(proposal).read_text(),
            signers=["root-a", "root-b"],
        )
        with pytest.raises(IntegrityError, match="policy version 2 in the catalog does not verify"):
            policy.load_chain(db)


def test_cli_flow_init_propose_sign_apply_show(
    cli: Invoke, roots: tuple[Path, Path], tmp_path: Path
) -> None:
    trust, keys = roots
    ws = ("--workspace", tmp_path / "ws")
    done = cli("trust", "init", trust, "--key", keys / "root-a.key", "--key", keys / "root-b.key",
               *ws, "--json")  # fmt: skip
    assert done.exit_code == 0, done.stderr
    assert json.loads(done.stdout)["version"] == 1
    again = cli("trust", "init", trust, "--key", keys / "root-a.key", *ws)
    assert again.exit_code == 3 and "starts a policy only once" in again.stderr

    proposal = tmp_path / "v2.yaml"
    shutil.copy(trust, proposal)
    proposal.write_text(proposal.read_text() + "separation: false\n")
    shown = cli("trust", "propose", proposal, *ws)
    assert shown.exit_code == 0
    assert "separation of duties: false" in shown.stdout
    assert "needs 2 of root-a, root-b, root-c; signed by nobody yet" in shown.stdout
    for root in ("root-b", "root-c"):
        assert cli("trust", "sign", proposal, "--key", keys / f"{root}.key", *ws).exit_code == 0
    applied = cli("trust", "apply", proposal, *ws)
    assert applied.exit_code == 0, applied.stderr
    assert "policy v2 in force" in applied.stdout

    listed = json.loads(cli("trust", "show", *ws, "--json").stdout)
    assert (listed["version"], listed["separation"], listed["regime"]) == (2, False, "policy")
    assert [h["signers"] for h in listed["history"]] == [["root-a", "root-b"], ["root-b", "root-c"]]
    first = json.loads(cli("trust", "show", "--version", "1", *ws, "--json").stdout)
    assert first["separation"] is True


def test_a_workspace_refuses_a_trust_file_that_is_not_the_policy_in_force(
    roots: tuple[Path, Path], tmp_path: Path
) -> None:
    from compressgate.registry.workspace import Workspace

    trust, keys = roots
    with Workspace(tmp_path / "ws") as ws:
        policy.init(ws.catalog(write=True), trust, [key(keys, "root-a"), key(keys, "root-b")])
    copy = tmp_path / "copy.yaml"
    copy.write_text(trust.read_text().replace("threshold: 2", "threshold: 1"))
    with (
        Workspace(tmp_path / "ws", trust=copy) as ws,
        pytest.raises(IntegrityError, match="is not the catalog's policy in force"),
    ):
        ws.trust_file(tmp_path / "recipe.yaml")
    with Workspace(tmp_path / "ws", trust=trust) as ws:  # the same bytes: accepted
        found = ws.trust_file(tmp_path / "recipe.yaml")
        assert found.read_bytes() == trust.read_bytes()


def test_a_catalog_without_a_policy_is_the_unsigned_regime(cli: Invoke, tmp_path: Path) -> None:
    with Catalog(f"sqlite:///{tmp_path / 'ws' / 'catalog.db'}", create=True) as db:
        assert db.policies() == [] and policy.load_chain(db).current is None
    shown = cli("trust", "show", "--workspace", tmp_path / "ws")
    assert shown.exit_code == 0
    assert "no policy: the unsigned regime" in shown.stdout
