"""How long compressgate takes to start: `--help` (target: under 0.5 s), and the read commands
`catalog list`, `alias history`, `alias resolve` (what a deployment calls: the alias's release
and artifact bytes checked) and `review status` against it (target: within 3x of `--help`).

Runs the installed console script as a user would, on a workspace built first, in a temporary
folder, with the console script too (about half a minute): a tiny signed recipe (the digits CNN,
one seed, one export stage, one gate that needs its owner's approval) submitted, approved and
promoted. Each command runs once to warm up (the first run after an install compiles our modules
to bytecode), then the commands take turns, so that a busy machine slows them alike. Prints each
command's median and worst, and its median as a multiple of `--help`'s; for reference, `python
-c pass` and importing sqlmodel (what the catalog's tables are built with, which every read
command needs) are timed the same way.

Exits 1 when `--help`'s median misses its target (the worst is reported, not judged: one slow
run on a shared machine is noise). A read command over 3x is reported; with --strict it exits 1
too.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

# Run as a script, this folder comes first on sys.path, and its bench/statistics.py would hide
# the standard library's `statistics` (imported below, after the folder is dropped).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import statistics  # after the folder is dropped: bench/statistics.py would hide it

RUNS = 15
HELP_TARGET_S = 0.5
READ_TARGET = 3.0  # a read command's median, in medians of `--help`
RECIPE = """\
apiVersion: compressgate/v1
kind: Recipe
metadata: {name: startup-bench, version: 1, owners: [ml-platform]}
environment: {lock: requirements.lock, strict: true}
model:
  factory: compressgate.recipes.examples.digits:build_cnn
  args: {channels: [8, 16], hidden: 32}
  train: {epochs: 3, lr: 0.003}
data:
  loader: compressgate.recipes.examples.digits:load
seeds: [0]
stages:
  - {name: export, kind: export}
gates:
  - {name: accuracy, owner: ml-lead, metric: accuracy, rule: bound, min: 0.5, approval: required}
"""


def workspace(exe: Path, folder: Path) -> Path:
    """A workspace holding one run of a tiny signed recipe, its gate approved by its owner and
    its output promoted to `production`, made with the console script; its path."""

    def cg(*args: str | Path) -> str:
        done = subprocess.run([exe, *args], check=True, capture_output=True, text=True)
        return done.stdout

    recipe, keys, store = folder / "recipe", folder / "keys", folder / "ws"
    trust = ("--trust", recipe / "trust.yaml")
    cg("recipe", "init", recipe, "--example", "digits")  # for its requirements.lock
    (recipe / "recipe.yaml").write_text(RECIPE, encoding="utf-8")
    for owner, role in (("ml-platform", "author"), ("ml-lead", "approver")):
        cg("keys", "generate", "--owner", owner, "--out", keys)
        pub = keys / f"{owner}.pub.json"
        cg("trust", "add", *trust, "--owner", owner, "--key", pub, "--role", role)
    cg("recipe", "sign", recipe / "recipe.yaml", "--key", keys / "ml-platform.key")
    submitted = json.loads(cg("submit", recipe / "recipe.yaml", "--workspace", store, "--json"))
    run_id = submitted["run"]["run_id"]
    cg("approve", run_id, "--gate", "accuracy", "--key", keys / "ml-lead.key", "--workspace", store)
    cg("promote", f"{run_id}/0/export", "--alias", "production", "--workspace", store)
    return store


def timed(commands: dict[str, Sequence[str | Path]], runs: int) -> dict[str, list[float]]:
    """Seconds of each run of each command: one warm-up each, then `runs` rounds in turn."""
    env = {**os.environ, "COLUMNS": "200"}
    for command in commands.values():
        subprocess.run(command, check=True, capture_output=True, env=env)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(runs):
        for name, command in commands.items():
            start = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True, env=env)
            times[name].append(time.perf_counter() - start)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=RUNS, help="timed runs of each command")
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when a read command is over 3x --help"
    )
    args = parser.parse_args(argv)
    exe = Path(sys.executable).parent / "compressgate"
    with tempfile.TemporaryDirectory(prefix="cg-startup-") as tmp:
        store = workspace(exe, Path(tmp))
        where = ("--workspace", store)
        commands: dict[str, Sequence[str | Path]] = {
            "python -c pass": (sys.executable, "-c", "pass"),
            "import sqlmodel": (sys.executable, "-c", "import sqlmodel"),
            "--help": (exe, "--help"),
            "catalog list": (exe, "catalog", "list", *where),
            "alias history": (exe, "alias", "history", "production", *where),
            "alias resolve": (exe, "alias", "resolve", "production", *where),
            "review status": (exe, "review", "status", *where),
        }
        times = timed(commands, args.runs)
    medians = {name: statistics.median(found) for name, found in times.items()}
    help_s = medians["--help"]
    failed = help_s >= HELP_TARGET_S
    for name, found in times.items():
        ratio = medians[name] / help_s
        line = (
            f"{name:>15}: median {medians[name] * 1000:4.0f} ms, worst {max(found) * 1000:4.0f} "
            f"ms, {ratio:4.1f}x --help"
        )
        if name == "--help":
            verdict = "ok" if help_s < HELP_TARGET_S else "OVER TARGET"
            line += f" (target < {HELP_TARGET_S * 1000:.0f} ms): {verdict}"
        elif name in ("catalog list", "alias history", "alias resolve", "review status"):
            over = ratio > READ_TARGET
            failed |= over and args.strict
            line += f" (target <= {READ_TARGET:g}x): {'OVER TARGET' if over else 'ok'}"
        print(line)
    print(f"over {args.runs} runs each, taking turns")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
