"""Concurrency: submitters started together on one workspace and one catalog, then alias moves.

A team on one machine shares a workspace: N `compressgate submit` processes start at the same
instant (each waits, its imports done, for a "go" file) on one artifact store, one stage cache
and one catalog that none of them has created yet. Half the recipes reuse a seed a first run
left in the stage cache; the others compute seeds nobody has, several processes the same stage
at once, so the store's blobs and the cache's entries are written concurrently too. Every
submitter must exit 0 with its run recorded once, succeeded, with every stage; `audit verify`
must pass.

The runs are approved at once (the TINY recipe's gate needs no sign-off). Then, for a few
rounds, N processes move one alias together: most `promote` a variant of a different run, one
in four `rollback`. A process may move the alias, find it already there, lose the race
(`moved meanwhile`, exit 6) or find nothing to roll back to (exit 4), each said in one line.
The alias's history must hold exactly the moves the processes reported, each linked to the one
before it in chain order, and the alias must point to the last of them.

The processes run the CLI's own entry point (`compressgate.registry.cli.main`, what the
`compressgate`
console script calls) in fresh interpreters; only the wait for the "go" file is added.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import Figure, Options, Outcome, cg, make_bench, postgres_schema

SECTION = "concurrency"
ALIAS = "production"
SEEDS = 3  # recipes use seeds 0, 1, 2; only seed 0 is in the stage cache beforehand
ROUNDS = 3  # rounds of concurrent alias moves

# Imports first, then the barrier, then the command, exactly as the console script runs it.
LAUNCH = """\
import sys, time
from pathlib import Path
import compressgate.registry.workspace
import compressgate.registry.governance.aliases
import compressgate.registry.cli
if sys.argv[3] == "submit":
    import compressgate.registry.run.engine
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
while not go.exists():
    time.sleep(0.005)
sys.argv = ["compressgate", *sys.argv[3:]]
from compressgate.registry.cli import main
main()
"""


def together(
    commands: Sequence[Sequence[str | Path]], folder: Path, *, cwd: Path, timeout: float = 900
) -> tuple[list[Outcome], float]:
    """Start every command in its own process, release them at once; their outcomes and the
    seconds from the release to the last one's end."""
    folder.mkdir(parents=True, exist_ok=True)
    go = folder / "go"
    env = {**os.environ, "COLUMNS": "200"}
    processes: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        for i, command in enumerate(commands):
            log = folder / f"{i}"
            with (
                log.with_suffix(".out").open("wb") as out,
                log.with_suffix(".err").open("wb") as err,
            ):
                argv = [sys.executable, "-c", LAUNCH, str(log.with_suffix(".ready")), str(go)]
                processes.append(
                    (
                        subprocess.Popen(
                            [*argv, *(str(c) for c in command)],
                            stdout=out,
                            stderr=err,
                            cwd=cwd,
                            env=env,
                        ),
                        log,
                    )
                )
        deadline = time.monotonic() + timeout
        while not all(log.with_suffix(".ready").exists() for _, log in processes):
            if any(p.poll() is not None for p, _ in processes):
                break  # one died while importing: release the others, report it below
            if time.monotonic() > deadline:
                raise TimeoutError(f"the processes in {folder} never got ready")
            time.sleep(0.02)
        go.touch()
        start = time.perf_counter()
        codes = [p.wait(timeout=timeout) for p, _ in processes]
        seconds = time.perf_counter() - start
    finally:
        for process, _ in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outcomes = [
        Outcome(
            tuple(str(c) for c in command),
            code,
            log.with_suffix(".out").read_text(),
            log.with_suffix(".err").read_text(),
        )
        for command, code, (_, log) in zip(commands, codes, processes, strict=True)
    ]
    return outcomes, seconds


def _json(outcome: Outcome) -> Any:
    try:
        return json.loads(outcome.stdout)
    except json.JSONDecodeError:
        return None


