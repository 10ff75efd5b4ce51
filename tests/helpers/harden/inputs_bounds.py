"""Inputs (issue 22), group 'bounds': see tests/helpers/harden/inputs.py.

Every case is a manifest beside a trust file, run through the installed console script,
`compressgate recipe validate FILE`, in a subprocess: it must exit 2 with one line of message,
no traceback, and nothing written (the files under the recipe's folder and its workspace are
the same before and after).

- YAML that grows as it is read: alias bombs ("billion laughs") of nested lists, of nested
  maps, of long strings, and of merge keys (`<<`), each sized to expand to 1, 2, 5 and 10 MB of
  text, and (at full scale) to 100 MB, 10 GB and 1 TB, with short and long leaves; and long
  documents without aliases, up to the 1 MiB a manifest may have. The bomb sits under a key the
  recipe does not know, so one that the YAML bounds let through (1 or 2 MB of long strings) is
  read in full, then refused. The peak resident memory of each process (its `ru_maxrss`, from
  os.wait4) must stay under 200 MB: refusing costs what the bounds allow, not what a bomb would
  grow to. Then a manifest over 1 MiB and a value over 64 KiB.
- Compute beyond the recipe's budget: the review's cases (100,000 seeds, 10,000 epochs, 10^6
  latency repeats, batch 65,536), and (at full scale) each other way a run can ask for too
  much, a declared budget over its cap among them.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .common import EXE, TINY, Bench, Figure, Options, Outcome, footprint, make_bench

SECTION = "inputs"
PEAK_MB = 200  # the most memory one refusal may take
MB = 1_000_000


# Started by a small Python process, not by the test's: a child forked from a process
# inherits its resident size as the start of its own peak (ru_maxrss counts the pages shared at
# the fork, up to the exec), so the test's few hundred MB would be every child's floor.
_WRAPPER = """
import os, subprocess, sys, threading
timeout, report, *argv = sys.argv[1:]
child = subprocess.Popen(argv)
timer = threading.Timer(float(timeout), child.kill)
timer.start()
_, status, usage = os.wait4(child.pid, 0)
timer.cancel()
child.returncode = code = os.waitstatus_to_exitcode(status)
with open(report, "w") as out:
    out.write(str(usage.ru_maxrss))
