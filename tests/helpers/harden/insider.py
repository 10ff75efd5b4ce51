"""Insider (issue 21): one person with write access to a workspace, its files and its database,
trying to bypass the controls that govern them.

A catalog under a signed policy (two root owners, threshold 2): ml-platform authors recipes and
holds the approver and releaser roles too (so separation of duties is what stops them), ml-lead
approves, serving releases, auditor signs checkpoints. Three TINY runs: `tiny-a` approved by
ml-lead and promoted to production by serving; `tiny-b` rejected (a failing gate); `tiny-c`
with a gate its own author owns. The insider holds ml-platform's key and a key of their own,
and can write any file and any row.

Each case is one attempt; it holds when the command refuses it (exit 3, or 2 for malformed
input) without a traceback and with nothing written, or, for rows written around compressgate
with the hash chain recomputed, when `audit verify` detects it (exit 3). The cases follow the
review of issue 21: copied trust files, a PR's own trust file, unsigned and forged-actor moves,
self-approval, policy changes without the threshold, and catalog rows appended or rewritten
with a correct chain (a release missing or forged, an alias to a rejected or a missing
variant, a forged sign-off, a forged policy version, a flipped verdict, history rewritten
below a signed head).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compressgate.recipes.trust import add_owner_key, set_root_threshold
from compressgate.registry.kernel.keys import generate_keypair, load_private_key

from .common import TINY, Bench, Figure, Options, Outcome, footprint, invoke, make_bench

SECTION = "insider"

GATES_A = """\
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.05,
     approval: required}
"""
GATES_B = """\
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.05}
  - {name: strict, owner: ml-lead, metric: accuracy, rule: bound, min: 0.999}
"""
GATES_C = """\
gates:
  - {name: self-check, owner: ml-platform, metric: accuracy, rule: bound, min: 0.05,
     approval: required}
"""
ROLES = (
    ("ml-platform", ("author", "approver", "releaser", "runner")),
    ("ci", ("runner",)),
    ("ml-lead", ("approver",)),
    ("serving", ("releaser",)),
    ("root-a", ("root",)),
    ("root-b", ("root",)),
    ("auditor", ("auditor",)),
)


@dataclass(frozen=True)
class Scene:
    bench: Bench
    runs: dict[str, str]  # recipe name -> run id
    recipes: dict[str, Path]
    attacker: Path  # the insider's own private key
    copied: Path  # a copy of the trust file with a key of the insider's under every owner
    evil: Path  # the folder of those keys, OWNER.key

    def key_as(self, owner: str) -> Path:
        """The insider's key listed under `owner` in the copied trust file."""
        return self.evil / f"{owner}.key"


def _recipe_text(name: str, gates: str) -> str:
    body = TINY.replace("NAME", name).replace("SEED", "0")
    head, _, _ = body.partition("gates:\n")
    return head + gates


def prepare(folder: Path) -> Scene:
    bench = make_bench(folder)
    for owner, roles in ROLES:
        public = folder / "keys" / f"{owner}.pub.json"
        if not public.exists():
            _, _, key = generate_keypair(owner, bench.keys)
        else:
            from compressgate.registry.kernel.keys import load_public_key

            key = load_public_key(public)
        add_owner_key(bench.trust, owner, key, roles)  # type: ignore[arg-type]
    set_root_threshold(bench.trust, 2)
    with bench.trust.open("a", encoding="utf-8") as policy:  # only CI's runs reach production
        policy.write("aliases:\n  production: {attested_by: [ci]}\n")
    _ok(
        invoke(
            "trust", "init", bench.trust, "--key", bench.key("root-a"), "--key",
            bench.key("root-b"), "--workspace", bench.workspace,
        )
    )  # fmt: skip
    recipes = {
        "tiny-a": _write(bench, "tiny-a", GATES_A),
        "tiny-b": _write(bench, "tiny-b", GATES_B),
        "tiny-c": _write(bench, "tiny-c", GATES_C),
        "tiny-d": _write(bench, "tiny-d", GATES_A),  # run on the author's laptop
    }
    runs = {}
    for name, path in recipes.items():
        runner = bench.key("ml-platform" if name == "tiny-d" else "ci")
        out = invoke("run", path, "--key", runner, "--workspace", bench.workspace, "--json")
        assert out.code in (0, 1), out.stderr
        runs[name] = json.loads(out.stdout)["run_id"]
    a = runs["tiny-a"]
    ws = ("--workspace", bench.workspace)
    _ok(invoke("approve", a, "--gate", "accuracy", "--key", bench.key("ml-lead"), *ws))
    _ok(invoke("approve", runs["tiny-d"], "--gate", "accuracy", "--key", bench.key("ml-lead"), *ws))
    _ok(invoke("promote", f"{a}/0/export", "--alias", "production", "--key",
               bench.key("serving"), *ws))  # fmt: skip
    attacker_dir = folder / "attacker"
    generate_keypair("mallory", attacker_dir)
    evil = folder / "evil"
    copied = folder / "copied-trust.yaml"
    shutil.copy(bench.trust, copied)
    for owner, _ in ROLES:
        _, _, public = generate_keypair(owner, evil)
        _add_key_to(copied, owner, public.public_hex)
    return Scene(bench, runs, recipes, attacker_dir / "mallory.key", copied, evil)


