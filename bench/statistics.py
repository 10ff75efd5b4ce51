"""Gates' error rates and intervals' coverage, by simulation (issue 23).

Every gate rule promises "a candidate at the threshold passes at most 1 - confidence of the
time", and every interval "holds the true value at least its level of the time". This script
checks both through the project's own code, fed data drawn from known distributions. The
simulations belong to the tests (`tests/helpers/statsim/`, one module per family): this script
runs `tests/gates/test_statistics.py` through pytest in a subprocess, one test per family, and
prints each row with what was declared, what was measured and the simulation's standard error.
A row is met when a false-pass rate is at most declared + 2 SE, a coverage at least declared -
2 SE, a power within 5 points of what `validate` says; the script exits 1 on any row not met.

    python bench/statistics.py                  # every family at full size (the docs' figures)
    python bench/statistics.py --quick          # a tenth of the simulated datasets: CI
    python bench/statistics.py --only fairness --only calibration
    python bench/statistics.py --json
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path, and this file's name would hide
# the standard library's `statistics` module from everything imported after it.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

import argparse
import json
import subprocess
import tempfile
from typing import Any

FAMILIES = ("accuracy", "seeds", "fairness", "calibration", "latency")
REPOSITORY = Path(__file__).resolve().parents[1]
TESTS = "tests/gates/test_statistics.py::test_every_simulated_row_is_met"


def present() -> list[str]:
    """The families whose simulation module exists."""
    folder = REPOSITORY / "tests" / "helpers" / "statsim"
    return [f for f in FAMILIES if (folder / f"{f}.py").exists()]


def show(family: dict[str, Any]) -> None:
    for row in family["rows"]:
        mark = "ok  " if row["met"] else "MISS"
        n = "" if row["n"] is None else f", n={row['n']:,}"
        note = f"  {row['note']}" if row["note"] else ""
        print(
            f"{mark} {row['family']:<11} {row['case']:<60} {row['quantity']:<10} "
            f"declared {row['declared']:7.2%}  measured {row['measured']:7.2%} ± {row['se']:.2%}"
            f"  ({row['reps']:,} datasets{n}){note}",
            flush=True,
        )
    print(f"     {family['family']} took {family['seconds']:.0f} s", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=FAMILIES, help="run only FAMILY")
    parser.add_argument("--quick", action="store_true", help="a tenth of the simulated datasets")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    chosen = [f for f in present() if f in (args.only or FAMILIES)]
    if not chosen:
        print("no simulation family to run", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="cg-statistics-") as scratch:
        figures = Path(scratch) / "figures.jsonl"
        command = [
            sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
            "--basetemp", str(Path(scratch) / "tmp"),
            "--statsim-scale", "0.1" if args.quick else "1.0",
            "--statsim-seed", str(args.seed),
            "--statsim-figures", str(figures),
            *(f"{TESTS}[{family}]" for family in chosen),
        ]  # fmt: skip
        # pytest's output on stderr keeps stdout for the rows (and --json parseable).
        code = subprocess.run(command, cwd=REPOSITORY, stdout=sys.stderr, check=False).returncode
        found = []
        if figures.exists():
            found = [json.loads(line) for line in figures.read_text("utf-8").splitlines()]
    if args.json:
        print(json.dumps([row for family in found for row in family["rows"]], indent=2))
    else:
        for family in found:
            show(family)
    rows = [row for family in found for row in family["rows"]]
    missed = [row for row in rows if not row["met"]]
    silent = [f for f in chosen if f not in {family["family"] for family in found}]
    if not args.json:
        print(f"{len(rows) - len(missed)} of {len(rows)} rows met")
        for family in silent:
            print(f"MISS {family}: measured nothing (its test failed first: see pytest's output)")
    if code not in (0, 1):
        print(f"pytest exit {code}: see its output above", file=sys.stderr)
        return 1
    return 1 if missed or silent else 0


if __name__ == "__main__":
    sys.exit(main())