sys.exit(code if code >= 0 else 128 - code)
"""


def measured(*args: str | Path, timeout: float = 300) -> tuple[Outcome, float]:
    """`cg` (common.py) with the peak resident memory, in MB, of the process it runs (its
    ru_maxrss, from os.wait4 in a small parent)."""
    argv = [EXE, *(str(a) for a in args)]
    with tempfile.TemporaryDirectory(prefix="cg-rss-") as scratch:
        report = Path(scratch) / "maxrss"
        done = subprocess.run(
            [sys.executable, "-c", _WRAPPER, str(timeout), str(report), *argv],
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            timeout=timeout + 30,
            check=False,
        )
        peak = int(report.read_text()) / 1024 if report.exists() else math.inf  # KiB on Linux
    return Outcome(tuple(argv[1:]), done.returncode, done.stdout, done.stderr), peak


@dataclass(frozen=True)
class Case:
    """A manifest and a fragment its one line of refusal must hold."""

    name: str
    text: str
    says: str


@dataclass(frozen=True)
class Result:
    case: Case
    problem: str  # '' when the case held
    peak_mb: float
    refused_by: str


def recipe(name: str) -> str:
    return TINY.replace("NAME", name).replace("SEED", "0")


# --- YAML that grows as it is read --------------------------------------------------------------

FANOUT = 10


def _leaf(length: int) -> str:
    return "l" * length


def nested(kind: str, leaf: int, target: float) -> tuple[str, float]:
    """A bomb of `kind` (lists, maps, merge) over a leaf of `leaf` characters, expanding to
    about `target` characters: levels of FANOUT aliases of the level below, then a top that
    names the highest level as often as the target needs. Returns YAML and its expansion."""
    lines = ["bomb:", f"  n0: &n0 {_leaf(leaf)}"]
    size = float(leaf)  # characters of a level, aliases expanded
    level = 0
    while size * FANOUT * 2 <= target:
        level += 1
        below = f"*n{level - 1}"
        if kind == "lists":
            body = "[" + ", ".join([below] * FANOUT) + "]"
            size = FANOUT * size
        elif kind == "maps":
            body = "{" + ", ".join(f"k{i}: {below}" for i in range(FANOUT)) + "}"
            size = FANOUT * (2 + size)
        else:  # merge: the level below merged in (a map from level 2), and named FANOUT times
            merged = f"<<: {below}, " if level > 1 else ""
            body = "{" + merged + ", ".join(f"m{level}_{i}: {below}" for i in range(FANOUT)) + "}"
            size = (size if level > 1 else 0) + FANOUT * (len(f"m{level}_0") + size)
        lines.append(f"  n{level}: &n{level} {body}")
    top = max(1, math.ceil(target / size))
    lines.append(f"  top: [{', '.join([f'*n{level}'] * top)}]")
    return "\n".join(lines) + "\n", top * size


SHAPES = {  # shape: its kind, and its leaves' lengths (the first one's at every scale)
    "nested lists": ("lists", (3, 1, 1_000)),
    "long strings": ("lists", (60_000, 30_000)),
    "nested maps": ("maps", (10, 1, 1_000)),
    "merge keys": ("merge", (10, 1, 1_000)),
}
CORE_SIZES = (1, 2, 5, 10)  # MB of expansion
MORE_SIZES = (100, 10_000, 1_000_000)


def _bomb_case(shape: str, kind: str, leaf: int, megabytes: float) -> Case:
    text, expands = nested(kind, leaf, megabytes * MB)
    return Case(
        f"{shape} (leaf {leaf:,}) expanding to {expands / MB:,.0f} MB",
        recipe("bomb") + text,
        "",  # refused by a YAML bound or as an unknown key: `refused_by` says which
    )


def bombs(options: Options) -> list[Case]:
    core = [
        _bomb_case(shape, kind, leaves[0], size)
        for shape, (kind, leaves) in SHAPES.items()
        for size in CORE_SIZES
    ]
    more = [
        _bomb_case(shape, kind, leaf, size)
        for shape, (kind, leaves) in SHAPES.items()
        for leaf in leaves
        for size in (*CORE_SIZES, *MORE_SIZES)
        if leaf != leaves[0] or size in MORE_SIZES
    ]
    return _scaled(options, core, more)


def long_documents(options: Options) -> list[Case]:
    """No aliases: many short values, and files and values over their bounds."""
    base = recipe("long")

    def under_the_bound(values: int) -> Case:
        body = "[" + ",".join(["0"] * values) + "]"
        return Case(
            f"a flat list of {values:,} values (read, then refused)",
            f"{base}notes: {body}\n",
            "unknown key 'notes'",
        )

    def flat(kind: str, size: int) -> Case:
        room = size - len(base) - 16
        if kind == "list":
            body = "[" + ",".join(["0"] * (room // 2)) + "]"
        else:
            body = "{" + ",".join(f"{i:x}: 0" for i in range(room // 9)) + "}"
        return Case(f"a flat {kind} of {size / 1024:,.0f} KiB", f"{base}notes: {body}\n", "")

    core = [
        flat("list", 1_040_000),
        Case("a file of 1 MiB + 1 byte", _padded(base, 1024 * 1024 + 1), "over the 1,048,576"),
        Case(
            "a value of 64 KiB + 1 character",
            _edit(
                "owners: [ml-platform]}", f"owners: [ml-platform], description: {'d' * 65_537}}}"
            )(base),
            "a value of 65,537 characters, over the 65,536 allowed",
        ),
    ]
    more = [
        flat("list", 250_000),
        under_the_bound(99_000),
        flat("map", 1_040_000),
        Case("a file of 10 MiB", _padded(base, 10 * 1024 * 1024), "over the 1,048,576"),
        Case(
            "a key of 100 KiB",
            base + "? " + "k" * 100_000 + "\n: 1\n",
            "a value of 100,000 characters, over the 65,536 allowed",
        ),
    ]
    return _scaled(options, core, more)


def _padded(text: str, size: int) -> str:
    """`text` and a comment, `size` bytes in all: nothing else is wrong with it."""
    return text + "#" + "p" * (size - len(text) - 2) + "\n"


# --- compute beyond the budget ------------------------------------------------------------------


def _edit(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} must occur once in TINY"
        return text.replace(old, new)

    return edit


def _seeds(n: int) -> Callable[[str], str]:
    return _edit("seeds: [0]", f"seeds: [{', '.join(map(str, range(n)))}]")


def _latency(spec: str) -> Callable[[str], str]:
    return _edit("  - kind: paired\n", f"  - kind: paired\n  - {{kind: latency, {spec}}}\n")


def _append(extra: str) -> Callable[[str], str]:
    return lambda text: text + extra


REVIEW: list[tuple[str, Callable[[str], str], str]] = [
    ("100,000 seeds", _seeds(100_000), "more than 100,000 values"),
    (
        "10,000 epochs",
        _edit("train: {epochs: 1,", "train: {epochs: 10000,"),
        "model.train.epochs: the run would train for 10,001 epochs",
    ),
    (
        "10^6 latency repeats",
        _latency("repeats: 1000000"),
        "evaluators[2].repeats: latency would call each model 2,000,040 times",
    ),
    (
        "batch 65,536",
        _latency("batch_sizes: [1, 65536]"),
        "evaluators[2].batch_sizes[1]: batch size 65,536, over the default budget.batch_size",
    ),
]
MORE: list[tuple[str, Callable[[str], str], str]] = [
    ("11 seeds", _seeds(11), "seeds: 11 seeds, over the default budget.seeds (10)"),
    ("1,001 seeds", _seeds(1001), "seeds: must have at most 1000 items"),
    (
        "1,000 seeds under budget.seeds: 1000",
        lambda text: _seeds(1000)(text) + "budget: {seeds: 1000}\n",
        "the run would train for 2,000 epochs",
    ),
    (
        "100 prune rounds x 1,000 fine-tuning epochs",
        _edit("rounds: 1,\n     finetune_epochs: 1}", "rounds: 100,\n     finetune_epochs: 1000}"),
        "stages[0].finetune_epochs: the run would train for 100,001 epochs",
    ),
    (
        "10,000 epochs under budget.epochs: 100000",
        lambda text: (
            _edit("train: {epochs: 1,", "train: {epochs: 10000,")(text)
            + "budget: {epochs: 100000}\n"
        ),
        "",  # within the declared budget: refused for nothing else, so it must pass; see below
    ),
    (
        "batch_repeats of 10^6",
        _latency("batch_sizes: [1, 32], batch_repeats: {32: 1000000}"),
        "evaluators[2].batch_repeats: latency would call",
    ),
    (
        "100,000 warm-up calls",
        _latency("warmup: 100000"),
        "evaluators[2].warmup: latency would call",
    ),
    (
        "a training batch of 65,536",
        _edit("train: {epochs: 1,", "train: {epochs: 1, batch_size: 65536,"),
        "model.train.batch_size: batch size 65,536",
    ),
    (
        "a training batch of 65,537",
        _edit("train: {epochs: 1,", "train: {epochs: 1, batch_size: 65537,"),
        "model.train.batch_size: must be <= 65536",
    ),
    ("budget.epochs: 10^12", _append("budget: {epochs: 1000000000000}\n"), "must be <= 100000"),
    ("budget.seeds: 10^6", _append("budget: {seeds: 1000000}\n"), "must be <= 1000"),
    (
        "budget.latency_calls: 10^7",
        _append("budget: {latency_calls: 10000000}\n"),
        "must be <= 1000000",
    ),
    ("budget.batch_size: 2^20", _append("budget: {batch_size: 1048576}\n"), "must be <= 65536"),
]


def compute_cases(options: Options) -> list[Case]:
    def case(name: str, edit: Callable[[str], str], says: str) -> Case:
        return Case(name, edit(recipe("budget")), says)

    more = [case(*each) for each in MORE if each[2]]
    return _scaled(options, [case(*each) for each in REVIEW], more)


def within_budget() -> Case:
    """The control: a run over the default epochs that declares them is valid (exit 0)."""
    name, edit, _ = next(each for each in MORE if not each[2])
    return Case(name, edit(recipe("budget")), "")


# --- running the cases --------------------------------------------------------------------------


def _scaled(options: Options, core: list[Case], more: list[Case]) -> list[Case]:
    """Every core case, and as many more as the scale asks for (all of them at 1.0)."""
    cases = core + more
    return cases[: max(len(core), options.count(len(cases)))]


REFUSALS = {
    "aliases (*name) repeat more than": "alias repeats",
    "characters of values with its aliases": "expanded text",
    "values with its aliases (*name) expanded": "values",
    "unknown key": "unknown key",
    "bytes, over the": "file size",
    "characters, over the": "value size",
    "must be <=": "a field's bound",
    "must have at most": "a field's bound",
    "budget.": "budget",
}


def run(bench: Bench, case: Case, *, code: int = 2) -> Result:
    path = bench.root / "bounds.yaml"
    path.write_text(case.text, encoding="utf-8")
    before = footprint(bench.workspace, (bench.root,))
    outcome, peak = measured("recipe", "validate", path)
    message = outcome.stderr.strip()
    refused_by = next((why for key, why in REFUSALS.items() if key in message), "other")
    problem = ""
    if outcome.code != code:
        problem = f"exit {outcome.code}: {message[-300:]}"
    elif code and not outcome.clean:
        problem = f"not one clean line: {message[-300:]}"
    elif case.says not in message:
        problem = f"the message does not say {case.says!r}: {message[-300:]}"
    elif footprint(bench.workspace, (bench.root,)) != before:
        problem = "something was written"
    path.unlink()
    return Result(case, problem, peak, refused_by)


def figure(name: str, results: list[Result], *, memory: bool) -> Figure:
    failed = [r for r in results if r.problem or (memory and r.peak_mb >= PEAK_MB)]
    notes = [f"{r.case.name}: {r.problem or f'peak RSS {r.peak_mb:.0f} MB'}" for r in failed[:3]]
    refused = Counter(r.refused_by for r in results if not r.problem)
    parts = [", ".join(f"{why} ×{n}" for why, n in refused.most_common())]
    if memory:
        top = max(results, key=lambda r: r.peak_mb)
        parts.append(f"peak RSS max {top.peak_mb:.0f} MB ({top.case.name}; bar {PEAK_MB} MB)")
    return Figure(SECTION, name, len(results), len(results) - len(failed), "; ".join(notes + parts))


def figures(options: Options) -> list[Figure]:
    bench = make_bench(options.folder / "bounds")
    found = [
        figure(
            "YAML alias bombs refused, peak RSS < 200 MB",
            [run(bench, case) for case in bombs(options)],
            memory=True,
        ),
        figure(
            "long YAML, files > 1 MiB, values > 64 KiB refused",
            [run(bench, case) for case in long_documents(options)],
            memory=True,
        ),
        figure(
            "compute beyond the budget refused",
            [run(bench, case) for case in compute_cases(options)],
            memory=False,
        ),
    ]
    control = run(bench, within_budget(), code=0)
    found.append(
        Figure(
            SECTION,
            "control: a budget that declares the epochs allows them",
            1,
            0 if control.problem else 1,
            control.problem,
        )
    )
    return found