def _add_key_to(path: Path, owner: str, public_hex: str) -> None:
    """The insider's key listed under `owner` too, by editing the YAML as text would."""
    import yaml

    data = yaml.safe_load(path.read_text())
    data["owners"][owner]["keys"].append(
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public_hex}}
    )
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def _write(bench: Bench, name: str, gates: str) -> Path:
    return bench.recipe(name, text=_recipe_text(name, gates))


def _ok(out: Outcome) -> None:
    assert out.code == 0, f"{out.args}: {out.code} {out.stderr}"


# --- a case: one attempt and what must follow --------------------------------------------------


@dataclass
class Tally:
    tried: int = 0
    held: int = 0
    codes: Counter[int] = None  # type: ignore[assignment]
    misses: list[str] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        self.codes = Counter()
        self.misses = []

    def add(self, name: str, out: Outcome, allowed: tuple[int, ...], wrote: bool) -> None:
        held = out.code in allowed and "Traceback" not in out.stderr and not wrote
        self.tried += 1
        self.held += held
        self.codes[out.code] += 1
        if not held:
            self.misses.append(f"{name}: exit {out.code}, wrote {wrote}: {out.stderr[-200:]}")

    def figure(self, name: str) -> Figure:
        exits = ", ".join(f"exit {c} ×{n}" for c, n in sorted(self.codes.items()))
        detail = "; ".join([exits, *self.misses[:4]])
        return Figure(SECTION, name, self.tried, self.held, detail)


def refused(
    scene: Scene, tally: Tally, name: str, *args: Any, allowed: tuple[int, ...] = (3,)
) -> None:
    """A command the insider runs must be refused and write nothing."""
    ws = scene.bench.workspace
    before = footprint(ws)
    out = invoke(*args)
    after = footprint(ws)
    tally.add(name, out, allowed, before != after)


def detected(
    scene: Scene, tally: Tally, name: str, tamper: Callable[[Path], None], since: Tally
) -> None:
    """Rows written around compressgate (on a copy of the catalog): `audit verify` exits 3,
    and so does `audit verify --since` a checkpoint the auditor signed just before."""
    ws = scene.bench.workspace
    work = ws.parent / f"copy-{tally.tried}"
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(ws, work)
    checkpoint = work.parent / f"checkpoint-{tally.tried}.json"
    try:
        signed = invoke(
            "audit", "checkpoint", "--key", scene.key_as("auditor"), "-o", checkpoint,
            "--workspace", work,
        )  # fmt: skip
        assert signed.code == 0, signed.stderr
        tamper(work / "catalog.db")
        out = invoke("audit", "verify", "--workspace", work)
        tally.add(name, out, (3,), False)
        out = invoke("audit", "verify", "--since", checkpoint, "--workspace", work)
        since.add(name, out, (3,), False)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        checkpoint.unlink(missing_ok=True)


# --- writing around compressgate: rows appended or rewritten with a correct chain ------------