def _clean(outcome: Outcome) -> bool:
    text = outcome.stdout + outcome.stderr
    return "Traceback" not in text and "database is locked" not in text


# --- the scenario -------------------------------------------------------------------------------


@dataclass
class Result:
    """What one scenario found; `problems` names every broken guarantee."""

    backend: str
    submitters: int  # and alias movers per round
    with_submits: bool = True  # False: only alias moves on a catalog already filled
    submit_seconds: float = 0.0
    prewarm_seconds: float = 0.0
    submitted_ok: int = 0  # exit 0, a succeeded and approved run, no traceback
    runs_tried: int = 0  # submitters, or more if more runs were listed
    runs_ok: int = 0  # listed once, succeeded, every stage done
    audits: int = 0
    audits_ok: int = 0
    movers: int = 0  # promote and rollback processes
    movers_ok: int = 0  # each ended in one of the acceptable ways, cleanly
    moves_tried: int = 0  # moves reported or recorded
    moves_ok: int = 0  # recorded, reported, linked to the one before
    move_seconds: float = 0.0
    endings: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        name = f"{self.backend} ×{self.submitters}"
        endings = ", ".join(f"{k} ×{v}" for k, v in sorted(self.endings.items()))
        submits = [
            Figure(
                SECTION,
                f"{name}: submitters started together exit 0",
                self.submitters,
                self.submitted_ok,
                f"{self.submit_seconds:.0f} s wall (cache pre-warm {self.prewarm_seconds:.0f} s)",
            ),
            Figure(
                SECTION,
                f"{name}: runs recorded once, succeeded, every stage",
                self.runs_tried,
                self.runs_ok,
            ),
        ]
        return [
            *(submits if self.with_submits else []),
            Figure(
                SECTION,
                f"{name}: audit verify after submits and each move round",
                self.audits,
                self.audits_ok,
            ),
            Figure(
                SECTION,
                f"{name}: promote/rollback processes end cleanly",
                self.movers,
                self.movers_ok,
                f"{endings}; {self.move_seconds:.0f} s wall",
            ),
            Figure(
                SECTION,
                f"{name}: alias moves reported = recorded, linked",
                self.moves_tried,
                self.moves_ok,
            ),
        ]


