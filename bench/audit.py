"""`audit verify` with every check, on a catalog of real runs under a signed policy (target:
≥ 50,000 events/s at 100,000 events on SQLite, the rate of the whole verification).

The catalog is made the way a team's is: a policy initialised by two root owners (threshold 2),
the bundled digits recipe signed by its author and run once for real by CI's runner key
(attested), its gates approved by their owners and its export promoted by a releaser. That
run's records are then recorded again under new run ids through the catalog's own methods
(`record_run_start`, `record_seed`, `record_stage`, `record_run_end`), each copy attested by
the runner's key, every `--every`-th one approved and promoted, until the chain holds at least
`--events` events. Every copy is a run the meaning checks accept: its decisions re-derive from
its evidence, its attestation, sign-offs and releases verify against the policy.

Then `compressgate audit verify --json` is run as a command in a fresh process (median of
`--repeat`), with every check: storage, triggers, hash chain, rows, artifacts and meaning. The
rate judged is the command's own `events_per_second` (events over the whole verification);
the wall time of the process, imports included, is printed beside it, and each check is timed
apart through the library. A measurement: it exits 0 whether or not the target is met (and
says UNDER TARGET), or 1 with `--strict`.

The copies share the real run's artifacts (the store holds each blob once), so the artifact
check here hashes one run's files: on a catalog of distinct runs it grows with the store.

    python bench/audit.py                          # 100,000 events
    python bench/audit.py --events 20000 --repeat 1
    python bench/audit.py --json
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

# This folder holds bench/evaluators.py, which would hide the `evaluators` package when this
# script runs with the folder first on sys.path: look packages up where they are installed.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import statistics  # after the folder is dropped: bench/statistics.py would hide it

TARGET = 50_000.0

OWNERS = (
    ("root-a", ("root",)),
    ("root-b", ("root",)),
    ("ml-platform", ("author",)),
    ("ci", ("runner",)),
    ("ml-lead", ("approver",)),
    ("responsible-ai", ("approver",)),
    ("serving", ("approver",)),
    ("release-eng", ("releaser",)),
)


def build(folder: Path, events: int, every: int, seeds: int) -> tuple[Path, dict[str, Any]]:
    """The workspace (under `folder`) and what it holds."""
    from compressgate.recipes.signing import sign_recipe
    from compressgate.recipes.trust import add_owner_key, set_root_threshold
    from compressgate.registry import Workspace
    from compressgate.registry.authoring import init_example
    from compressgate.registry.governance import policy
    from compressgate.registry.kernel.keys import generate_keypair, load_private_key

    root, keys, workspace = folder / "recipe", folder / "keys", folder / "ws"
    init_example(root, "digits")
    recipe, trust = root / "recipe.yaml", root / "trust.yaml"
    text = recipe.read_text()
    text = re.sub(r"seeds: \[.*\]", f"seeds: [{', '.join(map(str, range(seeds)))}]", text)
    if seeds < 2:  # exemplars compare seeds: nothing to compare with one
        text = re.sub(r"\n *- kind: exemplars.*", "", text)
    recipe.write_text(text)
    for owner, roles in OWNERS:
        _, _, public = generate_keypair(owner, keys)
        add_owner_key(trust, owner, public, roles)  # type: ignore[arg-type]
    set_root_threshold(trust, 2)
    key = {owner: keys / f"{owner}.key" for owner, _ in OWNERS}
    sign_recipe(recipe, load_private_key(key["ml-platform"]))

    started = time.perf_counter()
    with Workspace(workspace, key=key["ci"]) as ws:
        policy.init(
            ws.catalog(write=True), trust, [load_private_key(key[o]) for o in ("root-a", "root-b")]
        )
        original = ws.run(recipe).run_id
    run_seconds = time.perf_counter() - started

    started = time.perf_counter()
    with Workspace(workspace, key=key["ci"]) as ws:
        runs = 1
        catalog = ws.catalog(write=True)
        per_run = catalog.head().size - 1  # the policy is event 1
        _approve_and_promote(ws, original, key)
        while catalog.head().size < events:
            copy = _copy(ws, original)
            runs += 1
            if runs % every == 0:
                _approve_and_promote(ws, copy, key)
        size = catalog.head().size
    return workspace, {
        "events": size,
        "runs": runs,
        "events_per_run": per_run,
        "real_run_seconds": round(run_seconds, 1),
        "copy_seconds": round(time.perf_counter() - started, 1),
        "seeds": seeds,
        "approved_and_promoted_every": every,
    }


def _approve_and_promote(ws: Any, run_id: str, key: dict[str, Path]) -> None:
    for gate in ws.review(run_id)[0].gates:
        if gate.state == "awaiting-approval":
            owner = gate.decision.owner
            ws.sign_off(run_id, gate.decision.gate, kind="approval", key_path=key[owner])
    record = ws.catalog().run(run_id)
    last = record.stages[-1]
    ws.promote(f"{run_id}/{last.seed}/{last.name}", "staging", key_path=key["release-eng"])


def _copy(ws: Any, run_id: str) -> str:
    """The run's records again under a new run id, attested by the runner, as the engine and
    the workspace record a run."""
    from compressgate.registry.governance.attestation import record_attested
    from compressgate.registry.run.engine import new_run_id

    catalog = ws.catalog(write=True)
    record = catalog.run(run_id)
    info = catalog.run_info(run_id)
    recipe = catalog.recipe(record.recipe.sha256)
    new = new_run_id()
    copied = record.model_copy(update={"run_id": new})
    catalog.record_run_start(
        copied,
        recipe_content=recipe.content,
        envelope=recipe.envelope,
        lock_sha256=info.lock_sha256,
    )
    for seed in record.seeds:
        catalog.record_seed(new, seed, record.data[str(seed)])
    for stage in record.stages:
        spec = catalog.variant(f"{run_id}/{stage.seed}/{stage.name}").spec
        catalog.record_stage(new, record.recipe.sha256, stage, spec)
    judgements = [
        j.model_copy(update={"run_id": new, "variant_id": j.variant_id.replace(run_id, new, 1)})
        for j in catalog.judgements(run_id=run_id)
    ]
    decisions = [d.model_copy(update={"run_id": new}) for d in catalog.gate_decisions(run_id)]
    catalog.record_run_end(copied, judgements, decisions)
    current = ws.policy_chain().current
    key, owner = ws.runner()
    record_attested(
        catalog, copied, decisions, key, owner=owner, policy=(current.version, current.sha256)
    )
    return new


def command(workspace: Path) -> tuple[dict[str, Any], float]:
    """`compressgate audit verify --json` in a fresh process: its report and its wall time."""
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "compressgate"), "audit", "verify", "--json",
         "--workspace", str(workspace)],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"audit verify exited {done.returncode}: {done.stderr}")
    return json.loads(done.stdout), wall


def checks(workspace: Path) -> dict[str, float]:
    """Each check of the verification timed apart through the library, in seconds."""
    from compressgate.registry import Workspace
    from compressgate.registry.catalog.audit import verify_artifacts
    from compressgate.registry.governance.meaning import verify_meaning

    times: dict[str, float] = {}
    with Workspace(workspace) as ws:
        catalog = ws.catalog()
        steps = {
            "storage": catalog.verify_storage,
            "triggers": catalog.verify_triggers,
            "chain": catalog.verify_chain,
            "rows": catalog.verify_rows,
            "artifacts": lambda: verify_artifacts(catalog, ws.store),
            "policy chain": ws.policy_chain,
        }
        for name, step in steps.items():
            started = time.perf_counter()
            step()
            times[name] = time.perf_counter() - started
        started = time.perf_counter()
        verify_meaning(catalog, ws.store, ws.policy_chain())
        times["meaning"] = time.perf_counter() - started
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000, help="at least this many events")
    parser.add_argument("--every", type=int, default=10, help="approve and promote every Nth run")
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the real run")
    parser.add_argument("--repeat", type=int, default=3, help="timed commands (median judged)")
    parser.add_argument("--keep", type=Path, help="build the workspace here and keep it")
    parser.add_argument("--reuse", type=Path, help="time a workspace --keep built earlier")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.add_argument("--strict", action="store_true", help="exit 1 when under target")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="compressgate-bench-audit-") as scratch:
        if options.reuse is not None:
            workspace = options.reuse / "ws"
            built = json.loads((options.reuse / "built.json").read_text())
        else:
            folder = options.keep or Path(scratch)
            workspace, built = build(folder, options.events, options.every, options.seeds)
            (folder / "built.json").write_text(json.dumps(built))
        reports = [command(workspace) for _ in range(options.repeat)]
        parts = checks(workspace)
    rate = statistics.median(r["events_per_second"] for r, _ in reports)
    seconds = statistics.median(r["seconds"] for r, _ in reports)
    wall = statistics.median(w for _, w in reports)
    report = reports[0][0]
    figures = {
        **built,
        "verified_events": report["events"],
        "meaning": report["meaning"],
        "seconds": seconds,
        "events_per_second": rate,
        "chain_events_per_second": statistics.median(
            r["chain_events_per_second"] for r, _ in reports
        ),
        "process_wall_seconds": round(wall, 3),
        "checks_seconds": {k: round(v, 3) for k, v in parts.items()},
        "target_events_per_second": TARGET,
        "ok": rate >= TARGET,
    }
    if options.json:
        print(json.dumps(figures, indent=2))
    else:
        meaning = report["meaning"] or {}
        print("compressgate audit verify, every check, on a catalog of real runs under a policy")
        print(
            f"  catalog   {report['events']:,} events: {built['runs']:,} runs of the digits "
            f"recipe ({built['seeds']} seed(s), {built['events_per_run']} events each), one run "
            f"for real in {built['real_run_seconds']} s, the rest recorded again in "
            f"{built['copy_seconds']} s"
        )
        print(
            f"  meaning   {meaning.get('decisions', 0):,} decisions re-derived, "
            f"{meaning.get('attestations', 0):,} attestations, "
            f"{meaning.get('signoffs', 0):,} sign-offs, {meaning.get('releases', 0):,} releases, "
            f"{meaning.get('signed_heads', 0):,} signed heads"
        )
        print("  checks    " + ", ".join(f"{name} {value:.2f} s" for name, value in parts.items()))
        print(
            f"  command   {seconds:.2f} s of verification ({wall:.2f} s wall with the process' "
            f"start), median of {options.repeat}"
        )
        verdict = "ok" if rate >= TARGET else "UNDER TARGET"
        print(
            f"audit verify: {rate:,.0f} events/s, every check (target ≥ {TARGET:,.0f}): {verdict}"
            f"; the chain alone {figures['chain_events_per_second']:,.0f} events/s"
        )
    return 1 if options.strict and rate < TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
