"""`catalog search` at scale: 100,000 variants, and how fast a page of results comes back.

Target (issue 27, point 3): a search answers in ≤ 50 ms at 100,000 variants.

The catalog is `bench/catalog.py`'s seeded synthetic one (its `synthesize`, imported: runs of
five stages over four recipes, gate judgements and decisions, alias moves across five
aliases), to which this script adds what search reads and that one does not make: a decision
for each judgement it left undecided, waivers of about a third of the failed gates and
approvals of some passed ones, a policy version from the middle of the history on, and tags
(a team on a fifth of the runs, a tier on some variants, some changed or removed later) and a
few descriptions, as annotation events. Then each search below is timed `--repeat` times after
a warm-up, through the library (`Catalog.search`) and through what the command calls
(`Workspace.search`: the query parsed, the catalog opened once, the search): median and p95,
the median judged against the target, MISS when over it. Deep pages are timed by their page
token (keyset paging: as fast at the 50,000th variant as at the first).

    python bench/search.py                        # 100,000 variants, SQLite in a temp folder
    python bench/search.py --quick                # 10,000 variants, fewer repeats
    python bench/search.py --catalog postgresql+psycopg://USER@HOST/DB   # an empty catalog
    python bench/search.py --json

The figures are wall-clock times on a shared machine: other processes' load shows in them.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as a script, this file's folder comes first on sys.path, where its name could hide a
# package of the same name: look packages up where they are installed instead.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import statistics  # after the folder is dropped: bench/statistics.py would hide it

import sqlalchemy as sa

from compressgate.registry.catalog.chain import document, now
from compressgate.registry.catalog.repository import (
    SCHEMA_VERSION,
    AnnotationRow,
    ApprovalRow,
    Catalog,
    GateDecisionRow,
    PolicyRow,
    safe_url,
)
from compressgate.registry.workspace import Workspace

GOAL_MS = 50.0
TEAMS = ("vision", "speech", "search", "ads", "edge")


def _bench_catalog() -> ModuleType:
    """bench/catalog.py, whose `synthesize` builds the catalog (bench/ is not a package)."""
    path = Path(__file__).resolve().with_name("catalog.py")
    spec = importlib.util.spec_from_file_location("bench_catalog", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def events_for(bench: ModuleType, variants: int, decisions_per_run: int) -> int:
    """The event budget that gives bench/catalog.py's synthesis `decisions_per_run` gates a
    run, each a judgement and a decision (its evaluations take six sevenths of what is left)."""
    runs = variants // len(bench.STAGES)
    fixed = SCHEMA_VERSION + 2 * len(bench.RECIPES) + runs * 3 + variants + runs // 10
    return int(fixed + 7 * 2 * decisions_per_run * runs)


def enrich(catalog: Catalog, seed: int, batch: int) -> dict[str, int]:
    """What search reads that the synthetic catalog lacks: gate decisions, sign-offs, a
    policy, tags and descriptions (appended as rows, as bench/catalog.py appends its own)."""
    rng = random.Random(seed + 1)
    md = sa.MetaData()
    judged = sa.Table("gate_decisions", md, autoload_with=catalog.engine)
    variants = sa.Table("variants", md, autoload_with=catalog.engine)
    verdicts = sa.Table("gate_verdicts", md, autoload_with=catalog.engine)
    with catalog.engine.connect() as conn:
        # The synthesis decides most gates as the executor does; the rest are decided here.
        decided = {str(i) for (i,) in conn.execute(sa.select(verdicts.c.id))}
        judgements = conn.execute(
            sa.select(
                judged.c.run_id, judged.c.gate, judged.c.variant_id, judged.c.stage,
                judged.c.artifact_sha256, judged.c.verdict, judged.c.estimate,
                judged.c.decided_at,
            ).order_by(judged.c.event_seq)
        ).all()  # fmt: skip
        all_variants = [str(v) for (v,) in conn.execute(sa.select(variants.c.id))]
    counts: dict[str, int] = {}
    pending: list[tuple[type[Any], dict[str, Any]]] = []

    def add(model: type[Any], row: dict[str, Any]) -> None:
        pending.append((model, row))
        name = str(model.__tablename__)
        counts[name] = counts.get(name, 0) + 1
        if len(pending) >= batch:
            catalog.append(pending)
            pending.clear()

    runs: list[str] = []
    for run_id, gate, variant_id, stage, artifact, verdict, estimate, decided_at in judgements:
        if not runs or runs[-1] != run_id:
            runs.append(run_id)
        owner = rng.choice(("ml-lead", "responsible-ai", "serving"))
        if f"{run_id}/{gate}" not in decided:
            add(
                GateDecisionRow,
                {
                    "id": f"{run_id}/{gate}",
                    "run_id": run_id,
                    "gate": gate,
                    "owner": owner,
                    "metric": "paired.accuracy_difference",
                    "stage": stage,
                    "policy": "every",
                    "approval": "none",
                    "rule": document({"metric": "paired.accuracy_difference", "min": -0.02}),
                    "estimate": estimate,
                    "ci_low": estimate - 0.01,
                    "ci_high": estimate + 0.01,
                    "n": 500,
                    "threshold": -0.02,
                    "pvalue": None,
                    "verdict": verdict,
                    "note": "",
                    "seeds": document([{"seed": 0, "verdict": verdict, "variant_id": variant_id}]),
                    "power": "null",
                    "evidence_sha256": f"{rng.getrandbits(256):064x}",
                    "decided_at": decided_at,
                },
            )
        kind = (
            "waiver"
            if verdict == "fail" and rng.random() < 0.35
            else "approval"
            if verdict == "pass" and rng.random() < 0.1
            else None
        )
        if kind is not None:
            add(
                ApprovalRow,
                {
                    "id": f"{rng.getrandbits(256):064x}",
                    "run_id": run_id,
                    "gate": gate,
                    "variant_id": variant_id,
                    "artifact_sha256": artifact,
                    "kind": kind,
                    "verdict": verdict,
                    "owner": owner,
                    "keyid": f"{rng.getrandbits(256):064x}",
                    "reason": "bench" if kind == "waiver" else None,
                    "expires": None,
                    "envelope": document({"payload": "bench"}),
                    "recorded_at": decided_at,
                },
            )
        if len(runs) == len(judgements) // 6 and counts.get("policies", 0) == 0:
            # A policy row for the later records to fall under (its content is not judged).
            add(
                PolicyRow,
                {
                    "version": 1,
                    "sha256": "0" * 64,
                    "content": "apiVersion: compressgate/v1\nkind: Trust\n",
                    "envelope": document({"payload": "bench"}),
                    "recorded_at": decided_at,
                    "signers": document(["root-a"]),
                },
            )

    def note(kind: str, subject: str, key: str, value: str | None) -> None:
        add(
            AnnotationRow,
            {
                "subject_kind": kind,
                "subject_id": subject,
                "kind": "tag" if key else "description",
                "key": key,
                "value": value,
                "actor": rng.choice(("alice", "bob", "carol")),
                "recorded_at": now(),
                "keyid": None,
                "policy_version": None,
                "envelope": None,
            },
        )

    for run_id in rng.sample(runs, len(runs) // 5):
        note("run", run_id, "team", rng.choice(TEAMS))
    for variant_id in rng.sample(all_variants, len(all_variants) // 20):
        note("variant", variant_id, "tier", rng.choice(("gold", "silver", "bronze")))
    for variant_id in rng.sample(all_variants, len(all_variants) // 100):
        note("variant", variant_id, "tier", None if rng.random() < 0.5 else "gold")
        note("variant", variant_id, "", "reviewed by the bench")
    for run_id in rng.sample(runs, len(runs) // 50):
        note("run", run_id, "team", rng.choice(TEAMS))  # changed: the latest counts
    if pending:
        catalog.append(pending)
    return counts


def searches(since: str, month: tuple[str, str], deep: int) -> list[tuple[str, str, str]]:
    """(name, query, sort) of each timed search; `since` and `month` fall inside the synthetic
    history (its runs start on 2025-01-06, about 22 minutes apart)."""
    return [
        ("newest page, no filter", "", "recorded"),
        ("one recipe", "recipe=bert-tiny", "recorded"),
        ("the auditor's question", f"alias=prod since={since} waived", "recorded"),
        ("where an alias points now", "current=prod", "recorded"),
        ("a failed gate", "gate=fail", "recorded"),
        ("one gate waived", "gate.gate-1=waived", "recorded"),
        ("signed off by an owner", "signoff=ml-lead stage=export", "recorded"),
        ("a tag (a run's, inherited)", "tag.team=vision", "recorded"),
        ("a variant's tag and a stage", "tag.tier=gold stage=export", "recorded"),
        ("a tag's absence, passed gates", "tag.team!=vision gate=pass", "recorded"),
        ("policy, owner, recipe prefix", "policy=0 owner=ml-platform recipe~mobile", "id"),
        ("a month, one kind", f"since={month[0]} until={month[1]} kind=quantize", "recorded"),
        ("no match: an unknown signer", "owner=nobody", "recorded"),
        ("no match: a recipe never run", "recipe=nobody", "recorded"),
        ("no match: a stage never made", "stage=nowhere", "recorded"),
        ("largest first", "", "size"),
        (f"a page {deep:,} deep", "", "size:asc"),
    ]


def timed(call: Callable[[], Any], repeat: int, warmup: int) -> tuple[float, float, Any]:
    for _ in range(warmup):
        result = call()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - start) * 1e3)
    times.sort()
    p95 = times[min(len(times) - 1, round(0.95 * (len(times) - 1)))]
    return statistics.median(times), p95, result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=100_000, help="a multiple of 5")
    parser.add_argument("--quick", action="store_true", help="10,000 variants, fewer repeats")
    parser.add_argument("--catalog", help="an EMPTY catalog URL (default: SQLite in a temp dir)")
    parser.add_argument("--repeat", type=int, default=None, help="timed calls per search")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls before them")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per append")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    options = parser.parse_args()
    variants = 10_000 if options.quick and options.variants == 100_000 else options.variants
    repeat = options.repeat or (10 if options.quick else 30)
    bench = _bench_catalog()
    if variants < len(bench.STAGES) or variants % len(bench.STAGES):
        parser.error(f"--variants must be a positive multiple of {len(bench.STAGES)}")

    folder = None if options.catalog else Path(tempfile.mkdtemp(prefix="cg-bench-search-"))
    url = options.catalog or f"sqlite:///{folder / 'catalog.db'}"
    try:
        catalog = Catalog(url)
        if catalog.head().size != SCHEMA_VERSION:
            parser.error(f"{safe_url(url)} is not empty: give an empty catalog")
        progress = sys.stderr.isatty()
        synthesis = bench.synthesize(
            catalog, variants, events_for(bench, variants, 2), options.seed, options.batch,
            progress,
        )  # fmt: skip
        started = time.perf_counter()
        added = enrich(catalog, options.seed, options.batch)
        enriched = time.perf_counter() - started
        if catalog.dialect == "sqlite":
            bench.checkpoint_wal(catalog)
        else:
            with catalog.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        events = catalog.head().size
        catalog.close()
        os.sync()
        load = os.getloadavg()[0]
        figures = measure(url, folder, repeat, options.warmup)
    finally:
        if folder is not None:
            for leftover in folder.iterdir():
                leftover.unlink()
            folder.rmdir()
    info = {
        "catalog": safe_url(url),
        "dialect": sa.engine.make_url(url).get_backend_name(),
        "python": platform.python_version(),
        "variants": variants,
        "runs": len(synthesis.run_ids),
        "events": events,
        "added": added,
        "synthesis_seconds": round(synthesis.seconds + enriched, 1),
        "repeat": repeat,
        "warmup": options.warmup,
        "load_average": round(load, 2),
        "cpus": os.cpu_count(),
        "goal_ms": GOAL_MS,
        "figures": figures,
    }
    if options.json:
        print(json.dumps(info, indent=2))
        return 0
    print(
        f"catalog search: {variants:,} variants in {len(synthesis.run_ids):,} runs, "
        f"{events:,} events ({info['dialect']}, Python {info['python']}); built in "
        f"{info['synthesis_seconds']} s; load average {load:.2f} on {os.cpu_count()} CPUs"
    )
    print(
        f"{repeat} timed calls after {options.warmup} warm-up each; target: median ≤ {GOAL_MS} ms"
    )
    print(f"{'search':<32} {'query':<48} {'hits':>5} {'API ms':>16} {'library ms':>16}")
    for f in figures:
        api = f"{f['api_median_ms']:.1f} (p95 {f['api_p95_ms']:.1f})"
        lib = f"{f['library_median_ms']:.1f} (p95 {f['library_p95_ms']:.1f})"
        mark = "" if f["ok"] else "  MISS"
        query = f["query"] or "(none)"
        print(f"{f['name']:<32} {query:<48} {f['hits']:>5} {api:>16} {lib:>16}{mark}")
    return 0


def measure(url: str, folder: Path | None, repeat: int, warmup: int) -> list[dict[str, Any]]:
    """Each search through `Workspace.search` (what the command calls) and `Catalog.search`,
    on engines opened afresh, as a new process opens them."""
    figures = []
    with (
        Workspace(folder or Path(tempfile.gettempdir()), catalog=url) as ws,
        Catalog(url, create=False) as library,
    ):
        pages = max(1, len(variants_of(library)) // 2000)
        deep = None
        for _ in range(pages):  # pages of 1,000 to half-way, untimed: the next page's token
            deep = library.search("", sort="size:asc", limit=1000, page_token=deep).next_page_token
        first, last = span(library)
        since = (first + (last - first) * 0.6).date().isoformat()
        middle = first + (last - first) * 0.5
        month = (middle.date().isoformat(), (middle + timedelta(days=29)).date().isoformat())
        for name, query, sort in searches(since, month, pages * 1000):
            token = deep if name.startswith("a page") else None
            api_median, api_p95, page = timed(
                lambda q=query, s=sort, t=token: ws.search(q, sort=s, page_token=t),
                repeat,
                warmup,
            )
            lib_median, lib_p95, _ = timed(
                lambda q=query, s=sort, t=token: library.search(q, sort=s, page_token=t),
                repeat,
                warmup,
            )
            figures.append(
                {
                    "name": name,
                    "query": query,
                    "sort": sort,
                    "hits": len(page.results),
                    "api_median_ms": round(api_median, 2),
                    "api_p95_ms": round(api_p95, 2),
                    "library_median_ms": round(lib_median, 2),
                    "library_p95_ms": round(lib_p95, 2),
                    "ok": max(api_median, lib_median) <= GOAL_MS,
                }
            )
    return figures


def variants_of(catalog: Catalog) -> list[str]:
    table = sa.Table("variants", sa.MetaData(), autoload_with=catalog.engine)
    with catalog.engine.connect() as conn:
        return [str(v) for (v,) in conn.execute(sa.select(table.c.id))]


def span(catalog: Catalog) -> tuple[datetime, datetime]:
    """When the first and the last variant were recorded."""
    table = sa.Table("variants", sa.MetaData(), autoload_with=catalog.engine)
    with catalog.engine.connect() as conn:
        low, high = conn.execute(
            sa.select(sa.func.min(table.c.recorded_at), sa.func.max(table.c.recorded_at))
        ).one()
    return (datetime.fromisoformat(low.replace("Z", "+00:00")),
            datetime.fromisoformat(high.replace("Z", "+00:00")))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