def plan(submitters: int) -> list[tuple[str, int]]:
    """Each submitter's recipe and seed: two submitters per recipe, seeds 0, 1, 2 in turn."""
    recipes = max(2, submitters // 2)
    return [(f"team-{i % recipes}", (i % recipes) % SEEDS) for i in range(submitters)]


def run_scenario(
    folder: Path, submitters: int, catalog: str | None = None, *, rounds: int = ROUNDS
) -> Result:
    """N submitters, then `rounds` rounds of N alias movers, on one workspace and the catalog
    `catalog` (a URL; default a SQLite file in the workspace), which must not exist yet."""
    bench = make_bench(folder)
    url = catalog or f"sqlite:///{bench.workspace / 'catalog.db'}"
    result = Result("postgresql" if url.startswith("postgresql") else "sqlite", submitters)
    where = ("--catalog", url, "--workspace", bench.workspace)

    # Seed 0 into the stage cache (its own catalog, so the shared one starts empty).
    start = time.perf_counter()
    warm = cg(
        "submit",
        bench.recipe("warm", 0),
        "--workspace",
        bench.workspace,
        "--catalog",
        f"sqlite:///{bench.workspace / 'warm.db'}",
        "--json",
    )
    result.prewarm_seconds = time.perf_counter() - start
    if warm.code != 0:
        result.problems.append(f"the pre-warm run failed: exit {warm.code}: {warm.stderr[-2000:]}")
        return result

    jobs = plan(submitters)
    recipes = {name: bench.recipe(name, seed) for name, seed in dict(jobs).items()}
    outcomes, result.submit_seconds = together(
        [("submit", recipes[name], *where, "--json") for name, _ in jobs],
        folder / "submit",
        cwd=bench.root,
    )
    variants = _check_submits(result, outcomes, jobs)
    _check_runs(result, url, [v.split("/")[0] for v in variants if v])
    _audit(result, where, "after the submits")

    move_alias(result, where, [v for v in variants if v], folder, rounds=rounds)
    return result


def move_alias(
    result: Result,
    where: tuple[str | Path, ...],
    variants: list[str],
    folder: Path,
    *,
    rounds: int = ROUNDS,
    audit: tuple[str, ...] = (),
) -> None:
    """Two moves of the alias (so a rollback has somewhere to go), then `rounds` rounds of
    `result.submitters` processes moving it together, each round checked and audited."""
    if len(variants) < 2:
        result.problems.append("fewer than two variants to move the alias between")
        return
    for variant in variants[:2]:
        done = cg("promote", variant, "--alias", ALIAS, *where, "--actor", "serving", "--json")
        if done.code != 0:
            result.problems.append(f"setting up {ALIAS} failed: {done.stderr.strip()}")
            return
    for round_ in range(rounds):
        _move_round(result, where, variants, round_, folder / f"moves-{round_}")
        _audit(result, (*where, *audit), f"after move round {round_}")


def _check_submits(
    result: Result, outcomes: list[Outcome], jobs: list[tuple[str, int]]
) -> list[str | None]:
    """Count the submitters that succeeded; each one's promotable variant (None if it failed)."""
    variants: list[str | None] = []
    for outcome, (name, seed) in zip(outcomes, jobs, strict=True):
        found = _json(outcome)
        run = (found or {}).get("run", {})
        review = (found or {}).get("review", {})
        ok = (
            outcome.code == 0
            and _clean(outcome)
            and run.get("status") == "succeeded"
            and review.get("status") == "approved"
        )
        if not ok:
            result.problems.append(
                f"submit {name} (seed {seed}) exit {outcome.code}: {outcome.stderr[-3000:]}"
            )
            variants.append(None)
            continue
        result.submitted_ok += 1
        stages = {g["decision"]["stage"] for g in review["gates"]}
        variants.append(f"{run['run_id']}/{seed}/{stages.pop()}")
    return variants


def _check_runs(result: Result, url: str, run_ids: list[str]) -> None:
    """Every reported run is listed once, succeeded, with every stage done; nothing else is."""
    from compressgate.registry.catalog.repository import Catalog

    result.runs_tried = result.submitters
    with Catalog(url, create=False) as catalog:
        listed = catalog.runs(limit=10_000)
        ids = [r.run_id for r in listed]
        result.runs_tried = max(result.submitters, len(ids))
        for extra in sorted(set(ids) - set(run_ids)):
            result.problems.append(f"run {extra} is in the catalog but no submitter reported it")
        for run_id in run_ids:
            if ids.count(run_id) != 1:
                result.problems.append(f"run {run_id} is listed {ids.count(run_id)} times")
                continue
            record = catalog.run(run_id)
            stages = [(s.name, s.status) for s in record.stages]
            if record.status != "succeeded" or stages != [
                (s, "done") for s in ("baseline", "prune", "int8", "export")
            ]:
                result.problems.append(f"run {run_id} is {record.status} with stages {stages}")
                continue
            result.runs_ok += 1


def _audit(result: Result, where: tuple[str | Path, ...], when: str) -> None:
    result.audits += 1
    done = cg("audit", "verify", *where)
    if done.code == 0 and _clean(done):
        result.audits_ok += 1
    else:
        result.problems.append(f"audit verify {when}: exit {done.code}: {done.stderr.strip()}")


def _history(where: tuple[str | Path, ...]) -> list[dict[str, Any]]:
    done = cg("alias", "history", ALIAS, *where, "--json")
    found = _json(done)
    if done.code != 0 or not isinstance(found, list):
        raise RuntimeError(f"alias history: exit {done.code}: {done.stderr.strip()}")
    return found


def _move_round(
    result: Result,
    where: tuple[str | Path, ...],
    variants: list[str],
    round_: int,
    folder: Path,
) -> None:
    """N processes move the alias together; then the history must hold what they reported."""
    before = _history(where)
    movers = result.submitters
    commands: list[tuple[str | Path, ...]] = [
        ("rollback", ALIAS, *where, "--actor", "serving", "--json")
        if i % 4 == 3
        else (
            "promote",
            variants[(i + round_) % len(variants)],
            "--alias",
            ALIAS,
            *where,
            "--actor",
            "serving",
            "--json",
        )
        for i in range(movers)
    ]
    outcomes, seconds = together(commands, folder, cwd=folder.parent)
    result.move_seconds += seconds
    reported: dict[int, dict[str, Any]] = {}
    for outcome in outcomes:
        ending = _ending(outcome)
        result.movers += 1
        result.endings[ending] = result.endings.get(ending, 0) + 1
        if ending == "failed":
            result.problems.append(
                f"{' '.join(outcome.args[:2])} exit {outcome.code}: {outcome.stderr.strip()}"
            )
            continue
        result.movers_ok += 1
        if ending == "moved":
            move = _json(outcome)["move"]
            reported[move["seq"]] = move

    history = _history(where)
    if history[: len(before)] != before:
        result.problems.append(f"round {round_}: the alias's earlier history changed")
    recorded = {m["seq"]: m for m in history[len(before) :]}
    result.moves_tried += len(set(recorded) | set(reported))
    for seq in sorted(set(reported) - set(recorded)):
        result.problems.append(f"round {round_}: move {seq} was reported but is not recorded")
    for i, move in enumerate(history[len(before) :], start=len(before)):
        seq = move["seq"]
        if reported.get(seq) != move:
            result.problems.append(
                f"round {round_}: recorded move {seq} does not match a reported one: "
                f"{move} vs {reported.get(seq)}"
            )
        elif (
            seq <= history[i - 1]["seq"]
            or move["previous_variant_id"] != history[i - 1]["variant_id"]
        ):
            result.problems.append(
                f"round {round_}: move {seq} does not follow move {history[i - 1]['seq']}"
            )
        else:
            result.moves_ok += 1

    last = history[-1]["variant_id"]
    shown = _json(cg("catalog", "show", last, *where, "--json")) or {}
    if ALIAS not in shown.get("aliases", []):
        result.problems.append(f"round {round_}: {ALIAS} does not point to its last move {last}")


def _ending(outcome: Outcome) -> str:
    """How a promote or rollback process ended: moved, unchanged, raced, nothing-to-roll-back,
    or failed (anything else: another exit, a traceback, more than one line of error)."""
    if not _clean(outcome):
        return "failed"
    if outcome.code == 0:
        found = _json(outcome)
        if found is None:
            return "failed"
        return "moved" if found["changed"] else "unchanged"
    if not outcome.clean:
        return "failed"
    if outcome.code == 6 and "moved meanwhile" in outcome.stderr:
        return "raced"
    if (
        outcome.code == 4
        and outcome.args[0] == "rollback"
        and "no earlier known-good" in outcome.stderr
    ):
        return "nothing-to-roll-back"
    return "failed"


# --- PostgreSQL ---------------------------------------------------------------------------------


def figures(options: Options) -> list[Figure]:
    # At any scale at least 4 submitters (and 4 alias movers a round): fewer hardly contend.
    found = run_scenario(options.folder / "sqlite", options.count(4, least=4))
    _show(found)
    results = [found]
    if options.postgres:
        with postgres_schema(options.postgres) as url:
            found = run_scenario(options.folder / "postgresql", options.count(16, least=4), url)
        _show(found)
        results.append(found)
    return [f for r in results for f in r.figures()]


def _show(result: Result) -> None:
    for problem in result.problems:
        print(f"     {result.backend}: {problem}", file=sys.stderr)
