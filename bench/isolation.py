"""Isolated runs: what building, reusing and running under a lock's environment costs.

Through the console script, in a scratch folder, on the reference recipe:

1. `compressgate env export --requires compressgate`: the runtime lock (exact pins).
2. `run --isolate` with an empty environment store: builds the environment, then runs.
3. `run --isolate --force`: the environment is reused (no install), every stage recomputed.
4. `run --force`: the same stages in this interpreter, without isolation.

Prints each wall time, the environment's preparation time as the run recorded it, and the
worker's sys.prefix as it reported it. Exits 1 if the second isolated run installed anything
or the worker did not run in the cached environment.

    python bench/isolation.py [--seeds N]
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

if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)

CG = str(Path(sys.executable).parent / "compressgate")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="compressgate-bench-isolation-") as scratch:
        root = Path(scratch)
        recipe = root / "recipe" / "recipe.yaml"
        setup(root, options.seeds)
        store = root / "envs"
        base = ("run", str(recipe), "--workspace", str(root / "ws"), "--envs", str(store))
        first, t1 = timed(*base, "--isolate")
        second, t2 = timed(*base, "--isolate", "--force")
        here, t3 = timed(*base, "--force")
        pins = sum(1 for line in (recipe.parent / "requirements.lock").read_text().splitlines()
                   if line and not line.startswith("#"))  # fmt: skip
        size = subprocess.run(
            ["du", "-sh", str(store)], capture_output=True, text=True, check=False
        ).stdout.split()[0]
    a, b = first["isolated"], second["isolated"]
    print(f"reference recipe, {options.seeds} seed(s); lock: {pins} pins (runtime closure)")
    print(
        f"isolated run 1 (builds the environment)   {t1:7.1f} s   environment "
        f"{a['prepare_seconds']:.1f} s (built: {a['built']}), {size} on disk"
    )
    print(
        f"isolated run 2 (reuses it, --force)       {t2:7.1f} s   environment "
        f"{b['prepare_seconds']:.3f} s (built: {b['built']}, refreshed: {b['refreshed']})"
    )
    print(f"in-process run (--force, no isolation)    {t3:7.1f} s")
    print(f"isolation overhead on a recomputed run    {t2 - t3:+7.1f} s ({(t2 - t3) / t3:+.1%})")
    print(f"worker sys.prefix, run 1: {a['prefix']}")
    print(f"worker sys.prefix, run 2: {b['prefix']}")
    same = first["stages"] and [s["artifact_sha256"] for s in first["stages"]] == [
        s["artifact_sha256"] for s in here["stages"]
    ]
    print(f"artifacts of isolated run 1 and the in-process run identical: {same}")
    ok = a["built"] and not b["built"] and not b["refreshed"] and a["prefix"] == b["prefix"]
    ok = ok and a["prefix"] == a["path"] and here["isolated"] is None
    print("ok" if ok else "MISS: see above")
    return 0 if ok else 1


def setup(root: Path, seeds: int) -> None:
    from compressgate.recipes.signing import sign_recipe
    from compressgate.recipes.trust import add_owner_key
    from compressgate.registry.authoring import init_example
    from compressgate.registry.kernel.keys import generate_keypair, load_private_key

    folder = root / "recipe"
    init_example(folder, "digits")
    recipe = folder / "recipe.yaml"
    listed = ", ".join(str(s) for s in range(seeds))
    recipe.write_text(re.sub(r"seeds: \[.*\]", f"seeds: [{listed}]", recipe.read_text()))
    lock = folder / "requirements.lock"
    subprocess.run(
        [CG, "env", "export", "--requires", "compressgate", "-o", str(lock), "--force"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    key, _, public = generate_keypair("ml-platform", root / "keys")
    add_owner_key(folder / "trust.yaml", "ml-platform", public, ("author",))
    for owner in ("ml-lead", "responsible-ai", "serving"):
        _, _, other = generate_keypair(owner, root / "keys")
        add_owner_key(folder / "trust.yaml", owner, other, ("approver",))
    sign_recipe(recipe, load_private_key(key))


def timed(*args: str) -> tuple[dict, float]:  # type: ignore[type-arg]
    start = time.perf_counter()
    done = subprocess.run([CG, *args, "--json"], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode not in (0, 1):
        sys.stderr.write(done.stderr)
        raise SystemExit(f"compressgate {' '.join(args)} exited {done.returncode}")
    return json.loads(done.stdout), elapsed


if __name__ == "__main__":
    sys.exit(main())