def raw_append(db: Path, rows: list[tuple[str, dict[str, Any]]]) -> list[int]:
    """Append rows with their events, the chain hashes computed as compressgate would (no
    foreign key checks: sqlite3's default)."""
    from compressgate.registry.catalog.chain import chain_hash, event_body, sha

    conn = sqlite3.connect(db)
    try:
        seq, prev = conn.execute(
            "SELECT seq, sha256 FROM events ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        out = []
        for table, row in rows:
            seq += 1
            body = event_body(table, row)
            content = sha(body)
            digest = chain_hash(seq, prev, content)
            conn.execute(
                "INSERT INTO events (seq, content_sha256, prev_sha256, sha256, body) "
                "VALUES (?, ?, ?, ?, '')",
                (seq, content, prev, digest),
            )
            columns = {**row, "event_seq": seq}
            names = ", ".join(columns)
            marks = ", ".join("?" for _ in columns)
            conn.execute(f"INSERT INTO {table} ({names}) VALUES ({marks})", list(columns.values()))
            prev = digest
            out.append(seq)
        conn.commit()
        return out
    finally:
        conn.close()


def rewrite(db: Path, table: str, key: str, value: Any, changes: dict[str, Any]) -> None:
    """Change a row past its dropped-and-restored guards, give its event the content hash of
    the changed row, and recompute every chain hash from there on."""
    from compressgate.registry.catalog.chain import GENESIS, chain_hash, coerced, event_body, sha
    from compressgate.registry.catalog.schema import BY_NAME

    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    try:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name IN (?, ?)",
            (table, "events"),
        ).fetchall()
        for trigger in triggers:
            conn.execute(f"DROP TRIGGER {trigger['name']}")
        sets = ", ".join(f"{c} = ?" for c in changes)
        conn.execute(f"UPDATE {table} SET {sets} WHERE {key} = ?", [*changes.values(), value])
        row = dict(conn.execute(f"SELECT * FROM {table} WHERE {key} = ?", (value,)).fetchone())
        seq = row["event_seq"]
        content = sha(event_body(table, coerced(BY_NAME[table], row)))
        conn.execute("UPDATE events SET content_sha256 = ? WHERE seq = ?", (content, seq))
        prev = GENESIS
        for event in conn.execute("SELECT seq, content_sha256 FROM events ORDER BY seq").fetchall():
            digest = chain_hash(event["seq"], prev, event["content_sha256"])
            conn.execute(
                "UPDATE events SET prev_sha256 = ?, sha256 = ? WHERE seq = ?",
                (prev, digest, event["seq"]),
            )
            prev = digest
        for trigger in triggers:
            conn.execute(trigger["sql"])
        conn.commit()
    finally:
        conn.close()


def _one(db: Path, sql: str, *args: Any) -> Any:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, args).fetchone()
    finally:
        conn.close()


def _move_row(
    alias: str, variant: str, artifact: str, previous: str | None, actor: str
) -> dict[str, Any]:
    return {
        "alias": alias,
        "variant_id": variant,
        "artifact_sha256": artifact,
        "previous_variant_id": previous,
        "action": "promote",
        "actor": actor,
        "reason": "insider",
        "moved_at": "2026-12-02T00:00:00.000000Z",
    }


def _release_row(move_seq: int, owner: str, keyid: str, envelope: str) -> dict[str, Any]:
    return {
        "move_seq": move_seq,
        "owner": owner,
        "keyid": keyid,
        "policy_version": 1,
        "envelope": envelope,
    }


def _forged_release(
    scene: Scene, db: Path, variant: str, artifact: str, key: Path
) -> tuple[int, str, str]:
    """A release of `variant` to production, signed by `key`, naming the real head."""
    from compressgate.registry.governance.release import Move, release_envelope

    seq, head = _one(db, "SELECT seq, sha256 FROM events ORDER BY seq DESC LIMIT 1")
    current = _one(db, "SELECT variant_id FROM alias_moves ORDER BY event_seq DESC LIMIT 1")[0]
    recipe = _one(db, "SELECT recipe_sha256 FROM variants WHERE id = ?", variant)[0]
    private = load_private_key(key)
    envelope = release_envelope(
        Move("production", "promote", variant, artifact, variant.split("/")[0], recipe, current),
        private,
        owner="serving",
        reason="insider",
        head=(seq, head),
        policy=(1, "x"),
    )
    return seq, private.public.keyid, envelope.to_json().decode()


