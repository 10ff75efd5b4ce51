"""Hardening figures (issue 8): bad input, tampering, crash safety, concurrency, unsafe content.

Each section runs its scenarios (from `bench/harden/`, the same code `tests/hardening/` runs at
a smaller scale) and prints one line per guarantee: how many cases were tried and how many held.
A guarantee holds only if every case held, so the script exits 1 on any miss.

    python bench/hardening.py                      # every section at the issue's scale
    python bench/hardening.py --quick              # a tenth of the cases, for a smoke check
    python bench/hardening.py --only crash --only concurrency
    python bench/hardening.py --postgres postgresql+psycopg://USER:PASS@HOST/DB   # adds PG cases
    python bench/hardening.py --json

PostgreSQL cases run when `--postgres` or $COMPRESSGATE_TEST_PG_URL names a server; each uses a
fresh schema that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository's packages

from harden.common import Figure, Options

SECTIONS = ("bad_input", "tampering", "crash", "concurrency", "unsafe")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only SECTION")
    parser.add_argument("--quick", action="store_true", help="a tenth of the cases")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--postgres", default=os.environ.get("COMPRESSGATE_TEST_PG_URL"))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="cg-hardening-") as scratch:
        for section in args.only or SECTIONS:
            module = importlib.import_module(f"harden.{section}")
            folder = Path(scratch) / section
            folder.mkdir()
            options = Options(
                scale=0.1 if args.quick else 1.0,
                seed=args.seed,
                postgres=args.postgres or None,
                folder=folder,
            )
            start = time.perf_counter()
            found = module.figures(options)
            seconds = time.perf_counter() - start
            figures.extend(found)
            if not args.json:
                for f in found:
                    mark = "ok  " if f.met else "MISS"
                    print(
                        f"{mark} {f.section:<12} {f.name:<58} {f.held:>5}/{f.tried:<5} {f.detail}"
                    )
                print(f"     {section} took {seconds:.0f} s", flush=True)
    if args.json:
        print(json.dumps([{**asdict(f), "met": f.met} for f in figures], indent=2))
    missed = [f for f in figures if not f.met]
    if not args.json:
        print(f"{len(figures) - len(missed)} of {len(figures)} guarantees held")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
