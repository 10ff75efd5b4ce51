"""How long a pinned environment takes to build with pip and with uv, cold and warm.

Each build is the real command, `compressgate env create LOCK --envs STORE`, in a fresh
process, with the installer chosen by $COMPRESSGATE_INSTALLER (`pip` or `uv`): a new virtual
environment, every pin of the lock installed (hash-checked when the lock has hashes, as ours
has), then compressgate from a wheel of the running code. `cold` is a build with an empty
package cache of the installer's own (a new $PIP_CACHE_DIR or $UV_CACHE_DIR: every file comes
from the package index or the local wheel folder again), `warm` the next build of the same lock
into a new store with that cache kept. The two installers take turns, so that the machine's
load shifts both alike. Both install the same files: the bench compares what each environment
holds (`env verify`) and exits 1 when they differ or a build fails.

    python bench/envs.py                    # requirements.lock (minutes: pip cold)
    python bench/envs.py --lock small.lock  # any other lock
    python bench/envs.py --quick            # a lock of four small pins (seconds; CI)
    python bench/envs.py --json
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALLERS = ("pip", "uv")
QUICK = ("packaging", "click", "markupsafe", "jinja2")  # pure-Python wheels already in the lock


def build(lock: Path, store: Path, installer: str, cache: Path) -> float:
    """Seconds one `compressgate env create` takes (the process' start included)."""
    environ = dict(os.environ, COMPRESSGATE_INSTALLER=installer)
    environ["PIP_CACHE_DIR" if installer == "pip" else "UV_CACHE_DIR"] = str(cache)
    exe = Path(sys.executable).parent / "compressgate"
    started = time.perf_counter()
    done = subprocess.run(
        [str(exe), "env", "create", str(lock), "--envs", str(store), "--json"],
        capture_output=True,
        text=True,
        env=environ,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{installer} build failed (exit {done.returncode}):\n{done.stderr}")
    built = json.loads(done.stdout)
    if not built["built"]:
        raise SystemExit(f"{installer}: {store} already held the environment")
    return seconds


def holds(lock: Path, store: Path) -> list[tuple[str, str]]:
    """The distributions the environment of `lock` in `store` holds, as its interpreter sees."""
    from compressgate.registry.run import envs

    env = envs.find(lock, store)
    assert env is not None
    return sorted(envs.installed_in(env.python).values())


def quick_lock(folder: Path) -> Path:
    """Four small pins of the runtime lock, with their hashes."""
    from packaging.utils import canonicalize_name

    from compressgate.registry.run.environment import read_lock

    pins = {canonicalize_name(p.name): p for p in read_lock(ROOT / "requirements.lock")}
    lines = []
    for name in QUICK:
        pin = pins[name]
        lines.append(" ".join([f"{pin.name}=={pin.version}", *(f"--hash={h}" for h in pin.hashes)]))
    lock = folder / "quick.lock"
    lock.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return lock


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lock", type=Path, default=ROOT / "requirements.lock")
    parser.add_argument("--quick", action="store_true", help="four small pins, not the lock")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="cg-bench-envs-") as scratch:
        folder = Path(scratch)
        lock = quick_lock(folder) if args.quick else args.lock.resolve()
        times: dict[str, dict[str, float]] = {name: {} for name in INSTALLERS}
        held: dict[str, list[tuple[str, str]]] = {}
        for phase in ("cold", "warm"):
            for name in INSTALLERS:
                store = folder / f"{name}-{phase}"
                times[name][phase] = build(lock, store, name, folder / f"{name}-cache")
                held[f"{name}-{phase}"] = holds(lock, store)
                if not args.json:
                    print(f"  {name:4} {phase}  {times[name][phase]:7.1f} s", flush=True)
        same = len({json.dumps(h) for h in held.values()}) == 1
        pins = sum(1 for line in lock.read_text().splitlines() if "==" in line)
        figures = {
            "lock": str(lock if not args.quick else "quick"),
            "pins": pins,
            "pip": times["pip"],
            "uv": times["uv"],
            "uv_version": importlib.metadata.version("uv"),
            "pip_version": importlib.metadata.version("pip"),
            "speedup_cold": round(times["pip"]["cold"] / times["uv"]["cold"], 1),
            "speedup_warm": round(times["pip"]["warm"] / times["uv"]["warm"], 1),
            "same_packages": same,
            "packages": len(held["uv-cold"]),
        }
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"{pins} pins: pip {figures['pip_version']} cold {times['pip']['cold']:.1f} s, warm "
            f"{times['pip']['warm']:.1f} s; uv {figures['uv_version']} cold "
            f"{times['uv']['cold']:.1f} s, warm {times['uv']['warm']:.1f} s: uv "
            f"{figures['speedup_cold']}x faster cold, {figures['speedup_warm']}x warm; "
            f"{figures['packages']} packages, "
            + ("the same in every environment" if same else "THE ENVIRONMENTS DIFFER")
        )
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