# --- the cases ------------------------------------------------------------------------------------


def figures(options: Options) -> list[Figure]:
    scene = prepare(options.folder)
    bench, runs = scene.bench, scene.runs
    ws = ("--workspace", bench.workspace)
    a, b, c = runs["tiny-a"], runs["tiny-b"], runs["tiny-c"]
    out: list[Figure] = []

    # 1. A copied trust file with the insider's key under every owner, or the key alone.
    t = Tally()
    copy = ("--trust", scene.copied)
    refused(
        scene,
        t,
        "waive B's failing gate as ml-lead via a copied trust file",
        "waive",
        b,
        "--gate",
        "strict",
        "--key",
        scene.attacker,
        "--reason",
        "x",
        *copy,
        *ws,
    )
    refused(
        scene,
        t,
        "waive B's failing gate with the insider's key",
        "waive",
        b,
        "--gate",
        "strict",
        "--key",
        scene.attacker,
        "--reason",
        "x",
        *ws,
    )
    refused(
        scene,
        t,
        "promote rejected B with a copied trust file",
        "promote",
        f"{b}/0/export",
        "--alias",
        "production",
        "--key",
        scene.attacker,
        *copy,
        *ws,
    )
    refused(
        scene,
        t,
        "submit a recipe the insider signed as ml-platform, copied trust file",
        "run",
        _signed_by_attacker(scene),
        "--key",
        bench.key("ci"),
        *copy,
        *ws,
    )
    refused(
        scene,
        t,
        "submit a recipe the insider signed as ml-platform",
        "run",
        _signed_by_attacker(scene),
        "--key",
        bench.key("ci"),
        *ws,
    )
    checkpoint = bench.root / "forged-checkpoint.json"
    invoke("audit", "checkpoint", "--key", scene.key_as("auditor"), "-o", checkpoint, *ws)
    refused(
        scene,
        t,
        "a checkpoint the insider signed, with a copied trust file naming them auditor",
        "audit",
        "verify",
        "--checkpoint",
        checkpoint,
        *copy,
        *ws,
    )
    refused(
        scene,
        t,
        "a checkpoint the insider signed",
        "audit",
        "verify",
        "--checkpoint",
        checkpoint,
        *ws,
    )
    refused(
        scene,
        t,
        "ci with the pull request's own trust file",
        "ci",
        scene.recipes["tiny-b"],
        *copy,
        *ws,
    )
    out.append(t.figure("copied or caller-chosen trust files refused (exit 3)"))

    # 2. Moves need a releaser's key; the actor is the key's owner.
    t = Tally()
    target = f"{a}/0/export"
    refused(scene, t, "promote without a key", "promote", target, "--alias", "production", *ws)
    refused(
        scene,
        t,
        "promote with the author's key (separation: production)",
        "promote",
        target,
        "--alias",
        "production",
        "--key",
        bench.key("ml-platform"),
        *ws,
    )
    refused(
        scene,
        t,
        "promote with an approver's key",
        "promote",
        target,
        "--alias",
        "production",
        "--key",
        bench.key("ml-lead"),
        *ws,
    )
    refused(
        scene,
        t,
        "promote with the insider's key",
        "promote",
        target,
        "--alias",
        "production",
        "--key",
        scene.attacker,
        *ws,
    )
    refused(
        scene,
        t,
        "promote with a releaser's key but another --actor",
        "promote",
        target,
        "--alias",
        "production",
        "--key",
        bench.key("serving"),
        "--actor",
        "ml-lead",
        *ws,
        allowed=(2,),
    )
    refused(scene, t, "rollback without a key", "rollback", "production", "--to", target, *ws)
    refused(
        scene,
        t,
        "rollback with an approver's key",
        "rollback",
        "production",
        "--to",
        target,
        "--key",
        bench.key("ml-lead"),
        *ws,
    )
    refused(
        scene,
        t,
        "rollback with the insider's key",
        "rollback",
        "production",
        "--to",
        target,
        "--key",
        scene.attacker,
        *ws,
    )
    refused(
        scene,
        t,
        "another recipe's production moved to this recipe's variant",
        "promote",
        f"{runs['tiny-d']}/0/export",
        "--alias",
        "tiny-a:production",
        "--key",
        bench.key("serving"),
        *ws,
    )
    out.append(t.figure("unsigned, wrongly signed or forged-actor alias moves refused"))

    # 3. Separation of duties.
    t = Tally()
    refused(
        scene,
        t,
        "the author approves their own recipe's gate",
        "approve",
        c,
        "--gate",
        "self-check",
        "--key",
        bench.key("ml-platform"),
        *ws,
    )
    refused(
        scene,
        t,
        "the author promotes their own recipe to production",
        "promote",
        f"{a}/0/export",
        "--alias",
        "production",
        "--key",
        bench.key("ml-platform"),
        *ws,
    )
    out.append(t.figure("separation of duties: author may not approve or release"))

    # 4. Runs are attested by a runner; evidence cannot be forged through the stage cache.
    t = Tally()
    out.append(_evidence_cases(scene, t))

    # 5. Policy changes need the root threshold of the version in force.
    t = Tally()
    out.extend(_policy_cases(scene, t))

    # 6. Rows written around compressgate with a correct chain: audit verify detects them, and
    # so does a daily `audit verify --since` the checkpoint signed before.
    t, s = Tally(), Tally()
    db_variant = f"{b}/0/export"

    def artifact_of(db: Path, variant: str) -> str:
        return str(_one(db, "SELECT artifact_sha256 FROM variants WHERE id = ?", variant)[0])

    def move_to_rejected(db: Path) -> None:
        current = _one(db, "SELECT variant_id FROM alias_moves ORDER BY event_seq DESC")[0]
        raw_append(
            db,
            [
                (
                    "alias_moves",
                    _move_row(
                        "production", db_variant, artifact_of(db, db_variant), current, "serving"
                    ),
                )
            ],
        )

    def move_to_missing(db: Path) -> None:
        row = _move_row("staging", "run-x/0/export", "ab" * 32, None, "serving")
        raw_append(db, [("alias_moves", row)])

    def move_with_forged_release(db: Path) -> None:
        current = _one(db, "SELECT variant_id FROM alias_moves ORDER BY event_seq DESC")[0]
        artifact = artifact_of(db, db_variant)
        _, keyid, envelope = _forged_release(scene, db, db_variant, artifact, scene.attacker)
        (seq,) = raw_append(
            db, [("alias_moves", _move_row("production", db_variant, artifact, current, "serving"))]
        )
        raw_append(db, [("releases", _release_row(seq, "serving", keyid, envelope))])

    def move_with_replayed_release(db: Path) -> None:
        release = _one(db, "SELECT owner, keyid, envelope FROM releases ORDER BY event_seq")
        current = _one(db, "SELECT variant_id FROM alias_moves ORDER BY event_seq DESC")[0]
        artifact = artifact_of(db, db_variant)
        (seq,) = raw_append(
            db, [("alias_moves", _move_row("production", db_variant, artifact, current, "serving"))]
        )
        raw_append(db, [("releases", _release_row(seq, release[0], release[1], release[2]))])

    def forged_waiver(db: Path) -> None:
        from compressgate.gates.signoff import signoff_envelope
        from compressgate.registry.catalog.repository import Catalog

        with Catalog(f"sqlite:///{db}", create=False) as catalog:
            decision = {d.gate: d for d in catalog.gate_decisions(b)}["strict"]
            recipe = catalog.run_info(b).recipe_sha256
        envelope = signoff_envelope(
            decision,
            load_private_key(scene.attacker),
            kind="waiver",
            recipe_sha256=recipe,
            owner="ml-lead",
            reason="insider",
        )
        text = envelope.to_json().decode()
        import hashlib

        raw_append(
            db,
            [
                (
                    "approvals",
                    {
                        "id": hashlib.sha256(text.encode()).hexdigest(),
                        "run_id": b,
                        "gate": "strict",
                        "variant_id": decision.seeds[0].variant_id,
                        "artifact_sha256": decision.seeds[0].artifact_sha256,
                        "kind": "waiver",
                        "verdict": "fail",
                        "owner": "ml-lead",
                        "keyid": load_private_key(scene.attacker).public.keyid,
                        "reason": "insider",
                        "expires": None,
                        "envelope": text,
                        "recorded_at": "2026-12-02T00:00:00.000000Z",
                    },
                )
            ],
        )

    def forged_policy(db: Path) -> None:
        import hashlib

        content = scene.copied.read_text()
        from compressgate.recipes.policy import policy_statement
        from compressgate.registry.kernel import dsse

        previous = _one(db, "SELECT sha256 FROM policies ORDER BY version DESC")[0]
        payload = policy_statement("trust.yaml", content.encode(), 2, previous)
        envelope = dsse.sign(payload, dsse.INTOTO_PAYLOAD_TYPE, [load_private_key(scene.attacker)])
        raw_append(
            db,
            [
                (
                    "policies",
                    {
                        "version": 2,
                        "sha256": hashlib.sha256(content.encode()).hexdigest(),
                        "content": content,
                        "envelope": envelope.to_json().decode(),
                        "recorded_at": "2026-12-02T00:00:00.000000Z",
                        "signers": '["root-a","root-b"]',
                    },
                )
            ],
        )

    def flipped_verdict(db: Path) -> None:
        rewrite(db, "gate_verdicts", "id", f"{b}/strict", {"verdict": "pass"})

    def rewritten_below_head(db: Path) -> None:
        rewrite(db, "run_ends", "run_id", b, {"status": "succeeded", "error": None})
        rewrite(db, "runs", "run_id", b, {"actor": "someone-else"})

    detected(scene, t, "an alias moved to the rejected run's variant", move_to_rejected, s)
    detected(scene, t, "an alias pointing at a variant that does not exist", move_to_missing, s)
    detected(scene, t, "a move with a release the insider signed", move_with_forged_release, s)
    detected(scene, t, "a move with an earlier release replayed", move_with_replayed_release, s)
    detected(scene, t, "a waiver the insider signed as ml-lead", forged_waiver, s)
    detected(scene, t, "a policy version signed by the insider alone", forged_policy, s)
    detected(scene, t, "a gate verdict flipped from fail to pass", flipped_verdict, s)
    detected(scene, t, "history rewritten below a release's signed head", rewritten_below_head, s)

    def rewritten_metric(db: Path) -> None:
        """A metric no gate reads, changed in the variant row with the chain recomputed: only
        the runner's attestation still says what was measured."""
        from compressgate.registry.catalog.chain import read_json, stored

        variant = f"{a}/0/export"
        text = _one(db, "SELECT metrics FROM variants WHERE id = ?", variant)[0]
        metrics = read_json(text)
        metrics["paired.accuracy_difference"]["estimate"] = 0.25
        rewrite(db, "variants", "id", variant, {"metrics": stored(metrics)})

    detected(scene, t, "a measured figure rewritten (no gate reads it)", rewritten_metric, s)
    out.append(t.figure("rows appended or rewritten with a correct chain: audit verify exit 3"))
    out.append(s.figure("the same rows, audit verify --since a checkpoint signed before: exit 3"))
    return out


def _evidence_cases(scene: Scene, t: Tally) -> Figure:
    bench, runs = scene.bench, scene.runs
    ws = ("--workspace", bench.workspace)
    recipe = scene.recipes["tiny-a"]
    refused(scene, t, "a run without a runner's key", "run", recipe, "--force", *ws)
    refused(
        scene,
        t,
        "a run attested with an approver's key",
        "run",
        recipe,
        "--force",
        "--key",
        bench.key("ml-lead"),
        *ws,
    )
    refused(
        scene,
        t,
        "a run attested with the insider's key",
        "run",
        recipe,
        "--force",
        "--key",
        scene.attacker,
        *ws,
    )
    refused(
        scene,
        t,
        "a laptop run promoted where the policy wants CI's attestation",
        "promote",
        f"{runs['tiny-d']}/0/export",
        "--alias",
        "production",
        "--key",
        bench.key("serving"),
        *ws,
    )
    # A cache entry re-sealed with a forged figure (its digest recomputed): with the runner's
    # signature kept, the run stops (exit 3); with the signature stripped, it recomputes.
    entry = next(
        p
        for p in sorted((bench.workspace / "cache").glob("*.json"))
        if json.loads(p.read_text()).get("name") == "export"
    )
    original = entry.read_bytes()
    forged = json.loads(original)
    forged["metrics"]["accuracy"]["estimate"] = 0.999
    from compressgate.registry.run.determinism import digest

    del forged["entry_sha256"]
    signature = forged.pop("signature")
    forged["entry_sha256"] = digest(forged)
    entry.write_text(json.dumps({**forged, "signature": signature}))
    # The run stops there (exit 3); what it recorded up to then is a failed run, as for any
    # changed cache entry: nothing the forged entry claims is recorded.
    stopped = invoke("run", recipe, "--key", bench.key("ci"), *ws)
    t.add("a cache entry re-sealed with a forged accuracy, signature kept", stopped, (3,), False)
    entry.write_text(json.dumps(forged))
    rerun = invoke("run", recipe, "--key", bench.key("ci"), *ws, "--json")
    recorded = json.loads(rerun.stdout)["stages"][-1]["metrics"]["accuracy"]["estimate"]
    honest = recorded != 0.999 and rerun.code in (0, 1)
    t.add(
        "a cache entry re-sealed, signature stripped: recomputed",
        rerun,
        (rerun.code,) if honest else (),
        False,
    )
    entry.write_bytes(original)
    return t.figure("runs attested by a runner; no forged evidence through the stage cache")


def _signed_by_attacker(scene: Scene) -> Path:
    from compressgate.recipes.signing import sign_recipe

    path = scene.bench.root / "evil.yaml"
    if not path.exists():
        path.write_text(_recipe_text("evil", GATES_A), encoding="utf-8")
        from compressgate.recipes.trust import load_trust

        sign_recipe(path, load_private_key(scene.key_as("ml-platform")), load_trust(scene.copied))
    return path


def _policy_cases(scene: Scene, t: Tally) -> list[Figure]:
    from compressgate.recipes.policy import sign_policy

    bench = scene.bench
    ws = ("--workspace", bench.workspace)
    policy_dir = bench.root / "proposals"
    policy_dir.mkdir(exist_ok=True)
    current = _one(bench.catalog_file, "SELECT sha256 FROM policies ORDER BY version DESC")[0]

    def proposal(name: str, source: Path) -> Path:
        path = policy_dir / f"{name}.yaml"
        shutil.copy(source, path)
        return path

    one = proposal("one-root", scene.copied)
    sign_policy(one, load_private_key(bench.key("root-a")), version=2, previous=current)
    refused(scene, t, "a policy change signed by one root of two", "trust", "apply", one, *ws)

    own = proposal("own-roots", bench.trust)
    import yaml

    data = yaml.safe_load(own.read_text())
    public = load_private_key(scene.attacker).public.public_hex
    data["owners"]["root-a"]["keys"] = [
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": public}}
    ]
    mallory2 = bench.root / "m2"
    _, _, second = generate_keypair("mallory2", mallory2)
    data["owners"]["root-b"]["keys"] = [
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": second.public_hex}}
    ]
    own.write_text(yaml.safe_dump(data, sort_keys=False))
    for key in (scene.attacker, mallory2 / "mallory2.key"):
        sign_policy(own, load_private_key(key), version=2, previous=current)
    refused(
        scene,
        t,
        "a policy whose roots the insider replaced, signed by the new roots",
        "trust",
        "apply",
        own,
        *ws,
    )
    refused(
        scene,
        t,
        "trust init again, over the policy in force",
        "trust",
        "init",
        own,
        "--key",
        scene.attacker,
        *ws,
    )
    stale = proposal("stale", scene.copied)
    for root in ("root-a", "root-b"):
        sign_policy(stale, load_private_key(bench.key(root)), version=3, previous=current)
    refused(scene, t, "a signed proposal for another version", "trust", "apply", stale, *ws)
    other = proposal("other-previous", scene.copied)
    for root in ("root-a", "root-b"):
        sign_policy(other, load_private_key(bench.key(root)), version=2, previous="0" * 64)
    refused(scene, t, "a signed proposal following another history", "trust", "apply", other, *ws)
    return [t.figure("policy changes without the root threshold of the version in force")]
